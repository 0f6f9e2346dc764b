//! Registration builders: object filter, predicate and keyed form ([E1](crate::contract#e1), [E4](crate::contract#e4), [E8](crate::contract#e8)).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use super::event::{Event, EventSet};
use super::handle::Registry;
use super::kind::{bit, KindSet};
use super::shared::Spec;
use crate::bound::ThreadBound;

use crate::error::{Error, Rejected, Result};
use crate::id::CallbackId;

type TypedFilter<E> = Box<dyn Fn(&E) -> bool + Send>;
type SetFilter<S> = Box<dyn Fn(<S as EventSet>::Kind, &S) -> bool + Send>;

/// A typed registration being built: [`Registry::listen`], then options, then
/// [`call`](Self::call).
///
/// ```
/// # use anyloop::{Event, EventKind, EventSet, Registry};
/// # #[derive(Debug, Clone, Copy, PartialEq, Eq)] enum Kind { Reboot }
/// # impl EventKind for Kind { const ALL: &'static [Kind] = &[Kind::Reboot]; fn index(self) -> usize { 0 } }
/// # struct Reboot { vm: u64, forced: bool }
/// # enum VmEvent { Reboot(Reboot) }
/// # impl EventSet for VmEvent { type Kind = Kind; type Key = u64;
/// #   fn kind(&self) -> Kind { Kind::Reboot }
/// #   fn key(&self) -> Option<&u64> { match self { VmEvent::Reboot(r) => Some(&r.vm) } } }
/// # impl Event<VmEvent> for Reboot { const KIND: Kind = Kind::Reboot;
/// #   fn view(e: &VmEvent) -> Option<&Reboot> { match e { VmEvent::Reboot(r) => Some(r) } } }
/// # fn demo(registry: &Registry<VmEvent>) -> anyloop::Result<()> {
/// let id = registry
///     .listen::<Reboot>()
///     .object(42)                       // only events about object 42
///     .filter(|reboot| reboot.forced)   // and only forced reboots
///     .keyed("audit")                   // refuse a second identical "audit" registration
///     .call(|reboot| println!("vm {} was forced to reboot", reboot.vm))?;
/// registry.deregister(id)?;
/// # Ok(()) }
/// ```
#[must_use = "nothing is registered until `call`"]
pub struct Listen<'r, S: EventSet, E> {
    registry: &'r Registry<S>,
    object: Option<S::Key>,
    keyed: Option<Cow<'static, str>>,
    filter: Option<TypedFilter<E>>,
    _event: PhantomData<fn(&E)>,
}

impl<'r, S: EventSet, E: Event<S>> Listen<'r, S, E> {
    pub(crate) fn new(registry: &'r Registry<S>) -> Self {
        Listen {
            registry,
            object: None,
            keyed: None,
            filter: None,
            _event: PhantomData,
        }
    }

    /// Only events about this object (compared by value with [`EventSet::key`], [E29](crate::contract#e29)).
    pub fn object(mut self, key: S::Key) -> Self {
        self.object = Some(key);
        self
    }

    /// Only events for which `predicate` holds. It runs on the loop thread with no registry
    /// lock held and must not block ([E8](crate::contract#e8)).
    pub fn filter(mut self, predicate: impl Fn(&E) -> bool + Send + 'static) -> Self {
        self.filter = Some(Box::new(predicate));
        self
    }

    /// The keyed form: a second live registration with the same key, kind and object
    /// filter is refused with [`AlreadyRegistered`](crate::Error::AlreadyRegistered) ([E4](crate::contract#e4)).
    pub fn keyed(mut self, key: impl Into<Cow<'static, str>>) -> Self {
        self.keyed = Some(key.into());
        self
    }

    /// Registers `callback` and returns its id.
    ///
    /// # Errors
    /// As [`Registry::on`], plus [`AlreadyRegistered`](crate::Error::AlreadyRegistered) for
    /// a keyed duplicate and [`InvalidArgument`](crate::Error::InvalidArgument) for an object
    /// the registry's key check refuses.
    pub fn call<F>(self, callback: F) -> Result<CallbackId, Rejected<F>>
    where
        F: FnMut(&E) + Send + 'static,
    {
        let spec = Spec {
            kinds: bit(E::KIND),
            object: self.object,
            keyed: self.keyed,
        };
        let filter = self.filter;
        self.registry
            .shared()
            .register(spec, callback, move |mut callback| {
                Box::new(move |_kind, event: &S| {
                    let Some(payload) = E::view(event) else {
                        return false;
                    };
                    if filter.as_ref().is_some_and(|keep| !keep(payload)) {
                        return false;
                    }
                    callback(payload);
                    true
                })
            })
    }
}

impl<'r, S: EventSet, E: Event<S>> Listen<'r, S, E> {
    /// [`call`](Self::call) with a callback that need not be `Send` (it may capture an `Rc`,
    /// a GTK widget, a raw pointer): a thread-bound callback, only ever called and dropped on
    /// this thread, which must be the registry's loop thread
    /// ([R42](crate::contract#r42)). It takes part in every flush; a closing event delivered
    /// by a [`close_with`](Registry::close_with) called on another thread skips it.
    ///
    /// # Errors
    /// [`WrongThread`](crate::Error::WrongThread) off the loop's thread; else as
    /// [`call`](Self::call).
    pub fn call_local<F>(self, callback: F) -> Result<CallbackId, Rejected<ThreadBound<F>>>
    where
        F: FnMut(&E) + 'static,
    {
        if let Err(error) = on_loop_thread(self.registry) {
            return Err(Rejected::new(error, ThreadBound::new(callback)));
        }
        let spec = Spec {
            kinds: bit(E::KIND),
            object: self.object,
            keyed: self.keyed,
        };
        let filter = self.filter;
        self.registry
            .shared()
            .register(spec, ThreadBound::new(callback), move |mut callback| {
                Box::new(move |_kind, event: &S| {
                    let Some(payload) = E::view(event) else {
                        return false;
                    };
                    if filter.as_ref().is_some_and(|keep| !keep(payload)) {
                        return false;
                    }
                    callback.with_mut(|callback| callback(payload)).is_some()
                })
            })
    }
}

/// Thread-bound registrations are made on the registry's loop thread only.
fn on_loop_thread<S: EventSet>(registry: &Registry<S>) -> Result<()> {
    if registry.shared().event_loop().is_loop_thread() {
        Ok(())
    } else {
        Err(Error::WrongThread {
            id: None,
            what:
                "a thread-bound event callback can only be registered on the registry's loop thread",
        })
    }
}

impl<S: EventSet, E> fmt::Debug for Listen<'_, S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listen")
            .field("event", &std::any::type_name::<E>())
            .field("object", &self.object)
            .field("keyed", &self.keyed)
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}

/// A kind-set registration being built: [`Registry::listen_kinds`], then options, then
/// [`call`](Self::call).
#[must_use = "nothing is registered until `call`"]
pub struct ListenKinds<'r, S: EventSet> {
    registry: &'r Registry<S>,
    kinds: KindSet<S::Kind>,
    object: Option<S::Key>,
    keyed: Option<Cow<'static, str>>,
    filter: Option<SetFilter<S>>,
}

impl<'r, S: EventSet> ListenKinds<'r, S> {
    pub(crate) fn new(registry: &'r Registry<S>, kinds: KindSet<S::Kind>) -> Self {
        ListenKinds {
            registry,
            kinds,
            object: None,
            keyed: None,
            filter: None,
        }
    }

    /// Only events about this object ([E8](crate::contract#e8), [E29](crate::contract#e29)).
    pub fn object(mut self, key: S::Key) -> Self {
        self.object = Some(key);
        self
    }

    /// Only events for which `predicate` holds; runs on the loop thread, no lock held ([E8](crate::contract#e8)).
    pub fn filter(mut self, predicate: impl Fn(S::Kind, &S) -> bool + Send + 'static) -> Self {
        self.filter = Some(Box::new(predicate));
        self
    }

    /// The keyed form ([E4](crate::contract#e4)): same key, same kind set and same object filter is refused.
    pub fn keyed(mut self, key: impl Into<Cow<'static, str>>) -> Self {
        self.keyed = Some(key.into());
        self
    }

    /// Registers `callback`, called with the kind being delivered and the event ([E21](crate::contract#e21)).
    ///
    /// # Errors
    /// As [`Registry::on_kinds`] and [`Listen::call`].
    pub fn call<F>(self, callback: F) -> Result<CallbackId, Rejected<F>>
    where
        F: FnMut(S::Kind, &S) + Send + 'static,
    {
        let spec = Spec {
            kinds: self.kinds.bits(),
            object: self.object,
            keyed: self.keyed,
        };
        let filter = self.filter;
        self.registry
            .shared()
            .register(spec, callback, move |mut callback| {
                Box::new(move |kind, event: &S| {
                    if filter.as_ref().is_some_and(|keep| !keep(kind, event)) {
                        return false;
                    }
                    callback(kind, event);
                    true
                })
            })
    }
}

impl<'r, S: EventSet> ListenKinds<'r, S> {
    /// [`call`](Self::call) with a callback that need not be `Send`: a thread-bound callback
    /// (see [`Listen::call_local`]).
    ///
    /// # Errors
    /// [`WrongThread`](crate::Error::WrongThread) off the loop's thread; else as
    /// [`call`](Self::call).
    pub fn call_local<F>(self, callback: F) -> Result<CallbackId, Rejected<ThreadBound<F>>>
    where
        F: FnMut(S::Kind, &S) + 'static,
    {
        if let Err(error) = on_loop_thread(self.registry) {
            return Err(Rejected::new(error, ThreadBound::new(callback)));
        }
        let spec = Spec {
            kinds: self.kinds.bits(),
            object: self.object,
            keyed: self.keyed,
        };
        let filter = self.filter;
        self.registry
            .shared()
            .register(spec, ThreadBound::new(callback), move |mut callback| {
                Box::new(move |kind, event: &S| {
                    if filter.as_ref().is_some_and(|keep| !keep(kind, event)) {
                        return false;
                    }
                    callback
                        .with_mut(|callback| callback(kind, event))
                        .is_some()
                })
            })
    }
}

impl<S: EventSet> fmt::Debug for ListenKinds<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenKinds")
            .field("kinds", &self.kinds)
            .field("object", &self.object)
            .field("keyed", &self.keyed)
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}
