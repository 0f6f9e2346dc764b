//! `Loop`: the cheap, cloneable handle to a backend that libraries store.

use std::fmt;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::thread::ThreadId;

use crate::callback::{current_thread, TimerCallback, WatchCallback};
use crate::current;
use crate::error::{Error, Rejected, Result};
use crate::events::IoEvents;
use crate::guard::{Timer, Watch};
use crate::id::{TimerId, WatchId};
use crate::vtable::{Backend, LoopStats, Schedule};
use crate::watch_fd::AsWatchFd;

/// A shared handle to an event loop backend: an `Arc<dyn Backend>`.
///
/// Libraries keep one (usually from [`Loop::current`] when their object is created, so the
/// object binds to the loop of the thread that created it, [R50](crate::contract#r50)) and call the six vtable
/// operations on it, or create RAII [`Watch`]/[`Timer`] guards. Cloning is one atomic
/// increment. A `Loop` does not keep the loop *running*; when the application destroys its
/// loop, operations return [`Error::LoopGone`](crate::Error::LoopGone).
///
/// ```
/// use anyloop::{Loop, Schedule};
/// use std::time::Duration;
///
/// /// A library object that pings every second, written against the vtable only.
/// struct Heartbeat { _timer: anyloop::Timer }
///
/// impl Heartbeat {
///     fn new(lp: &Loop) -> anyloop::Result<Heartbeat> {
///         let timer = lp.timer(Schedule::Every(Duration::from_secs(1)), |_id| println!("beat"))?;
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
    /// default, else [`Error::NoLoop`](crate::Error::NoLoop) ([R7](crate::contract#r7), [R50](crate::contract#r50)).
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

    /// [`Backend::add_watch`] taking any suitable closure, on a borrowed fd or a raw number
    /// ([`AsWatchFd`]).
    ///
    /// A thread-bound callback ([`WatchCallback::local`]) is refused with
    /// [`WrongThread`](Error::WrongThread) unless this is the loop's thread
    /// ([`Backend::loop_thread`]).
    pub fn add_watch(
        &self,
        fd: impl AsWatchFd,
        interest: IoEvents,
        callback: impl Into<WatchCallback>,
    ) -> Result<WatchId, Rejected<WatchCallback>> {
        let fd = fd.watch_fd();
        let callback = callback.into();
        if let Some(thread) = callback.thread() {
            if let Err(error) = self.check_thread(thread) {
                return Err(Rejected::new(error, callback));
            }
        }
        self.backend.add_watch(fd, interest, callback)
    }

    /// [`Backend::update_watch`].
    pub fn update_watch(&self, id: WatchId, interest: IoEvents) -> Result<()> {
        self.backend.update_watch(id, interest)
    }

    /// [`Backend::remove_watch`].
    pub fn remove_watch(&self, id: WatchId) -> Result<()> {
        self.backend.remove_watch(id)
    }

    /// [`Backend::add_timer`] taking any suitable closure; thread-bound callbacks as for
    /// [`add_watch`](Self::add_watch).
    pub fn add_timer(
        &self,
        schedule: Schedule,
        callback: impl Into<TimerCallback>,
    ) -> Result<TimerId, Rejected<TimerCallback>> {
        let callback = callback.into();
        if let Some(thread) = callback.thread() {
            if let Err(error) = self.check_thread(thread) {
                return Err(Rejected::new(error, callback));
            }
        }
        self.backend.add_timer(schedule, callback)
    }

    /// [`Backend::update_timer`].
    pub fn update_timer(&self, id: TimerId, schedule: Schedule) -> Result<()> {
        self.backend.update_timer(id, schedule)
    }

    /// [`Backend::remove_timer`].
    pub fn remove_timer(&self, id: TimerId) -> Result<()> {
        self.backend.remove_timer(id)
    }

    /// [`Backend::timer_schedule`]: the timer's schedule now (`Disabled` once a
    /// [`Once`](Schedule::Once) timer fired).
    pub fn timer_schedule(&self, id: TimerId) -> Result<Schedule> {
        self.backend.timer_schedule(id)
    }

    /// Live watches, live timers, pending frees and iterations so far, from any thread
    /// ([`Backend::stats`]).
    pub fn stats(&self) -> LoopStats {
        self.backend.stats()
    }

    /// Wakes the loop if it is blocked waiting ([`Backend::wake`]).
    pub fn wake(&self) {
        self.backend.wake()
    }

    /// The thread the loop runs its callbacks on, if the backend names it
    /// ([`Backend::loop_thread`]).
    pub fn loop_thread(&self) -> Option<ThreadId> {
        self.backend.loop_thread()
    }

    /// True when called on the loop's thread: where thread-bound callbacks may be added.
    pub fn is_loop_thread(&self) -> bool {
        self.backend.loop_thread() == Some(current_thread())
    }

    /// Whether the loop still exists (see [`Backend::is_alive`]): once it was destroyed,
    /// every operation fails with [`LoopGone`](crate::Error::LoopGone). From any thread.
    pub fn is_alive(&self) -> bool {
        self.backend.is_alive()
    }

    fn check_thread(&self, thread: ThreadId) -> Result<()> {
        if self.backend.loop_thread() == Some(thread) && thread == current_thread() {
            Ok(())
        } else if !self.backend.is_alive() {
            Err(Error::LoopGone)
        } else {
            Err(Error::WrongThread {
                id: None,
                what: "a thread-bound callback can only be added on its loop's thread",
            })
        }
    }

    /// Adds a watch that removes itself when the returned guard is dropped, on a borrowed fd
    /// (`&socket`) or a raw number ([`AsWatchFd`]). Drop the guard before closing the fd
    /// ([R53](crate::contract#r53)).
    ///
    /// # Errors
    /// As [`Backend::add_watch`].
    pub fn watch(
        &self,
        fd: impl AsWatchFd,
        interest: IoEvents,
        callback: impl Into<WatchCallback>,
    ) -> Result<Watch, Rejected<WatchCallback>> {
        let fd = fd.watch_fd();
        let id = self.add_watch(fd, interest, callback)?;
        Ok(Watch::from_parts(self.clone(), id, fd))
    }

    /// [`watch`](Self::watch) with a closure that need not be `Send` (it may capture an `Rc`,
    /// a GTK widget, a raw pointer): a thread-bound callback ([`WatchCallback::local`]), only
    /// ever called and dropped on this thread, which must be the loop's thread.
    ///
    /// # Errors
    /// [`WrongThread`](Error::WrongThread) off the loop's thread; else as
    /// [`Backend::add_watch`].
    pub fn watch_local(
        &self,
        fd: impl AsWatchFd,
        interest: IoEvents,
        callback: impl FnMut(WatchId, RawFd, IoEvents) + 'static,
    ) -> Result<Watch, Rejected<WatchCallback>> {
        self.watch(fd, interest, WatchCallback::local(callback))
    }

    /// Adds a timer that removes itself when the returned guard is dropped.
    ///
    /// # Errors
    /// As [`Backend::add_timer`].
    pub fn timer(
        &self,
        schedule: Schedule,
        callback: impl Into<TimerCallback>,
    ) -> Result<Timer, Rejected<TimerCallback>> {
        let id = self.add_timer(schedule, callback)?;
        Ok(Timer::from_parts(self.clone(), id))
    }

    /// [`timer`](Self::timer) with a closure that need not be `Send`: a thread-bound callback
    /// ([`TimerCallback::local`]); see [`watch_local`](Self::watch_local).
    ///
    /// # Errors
    /// [`WrongThread`](Error::WrongThread) off the loop's thread; else as
    /// [`Backend::add_timer`].
    pub fn timer_local(
        &self,
        schedule: Schedule,
        callback: impl FnMut(TimerId) + 'static,
    ) -> Result<Timer, Rejected<TimerCallback>> {
        self.timer(schedule, TimerCallback::local(callback))
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
