//! The callbacks handed to the vtable: any-thread (`Send`) or thread-bound, with an optional
//! debug name.
//!
//! Dropping a callback is the "free" of libvirt's vtable (`virFreeCallback`): whatever the
//! closure captured is released then. Backends must drop it outside every vtable operation,
//! never while it runs, exactly once, on the loop thread ([R21–R26](crate::contract#r21)).
//!
//! A *thread-bound* callback ([`WatchCallback::local`], [`TimerCallback::local`]) need not be
//! `Send`: it may capture an `Rc`, a GTK widget or a raw C pointer. It is kept in a
//! [`fragile::Sticky`], so it can only be called and dropped on the thread that made it: on
//! any other thread a call does nothing (the backend reports
//! [`WrongThread`](crate::Error::WrongThread) instead of calling it) and a drop is postponed
//! until that thread ends, when the value is dropped there. No `unsafe` is needed on the
//! user's side.

use std::borrow::Cow;
use std::fmt;
use std::os::fd::RawFd;
use std::thread::ThreadId;

use fragile::Sticky;

use crate::events::IoEvents;
use crate::id::{TimerId, WatchId};

type WatchFn = dyn FnMut(WatchId, RawFd, IoEvents) + Send;
type TimerFn = dyn FnMut(TimerId) + Send;

/// The calling thread's id, cached (`thread::current()` clones an `Arc`).
pub(crate) fn current_thread() -> ThreadId {
    thread_local! {
        static ID: ThreadId = std::thread::current().id();
    }
    ID.try_with(|id| *id)
        .unwrap_or_else(|_| std::thread::current().id())
}

/// What most callbacks do not have: kept behind one pointer, so that a registration slot
/// stays small (100 000 timers are cache-bound) and the hot path checks one `Option`.
#[derive(Debug)]
struct Meta {
    name: Option<Cow<'static, str>>,
    /// The thread a thread-bound callback belongs to.
    thread: Option<ThreadId>,
}

/// Shared by both callback kinds: the optional name and home thread.
#[derive(Debug, Default)]
struct Extra(Option<Box<Meta>>);

impl Extra {
    fn bound_here() -> Extra {
        Extra(Some(Box::new(Meta {
            name: None,
            thread: Some(current_thread()),
        })))
    }

    fn set_name(&mut self, name: Cow<'static, str>) {
        match &mut self.0 {
            Some(meta) => meta.name = Some(name),
            None => {
                self.0 = Some(Box::new(Meta {
                    name: Some(name),
                    thread: None,
                }))
            }
        }
    }

    fn name(&self) -> Option<&str> {
        self.0.as_ref().and_then(|meta| meta.name.as_deref())
    }

    fn thread(&self) -> Option<ThreadId> {
        self.0.as_ref().and_then(|meta| meta.thread)
    }

    #[inline]
    fn runs_here(&self) -> bool {
        match &self.0 {
            None => true,
            Some(meta) => meta.thread.is_none_or(|thread| thread == current_thread()),
        }
    }
}

/// The callback of an fd watch: called with its own id, its fd and the events
/// ([R13](crate::contract#r13)).
///
/// Any `FnMut(WatchId, RawFd, IoEvents) + Send` closure converts into it; a closure that is
/// not `Send` becomes one with [`local`](Self::local). [`named`](Self::named) gives it a debug
/// name that shows up in traces and errors ([R56](crate::contract#r56)).
///
/// ```
/// use anyloop::{IoEvents, WatchCallback};
/// use std::{cell::Cell, rc::Rc};
///
/// let callback = WatchCallback::new(|id, fd, events| {
///     if events.contains(IoEvents::READABLE) { /* read from fd */ }
///     let _ = (id, fd);
/// })
/// .named("control-socket");
/// assert_eq!(callback.name(), Some("control-socket"));
///
/// // Not `Send`: bound to this thread.
/// let seen = Rc::new(Cell::new(0));
/// let local = WatchCallback::local(move |_, _, _| seen.set(seen.get() + 1));
/// assert_eq!(local.thread(), Some(std::thread::current().id()));
/// assert!(local.runs_here());
/// ```
pub struct WatchCallback {
    func: Box<WatchFn>,
    extra: Extra,
}

impl WatchCallback {
    /// Wraps a closure that may be called on any thread.
    pub fn new(func: impl FnMut(WatchId, RawFd, IoEvents) + Send + 'static) -> Self {
        WatchCallback {
            func: Box::new(func),
            extra: Extra::default(),
        }
    }

    /// Wraps a closure that is not `Send`, bound to the calling thread: it is only ever called
    /// and dropped there ([R42](crate::contract#r42)). Register it on the loop's own thread;
    /// elsewhere the add fails with [`WrongThread`](crate::Error::WrongThread).
    pub fn local(func: impl FnMut(WatchId, RawFd, IoEvents) + 'static) -> Self {
        let mut cell = Sticky::new(func);
        WatchCallback {
            func: Box::new(move |id, fd, events| {
                // Never fails on the loop thread: backends check `runs_here` first.
                let _ = cell.try_with_mut(|func| func(id, fd, events));
            }),
            extra: Extra::bound_here(),
        }
    }

    /// Gives the registration a debug name ([R56](crate::contract#r56)).
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.extra.set_name(name.into());
        self
    }

    /// The debug name, if one was given.
    pub fn name(&self) -> Option<&str> {
        self.extra.name()
    }

    /// The thread a thread-bound callback belongs to; `None` for a `Send` one.
    pub fn thread(&self) -> Option<ThreadId> {
        self.extra.thread()
    }

    /// False when this is a thread-bound callback of another thread: it must not be called
    /// here (a call would do nothing).
    #[inline]
    pub fn runs_here(&self) -> bool {
        self.extra.runs_here()
    }

    /// Runs the callback. Backends call this from their dispatch, on the loop thread, with no
    /// lock held, after checking [`runs_here`](Self::runs_here).
    #[inline]
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
            .field("name", &self.name())
            .field("thread", &self.thread())
            .finish_non_exhaustive()
    }
}

/// The callback of a timer: called with its own id each time the timer fires.
///
/// As for [`WatchCallback`]: any `FnMut(TimerId) + Send` closure converts into it, and
/// [`local`](Self::local) takes one that is not `Send`.
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
    func: Box<TimerFn>,
    extra: Extra,
}

impl TimerCallback {
    /// Wraps a closure that may be called on any thread.
    pub fn new(func: impl FnMut(TimerId) + Send + 'static) -> Self {
        TimerCallback {
            func: Box::new(func),
            extra: Extra::default(),
        }
    }

    /// Wraps a closure that is not `Send`, bound to the calling thread (see
    /// [`WatchCallback::local`]).
    pub fn local(func: impl FnMut(TimerId) + 'static) -> Self {
        let mut cell = Sticky::new(func);
        TimerCallback {
            func: Box::new(move |id| {
                let _ = cell.try_with_mut(|func| func(id));
            }),
            extra: Extra::bound_here(),
        }
    }

    /// Gives the registration a debug name ([R56](crate::contract#r56)).
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.extra.set_name(name.into());
        self
    }

    /// The debug name, if one was given.
    pub fn name(&self) -> Option<&str> {
        self.extra.name()
    }

    /// The thread a thread-bound callback belongs to; `None` for a `Send` one.
    pub fn thread(&self) -> Option<ThreadId> {
        self.extra.thread()
    }

    /// False when this is a thread-bound callback of another thread.
    #[inline]
    pub fn runs_here(&self) -> bool {
        self.extra.runs_here()
    }

    /// Runs the callback. Backends call this from their dispatch, on the loop thread, with no
    /// lock held, after checking [`runs_here`](Self::runs_here).
    #[inline]
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
            .field("name", &self.name())
            .field("thread", &self.thread())
            .finish_non_exhaustive()
    }
}
