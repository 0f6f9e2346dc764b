//! # anyloop-calloop: the anyloop vtable on a calloop event loop
//!
//! calloop is the event loop of Rust's Wayland stack (Smithay compositors, many winit-based
//! applications). Two ways in:
//!
//! - **The application keeps driving its own calloop loop** (a compositor): a
//!   [`CalloopSource`] plugs a library written against anyloop into it, whatever the loop's
//!   shared data type: create it from the loop's `LoopHandle`, give its
//!   [`Loop`](anyloop::Loop) handle to the library, and keep dispatching calloop as usual
//!   (below).
//! - **anyloop owns the calloop loop**: [`CalloopLoop`] is a calloop `EventLoop` with the
//!   source inside, run through [`anyloop::Runner`] like every other backend.
//!
//! ```
//! use anyloop::IoEvents;
//! use anyloop_calloop::CalloopSource;
//! use std::io::{Read, Write};
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//!
//! /// The application's own state, passed to every calloop callback.
//! struct App {
//!     lines: Vec<String>,
//! }
//!
//! fn main() -> anyloop::Result<()> {
//!     let mut event_loop = calloop::EventLoop::<App>::try_new().expect("calloop");
//!     let backend = CalloopSource::new(&event_loop.handle())?;
//!     let lp = backend.handle(); // what a library stores: `anyloop::Loop`
//!
//!     // A library watches one end of a socket pair...
//!     let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
//!     let mut reader = theirs.try_clone().expect("dup");
//!     let quitter = backend.quitter();
//!     let _watch = lp.watch(theirs.as_raw_fd(), IoEvents::READABLE, move |_id, _fd, _ev| {
//!         let mut buf = [0u8; 64];
//!         let n = reader.read(&mut buf).unwrap_or(0);
//!         println!("got {:?}", String::from_utf8_lossy(&buf[..n]));
//!         quitter.quit();
//!     })?;
//!
//!     // ...while the application keeps its own calloop sources.
//!     let timer = calloop::timer::Timer::from_duration(Duration::from_millis(5));
//!     event_loop
//!         .handle()
//!         .insert_source(timer, move |_deadline, _, app: &mut App| {
//!             app.lines.push("written".into());
//!             ours.write_all(b"hello").expect("write");
//!             calloop::timer::TimeoutAction::Drop
//!         })
//!         .expect("timer");
//!
//!     // calloop's own `run`, stopped by anyloop's quit requests.
//!     backend.stop_calloop_on_quit(event_loop.get_signal());
//!     let mut app = App { lines: Vec::new() };
//!     event_loop.run(None, &mut app, |_app| {}).expect("calloop");
//!     assert_eq!(app.lines, ["written"]);
//!     // A panic caught in an anyloop callback during calloop's `run` is reported here.
//!     backend.take_error().map_or(Ok(()), Err)
//! }
//! ```
//!
//! [`CalloopSource::dispatch`] is one `EventLoop::dispatch` that also reports how many anyloop
//! callbacks ran and the first panic caught in one of them.
//!
//! ## How it works, and what it costs
//!
//! The backend is anyloop's substrate-neutral [`Engine`](anyloop_engine::Engine) with its
//! own level-triggered epoll instance and timer heap, inserted into calloop as **one** event
//! source: the epoll fd as one level-triggered `Generic` entry, plus one calloop `Timer`
//! armed for the engine's earliest deadline. So a watch costs nothing per calloop iteration
//! (delivery is O(ready), however many watches are registered), a timer operation is
//! O(log n) in the engine's heap (one calloop `Timer` per anyloop timeout would cost a linear
//! scan per operation), and an fd event costs one `epoll_wait` on top of calloop's own poll
//! (a timer firing does not: when calloop reports only the timer, the engine skips its own
//! wait, [`Engine::run_hosted`](anyloop_engine::Engine::run_hosted)).
//! The source's module (`src/source.rs`) follows one event from calloop to the callback.
//!
//! ## Behaviour
//!
//! Everything in anyloop's contract ([`anyloop::contract`]) holds and is checked by the `anyloop-conformance` kit:
//! level-triggered delivery with exact ERROR/HANGUP bits (from the engine's epoll, not
//! calloop's `Readiness`, which has neither); several watches per fd; regular files and
//! `/dev/null` always ready; a closed watched fd never spins, even when a dup keeps its file
//! open (the engine then rebuilds its epoll instance, and the source registers the new one
//! with calloop); deferred frees, run on the loop thread inside the source's dispatch (a free
//! pending after a remove made between dispatches makes calloop dispatch promptly).
//!
//! **Threads.** calloop's `LoopHandle` is not `Send`, but the [`Loop`](anyloop::Loop) handle
//! is: its operations go straight into the engine's table (ids are returned synchronously,
//! from any thread) and wake calloop through the engine's eventfd, which is inside the epoll
//! set calloop watches. No other thread ever touches calloop, and no calloop source is
//! inserted from a callback (calloop's double-borrow trap).
//!
//! **Dispatch order** within one iteration ([R58](anyloop::contract#r58)): expired timers first, by deadline then
//! creation order; then fd watches, in the order the kernel reported the fds.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("anyloop-calloop supports 64-bit Linux only (epoll)");

mod backend;
mod owned;
mod source;

pub use backend::CalloopSource;
pub use owned::CalloopLoop;

/// The owner-side trait [`CalloopLoop`] implements, re-exported so that `run`, `run_once` and
/// `quitter` are in scope with one import.
pub use anyloop::Runner;

/// The `calloop` crate this backend is built on (for `EventLoop`, `LoopHandle` and the
/// application's own calloop sources).
pub use calloop;
