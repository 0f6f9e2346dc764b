//! [`LocalDriver`]: the engine driven by a tokio task, from tokio's report to the user's
//! callback.
//!
//! The engine is an [`anyloop_engine::HostedEngine`] (read its module docs: the three calls
//! every host makes). One turn of the driver ([`LocalDriver::run_once`]), top to bottom:
//!
//! 1. **Register** (first turn, and after the engine replaced its epoll instance,
//!    [B62](anyloop::contract#b62)): the engine's **epoll fd** becomes one
//!    `tokio::io::unix::AsyncFd` in the runtime's reactor, whatever the number of watches
//!    (delivery is O(ready), not O(registered)), and one `timerfd`, another `AsyncFd`, serves
//!    the engine's earliest deadline (the engine's timers stay in its own O(log n) heap). Both
//!    fds are made when the driver is made, before any library can add a watch: a driver
//!    that opened them at its first turn would take the numbers of fds a library closed under
//!    their watches (R53 broken), and the engine's updates of those watches would then reach
//!    the driver's own files ([R52](anyloop::contract#r52)). A replaced epoll instance is
//!    followed in place, by `dup3` onto the driver's own duplicate: no new number either.
//! 2. **Prepare**: [`HostedEngine::prepare`] says when the engine needs an iteration (now: a
//!    timer is due, a free is pending, an always-ready fd such as a regular file is enabled,
//!    or a quit was requested) and opens the host-wait window, in which an op from another
//!    thread writes the engine's eventfd: the epoll fd becomes readable and tokio wakes the
//!    driver ([R40](anyloop::contract#r40)). An op made on the loop thread by another tokio
//!    task while the driver waits nudges the driver's task instead (see `backend.rs`), which
//!    prepares again ([R41](anyloop::contract#r41)).
//! 3. **Wait**: until tokio reports the epoll fd readable, the timer expires (the engine's
//!    deadline, or the bound of `run_once`), or a nudge. With nothing to wait for, the driver
//!    still yields to tokio once (`tokio::task::yield_now`), so that the runtime's other tasks
//!    and its I/O are never starved by a busy anyloop ([R35](anyloop::contract#r35), for the host).
//! 4. **Dispatch**: [`HostedEngine::dispatch`] runs one engine iteration that does not wait
//!    (it closes the host-wait window; the window closes too when the turn is dropped in its
//!    wait): frees, `epoll_wait(0)` on the engine's epoll, timers then watches, each callback
//!    with no lock held, frees again (read `engine/src/dispatch.rs` for that path). `ERROR`
//!    and `HANGUP` are exact: they come from the engine's epoll, not from tokio's readiness.
//! 5. **Level triggering over tokio's edges** ([R8](anyloop::contract#r8)): tokio keeps
//!    reporting the epoll fd readable until the driver clears that readiness, and the driver
//!    clears it only when the engine's own `epoll_wait` of step 4 found nothing ready
//!    ([`HostedEngine::fd_found_quiet`]): the fd was re-checked and found not ready, never "a
//!    callback ran, so it must be drained". A watched fd that stays ready keeps the epoll fd
//!    ready, so the next turn iterates again without waiting; readiness that appears after the
//!    engine looked is a new edge in tokio's own epoll, so clearing loses nothing (and tokio
//!    ignores a clear made with a stale readiness tick).
//!
//! **Timers.** The engine's earliest deadline is one `timerfd`, re-armed only when the
//! deadline moves by more than `REARM_SLACK` (a system call); it never expires early
//! ([R31](anyloop::contract#r31)), and the engine decides itself which timers are due, from a
//! fresh clock reading. `deadline.rs` says why it is not a `tokio::time::Sleep` (tokio's
//! millisecond wheel made a 1 ms anyloop timer fire every 2.2 ms), with the figures.

use std::future::poll_fn;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyloop::{Error, Loop, Quitter, Result};
use anyloop_engine::linux::EpollPoller;
use anyloop_engine::{HostedEngine, NextIteration};
use rustix::io::DupFlags;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::backend::{Nudge, TokioBackend};
use crate::deadline::Deadline;

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
    /// The driver's duplicate of the engine's epoll fd: made with the driver, in tokio's
    /// reactor from the first turn on (`Reactor::Registered`). tokio deregisters by number and
    /// requires the number to name the same open file while it is registered, so it gets a
    /// number of its own, which the engine's rebuild of its epoll instance (`dup3` onto the
    /// engine's number, [B62](anyloop::contract#b62)) leaves alone: the driver then
    /// deregisters its duplicate and `dup3`s the new instance onto it.
    io: Reactor,
    /// The one timer in tokio's reactor, for the engine's next deadline (or a `run_once`
    /// bound). Its fd is made with the driver too.
    deadline: Deadline,
    /// The engine replaced its epoll instance and the driver's duplicate does not name the new
    /// one yet.
    follow_replacement: bool,
    /// An error registering with the runtime or waiting in it, from a turn run in the
    /// background (by `TokioLoop::block_on`), not yet reported.
    error: Option<Error>,
    host: HostedEngine<EpollPoller>,
    nudge: Arc<Nudge>,
    handle: Loop,
    quitter: Quitter,
    /// Pinned to the thread that made it: its callbacks' loop thread.
    _not_send: PhantomData<Rc<()>>,
}

/// The driver's duplicate of the engine's epoll fd, and its registration with tokio's reactor
/// (from the first turn on).
struct Reactor {
    /// Declared first: dropped (deregistered from tokio by number) before `dup` closes it.
    registered: Option<AsyncFd<FdNumber>>,
    dup: OwnedFd,
}

impl Reactor {
    fn is_registered(&self) -> bool {
        self.registered.is_some()
    }
}

/// The number of an fd owned elsewhere, for tokio's reactor: the `OwnedFd` stays with the
/// driver, so a registration that fails (or panics, on a runtime without I/O) loses nothing.
struct FdNumber(std::os::fd::RawFd);

impl AsRawFd for FdNumber {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

impl std::fmt::Debug for LocalDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDriver")
            .field("registered", &self.io.is_registered())
            .field("deadline", &self.deadline)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// What ended a wait.
enum Woken<'a> {
    /// tokio reports the epoll fd readable (the guard clears that report).
    Ready(tokio::io::unix::AsyncFdReadyGuard<'a, FdNumber>),
    /// The deadline (engine's or caller's) passed.
    Deadline,
    /// An op on the loop thread: prepare again.
    Nudged,
}

/// The host-wait window of one turn: closed when the wait is over, or when the turn is
/// dropped in the middle of its wait (a cancelled task, `TokioLoop::block_on` returning), so
/// that ops from other threads stop writing wake-ups.
struct Window<'a> {
    host: &'a HostedEngine<EpollPoller>,
    nudge: &'a Nudge,
    open: bool,
}

impl Window<'_> {
    /// The wait is over and an engine iteration follows, which closes the host-wait window
    /// itself (`HostedEngine::dispatch`): only the nudge is disarmed here.
    fn hand_over(&mut self) {
        if std::mem::take(&mut self.open) {
            self.nudge.disarm();
        }
    }

    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            self.nudge.disarm();
            self.host.end_wait();
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
    /// which becomes the loop thread, and the driver's two fds for tokio's reactor (a
    /// duplicate of the epoll fd, a timerfd). It registers them with tokio on its first turn,
    /// inside the runtime that polls it; that runtime must have its I/O driver enabled
    /// (`Builder::enable_io` or `enable_all`, as `#[tokio::main]` does; anyloop's timers do not
    /// use tokio's timer wheel). Keep polling it in that runtime: its fds are registered with
    /// that runtime's reactor, which must keep running for the driver to hear of them.
    ///
    /// # Errors
    /// [`Error::Os`] if the epoll instance, the eventfd or the driver's fds cannot be made
    /// (e.g. `EMFILE`).
    pub fn new() -> Result<LocalDriver> {
        let host = HostedEngine::epoll()?;
        let os = |op| {
            move |source| Error::Os {
                op,
                fd: None,
                source,
            }
        };
        let dup = host
            .fd()
            .try_clone_to_owned()
            .map_err(os("duplicating the anyloop epoll fd for tokio"))?;
        let deadline = Deadline::new().map_err(os("creating the anyloop timerfd"))?;
        let nudge = Arc::new(Nudge::new());
        let handle = Loop::from_arc(Arc::new(TokioBackend {
            shared: host.shared().clone(),
            nudge: nudge.clone(),
        }));
        let quitter = {
            // The engine's own request wakes a driver waiting on another thread (eventfd);
            // the nudge wakes it when the request comes from another task of the loop thread.
            let (inner, nudge) = (host.quitter(), nudge.clone());
            Quitter::new(move || {
                inner.quit();
                nudge.poke();
            })
        };
        tracing::debug!(epoll = host.raw_fd(), "anyloop engine created for tokio");
        Ok(LocalDriver {
            io: Reactor {
                registered: None,
                dup,
            },
            deadline,
            follow_replacement: false,
            error: None,
            host,
            nudge,
            handle,
            quitter,
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
        self.host.take_quit()
    }

    /// Runs the pending frees now, without iterating ([R25](anyloop::contract#r25)). Returns
    /// how many ran.
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] if a free panicked.
    pub fn drain(&mut self) -> Result<usize> {
        self.host.drain()
    }

    /// The first error of an iteration that was not reported yet: one run in the background
    /// by [`TokioLoop::block_on`](crate::TokioLoop::block_on) (a callback or free panicked,
    /// [R54](anyloop::contract#r54)).
    pub fn take_error(&mut self) -> Option<Error> {
        let callbacks = self.host.take_outcome().err();
        self.error.take().or(callbacks)
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
        // What iterations run in the background left (an error is reported now; the callbacks
        // they ran are not counted as this iteration's).
        let before = match self.error.take() {
            Some(err) => Err(err),
            None => self.host.take_outcome(),
        };
        let turned = self.turn(timeout).await;
        let outcome = self.host.take_outcome_after(before);
        match (outcome, turned) {
            (Err(err), Err(later)) => {
                tracing::error!(%later, "waiting in tokio failed (an earlier error is reported)");
                Err(err)
            }
            (outcome, Ok(())) => outcome,
            (Ok(_), Err(err)) => Err(err),
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
                Err(err @ Error::Os { .. }) if !self.io.is_registered() => {
                    tracing::error!(%err, "the anyloop driver cannot run on this runtime");
                    return;
                }
                Err(err) => tracing::error!(%err, "anyloop callback failed"),
            }
        }
    }

    /// Drives the engine for ever, keeping the first error for later (the engine keeps
    /// callbacks' errors and quit requests itself, for the next `run_once` and `run`): the
    /// background half of `TokioLoop::block_on`.
    pub(crate) async fn serve(&mut self) -> std::convert::Infallible {
        loop {
            match self.turn(None).await {
                Ok(()) => {}
                Err(err) if !self.io.is_registered() => {
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

    /// Registers the epoll fd's duplicate and the timer with the current runtime's reactor
    /// (the first time), and follows a replaced epoll instance (B62). Makes no new fd. Must
    /// run inside a tokio runtime context.
    pub(crate) fn register(&mut self) -> Result<()> {
        let os = |op| {
            let fd = self.host.raw_fd();
            move |source| Error::Os {
                op,
                fd: Some(fd),
                source,
            }
        };
        // A replacement not followed yet stays pending until it is (a failed `dup3` is retried
        // at the next turn rather than leaving the driver on the dead instance).
        self.follow_replacement |= self.host.fd_replaced();
        if self.follow_replacement {
            // The engine swapped a fresh epoll instance in behind its own fd number (B62);
            // our duplicate still names the old one, which tokio keeps watching. Deregister it
            // (by number, which still names that registered file), make the same number name
            // the new instance (the old one closes), and register it again below.
            tracing::debug!("anyloop epoll instance was reset: registering it with tokio again");
            if let Some(registered) = self.io.registered.take() {
                registered.into_inner();
            }
            rustix::io::dup3(self.host.fd(), &mut self.io.dup, DupFlags::CLOEXEC)
                .map_err(|err| os("following the anyloop epoll instance")(err.into()))?;
            self.follow_replacement = false;
        }
        if self.io.is_registered() && self.deadline.is_registered() {
            return Ok(());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(not_on_runtime(
                "no tokio runtime: poll the driver inside one (block_on, or a LocalSet task)",
            ));
        }
        if !self.io.is_registered() {
            let number = FdNumber(self.io.dup.as_raw_fd());
            // tokio panics (rather than erring) when the runtime lacks the I/O driver.
            let registered = catch_unwind(AssertUnwindSafe(move || {
                // SAFETY: `number` names `self.io.dup`, an `OwnedFd` the driver keeps open
                // and pointing at the same open file description (the epoll instance it was
                // duplicated from) for as long as this `AsyncFd` lives: the `AsyncFd` is
                // dropped, or taken back with `into_inner`, before the driver `dup3`s onto
                // the number (above) or closes it (`Reactor`'s field order). Nothing else
                // closes it or duplicates onto it: the engine only ever resets its own number.
                unsafe { AsyncFd::register_with_interest(number, Interest::READABLE) }
            }))
            .map_err(|_| not_on_runtime("the tokio runtime has no I/O driver (enable_io)"))?;
            let registered = registered.map_err(|err| {
                os("registering the anyloop epoll fd with tokio")(err.into_parts().1)
            })?;
            tracing::trace!(
                epoll = registered.as_raw_fd(),
                "anyloop epoll fd registered with tokio"
            );
            self.io.registered = Some(registered);
        }
        self.deadline
            .register()
            .map_err(os("registering the anyloop timerfd with tokio"))
    }

    /// One turn: register, prepare, wait, dispatch (see the module documentation).
    async fn turn(&mut self, limit: Option<Duration>) -> Result<()> {
        self.register()?;
        let bound = limit.and_then(|limit| Instant::now().checked_add(limit));
        let LocalDriver {
            io,
            deadline: timer,
            host,
            nudge,
            ..
        } = self;
        let Some(io) = io.registered.as_ref() else {
            return Err(not_on_runtime("the driver is not registered"));
        };
        let mut window = Window {
            host,
            nudge,
            open: true,
        };
        let mut ready = None;
        let mut waited = false;
        loop {
            nudge.arm();
            let next = match bound {
                Some(bound) => host.prepare().next().earliest(NextIteration::At(bound)),
                None => host.prepare().next(),
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
        // The dispatch ends the host wait itself, under the lock it takes anyway.
        window.hand_over();
        // Whether the epoll fd may be readable: tokio said so, or the turn did not wait (the
        // engine was due at once, and tokio's cached readiness was not asked). After a wait
        // that ended for the deadline, tokio had just found the fd not ready.
        host.dispatch(ready.is_some() || !waited);
        if let Some(mut guard) = ready {
            // Level-triggered delivery over tokio's edges (R8): forget tokio's report only
            // once the engine's own look found the epoll fd not ready.
            if host.fd_found_quiet() {
                guard.clear_ready();
            }
        }
        Ok(())
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
