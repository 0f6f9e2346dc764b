//! # anyloop: asynchronous I/O and timers without choosing the main loop
//!
//! A library does its fd watching and timing through the small vtable [`Backend`] (the six
//! operations of libvirt's `virEventRegisterImpl`: add, update and remove a *handle*, i.e. an
//! fd watch, and add, update and remove a *timeout*). The application decides which loop
//! implements it: the built-in one (`anyloop-select`), its GLib main context, its calloop
//! `EventLoop`, its tokio runtime, or a loop of its own that hosts anyloop's engine.
//!
//! - [`Loop`] is the cheap, cloneable handle a library stores; [`Watch`] and [`Timer`] are
//!   RAII guards on top of the id-based operations. A timer runs on a [`Schedule`]: every
//!   period, once, or disabled.
//! - Callbacks are `Send` closures, or *thread-bound* ones ([`Loop::watch_local`],
//!   [`Loop::timer_local`], [`Registry::on_local`]) that may capture an `Rc`, a GTK widget or
//!   a raw C pointer: they are only registered on the loop's thread, and never called nor
//!   dropped on another (checked at run time, no `unsafe` needed).
//! - [`Runner`] is the owner side, implemented by every backend's loop type: one iteration,
//!   run until [`Quitter::quit`], run until a condition or a deadline, stats. Code that must
//!   drive a loop without knowing which one takes `&mut dyn Runner`.
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
//! [`contract`], whose rules the docs cite by tag ([R27](contract#r27), [E5](contract#e5)...),
//! and checked by the `anyloop-conformance` kit against every backend.
//!
//! This crate is all a library needs: it compiles no event loop. The loops are in
//! `anyloop-select` (the built-in one), `anyloop-glib`, `anyloop-calloop` and `anyloop-tokio`;
//! what they share (the registration table and dispatch cycle, the timer heap, the OS layers,
//! and `HostedEngine`, which hosts the engine in any loop that can poll one fd) is in
//! `anyloop-engine`, for applications with a loop of their own and for backend authors.
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

mod bound;
mod callback;
pub mod contract;
mod current;
mod error;
mod events;
mod guard;
mod handle;
mod id;
pub mod registry;
mod runner;
mod vtable;
mod watch_fd;

pub use bound::ThreadBound;
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
pub use runner::{Quitter, Runner, Stopped};
pub use vtable::{Backend, LoopStats, Schedule};
pub use watch_fd::AsWatchFd;
