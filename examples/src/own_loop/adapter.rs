//! anyloop hosted in [`AppLoop`]: a `HostedEngine` as a `PollHook`, and `Runner`.
use super::{AppLoop, PollHook, PollSet};
use anyloop::{Loop, Quitter, Result, Runner};
use anyloop_engine::{linux::EpollPoller, HostedEngine};
use rustix::event::PollFlags;
use std::{rc::Rc, time::Duration, time::Instant};

impl PollHook for HostedEngine<EpollPoller> {
    fn before_poll<'a>(&'a self, set: &mut PollSet<'a>) {
        let wait = self.prepare(); // the last thing before the poll
        wait.poll_fd().then(|| set.add(self.fd(), PollFlags::IN)); // not when nested
        set.limit_timeout(wait.timeout(Instant::now()));
    }
    fn after_poll(&self, set: &PollSet<'_>) {
        HostedEngine::after_poll(self, !set.revents_of(self.fd()).is_empty()); // readable or due
    }
}

/// anyloop on the application's loop, run through [`Runner`] like every backend.
#[derive(Debug)]
pub struct Hosted {
    app: AppLoop,
    host: Rc<HostedEngine<EpollPoller>>,
}

impl Hosted {
    /// Hosts a new anyloop engine in `app` (an error if its epoll instance cannot be made).
    pub fn new(app: &AppLoop) -> Result<Hosted> {
        let (app, host) = (app.clone(), Rc::new(HostedEngine::epoll()?));
        app.add_hook(host.clone());
        Ok(Hosted { app, host })
    }
}

impl Runner for Hosted {
    fn handle(&self) -> Loop {
        self.host.handle()
    }
    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        self.app.iterate(timeout); // its count is the application's callbacks, not ours (R46)
        self.host.take_outcome()
    }
    fn quitter(&self) -> Quitter {
        self.host.quitter()
    }
    fn take_quit(&mut self) -> bool {
        self.host.take_quit()
    }
    fn drain(&mut self) -> Result<usize> {
        self.host.drain() // the frees alone, not an iteration of the application's loop
    }
}

impl Drop for Hosted {
    fn drop(&mut self) {
        self.app.remove_hook(&self.host);
        self.host.close(); // every remaining free, now, on this thread (R48)
    }
}
