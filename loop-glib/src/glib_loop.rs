//! [`GlibLoop`] and [`install_default`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyloop::{Error, Loop, Quitter, Result, Runner};
use anyloop_engine::HostedEngine;
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
/// Libraries reach it through the [`Loop`] handle from [`handle`](Runner::handle), usable
/// from any thread; an op from another thread wakes the context if it is blocked in its
/// poll.
///
/// The context is driven by whoever drives it: `gtk::Application::run`, a `glib::MainLoop`,
/// `MainContext::iteration`, or this type's [`Runner`] methods ([`run`](Runner::run),
/// [`run_once`](Runner::run_once), [`run_until`](Runner::run_until)).
///
/// Dropping the `GlibLoop` destroys the source and frees every callback still registered,
/// exactly once, on the dropping thread ([R48](anyloop::contract#r48)); operations through surviving [`Loop`]
/// handles then return [`Error::LoopGone`].
///
/// ```
/// use anyloop::{Runner, Schedule};
/// use anyloop_glib::GlibLoop;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let context = glib::MainContext::new();
/// let mut lp = GlibLoop::new(&context)?;
/// let fired = Arc::new(AtomicUsize::new(0));
/// let counter = fired.clone();
/// let id = lp.handle().add_timer(Schedule::EVERY_ITERATION, move |_id| {
///     counter.fetch_add(1, Ordering::SeqCst);
/// })?;
/// // Anything that iterates the context runs anyloop callbacks: here GLib's own call.
/// context.iteration(false);
/// // Or one bounded iteration that reports how many anyloop callbacks ran.
/// assert_eq!(lp.run_once(Some(Duration::from_millis(10)))?, 1);
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
        let host = HostedEngine::epoll()?;
        let handle = host.handle();
        let (source, core) = new_source(host);
        set_priority(&source, priority);
        source.attach(Some(context));
        Ok(GlibLoop {
            context: context.clone(),
            source,
            core,
            handle,
        })
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

    /// One iteration of the context, with the context already acquired by this thread.
    fn iterate(&mut self, timeout: Option<Duration>) -> Result<usize> {
        // An error of an iteration someone else drove (GTK, a `glib::MainLoop`) is reported
        // now; callbacks they ran are not counted as this iteration's.
        let before = self.core.host.take_outcome();
        if timeout == Some(Duration::ZERO) {
            self.context.iteration(false);
        } else {
            // The bound is a deadline of our own source: when it expires, the source is
            // dispatched (doing nothing), which ends the loop below. So is a quit request: the
            // engine asks for a dispatch, which consumes it.
            self.core.set_bound(timeout);
            while !self.context.iteration(true) && !self.core.host.quit_requested() {}
            self.core.set_bound(None);
        }
        self.core.host.take_outcome_after(before)
    }
}

/// The owner side, for an application that lets anyloop drive the context (a GTK application
/// does not need it: `gtk::Application::run` or a `glib::MainLoop` iterates the same context,
/// and anyloop callbacks run there).
///
/// [`run_once`](Runner::run_once) is one iteration of the context
/// (`g_main_context_iteration`), blocking at most `timeout`; other sources of the context are
/// dispatched as GLib decides, and it returns how many *anyloop* callbacks ran (zero when
/// woken by an op from another thread or a quit, [R46](anyloop::contract#r46)). It acquires
/// the context for the calling thread and makes it the thread-default context for the
/// iteration; when another thread owns the context it fails at once with
/// [`Error::WrongThread`] instead of waiting for that thread.
///
/// GLib wakes its own poll after every dispatch of a source that polls fds, so a blocking
/// `iteration(true)` often returns having dispatched nothing; a blocking `run_once` repeats
/// such empty iterations until a source was dispatched, the bound expired, or a quit was
/// requested. The errors of iterations driven by someone else (GTK, a `glib::MainLoop`) are
/// reported by the next `run_once`.
///
/// The [`Quitter`] only concerns [`run`](Runner::run) and [`run_until`](Runner::run_until):
/// the context itself keeps going for whoever else iterates it.
impl Runner for GlibLoop {
    /// Runs the pending frees now, without iterating ([R25](anyloop::contract#r25)); 0 when
    /// called from inside one of this loop's callbacks (they run at the end of that iteration
    /// anyway).
    fn drain(&mut self) -> Result<usize> {
        self.core.host.drain()
    }

    fn handle(&self) -> Loop {
        self.handle.clone()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let context = self.context.clone();
        context
            .with_thread_default(|| self.iterate(timeout))
            .map_err(|_| Error::WrongThread {
                id: None,
                what: "iterating a GLib main context that another thread owns",
            })?
    }

    fn quitter(&self) -> Quitter {
        self.core.host.quitter()
    }

    fn take_quit(&mut self) -> bool {
        self.core.host.take_quit()
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
        self.core.host.close();
    }
}

impl fmt::Debug for GlibLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlibLoop")
            .field("priority", &self.priority())
            .field("stats", &self.handle.stats())
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
///     let every_second = anyloop::Schedule::Every(std::time::Duration::from_secs(1));
///     let _tick = lp.timer(every_second, |_| println!("tick"))?;
///     glib::MainLoop::new(None, false).run();
///     Ok(())
/// }
/// ```
pub fn install_default() -> Result<GlibLoop> {
    let lp = GlibLoop::new(&MainContext::default())?;
    anyloop::set_default_loop(lp.handle())?;
    Ok(lp)
}
