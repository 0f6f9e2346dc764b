//! A C-style library with state that is not `Send`, bound to anyloop without `unsafe`.
//!
//! C libraries that do network I/O without owning a loop ask their host for fd watches and
//! timeouts through callbacks: libcurl's multi-socket API (`CURLMOPT_SOCKETFUNCTION`,
//! `CURLMOPT_TIMERFUNCTION`, then `curl_multi_socket_action`), libdbus's
//! `dbus_connection_set_watch_functions` and `set_timeout_functions`, c-ares, libpq's
//! non-blocking mode. Their state is reached through raw pointers and is not thread-safe, so
//! a Rust binding cannot honestly mark it `Send`; and the usual anyloop callback must be
//! `Send`, because a loop may be driven from any thread.
//!
//! anyloop's *thread-bound* callbacks close that gap: [`anyloop::Loop::watch_local`],
//! [`anyloop::Loop::timer_local`] and [`anyloop::WatchCallback::local`] take closures that
//! are not `Send` (capturing an `Rc`, a `RefCell`, a raw pointer) when they are added on the
//! loop's thread. anyloop then guarantees, at run time, that such a callback is only ever
//! called and dropped on that thread ([R42](anyloop::contract#r42)); added from another
//! thread, it is refused with [`WrongThread`](anyloop::Error::WrongThread) and handed back in
//! the [`Rejected`](anyloop::Rejected) ([R50](anyloop::contract#r50)). No `unsafe impl Send`,
//! no thread-local, no channel.
//!
//! - [`Multi`] is the library, written the C way and knowing nothing of anyloop: a
//!   ping-pong client that runs many transfers at once over stream sockets. Its handle holds
//!   `Rc<RefCell<..>>` state and a raw pointer to a block it owns, and it calls its host's
//!   socket callback ([`Poll`]: watch for reading, for reading and writing, or remove) and
//!   timer callback (call me back once in this long, or never).
//! - [`LoopBinding`] implements those two callbacks with anyloop: one thread-bound watch per
//!   socket, toggled and removed as the library asks, and one [`Schedule::Once`] timer
//!   re-armed as the library asks ([`Schedule::Once`] is exactly a C library's "call me back
//!   once in N ms").
//! - The `cstyle` program runs it on the loop chosen with `--loop`; `tests/cstyle.rs` runs it
//!   on every backend this build includes.
//!
//! ```
//! use anyloop::{Runner, Stopped};
//! use anyloop_examples::cstyle::{answer_pings, LoopBinding, Multi};
//! use std::{cell::RefCell, os::unix::net::UnixStream, rc::Rc, time::{Duration, Instant}};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! for choice in anyloop_backends::LoopChoice::built() {
//!     let mut lp = choice.create()?;
//!     let multi = Multi::new();
//!     let finished = Rc::new(RefCell::new(Vec::new())); // not `Send`, and need not be
//!     let sink = finished.clone();
//!     multi.set_done_function(move |done| sink.borrow_mut().push(done));
//!     let _binding = LoopBinding::new(&lp.handle(), &multi)?;
//!
//!     let (ours, theirs) = UnixStream::pair()?;
//!     let peer = std::thread::spawn(move || answer_pings(theirs, None));
//!     multi.add(ours, 3, Duration::from_secs(10))?;
//!     let deadline = Instant::now() + Duration::from_secs(10);
//!     let stopped = lp.run_until(Some(deadline), &mut || !finished.borrow().is_empty())?;
//!     assert_eq!(stopped, Stopped::Done, "{choice}");
//!     assert!(finished.borrow()[0].outcome.is_success(), "{choice}");
//!     assert_eq!(peer.join().unwrap()?, 3);
//! }
//! # Ok(()) }
//! ```
//!
//! [`Schedule::Once`]: anyloop::Schedule::Once

mod bind;
mod multi;

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

pub use bind::LoopBinding;
pub use multi::{Done, Multi, Outcome, Poll, RawMulti, Ready, TransferId, WeakMulti};

/// The other end of a transfer, for a thread of its own (it blocks): answers `ping N` with
/// `pong N`, the first `limit` pings only (`None`: all of them), then reads on without
/// answering until the library closes the socket. Returns how many pings it answered.
///
/// # Errors
/// Reading or writing the socket failed.
pub fn answer_pings(socket: UnixStream, limit: Option<u32>) -> io::Result<u32> {
    let mut writer = socket.try_clone()?;
    let mut answered = 0;
    for line in BufReader::new(socket).lines() {
        let line = line?;
        let Some(number) = line.strip_prefix("ping ") else {
            continue;
        };
        if limit.is_some_and(|limit| answered >= limit) {
            continue;
        }
        // The library may close its end as soon as it has the last answer.
        match writeln!(writer, "pong {number}") {
            Ok(()) => answered += 1,
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => break,
            Err(err) => return Err(err),
        }
    }
    Ok(answered)
}
