//! # anyloop-select: the built-in event loop of anyloop
//!
//! [`SelectLoop`] implements the anyloop vtable ([`anyloop::Backend`]) on Linux epoll (or on
//! another [`PollerKind`]; on other Unix systems `poll(2)`, compile-checked by CI for FreeBSD
//! and macOS but not run there), for command-line programs, tests and anything that has no
//! main loop of its own. Run it on one thread; hand its [`Loop`](anyloop::Loop) handle (from
//! [`SelectLoop::handle`]) to libraries, on any thread.
//!
//! ```
//! use anyloop::{IoEvents, Runner, Schedule};
//! use anyloop_select::SelectLoop;
//! use std::io::{Read, Write};
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//!
//! fn main() -> anyloop::Result<()> {
//!     let mut lp = SelectLoop::new()?;
//!     let handle = lp.handle(); // what a library stores: `anyloop::Loop`
//!
//!     // Echo whatever arrives on one end of a socket pair, then stop.
//!     let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
//!     let mut reader = theirs.try_clone().expect("dup");
//!     let quitter = lp.quitter();
//!     let _watch = handle.watch(theirs.as_raw_fd(), IoEvents::READABLE, move |_id, _fd, _ev| {
//!         let mut buf = [0u8; 64];
//!         let n = reader.read(&mut buf).unwrap_or(0);
//!         println!("got {:?}", String::from_utf8_lossy(&buf[..n]));
//!         quitter.quit();
//!     })?;
//!
//!     // A one-shot timer: it fires once, 10 ms from now, and writes the message.
//!     let _timer = handle.timer(Schedule::Once(Duration::from_millis(10)), move |_id| {
//!         ours.write_all(b"hello").expect("write");
//!     })?;
//!
//!     lp.run()?; // returns once the watch called quit()
//!     Ok(())
//! }
//! ```
//!
//! ## Behaviour
//!
//! Everything in anyloop's contract ([`anyloop::contract`]) holds, and is checked by
//! the `anyloop-conformance` kit: level-triggered delivery; several watches per fd with one
//! kernel registration; deferred frees (never inside an op, never while the callback runs,
//! exactly once, on the loop thread, in removal order); ops from any thread, with wake-ups
//! that are never lost; panics in callbacks caught and reported by [`run_once`](anyloop::Runner::run_once);
//! regular files and `/dev/null` always ready, as under `poll(2)`; a closed watched fd never
//! spins.
//!
//! The registration table and the dispatch cycle are anyloop's substrate-neutral
//! [`anyloop_engine::Engine`]; to follow an event from the kernel to a callback, read
//! `engine/src/dispatch.rs`. This crate adds the OS layer (`sys/`): see [`PollerKind`].
//!
//! **Dispatch order** within one iteration ([R58](anyloop::contract#r58)): expired timers first, by deadline then
//! creation order; then fd watches, in the order the kernel reported the fds, several
//! watches on one fd in registration order.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

#[cfg(not(all(unix, target_pointer_width = "64")))]
compile_error!("anyloop-select supports 64-bit Unix only (epoll on Linux, poll(2) elsewhere)");

mod select;
mod sys;

pub use select::{PollerKind, SelectLoop};

/// The owner-side trait [`SelectLoop`] implements, re-exported so that `run`, `run_once` and
/// `quitter` are in scope with one import.
pub use anyloop::Runner;
