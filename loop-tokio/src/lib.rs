//! # anyloop-tokio: the anyloop vtable on a tokio runtime
//!
//! A library written against [`anyloop::Loop`] runs its fd watches and timers on tokio, with
//! its callbacks on one loop thread. Two ways in:
//!
//! - **anyloop owns the runtime**: [`TokioLoop`] is a current-thread tokio runtime with the
//!   engine inside, run through [`anyloop::Runner`] like every other backend
//!   (`anyloop_backends::LoopChoice::Tokio`, `--loop tokio`). The application can still spawn
//!   its own tokio tasks on it, or run its async main with [`TokioLoop::block_on`].
//! - **The application already runs tokio**: a [`LocalDriver`] is the engine as one task of
//!   the application's runtime, spawned on a `tokio::task::LocalSet` (or polled by a
//!   current-thread runtime's `block_on`); its callbacks run on the thread that polls it.
//!
//! ```
//! use anyloop::{IoEvents, Runner};
//! use anyloop_tokio::TokioLoop;
//! use std::io::{Read, Write};
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//!
//! fn main() -> anyloop::Result<()> {
//!     let mut lp = TokioLoop::new()?;
//!     let quitter = lp.quitter();
//!
//!     // A library watches one end of a socket pair through the vtable...
//!     let (ours, theirs) = UnixStream::pair().expect("socketpair");
//!     let mut reader = theirs.try_clone().expect("dup");
//!     let fd = theirs.as_raw_fd();
//!     let _watch = lp.handle().watch(fd, IoEvents::READABLE, move |_id, _fd, _ev| {
//!         let mut buf = [0u8; 64];
//!         let n = reader.read(&mut buf).unwrap_or(0);
//!         println!("got {:?}", String::from_utf8_lossy(&buf[..n]));
//!         quitter.quit();
//!     })?;
//!
//!     // ...while the application's own tokio task writes to the other end.
//!     lp.spawn_local(async move {
//!         tokio::time::sleep(std::time::Duration::from_millis(5)).await;
//!         (&ours).write_all(b"hello").expect("write");
//!     });
//!     lp.run() // until the callback quits
//! }
//! ```
//!
//! ## An application that already runs tokio
//!
//! Spawn a [`LocalDriver`] on a `LocalSet` and give its [`Loop`](anyloop::Loop) to the
//! libraries (or bind it with [`anyloop::bind_thread_loop`] so that `Loop::current()` finds
//! it). Its callbacks run on the thread that runs the `LocalSet`:
//!
//! - on a **current-thread runtime** (`#[tokio::main(flavor = "current_thread")]`): the main
//!   thread, with `LocalSet::block_on` or `LocalSet::run_until`;
//! - on a **multi-thread runtime** (plain `#[tokio::main]`): a `LocalSet` is driven by the
//!   thread that calls `Runtime::block_on` (`local.run_until(..)` inside it), so anyloop's
//!   callbacks run there while the application's `tokio::spawn`ed tasks keep running on the
//!   workers; the driver cannot be `tokio::spawn`ed (it is not `Send`, on purpose: a
//!   work-stealing scheduler would move the callbacks from thread to thread). An application
//!   that wants anyloop on a thread of its own runs a [`TokioLoop`] there instead
//!   (`std::thread::spawn`, or `tokio::task::spawn_blocking`, whose threads may block on a
//!   runtime of their own), or hands its multi-thread runtime to
//!   [`TokioLoop::with_runtime`] and runs that loop on the thread of its choice.
//!
//! ```
//! use anyloop::Schedule;
//! use anyloop_tokio::LocalDriver;
//! use std::time::Duration;
//!
//! #[tokio::main] // a multi-thread runtime
//! async fn main() -> anyloop::Result<()> {
//!     let local = tokio::task::LocalSet::new();
//!     local
//!         .run_until(async {
//!             let driver = LocalDriver::new()?;
//!             let lp = driver.handle();
//!             let quitter = driver.quitter();
//!             let engine = tokio::task::spawn_local(driver.drive());
//!             // A library's timer, and the application's own task on a worker thread.
//!             let soon = Schedule::Once(Duration::from_millis(2));
//!             let _timer = lp.timer(soon, move |_| quitter.quit())?;
//!             let worker = tokio::spawn(tokio::time::sleep(Duration::from_millis(1)));
//!             worker.await.expect("worker");
//!             engine.await.expect("driver task"); // returns after the quit
//!             Ok(())
//!         })
//!         .await
//! }
//! ```
//!
//! ## How it works, and what it costs
//!
//! The backend is anyloop's substrate-neutral [`Engine`](anyloop_engine::Engine) with its own
//! level-triggered epoll instance and timer heap, shown to tokio as **one**
//! `tokio::io::unix::AsyncFd` on the epoll fd (readable when a watched fd is ready or a
//! wake-up is pending) plus **one** `timerfd`, another `AsyncFd`, armed for the engine's
//! earliest deadline. So a watch costs nothing per tokio poll (one kernel registration per fd,
//! shared by every watch on that fd; delivery is O(ready)), a timer operation is O(log n) in
//! the engine's heap, and an iteration costs tokio's own `epoll_wait` plus the engine's
//! zero-timeout one. The driver's module (`src/driver.rs`) follows one event from tokio to the
//! callback.
//!
//! **Timers** do not use tokio's timer wheel: it ticks in whole milliseconds and rounds up, so
//! a `tokio::time::Sleep` ends 0 to 2 ms after its deadline, and an anyloop `Every(1 ms)` timer
//! served by one fired every 2.2 ms on average (every 1.04 to 1.10 ms on the other backends;
//! `Every(5 ms)`: 6.1 ms against 5.04 to 5.24 ms), measured on the project's 2-vCPU VM. The
//! `timerfd` keeps them as precise as on the other backends (`Every(1 ms)`: 1.04 ms) and never
//! early ([R31](anyloop::contract#r31)), for a `timerfd_settime` system call (about 0.5 µs
//! there, against 0.07 µs for `Sleep::reset`) when the earliest deadline moves; an iteration
//! without timers never touches it, and the runtime needs no time driver for anyloop.
//!
//! ## Behaviour
//!
//! Everything in anyloop's contract ([`anyloop::contract`]) holds and is checked by the
//! `anyloop-conformance` kit: level-triggered delivery over tokio's edge-based readiness (the
//! readiness is forgotten only once the engine's own look found the epoll fd not ready, never
//! because a callback ran, [R8](anyloop::contract#r8)), with exact ERROR/HANGUP bits from the
//! engine's epoll; several watches per fd; regular files and `/dev/null` always ready; a
//! closed watched fd never spins, even when a dup keeps its file open (the engine then
//! rebuilds its epoll instance, and the driver registers the new one with tokio); deferred
//! frees, run on the loop thread; panics caught and reported by `run_once`
//! ([R54](anyloop::contract#r54)).
//!
//! **Threads.** Operations from any thread go straight into the engine's table (ids are
//! returned synchronously) and wake a waiting driver at once through the engine's eventfd,
//! which is inside the epoll set tokio watches ([R40](anyloop::contract#r40)); an operation
//! made on the loop thread by another tokio task wakes the driver's task directly
//! ([R41](anyloop::contract#r41)). Callbacks run inside the runtime's context: they may spawn
//! tokio tasks. A busy anyloop (a zero-interval timer, a regular file) yields to tokio once per
//! iteration, so the runtime's other tasks are never starved.
//!
//! **Dispatch order** within one iteration ([R58](anyloop::contract#r58)): expired timers
//! first, by deadline then creation order; then fd watches, in the order the kernel reported
//! the fds.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("anyloop-tokio supports 64-bit Linux only (epoll)");

mod backend;
mod deadline;
mod driver;
mod tokio_loop;

pub use driver::LocalDriver;
pub use tokio_loop::TokioLoop;

/// The owner-side trait [`TokioLoop`] implements, re-exported so that `run`, `run_once` and
/// `quitter` are in scope with one import.
pub use anyloop::Runner;

/// The `tokio` crate this backend is built on (for `Runtime`, `LocalSet` and the
/// application's own tasks).
pub use tokio;
