//! # anyloop-async: futures on any anyloop loop
//!
//! An `async fn` written with this crate runs on whatever loop the application picked: the
//! built-in one, GLib (inside a GTK application), calloop, tokio, or any other backend of the
//! `anyloop::Backend` vtable. Every future and every waker goes through the vtable only: a
//! readiness future is one fd watch, a sleep one timer, a task one zero-delay one-shot timer.
//!
//! - **I/O readiness:** [`Async<T>`] wraps a non-blocking fd with one watch whose interest
//!   follows the waiting futures ([`Async::readable`], [`Async::writable`], the loops
//!   [`Async::read_with`] / [`Async::write_with`], and `futures-io`'s `AsyncRead` /
//!   `AsyncWrite`); [`readable`] and [`writable`] wait once on any fd.
//! - **Time:** [`sleep`], [`sleep_until`], [`Interval`], and [`timeout`] around any future.
//! - **Events:** [`events`] and [`events_with`] turn a typed [`anyloop::Registry`]'s events
//!   into a [`Stream`](futures_core::Stream) ([`EventStream`]) that ends when the registry
//!   closes.
//! - **Tasks:** [`spawn_local`] runs a `!Send` future on the loop's thread and returns a
//!   [`JoinHandle`] (a future of the output; dropping it cancels the task); a
//!   [`LocalExecutor`] cancels its tasks when dropped; [`block_on`] runs a loop
//!   ([`anyloop::Runner`]) until a future completes.
//!
//! ## Threads
//!
//! Futures, tasks and handles are `!Send`: they are made and polled on the loop's thread, and
//! their registrations are thread-bound callbacks ([`Loop::watch_local`],
//! [`Loop::timer_local`], [`Registry::on_local`](anyloop::Registry::on_local),
//! [R42](anyloop::contract#r42)). So a task may hold an `Rc`, a GTK widget or a `RefCell`.
//! Made or first polled off the loop's thread, a future resolves to
//! [`Error::WrongThread`]. **Wakers are `Send + Sync`** and may
//! be woken from any thread: a task's waker arms the task's timer through
//! [`Loop::update_timer`], which wakes a blocked loop at once ([R28](anyloop::contract#r28),
//! [R40](anyloop::contract#r40)); wakes are merged, never lost.
//!
//! ## Errors and a loop that has gone
//!
//! Outputs are [`anyloop::Result`]s (a task's handle gives a [`JoinError`], a [`timeout`] a
//! [`TimeoutError`]). Objects ([`Async::new`], [`Interval::new`], [`events`],
//! [`spawn_local`]) register when made and return the error then; futures ([`sleep`],
//! [`readable`], [`timeout`]) register at their first poll and return it as their output.
//! When the loop is destroyed, a waiting future is woken (the free of its callback tells it)
//! and resolves to [`Error::LoopGone`]; a future first polled after
//! that resolves to it at once; a task's handle gives [`JoinError::LoopGone`]; an
//! [`EventStream`] ends. Nothing hangs.
//!
//! ## Level-triggered readiness
//!
//! The loop reports an fd for as long as it stays ready ([R8](anyloop::contract#r8)); a
//! readiness future resolves on the first report made while it waits, and the report is a
//! hint, not a promise ([R14](anyloop::contract#r14)): a `readable()` that resolves does not
//! mean that the next read will not block. Read until `WouldBlock`, then await again. The
//! details are on [`Async`].
//!
//! ## Example: an `async fn` library on any loop
//!
//! ```
//! use anyloop::Loop;
//! use anyloop_async::{timeout, Async};
//! use std::io::{self, Read, Write};
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//!
//! /// Library side: sends a line and waits for the reply, at most `limit`.
//! pub async fn ask(lp: &Loop, socket: &Async<UnixStream>, line: &str, limit: Duration)
//!     -> io::Result<String>
//! {
//!     socket.write_with(|mut s| s.write_all(format!("{line}\n").as_bytes())).await?;
//!     let mut reply = Vec::new();
//!     let read = async {
//!         while !reply.ends_with(b"\n") {
//!             let mut buf = [0u8; 256];
//!             let n = socket.read_with(|mut s| s.read(&mut buf)).await?;
//!             if n == 0 { return Err(io::ErrorKind::UnexpectedEof.into()); }
//!             reply.extend_from_slice(&buf[..n]);
//!         }
//!         io::Result::Ok(())
//!     };
//!     timeout(lp, limit, read).await.map_err(io::Error::other)??;
//!     Ok(String::from_utf8_lossy(&reply).trim_end().to_owned())
//! }
//!
//! /// Application side: any loop, here the built-in one; the peer answers from a thread.
//! fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     let mut event_loop = anyloop_select::SelectLoop::new()?;
//!     let lp = anyloop::Runner::handle(&event_loop);
//!     let (ours, mut theirs) = UnixStream::pair()?;
//!     let peer = std::thread::spawn(move || {
//!         let mut line = [0u8; 5];
//!         theirs.read_exact(&mut line)?;
//!         theirs.write_all(b"pong\n")
//!     });
//!     ours.set_nonblocking(true)?;
//!     let socket = Async::new(&lp, ours)?;
//!     let reply = anyloop_async::block_on(&mut event_loop, ask(&lp, &socket, "ping", Duration::from_secs(5)))??;
//!     assert_eq!(reply, "pong");
//!     peer.join().expect("peer")?;
//!     Ok(())
//! }
//! ```
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod executor;
mod io;
mod sched;
mod stream;
mod time;

pub use executor::{block_on, spawn_local, JoinError, JoinHandle, LocalExecutor};
pub use io::{readable, writable, Async, FdReady, Readiness};
pub use stream::{events, events_with, EventStream};
pub use time::{sleep, sleep_until, timeout, Interval, Sleep, TimeoutError};

#[doc(no_inline)]
pub use anyloop::{Error, IoEvents, Loop, Result};
