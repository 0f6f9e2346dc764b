//! # anyloop-glib: the anyloop vtable on a GLib main context
//!
//! GTK and GNOME applications run a GLib main context. This crate plugs anyloop into it, so
//! that libraries written against [`anyloop::Loop`] do their fd watching and timing on the
//! application's own loop, with their callbacks on its thread (libvirt-glib's
//! `gvir_event_register` is the C precedent). One call does it for a GTK application:
//! [`install_default`].
//!
//! ```
//! use anyloop::{IoEvents, Runner};
//! use anyloop_glib::GlibLoop;
//! use std::io::{Read, Write};
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // A GTK application would call `anyloop_glib::install_default()` instead.
//!     let context = glib::MainContext::new();
//!     let mut lp = GlibLoop::new(&context)?;
//!     let handle = lp.handle(); // what a library stores: `anyloop::Loop`
//!
//!     let (mut ours, theirs) = UnixStream::pair()?;
//!     let mut reader = theirs.try_clone()?;
//!     let quitter = lp.quitter();
//!     let _watch = handle.watch(theirs.as_raw_fd(), IoEvents::READABLE, move |_id, _fd, _ev| {
//!         let mut buf = [0u8; 64];
//!         let n = reader.read(&mut buf).unwrap_or(0);
//!         println!("got {:?}", String::from_utf8_lossy(&buf[..n]));
//!         quitter.quit();
//!     })?;
//!     ours.write_all(b"hello")?;
//!
//!     // Any iteration of the context runs anyloop callbacks; `run` iterates until quit.
//!     lp.run()?;
//!     Ok(())
//! }
//! ```
//!
//! ## How it works, and what it costs
//!
//! A [`GlibLoop`] is **one** custom `GSource`. It owns an epoll instance in which each
//! watched fd is registered once, and GLib polls only that epoll fd; timers live in
//! anyloop's own heap and the source's poll timeout is the earliest deadline. So an
//! iteration of the context costs the same with 10 or 10 000 watches (GLib's own fd sources
//! cost about 90 ns per registered watch per iteration), and a timer add, update or remove
//! is O(log n). The registration table and the dispatch cycle are anyloop's
//! substrate-neutral [`anyloop_engine::Engine`]; `src/source.rs` is the GLib side, to be
//! read top to bottom.
//!
//! It stays an ordinary source: its priority ([`GlibLoop::with_priority`]) orders anyloop
//! callbacks among the context's other sources; `g_main_context_iteration`,
//! `glib::MainLoop`, `gtk::Application::run` and nested main loops drive it as usual (while
//! an anyloop callback runs a nested loop, anyloop callbacks wait, as GLib does for any
//! source).
//!
//! ## Behaviour
//!
//! Everything in anyloop's contract ([`anyloop::contract`]) holds, and is checked
//! by the `anyloop-conformance` kit on private contexts and on the global default context:
//! level-triggered delivery; several watches per fd; deferred frees (never inside an op,
//! never while the callback runs, exactly once, on the thread that iterates the context,
//! in removal order; callback state is never handed to GLib as a destroy-notify); ops from
//! any thread, which wake the context when it is blocked in its poll; panics in callbacks
//! caught and reported by [`run_once`](anyloop::Runner::run_once); regular files and `/dev/null` always ready,
//! as under `poll(2)`; a closed watched fd never spins, even while a duplicate of it stays
//! open.
//!
//! **Dispatch order** within one iteration of the source ([R58](anyloop::contract#r58)): expired timers first, by
//! deadline then creation order; then fd watches, in the order the kernel reported the
//! fds. Against other GLib sources: by priority, as GLib decides.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

#[cfg(not(target_os = "linux"))]
compile_error!("anyloop-glib supports Linux only (it hosts an epoll instance)");

mod glib_loop;
mod source;

pub use glib_loop::{install_default, GlibLoop};

/// The owner-side trait [`GlibLoop`] implements, re-exported so that `run`, `run_once` and
/// `quitter` are in scope with one import.
pub use anyloop::Runner;

/// The `glib` crate this backend is built on (for [`glib::MainContext`] and
/// [`glib::Priority`]).
pub use glib;
