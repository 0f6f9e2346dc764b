//! [`LocalDriver`]: the engine driven by a tokio task, from tokio's report to the user's
//! callback.
//!
//! One turn of the driver ([`LocalDriver::run_once`]), top to bottom:
//!
//! 1. **Register** (first turn, and after a reset of the engine's epoll instance,
//!    [B62](anyloop::contract#b62)): the engine's **epoll fd** becomes one
//!    `tokio::io::unix::AsyncFd` in the runtime's reactor, whatever the number of watches
//!    (delivery is O(ready), not O(registered)), and one `timerfd`, another `AsyncFd`, serves
//!    the engine's earliest deadline (the engine's timers stay in its own O(log n) heap).
//! 2. **Prepare**: [`Engine::prepare_host_wait`] says when the engine needs an iteration (now:
//!    a timer is due, a free is pending, an always-ready fd such as a regular file is enabled,
//!    or a quit was requested) and opens the host-wait window, in which an op from another
//!    thread writes the engine's eventfd: the epoll fd becomes readable and tokio wakes the
//!    driver ([R40](anyloop::contract#r40)). An op made on the loop thread by another tokio
//!    task while the driver waits nudges the driver's task instead (see `backend.rs`), which
//!    prepares again ([R41](anyloop::contract#r41)).
//! 3. **Wait**: until tokio reports the epoll fd readable, the timer expires (the engine's
//!    deadline, or the bound of `run_once`), or a nudge. With nothing to wait for, the driver
//!    still yields to tokio once (`tokio::task::yield_now`), so that the runtime's other tasks
//!    and its I/O are never starved by a busy anyloop ([R35](anyloop::contract#r35), for the host).
//! 4. **Iterate**: one [`Engine::run_once`] with a zero timeout runs (it closes the window
//!    under the lock it takes anyway; [`Engine::end_host_wait`] when the turn is dropped): frees, `epoll_wait(0)` on the engine's
//!    epoll, timers then watches, each callback with no lock held, frees again (read
//!    `engine/src/dispatch.rs` for that path). `ERROR` and `HANGUP` are exact: they come from
//!    the engine's epoll, not from tokio's readiness.
//! 5. **Level triggering over tokio's edges** ([R8](anyloop::contract#r8)): tokio keeps
//!    reporting the epoll fd readable until the driver clears that readiness, and the driver
//!    clears it only when the engine's own `epoll_wait` of step 4 found nothing ready: the fd
//!    was re-checked and found not ready, never "a callback ran, so it must be drained". A
//!    watched fd that stays ready keeps the epoll fd ready, so the next turn iterates again
//!    without waiting; readiness that appears after the engine looked is a new edge in
//!    tokio's own epoll, so clearing loses nothing (and tokio ignores a clear made with a
//!    stale readiness tick).
//!
//! **Timers.** The engine's earliest deadline is one `timerfd`, re-armed only when the
//! deadline moves by more than `REARM_SLACK` (a system call); it never expires early
//! ([R31](anyloop::contract#r31)), and the engine decides itself which timers are due, from a
//! fresh clock reading. `deadline.rs` says why it is not a `tokio::time::Sleep` (tokio's
//! millisecond wheel made a 1 ms anyloop timer fire every 2.2 ms), with the figures.

use std::future::poll_fn;
use std::marker::PhantomData;
use std::os::fd::{OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyloop::{Error, Loop, Quitter, Result};
use anyloop_engine::linux::{borrow_fd, new_epoll, EpollRegistrar};

use anyloop_engine::{Engine, NextIteration, Shared};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::backend::{Nudge, TokioBackend};
use crate::deadline::Deadline;
use crate::sys::HostedPoller;

/// The anyloop engine as a tokio task: for an application that already runs tokio and keeps
/// driving its own runtime (a current-thread runtime, or a `LocalSet` on any runtime).
///
/// A `LocalDriver` owns the engine (its own epoll instance, timer heap and registration
/// table). Libraries reach it through the [`Loop`] handle from [`handle`](Self::handle), from
/// any thread; its callbacks run inside the driver's task, so on the thread that polls it,
/// which is the thread that created it: the type is not `Send`, it is polled by a
/// current-thread runtime's `block_on`, or by a task spawned with `tokio::task::spawn_local`
/// on a `tokio::task::LocalSet`. Callbacks may use tokio freely (spawn tasks, create
/// `tokio::net` objects): they run inside the runtime's context.
///
/// Drive it with [`drive`](Self::drive) (a background task until a quit request, the usual
/// case), or with [`run`](Self::run) / [`run_once`](Self::run_once), the async counterparts of
/// [`anyloop::Runner`]'s methods. [`TokioLoop`](crate::TokioLoop) is the same engine with a
/// runtime of its own, for an application that does not run tokio itself.
///
/// ```
/// use anyloop::Schedule;
/// use anyloop_tokio::LocalDriver;
/// use std::time::Duration;
///
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let local = tokio::task::LocalSet::new();
/// let driver = LocalDriver::new()?;
/// let lp = driver.handle(); // what libraries store
/// let quitter = driver.quitter();
/// // The engine runs as one task among the application's others...
/// let engine = local.spawn_local(driver.drive());
/// // ...here a library's one-shot timer ends it.
/// let _timer = lp.timer(Schedule::Once(Duration::from_millis(1)), move |_id| quitter.quit())?;
/// local.block_on(&runtime, engine).unwrap();
/// # Ok::<(), anyloop::Error>(())
/// ```
///
/// Dropping the driver (or the task that owns it) frees every callback still registered,
/// exactly once, on the dropping thread ([R48](anyloop::contract#r48)); [`Loop`] handles that
/// outlive it answer [`Error::LoopGone`].
pub struct LocalDriver {
    /// A duplicate of the engine's epoll fd, in tokio's reactor. It names the epoll instance
    /// it was made from for as long as tokio knows it, also once the engine swapped a fresh
    /// instance in behind its own fd number (a reset, [B62](anyloop::contract#b62)): `None`
    /// until the first turn, and from a reset until the next turn registers the new instance.
    io: Option<AsyncFd<OwnedFd>>,
    /// The one timer in tokio's reactor, for the engine's next deadline (or a `run_once`
    /// bound). Created with `io`.
    deadline: Option<Deadline>,
    /// Resets of the engine's epoll instance that tokio has registered.
    resets_seen: u64,
    resets: Arc<AtomicU64>,
    /// A quit request consumed from the engine, not yet acted on by `run`.
    quit: bool,
    /// The first error of an iteration run in the background (by `TokioLoop::block_on`),
    /// not yet reported.
    error: Option<Error>,
    engine: Engine<HostedPoller>,
    shared: Arc<Shared<EpollRegistrar>>,
    nudge: Arc<Nudge>,
    handle: Loop,
    quitter: Quitter,
    /// The engine's epoll fd number (the same across resets).
    epoll: RawFd,
    /// Pinned to the thread that made it: its callbacks' loop thread.
    _not_send: PhantomData<Rc<()>>,
}

impl std::fmt::Debug for LocalDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDriver")
            .field("registered", &self.io.is_some())
            .field("deadline", &self.deadline)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// What ended a wait.
enum Woken<'a> {
    /// tokio reports the epoll fd readable (the guard clears that report).
    Ready(tokio::io::unix::AsyncFdReadyGuard<'a, OwnedFd>),
    /// The deadline (engine's or caller's) passed.
    Deadline,
    /// An op on the loop thread: prepare again.
    Nudged,
}

/// The host-wait window of one turn: closed when the wait is over, or when the turn is
/// dropped in the middle of its wait (a cancelled task, `TokioLoop::block_on` returning), so
/// that ops from other threads stop writing wake-ups.
struct Window<'a> {
    shared: &'a Shared<EpollRegistrar>,
    nudge: &'a Nudge,
    open: bool,
}

impl Window<'_> {
    /// The wait is over and an engine iteration follows, which closes the host-wait window
    /// itself (`Engine::run_once`): only the nudge is disarmed here.
    fn hand_over(&mut self) {
        if std::mem::take(&mut self.open) {
            self.nudge.disarm();
        }
    }

    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            self.nudge.disarm();
            self.shared.host_awake();
        }
    }
}

impl Drop for Window<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

impl LocalDriver {
    /// Creates the engine (its epoll instance and wake-up eventfd) on the calling thread,
    /// which becomes the loop thread. It registers with tokio on its first turn, inside the
    /// runtime that polls it; that runtime must have its I/O driver enabled
    /// (`Builder::enable_io` or `enable_all`, as `#[tokio::main]` does; anyloop's timers do not
    /// use tokio's timer wheel). Keep polling it in that runtime: its fds are registered with
    /// that runtime's reactor, which must keep running for the driver to hear of them.
    ///
    /// # Errors
    /// [`Error::Os`] if the epoll instance or the eventfd cannot be created (e.g. `EMFILE`).
    pub fn new() -> Result<LocalDriver> {
        let (poller, registrar) = new_epoll().map_err(|source| Error::Os {
            op: "creating the epoll instance",
            fd: None,
            source,
        })?;
        let poller = HostedPoller::new(poller);
        let epoll = poller.fd();
        // tokio registered the epoll fd in its reactor: after a reset (B62) the driver
        // registers the new instance before it next waits.
        let resets = registrar.reset_counter();
        let engine = Engine::new(poller, registrar);
        let shared = engine.shared().clone();
        let nudge = Arc::new(Nudge::new());
        let handle = Loop::from_arc(Arc::new(TokioBackend {
            shared: shared.clone(),
            nudge: nudge.clone(),
        }));
        let quitter = {
            // The engine's own request wakes a driver waiting on another thread (eventfd);
            // the nudge wakes it when the request comes from another task of the loop thread.
            let (inner, nudge) = (engine.quitter(), nudge.clone());
            Quitter::new(move || {
                inner.quit();
                nudge.poke();
            })
        };
        tracing::debug!(epoll, "anyloop engine created for tokio");
        Ok(LocalDriver {
            io: None,
            deadline: None,
            resets_seen: resets.load(Ordering::SeqCst),
            resets,
            quit: false,
            error: None,
            engine,
            shared,
            nudge,
            handle,
            quitter,
            epoll,
            _not_send: PhantomData,
        })
    }

    /// The vtable handle that libraries store; cheap to clone, usable from any thread.
    pub fn handle(&self) -> Loop {
        self.handle.clone()
    }

    /// The handle that asks [`run`](Self::run) (or [`drive`](Self::drive)) to return, from
    /// any thread, callback or task ([R47](anyloop::contract#r47)). A quit requested before
    /// either runs is not lost.
    pub fn quitter(&self) -> Quitter {
        self.quitter.clone()
    }

    /// Consumes a pending quit request: `true` once per request.
    pub fn take_quit(&mut self) -> bool {
        // Both: a request the driver consumed from the engine, and one still pending in it.
        let seen = std::mem::take(&mut self.quit);
        self.shared.take_quit() || seen
    }

    /// Runs the pending frees now, without iterating ([R25](anyloop::contract#r25)). Returns
    /// how many ran.
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] if a free panicked.
    pub fn drain(&mut self) -> Result<usize> {
        self.engine.drain()
    }

    /// The first error of an iteration that was not reported yet: one run in the background
    /// by [`TokioLoop::block_on`](crate::TokioLoop::block_on) (a callback or free panicked,
    /// [R54](anyloop::contract#r54)).
    pub fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    /// One iteration ([R46](anyloop::contract#r46)): waits until a watched fd is ready, a
    /// timer is due, an op from another thread (or another task of this thread) or a quit
    /// arrives, or `timeout` elapses (`None`: no limit; `Some(ZERO)`: no waiting, but the
    /// driver still yields to tokio once), then dispatches what it found and runs the pending
    /// frees. Returns how many callbacks ran. While it waits, the runtime runs its other tasks.
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] naming the first callback or free that panicked (the rest
    /// of the iteration still ran; the loop stays usable, [R54](anyloop::contract#r54));
    /// [`Error::Os`] if the driver cannot register with the runtime (no tokio runtime, or one
    /// without I/O enabled) or tokio's reactor failed.
    pub async fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let outcome = self.turn(timeout).await;
        match self.error.take() {
            Some(earlier) => {
                if let Err(err) = outcome {
                    tracing::error!(%err, "anyloop iteration failed (an earlier one is reported)");
                }
                Err(earlier)
            }
            None => outcome,
        }
    }

    /// Iterates until a quit is requested ([R47](anyloop::contract#r47)). A quit requested
    /// before `run` makes it return at once; `run` consumes the request.
    ///
    /// # Errors
    /// The first error of an iteration (see [`run_once`](Self::run_once)); the loop stays
    /// usable and `run` can be called again.
    pub async fn run(&mut self) -> Result<()> {
        loop {
            if self.take_quit() {
                return Ok(());
            }
            self.run_once(None).await?;
        }
    }

    /// Drives the engine until a quit is requested, then drops it (every remaining callback
    /// is freed, [R48](anyloop::contract#r48)): the future to spawn on a `LocalSet`
    /// (`local.spawn_local(driver.drive())`, or `tokio::task::spawn_local` from inside one).
    /// Errors of iterations (a panicking callback, [R54](anyloop::contract#r54)) are traced
    /// with `tracing::error!` and the loop carries on; an error registering with the runtime
    /// (no I/O driver) ends it.
    pub async fn drive(mut self) {
        loop {
            match self.run().await {
                Ok(()) => return,
                Err(err @ Error::Os { .. }) if self.io.is_none() => {
                    tracing::error!(%err, "the anyloop driver cannot run on this runtime");
                    return;
                }
                Err(err) => tracing::error!(%err, "anyloop callback failed"),
            }
        }
    }

    /// Drives the engine for ever, keeping the first error for later and consuming quit
    /// requests into `self.quit` (for the next `run`): the background half of
    /// `TokioLoop::block_on`.
    pub(crate) async fn serve(&mut self) -> std::convert::Infallible {
        loop {
            match self.turn(None).await {
                Ok(_) => {}
                Err(err) if self.io.is_none() => {
                    // Cannot register: do not spin; report it at the next `run_once`.
                    self.error.get_or_insert(err);
                    std::future::pending::<()>().await;
                }
                Err(err) => {
                    if self.error.is_none() {
                        self.error = Some(err);
                    } else {
                        tracing::error!(%err, "anyloop iteration failed (one is pending)");
                    }
                }
            }
        }
    }

    /// Registers the epoll fd with the current runtime's reactor (again after a reset), and
    /// the timer. Must run inside a tokio runtime context.
    pub(crate) fn register(&mut self) -> Result<()> {
        let resets = self.resets.load(Ordering::SeqCst);
        if resets != self.resets_seen {
            // The engine swapped a fresh epoll instance in behind the same fd number (B62):
            // the kernel dropped tokio's registration of the old one with it. Drop ours
            // first (its deregistration by number fails harmlessly: nothing is registered
            // under it any more), then register the new instance.
            tracing::debug!("anyloop epoll instance was reset: registering it with tokio again");
            self.io = None;
            self.resets_seen = resets;
        }
        if self.io.is_some() && self.deadline.is_some() {
            return Ok(());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(not_on_runtime(
                "no tokio runtime: poll the driver inside one (block_on, or a LocalSet task)",
            ));
        }
        // tokio panics (rather than erring) when the runtime lacks the I/O driver.
        if self.io.is_none() {
            let os = |source| Error::Os {
                op: "registering the anyloop epoll fd with tokio",
                fd: Some(self.epoll),
                source,
            };
            // tokio deregisters by number when the `AsyncFd` goes, and requires the number to
            // name the same open file until then: so it gets a duplicate of its own, which a
            // reset of the engine's instance (dup3 onto the engine's number) leaves alone.
            let dup = borrow_fd(self.epoll)
                .ok_or_else(|| os(std::io::ErrorKind::InvalidInput.into()))?
                .try_clone_to_owned()
                .map_err(os)?;
            let registered = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: `dup` is an `OwnedFd` that the `AsyncFd` takes ownership of: the
                // number stays open and names the same open file description (the epoll
                // instance it was duplicated from) for the whole life of the `AsyncFd`, and
                // `OwnedFd::as_raw_fd` always returns that number. Nothing else closes it or
                // duplicates onto it: only the engine's own number is ever reset.
                unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }
            }))
            .map_err(|_| not_on_runtime("the tokio runtime has no I/O driver (enable_io)"))?;
            self.io = Some(registered.map_err(|err| os(err.into_parts().1))?);
            tracing::trace!(epoll = self.epoll, "anyloop epoll fd registered with tokio");
        }
        if self.deadline.is_none() {
            // (The I/O driver is there: the epoll fd was registered above.)
            self.deadline = Some(Deadline::new().map_err(|source| Error::Os {
                op: "creating the anyloop timerfd",
                fd: None,
                source,
            })?);
        }
        Ok(())
    }

    /// One turn: register, prepare, wait, iterate (see the module documentation).
    async fn turn(&mut self, limit: Option<Duration>) -> Result<usize> {
        self.register()?;
        let bound = limit.and_then(|limit| Instant::now().checked_add(limit));
        let LocalDriver {
            io,
            deadline: timer,
            engine,
            shared,
            nudge,
            quit,
            ..
        } = self;
        let (Some(io), Some(timer)) = (io.as_ref(), timer.as_mut()) else {
            return Err(not_on_runtime("the driver is not registered"));
        };
        let mut window = Window {
            shared,
            nudge,
            open: true,
        };
        let mut ready = None;
        let mut waited = false;
        loop {
            nudge.arm();
            let next = match bound {
                Some(bound) => engine
                    .prepare_host_wait()
                    .earliest(NextIteration::At(bound)),
                None => engine.prepare_host_wait(),
            };
            // The deadline to wait for; `None`: only readiness (or a nudge) ends the wait.
            let deadline = match next {
                NextIteration::Now => break,
                NextIteration::At(at) if at <= Instant::now() => break,
                NextIteration::At(at) => Some(at),
                NextIteration::OnReadiness => None,
            };
            timer.set(deadline).map_err(|source| Error::Os {
                op: "arming the anyloop timerfd",
                fd: None,
                source,
            })?;
            waited = true;
            let woken = poll_fn(|cx| {
                if nudge.poll(cx.waker()) {
                    return Poll::Ready(Ok(Woken::Nudged));
                }
                if let Poll::Ready(report) = io.poll_read_ready(cx) {
                    return Poll::Ready(report.map(Woken::Ready));
                }
                if let Poll::Ready(report) = timer.poll_expired(cx) {
                    return Poll::Ready(report.map(|()| Woken::Deadline));
                }
                Poll::Pending
            })
            .await
            .map_err(|source| Error::Os {
                op: "waiting in tokio's reactor",
                fd: None,
                source,
            })?;
            match woken {
                Woken::Nudged => continue,
                Woken::Ready(guard) => {
                    ready = Some(guard);
                    break;
                }
                Woken::Deadline => break,
            }
        }
        if !waited {
            // Nothing to wait for: still let the runtime run its other tasks and poll its
            // reactor once, so a busy anyloop (a zero-interval timer, a regular file, a
            // callback that never drains its fd) cannot starve them.
            tokio::task::yield_now().await;
        }
        // The engine iteration ends the host wait itself, under the lock it takes anyway.
        window.hand_over();
        let outcome = engine.run_once(Some(Duration::ZERO));
        if let Some(mut guard) = ready {
            // Level-triggered delivery over tokio's edges (R8): forget tokio's report only
            // once the engine's own look found the epoll fd not ready.
            if !engine.poller().found() {
                guard.clear_ready();
            }
        }
        if shared.take_quit() {
            *quit = true;
        }
        outcome
    }
}

/// The error for a driver polled outside a suitable tokio runtime.
fn not_on_runtime(what: &'static str) -> Error {
    Error::Os {
        op: "registering the anyloop driver with tokio",
        fd: None,
        source: std::io::Error::other(what),
    }
}
