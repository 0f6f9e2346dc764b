//! # anyloop: asynchronous I/O and timers without choosing the main loop
//!
//! A library does its fd watching and timing through the small vtable [`Backend`] (the six
//! operations of libvirt's `virEventRegisterImpl`: add, update and remove a *handle*, i.e. an
//! fd watch, and add, update and remove a *timeout*). The application decides which loop
//! implements it: the built-in one (`anyloop-select`), its GLib main context, its calloop
//! `EventLoop`, or an adapter of its own.
//!
//! - [`Loop`] is the cheap, cloneable handle a library stores; [`Watch`] and [`Timer`] are
//!   RAII guards on top of the id-based operations.
//! - [`set_default_loop`], [`bind_thread_loop`] and [`Loop::current`] decide which loop code
//!   on a thread uses: the thread's own loop, else the process default.
//! - [`Error`] is the one error type; a failed add hands the callback back in [`Rejected`].
//! - [`Registry`] is the typed event-callback registry a library builds on top: the library
//!   emits its own event types from any thread, applications register typed callbacks, and
//!   delivery happens on the loop's thread (see [`registry`]; [`event_set!`] declares a
//!   library's events in one place).
//!
//! The behaviour every backend guarantees (level-triggered delivery, deferred frees, any-thread
//! operations with prompt wake-ups, no resurrection of removed ids...) is written down in the
//! project's contract and checked by the `anyloop-conformance` kit against every backend.
//!
//! ```
//! use anyloop::{IoEvents, Loop, Watch};
//! use std::os::fd::RawFd;
//!
//! /// A library type that counts readable events on an fd, written once for every loop.
//! pub struct Counter { watch: Watch }
//!
//! impl Counter {
//!     pub fn new(lp: &Loop, fd: RawFd) -> anyloop::Result<Counter> {
//!         let mut seen = 0u64;
//!         let watch = lp.watch(fd, IoEvents::READABLE, move |_id, _fd, events: IoEvents| {
//!             if events.intersects(IoEvents::HANGUP | IoEvents::ERROR) { return; }
//!             seen += 1;
//!             println!("{seen} readable events so far");
//!         })?;
//!         Ok(Counter { watch })
//!     }
//!     pub fn pause(&self) -> anyloop::Result<()> { self.watch.update(IoEvents::empty()) }
//! }
//! ```
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]

mod callback;
mod current;
mod error;
mod events;
mod guard;
mod handle;
mod id;
pub mod registry;
mod vtable;

pub use callback::{TimerCallback, WatchCallback};
pub use current::{
    bind_thread_loop, default_loop, set_default_loop, thread_loop, ThreadLoopBinding,
};
pub use error::{Error, Rejected, Result};
pub use events::IoEvents;
pub use guard::{Timer, Watch};
pub use handle::Loop;
#[doc(hidden)]
pub use id::__exhaust_ids_leaving;
pub use id::{CallbackId, RegistrationId, TimerId, WatchId};
pub use registry::{Event, EventKind, EventSet, KindSet, Registry};
pub use vtable::{Backend, Interval, LoopStats};
