//! How a library declares its events: one enum of all its events ([`EventSet`]) and one
//! payload type per kind ([`Event`]).

use std::fmt;

use super::kind::EventKind;

/// Everything one library reports, usually an enum with one variant per kind, each holding
/// that kind's payload type.
///
/// A registry carries values of this type from `emit` to the callbacks; the queue stores them
/// inline (no allocation per event beyond what the payload itself owns).
///
/// - [`kind`](Self::kind) says which kind an event is;
/// - [`key`](Self::key) names the object it is about, for object filters (contract [E8](crate::contract#e8), [E29](crate::contract#e29)):
///   a stable identity compared by value (libvirt uses the domain's UUID, never its name or
///   numeric id, which change across restarts), or `None` for events about no object.
pub trait EventSet: Send + 'static {
    /// The library's kind enum.
    type Kind: EventKind;
    /// The stable identity of the objects events are about (use `()` for none).
    type Key: PartialEq + Clone + fmt::Debug + Send + Sync + 'static;

    /// The kind of this event.
    fn kind(&self) -> Self::Kind;

    /// The object this event is about, if any.
    fn key(&self) -> Option<&Self::Key>;
}

/// One payload type of an [`EventSet`], for typed registration ([`Registry::on`]).
///
/// `view` finds the payload in the set's enum; the application's callback receives `&Self`
/// with no cast. Implement `From<Self> for S` too, so that `emit(payload)` works.
///
/// [`Registry::on`]: crate::Registry::on
pub trait Event<S: EventSet>: Sized + 'static {
    /// The kind of every event of this type.
    const KIND: S::Kind;

    /// This payload, when `event` is of kind [`KIND`](Self::KIND).
    fn view(event: &S) -> Option<&Self>;
}
