//! [`SelectLoop`], its [`Quitter`], and the choice of [`PollerKind`].

use std::fmt;
use std::time::Duration;

use anyloop::{Error, Loop, LoopStats, Result, ThreadLoopBinding};
use anyloop_engine::linux::{new_epoll, EpollPoller};
use anyloop_engine::{Engine, QuitHandle};

use crate::sys;

/// Which OS mechanism a [`SelectLoop`] waits with.
///
/// Both give the same behaviour (the conformance kit runs against both); they differ in
/// cost per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PollerKind {
    /// Linux level-triggered epoll (via `rustix`): one `epoll_wait` per iteration and no
    /// syscall per dispatched event. The default.
    #[default]
    Epoll,
    /// mio's edge-triggered epoll, with level-triggered delivery emulated by one batched
    /// zero-timeout `poll(2)` over the fds dispatched in the previous iteration (so an
    /// iteration that dispatched fds costs two syscalls).
    Mio,
}

enum Inner {
    Epoll(Engine<EpollPoller>),
    Mio(Engine<sys::mio::MioPoller>),
}

/// Runs `$body` with `$engine` bound to whichever engine is inside (monomorphised per
/// poller, so the hot path has no dynamic dispatch).
macro_rules! with_engine {
    ($inner:expr, $engine:ident => $body:expr) => {
        match $inner {
            Inner::Epoll($engine) => $body,
            Inner::Mio($engine) => $body,
        }
    };
}

/// The built-in event loop.
///
/// Owns the loop: run it with [`run`](Self::run) or [`run_once`](Self::run_once) on one
/// thread at a time (it is `Send`: it may be created on one thread and run on another; the
/// loop thread is whichever thread runs it). Libraries reach it through the [`Loop`] handle
/// from [`handle`](Self::handle), usable from any thread.
///
/// Dropping the `SelectLoop` frees every callback still registered, exactly once, on the
/// dropping thread (R48); operations through surviving [`Loop`] handles then return
/// [`Error::LoopGone`].
///
/// ```
/// use anyloop_select::SelectLoop;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let mut lp = SelectLoop::new()?;
/// let fired = Arc::new(AtomicUsize::new(0));
/// let counter = fired.clone();
/// let id = lp.handle().add_timer(Some(Duration::ZERO), move |_id| {
///     counter.fetch_add(1, Ordering::SeqCst);
/// })?;
/// // A zero-interval timer fires on every iteration and keeps the loop from blocking.
/// assert_eq!(lp.run_once(None)?, 1);
/// assert_eq!(lp.run_once(None)?, 1);
/// lp.handle().remove_timer(id)?;
/// assert_eq!(lp.run_once(Some(Duration::from_millis(1)))?, 0);
/// assert_eq!(fired.load(Ordering::SeqCst), 2);
/// # Ok::<(), anyloop::Error>(())
/// ```
pub struct SelectLoop {
    inner: Inner,
    poller: PollerKind,
}

impl SelectLoop {
    /// A loop on the default [`PollerKind`] (level-triggered epoll).
    ///
    /// # Errors
    /// [`Error::Os`] if the epoll instance or the wake-up eventfd cannot be created.
    pub fn new() -> Result<SelectLoop> {
        SelectLoop::with_poller(PollerKind::default())
    }

    /// A loop on the given [`PollerKind`].
    ///
    /// # Errors
    /// [`Error::Os`] if the OS resources cannot be created.
    ///
    /// ```
    /// use anyloop_select::{PollerKind, SelectLoop};
    /// let lp = SelectLoop::with_poller(PollerKind::Mio)?;
    /// assert_eq!(lp.poller(), PollerKind::Mio);
    /// # Ok::<(), anyloop::Error>(())
    /// ```
    pub fn with_poller(poller: PollerKind) -> Result<SelectLoop> {
        let os = |source| Error::Os {
            op: "creating the poller",
            fd: None,
            source,
        };
        let inner = match poller {
            PollerKind::Epoll => {
                let (poller, registrar) = new_epoll().map_err(os)?;
                Inner::Epoll(Engine::new(poller, registrar))
            }
            PollerKind::Mio => {
                let (poller, registrar) = sys::mio::new().map_err(os)?;
                Inner::Mio(Engine::new(poller, registrar))
            }
        };
        Ok(SelectLoop { inner, poller })
    }

    /// Which [`PollerKind`] this loop uses.
    pub fn poller(&self) -> PollerKind {
        self.poller
    }

    /// The vtable handle that libraries store; cheap to clone, usable from any thread.
    pub fn handle(&self) -> Loop {
        with_engine!(&self.inner, engine => engine.handle())
    }

    /// A handle that stops [`run`](Self::run) from any thread or callback.
    pub fn quitter(&self) -> Quitter {
        Quitter(with_engine!(&self.inner, engine => engine.quit_handle()))
    }

    /// Asks [`run`](Self::run) to return after the current iteration (R47). A quit issued
    /// before `run` is not lost.
    pub fn quit(&self) {
        with_engine!(&self.inner, engine => engine.quit())
    }

    /// Iterates until [`quit`](Self::quit) (or a [`Quitter`]) is called. The iteration in
    /// which quit was called still dispatches everything it collected (R47); no new poll
    /// starts. A quit issued before `run` makes it return at once; `run` consumes the quit
    /// request, so the next `run` iterates again.
    ///
    /// # Errors
    /// As [`run_once`](Self::run_once); the loop stays usable and `run` can be called again.
    pub fn run(&mut self) -> Result<()> {
        with_engine!(&mut self.inner, engine => engine.run())
    }

    /// One iteration: wait until something is ready, a timer is due, an op from another
    /// thread arrives or `timeout` elapses (`None`: no limit), then dispatch everything that
    /// was collected and run pending frees. Returns the number of callbacks run (possibly
    /// zero, e.g. when woken by an op, R46).
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] naming the first callback or free that panicked in this
    /// iteration (the others still ran and later panics are traced; the loop stays usable,
    /// R54). [`Error::Os`] if the wait failed.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        with_engine!(&mut self.inner, engine => engine.run_once(timeout))
    }

    /// Runs the pending frees now, without polling (libvirt-python's `drain`, R25). Returns
    /// how many ran.
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] if a free panicked.
    pub fn drain(&mut self) -> Result<usize> {
        with_engine!(&mut self.inner, engine => engine.drain())
    }

    /// Live watches, live timers, pending frees and iterations so far (R57).
    pub fn stats(&self) -> LoopStats {
        with_engine!(&self.inner, engine => engine.stats())
    }

    /// Binds this loop as the calling thread's current loop (see
    /// [`anyloop::bind_thread_loop`]), so that [`Loop::current`] finds it.
    ///
    /// # Errors
    /// [`Error::AlreadyRegistered`] when the thread already has a loop.
    pub fn make_current(&self) -> Result<ThreadLoopBinding> {
        anyloop::bind_thread_loop(self.handle())
    }
}

impl fmt::Debug for SelectLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectLoop")
            .field("poller", &self.poller)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Stops a [`SelectLoop`]'s [`run`](SelectLoop::run) from any thread or callback.
///
/// ```
/// use anyloop_select::SelectLoop;
/// let mut lp = SelectLoop::new()?;
/// let quitter = lp.quitter();
/// std::thread::spawn(move || quitter.quit());
/// lp.run()?; // returns once the other thread quit
/// # Ok::<(), anyloop::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Quitter(QuitHandle);

impl Quitter {
    /// Asks the loop to stop after its current iteration; wakes it if it is blocked.
    pub fn quit(&self) {
        self.0.quit()
    }
}
