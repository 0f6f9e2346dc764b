//! `Registry`: the handle a library owns and applications register with.

use std::fmt;
use std::sync::Arc;

use super::builder::RegistryBuilder;
use super::event::{Event, EventSet};
use super::kind::KindSet;
use super::listen::{Listen, ListenKinds};
use super::shared::Shared;
use crate::bound::ThreadBound;
use crate::error::{Rejected, Result};
use crate::handle::Loop;
use crate::id::CallbackId;

/// A typed callback as [`Registry::on`] hands it back when the registration fails.
pub type TypedCallback<E> = Box<dyn FnMut(&E) + Send>;

/// A thread-bound typed callback as [`Registry::on_local`] hands it back when the
/// registration fails: reachable on its own thread only ([`ThreadBound::into_inner`]).
pub type LocalTypedCallback<E> = ThreadBound<Box<dyn FnMut(&E)>>;

/// A typed event-callback registry on one loop (contract §3, [E1](crate::contract#e1)–[E30](crate::contract#e30)).
///
/// The library that owns it declares its events (an [`EventSet`] enum with one [`Event`]
/// payload type per kind) and calls [`emit`](Self::emit) from any thread; applications
/// register callbacks with [`on`](Self::on) (one typed kind), [`on_kinds`](Self::on_kinds)
/// (a set of kinds, libguestfs style) or the [`listen`](Self::listen) builder (object filter,
/// predicate, keyed form), and deregister any of them by id.
///
/// Delivery is asynchronous: `emit` only queues; the loop the registry belongs to delivers
/// the queue from a 0-interval timer, on its thread, in emit order, to matching callbacks in
/// registration order ([E5](crate::contract#e5)–[E7](crate::contract#e7)). The registry uses nothing but the [`Backend`] vtable, so it
/// works on every backend.
///
/// Cloning is cheap and every clone is the same registry. It closes when
/// [`close`](Self::close) is called or the last clone is dropped. A callback that holds a
/// clone keeps it open until `close` (a reference cycle, broken by `close`): callbacks should
/// hold a [`WeakRegistry`] ([`downgrade`](Self::downgrade)), and a library should close its
/// registry in its own `Drop`.
///
/// [`Backend`]: crate::Backend
pub struct Registry<S: EventSet> {
    owner: Arc<Owner<S>>,
}

/// Closes the registry when the last [`Registry`] clone goes.
struct Owner<S: EventSet> {
    shared: Arc<Shared<S>>,
}

impl<S: EventSet> Drop for Owner<S> {
    fn drop(&mut self) {
        let _ = self.shared.close(None);
    }
}

impl<S: EventSet> Registry<S> {
    /// A registry on this thread's current loop ([`Loop::current`]).
    ///
    /// # Errors
    /// [`NoLoop`](crate::Error::NoLoop) when the thread has no loop and no default is
    /// installed; [`InvalidArgument`](crate::Error::InvalidArgument) when the kind enum does not
    /// fit (more than 64 kinds, or `index` disagrees with `ALL`).
    pub fn new() -> Result<Self> {
        RegistryBuilder::new().build()
    }

    /// A registry on `lp`.
    ///
    /// # Errors
    /// [`InvalidArgument`](crate::Error::InvalidArgument) when the kind enum does not fit.
    pub fn with_loop(lp: Loop) -> Result<Self> {
        RegistryBuilder::new().event_loop(lp).build()
    }

    /// A builder for the library-side options: the loop, an object-key check, the per-kind
    /// transition hook and a fallback sink.
    pub fn builder() -> RegistryBuilder<S> {
        RegistryBuilder::new()
    }

    pub(crate) fn from_shared(shared: Arc<Shared<S>>) -> Self {
        Registry {
            owner: Arc::new(Owner { shared }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<S>> {
        &self.owner.shared
    }

    /// Registers `callback` for every event of type `E`, on any object.
    ///
    /// The callback runs on the loop thread with the payload borrowed for the call ([E19](crate::contract#e19)).
    ///
    /// ```
    /// # use anyloop::{Event, EventKind, EventSet, Registry};
    /// # #[derive(Debug, Clone, Copy, PartialEq, Eq)] enum Kind { Progress }
    /// # impl EventKind for Kind { const ALL: &'static [Kind] = &[Kind::Progress]; fn index(self) -> usize { 0 } }
    /// # struct Progress { position: u64, total: u64 }
    /// # struct Ev(Progress);
    /// # impl EventSet for Ev { type Kind = Kind; type Key = ();
    /// #   fn kind(&self) -> Kind { Kind::Progress } fn key(&self) -> Option<&()> { None } }
    /// # impl Event<Ev> for Progress { const KIND: Kind = Kind::Progress;
    /// #   fn view(e: &Ev) -> Option<&Progress> { Some(&e.0) } }
    /// # fn demo(registry: &Registry<Ev>) -> anyloop::Result<()> {
    /// let id = registry.on::<Progress>(|p| println!("{}/{}", p.position, p.total))?;
    /// // or, with the type on the closure:
    /// let other = registry.on(|p: &Progress| assert!(p.position <= p.total))?;
    /// # let _ = (id, other); Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Closed`](crate::Error::Closed) after close, or a loop error creating the flush timer
    /// ([`LoopGone`](crate::Error::LoopGone)); the callback comes back (boxed) in the
    /// [`Rejected`], never dropped ([E3](crate::contract#e3)). [`listen`](Self::listen) hands it back unboxed.
    pub fn on<E: Event<S>>(
        &self,
        callback: impl FnMut(&E) + Send + 'static,
    ) -> Result<CallbackId, Rejected<TypedCallback<E>>> {
        let boxed: TypedCallback<E> = Box::new(callback);
        self.listen::<E>().call(boxed)
    }

    /// Registers `callback` for every event whose kind is in `kinds` (libguestfs's bitmask;
    /// [`KindSet::all`] for every kind). It receives the kind being delivered and the event.
    ///
    /// # Errors
    /// [`InvalidArgument`](crate::Error::InvalidArgument) for an empty set ([E21](crate::contract#e21)), else as
    /// [`on`](Self::on).
    pub fn on_kinds<F>(
        &self,
        kinds: KindSet<S::Kind>,
        callback: F,
    ) -> Result<CallbackId, Rejected<F>>
    where
        F: FnMut(S::Kind, &S) + Send + 'static,
    {
        self.listen_kinds(kinds).call(callback)
    }

    /// [`on`](Self::on) with a callback that need not be `Send` (it may capture an `Rc`, a GTK
    /// widget...): a thread-bound callback, only ever called and dropped on this thread, which
    /// must be the registry's loop thread (see [`Listen::call_local`]).
    ///
    /// ```
    /// # use anyloop::{Event, EventKind, EventSet, Registry};
    /// # #[derive(Debug, Clone, Copy, PartialEq, Eq)] enum Kind { Progress }
    /// # impl EventKind for Kind { const ALL: &'static [Kind] = &[Kind::Progress]; fn index(self) -> usize { 0 } }
    /// # struct Progress { position: u64 }
    /// # struct Ev(Progress);
    /// # impl EventSet for Ev { type Kind = Kind; type Key = ();
    /// #   fn kind(&self) -> Kind { Kind::Progress } fn key(&self) -> Option<&()> { None } }
    /// # impl Event<Ev> for Progress { const KIND: Kind = Kind::Progress;
    /// #   fn view(e: &Ev) -> Option<&Progress> { Some(&e.0) } }
    /// use std::{cell::Cell, rc::Rc};
    /// # fn demo(registry: &Registry<Ev>) -> anyloop::Result<()> {
    /// let last = Rc::new(Cell::new(0));
    /// let seen = last.clone();
    /// registry.on_local::<Progress>(move |p| seen.set(p.position))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`WrongThread`](crate::Error::WrongThread) off the loop's thread; else as
    /// [`on`](Self::on).
    pub fn on_local<E: Event<S>>(
        &self,
        callback: impl FnMut(&E) + 'static,
    ) -> Result<CallbackId, Rejected<LocalTypedCallback<E>>> {
        let boxed: Box<dyn FnMut(&E)> = Box::new(callback);
        self.listen::<E>().call_local(boxed)
    }

    /// [`on_kinds`](Self::on_kinds) with a callback that need not be `Send` (see
    /// [`on_local`](Self::on_local)).
    ///
    /// # Errors
    /// As [`on_local`](Self::on_local) and [`on_kinds`](Self::on_kinds).
    pub fn on_kinds_local<F>(
        &self,
        kinds: KindSet<S::Kind>,
        callback: F,
    ) -> Result<CallbackId, Rejected<ThreadBound<F>>>
    where
        F: FnMut(S::Kind, &S) + 'static,
    {
        self.listen_kinds(kinds).call_local(callback)
    }

    /// Starts a typed registration with options: object filter, predicate, keyed form.
    pub fn listen<E: Event<S>>(&self) -> Listen<'_, S, E> {
        Listen::new(self)
    }

    /// Starts a kind-set registration with options.
    pub fn listen_kinds(&self, kinds: KindSet<S::Kind>) -> ListenKinds<'_, S> {
        ListenKinds::new(self, kinds)
    }

    /// Deregisters a callback registered in any form. Callable from any thread and from
    /// callbacks; returns at once. The callback gets no further event, not even the rest of a
    /// running flush ([E10](crate::contract#e10)); it is dropped later on the loop thread, never inside this call nor
    /// while it runs ([E11](crate::contract#e11)). Deregistering the last callback discards the queued events ([E14](crate::contract#e14)).
    ///
    /// Returns how many callbacks still listen to its kind (for a kind-set registration: to
    /// one of its kinds), as libvirt does ([E28](crate::contract#e28)).
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown id, a second deregister, or any id
    /// after close ([E12](crate::contract#e12)).
    pub fn deregister(&self, id: CallbackId) -> Result<usize> {
        self.shared().deregister(id)
    }

    /// Queues an event for delivery on the loop thread; never calls a callback ([E6](crate::contract#e6)). Callable
    /// from any thread and from callbacks; an event emitted during a flush goes to a later
    /// flush ([E13](crate::contract#e13)).
    ///
    /// Returns false when the event was dropped at once: no callback (and no fallback) listens
    /// to its kind, the registry is closed ([E5](crate::contract#e5), [E27](crate::contract#e27)), or its loop was destroyed. Then no timer
    /// is armed.
    ///
    /// # Performance notes
    /// One lock and a push; the first event after an empty queue also arms the flush timer
    /// (one vtable call). Events are stored inline: no allocation per event once the queue
    /// has grown.
    pub fn emit(&self, event: impl Into<S>) -> bool {
        self.shared().emit(event.into())
    }

    /// Closes the registry: queued events are discarded, the flush timer is removed, and every
    /// callback is dropped exactly once on the loop thread (or here, if the loop is gone),
    /// [E16](crate::contract#e16). Later registrations fail with [`Closed`](crate::Error::Closed), deregisters with
    /// `NotFound`, emits are dropped. A second close does nothing.
    ///
    /// # Errors
    /// None today; the `Result` matches [`close_with`](Self::close_with).
    pub fn close(&self) -> Result<()> {
        self.shared().close(None)
    }

    /// Like [`close`](Self::close), but first delivers `closing` synchronously, on the calling
    /// thread, to the callbacks that match it (libguestfs's CLOSE, [E17](crate::contract#e17)); no other event is
    /// delivered after it. A callback running on another thread is waited for first; one
    /// running further up this thread's stack (close from a callback) is skipped.
    ///
    /// # Errors
    /// [`CallbackPanicked`](crate::Error::CallbackPanicked) naming the first callback that
    /// panicked on the closing event; the registry is closed anyway.
    pub fn close_with(&self, closing: impl Into<S>) -> Result<()> {
        self.shared().close(Some(closing.into()))
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// Live callbacks ([E26](crate::contract#e26)).
    pub fn callbacks(&self) -> usize {
        self.shared().lock().callbacks()
    }

    /// Live callbacks listening to `kind` ([E15](crate::contract#e15), [E28](crate::contract#e28)).
    pub fn count(&self, kind: S::Kind) -> usize {
        self.shared().lock().count(kind)
    }

    /// Events queued and not delivered yet ([E26](crate::contract#e26)).
    pub fn queued(&self) -> usize {
        self.shared().lock().queued()
    }

    /// A handle that does not keep the registry open, for callbacks that deregister
    /// themselves or emit.
    ///
    /// ```
    /// # use anyloop::{Event, EventKind, EventSet, Registry};
    /// # #[derive(Debug, Clone, Copy, PartialEq, Eq)] enum Kind { Tick }
    /// # impl EventKind for Kind { const ALL: &'static [Kind] = &[Kind::Tick]; fn index(self) -> usize { 0 } }
    /// # struct Tick(u32);
    /// # impl EventSet for Tick { type Kind = Kind; type Key = ();
    /// #   fn kind(&self) -> Kind { Kind::Tick } fn key(&self) -> Option<&()> { None } }
    /// # impl Event<Tick> for Tick { const KIND: Kind = Kind::Tick;
    /// #   fn view(e: &Tick) -> Option<&Tick> { Some(e) } }
    /// # fn demo(registry: &Registry<Tick>) -> anyloop::Result<()> {
    /// let me = std::sync::Arc::new(std::sync::OnceLock::new());
    /// let (weak, id_cell) = (registry.downgrade(), me.clone());
    /// let id = registry.on(move |tick: &Tick| {
    ///     if tick.0 >= 10 {
    ///         // One-shot after ten ticks: deregister from inside the callback (E25).
    ///         if let (Some(registry), Some(id)) = (weak.upgrade(), id_cell.get()) {
    ///             let _ = registry.deregister(*id);
    ///         }
    ///     }
    /// })?;
    /// let _ = me.set(id);
    /// # Ok(()) }
    /// ```
    pub fn downgrade(&self) -> WeakRegistry<S> {
        WeakRegistry {
            owner: Arc::downgrade(&self.owner),
        }
    }

    /// The loop the registry belongs to: callbacks run on its thread ([E24](crate::contract#e24)).
    pub fn event_loop(&self) -> &Loop {
        self.shared().event_loop()
    }
}

/// A [`Registry`] handle that does not keep it open; see [`Registry::downgrade`].
pub struct WeakRegistry<S: EventSet> {
    owner: std::sync::Weak<Owner<S>>,
}

impl<S: EventSet> WeakRegistry<S> {
    /// The registry, unless every [`Registry`] handle was dropped (it is then closed).
    pub fn upgrade(&self) -> Option<Registry<S>> {
        self.owner.upgrade().map(|owner| Registry { owner })
    }
}

impl<S: EventSet> Clone for WeakRegistry<S> {
    fn clone(&self) -> Self {
        WeakRegistry {
            owner: self.owner.clone(),
        }
    }
}

impl<S: EventSet> fmt::Debug for WeakRegistry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakRegistry")
            .field("alive", &(self.owner.strong_count() > 0))
            .finish()
    }
}

impl<S: EventSet> Clone for Registry<S> {
    fn clone(&self) -> Self {
        Registry {
            owner: self.owner.clone(),
        }
    }
}

impl<S: EventSet> fmt::Debug for Registry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared().lock();
        f.debug_struct("Registry")
            .field("callbacks", &st.callbacks())
            .field("queued", &st.queued())
            .field("closed", &st.closed)
            .finish_non_exhaustive()
    }
}
