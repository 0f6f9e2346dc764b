//! [`GlibLoop`], its [`Quitter`], and [`install_default`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyloop::{Error, Loop, LoopStats, Result, ThreadLoopBinding};
use anyloop_engine::linux::new_epoll;
use anyloop_engine::Engine;
use glib::{MainContext, Priority};

use crate::source::{new_source, set_priority, Core};

/// The anyloop vtable on a GLib main context.
///
/// One `GlibLoop` is one custom `GSource` attached to the context, owning an epoll instance
/// in which every watched fd is registered once: GLib polls a single fd however many watches
/// libraries add, and timers live in anyloop's own heap (O(log n) add, update and remove).
/// Callbacks and frees run on the thread that iterates the context (for the default context
/// of a GTK application, the main thread), during that iteration.
///
/// Libraries reach it through the [`Loop`] handle from [`handle`](Self::handle), usable
/// from any thread; an op from another thread wakes the context if it is blocked in its
/// poll.
///
/// The context is driven by whoever drives it: `gtk::Application::run`, a `glib::MainLoop`,
/// `MainContext::iteration`, or this type's [`run`](Self::run) and
/// [`iterate`](Self::iterate).
///
/// Dropping the `GlibLoop` destroys the source and frees every callback still registered,
/// exactly once, on the dropping thread (R48); operations through surviving [`Loop`]
/// handles then return [`Error::LoopGone`].
///
/// ```
/// use anyloop_glib::GlibLoop;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let context = glib::MainContext::new();
/// let mut lp = GlibLoop::new(&context)?;
/// let fired = Arc::new(AtomicUsize::new(0));
/// let counter = fired.clone();
/// let id = lp.handle().add_timer(Some(Duration::ZERO), move |_id| {
///     counter.fetch_add(1, Ordering::SeqCst);
/// })?;
/// // Anything that iterates the context runs anyloop callbacks: here GLib's own call.
/// context.iteration(false);
/// // Or one bounded iteration that reports how many anyloop callbacks ran.
/// assert_eq!(lp.iterate(Some(Duration::from_millis(10)))?, 1);
/// lp.handle().remove_timer(id)?;
/// assert_eq!(fired.load(Ordering::SeqCst), 2);
/// # Ok::<(), anyloop::Error>(())
/// ```
pub struct GlibLoop {
    context: MainContext,
    source: glib::Source,
    core: Arc<Core>,
    handle: Loop,
}

impl GlibLoop {
    /// Attaches a new loop to `context` at [`Priority::DEFAULT`].
    ///
    /// # Errors
    /// [`Error::Os`] if the epoll instance or the wake-up eventfd cannot be created.
    pub fn new(context: &MainContext) -> Result<GlibLoop> {
        GlibLoop::with_priority(context, Priority::DEFAULT)
    }

    /// Attaches a new loop to `context` at the given priority: anyloop callbacks run when
    /// GLib dispatches sources of that priority (GLib dispatches only the most urgent ready
    /// sources in each iteration).
    ///
    /// # Errors
    /// [`Error::Os`] if the epoll instance or the wake-up eventfd cannot be created.
    pub fn with_priority(context: &MainContext, priority: Priority) -> Result<GlibLoop> {
        let (poller, registrar) = new_epoll().map_err(|source| Error::Os {
            op: "creating the epoll instance",
            fd: None,
            source,
        })?;
        let engine = Engine::new(poller, registrar);
        let handle = engine.handle();
        let (source, core) = new_source(engine);
        set_priority(&source, priority);
        source.attach(Some(context));
        Ok(GlibLoop {
            context: context.clone(),
            source,
            core,
            handle,
        })
    }

    /// The vtable handle that libraries store; cheap to clone, usable from any thread.
    pub fn handle(&self) -> Loop {
        self.handle.clone()
    }

    /// The main context this loop is attached to.
    pub fn context(&self) -> &MainContext {
        &self.context
    }

    /// The priority of the loop's source.
    pub fn priority(&self) -> Priority {
        Priority::from(self.source.priority())
    }

    /// Changes the priority of the loop's source (from any thread; effective from the next
    /// iteration of the context).
    pub fn set_priority(&self, priority: Priority) {
        set_priority(&self.source, priority);
    }

    /// One iteration of the context (`g_main_context_iteration`), blocking at most
    /// `timeout` (`None`: until something happens; zero: does not block, as
    /// `iteration(false)`). Other sources of the context are dispatched as GLib decides.
    /// Returns how many anyloop callbacks ran; it may be zero, for example when woken by an
    /// op from another thread or by a [`Quitter`] (R46).
    ///
    /// GLib wakes its own poll after every dispatch of a source that polls fds (it removes
    /// and re-adds the source's fds around the dispatch), so a blocking
    /// `iteration(true)` often returns having dispatched nothing. A blocking `iterate`
    /// repeats such empty iterations until a source was dispatched, the bound expired, or a
    /// quit was requested.
    ///
    /// Call it on a thread that may iterate the context (GLib refuses an iteration while
    /// another thread owns the context: a non-blocking call then returns 0, a blocking one
    /// waits for the owner to release it).
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] naming the first callback or free that panicked in this
    /// iteration, or in an iteration driven by someone else since the last call (the others
    /// still ran; the loop stays usable, R54).
    pub fn iterate(&mut self, timeout: Option<Duration>) -> Result<usize> {
        self.core.take_ran();
        if timeout == Some(Duration::ZERO) {
            self.context.iteration(false);
        } else {
            // The bound is a deadline of our own source: when it expires, the source is
            // dispatched (doing nothing), which ends the loop below.
            self.core.set_bound(timeout);
            while !self.context.iteration(true) && !self.core.quit.load(Ordering::SeqCst) {}
            self.core.set_bound(None);
        }
        let ran = self.core.take_ran();
        self.core.take_error().map_or(Ok(ran), Err)
    }

    /// Iterates the context until [`quit`](Self::quit) (or a [`Quitter`]) is called. The
    /// iteration in which quit was called still dispatches everything it collected (R47);
    /// no new iteration starts. A quit issued before `run` makes it return at once; `run`
    /// consumes the quit request, so the next `run` iterates again.
    ///
    /// A GTK application does not call this: it runs `gtk::Application::run` (or a
    /// `glib::MainLoop`), which iterates the same context.
    ///
    /// # Errors
    /// As [`iterate`](Self::iterate); the loop stays usable and `run` can be called again.
    pub fn run(&mut self) -> Result<()> {
        loop {
            if self.core.quit.swap(false, Ordering::SeqCst) {
                return Ok(());
            }
            self.iterate(None)?;
        }
    }

    /// Asks [`run`](Self::run) to return after the current iteration (R47). A quit issued
    /// before `run` is not lost. It only concerns `run`: the context itself keeps going for
    /// whoever else iterates it.
    pub fn quit(&self) {
        self.quitter().quit();
    }

    /// A handle that stops [`run`](Self::run) from any thread or callback.
    pub fn quitter(&self) -> Quitter {
        Quitter {
            flag: self.core.quit.clone(),
            context: self.context.clone(),
        }
    }

    /// Runs the pending frees now, without iterating (R25). Returns how many ran (0 when
    /// called from inside one of this loop's callbacks: they run at the end of that
    /// iteration anyway).
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] if a free panicked.
    pub fn drain(&mut self) -> Result<usize> {
        self.core.drain()
    }

    /// Live watches, live timers, pending frees and engine iterations so far (R57). From
    /// inside one of this loop's callbacks: the counts as of the start of that iteration.
    pub fn stats(&self) -> LoopStats {
        self.core.stats()
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

impl Drop for GlibLoop {
    fn drop(&mut self) {
        // GLib stops polling and dispatching the source; a dispatch running on another
        // thread finishes first (taking the engine below waits for it).
        self.source.destroy();
        // The frees of every survivor run here, on the dropping thread, with no lock held
        // (R23, R48). From inside one of our own callbacks this happens as soon as that
        // dispatch returns instead.
        drop(self.core.take_engine());
    }
}

impl fmt::Debug for GlibLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlibLoop")
            .field("priority", &self.priority())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Stops a [`GlibLoop`]'s [`run`](GlibLoop::run) from any thread or callback.
///
/// ```
/// use anyloop_glib::GlibLoop;
/// let mut lp = GlibLoop::new(&glib::MainContext::new())?;
/// let quitter = lp.quitter();
/// std::thread::spawn(move || quitter.quit());
/// lp.run()?; // returns once the other thread quit
/// # Ok::<(), anyloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Quitter {
    flag: Arc<AtomicBool>,
    context: MainContext,
}

impl Quitter {
    /// Asks the loop's `run` to stop after its current iteration; wakes the context if it
    /// is blocked.
    pub fn quit(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.context.wakeup();
    }
}

impl fmt::Debug for Quitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quitter")
            .field("requested", &self.flag.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// The one call a GTK (or any GLib) application makes: attaches a [`GlibLoop`] to the
/// global default main context (the one `gtk::Application::run` iterates) and installs it
/// as anyloop's process default loop ([`anyloop::set_default_loop`]), so that every library
/// that asks for [`Loop::current`] on a thread without a loop of its own uses it.
///
/// Keep the returned `GlibLoop` alive as long as the application runs (dropping it frees
/// every callback; the process default then answers [`Error::LoopGone`]).
///
/// # Errors
/// [`Error::AlreadyRegistered`] when a process default loop is installed already (the new
/// source is removed again); [`Error::Os`] as [`GlibLoop::new`].
///
/// ```no_run
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let _anyloop = anyloop_glib::install_default()?;
///     // ... build the GTK application; libraries written against anyloop now run on it:
///     let lp = anyloop::Loop::current()?;
///     let _tick = lp.timer(Some(std::time::Duration::from_secs(1)), |_| println!("tick"))?;
///     glib::MainLoop::new(None, false).run();
///     Ok(())
/// }
/// ```
pub fn install_default() -> Result<GlibLoop> {
    let lp = GlibLoop::new(&MainContext::default())?;
    anyloop::set_default_loop(lp.handle())?;
    Ok(lp)
}
