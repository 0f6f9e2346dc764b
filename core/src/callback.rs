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

/// The calling thread's id, cached (`thread::current()` clones an `Arc`).
pub(crate) fn current_thread() -> ThreadId {
    thread_local! {
        static ID: ThreadId = std::thread::current().id();
    }
    ID.try_with(|id| *id)
        .unwrap_or_else(|_| std::thread::current().id())
}

/// What few callbacks have: a debug name, a home thread.
#[derive(Debug, Default)]
struct Meta {
    name: Option<Cow<'static, str>>,
    /// The thread a thread-bound callback belongs to.
    thread: Option<ThreadId>,
}

/// A callback's closure and, for the few that have one, its [`Meta`], behind one pointer: a
/// callback is a 16-byte fat pointer, so a registration slot stays small (100 000 timers are
/// cache-bound, W6), and a closure that captures nothing allocates nothing. `Args` is the
/// argument tuple of the callback kind.
trait Body<Args>: Send {
    fn call(&mut self, args: Args);
    fn meta(&self) -> Option<&Meta> {
        None
    }
    fn meta_mut(&mut self) -> Option<&mut Meta> {
        None
    }
}

/// A plain `Send` closure: no name, no home thread.
struct Plain<F>(F);

/// A closure that is not `Send`, callable only on the thread that made it.
struct Local<F: 'static>(Sticky<F>);

/// A body with a name or a home thread.
struct Dressed<B> {
    meta: Meta,
    body: B,
}

type WatchArgs = (WatchId, RawFd, IoEvents);

impl<F: FnMut(WatchId, RawFd, IoEvents) + Send> Body<WatchArgs> for Plain<F> {
    #[inline]
    fn call(&mut self, (id, fd, events): WatchArgs) {
        (self.0)(id, fd, events)
    }
}

impl<F: FnMut(TimerId) + Send> Body<TimerId> for Plain<F> {
    #[inline]
    fn call(&mut self, id: TimerId) {
        (self.0)(id)
    }
}

impl<F: FnMut(WatchId, RawFd, IoEvents) + 'static> Body<WatchArgs> for Local<F> {
    fn call(&mut self, (id, fd, events): WatchArgs) {
        // Never fails on the loop thread: backends check `runs_here` first.
        let _ = self.0.try_with_mut(|func| func(id, fd, events));
    }
}

impl<F: FnMut(TimerId) + 'static> Body<TimerId> for Local<F> {
    fn call(&mut self, id: TimerId) {
        let _ = self.0.try_with_mut(|func| func(id));
    }
}

impl<Args, B: Body<Args>> Body<Args> for Dressed<B> {
    fn call(&mut self, args: Args) {
        self.body.call(args)
    }
    fn meta(&self) -> Option<&Meta> {
        Some(&self.meta)
    }
    fn meta_mut(&mut self) -> Option<&mut Meta> {
        Some(&mut self.meta)
    }
}

impl<Args> Body<Args> for Box<dyn Body<Args>> {
    fn call(&mut self, args: Args) {
        (**self).call(args)
    }
    fn meta(&self) -> Option<&Meta> {
        (**self).meta()
    }
    fn meta_mut(&mut self) -> Option<&mut Meta> {
        (**self).meta_mut()
    }
}

/// The shared half of both callback kinds: the boxed body and what is read off its [`Meta`].
struct Boxed<Args: 'static>(Box<dyn Body<Args>>);

impl<Args: 'static> Boxed<Args> {
    fn bound_here<B: Body<Args> + 'static>(body: B) -> Self {
        Boxed(Box::new(Dressed {
            meta: Meta {
                name: None,
                thread: Some(current_thread()),
            },
            body,
        }))
    }

    fn set_name(&mut self, name: Cow<'static, str>) {
        if let Some(meta) = self.0.meta_mut() {
            meta.name = Some(name);
            return;
        }
        // A plain closure: wrapped once more (naming is for debugging, not the hot path).
        let body = std::mem::replace(&mut self.0, Box::new(Nothing));
        self.0 = Box::new(Dressed {
            meta: Meta {
                name: Some(name),
                thread: None,
            },
            body,
        });
    }

    #[inline]
    fn call(&mut self, args: Args) {
        self.0.call(args)
    }

    fn name(&self) -> Option<&str> {
        self.0.meta().and_then(|meta| meta.name.as_deref())
    }

    fn thread(&self) -> Option<ThreadId> {
        self.0.meta().and_then(|meta| meta.thread)
    }

    #[inline]
    fn runs_here(&self) -> bool {
        match self.0.meta() {
            None => true,
            Some(meta) => meta.thread.is_none_or(|thread| thread == current_thread()),
        }
    }
}

/// A placeholder body, held for an instant while [`Boxed::set_name`] rewraps (zero-sized: no
/// allocation).
struct Nothing;

impl<Args> Body<Args> for Nothing {
    fn call(&mut self, _: Args) {}
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
pub struct WatchCallback(Boxed<WatchArgs>);

impl WatchCallback {
    /// Wraps a closure that may be called on any thread.
    pub fn new(func: impl FnMut(WatchId, RawFd, IoEvents) + Send + 'static) -> Self {
        WatchCallback(Boxed(Box::new(Plain(func))))
    }

    /// Wraps a closure that is not `Send`, bound to the calling thread: it is only ever called
    /// and dropped there ([R42](crate::contract#r42)). Register it on the loop's own thread;
    /// elsewhere the add fails with [`WrongThread`](crate::Error::WrongThread).
    pub fn local(func: impl FnMut(WatchId, RawFd, IoEvents) + 'static) -> Self {
        WatchCallback(Boxed::bound_here(Local(Sticky::new(func))))
    }

    /// Gives the registration a debug name ([R56](crate::contract#r56)).
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.0.set_name(name.into());
        self
    }

    /// The debug name, if one was given.
    pub fn name(&self) -> Option<&str> {
        self.0.name()
    }

    /// The thread a thread-bound callback belongs to; `None` for a `Send` one.
    pub fn thread(&self) -> Option<ThreadId> {
        self.0.thread()
    }

    /// False when this is a thread-bound callback of another thread: it must not be called
    /// here (a call would do nothing).
    #[inline]
    pub fn runs_here(&self) -> bool {
        self.0.runs_here()
    }

    /// Runs the callback. Backends call this from their dispatch, on the loop thread, with no
    /// lock held, after checking [`runs_here`](Self::runs_here).
    #[inline]
    pub fn call(&mut self, id: WatchId, fd: RawFd, events: IoEvents) {
        self.0.call((id, fd, events))
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
pub struct TimerCallback(Boxed<TimerId>);

impl TimerCallback {
    /// Wraps a closure that may be called on any thread.
    pub fn new(func: impl FnMut(TimerId) + Send + 'static) -> Self {
        TimerCallback(Boxed(Box::new(Plain(func))))
    }

    /// Wraps a closure that is not `Send`, bound to the calling thread (see
    /// [`WatchCallback::local`]).
    pub fn local(func: impl FnMut(TimerId) + 'static) -> Self {
        TimerCallback(Boxed::bound_here(Local(Sticky::new(func))))
    }

    /// Gives the registration a debug name ([R56](crate::contract#r56)).
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.0.set_name(name.into());
        self
    }

    /// The debug name, if one was given.
    pub fn name(&self) -> Option<&str> {
        self.0.name()
    }

    /// The thread a thread-bound callback belongs to; `None` for a `Send` one.
    pub fn thread(&self) -> Option<ThreadId> {
        self.0.thread()
    }

    /// False when this is a thread-bound callback of another thread.
    #[inline]
    pub fn runs_here(&self) -> bool {
        self.0.runs_here()
    }

    /// Runs the callback. Backends call this from their dispatch, on the loop thread, with no
    /// lock held, after checking [`runs_here`](Self::runs_here).
    #[inline]
    pub fn call(&mut self, id: TimerId) {
        self.0.call(id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// A callback is one fat pointer (W6): a name or a home thread lives in the box.
    #[test]
    fn callbacks_are_two_words() {
        assert_eq!(size_of::<TimerCallback>(), 16);
        assert_eq!(size_of::<Option<TimerCallback>>(), 16);
        assert_eq!(size_of::<Option<WatchCallback>>(), 16);
    }

    #[test]
    fn naming_keeps_the_closure_and_the_home_thread() {
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = hits.clone();
        let mut plain = TimerCallback::new(move |_| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .named("a")
        .named("b");
        assert_eq!(plain.name(), Some("b"));
        assert_eq!(plain.thread(), None);
        assert!(plain.runs_here());
        plain.call(TimerId::allocate());
        assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), 1);

        let cell = std::rc::Rc::new(std::cell::Cell::new(0));
        let inner = cell.clone();
        let mut local = WatchCallback::local(move |_, _, _| inner.set(inner.get() + 1)).named("c");
        assert_eq!(local.name(), Some("c"));
        assert_eq!(local.thread(), Some(std::thread::current().id()));
        local.call(WatchId::allocate(), 0, IoEvents::READABLE);
        assert_eq!(cell.get(), 1);
        // Handed back so that it is dropped on its own thread.
        let elsewhere = std::thread::spawn(move || (local.runs_here(), local)).join();
        assert!(matches!(elsewhere, Ok((false, _))));
    }
}
