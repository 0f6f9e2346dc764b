//! [`CalloopLoop`]: a calloop event loop that anyloop owns and runs.

use std::fmt;
use std::time::Duration;

use anyloop::{Loop, Quitter, Result, Runner};
use calloop::{EventLoop, LoopHandle};

use crate::backend::{calloop_error, CalloopSource};

/// A calloop `EventLoop` with anyloop's source inserted, owned by anyloop and run through
/// [`Runner`], like every other backend.
///
/// For an application that wants calloop underneath but has no calloop loop of its own to
/// keep driving (a compositor that does keeps its `EventLoop` and inserts a
/// [`CalloopSource`] into it instead). The application can still add calloop sources of its
/// own through [`loop_handle`](Self::loop_handle); they receive the loop's shared data `D`
/// (`()` by default), reachable between iterations through [`data`](Self::data) and
/// [`data_mut`](Self::data_mut).
///
/// calloop loops are bound to the thread that created them, and so is this type (it is not
/// `Send`): the loop thread is the creating thread, and thread-bound callbacks
/// ([`Loop::watch_local`], [`Loop::timer_local`]) may capture `Rc` state freely.
///
/// [`run_once`](Runner::run_once) is one `EventLoop::dispatch` that returns how many anyloop
/// callbacks ran; [`stats`](Runner::stats)' `iterations` count calloop's polls (idle wake-ups
/// included), as on every backend.
///
/// ```
/// use anyloop::{Runner, Schedule, Stopped};
/// use anyloop_calloop::CalloopLoop;
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
///
/// let mut lp = CalloopLoop::new()?;
/// let fired = Rc::new(Cell::new(0)); // not `Send`: fine on the loop's thread
/// let count = fired.clone();
/// let _timer = lp.handle().timer_local(Schedule::Once(Duration::from_millis(1)), move |_id| {
///     count.set(count.get() + 1);
/// })?;
/// assert_eq!(lp.run_until(None, &mut || fired.get() == 1)?, Stopped::Done);
/// # Ok::<(), anyloop::Error>(())
/// ```
pub struct CalloopLoop<D: 'static = ()> {
    // Dropped first: removing the source frees every remaining anyloop callback while the
    // calloop loop still exists.
    source: CalloopSource<'static>,
    event_loop: EventLoop<'static, D>,
    data: D,
}

impl CalloopLoop<()> {
    /// A new calloop loop with no shared data, and anyloop's source in it.
    ///
    /// # Errors
    /// [`Error::Os`](anyloop::Error::Os) if calloop's poller, the engine's epoll instance or
    /// its eventfd cannot be created.
    pub fn new() -> Result<CalloopLoop<()>> {
        CalloopLoop::with_data(())
    }
}

impl<D: 'static> CalloopLoop<D> {
    /// A new calloop loop whose sources share `data`, and anyloop's source in it.
    ///
    /// # Errors
    /// As [`new`](CalloopLoop::new).
    pub fn with_data(data: D) -> Result<CalloopLoop<D>> {
        let event_loop = EventLoop::try_new()
            .map_err(|err| calloop_error("creating the calloop event loop", err))?;
        let source = CalloopSource::new(&event_loop.handle())?;
        Ok(CalloopLoop {
            source,
            event_loop,
            data,
        })
    }

    /// The calloop handle, to insert the application's own calloop sources.
    pub fn loop_handle(&self) -> LoopHandle<'static, D> {
        self.event_loop.handle()
    }

    /// The shared data passed to the application's calloop sources.
    pub fn data(&self) -> &D {
        &self.data
    }

    /// The shared data, mutably (between iterations).
    pub fn data_mut(&mut self) -> &mut D {
        &mut self.data
    }

    /// The anyloop source inside the calloop loop.
    pub fn source(&self) -> &CalloopSource<'static> {
        &self.source
    }
}

impl<D: 'static> Runner for CalloopLoop<D> {
    fn handle(&self) -> Loop {
        self.source.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        self.source
            .dispatch(&mut self.event_loop, timeout, &mut self.data)
    }

    fn quitter(&self) -> Quitter {
        self.source.quitter()
    }

    fn take_quit(&mut self) -> bool {
        self.source.take_quit()
    }

    fn drain(&mut self) -> Result<usize> {
        self.source.drain()
    }
}

impl<D: 'static> fmt::Debug for CalloopLoop<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalloopLoop")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}
