//! # anyloop-libvirt: libvirt's events on any anyloop backend
//!
//! libvirt does its asynchronous work (remote-connection sockets, keep-alives, the queue
//! that delivers domain events) through the event vtable an application installs with
//! `virEventRegisterImpl`. [`register`] installs any anyloop [`Loop`](anyloop::Loop) there:
//! the built-in `anyloop-select` loop, a GLib/GTK main context (`anyloop-glib`) or a calloop
//! `EventLoop` (`anyloop-calloop`), as libvirt-glib does for C and `libvirtaio` for Python.
//!
//! On top, a thin safe wrapper for what event-driven programs need: [`Connection`] (open,
//! close, define and look up domains, keep-alive), [`Domain`] (start, suspend, resume,
//! destroy, undefine) and typed events: [`Connection::domain_events`] is an
//! [`anyloop::Registry`] of [`DomainEvent`]s, so applications register typed callbacks for
//! every domain or for one (by UUID), on the loop's thread; [`Connection::connection_events`]
//! reports libvirt closing a remote connection ([`ConnectionClosed`]: the daemon went away
//! or stopped answering [keep-alive](Connection::set_keep_alive) messages) the same way.
//!
//! How the vtable is mapped (details on [`register`]):
//! - handle events and interests are translated bit by bit by name; events 0 is a paused
//!   watch (an empty anyloop interest);
//! - timeouts: -1 is [`Schedule::Disabled`](anyloop::Schedule::Disabled), 0
//!   [`Schedule::EVERY_ITERATION`](anyloop::Schedule::EVERY_ITERATION), n > 0
//!   [`Schedule::Every`](anyloop::Schedule::Every) n ms ([R27](anyloop::contract#r27)); an
//!   update always restarts the countdown ([R29](anyloop::contract#r29)), as libvirt's
//!   keep-alive expects;
//! - libvirt's `ff(opaque)` runs when anyloop drops the callback state: after the remove,
//!   on the loop thread, exactly once, never inside the remove
//!   ([R21–R26](anyloop::contract#r21));
//! - an update or remove of an id already removed changes nothing
//!   ([R4](anyloop::contract#r4));
//! - no panic crosses into C: every `extern "C"` function catches it.
//!
//! One event implementation per process: libvirt keeps the first one it is given.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use anyloop::{Runner, Stopped};
//! use anyloop_libvirt::{Connection, DomainLifecycle, LifecycleEvent};
//! use std::{cell::RefCell, rc::Rc, time::{Duration, Instant}};
//!
//! // The application's loop (here the built-in one), installed once per process.
//! let mut event_loop = anyloop_select::SelectLoop::new()?;
//! anyloop_libvirt::register(&event_loop.handle())?;
//!
//! let conn = Connection::open("test:///default")?; // libvirt's test driver, no daemon
//! // Events are delivered on the loop's thread (this one): a thread-bound callback may
//! // capture an `Rc`.
//! let paused = Rc::new(RefCell::new(None));
//! let seen = paused.clone();
//! conn.domain_events()?.on_local::<DomainLifecycle>(move |event| {
//!     if event.event == LifecycleEvent::Suspended {
//!         *seen.borrow_mut() = Some(event.name.clone());
//!     }
//! })?;
//! let domain = conn.lookup_domain("test")?;
//! domain.suspend()?;
//! let deadline = Instant::now() + Duration::from_secs(5);
//! let stopped = event_loop.run_until(Some(deadline), &mut || paused.borrow().is_some())?;
//! assert_eq!(stopped, Stopped::Done);
//! assert_eq!(paused.borrow().as_deref(), Some("test"));
//! domain.resume()?;
//! drop(domain);
//! conn.close()?; // deregisters libvirt's callback; its timer's free runs on the loop
//! event_loop.drain()?;
//! # Ok(()) }
//! ```
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

mod bits;
mod close;
mod connection;
mod domain;
mod error;
mod ffi;
mod lifecycle;
mod shim;
mod upstream;

pub use close::{CloseReason, ConnectionClosed, ConnectionEvent, ConnectionEventKind};
pub use connection::{silence_libvirt_stderr, Connection};
pub use domain::Domain;
pub use error::{Error, Result};
pub use lifecycle::{DomainEvent, DomainEventKind, DomainLifecycle, LifecycleEvent};
pub use shim::{register, registered_loop, vtable_stats, VtableStats};
pub use upstream::{upstream_stats, UpstreamStats};
