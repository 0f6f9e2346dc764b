//! [`TokioLoop`]: a tokio runtime that anyloop owns, run through [`Runner`].

use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use anyloop::{Error, Loop, Quitter, Result, Runner};
use tokio::runtime::{Builder, Runtime};
use tokio::task::{JoinHandle, LocalSet};

use crate::driver::LocalDriver;

/// A tokio runtime with anyloop's engine in it, owned by anyloop and run through [`Runner`]
/// like every other backend.
///
/// [`new`](Self::new) builds a current-thread runtime (`Builder::new_current_thread()
/// .enable_all()`); [`with_runtime`](Self::with_runtime) takes one the application built
/// (any flavour). The loop thread is the thread that creates the `TokioLoop` (the type is not
/// `Send`): anyloop callbacks and frees run there, inside whichever of
/// [`run_once`](Runner::run_once), [`run`](Runner::run), [`run_until`](Runner::run_until) or
/// [`block_on`](Self::block_on) drives the runtime, and thread-bound callbacks
/// ([`Loop::watch_local`], [`Loop::timer_local`]) may capture `Rc` state freely.
///
/// The application's own tokio tasks share the runtime: spawn them with
/// [`runtime()`](Self::runtime)`.spawn(..)` (`Send` futures) or
/// [`spawn_local`](Self::spawn_local) (any future, run on the loop thread). On a
/// current-thread runtime they run while the loop is driven (inside `run_once` and the
/// others); on a multi-thread runtime `spawn`ed tasks run on its workers at all times.
/// Callbacks run inside the runtime's context, so they may spawn tasks or create `tokio::net`
/// objects too.
///
/// [`run_once`](Runner::run_once) is one anyloop iteration: it drives the runtime until the
/// engine's epoll fd is readable, its next timer is due, an op from another thread (or from
/// a task of this loop) or a quit arrives, or `timeout` elapses, then runs the engine once,
/// and returns how many anyloop callbacks ran. [`stats`](Runner::stats)' `iterations` count
/// those waits, as on every backend.
///
/// ```
/// use anyloop::{Runner, Schedule, Stopped};
/// use anyloop_tokio::TokioLoop;
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
///
/// let mut lp = TokioLoop::new()?;
/// let fired = Rc::new(Cell::new(0)); // not `Send`: fine on the loop's thread
/// let count = fired.clone();
/// let _timer = lp.handle().timer_local(Schedule::Once(Duration::from_millis(1)), move |_id| {
///     count.set(count.get() + 1);
/// })?;
/// // A tokio task of the application runs beside anyloop's callbacks.
/// let task = lp.spawn_local(async { tokio::time::sleep(Duration::from_millis(2)).await; 7 });
/// assert_eq!(lp.run_until(None, &mut || fired.get() == 1)?, Stopped::Done);
/// assert_eq!(lp.block_on(task).unwrap(), 7);
/// # Ok::<(), anyloop::Error>(())
/// ```
///
/// Dropping the `TokioLoop` drops the application's local tasks, then frees every callback
/// still registered, exactly once, on the dropping thread ([R48](anyloop::contract#r48)),
/// then shuts the runtime down; [`Loop`] handles that outlive it answer
/// [`Error::LoopGone`].
pub struct TokioLoop {
    // Drop order: the application's local tasks (which may remove registrations), then the
    // engine (every remaining free, on this thread), then the runtime.
    local: LocalSet,
    driver: LocalDriver,
    runtime: Runtime,
}

impl TokioLoop {
    /// A new current-thread tokio runtime with I/O and time enabled, and anyloop's engine in
    /// it.
    ///
    /// # Errors
    /// [`Error::Os`] if the runtime, the engine's epoll instance or its eventfd cannot be
    /// created (e.g. `EMFILE`).
    pub fn new() -> Result<TokioLoop> {
        let runtime = Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Os {
                op: "creating the tokio runtime",
                fd: None,
                source,
            })?;
        TokioLoop::with_runtime(runtime)
    }

    /// anyloop's engine in a runtime the application built, of either flavour; it must have
    /// its I/O driver enabled (`Builder::enable_io`, or `enable_all`). On a multi-thread
    /// runtime, anyloop's callbacks still run on the thread that drives this loop (through a
    /// [`LocalSet`]), while the application's `spawn`ed tasks run on the workers.
    ///
    /// # Errors
    /// [`Error::Os`] if the engine's epoll instance or eventfd cannot be created, or if the
    /// runtime lacks its I/O driver.
    pub fn with_runtime(runtime: Runtime) -> Result<TokioLoop> {
        TokioLoop::with_local_set(runtime, LocalSet::new())
    }

    /// anyloop's engine in a runtime and a [`LocalSet`] the application built (its local
    /// tasks may be spawned already): the [`Runner`] for an application that runs its own
    /// `LocalSet`, whose tasks then run whenever the loop is driven. The runtime must have its
    /// I/O driver enabled, as for [`with_runtime`](Self::with_runtime).
    ///
    /// ```
    /// use anyloop::Runner;
    /// use anyloop_tokio::TokioLoop;
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    ///
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let local = tokio::task::LocalSet::new();
    /// let mut lp = TokioLoop::with_local_set(runtime, local)?;
    /// let ran = Rc::new(Cell::new(false));
    /// let (flag, handle) = (ran.clone(), lp.handle());
    /// // The application's own task; what it changes is seen once the loop is woken (R47).
    /// lp.spawn_local(async move {
    ///     flag.set(true);
    ///     handle.wake();
    /// });
    /// lp.run_until(None, &mut || ran.get())?; // a Runner like every backend
    /// # Ok::<(), anyloop::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`with_runtime`](Self::with_runtime).
    pub fn with_local_set(runtime: Runtime, local: LocalSet) -> Result<TokioLoop> {
        let mut driver = LocalDriver::new()?;
        {
            let _context = runtime.enter();
            driver.register()?;
        }
        Ok(TokioLoop {
            local,
            driver,
            runtime,
        })
    }

    /// The runtime, to spawn the application's `Send` tasks (`runtime().spawn(..)`), or to
    /// reach its `Handle` from other threads.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The [`LocalSet`] whose tasks run on the loop thread while the loop is driven.
    pub fn local_set(&self) -> &LocalSet {
        &self.local
    }

    /// Spawns a task that need not be `Send` on the loop thread; it runs while the loop is
    /// driven (`run_once`, `run`, `run_until`, `block_on`).
    pub fn spawn_local<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.local.spawn_local(future)
    }

    /// Runs `future` to completion on the runtime, on this thread, while anyloop's engine is
    /// driven beside it: the entry point of an application whose main logic is async
    /// (`lp.block_on(async_main())`). Quit requests do not stop it; they are kept for the
    /// next [`run`](Runner::run). An error of an anyloop iteration meanwhile (a panicking
    /// callback, [R54](anyloop::contract#r54)) does not stop it either: the next
    /// [`run_once`](Runner::run_once) reports it, or [`take_error`](Self::take_error).
    ///
    /// # Panics
    /// As tokio's own `block_on`: when called from inside an asynchronous context (a task of
    /// a runtime).
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        let TokioLoop {
            local,
            driver,
            runtime,
        } = self;
        local.block_on(runtime, async move {
            let mut future = pin!(future);
            let mut background = pin!(driver.serve());
            poll_fn(|cx| {
                if let Poll::Ready(output) = future.as_mut().poll(cx) {
                    return Poll::Ready(output);
                }
                // Never ready: it drives the engine until `future` is done.
                let _ = background.as_mut().poll(cx);
                Poll::Pending
            })
            .await
        })
    }

    /// The first error of an anyloop iteration that was not reported yet (one run during
    /// [`block_on`](Self::block_on)).
    pub fn take_error(&mut self) -> Option<Error> {
        self.driver.take_error()
    }
}

/// Runs `drive` (a `block_on` of the runtime on this thread); a nested runtime (this thread
/// already runs tokio tasks) is a typed error rather than tokio's panic
/// ([R60](anyloop::contract#r60)).
fn guarded<T>(drive: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(drive)).map_err(|_| Error::WrongThread {
        id: None,
        what: "driving a TokioLoop from inside a tokio runtime (use LocalDriver there)",
    })
}

impl Runner for TokioLoop {
    /// Runs the pending frees now, without iterating ([R25](anyloop::contract#r25)).
    fn drain(&mut self) -> Result<usize> {
        let _context = self.runtime.enter();
        self.driver.drain()
    }

    fn handle(&self) -> Loop {
        self.driver.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let TokioLoop {
            local,
            driver,
            runtime,
        } = self;
        guarded(|| local.block_on(runtime, driver.run_once(timeout)))?
    }

    fn quitter(&self) -> Quitter {
        self.driver.quitter()
    }

    fn take_quit(&mut self) -> bool {
        self.driver.take_quit()
    }

    /// One `block_on` for the whole run (the same as iterating `run_once`, cheaper).
    fn run(&mut self) -> Result<()> {
        let TokioLoop {
            local,
            driver,
            runtime,
        } = self;
        guarded(|| local.block_on(runtime, driver.run()))?
    }
}

impl fmt::Debug for TokioLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioLoop")
            .field("flavor", &self.runtime.handle().runtime_flavor())
            .field("driver", &self.driver)
            .finish_non_exhaustive()
    }
}
