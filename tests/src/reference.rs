//! The kit's self-check: a tiny, obviously correct poll(2) backend.
//!
//! It exists for two reasons. The battery runs against it (`tests/tests/reference.rs`), so a
//! scenario that fails here is a bug in the kit, not in a backend. And it is a readable
//! example for third-party authors: the whole contract in one file, with no cleverness.
//!
//! Design, top to bottom: one `Mutex` over plain maps of entries (ids are process-wide and
//! increasing, so map order is creation order); a non-blocking self-pipe that every operation
//! from a foreign thread writes to (R40); each iteration drains the self-pipe, snapshots the
//! enabled fds and the earliest timer deadline, `poll(2)`s without the lock, then dispatches
//! due timers (deadline order, R33) and ready fds, taking each callback out of its entry and
//! calling it with the lock released (R43). A removed entry's callback goes to a list of
//! pending frees, dropped at the start and end of every iteration with the lock released, in
//! removal order (R21–R26). It depends on `anyloop`'s vtable types only, none of the
//! building blocks the real backends share, so it checks the kit independently.
//!
//! It is slow by design (poll(2) over every fd, linear scans): do not use it in production.
//! The loop must be iterated on the thread that created it.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{
    Backend, Error, Interval, IoEvents, Loop, LoopStats, RegistrationId, Rejected, Result,
    TimerCallback, TimerId, WatchCallback, WatchId,
};

use crate::harness::{LoopFactory, LoopUnderTest, Quitter};

/// The reference backend's factory, for [`conformance_tests!`](crate::conformance_tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceBackend;

impl LoopFactory for ReferenceBackend {
    fn name(&self) -> String {
        "reference-poll".to_owned()
    }

    fn create(&self) -> Result<Box<dyn LoopUnderTest>> {
        Ok(Box::new(PollLoop::new()?))
    }
}

struct HandleEntry {
    fd: RawFd,
    events: IoEvents,
    /// `None` while the callback runs (taken out of the entry).
    callback: Option<WatchCallback>,
}

struct TimerEntry {
    interval: Interval,
    /// `None` when disabled or too far away to represent ("never").
    deadline: Option<Instant>,
    callback: Option<TimerCallback>,
}

/// A pending free; the callback is `None` while it is still running (R22).
enum Free {
    Handle(WatchId, Option<WatchCallback>),
    Timeout(TimerId, Option<TimerCallback>),
}

#[derive(Default)]
struct State {
    gone: bool,
    quit: bool,
    iterations: u64,
    watches: BTreeMap<WatchId, HandleEntry>,
    timers: BTreeMap<TimerId, TimerEntry>,
    frees: Vec<Free>,
}

struct Shared {
    state: Mutex<State>,
    wake_rd: OwnedFd,
    wake_wr: OwnedFd,
    owner: ThreadId,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Callbacks never run under this lock, so poisoning cannot come from user code.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes a poll in progress, unless the caller is the loop thread itself (R41).
    /// A full pipe already holds a wake-up: that counts as success (R45).
    fn wake(&self) {
        if thread::current().id() != self.owner {
            let _ = rustix::io::write(&self.wake_wr, &[1]);
        }
    }

    fn drain_wake(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = rustix::io::read(&self.wake_rd, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

/// The vtable side of [`PollLoop`]: what [`Loop`] handles point to.
struct PollHandle {
    shared: Arc<Shared>,
}

fn arm(interval: Interval, now: Instant) -> Option<Instant> {
    interval.and_then(|d| now.checked_add(d))
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; no memory is passed.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

impl Backend for PollHandle {
    fn add_watch(
        &self,
        fd: RawFd,
        events: IoEvents,
        callback: WatchCallback,
    ) -> Result<WatchId, Rejected<WatchCallback>> {
        let mut st = self.shared.lock();
        let refused = if st.gone {
            Some(Error::LoopGone)
        } else if fd < 0 {
            Some(Error::InvalidFd {
                fd,
                reason: "negative",
            })
        } else if events.unknown_bits() != 0 {
            let bits = events.unknown_bits();
            Some(Error::UnknownEvents { fd, bits })
        } else if !fd_is_open(fd) {
            Some(Error::InvalidFd {
                fd,
                reason: "not open",
            })
        } else {
            None
        };
        if let Some(error) = refused {
            return Err(Rejected::new(error, callback));
        }
        let Some(id) = WatchId::try_allocate() else {
            let error = Error::Exhausted { what: "handle ids" };
            return Err(Rejected::new(error, callback));
        };
        st.watches.insert(
            id,
            HandleEntry {
                fd,
                events,
                callback: Some(callback),
            },
        );
        drop(st);
        self.shared.wake();
        Ok(id)
    }

    fn update_watch(&self, id: WatchId, events: IoEvents) -> Result<()> {
        let mut st = self.shared.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        let entry = st.watches.get_mut(&id).ok_or(Error::not_found(id))?;
        if events.unknown_bits() != 0 {
            let (fd, bits) = (entry.fd, events.unknown_bits());
            return Err(Error::UnknownEvents { fd, bits });
        }
        if entry.events == events {
            return Ok(()); // R5: the same set again is a no-op
        }
        entry.events = events;
        drop(st);
        self.shared.wake();
        Ok(())
    }

    fn remove_watch(&self, id: WatchId) -> Result<()> {
        let mut st = self.shared.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        let entry = st.watches.remove(&id).ok_or(Error::not_found(id))?;
        st.frees.push(Free::Handle(id, entry.callback));
        drop(st);
        self.shared.wake();
        Ok(())
    }

    fn add_timer(
        &self,
        interval: Interval,
        callback: TimerCallback,
    ) -> Result<TimerId, Rejected<TimerCallback>> {
        let mut st = self.shared.lock();
        if st.gone {
            return Err(Rejected::new(Error::LoopGone, callback));
        }
        let Some(id) = TimerId::try_allocate() else {
            let error = Error::Exhausted {
                what: "timeout ids",
            };
            return Err(Rejected::new(error, callback));
        };
        let entry = TimerEntry {
            interval,
            deadline: arm(interval, Instant::now()),
            callback: Some(callback),
        };
        st.timers.insert(id, entry);
        drop(st);
        self.shared.wake();
        Ok(id)
    }

    fn update_timer(&self, id: TimerId, interval: Interval) -> Result<()> {
        let mut st = self.shared.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        let entry = st.timers.get_mut(&id).ok_or(Error::not_found(id))?;
        entry.interval = interval;
        entry.deadline = arm(interval, Instant::now()); // R29: always restart
        drop(st);
        self.shared.wake();
        Ok(())
    }

    fn remove_timer(&self, id: TimerId) -> Result<()> {
        let mut st = self.shared.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        let entry = st.timers.remove(&id).ok_or(Error::not_found(id))?;
        st.frees.push(Free::Timeout(id, entry.callback));
        drop(st);
        self.shared.wake();
        Ok(())
    }
}

/// The reference loop: create it, take [`handle`](LoopUnderTest::handle)s, iterate it with
/// [`run_once`](LoopUnderTest::run_once) or [`run`](LoopUnderTest::run) on the creating thread.
pub struct PollLoop {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PollLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollLoop").finish_non_exhaustive()
    }
}

const POLL_TO_EVENTS: [(i16, IoEvents); 5] = [
    (libc::POLLIN, IoEvents::READABLE),
    (libc::POLLOUT, IoEvents::WRITABLE),
    (libc::POLLERR, IoEvents::ERROR),
    (libc::POLLHUP, IoEvents::HANGUP),
    (libc::POLLNVAL, IoEvents::ERROR), // R9: an invalid fd is reported as ERROR
];

fn poll_interest(events: IoEvents) -> i16 {
    let mut bits = 0;
    if events.contains(IoEvents::READABLE) {
        bits |= libc::POLLIN;
    }
    if events.contains(IoEvents::WRITABLE) {
        bits |= libc::POLLOUT;
    }
    bits
}

fn poll_ready(revents: i16) -> IoEvents {
    POLL_TO_EVENTS
        .iter()
        .filter(|(bit, _)| revents & bit != 0)
        .fold(IoEvents::empty(), |acc, (_, ev)| acc | *ev)
}

/// `poll(2)` until it returns something other than EINTR/EAGAIN (R55), never past `deadline`.
fn poll_fds(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> Result<()> {
    loop {
        let ms = match deadline {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                // Round up so that a timer is never polled for too short (R31), clamp (R38).
                let ms = left.as_nanos().div_ceil(1_000_000);
                ms.min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: `fds` is a live, exclusively borrowed slice of `pollfd`s of that length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n >= 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
            _ => {
                return Err(Error::Os {
                    op: "poll",
                    fd: None,
                    source: err,
                })
            }
        }
    }
}

impl PollLoop {
    /// A new loop, owned by the calling thread.
    ///
    /// # Errors
    /// [`Error::Os`] if the self-pipe cannot be created.
    pub fn new() -> Result<PollLoop> {
        let flags = rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC;
        let (wake_rd, wake_wr) = rustix::pipe::pipe_with(flags).map_err(|e| Error::Os {
            op: "pipe2",
            fd: None,
            source: e.into(),
        })?;
        Ok(PollLoop {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake_rd,
                wake_wr,
                owner: thread::current().id(),
            }),
        })
    }

    /// Asks `run` to return after the current iteration; from any thread (R47).
    pub fn quit(&self) {
        self.shared.lock().quit = true;
        self.shared.wake();
    }

    /// Drops pending frees with the lock released, in removal order (R24, R26).
    fn run_frees(&self) -> Option<Error> {
        let frees = std::mem::take(&mut self.shared.lock().frees);
        let mut error = None;
        for free in frees {
            let (id, result): (RegistrationId, _) = match free {
                Free::Handle(id, cb) => (
                    id.into(),
                    panic::catch_unwind(AssertUnwindSafe(|| drop(cb))),
                ),
                Free::Timeout(id, cb) => (
                    id.into(),
                    panic::catch_unwind(AssertUnwindSafe(|| drop(cb))),
                ),
            };
            if let Err(payload) = result {
                error.get_or_insert(Error::panicked(id, &*payload));
            }
        }
        error
    }

    /// Puts a handle callback back after it ran, or hands it to its pending free (R16, R22).
    fn put_back_handle(st: &mut State, id: WatchId, cb: WatchCallback) {
        if let Some(entry) = st.watches.get_mut(&id) {
            entry.callback = Some(cb);
            return;
        }
        for free in st.frees.iter_mut() {
            if let Free::Handle(fid, slot @ None) = free {
                if *fid == id {
                    *slot = Some(cb);
                    return;
                }
            }
        }
    }

    fn put_back_timeout(st: &mut State, id: TimerId, cb: TimerCallback) {
        if let Some(entry) = st.timers.get_mut(&id) {
            entry.callback = Some(cb);
            return;
        }
        for free in st.frees.iter_mut() {
            if let Free::Timeout(fid, slot @ None) = free {
                if *fid == id {
                    *slot = Some(cb);
                    return;
                }
            }
        }
    }

    fn iterate(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let mut first_error = self.run_frees();
        let start = Instant::now();

        // Snapshot under the lock, after draining the self-pipe (R40).
        let st = self.shared.lock();
        self.shared.drain_wake();
        let mut fds = vec![libc::pollfd {
            fd: self.shared.wake_rd.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut ids = Vec::new();
        for (id, entry) in &st.watches {
            if !entry.events.is_empty() {
                // R10: a disabled watch is not polled at all.
                fds.push(libc::pollfd {
                    fd: entry.fd,
                    events: poll_interest(entry.events),
                    revents: 0,
                });
                ids.push(*id);
            }
        }
        // A timeout too large to represent is "forever" (R38).
        let mut deadline = timeout.and_then(|t| start.checked_add(t));
        for timer in st.timers.values() {
            if timer.interval.is_some() {
                if let Some(at) = timer.deadline {
                    deadline = Some(deadline.map_or(at, |d| d.min(at)));
                }
            }
        }
        drop(st);

        poll_fds(&mut fds, deadline)?;

        // Dispatch. Timers first (an arbitrary choice, D11), in deadline order (R33).
        let now = Instant::now();
        let mut ran = 0;
        let mut st = self.shared.lock();
        let mut due: Vec<(Instant, TimerId)> = st
            .timers
            .iter()
            .filter(|(_, t)| t.interval.is_some())
            .filter_map(|(id, t)| t.deadline.filter(|d| *d <= now).map(|d| (d, *id)))
            .collect();
        due.sort(); // equal deadlines: by id, i.e. creation order
        for (_, id) in due {
            // Re-check: an earlier callback may have removed, disabled or restarted it (R34).
            let Some(timer) = st.timers.get_mut(&id) else {
                continue;
            };
            if timer.interval.is_none() || timer.deadline.is_none_or(|d| d > now) {
                continue;
            }
            let Some(mut cb) = timer.callback.take() else {
                continue;
            };
            // R30: the next deadline counts from this firing; no catch-up.
            timer.deadline = arm(timer.interval, Instant::now());
            drop(st);
            let result = panic::catch_unwind(AssertUnwindSafe(|| cb.call(id)));
            ran += 1;
            st = self.shared.lock();
            Self::put_back_timeout(&mut st, id, cb);
            if let Err(payload) = result {
                first_error.get_or_insert(Error::panicked(id, &*payload));
            }
        }

        for (k, id) in ids.iter().enumerate() {
            let revents = fds[k + 1].revents;
            if revents == 0 {
                continue;
            }
            // Removed by an earlier callback: never started again (R15).
            let Some(entry) = st.watches.get_mut(id) else {
                continue;
            };
            // R11/R18: only bits of the *current* interest, plus ERROR/HANGUP.
            let deliver = entry.events.deliverable(poll_ready(revents));
            if revents & libc::POLLNVAL != 0 {
                entry.events = IoEvents::empty(); // R52: ERROR once, then disabled
            }
            if deliver.is_empty() {
                continue;
            }
            let Some(mut cb) = entry.callback.take() else {
                continue;
            };
            let fd = entry.fd;
            drop(st);
            let result = panic::catch_unwind(AssertUnwindSafe(|| cb.call(*id, fd, deliver)));
            ran += 1;
            st = self.shared.lock();
            Self::put_back_handle(&mut st, *id, cb);
            if let Err(payload) = result {
                first_error.get_or_insert(Error::panicked(*id, &*payload));
            }
        }
        drop(st);

        if let Some(err) = self.run_frees() {
            first_error.get_or_insert(err);
        }
        self.shared.lock().iterations += 1;
        match first_error {
            Some(err) => Err(err),
            None => Ok(ran),
        }
    }
}

impl LoopUnderTest for PollLoop {
    fn handle(&self) -> Loop {
        Loop::new(PollHandle {
            shared: self.shared.clone(),
        })
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        self.iterate(timeout)
    }

    fn run(&mut self) -> Result<()> {
        loop {
            {
                let mut st = self.shared.lock();
                if st.quit {
                    st.quit = false;
                    return Ok(());
                }
            }
            self.iterate(None)?;
        }
    }

    fn quitter(&self) -> Quitter {
        let shared = self.shared.clone();
        Arc::new(move || {
            shared.lock().quit = true;
            shared.wake();
        })
    }

    fn stats(&self) -> LoopStats {
        let st = self.shared.lock();
        LoopStats {
            watches: st.watches.len(),
            timers: st.timers.len(),
            pending_frees: st.frees.len(),
            iterations: st.iterations,
        }
    }
}

impl Drop for PollLoop {
    /// Destruction: every registration still present is freed here, exactly once (R23, R48).
    fn drop(&mut self) {
        let (handles, timers, frees) = {
            let mut st = self.shared.lock();
            st.gone = true;
            (
                std::mem::take(&mut st.watches),
                std::mem::take(&mut st.timers),
                std::mem::take(&mut st.frees),
            )
        };
        // A panicking free must not abort the process from inside a drop.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| drop(frees)));
        for (_, entry) in handles {
            let _ = panic::catch_unwind(AssertUnwindSafe(|| drop(entry)));
        }
        for (_, entry) in timers {
            let _ = panic::catch_unwind(AssertUnwindSafe(|| drop(entry)));
        }
    }
}
