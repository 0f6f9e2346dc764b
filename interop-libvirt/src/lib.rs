//! # anyloop-libvirt: libvirt's events on any anyloop backend
//!
//! libvirt does its asynchronous work (remote-connection sockets, keep-alives, the queue
//! that delivers domain events) through the event vtable an application installs with
//! `virEventRegisterImpl`. [`register`] installs any anyloop [`Loop`](anyloop::Loop) there:
//! the built-in `anyloop-select` loop, a GLib/GTK main context (`anyloop-glib`) or a calloop
//! `EventLoop` (`anyloop-calloop`), as libvirt-glib does for C and `libvirtaio` for Python.
//!
//! On top, a thin safe wrapper for what event-driven programs need: [`Connection`] (open,
//! close, define and look up domains), [`Domain`] (start, suspend, resume, destroy,
//! undefine) and typed lifecycle events: [`Connection::domain_events`] is an
//! [`anyloop::Registry`] of [`DomainEvent`]s, so applications register typed callbacks for
//! every domain or for one (by UUID), on the loop's thread.
//!
//! How the vtable is mapped (details on [`register`]):
//! - handle events and interests are translated bit by bit by name; events 0 is a paused
//!   watch (an empty anyloop interest);
//! - timeouts: -1 disabled, 0 every iteration, n > 0 every n ms; an update always restarts
//!   the countdown, as libvirt's keep-alive expects;
//! - libvirt's `ff(opaque)` runs when anyloop drops the callback state: after the remove,
//!   on the loop thread, exactly once, never inside the remove;
//! - an update or remove of an id already removed changes nothing;
//! - no panic crosses into C: every `extern "C"` function catches it.
//!
//! One event implementation per process: libvirt keeps the first one it is given.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use anyloop_libvirt::{Connection, DomainLifecycle, LifecycleEvent};
//! use std::sync::mpsc;
//! use std::time::Duration;
//!
//! // The application's loop (here the built-in one), installed once per process.
//! let mut event_loop = anyloop_select::SelectLoop::new()?;
//! anyloop_libvirt::register(&event_loop.handle())?;
//!
//! let conn = Connection::open("test:///default")?; // libvirt's test driver, no daemon
//! let (sender, paused) = mpsc::channel();
//! conn.domain_events()?.on::<DomainLifecycle>(move |event| {
//!     if event.event == LifecycleEvent::Suspended {
//!         let _ = sender.send(event.name.clone()); // runs on the loop's thread
//!     }
//! })?;
//! let domain = conn.lookup_domain("test")?;
//! domain.suspend()?;
//! let mut seen = None;
//! for _ in 0..50 {
//!     event_loop.run_once(Some(Duration::from_millis(100)))?; // bounded: at most 5 s
//!     if let Ok(name) = paused.try_recv() {
//!         seen = Some(name);
//!         break;
//!     }
//! }
//! assert_eq!(seen.as_deref(), Some("test"));
//! domain.resume()?;
//! drop(domain);
//! conn.close()?; // deregisters libvirt's callback; its timer's free runs on the loop
//! event_loop.drain()?;
//! # Ok(()) }
//! ```
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

mod bits;
mod connection;
mod domain;
mod error;
mod ffi;
mod lifecycle;
mod shim;
mod upstream;

pub use connection::{silence_libvirt_stderr, Connection};
pub use domain::Domain;
pub use error::{Error, Result};
pub use lifecycle::{DomainEvent, DomainEventKind, DomainLifecycle, LifecycleEvent};
pub use shim::{register, registered_loop, vtable_stats, VtableStats};
pub use upstream::{upstream_stats, UpstreamStats};
