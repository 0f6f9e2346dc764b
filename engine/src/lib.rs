//! # anyloop-engine: building blocks for anyloop backends
//!
//! A library author needs only the `anyloop` crate (the vtable, `Loop`, guards, ids, errors
//! and the registry). This crate is for **backend authors**: the machinery the built-in loop
//! (`anyloop-select`) and the hosted backends (`anyloop-glib`, `anyloop-calloop`) share.
//!
//! Everything a backend needs that does not depend on its substrate, written once: an
//! index-tracked [`TimerHeap`], the [`DeferredFrees`] list, panic catching at the dispatch
//! boundary ([`catch_user_panic`]), poll-timeout arithmetic ([`deadline_after`],
//! [`poll_timeout`]), and — for backends that own a kernel poller (epoll, mio, or one GLib /
//! calloop source wrapping an epoll fd) — the whole registration table and dispatch cycle,
//! [`Engine`], generic over a small OS layer ([`Poller`] + [`Registrar`]).
//!
//! The engine makes no OS calls: the OS layer is the backend's choice. The one Linux layer
//! that several backends share (level-triggered epoll with an eventfd wake-up, and a batched
//! `poll(2)` probe) lives in [`linux`], the only module of this crate that makes system calls.
//!
//! To follow one event from the kernel to the user's callback, read `engine/src/dispatch.rs`
//! top to bottom: it holds the whole cycle of [`Engine::run_once`] in order.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

mod clock;
mod dispatch;
mod fd_index;
mod fd_slot;
mod frees;
mod heap;
mod hosted;
#[cfg(target_os = "linux")]
pub mod linux;
mod panic;
mod poller;
mod table;

pub use clock::{deadline_after, poll_timeout, NextIteration, MAX_WAIT};
pub use dispatch::Engine;
pub use frees::{DeferredFrees, FreeTicket};
pub use heap::TimerHeap;
pub use hosted::{HostPoller, HostWait, HostedEngine};
pub use panic::catch_user_panic;
pub use poller::{FdCheck, FileId, Poller, Probe, Readiness, Registered, Registrar, Token};
pub use table::Shared;
