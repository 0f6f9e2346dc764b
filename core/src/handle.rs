//! `Loop`: the cheap, cloneable handle to a backend that libraries store.

use std::fmt;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::callback::{TimerCallback, WatchCallback};
use crate::current;
use crate::error::{Rejected, Result};
use crate::events::IoEvents;
use crate::guard::{Timer, Watch};
use crate::id::{TimerId, WatchId};
use crate::vtable::{Backend, Interval};

/// A shared handle to an event loop backend: an `Arc<dyn Backend>`.
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
    backend: Arc<dyn Backend>,
}

impl Loop {
    /// Wraps a backend.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Loop {
            backend: Arc::new(backend),
        }
    }

    /// Wraps a backend already behind an `Arc`.
    pub fn from_arc(backend: Arc<dyn Backend>) -> Self {
        Loop { backend }
    }

    /// The loop for code running on this thread: the thread's bound loop, else the process
    /// default, else [`Error::NoLoop`](crate::Error::NoLoop) (R7, R50).
    pub fn current() -> Result<Loop> {
        current::lookup()
    }

    /// The backend behind this handle.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// True when both handles point to the same backend instance.
    pub fn same_loop(&self, other: &Loop) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.backend), Arc::as_ptr(&other.backend))
    }

    /// [`Backend::add_watch`] taking any suitable closure.
    pub fn add_watch(
        &self,
        fd: RawFd,
        events: IoEvents,
        callback: impl Into<WatchCallback>,
    ) -> Result<WatchId, Rejected<WatchCallback>> {
        self.backend.add_watch(fd, events, callback.into())
    }

    /// [`Backend::update_watch`].
    pub fn update_watch(&self, id: WatchId, events: IoEvents) -> Result<()> {
        self.backend.update_watch(id, events)
    }

    /// [`Backend::remove_watch`].
    pub fn remove_watch(&self, id: WatchId) -> Result<()> {
        self.backend.remove_watch(id)
    }

    /// [`Backend::add_timer`] taking any suitable closure.
    pub fn add_timer(
        &self,
        interval: Interval,
        callback: impl Into<TimerCallback>,
    ) -> Result<TimerId, Rejected<TimerCallback>> {
        self.backend.add_timer(interval, callback.into())
    }

    /// [`Backend::update_timer`].
    pub fn update_timer(&self, id: TimerId, interval: Interval) -> Result<()> {
        self.backend.update_timer(id, interval)
    }

    /// [`Backend::remove_timer`].
    pub fn remove_timer(&self, id: TimerId) -> Result<()> {
        self.backend.remove_timer(id)
    }

    /// Adds a watch that removes itself when the returned guard is dropped.
    ///
    /// # Errors
    /// As [`Backend::add_watch`].
    pub fn watch(
        &self,
        fd: RawFd,
        events: IoEvents,
        callback: impl Into<WatchCallback>,
    ) -> Result<Watch, Rejected<WatchCallback>> {
        let id = self.add_watch(fd, events, callback)?;
        Ok(Watch::from_parts(self.clone(), id, fd))
    }

    /// Adds a timer that removes itself when the returned guard is dropped.
    ///
    /// # Errors
    /// As [`Backend::add_timer`].
    pub fn timer(
        &self,
        interval: Interval,
        callback: impl Into<TimerCallback>,
    ) -> Result<Timer, Rejected<TimerCallback>> {
        let id = self.add_timer(interval, callback)?;
        Ok(Timer::from_parts(self.clone(), id))
    }
}

impl<L: Backend + 'static> From<Arc<L>> for Loop {
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
