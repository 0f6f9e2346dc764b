//! The OS layer: everything that makes a system call lives under this module.
//!
//! Three implementations of anyloop's [`PollerKind`](anyloop_engine::Poller) /
//! [`Registrar`](anyloop_engine::Registrar) pair:
//!
//! - `anyloop_engine::linux::EpollPoller`: Linux level-triggered epoll through `rustix`,
//!   one `epoll_wait` per iteration: the default (shared with the backends that host an
//!   epoll fd inside another loop).
//! - [`mio`](self::mio): mio's edge-triggered epoll, with level-triggered delivery emulated by
//!   one batched zero-timeout `poll(2)` over the fds dispatched in the previous iteration.
//! - `anyloop_engine::posix::PollPoller`: `poll(2)` over every watched fd with a self-pipe
//!   wake-up, portable POSIX.
//!
//! The two epoll ones use `anyloop_engine::linux::Prober` (the batched `poll(2)`, also used
//! for always-ready fds such as regular files).

#[cfg(target_os = "linux")]
pub(crate) mod mio;
