//! The kit's self-check: a tiny, obviously correct poll(2) backend.
//!
//! It exists for two reasons. The battery runs against it (`tests/tests/reference.rs`), so a
//! scenario that fails here is a bug in the kit, not in a backend. And it is a readable
//! example for third-party authors: the whole contract in one file, with no cleverness.
//!
//! Design, top to bottom: one `Mutex` over plain maps of entries (ids are process-wide and
//! increasing, so map order is creation order); a non-blocking self-pipe that every operation from
//! a foreign thread writes to ([R40](anyloop::contract#r40)); each iteration drains the self-pipe,
//! snapshots the enabled fds and the earliest timer deadline, `poll(2)`s without the lock, then
//! dispatches due timers (deadline order, [R33](anyloop::contract#r33)) and ready fds, taking each
//! callback out of its entry and calling it with the lock released ([R43](anyloop::contract#r43)).
//! A removed entry's callback goes to a list of pending frees, dropped at the start and end of
//! every iteration with the lock released, in removal order ([R21–R26](anyloop::contract#r21)). A
//! `wake()` or a quit request is also remembered in the state until a wait ends, so one that
//! comes just before the loop's next wait (whose snapshot drains the self-pipe) still ends it
//! ([R46](anyloop::contract#r46), [R47](anyloop::contract#r47)). It depends on `anyloop`'s vtable
//! types only, none of the building blocks the real backends share, so it checks the kit
//! independently.
//!
//! Thread-bound callbacks (`WatchCallback::local`, `Loop::timer_local`...) are checked before every
//! call: the loop thread is the creating thread, then whichever thread last iterated the loop
//! ([`Backend::loop_thread`] names it); a thread-bound callback of another thread is never called
//! (the iteration reports `Error::WrongThread` naming it, [R42](anyloop::contract#r42)) and its
//! drop is left to the callback itself (it waits for its own thread).
//!
//! `Schedule::Once` timers are disabled as they fire, before their callback runs
//! ([R27](anyloop::contract#r27)), so the callback reads `Disabled` and may re-arm its own timer
//! ([R36](anyloop::contract#r36)).
//!
//! A watched fd closed under its watch ([R52](anyloop::contract#r52)): `poll(2)` watches
//! numbers, not files, so each watch remembers the file its number named when it was added or
//! last updated (device and inode, from `fstat`), and every report is checked against the file
//! the number names now. A number found closed (`POLLNVAL`) or naming another file (reused) is
//! reported to the watch as `ERROR`, once: its interest is emptied as the `ERROR` is delivered,
//! so it is silent until updated or removed, and it never hears the new file. That costs an
//! `fstat` per report.
//!
//! It is slow by design (poll(2) over every fd, linear scans): do not use it in production.
//! Iterate the loop on the thread that created it.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{
    Backend, Error, IoEvents, Loop, LoopStats, Quitter, RegistrationId, Rejected, Result, Runner,
    Schedule, TimerCallback, TimerId, WatchCallback, WatchId,
};

use crate::harness::LoopFactory;

/// The reference backend's factory, for [`conformance_tests!`](crate::conformance_tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceBackend;

impl LoopFactory for ReferenceBackend {
    fn name(&self) -> String {
        "reference-poll".to_owned()
    }

    fn create(&self) -> Result<Box<dyn Runner>> {
        Ok(Box::new(PollLoop::new()?))
    }
}

struct HandleEntry {
    fd: RawFd,
    events: IoEvents,
    /// The file `fd` named when the watch was added or last updated; `None` if it named none
    /// ([R52](anyloop::contract#r52)).
    file: Option<FileId>,
    /// `None` while the callback runs (taken out of the entry).
    callback: Option<WatchCallback>,
}

struct TimerEntry {
    schedule: Schedule,
    /// `None` when disabled or too far away to represent ("never").
    deadline: Option<Instant>,
    callback: Option<TimerCallback>,
}

/// A pending free; the callback is `None` while it is still running ([R22](anyloop::contract#r22)).
enum Free {
    Handle(WatchId, Option<WatchCallback>),
    Timeout(TimerId, Option<TimerCallback>),
}

struct State {
    gone: bool,
    quit: bool,
    /// A `wake()` or quit request not yet seen by a wait: the next wait must not block
    /// ([R46](anyloop::contract#r46), [R47](anyloop::contract#r47)).
    woken: bool,
    iterations: u64,
    /// The loop thread: the creating thread, then whichever thread last iterated the loop.
    thread: ThreadId,
    watches: BTreeMap<WatchId, HandleEntry>,
    timers: BTreeMap<TimerId, TimerEntry>,
    frees: Vec<Free>,
}

struct Shared {
    state: Mutex<State>,
    wake_rd: OwnedFd,
    wake_wr: OwnedFd,
    /// Whether reports are checked against the watch's file (R52); off only in the kit's own
    /// test that the kit catches a backend without it.
    check_identity: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Callbacks never run under this lock, so poisoning cannot come from user code.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes a poll in progress, unless the caller is the loop thread itself
    /// ([R41](anyloop::contract#r41)), read from the state the caller still holds locked. A full
    /// pipe already holds a wake-up: that counts as success ([R45](anyloop::contract#r45)).
    fn wake_unless_loop_thread(&self, st: MutexGuard<'_, State>) {
        let loop_thread = st.thread;
        drop(st);
        if thread::current().id() != loop_thread {
            self.write_wake();
        }
    }

    /// Writes one wake-up byte, from any thread.
    fn write_wake(&self) {
        let _ = rustix::io::write(&self.wake_wr, &[1]);
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

/// The deadline of a schedule armed at `now`; `None` for disabled or beyond representation
/// ([R38](anyloop::contract#r38): "never", not an overflow).
fn arm(schedule: Schedule, now: Instant) -> Option<Instant> {
    schedule.delay().and_then(|d| now.checked_add(d))
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; no memory is passed.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// A file, as `fstat` names it: device and inode.
type FileId = (u64, u64);

/// The file `fd` names now; `None` if it is not open.
fn file_of(fd: RawFd) -> Option<FileId> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one `stat` into the live, exclusively borrowed `st`; a number that
    // is not open is just EBADF.
    let rc = unsafe { libc::fstat(fd, &mut st) };
    (rc == 0).then_some((st.st_dev, st.st_ino))
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
                file: file_of(fd),
                callback: Some(callback),
            },
        );
        self.shared.wake_unless_loop_thread(st);
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
        // R53: after the number was reused, an update addresses the file it names now.
        entry.file = file_of(entry.fd);
        self.shared.wake_unless_loop_thread(st);
        Ok(())
    }

    fn remove_watch(&self, id: WatchId) -> Result<()> {
        let mut st = self.shared.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        let entry = st.watches.remove(&id).ok_or(Error::not_found(id))?;
        st.frees.push(Free::Handle(id, entry.callback));
        self.shared.wake_unless_loop_thread(st);
        Ok(())
    }

    fn add_timer(
        &self,
        schedule: Schedule,
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
            schedule,
            deadline: arm(schedule, Instant::now()),
            callback: Some(callback),
        };
        st.timers.insert(id, entry);
        self.shared.wake_unless_loop_thread(st);
        Ok(id)
    }

    fn update_timer(&self, id: TimerId, schedule: Schedule) -> Result<()> {
        let mut st = self.shared.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        let entry = st.timers.get_mut(&id).ok_or(Error::not_found(id))?;
        entry.schedule = schedule;
        entry.deadline = arm(schedule, Instant::now()); // R29: always restart
        self.shared.wake_unless_loop_thread(st);
        Ok(())
    }

    fn remove_timer(&self, id: TimerId) -> Result<()> {
        let mut st = self.shared.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        let entry = st.timers.remove(&id).ok_or(Error::not_found(id))?;
        st.frees.push(Free::Timeout(id, entry.callback));
        self.shared.wake_unless_loop_thread(st);
        Ok(())
    }

    fn timer_schedule(&self, id: TimerId) -> Result<Schedule> {
        let st = self.shared.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        st.timers
            .get(&id)
            .map(|entry| entry.schedule)
            .ok_or(Error::not_found(id))
    }

    fn stats(&self) -> LoopStats {
        let st = self.shared.lock();
        if st.gone {
            return LoopStats::default(); // R48: all zero once the loop is gone
        }
        LoopStats {
            watches: st.watches.len(),
            timers: st.timers.len(),
            pending_frees: st.frees.len(),
            iterations: st.iterations,
        }
    }

    fn wake(&self) {
        let mut st = self.shared.lock();
        if !st.gone {
            // Remembered in the state, not only in the pipe: a wake that comes before the
            // loop's next wait must still end that wait, although the loop drains the pipe
            // before it takes its snapshot.
            st.woken = true;
            self.shared.wake_unless_loop_thread(st);
        }
    }

    fn loop_thread(&self) -> Option<ThreadId> {
        let st = self.shared.lock();
        (!st.gone).then_some(st.thread)
    }

    fn is_alive(&self) -> bool {
        !self.shared.lock().gone
    }
}

/// The reference loop: create it, take [`handle`](Runner::handle)s, iterate it with
/// [`run_once`](Runner::run_once), [`run`](Runner::run) or [`run_until`](Runner::run_until)
/// on the creating thread.
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

/// `poll(2)` until it returns something other than EINTR/EAGAIN ([R55](anyloop::contract#r55)),
/// never past `deadline`.
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
        PollLoop::checking_identity(true)
    }

    /// A loop that checks, or does not check, that a reported number still names its watch's
    /// file. Without the check it breaks [R52](anyloop::contract#r52) on purpose (a watch whose
    /// number was closed and reused hears the new file), as a backend written by hand easily
    /// does: the kit's own tests run the battery on it to show that the kit catches that.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn checking_identity(check_identity: bool) -> Result<PollLoop> {
        let flags = rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC;
        let (wake_rd, wake_wr) = rustix::pipe::pipe_with(flags).map_err(|e| Error::Os {
            op: "pipe2",
            fd: None,
            source: e.into(),
        })?;
        let state = State {
            gone: false,
            quit: false,
            woken: false,
            iterations: 0,
            thread: thread::current().id(),
            watches: BTreeMap::new(),
            timers: BTreeMap::new(),
            frees: Vec::new(),
        };
        Ok(PollLoop {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                wake_rd,
                wake_wr,
                check_identity,
            }),
        })
    }

    /// Asks `run` to return after the current iteration; from any thread
    /// ([R47](anyloop::contract#r47)).
    pub fn quit(&self) {
        request_quit(&self.shared);
    }

    /// Drops pending frees with the lock released, in removal order ([R24](anyloop::contract#r24),
    /// [R26](anyloop::contract#r26)).
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

    /// Puts a handle callback back after it ran, or hands it to its pending free
    /// ([R16](anyloop::contract#r16), [R22](anyloop::contract#r22)).
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
        // Whoever iterates the loop is its loop thread from now on (R42, R50).
        let here = thread::current().id();
        self.shared.lock().thread = here;
        // Frees left over from removals made while the loop was not running are user code:
        // an iteration that ran some does not block (R46).
        let freed_early = !self.shared.lock().frees.is_empty();
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
        // A timeout too large to represent is "forever" (R38); a pending wake-up (R46) or
        // quit request (R47) makes the wait return at once.
        let mut deadline = timeout.and_then(|t| start.checked_add(t));
        if st.woken || freed_early {
            deadline = Some(start);
        }
        // Disabled timers (and fired `Once` ones) have no deadline.
        for at in st.timers.values().filter_map(|timer| timer.deadline) {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        drop(st);

        poll_fds(&mut fds, deadline)?;

        // Dispatch. Timers first (an arbitrary choice, D11), in deadline order (R33).
        let now = Instant::now();
        let mut ran = 0;
        let mut st = self.shared.lock();
        // This wait is over: every wake-up requested so far has been served by it.
        st.woken = false;
        let mut due: Vec<(Instant, TimerId)> = st
            .timers
            .iter()
            .filter_map(|(id, t)| t.deadline.filter(|d| *d <= now).map(|d| (d, *id)))
            .collect();
        due.sort(); // equal deadlines: by id, i.e. creation order
        for (_, id) in due {
            // Re-check: an earlier callback may have removed, disabled or restarted it (R34).
            let Some(timer) = st.timers.get_mut(&id) else {
                continue;
            };
            if timer.deadline.is_none_or(|d| d > now) {
                continue;
            }
            match timer.schedule {
                // R27: a one-shot is disabled as it fires, before its callback runs (which
                // may re-arm it, R36).
                Schedule::Once(_) => {
                    timer.schedule = Schedule::Disabled;
                    timer.deadline = None;
                }
                // R30: the next deadline counts from this firing; no catch-up.
                schedule => timer.deadline = arm(schedule, Instant::now()),
            }
            // R42: a thread-bound callback of another thread is not called here.
            if timer.callback.as_ref().is_some_and(|cb| !cb.runs_here()) {
                first_error.get_or_insert(off_thread(id.into()));
                continue;
            }
            let Some(mut cb) = timer.callback.take() else {
                continue;
            };
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
            // R52: a number closed (POLLNVAL) or naming another file than the watch's is
            // reported as ERROR, once (the interest is emptied), never as the new file's
            // readiness.
            let closed = revents & libc::POLLNVAL != 0
                || (self.shared.check_identity && file_of(entry.fd) != entry.file);
            let ready = if closed {
                IoEvents::ERROR
            } else {
                poll_ready(revents)
            };
            // R11/R18: only bits of the *current* interest, plus ERROR/HANGUP.
            let deliver = entry.events.deliverable(ready);
            if closed {
                entry.events = IoEvents::empty(); // R52: ERROR once, then disabled
            }
            if deliver.is_empty() {
                continue;
            }
            if entry.callback.as_ref().is_some_and(|cb| !cb.runs_here()) {
                first_error.get_or_insert(off_thread((*id).into()));
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

/// The error for a due thread-bound callback of another thread, which is not called
/// ([R42](anyloop::contract#r42)).
fn off_thread(id: RegistrationId) -> Error {
    Error::WrongThread {
        id: Some(id),
        what: "a thread-bound callback was due, but the loop runs on another thread: not called",
    }
}

/// Sets the quit flag and wakes the loop unless this is the loop thread
/// ([R47](anyloop::contract#r47)).
fn request_quit(shared: &Shared) {
    let mut st = shared.lock();
    st.quit = true;
    st.woken = true; // the next wait ends even if the request beats it (R47)
    shared.wake_unless_loop_thread(st);
}

impl Runner for PollLoop {
    fn handle(&self) -> Loop {
        Loop::new(PollHandle {
            shared: self.shared.clone(),
        })
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        self.iterate(timeout)
    }

    fn quitter(&self) -> Quitter {
        let shared = self.shared.clone();
        Quitter::new(move || request_quit(&shared))
    }

    fn take_quit(&mut self) -> bool {
        std::mem::take(&mut self.shared.lock().quit)
    }
}

impl Drop for PollLoop {
    /// Destruction: every registration still present is freed here, exactly once
    /// ([R23](anyloop::contract#r23), [R48](anyloop::contract#r48)).
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
