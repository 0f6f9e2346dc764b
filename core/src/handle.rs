//! `Loop`: the cheap, cloneable handle to a backend that libraries store.

use std::fmt;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::callback::{HandleCallback, TimeoutCallback};
use crate::current;
use crate::error::{Rejected, Result};
use crate::events::IoEvents;
use crate::guard::{Timer, Watch};
use crate::id::{HandleId, TimeoutId};
use crate::vtable::{EventLoop, Interval};

/// A shared handle to an event loop backend: an `Arc<dyn EventLoop>`.
///
/// Libraries keep one (usually from [`Loop::current`] when their object is created, so the
/// object binds to the loop of the thread that created it, R50) and call the six vtable
/// operations on it, or create RAII [`Watch`]/[`Timer`] guards. Cloning is one atomic
/// increment. A `Loop` does not keep the loop *running*; when the application destroys its
/// loop, operations return [`Error::LoopGone`](crate::Error::LoopGone).
///
/// ```
/// use anyloop::Loop;
/// use std::time::Duration;
///
/// /// A library object that pings every second, written against the vtable only.
/// struct Heartbeat { _timer: anyloop::Timer }
///
/// impl Heartbeat {
///     fn new(lp: &Loop) -> anyloop::Result<Heartbeat> {
///         let timer = lp.timer(Some(Duration::from_secs(1)), |_id| println!("beat"))?;
///         Ok(Heartbeat { _timer: timer })
///     }
/// }
///
/// // With no loop bound to this thread and no default installed, lookup is a typed error.
/// match Loop::current() {
///     Ok(lp) => { let _beat = Heartbeat::new(&lp); }
///     Err(err) => assert!(matches!(err, anyloop::Error::NoLoop)),
/// }
/// ```
#[derive(Clone)]
pub struct Loop {
    backend: Arc<dyn EventLoop>,
}

impl Loop {
    /// Wraps a backend.
    pub fn new(backend: impl EventLoop + 'static) -> Self {
        Loop {
            backend: Arc::new(backend),
        }
    }

    /// Wraps a backend already behind an `Arc`.
    pub fn from_arc(backend: Arc<dyn EventLoop>) -> Self {
        Loop { backend }
    }

    /// The loop for code running on this thread: the thread's bound loop, else the process
    /// default, else [`Error::NoLoop`](crate::Error::NoLoop) (R7, R50).
    pub fn current() -> Result<Loop> {
        current::lookup()
    }

    /// The backend behind this handle.
    pub fn backend(&self) -> &dyn EventLoop {
        &*self.backend
    }

    /// True when both handles point to the same backend instance.
    pub fn same_loop(&self, other: &Loop) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.backend), Arc::as_ptr(&other.backend))
    }

    /// [`EventLoop::add_handle`] taking any suitable closure.
    pub fn add_handle(
        &self,
        fd: RawFd,
        events: IoEvents,
        callback: impl Into<HandleCallback>,
    ) -> Result<HandleId, Rejected<HandleCallback>> {
        self.backend.add_handle(fd, events, callback.into())
    }

    /// [`EventLoop::update_handle`].
    pub fn update_handle(&self, id: HandleId, events: IoEvents) -> Result<()> {
        self.backend.update_handle(id, events)
    }

    /// [`EventLoop::remove_handle`].
    pub fn remove_handle(&self, id: HandleId) -> Result<()> {
        self.backend.remove_handle(id)
    }

    /// [`EventLoop::add_timeout`] taking any suitable closure.
    pub fn add_timeout(
        &self,
        interval: Interval,
        callback: impl Into<TimeoutCallback>,
    ) -> Result<TimeoutId, Rejected<TimeoutCallback>> {
        self.backend.add_timeout(interval, callback.into())
    }

    /// [`EventLoop::update_timeout`].
    pub fn update_timeout(&self, id: TimeoutId, interval: Interval) -> Result<()> {
        self.backend.update_timeout(id, interval)
    }

    /// [`EventLoop::remove_timeout`].
    pub fn remove_timeout(&self, id: TimeoutId) -> Result<()> {
        self.backend.remove_timeout(id)
    }

    /// Adds a watch that removes itself when the returned guard is dropped.
    ///
    /// # Errors
    /// As [`EventLoop::add_handle`].
    pub fn watch(
        &self,
        fd: RawFd,
        events: IoEvents,
        callback: impl Into<HandleCallback>,
    ) -> Result<Watch, Rejected<HandleCallback>> {
        let id = self.add_handle(fd, events, callback)?;
        Ok(Watch::from_parts(self.clone(), id, fd))
    }

    /// Adds a timer that removes itself when the returned guard is dropped.
    ///
    /// # Errors
    /// As [`EventLoop::add_timeout`].
    pub fn timer(
        &self,
        interval: Interval,
        callback: impl Into<TimeoutCallback>,
    ) -> Result<Timer, Rejected<TimeoutCallback>> {
        let id = self.add_timeout(interval, callback)?;
        Ok(Timer::from_parts(self.clone(), id))
    }
}

impl<L: EventLoop + 'static> From<Arc<L>> for Loop {
    fn from(backend: Arc<L>) -> Self {
        Loop { backend }
    }
}

impl fmt::Debug for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Loop")
            .field(&Arc::as_ptr(&self.backend).cast::<()>())
            .finish()
    }
}
