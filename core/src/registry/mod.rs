//! The typed event registry: how a library tells applications what happens (contract §3).
//!
//! libvirt's domain events and libguestfs's handle events need the same thing: register a
//! callback for a kind of event, optionally for one object, get an id, deregister by id, many
//! callbacks per kind, delivery from a clean stack on the loop that owns the object. A
//! [`Registry`] does this with types instead of casts:
//!
//! - the **library** declares its events: a kind enum ([`EventKind`]), one payload type per
//!   kind ([`Event`]) and the enum of all of them ([`EventSet`], which also names the object
//!   each event is about); it owns a `Registry` and calls [`Registry::emit`] from any thread;
//! - the **application** registers with [`Registry::on`] (`registry.on::<LogLine>(|line|
//!   ...)` receives `&LogLine`), [`Registry::on_kinds`] (a [`KindSet`], libguestfs's bitmask,
//!   receiving the kind and the event), or [`Registry::listen`] for an object filter, a
//!   predicate or the keyed form; and calls [`Registry::deregister`] with the id.
//!
//! `emit` never runs a callback: events are queued and delivered by a 0-interval timer on the
//! registry's loop, as libvirt does (armed by the first queued event, disarmed by the flush).
//! Only the vtable is used, so the registry works on every backend unchanged.
//!
//! # Delivery rules (contract E5–E14)
//! - Events are delivered in emit order; each to the matching callbacks in registration order.
//! - A callback sees only events emitted after its registration returned (E9), including
//!   when it registers during a flush.
//! - Deregister stops delivery at once, even within the running flush (E10); the callback is
//!   dropped later, on the loop thread, never inside `deregister` nor while it runs (E11).
//! - Events emitted during a flush go to a later flush (E13).
//! - With no callback for its kind, `emit` drops the event and arms nothing (E5, E27); the
//!   last deregister discards the queue and removes the timer (E14).
//! - A panicking callback or predicate does not stop the flush; the first panic is reported
//!   by the loop's `run_once` as [`CallbackPanicked`](crate::Error::CallbackPanicked) of the
//!   flush timer, its message naming the callback (E23).
//!
//! # Example
//!
//! ```
//! use anyloop::{Event, EventKind, EventSet, KindSet, Loop, Registry};
//!
//! // ---- Library side: a child-process supervisor declares its events. ----
//!
//! /// Identifies one child, stable for its whole life (the object key).
//! #[derive(Debug, Clone, Copy, PartialEq, Eq)]
//! pub struct ChildId(pub u64);
//!
//! #[derive(Debug, Clone, Copy, PartialEq, Eq)]
//! pub enum Kind { Launched, LogLine, Close }
//!
//! impl EventKind for Kind {
//!     const ALL: &'static [Kind] = &[Kind::Launched, Kind::LogLine, Kind::Close];
//!     fn index(self) -> usize { self as usize }
//! }
//!
//! pub struct Launched { pub child: ChildId, pub pid: u32 }
//! pub struct LogLine { pub child: ChildId, pub stderr: bool, pub bytes: Vec<u8> }
//! pub struct Close;
//!
//! /// Every event of the supervisor.
//! pub enum SupervisorEvent { Launched(Launched), LogLine(LogLine), Close(Close) }
//!
//! impl EventSet for SupervisorEvent {
//!     type Kind = Kind;
//!     type Key = ChildId;
//!     fn kind(&self) -> Kind {
//!         match self {
//!             SupervisorEvent::Launched(_) => Kind::Launched,
//!             SupervisorEvent::LogLine(_) => Kind::LogLine,
//!             SupervisorEvent::Close(_) => Kind::Close,
//!         }
//!     }
//!     fn key(&self) -> Option<&ChildId> {
//!         match self {
//!             SupervisorEvent::Launched(e) => Some(&e.child),
//!             SupervisorEvent::LogLine(e) => Some(&e.child),
//!             SupervisorEvent::Close(_) => None,
//!         }
//!     }
//! }
//!
//! // One `Event` impl (and a `From`) per payload type.
//! macro_rules! payload {
//!     ($($ty:ident),*) => {$(
//!         impl Event<SupervisorEvent> for $ty {
//!             const KIND: Kind = Kind::$ty;
//!             fn view(event: &SupervisorEvent) -> Option<&$ty> {
//!                 match event { SupervisorEvent::$ty(e) => Some(e), _ => None }
//!             }
//!         }
//!         impl From<$ty> for SupervisorEvent {
//!             fn from(e: $ty) -> Self { SupervisorEvent::$ty(e) }
//!         }
//!     )*};
//! }
//! payload!(Launched, LogLine, Close);
//!
//! pub struct Supervisor { events: Registry<SupervisorEvent> }
//!
//! impl Supervisor {
//!     pub fn new(lp: Loop) -> anyloop::Result<Supervisor> {
//!         Ok(Supervisor { events: Registry::with_loop(lp)? })
//!     }
//!     /// Where applications register.
//!     pub fn events(&self) -> &Registry<SupervisorEvent> { &self.events }
//!     /// Called from the supervisor's fd watches (any thread would do).
//!     fn on_output(&self, child: ChildId, bytes: &[u8]) {
//!         self.events.emit(LogLine { child, stderr: false, bytes: bytes.to_vec() });
//!     }
//!     pub fn close(self) -> anyloop::Result<()> { self.events.close_with(Close) }
//! }
//!
//! // ---- Application side: typed callbacks, no casts. ----
//!
//! fn app(supervisor: &Supervisor, child: ChildId) -> anyloop::Result<()> {
//!     let events = supervisor.events();
//!     let id = events.on::<Launched>(|ev| println!("child {:?} is pid {}", ev.child, ev.pid))?;
//!     events.listen::<LogLine>().object(child).call(|line| {
//!         println!("{}", String::from_utf8_lossy(&line.bytes));
//!     })?;
//!     events.on_kinds(KindSet::all(), |kind, _event| println!("saw a {kind:?} event"))?;
//!     assert_eq!(events.deregister(id)?, 0); // no Launched callback left
//!     Ok(())
//! }
//! # fn main() {}
//! ```

mod builder;
mod event;
mod handle;
mod kind;
mod listen;
mod shared;
mod slot;
mod state;

pub use builder::RegistryBuilder;
pub use event::{Event, EventSet};
pub use handle::{Registry, TypedCallback};
pub use kind::{EventKind, KindSet};
pub use listen::{Listen, ListenKinds};
