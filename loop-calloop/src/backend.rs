//! [`CalloopSource`], its [`Quitter`], and the calloop errors they map.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyloop::{Error, Loop, LoopStats, Result, ThreadLoopBinding};
use anyloop_engine::linux::{borrow_fd, new_epoll};
use anyloop_engine::{Engine, QuitHandle, Shared};
use calloop::{EventLoop, LoopHandle, LoopSignal, RegistrationToken};

use crate::source::{needs_rearm, wanted, AnyloopSource, SleepHook, Status};
use crate::sys::{HostedPoller, HostedRegistrar};

/// The anyloop vtable on a calloop event loop, whatever its shared data type.
///
/// [`new`](Self::new) inserts **one** event source into the calloop loop; the calloop loop
/// drives it from then on, from `EventLoop::dispatch` or `EventLoop::run` (see the crate
/// docs for how, and for the costs). Libraries reach it through the [`Loop`] handle from
/// [`handle`](Self::handle), from any thread.
///
/// The backend lives as long as both this value and the calloop loop do. Dropping either
/// removes the source and frees every callback still registered, exactly once, on the
/// dropping thread (R48); [`Loop`] handles that outlive it answer [`Error::LoopGone`].
///
/// ```
/// use anyloop_calloop::CalloopSource;
/// use std::time::Duration;
///
/// // Any shared data type: here a counter the application owns.
/// let mut event_loop = calloop::EventLoop::<u32>::try_new().expect("calloop");
/// let backend = CalloopSource::new(&event_loop.handle())?;
/// let lp = backend.handle();
/// let timer = lp.timer(Some(Duration::from_millis(1)), |_id| println!("tick"))?;
/// let mut data = 0u32;
/// let mut ran = 0;
/// while ran == 0 {
///     ran += backend.dispatch(&mut event_loop, Some(Duration::from_millis(100)), &mut data)?;
/// }
/// drop(timer);
/// # Ok::<(), anyloop::Error>(())
/// ```
pub struct CalloopSource<'l> {
    token: RegistrationToken,
    hook_token: RegistrationToken,
    host: Box<dyn Host + 'l>,
    shared: Arc<Shared<HostedRegistrar>>,
    quit: QuitHandle,
    lp: Loop,
    status: Rc<Status>,
}

impl<'l> CalloopSource<'l> {
    /// Creates the engine (its own epoll instance and wake-up eventfd) and inserts its one
    /// source into the calloop loop behind `handle`.
    ///
    /// # Errors
    /// [`Error::Os`] if the epoll instance or the eventfd cannot be created, or if calloop
    /// refuses the source.
    pub fn new<Data: 'l>(handle: &LoopHandle<'l, Data>) -> Result<CalloopSource<'l>> {
        let (poller, registrar) = new_epoll().map_err(|source| Error::Os {
            op: "creating the epoll instance",
            fd: None,
            source,
        })?;
        let raw = poller.fd().as_raw_fd();
        let Some(epoll) = borrow_fd(raw) else {
            return Err(Error::InvalidFd {
                fd: raw,
                reason: "negative",
            });
        };
        let resets = Arc::new(AtomicU64::new(0));
        let registrar = HostedRegistrar::new(registrar, resets.clone());
        let engine = Engine::new(HostedPoller(poller), registrar);
        let shared = engine.shared().clone();
        let quit = engine.quit_handle();
        let lp = engine.handle();
        let status = Rc::new(Status::default());
        // `epoll` borrows the engine's fd: the source owns both and drops its calloop
        // registration before the engine closes the fd (field order).
        let source = AnyloopSource::new(engine, epoll, resets, status.clone());
        let token = handle
            .insert_source(source, |(), &mut (), _: &mut Data| {})
            .map_err(|err| calloop_error("inserting the anyloop source", err.error))?;
        let hook = SleepHook {
            shared: shared.clone(),
            status: status.clone(),
        };
        let hook_token = match handle.insert_source(hook, |(), &mut (), _: &mut Data| {}) {
            Ok(hook_token) => hook_token,
            Err(err) => {
                handle.remove(token);
                return Err(calloop_error("inserting the anyloop hook", err.error));
            }
        };
        tracing::debug!(epoll = raw, "anyloop source inserted into calloop");
        Ok(CalloopSource {
            token,
            hook_token,
            host: Box::new(WeakHost(weak_upgrader(handle))),
            shared,
            quit,
            lp,
            status,
        })
    }

    /// The vtable handle that libraries store; cheap to clone, usable from any thread.
    pub fn handle(&self) -> Loop {
        self.lp.clone()
    }

    /// Live watches, live timers, pending frees and iterations so far (R57).
    pub fn stats(&self) -> LoopStats {
        self.shared.stats()
    }

    /// A handle that asks the loop to quit, from any thread or callback.
    pub fn quitter(&self) -> Quitter {
        Quitter(self.quit.clone())
    }

    /// Asks [`run`](Self::run) to return after the current iteration (R47); also stops
    /// calloop's own `EventLoop::run` if a signal was given to
    /// [`stop_calloop_on_quit`](Self::stop_calloop_on_quit). A quit before `run` is not lost.
    pub fn quit(&self) {
        self.quit.quit();
    }

    /// Makes every anyloop quit request (from [`quit`](Self::quit) or a [`Quitter`]) also
    /// stop calloop's `EventLoop::run`, through the loop's `LoopSignal`.
    pub fn stop_calloop_on_quit(&self, signal: LoopSignal) {
        *self.status.signal.borrow_mut() = Some(signal);
    }

    /// One calloop dispatch (`event_loop.dispatch(timeout, data)`), which runs the backend's
    /// source if it is ready as well as every other source of the loop. Returns the number of
    /// anyloop callbacks run (R46).
    ///
    /// `event_loop` must be the loop this backend was created on.
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] naming the first anyloop callback or free that panicked
    /// (in this dispatch or an earlier one made without this method; the loop stays usable,
    /// R54). [`Error::Os`] if calloop's dispatch failed (it can fail in other sources).
    pub fn dispatch<Data>(
        &self,
        event_loop: &mut EventLoop<'l, Data>,
        timeout: Option<Duration>,
        data: &mut Data,
    ) -> Result<usize> {
        self.status.dispatched.set(0);
        // Outside calloop's dispatch, the source can re-arm its timer for ops made since the
        // last dispatch, without making calloop return early (see `SleepHook::before_sleep`).
        if needs_rearm(self.status.armed.get(), wanted(self.shared.next_timeout())) {
            self.host.update(&self.token);
        }
        event_loop
            .dispatch(timeout, data)
            .map_err(|err| calloop_error("calloop dispatch", err))?;
        if let Some(err) = self.take_error() {
            return Err(err);
        }
        Ok(self.status.dispatched.replace(0))
    }

    /// Dispatches the calloop loop until the anyloop loop is asked to quit (R47). A quit
    /// issued before `run` makes it return without dispatching; `run` consumes the request.
    ///
    /// # Errors
    /// The first error of a dispatch (see [`dispatch`](Self::dispatch)); the loop stays
    /// usable and `run` can be called again.
    pub fn run<Data>(&self, event_loop: &mut EventLoop<'l, Data>, data: &mut Data) -> Result<()> {
        loop {
            if self.status.quit.replace(false) || self.shared.take_quit() {
                return Ok(());
            }
            self.dispatch(event_loop, None, data)?;
        }
    }

    /// The first error of an anyloop iteration that was not reported yet (when the loop is
    /// driven by calloop's own `dispatch`/`run`, which cannot return it): a callback or free
    /// panicked (R54), or the engine's poll failed.
    pub fn take_error(&self) -> Option<Error> {
        self.status.error.borrow_mut().take()
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

impl Drop for CalloopSource<'_> {
    fn drop(&mut self) {
        // Drops the source, hence the engine: every remaining free runs now, on this thread.
        self.host.remove(self.hook_token);
        self.host.remove(self.token);
    }
}

impl fmt::Debug for CalloopSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalloopSource")
            .field("token", &self.token)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Stops a [`CalloopSource`]'s [`run`](CalloopSource::run) from any thread or callback.
///
/// ```
/// use anyloop_calloop::CalloopSource;
/// let mut event_loop = calloop::EventLoop::<()>::try_new().expect("calloop");
/// let backend = CalloopSource::new(&event_loop.handle())?;
/// let quitter = backend.quitter();
/// std::thread::spawn(move || quitter.quit());
/// backend.run(&mut event_loop, &mut ())?; // returns once the other thread quit
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

/// The calloop loop, seen through a weak handle whatever its data type: the backend never
/// keeps it alive.
trait Host {
    fn update(&self, token: &RegistrationToken);
    fn remove(&self, token: RegistrationToken);
}

/// Upgrades a weak handle to the calloop loop (calloop does not export the weak type's name).
type Upgrader<'l, Data> = Box<dyn Fn() -> Option<LoopHandle<'l, Data>> + 'l>;

fn weak_upgrader<'l, Data: 'l>(handle: &LoopHandle<'l, Data>) -> Upgrader<'l, Data> {
    let weak = handle.downgrade();
    Box::new(move || weak.upgrade())
}

struct WeakHost<'l, Data>(Upgrader<'l, Data>);

impl<Data> Host for WeakHost<'_, Data> {
    fn update(&self, token: &RegistrationToken) {
        if let Some(handle) = (self.0)() {
            if let Err(err) = handle.update(token) {
                tracing::warn!(%err, "re-arming the anyloop source failed");
            }
        }
    }

    fn remove(&self, token: RegistrationToken) {
        if let Some(handle) = (self.0)() {
            handle.remove(token);
        }
    }
}

/// Maps a calloop error to anyloop's, keeping the OS error when there is one.
fn calloop_error(op: &'static str, err: calloop::Error) -> Error {
    let source = match err {
        calloop::Error::IoError(err) => err,
        other => io::Error::other(other),
    };
    Error::Os {
        op,
        fd: None,
        source,
    }
}
