//! # anyloop-engine: building blocks for anyloop backends
//!
//! A library author needs only the `anyloop` crate (the vtable, `Loop`, guards, ids, errors
//! and the registry). This crate is for **backend authors**: the machinery the built-in loop
//! (`anyloop-select`) and the hosted backends (`anyloop-glib`, `anyloop-calloop`) share.
//!
//! Everything a backend needs that does not depend on its substrate, written once: an
//! index-tracked [`TimerHeap`], the [`DeferredFrees`] list, panic catching at the dispatch
//! boundary ([`catch_user_panic`]), poll-timeout arithmetic ([`deadline_after`],
//! [`poll_timeout`]), and — for backends that own a kernel poller (epoll, mio, `poll(2)`, or
//! one GLib / calloop source wrapping an epoll fd) — the whole registration table and dispatch
//! cycle, [`Engine`], generic over a small OS layer ([`Poller`] + [`Registrar`]).
//!
//! The engine makes no OS calls: the OS layer is the backend's choice. This crate has two, the
//! only modules that make system calls: [`linux`] (level-triggered epoll with an eventfd
//! wake-up, which the Linux backends share, and which a host loop can poll as one fd), and
//! [`posix`] (`poll(2)` with a self-pipe wake-up and nothing Linux-only: the layer a port to
//! another Unix starts from; its module doc says what it costs and what a kqueue layer would
//! change). `posix` also holds the fd helpers and the batched `poll(2)` probe
//! ([`posix::Prober`]), which [`linux`] re-exports.
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
#[cfg(target_os = "linux")]
pub mod linux;
mod panic;
mod poller;
#[cfg(unix)]
pub mod posix;
mod table;

pub use clock::{deadline_after, poll_timeout, NextIteration, MAX_WAIT};
pub use dispatch::Engine;
pub use frees::{DeferredFrees, FreeTicket};
pub use heap::TimerHeap;
pub use panic::catch_user_panic;
pub use poller::{FdCheck, FileId, Poller, Probe, Readiness, Registered, Registrar, Token};
pub use table::Shared;
