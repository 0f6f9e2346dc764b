//! An application that runs a loop of its own, and hosts anyloop in it.
//!
//! [`AppLoop`] stands for the loop an application already has before it meets anyloop: a
//! single-threaded `poll(2)` loop with its own fds and timers, driven by
//! [`iterate`](AppLoop::iterate), and with the one extension point such loops usually offer,
//! hooks around the poll ([`PollHook`]: add fds to the poll set and shorten its timeout before
//! it, read what it reported after it). It knows nothing of anyloop.
//!
//! [`adapter`] is all it takes to run every anyloop library on it: one
//! [`anyloop_engine::HostedEngine`] behind a `PollHook`, and [`anyloop::Runner`] for the owner
//! side, in under 60 lines. The same adapter passes the whole conformance kit
//! (`examples/tests/own_loop_kit.rs`), and the `own_loop` program runs an `async fn` task of
//! the `linechat` library and the `supervisor` library on it, beside the application's own
//! fd and timer.

pub mod adapter;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// A callback of the application's own (an fd's readiness, or a timer).
type Callback<A> = Rc<RefCell<dyn FnMut(&AppLoop, A)>>;

/// Before and after each poll of an [`AppLoop`]: how other event sources join it.
pub trait PollHook {
    /// Right before the poll: add fds to `set`, shorten its timeout.
    fn before_poll<'a>(&'a self, set: &mut PollSet<'a>);
    /// Right after the poll, before the loop's own fd callbacks run.
    fn after_poll(&self, set: &PollSet<'_>);
}

/// One poll's fds and timeout, as hooks see them.
#[derive(Debug)]
pub struct PollSet<'a> {
    fds: Vec<PollFd<'a>>,
    timeout: Option<Duration>,
}

impl<'a> PollSet<'a> {
    /// Adds `fd` for `events`; the index to read its result with [`revents`](Self::revents).
    pub fn add(&mut self, fd: BorrowedFd<'a>, events: PollFlags) -> usize {
        self.fds.push(PollFd::from_borrowed_fd(fd, events));
        self.fds.len() - 1
    }

    /// Lets the poll block at most `limit` (`None`: no limit of this hook's).
    pub fn limit_timeout(&mut self, limit: Option<Duration>) {
        self.timeout = match (self.timeout, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// What the poll reported for the fd at `index` (empty before the poll).
    pub fn revents(&self, index: usize) -> PollFlags {
        self.fds
            .get(index)
            .map_or(PollFlags::empty(), PollFd::revents)
    }

    /// What the poll reported for `fd` (empty if it was not in the set).
    pub fn revents_of(&self, fd: BorrowedFd<'_>) -> PollFlags {
        let fd = fd.as_raw_fd();
        let found = self.fds.iter().find(|p| p.as_fd().as_raw_fd() == fd);
        found.map_or(PollFlags::empty(), PollFd::revents)
    }
}

struct FdEntry {
    file: Rc<dyn AsFd>,
    events: PollFlags,
    callback: Callback<PollFlags>,
}

struct TimerEntry {
    due: Instant,
    every: Option<Duration>,
    callback: Callback<()>,
}

#[derive(Default)]
struct State {
    fds: Vec<Option<FdEntry>>,
    timers: Vec<Option<TimerEntry>>,
    hooks: Vec<Rc<dyn PollHook>>,
}

/// The application's own loop (see the [module documentation](self)). A cheap handle: clones
/// are the same loop. Not `Send`: it runs on the thread that made it.
#[derive(Clone, Default)]
pub struct AppLoop {
    state: Rc<RefCell<State>>,
    quit: Rc<Cell<bool>>,
}

impl fmt::Debug for AppLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.borrow();
        f.debug_struct("AppLoop")
            .field("fds", &st.fds.iter().flatten().count())
            .field("timers", &st.timers.iter().flatten().count())
            .field("hooks", &st.hooks.len())
            .finish()
    }
}

/// Puts `value` in the first free place of `slots`; returns its key.
fn insert<T>(slots: &mut Vec<Option<T>>, value: T) -> usize {
    match slots.iter().position(Option::is_none) {
        Some(key) => {
            slots[key] = Some(value);
            key
        }
        None => {
            slots.push(Some(value));
            slots.len() - 1
        }
    }
}

impl AppLoop {
    /// An empty loop.
    pub fn new() -> AppLoop {
        AppLoop::default()
    }

    /// Calls `callback` whenever `file` is ready for `events` (level-triggered); returns the
    /// key for [`remove_fd`](Self::remove_fd).
    pub fn add_fd(
        &self,
        file: Rc<dyn AsFd>,
        events: PollFlags,
        callback: impl FnMut(&AppLoop, PollFlags) + 'static,
    ) -> usize {
        let callback = Rc::new(RefCell::new(callback));
        let entry = FdEntry {
            file,
            events,
            callback,
        };
        insert(&mut self.state.borrow_mut().fds, entry)
    }

    /// Stops watching an fd.
    pub fn remove_fd(&self, key: usize) {
        if let Some(slot) = self.state.borrow_mut().fds.get_mut(key) {
            *slot = None;
        }
    }

    /// Calls `callback` after `delay`, then every `every` if given; returns the key for
    /// [`remove_timer`](Self::remove_timer).
    pub fn add_timer(
        &self,
        delay: Duration,
        every: Option<Duration>,
        callback: impl FnMut(&AppLoop, ()) + 'static,
    ) -> usize {
        let entry = TimerEntry {
            due: Instant::now() + delay,
            every,
            callback: Rc::new(RefCell::new(callback)),
        };
        insert(&mut self.state.borrow_mut().timers, entry)
    }

    /// Cancels a timer.
    pub fn remove_timer(&self, key: usize) {
        if let Some(slot) = self.state.borrow_mut().timers.get_mut(key) {
            *slot = None;
        }
    }

    /// Adds a hook around every poll from the next iteration on.
    pub fn add_hook(&self, hook: Rc<dyn PollHook>) {
        self.state.borrow_mut().hooks.push(hook);
    }

    /// Removes a hook added by [`add_hook`](Self::add_hook).
    pub fn remove_hook<H: PollHook + 'static>(&self, hook: &Rc<H>) {
        let hook = Rc::as_ptr(hook).cast::<()>();
        (self.state.borrow_mut().hooks).retain(|h| Rc::as_ptr(h).cast::<()>() != hook);
    }

    /// Asks [`run`](Self::run) to return after the current iteration.
    pub fn quit(&self) {
        self.quit.set(true);
    }

    /// Iterates until [`quit`](Self::quit).
    pub fn run(&self) {
        while !self.quit.replace(false) {
            self.iterate(None);
        }
    }

    /// One iteration: the hooks' `before_poll`, one `poll(2)` (blocking at most `timeout`, the
    /// earliest timer, and what the hooks allow), the hooks' `after_poll`, then the
    /// callbacks of ready fds and due timers. Returns how many of the application's own
    /// callbacks ran. May be called from inside a callback (a nested, modal iteration): the
    /// callbacks running further up the stack are skipped in it.
    pub fn iterate(&self, timeout: Option<Duration>) -> usize {
        let (files, hooks, earliest) = {
            let st = self.state.borrow();
            let files: Vec<(usize, Rc<dyn AsFd>, PollFlags)> = (st.fds.iter().enumerate())
                .filter_map(|(key, e)| e.as_ref().map(|e| (key, e.file.clone(), e.events)))
                .collect();
            let hooks = st.hooks.clone();
            let earliest = st.timers.iter().flatten().map(|t| t.due).min();
            (files, hooks, earliest)
        };
        let mut set = PollSet {
            fds: Vec::new(),
            timeout,
        };
        for (_, file, events) in &files {
            set.add(file.as_fd(), *events);
        }
        set.limit_timeout(earliest.map(|due| due.saturating_duration_since(Instant::now())));
        for hook in &hooks {
            hook.before_poll(&mut set);
        }
        let wait = set.timeout.map(|t| {
            Timespec::try_from(t).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        if poll(&mut set.fds, wait.as_ref()).is_err() {
            // EINTR (or a closed fd of a hook's): nothing was reported this time.
            set.fds.iter_mut().for_each(PollFd::clear_revents);
        }
        for hook in &hooks {
            hook.after_poll(&set);
        }
        let mut ran = 0;
        for (index, (key, _, _)) in files.iter().enumerate() {
            let revents = set.revents(index);
            let callback = self.state.borrow().fds.get(*key).and_then(|e| {
                let e = e.as_ref()?;
                (!revents.is_empty()).then(|| e.callback.clone())
            });
            // Skipped while it runs further up the stack (a nested iteration from inside it).
            let Some(callback) = callback else { continue };
            let called = match callback.try_borrow_mut() {
                Ok(mut callback) => {
                    callback(self, revents);
                    true
                }
                Err(_) => false,
            };
            ran += usize::from(called);
        }
        ran + self.fire_due_timers()
    }

    /// Runs every timer that is due, re-arming periodic ones from now.
    fn fire_due_timers(&self) -> usize {
        let now = Instant::now();
        let due: Vec<Callback<()>> = {
            let mut st = self.state.borrow_mut();
            let mut due = Vec::new();
            for slot in st.timers.iter_mut() {
                let Some(timer) = slot else { continue };
                if timer.due > now {
                    continue;
                }
                due.push(timer.callback.clone());
                match timer.every {
                    Some(every) => timer.due = now + every,
                    None => *slot = None,
                }
            }
            due
        };
        let mut ran = 0;
        for callback in &due {
            // Skipped while it runs further up the stack (a nested iteration from inside it).
            let called = match callback.try_borrow_mut() {
                Ok(mut callback) => {
                    callback(self, ());
                    true
                }
                Err(_) => false,
            };
            ran += usize::from(called);
        }
        ran
    }
}
