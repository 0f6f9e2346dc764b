//! [`HostedEngine`]: the engine as one fd and one deadline in a loop that someone else runs
//! (the crate documentation walks a host loop through it).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyloop::{Error, Loop, LoopStats, Quitter, Result};

use crate::clock::NextIteration;
use crate::dispatch::Engine;
use crate::poller::Poller;
use crate::table::Shared;

/// A level-triggered OS layer whose readiness a host loop can watch through one fd (an epoll
/// instance, a kqueue): what [`HostedEngine`] needs of its poller.
pub trait HostPoller: Poller {
    /// The fd that is readable while a watched fd is ready or a wake-up is pending, shared:
    /// the hosted engine keeps it open for as long as the host may poll it. Its number stays
    /// the same for the poller's life (a rebuild, [`Registrar::reset`](crate::Registrar::reset),
    /// may replace the file behind it).
    fn host_fd(&self) -> Arc<OwnedFd>;
}

/// `wake_at` when there is no deadline.
const NO_DEADLINE: u64 = u64::MAX;

/// A number per thread, never 0: what [`HostedEngine`] records of the thread its dispatch runs
/// on (a `ThreadId` has no stable number to store in an atomic).
fn thread_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static KEY: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    KEY.try_with(|key| *key).unwrap_or(u64::MAX)
}

/// What a host loop does with the engine's fd in its next poll: the answer of
/// [`HostedEngine::prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostWait {
    next: NextIteration,
    poll_fd: bool,
}

impl HostWait {
    /// Whether to put the engine's fd in this poll (for readability). False while one of the
    /// engine's own callbacks runs a nested iteration of the host, and once the engine was
    /// closed: leave the fd out (or poll it for no event).
    pub fn poll_fd(&self) -> bool {
        self.poll_fd
    }

    /// When the engine needs an iteration if its fd stays quiet.
    pub fn next(&self) -> NextIteration {
        self.next
    }

    /// Whether the engine needs an iteration at `now` whatever its fd says: the host must not
    /// block (a timer is due, a free or a quit is pending, an always-ready fd is enabled).
    pub fn is_due(&self, now: Instant) -> bool {
        self.next.is_due(now)
    }

    /// How long the host may block from `now`: `None` for no limit, zero when due. Never
    /// early for a timer ([R31](anyloop::contract#r31)); combine it with the host's own
    /// deadlines (take the smaller).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.next.timeout(now)
    }

    /// [`timeout`](Self::timeout) in `poll(2)`'s terms: milliseconds rounded *up* (a timer is
    /// never early, [R31](anyloop::contract#r31)), `-1` for no limit.
    pub fn timeout_ms(&self, now: Instant) -> i32 {
        self.next.timeout_ms(now)
    }
}

/// The engine hosted in another loop, as one fd and one deadline: see the [crate
/// documentation](crate#hosting-the-engine-in-your-own-loop) for the three calls a host makes
/// (before its poll, after it, the outcome).
///
/// Every method takes `&self`: a single-threaded host shares the engine between its hooks with
/// an `Rc` (no `RefCell`), a host that may iterate on several threads (a GLib context) with an
/// `Arc`. The engine behind it is locked for the length of one dispatch.
///
/// **Nesting.** A callback may run the host's loop again (a modal dialog's nested main loop).
/// Inside it, [`prepare`](Self::prepare) answers "do not poll the fd, no deadline"
/// ([`HostWait::poll_fd`] is false), [`check`](Self::check) answers false and
/// [`dispatch`](Self::dispatch) does nothing: the engine is not re-entered, and the host does
/// not spin on the level-triggered fd that the outer dispatch has not drained. The host's other
/// sources run as usual; anyloop's callbacks wait until the outer callback returns, as GLib does
/// for a source that does not recurse.
///
/// **Quit.** The [`quitter`](Self::quitter) wakes a host blocked in its poll; the next dispatch
/// consumes the request and keeps it for [`take_quit`](Self::take_quit), so a quit never makes
/// a host that ignores it (a GTK application) spin.
///
/// **The fd** is level-triggered: readable while a watched fd is ready or a wake-up is pending.
/// Its number stays the same for this value's life; the file behind it may be replaced when the
/// engine rebuilds its kernel state ([B62](anyloop::contract#b62)), which a host that polls by
/// number (`poll(2)`, GLib) never notices and a host that registers fds by file (epoll,
/// calloop, tokio) must follow ([`fd_replaced`](Self::fd_replaced)). An edge-triggered host
/// (tokio's reactor) keeps treating the fd as readable until a dispatch found it quiet
/// ([`fd_found_quiet`](Self::fd_found_quiet)).
///
/// **Destruction.** Dropping the `HostedEngine`, or [`close`](Self::close), frees every
/// remaining callback exactly once on the calling thread ([R48](anyloop::contract#r48)); from
/// inside one of its own callbacks that happens right after that dispatch returns. The fd stays
/// open (and quiet) until the `HostedEngine` itself is dropped.
///
/// One iteration of a host loop that polls with `poll(2)` (here through `rustix`), with the
/// engine's fd beside the host's own:
///
/// ```
/// use anyloop::Schedule;
/// use anyloop_engine::HostedEngine;
/// use rustix::event::{poll, PollFd, PollFlags, Timespec};
/// use std::time::{Duration, Instant};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let host = HostedEngine::epoll()?;
/// let lp = host.handle(); // what libraries store
/// let _tick = lp.timer(Schedule::Once(Duration::from_millis(1)), |_id| println!("tick"))?;
///
/// // Before the poll: the engine's fd and how long the host may block.
/// let wait = host.prepare();
/// let mut fds = vec![/* the host's own fds... */];
/// if wait.poll_fd() {
///     fds.push(PollFd::new(&host, PollFlags::IN));
/// }
/// let timeout = wait.timeout(Instant::now()).map(Timespec::try_from).transpose()?;
/// poll(&mut fds, timeout.as_ref())?;
/// // After the poll: dispatch if the fd was readable or the deadline came.
/// let readable = fds.last().is_some_and(|fd| !fd.revents().is_empty());
/// host.after_poll(readable);
/// assert_eq!(host.take_outcome()?, 1, "the timer fired");
/// # Ok(())
/// # }
/// ```
pub struct HostedEngine<P: HostPoller> {
    /// `None` once closed.
    engine: Mutex<Option<Engine<P>>>,
    shared: Arc<Shared<P::Registrar>>,
    handle: Loop,
    /// The poller's fd, kept open as long as a host may poll it (after `close` too).
    fd: Arc<OwnedFd>,
    /// Base of `wake_at`.
    epoch: Instant,
    /// The deadline of the last `prepare`, in nanoseconds after `epoch` (0: now), or
    /// [`NO_DEADLINE`]: `check` compares it with the clock instead of asking the engine again.
    wake_at: AtomicU64,
    /// Callbacks run by dispatches since `take_outcome`.
    ran: AtomicUsize,
    /// The first error of a dispatch since `take_outcome`.
    error: Mutex<Option<Error>>,
    /// A quit request consumed by a dispatch, kept for `take_quit`.
    quit: AtomicBool,
    /// `close` was called from inside a dispatch: drop the engine when it returns.
    dispose: AtomicBool,
    /// `close` was called: `prepare` answers "do not poll" without taking a lock.
    closed: AtomicBool,
    /// Engine rebuilds the host has been told of (`fd_replaced`).
    resets_seen: AtomicU64,
    /// The last dispatch's look at the fd found it quiet.
    found_quiet: AtomicBool,
    /// The thread running one of this engine's dispatches or drains ([`thread_key`]), 0 when
    /// none: its callbacks and frees run then, and a nested host iteration on that thread must
    /// not re-enter the engine. Per engine, so that two hosted engines nest in any order.
    dispatching: AtomicU64,
}

impl<P: HostPoller> std::fmt::Debug for HostedEngine<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedEngine")
            .field("fd", &self.fd.as_raw_fd())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Never held around user code except the engine's own, whose callbacks' panics are caught
    // inside the engine: a poisoned lock still holds consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(target_os = "linux")]
impl HostedEngine<crate::linux::EpollPoller> {
    /// An engine on its own level-triggered epoll instance (with its wake-up eventfd), ready
    /// to be hosted.
    ///
    /// # Errors
    /// [`Error::Os`] if the epoll instance or the eventfd cannot be created (e.g. `EMFILE`).
    pub fn epoll() -> Result<Self> {
        let (poller, registrar) = crate::linux::new_epoll().map_err(|source| Error::Os {
            op: "creating the epoll instance",
            fd: None,
            source,
        })?;
        Ok(HostedEngine::new(Engine::new(poller, registrar)))
    }
}

impl<P: HostPoller> HostedEngine<P> {
    /// Hosts `engine`. Its poller must be level-triggered: the host polls one fd for it.
    pub fn new(engine: Engine<P>) -> Self {
        const {
            assert!(
                !P::EDGE_TRIGGERED,
                "a hosted poller must be level-triggered"
            )
        };
        let shared = engine.shared().clone();
        let resets = shared.resets();
        HostedEngine {
            handle: engine.handle(),
            fd: engine.poller().host_fd(),
            engine: Mutex::new(Some(engine)),
            shared,
            epoch: Instant::now(),
            wake_at: AtomicU64::new(NO_DEADLINE),
            ran: AtomicUsize::new(0),
            error: Mutex::new(None),
            quit: AtomicBool::new(false),
            dispose: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            resets_seen: AtomicU64::new(resets),
            found_quiet: AtomicBool::new(true),
            dispatching: AtomicU64::new(0),
        }
    }

    /// The vtable handle that libraries store; from any thread.
    pub fn handle(&self) -> Loop {
        self.handle.clone()
    }

    /// The engine's table (it implements [`anyloop::Backend`]), for a host that wraps the
    /// vtable in a [`Backend`](anyloop::Backend) of its own (to add a side effect to each op).
    pub fn shared(&self) -> &Arc<Shared<P::Registrar>> {
        &self.shared
    }

    /// The fd to put in the host's poll set, for readability (level-triggered); also through
    /// [`AsFd`]. The number stays the same for this value's whole life, and stays open until it
    /// is dropped (after [`close`](Self::close) it is simply never readable).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// [`fd`](Self::fd)'s number, for a host that takes raw numbers (C APIs).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// True while one of this engine's callbacks (or frees) runs on the calling thread.
    pub fn is_dispatching(&self) -> bool {
        self.dispatching.load(Ordering::SeqCst) == thread_key()
    }

    /// Runs `f` with the engine, marked as dispatching on this thread (see
    /// [`is_dispatching`](Self::is_dispatching)), then drops the engine if it was closed from
    /// inside (with no lock held, [R48](anyloop::contract#r48)). `None` once closed.
    fn with_engine<T>(&self, f: impl FnOnce(&mut Engine<P>) -> T) -> Option<T> {
        let mut guard = lock(&self.engine);
        // Marked and unmarked under the engine's lock, so that a dispatch or drain from another
        // thread, waiting for the lock, never has its mark overwritten by this one.
        self.dispatching.store(thread_key(), Ordering::SeqCst);
        let outcome = guard.as_mut().map(f);
        let disposed = if self.dispose.swap(false, Ordering::SeqCst) {
            guard.take()
        } else {
            None
        };
        self.dispatching.store(0, Ordering::SeqCst);
        drop(guard);
        // Closed by one of its own callbacks or frees: every free runs now.
        drop(disposed);
        outcome
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Before the host's poll, on the thread that iterates the host, every time: whether to
    /// poll the fd and how long the host may block. Opens the host-wait window in which ops
    /// from other threads wake the host through the fd ([R40](anyloop::contract#r40)); the
    /// deadline is kept for [`check`](Self::check). One lock of the engine's table, no clock
    /// read.
    pub fn prepare(&self) -> HostWait {
        if self.is_dispatching() || self.closed.load(Ordering::SeqCst) {
            return HostWait {
                next: NextIteration::OnReadiness,
                poll_fd: false,
            };
        }
        let next = self.shared.host_sleeps();
        let wake_at = match next {
            NextIteration::Now => 0,
            NextIteration::At(at) => {
                u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
                    .map_or(NO_DEADLINE - 1, |at| at.clamp(1, NO_DEADLINE - 1))
            }
            NextIteration::OnReadiness => NO_DEADLINE,
        };
        self.wake_at.store(wake_at, Ordering::Relaxed);
        HostWait {
            next,
            poll_fd: true,
        }
    }

    /// After the host's poll, when its dispatch is a separate step (GLib's *check*): whether to
    /// [`dispatch`](Self::dispatch) now, because the fd was readable or the deadline kept by
    /// [`prepare`](Self::prepare) has come. When not, the host-wait window closes here (ops
    /// from other threads stop writing wake-ups until the next `prepare`). No lock when the fd
    /// was readable.
    pub fn check(&self, fd_readable: bool) -> bool {
        if self.is_dispatching() {
            return false;
        }
        if fd_readable {
            return true;
        }
        let wake_at = self.wake_at.load(Ordering::Relaxed);
        let due = wake_at != NO_DEADLINE
            && (wake_at == 0
                || Instant::now()
                    .saturating_duration_since(self.epoch)
                    .as_nanos()
                    >= u128::from(wake_at));
        if !due {
            self.shared.host_awake();
        }
        due
    }

    /// After the host's poll, when the host decides itself to dispatch (it reported the fd
    /// readable, or a timer of its own armed for the deadline fired): one engine iteration that
    /// does not block. When the host found the fd quiet (`fd_readable` false) the engine does
    /// not ask its poller either (that wait would find nothing; readiness that arrived since
    /// keeps the fd readable for the next poll). Closes the host-wait window. The count of
    /// callbacks and the first error are kept for [`take_outcome`](Self::take_outcome); a
    /// quit request for [`take_quit`](Self::take_quit). Does nothing from inside one of the
    /// engine's own callbacks (a nested host iteration) or once closed.
    pub fn dispatch(&self, fd_readable: bool) {
        if self.is_dispatching() {
            return;
        }
        let outcome = self.with_engine(|engine| {
            let outcome = engine.run_hosted(fd_readable);
            (outcome, engine.last_wait_found())
        });
        if let Some((outcome, found)) = outcome {
            self.found_quiet.store(!found, Ordering::Relaxed);
            self.record(outcome);
        }
        if self.shared.take_quit() {
            self.quit.store(true, Ordering::SeqCst);
        }
    }

    /// [`check`](Self::check), then [`dispatch`](Self::dispatch) if due: the one call after the
    /// poll of a host with a single post-poll hook. `fd_readable`: the poll reported the fd
    /// readable (or in error).
    pub fn after_poll(&self, fd_readable: bool) {
        if self.check(fd_readable) {
            self.dispatch(fd_readable);
        }
    }

    /// The host's poll is over and the host will not dispatch for it: closes the host-wait
    /// window (ops from other threads stop writing wake-ups until the next
    /// [`prepare`](Self::prepare)). Harmless before a `dispatch`, which closes it too.
    pub fn end_wait(&self) {
        if !self.is_dispatching() {
            self.shared.host_awake();
        }
    }

    /// When the engine next needs an iteration if its fd stays quiet, without opening the
    /// host-wait window: for a host that arms a timer of its own for the deadline after a
    /// dispatch (calloop).
    pub fn next_iteration(&self) -> NextIteration {
        self.shared.next_iteration()
    }

    /// Makes the fd readable now (a wake-up): for a host that finds, too late to shorten its
    /// poll's timeout, that the engine needs an iteration sooner.
    pub fn wake(&self) {
        self.shared.wake_host();
    }

    /// `true` once after the engine replaced the file behind [`fd`](Self::fd)
    /// ([B62](anyloop::contract#b62)): a host that registers fds by file (epoll, calloop,
    /// tokio) must register the fd again before it next waits.
    pub fn fd_replaced(&self) -> bool {
        let resets = self.shared.resets();
        self.resets_seen.swap(resets, Ordering::SeqCst) != resets
    }

    /// Whether the last [`dispatch`](Self::dispatch) found the fd quiet (its own zero-timeout
    /// look reported nothing ready). An edge-triggered host keeps treating the fd as readable
    /// until then ([R8](anyloop::contract#r8)): it clears its readiness only after such a
    /// dispatch, never because callbacks ran.
    pub fn fd_found_quiet(&self) -> bool {
        self.found_quiet.load(Ordering::Relaxed)
    }

    fn record(&self, outcome: Result<usize>) {
        match outcome {
            Ok(count) => {
                self.ran.fetch_add(count, Ordering::Relaxed);
            }
            Err(err) => {
                let mut slot = lock(&self.error);
                if slot.is_none() {
                    *slot = Some(err);
                } else {
                    tracing::error!(%err, "anyloop iteration failed (an earlier error is pending)");
                }
            }
        }
    }

    /// How many of this loop's callbacks ran in the dispatches since the last call, or the
    /// first error among them ([R54](anyloop::contract#r54): a callback or free panicked;
    /// the loop stays usable): what the host's `run_once` returns
    /// ([R46](anyloop::contract#r46)). Resets both.
    ///
    /// # Errors
    /// The first error of those dispatches.
    pub fn take_outcome(&self) -> Result<usize> {
        let ran = self.ran.swap(0, Ordering::Relaxed);
        match lock(&self.error).take() {
            Some(err) => Err(err),
            None => Ok(ran),
        }
    }

    /// [`take_outcome`](Self::take_outcome) for a host's `run_once` that drives its loop once,
    /// given what `take_outcome` answered right before that iteration: dispatches someone else
    /// drove since the last `run_once` (a GTK application iterating the context) are not this
    /// iteration's, so their count is dropped, but their first error is reported now, before
    /// this iteration's (which is traced then).
    ///
    /// # Errors
    /// The earlier error, else this iteration's.
    pub fn take_outcome_after(&self, before: Result<usize>) -> Result<usize> {
        let now = self.take_outcome();
        match before {
            Ok(_) => now,
            Err(earlier) => {
                if let Err(err) = now {
                    tracing::error!(%err, "anyloop iteration failed (an earlier error is reported)");
                }
                Err(earlier)
            }
        }
    }

    /// The handle that asks the host's `run` to return, from any thread or callback
    /// ([R47](anyloop::contract#r47)): it wakes a host blocked in its poll, whose next dispatch
    /// consumes the request for [`take_quit`](Self::take_quit).
    pub fn quitter(&self) -> Quitter {
        let shared = self.shared.clone();
        Quitter::new(move || shared.request_quit())
    }

    /// Consumes a pending quit request: `true` once per request.
    pub fn take_quit(&self) -> bool {
        let seen = self.quit.swap(false, Ordering::SeqCst);
        self.shared.take_quit() || seen
    }

    /// Whether a quit request is pending, without consuming it (for a host that must stop its
    /// own loop when asked, as calloop's `LoopSignal`).
    pub fn quit_requested(&self) -> bool {
        self.quit.load(Ordering::SeqCst) || self.shared.quit.load(Ordering::SeqCst)
    }

    /// Runs the pending frees now, without iterating ([R25](anyloop::contract#r25)). Returns
    /// how many ran (0 from inside one of the engine's callbacks: the frees run at the end of
    /// that iteration anyway).
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] if a free panicked.
    pub fn drain(&self) -> Result<usize> {
        if self.is_dispatching() {
            return Ok(0);
        }
        self.with_engine(Engine::drain).unwrap_or(Ok(0))
    }

    /// Live watches, live timers, pending frees and iterations so far
    /// ([R57](anyloop::contract#r57)).
    pub fn stats(&self) -> LoopStats {
        self.shared.stats()
    }

    /// Destroys the engine now: every callback still registered is freed once, on this thread
    /// ([R48](anyloop::contract#r48)), and [`Loop`] handles answer `LoopGone`. From inside one
    /// of its own callbacks (or frees), right after that dispatch returns. [`fd`](Self::fd)
    /// stays open until this value is dropped; from now on [`prepare`](Self::prepare) says not
    /// to poll it (a wake-up pending at the close may leave it readable).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if self.is_dispatching() {
            self.dispose.store(true, Ordering::SeqCst);
            return;
        }
        let engine = lock(&self.engine).take();
        // Lock released: a free may use the vtable (it gets LoopGone) or this value.
        drop(engine);
    }
}

impl<P: HostPoller> AsFd for HostedEngine<P> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

impl<P: HostPoller> Drop for HostedEngine<P> {
    fn drop(&mut self) {
        // The engine's own drop frees everything; taken out first so that no lock of ours is
        // held while user frees run.
        let engine = self
            .engine
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(engine);
    }
}
