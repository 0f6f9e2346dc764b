//! The callbacks handed to the vtable, with their optional debug names.
//!
//! Dropping a callback is the "free" of libvirt's vtable (`virFreeCallback`): whatever the
//! closure captured is released then. Backends must drop it outside every vtable operation,
//! never while it runs, exactly once, on the loop thread (contract R21–R26).

use std::borrow::Cow;
use std::fmt;
use std::os::fd::RawFd;

use crate::events::IoEvents;
use crate::id::{TimerId, WatchId};

type HandleFn = dyn FnMut(WatchId, RawFd, IoEvents) + Send;
type TimeoutFn = dyn FnMut(TimerId) + Send;

/// The callback of an fd watch: called with its own id, its fd and the events (R13).
///
/// Any `FnMut(WatchId, RawFd, IoEvents) + Send` closure converts into it; use
/// [`named`](Self::named) to give it a debug name that shows up in traces and errors (R56).
///
/// ```
/// use anyloop::{WatchCallback, IoEvents};
/// let callback = WatchCallback::new(|id, fd, events| {
///     if events.contains(IoEvents::READABLE) { /* read from fd */ }
///     let _ = (id, fd);
/// })
/// .named("control-socket");
/// assert_eq!(callback.name(), Some("control-socket"));
/// ```
pub struct WatchCallback {
    /// Boxed: most callbacks have no name, and a thin pointer keeps every registration slot
    /// of a backend's table small (100 000 timers are cache-bound).
    name: Option<Box<Cow<'static, str>>>,
    func: Box<HandleFn>,
}

impl WatchCallback {
    /// Wraps a closure.
    pub fn new(func: impl FnMut(WatchId, RawFd, IoEvents) + Send + 'static) -> Self {
        WatchCallback {
            name: None,
            func: Box::new(func),
        }
    }

    /// Gives the registration a debug name (contract R56).
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(Box::new(name.into()));
        self
    }

    /// The debug name, if one was given.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref().map(|name| name.as_ref())
    }

    /// Runs the callback. Backends call this from their dispatch, on the loop thread, with no
    /// lock held.
    pub fn call(&mut self, id: WatchId, fd: RawFd, events: IoEvents) {
        (self.func)(id, fd, events)
    }
}

impl<F> From<F> for WatchCallback
where
    F: FnMut(WatchId, RawFd, IoEvents) + Send + 'static,
{
    fn from(func: F) -> Self {
        WatchCallback::new(func)
    }
}

impl fmt::Debug for WatchCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchCallback")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The callback of a timer: called with its own id each time the timer fires.
///
/// ```
/// use anyloop::TimerCallback;
/// let mut fired = 0;
/// let mut callback = TimerCallback::new(move |id| {
///     fired += 1;
///     println!("{id} fired {fired} times");
/// })
/// .named("keepalive");
/// callback.call(anyloop::TimerId::allocate());
/// assert_eq!(callback.name(), Some("keepalive"));
/// ```
pub struct TimerCallback {
    /// Boxed: most callbacks have no name, and a thin pointer keeps every registration slot
    /// of a backend's table small (100 000 timers are cache-bound).
    name: Option<Box<Cow<'static, str>>>,
    func: Box<TimeoutFn>,
}

impl TimerCallback {
    /// Wraps a closure.
    pub fn new(func: impl FnMut(TimerId) + Send + 'static) -> Self {
        TimerCallback {
            name: None,
            func: Box::new(func),
        }
    }

    /// Gives the registration a debug name (contract R56).
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(Box::new(name.into()));
        self
    }

    /// The debug name, if one was given.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref().map(|name| name.as_ref())
    }

    /// Runs the callback. Backends call this from their dispatch, on the loop thread, with no
    /// lock held.
    pub fn call(&mut self, id: TimerId) {
        (self.func)(id)
    }
}

impl<F> From<F> for TimerCallback
where
    F: FnMut(TimerId) + Send + 'static,
{
    fn from(func: F) -> Self {
        TimerCallback::new(func)
    }
}

impl fmt::Debug for TimerCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerCallback")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
