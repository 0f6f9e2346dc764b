//! calloop 0.14 used directly, as an application would without anyloop: one `Generic`
//! (level-triggered) source per watch, one `Timer` source per timeout, a `Ping` or a
//! `channel` for cross-thread wake-ups. The yardstick of the `anyloop-calloop` backend.
//!
//! A W7/W8 watch, whose interest can change, is an [`IoSource`]: a `Generic` whose callback
//! answers with the interest it wants next; when that changed, the source asks calloop to
//! re-register it (`PostAction::Reregister`, one `epoll_ctl`), which is how a calloop source
//! changes its own interest (a `Generic`'s callback cannot reach the `Generic`).

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use anyloop::IoEvents;
use calloop::generic::Generic;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{
    EventLoop, EventSource, Interest, Mode, Poll, PostAction, Readiness, RegistrationToken, Token,
    TokenFactory,
};

use crate::contender::{oneshot_fired, xt_fired, Contender, Step};
use crate::sys::borrow;

/// A level-triggered `Generic` whose callback says which interest it wants next.
struct IoSource {
    generic: Generic<BorrowedFd<'static>>,
    /// The interest in force (the `Generic`'s, as anyloop names it).
    interest: IoEvents,
}

fn calloop_interest(interest: IoEvents) -> Interest {
    Interest {
        readable: interest.contains(IoEvents::READABLE),
        writable: interest.contains(IoEvents::WRITABLE),
    }
}

impl EventSource for IoSource {
    /// What the callback is told.
    type Event = IoEvents;
    /// The watched fd.
    type Metadata = RawFd;
    /// The interest from now on.
    type Ret = IoEvents;
    type Error = std::io::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: F,
    ) -> Result<PostAction, Self::Error>
    where
        F: FnMut(IoEvents, &mut RawFd) -> IoEvents,
    {
        let interest = self.interest;
        let mut next = interest;
        self.generic
            .process_events(readiness, token, |readiness, file| {
                let mut told = IoEvents::empty();
                if readiness.readable {
                    told |= IoEvents::READABLE;
                }
                if readiness.writable {
                    told |= IoEvents::WRITABLE;
                }
                if readiness.error {
                    told |= IoEvents::ERROR;
                }
                next = callback(
                    told & (interest | IoEvents::ALWAYS_REPORTED),
                    &mut file.as_raw_fd(),
                );
                Ok(PostAction::Continue)
            })?;
        if next == interest {
            return Ok(PostAction::Continue);
        }
        self.interest = next;
        self.generic.interest = calloop_interest(next);
        Ok(PostAction::Reregister)
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.generic.register(poll, factory)
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.generic.reregister(poll, factory)
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.generic.unregister(poll)
    }
}

/// A calloop loop with shared data `()`; timers are found by index (calloop has no way to
/// change a `Timer` source's deadline from outside its callback: update is remove + insert).
pub struct CalloopRaw {
    timers: Vec<Option<RegistrationToken>>,
    event_loop: EventLoop<'static, ()>,
}

impl CalloopRaw {
    fn insert_timer(&mut self, after: Duration, cb: fn()) -> RegistrationToken {
        self.event_loop
            .handle()
            .insert_source(Timer::from_duration(after), move |_, _, _| {
                cb();
                TimeoutAction::Drop
            })
            .expect("insert Timer")
    }
}

impl Contender for CalloopRaw {
    type Timer = usize;

    fn make() -> Self {
        CalloopRaw {
            timers: Vec::new(),
            event_loop: EventLoop::try_new().expect("calloop::EventLoop::try_new"),
        }
    }

    fn watch_add(&mut self, fd: RawFd, mut cb: impl FnMut(RawFd) + Send + 'static) {
        let source: Generic<BorrowedFd<'static>> =
            Generic::new(borrow(fd), Interest::READ, Mode::Level);
        self.event_loop
            .handle()
            .insert_source(source, move |_, _, _| {
                cb(fd);
                Ok(PostAction::Continue)
            })
            .expect("insert Generic");
    }

    fn io_watch_add(
        &mut self,
        fd: RawFd,
        interest: IoEvents,
        mut cb: impl FnMut(RawFd, IoEvents) -> Step + Send + 'static,
    ) {
        let source = IoSource {
            generic: Generic::new(borrow(fd), calloop_interest(interest), Mode::Level),
            interest,
        };
        self.event_loop
            .handle()
            .insert_source(source, move |told, fd, _| cb(*fd, told).interest)
            .expect("insert IoSource");
    }

    fn run_once(&mut self) {
        self.event_loop
            .dispatch(None, &mut ())
            .expect("calloop dispatch");
    }

    fn timer_add(&mut self, after: Duration, cb: fn()) -> usize {
        let token = self.insert_timer(after, cb);
        self.timers.push(Some(token));
        self.timers.len() - 1
    }

    fn timer_update(&mut self, timer: usize, after: Duration) {
        if let Some(token) = self.timers[timer].take() {
            self.event_loop.handle().remove(token);
        }
        let token = self.insert_timer(after, crate::contender::never_fires);
        self.timers[timer] = Some(token);
    }

    fn timer_remove(&mut self, timer: usize) {
        if let Some(token) = self.timers[timer].take() {
            // calloop drops the source (and its callback) inside remove.
            self.event_loop.handle().remove(token);
        }
    }

    fn oneshot0(&mut self) {
        self.event_loop
            .handle()
            .insert_source(Timer::immediate(), |_, _, _| {
                oneshot_fired();
                TimeoutAction::Drop
            })
            .expect("insert Timer::immediate");
    }

    fn xt_variants() -> &'static [&'static str] {
        &["ping", "channel"]
    }

    fn xt_setup(&mut self, variant: usize) -> Box<dyn FnMut() + Send> {
        let handle = self.event_loop.handle();
        match Self::xt_variants()[variant] {
            "ping" => {
                let (ping, source) = calloop::ping::make_ping().expect("make_ping");
                handle
                    .insert_source(source, |(), &mut (), _| xt_fired())
                    .expect("insert PingSource");
                Box::new(move || ping.ping())
            }
            "channel" => {
                let (tx, rx) = calloop::channel::channel::<()>();
                handle
                    .insert_source(rx, |event, &mut (), _| {
                        if let calloop::channel::Event::Msg(()) = event {
                            xt_fired();
                        }
                    })
                    .expect("insert Channel");
                Box::new(move || tx.send(()).expect("channel send"))
            }
            other => unreachable!("unknown W3 variant {other}"),
        }
    }
}
