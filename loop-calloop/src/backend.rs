//! [`CalloopSource`] and the calloop errors it maps.

use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use anyloop::{Error, Loop, Quitter, Result};
use anyloop_engine::HostedEngine;
use calloop::{EventLoop, LoopHandle, LoopSignal, RegistrationToken};

use crate::source::{needs_rearm, wanted, AnyloopSource, Host, SleepHook, Status};

/// The anyloop vtable inserted into a calloop event loop that the application keeps driving
/// itself, whatever its shared data type (a compositor's `EventLoop<'l, State>`).
///
/// [`new`](Self::new) inserts **one** event source into the calloop loop; the calloop loop
/// drives it from then on, from `EventLoop::dispatch` or `EventLoop::run` (see the crate
/// docs for how, and for the costs). Libraries reach it through the [`Loop`] handle from
/// [`handle`](Self::handle), from any thread. An application that has no calloop loop of its
/// own uses [`CalloopLoop`](crate::CalloopLoop), which owns one and implements
/// [`anyloop::Runner`].
///
/// The backend lives as long as both this value and the calloop loop do. Dropping either
/// removes the source and frees every callback still registered, exactly once, on the
/// dropping thread ([R48](anyloop::contract#r48)); [`Loop`] handles that outlive it answer
/// [`Error::LoopGone`].
///
/// ```
/// use anyloop::Schedule;
/// use anyloop_calloop::CalloopSource;
/// use std::time::Duration;
///
/// // Any shared data type: here a counter the application owns.
/// let mut event_loop = calloop::EventLoop::<u32>::try_new().expect("calloop");
/// let backend = CalloopSource::new(&event_loop.handle())?;
/// let lp = backend.handle();
/// let timer = lp.timer(Schedule::Once(Duration::from_millis(1)), |_id| println!("tick"))?;
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
    calloop: Box<dyn CalloopHandle + 'l>,
    host: Host,
    quitter: Quitter,
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
        let host = Rc::new(HostedEngine::epoll()?);
        let quitter = host.quitter();
        let lp = host.handle();
        let status = Rc::new(Status::default());
        let source = AnyloopSource::new(host.clone(), status.clone());
        let token = handle
            .insert_source(source, |(), &mut (), _: &mut Data| {})
            .map_err(|err| calloop_error("inserting the anyloop source", err.error))?;
        let hook = SleepHook {
            host: host.clone(),
            status: status.clone(),
        };
        let hook_token = match handle.insert_source(hook, |(), &mut (), _: &mut Data| {}) {
            Ok(hook_token) => hook_token,
            Err(err) => {
                handle.remove(token);
                return Err(calloop_error("inserting the anyloop hook", err.error));
            }
        };
        tracing::debug!(
            epoll = host.raw_fd(),
            "anyloop source inserted into calloop"
        );
        Ok(CalloopSource {
            token,
            hook_token,
            calloop: Box::new(WeakCalloop(weak_upgrader(handle))),
            host,
            quitter,
            lp,
            status,
        })
    }

    /// The vtable handle that libraries store; cheap to clone, usable from any thread.
    pub fn handle(&self) -> Loop {
        self.lp.clone()
    }

    /// The handle that asks the loop to quit, from any thread or callback
    /// ([R47](anyloop::contract#r47)): it stops [`CalloopLoop`](crate::CalloopLoop)'s `run`, and
    /// calloop's own `EventLoop::run` once [`stop_calloop_on_quit`](Self::stop_calloop_on_quit)
    /// was called. A quit requested before either runs is not lost.
    pub fn quitter(&self) -> Quitter {
        self.quitter.clone()
    }

    /// Makes every anyloop quit request (from a [`Quitter`]) also stop calloop's
    /// `EventLoop::run`, through the loop's `LoopSignal`.
    pub fn stop_calloop_on_quit(&self, signal: LoopSignal) {
        *self.status.signal.borrow_mut() = Some(signal);
    }

    /// One calloop dispatch (`event_loop.dispatch(timeout, data)`), which runs the backend's
    /// source if it is ready as well as every other source of the loop. Returns the number of
    /// anyloop callbacks run ([R46](anyloop::contract#r46)).
    ///
    /// `event_loop` must be the loop this backend was created on.
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] naming the first anyloop callback or free that panicked
    /// (in this dispatch or an earlier one made without this method; the loop stays usable,
    /// [R54](anyloop::contract#r54)). [`Error::Os`] if calloop's dispatch failed (it can fail
    /// in other sources).
    pub fn dispatch<Data>(
        &self,
        event_loop: &mut EventLoop<'l, Data>,
        timeout: Option<Duration>,
        data: &mut Data,
    ) -> Result<usize> {
        // An error of a dispatch calloop's own `run` made is reported now; the callbacks it
        // ran are not counted as this dispatch's.
        let before = self.host.take_outcome();
        // Outside calloop's dispatch, the source can re-arm its timer for ops made since the
        // last dispatch, without making calloop return early (see `SleepHook::before_sleep`).
        if needs_rearm(self.status.armed.get(), wanted(self.host.next_iteration())) {
            self.calloop.update(&self.token);
        }
        event_loop
            .dispatch(timeout, data)
            .map_err(|err| calloop_error("calloop dispatch", err))?;
        self.host.take_outcome_after(before)
    }

    /// Runs the pending frees now, without dispatching calloop ([R25](anyloop::contract#r25));
    /// 0 when called from inside one of anyloop's callbacks (they run at the end of that
    /// iteration anyway). Returns how many ran.
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] if a free panicked.
    pub fn drain(&self) -> Result<usize> {
        self.host.drain()
    }

    /// Consumes a pending quit request: `true` once per request (what
    /// [`CalloopLoop`](crate::CalloopLoop)'s `run` looks at between dispatches).
    pub fn take_quit(&self) -> bool {
        self.host.take_quit()
    }

    /// The first error of an anyloop iteration that was not reported yet (when the loop is
    /// driven by calloop's own `dispatch`/`run`, which cannot return it): a callback or free
    /// panicked ([R54](anyloop::contract#r54)), or the engine's poll failed.
    pub fn take_error(&self) -> Option<Error> {
        self.host.take_outcome().err()
    }
}

impl Drop for CalloopSource<'_> {
    fn drop(&mut self) {
        // Out of calloop first (its registration of the engine's fd goes), then every
        // remaining free runs now, on this thread (R48).
        self.calloop.remove(self.hook_token);
        self.calloop.remove(self.token);
        self.host.close();
    }
}

impl fmt::Debug for CalloopSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalloopSource")
            .field("token", &self.token)
            .field("stats", &self.lp.stats())
            .finish_non_exhaustive()
    }
}

/// The calloop loop, seen through a weak handle whatever its data type: the backend never
/// keeps it alive.
trait CalloopHandle {
    fn update(&self, token: &RegistrationToken);
    fn remove(&self, token: RegistrationToken);
}

/// Upgrades a weak handle to the calloop loop (calloop does not export the weak type's name).
type Upgrader<'l, Data> = Box<dyn Fn() -> Option<LoopHandle<'l, Data>> + 'l>;

fn weak_upgrader<'l, Data: 'l>(handle: &LoopHandle<'l, Data>) -> Upgrader<'l, Data> {
    let weak = handle.downgrade();
    Box::new(move || weak.upgrade())
}

struct WeakCalloop<'l, Data>(Upgrader<'l, Data>);

impl<Data> CalloopHandle for WeakCalloop<'_, Data> {
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
pub(crate) fn calloop_error(op: &'static str, err: calloop::Error) -> Error {
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
