//! The owner side of a loop: [`Runner`], the one [`Quitter`] type, and [`Stopped`].
//!
//! A library holds a [`Loop`]; the application owns the loop itself and runs it. Every
//! backend's loop type implements [`Runner`], so an application (or a library's blocking
//! "perform until done" call, or a test) runs any backend the same way.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::current::{bind_thread_loop, ThreadLoopBinding};
use crate::error::Result;
use crate::handle::Loop;
use crate::vtable::LoopStats;

/// Asks a loop's [`Runner::run`] (and [`Runner::run_until`]) to return after the iteration it
/// is in ([R47](crate::contract#r47)): cheap to clone, `Send`, callable from any thread and
/// from callbacks; it wakes a blocked loop and never runs a callback itself. A quit requested
/// before `run` is not lost; `run` consumes it.
///
/// Every backend hands out this one type ([`Runner::quitter`]); a backend author builds it
/// from the function that requests the quit.
///
/// ```
/// use anyloop::Quitter;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let asked = Arc::new(AtomicBool::new(false));
/// let flag = asked.clone();
/// let quitter = Quitter::new(move || flag.store(true, Ordering::SeqCst));
/// std::thread::spawn(move || quitter.quit()).join().unwrap();
/// assert!(asked.load(Ordering::SeqCst));
/// ```
#[derive(Clone)]
pub struct Quitter {
    request: Arc<dyn Fn() + Send + Sync>,
}

impl Quitter {
    /// A quitter that calls `request` (for backend authors: set the loop's quit flag and wake
    /// it).
    pub fn new(request: impl Fn() + Send + Sync + 'static) -> Self {
        Quitter {
            request: Arc::new(request),
        }
    }

    /// Asks the loop to stop after its current iteration; wakes it if it is blocked.
    pub fn quit(&self) {
        (self.request)()
    }
}

impl fmt::Debug for Quitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Quitter")
            .field(&Arc::as_ptr(&self.request).cast::<()>())
            .finish()
    }
}

/// Why [`Runner::run_until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stopped {
    /// The condition held.
    Done,
    /// The deadline passed first.
    DeadlinePassed,
    /// A quit was requested ([`Quitter::quit`]); the request is consumed.
    Quit,
}

/// The owner side of a loop: run it, one iteration at a time or until something happens.
///
/// Implemented by every backend's loop type (`anyloop_select::SelectLoop`,
/// `anyloop_glib::GlibLoop`, `anyloop_calloop::CalloopLoop`...), on the thread that owns the
/// loop. Code that must run a loop without knowing which one takes `&mut dyn Runner`.
///
/// ```
/// use anyloop::{Runner, Schedule, Stopped};
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::{Duration, Instant};
///
/// /// A blocking "perform until done" call a library can offer, on any backend.
/// fn perform(lp: &mut dyn Runner) -> anyloop::Result<bool> {
///     let done = Rc::new(Cell::new(false));
///     let flag = done.clone();
///     // Thread-bound: the closure captures an `Rc`.
///     let _timer = lp
///         .handle()
///         .timer_local(Schedule::Once(Duration::from_millis(5)), move |_id| flag.set(true))?;
///     let deadline = Instant::now() + Duration::from_secs(10);
///     Ok(lp.run_until(Some(deadline), &mut || done.get())? == Stopped::Done)
/// }
/// ```
pub trait Runner {
    /// The [`Loop`] handle that libraries use; from any thread.
    fn handle(&self) -> Loop;

    /// One iteration ([R46](crate::contract#r46)): wait until a watched fd is ready, a timer
    /// is due, an op from another thread or a quit arrives, or `timeout` elapses (`None`: no
    /// limit; `Some(ZERO)`: do not block), then dispatch what was found and run the pending
    /// frees. Returns how many of this loop's watch and timer callbacks ran: not frees, and
    /// not the callbacks of a host loop's other sources that the iteration also ran; zero is
    /// normal (woken, or timed out).
    ///
    /// # Errors
    /// [`CallbackPanicked`](crate::Error::CallbackPanicked) naming the first callback or free
    /// that panicked (the rest of the iteration still ran; the loop stays usable,
    /// [R54](crate::contract#r54)); [`WrongThread`](crate::Error::WrongThread) when a
    /// thread-bound callback was due but the loop now runs on another thread (it was not
    /// called), or the loop cannot be driven from this thread; [`Os`](crate::Error::Os) if the
    /// wait failed.
    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize>;

    /// The handle that stops [`run`](Self::run) from any thread or callback.
    fn quitter(&self) -> Quitter;

    /// Consumes a pending quit request: `true` once per request ([R47](crate::contract#r47)).
    fn take_quit(&mut self) -> bool;

    /// Iterates until a quit is requested. The iteration in which quit was requested still
    /// dispatches everything it collected; no new wait starts. A quit requested before `run`
    /// makes it return at once; `run` consumes the request, so the next `run` iterates again.
    ///
    /// # Errors
    /// The first error of an iteration (see [`run_once`](Self::run_once)); the loop stays
    /// usable and `run` can be called again.
    fn run(&mut self) -> Result<()> {
        loop {
            if self.take_quit() {
                return Ok(());
            }
            self.run_once(None)?;
        }
    }

    /// Iterates until `done()` holds, `deadline` passes (`None`: no deadline) or a quit is
    /// requested, and says which ([`Stopped`]).
    ///
    /// `done` is checked before the first iteration and after each one. An iteration ends
    /// when callbacks or frees ran, a timer fired, an op from another thread or a quit arrived,
    /// or the deadline came: a condition that a callback (or a free) of this loop makes true is
    /// seen at once; one
    /// that another thread makes true should be followed by [`Loop::wake`] (or any op on the
    /// loop) from that thread, or it is only seen at the next event.
    ///
    /// # Errors
    /// As [`run_once`](Self::run_once); the loop stays usable.
    fn run_until(
        &mut self,
        deadline: Option<Instant>,
        done: &mut dyn FnMut() -> bool,
    ) -> Result<Stopped> {
        loop {
            if done() {
                return Ok(Stopped::Done);
            }
            if self.take_quit() {
                return Ok(Stopped::Quit);
            }
            let wait = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(Stopped::DeadlinePassed),
                },
            };
            self.run_once(wait)?;
        }
    }

    /// Live watches, live timers, pending frees and iterations so far
    /// ([R57](crate::contract#r57)); the same as [`Loop::stats`].
    fn stats(&self) -> LoopStats {
        self.handle().stats()
    }

    /// Runs the pending frees now ([R25](crate::contract#r25)): the callbacks of registrations
    /// removed since the last iteration are dropped, on this thread (libvirt-python's `drain`,
    /// for an owner about to tear things down). Returns how many ran.
    ///
    /// Every backend of the project overrides it with a drain that does not poll. The default,
    /// for a backend that has none, runs one iteration that does not block
    /// ([`run_once`](Self::run_once) with `Some(ZERO)`: it runs the pending frees first,
    /// [R46](crate::contract#r46), but also dispatches whatever is ready) and returns how many
    /// frees it ran, from [`stats`](Self::stats).
    ///
    /// # Errors
    /// [`CallbackPanicked`](crate::Error::CallbackPanicked) if a free panicked (the others
    /// still ran); the default also as [`run_once`](Self::run_once).
    fn drain(&mut self) -> Result<usize> {
        let pending = self.stats().pending_frees;
        self.run_once(Some(Duration::ZERO))?;
        Ok(pending.saturating_sub(self.stats().pending_frees))
    }

    /// Binds this loop as the calling thread's current loop until the binding is dropped, so
    /// that [`Loop::current`] finds it ([R50](crate::contract#r50)).
    ///
    /// # Errors
    /// [`AlreadyRegistered`](crate::Error::AlreadyRegistered) when the thread already has one.
    fn make_current(&self) -> Result<ThreadLoopBinding> {
        bind_thread_loop(self.handle())
    }
}

impl<R: Runner + ?Sized> Runner for Box<R> {
    fn handle(&self) -> Loop {
        (**self).handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        (**self).run_once(timeout)
    }

    fn quitter(&self) -> Quitter {
        (**self).quitter()
    }

    fn take_quit(&mut self) -> bool {
        (**self).take_quit()
    }

    fn run(&mut self) -> Result<()> {
        (**self).run()
    }

    fn run_until(
        &mut self,
        deadline: Option<Instant>,
        done: &mut dyn FnMut() -> bool,
    ) -> Result<Stopped> {
        (**self).run_until(deadline, done)
    }

    fn stats(&self) -> LoopStats {
        (**self).stats()
    }

    fn drain(&mut self) -> Result<usize> {
        (**self).drain()
    }
}
