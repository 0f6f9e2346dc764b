//! The Linux OS layer every epoll-based backend shares (with [`posix`](crate::posix), the only
//! places in this crate that make system calls).
//!
//! - [`EpollPoller`] / [`EpollRegistrar`]: a level-triggered epoll instance, one
//!   `epoll_wait` per iteration, with an eventfd wake-up ([`EventFdWaker`]) inside its set.
//!   The built-in loop waits on it directly; a loop that hosts the engine (GLib, calloop,
//!   tokio, an application's own loop) polls the epoll fd as a single entry of its poll set,
//!   through [`HostedEngine`](crate::HostedEngine), whose three calls (before the poll, after
//!   it, the outcome) also give the host its timeout for the engine's timers and make a
//!   wake-up from another thread reach it.
//! - [`Prober`]: one batched zero-timeout `poll(2)` over a list of fds (always-ready files,
//!   and level re-checks for edge-triggered substrates).
//! - [`check_open`] and [`file_identity`]: fd helpers for registrars.
//!
//! [`Prober`] and the fd helpers are plain POSIX: they live in [`posix`](crate::posix), beside
//! the portable `poll(2)` layer, and are re-exported here.

mod epoll;
mod waker;

pub use epoll::{new_epoll, verify_epoll, EpollPoller, EpollRegistrar};
pub use waker::EventFdWaker;

// POSIX-generic, shared with the `poll(2)` layer; re-exported here for existing callers.
pub(crate) use crate::posix::borrow_fd;
pub use crate::posix::{check_open, file_identity, Prober};
