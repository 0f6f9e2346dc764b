//! # anyloop-engine: anyloop for loops of your own, and for backend authors
//!
//! A library author needs only the `anyloop` crate (the vtable, `Loop`, guards, ids, errors
//! and the registry), and an application author one of the backends (`anyloop-select`,
//! `anyloop-glib`, `anyloop-calloop`, `anyloop-tokio`). This crate is for the two others:
//!
//! - **an application that runs a loop of its own** (a `poll(2)` loop with hooks, a game
//!   loop, an embedded event loop) and wants every anyloop library on it: it *hosts* the
//!   engine with [`HostedEngine`], in a few dozen lines (below);
//! - **a backend author** who writes a new backend: the registration table and dispatch cycle
//!   ([`Engine`]), over an OS layer of their own ([`Poller`] + [`Registrar`]) or one of this
//!   crate's ([`linux`]: level-triggered epoll; [`posix`]: `poll(2)`, for any POSIX system).
//!
//! ## Hosting the engine in your own loop
//!
//! The engine becomes one fd and one deadline in your loop. Your loop calls it at three
//! points, whatever it is (the project's GLib, calloop and tokio backends are built exactly
//! this way):
//!
//! 1. **Before your poll**, as the last thing: [`HostedEngine::prepare`]. Put
//!    [`HostedEngine::fd`] in your poll set for readability when [`HostWait::poll_fd`] says so
//!    (it does not while one of anyloop's callbacks runs a nested iteration of your loop), and
//!    block at most [`HostWait::timeout`] (or [`HostWait::timeout_ms`] for `poll(2)`). From
//!    this call until your poll returns, operations from other threads make the fd readable,
//!    so your loop wakes ([R40](anyloop::contract#r40)).
//! 2. **After your poll**: [`HostedEngine::after_poll`]`(fd_readable)`. It runs one engine
//!    iteration (timers, watches, frees) if the fd was readable or the deadline came, and
//!    otherwise closes the window. A loop with separate check and dispatch steps calls
//!    [`HostedEngine::check`] and [`HostedEngine::dispatch`]; one that decides itself when to
//!    dispatch calls [`HostedEngine::end_wait`] after its poll and `dispatch` when due.
//! 3. **Your owner side** implements [`anyloop::Runner`]: `run_once` iterates your loop once
//!    and returns [`HostedEngine::take_outcome`] (anyloop's callbacks only, or the first
//!    error, [R46](anyloop::contract#r46), [R54](anyloop::contract#r54)); `quitter`,
//!    `take_quit` and `drain` are the hosted engine's; dropping your runner calls
//!    [`HostedEngine::close`] (every remaining callback freed, [R48](anyloop::contract#r48)).
//!
//! Every method takes `&self`: share the hosted engine between your hooks with an `Rc` (or an
//! `Arc` if your loop may iterate on several threads). The whole adapter of the project's
//! example, an application-owned `poll(2)` loop with `before_poll`/`after_poll` hooks
//! (`examples/src/own_loop/adapter.rs`), is 59 lines, and it passes the whole conformance kit
//! (`anyloop-conformance`; this excerpt is compiled and tested there):
//!
//! ```ignore
//! impl PollHook for HostedEngine<EpollPoller> {
//!     fn before_poll<'a>(&'a self, set: &mut PollSet<'a>) {
//!         let wait = self.prepare(); // the last thing before the poll
//!         wait.poll_fd().then(|| set.add(self.fd(), PollFlags::IN)); // not when nested
//!         set.limit_timeout(wait.timeout(Instant::now()));
//!     }
//!     fn after_poll(&self, set: &PollSet<'_>) {
//!         HostedEngine::after_poll(self, !set.revents_of(self.fd()).is_empty()); // readable or due
//!     }
//! }
//!
//! impl Runner for Hosted {
//!     fn handle(&self) -> Loop { self.host.handle() }
//!     fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
//!         self.app.iterate(timeout);
//!         self.host.take_outcome()
//!     }
//!     fn quitter(&self) -> Quitter { self.host.quitter() }
//!     fn take_quit(&mut self) -> bool { self.host.take_quit() }
//!     fn drain(&mut self) -> Result<usize> { self.host.drain() } // the frees alone
//! }
//! ```
//!
//! Mistakes the kit catches (each is a broken adapter in the kit's own tests): polling without
//! the deadline (timers never fire), dispatching only when the fd is readable (timers never
//! fire), skipping `prepare` (other threads cannot wake the loop), a quit that does not wake
//! the loop, counting the host's own callbacks in `run_once`, dropping the outcome's errors,
//! never closing the engine. A host that registers fds *by file* (epoll, kqueue, tokio's
//! reactor) must also register the fd again when [`HostedEngine::fd_replaced`] says so
//! ([B62](anyloop::contract#b62)); an edge-triggered host clears its readiness only after
//! [`HostedEngine::fd_found_quiet`] ([R8](anyloop::contract#r8)). A host that makes fds of its
//! own must make them before libraries add watches (never lazily): a library that closes a
//! watched fd (R53 broken) frees its number, and a host fd that takes it would be updated as the
//! library's watch ([R52](anyloop::contract#r52)).
//!
//! Hosting needs an OS layer whose readiness one fd shows ([`HostPoller`]: the epoll layer;
//! a kqueue layer would do too). The `poll(2)` layer has no such fd: on a system without epoll,
//! a custom loop writes a backend instead (next section) or drives the built-in loop.
//!
//! ## Writing a backend
//!
//! Everything a backend needs that does not depend on its substrate, written once: an
//! index-tracked [`TimerHeap`], the [`DeferredFrees`] list, panic catching at the dispatch
//! boundary ([`catch_user_panic`]), poll-timeout arithmetic ([`deadline_after`],
//! [`poll_timeout`]), and the whole registration table and dispatch cycle, [`Engine`], generic
//! over a small OS layer ([`Poller`] + [`Registrar`]). [`Engine::run_once`] is one iteration of
//! a loop that owns its wait (the built-in loop); [`HostedEngine`] wraps it for a loop that
//! someone else runs. A backend written by hand instead, without the engine, must pass the
//! same kit; the kit's `reference` backend is a small complete example.
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
mod hosted;
#[cfg(target_os = "linux")]
pub mod linux;
mod paged;
mod panic;
mod poller;
#[cfg(unix)]
pub mod posix;
mod table;

pub use clock::{deadline_after, poll_timeout, NextIteration, MAX_WAIT};
pub use dispatch::Engine;
pub use frees::{DeferredFrees, FreeTicket};
pub use heap::TimerHeap;
pub use hosted::{HostPoller, HostWait, HostedEngine};
pub use panic::catch_user_panic;
pub use poller::{FdCheck, FileId, Poller, Probe, Readiness, Registered, Registrar, Token};
pub use table::Shared;
