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
//! # Delivery rules (contract [E5](crate::contract#e5)–[E14](crate::contract#e14))
//! - Events are delivered in emit order; each to the matching callbacks in registration order.
//! - A callback sees only events emitted after its registration returned ([E9](crate::contract#e9)), including
//!   when it registers during a flush.
//! - Deregister stops delivery at once, even within the running flush ([E10](crate::contract#e10)); the callback is
//!   dropped later, on the loop thread, never inside `deregister` nor while it runs ([E11](crate::contract#e11)).
//! - Events emitted during a flush go to a later flush ([E13](crate::contract#e13)).
//! - With no callback for its kind, `emit` drops the event and arms nothing ([E5](crate::contract#e5), [E27](crate::contract#e27)); the
//!   last deregister discards the queue and removes the timer ([E14](crate::contract#e14)).
//! - A panicking callback or predicate does not stop the flush; the first panic is reported
//!   by the loop's `run_once` as [`CallbackPanicked`](crate::Error::CallbackPanicked) of the
//!   flush timer, its message naming the callback ([E23](crate::contract#e23)).
//!
//! # Example
//!
//! ```
//! use anyloop::{KindSet, Loop, Registry};
//!
//! // ---- Library side: a child-process supervisor declares its events. ----
//!
//! /// Identifies one child, stable for its whole life (the object key).
//! #[derive(Debug, Clone, Copy, PartialEq, Eq)]
//! pub struct ChildId(pub u64);
//!
//! /// A child started.
//! pub struct Launched { pub child: ChildId, pub pid: u32 }
//! /// A child wrote a line on stdout or stderr (bytes as written, NULs included).
//! pub struct LogLine { pub child: ChildId, pub stderr: bool, pub bytes: Vec<u8> }
//! /// The supervisor closes.
//! pub struct Close;
//!
//! // The event enum, its kind enum and the trait impls, in one declaration (or write the
//! // `EventKind`, `EventSet` and `Event` impls by hand).
//! anyloop::event_set! {
//!     /// Everything the supervisor reports.
//!     pub enum SupervisorEvent {
//!         kind: SupervisorKind,
//!         key: ChildId,
//!         /// A child started.
//!         Launched(Launched) => child,
//!         /// A line of output.
//!         LogLine(LogLine) => child,
//!         /// The supervisor closes.
//!         Close(Close),
//!     }
//! }
//!
//! pub struct Supervisor { events: Registry<SupervisorEvent> }
//!
//! impl Supervisor {
//!     pub fn new(lp: Loop) -> anyloop::Result<Supervisor> {
//!         Ok(Supervisor { events: Registry::with_loop(lp)? })
//!     }
//!     /// Where applications register.
//!     pub fn events(&self) -> &Registry<SupervisorEvent> { &self.events }
//!     /// Called from the supervisor's fd watch (any thread would do): queues, never calls.
//!     fn on_output(&self, child: ChildId, bytes: &[u8]) {
//!         self.events.emit(LogLine { child, stderr: false, bytes: bytes.to_vec() });
//!     }
//!     /// Tells `Close` listeners synchronously, then frees every callback.
//!     pub fn close(self) -> anyloop::Result<()> { self.events.close_with(Close) }
//! }
//!
//! // ---- Application side: typed callbacks, no casts. ----
//!
//! fn app(supervisor: &Supervisor, child: ChildId) -> anyloop::Result<()> {
//!     let events = supervisor.events();
//!     let id = events.on::<Launched>(|ev| println!("{:?} is pid {}", ev.child, ev.pid))?;
//!     events.listen::<LogLine>().object(child).call(|line| {
//!         println!("{}", String::from_utf8_lossy(&line.bytes));
//!     })?;
//!     events.on_kinds(KindSet::all(), |kind, _event| println!("a {kind:?} event"))?;
//!     assert_eq!(events.deregister(id)?, 1); // the all-kinds callback still gets Launched
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! Written by hand, the library side is a kind enum implementing [`EventKind`], the event
//! enum implementing [`EventSet`] (`kind` and `key` by `match`), and per payload type an
//! [`Event`] impl (`KIND` and `view`) plus `From<Payload> for TheEnum`; see the
//! conformance kit's `scenarios/registry.rs` for a complete one.

mod builder;
mod declare;
mod event;
mod handle;
mod kind;
mod listen;
mod shared;
mod slot;
mod state;

pub use builder::RegistryBuilder;
pub use event::{Event, EventSet};
pub use handle::{LocalTypedCallback, Registry, TypedCallback, WeakRegistry};
pub use kind::{EventKind, KindSet};
pub use listen::{Listen, ListenKinds};
