//! # anyloop-curl: libcurl's multi interface on any anyloop backend
//!
//! libcurl's multi-socket API (`curl_multi_socket_action`, wrapped by the `curl` crate as
//! [`Multi::action`](curl::multi::Multi::action), [`Multi::timeout`](curl::multi::Multi::timeout),
//! `socket_function` and `timer_function`) is made for an external event loop: libcurl says
//! which sockets to watch for what and when to call it back. A [`Client`] does that through
//! the anyloop vtable only, so the same transfers run on the built-in loop, inside a GTK
//! application's GLib main loop (no second thread, no runtime), on calloop, on tokio, or on
//! any other backend, and the crate picks no loop itself.
//!
//! - **Transfers** are the `curl` crate's [`Easy2<H>`](curl::easy::Easy2): the application
//!   sets the URL and options and its [`Handler`](curl::easy::Handler) keeps its own
//!   callbacks. [`Client::start`] calls back with the easy handle when the transfer ends;
//!   [`Client::fetch`] is a future of it, for `anyloop-async` or any executor on the loop's
//!   thread.
//! - **Cancel** by dropping the [`Transfer`] or the [`Fetch`]: the easy handle leaves the
//!   multi handle at once and nothing of it stays on the loop. **Pause and resume** with
//!   [`Transfer::pause`] and [`Transfer::resume`].
//! - **Events**: [`Client::events`] is a typed [`anyloop::Registry`] of
//!   [`TransferStarted`], [`TransferProgress`] and [`TransferDone`], each about one
//!   [`TransferId`]; [`Transfer::progress`] reads a transfer's progress at any time.
//! - **Limits**: total and per-host connections, idle connections kept, connect and
//!   transfer timeouts ([`ClientBuilder`]).
//! - **Errors** are typed ([`Error`]): libcurl's code and message for the transfer, a
//!   refusal of the multi handle, a closed client, a loop that has gone; a failed transfer
//!   gives its easy handle back ([`Failed`]).
//!
//! ## How it sits on the loop
//!
//! One fd watch per socket libcurl asks for, with exactly the interest it asks for (a paused
//! transfer's socket, or an idle one, is not watched, so the loop never spins on it), and one
//! timer for libcurl's timeout, a [`Schedule::Once`](anyloop::Schedule::Once) re-armed as
//! libcurl asks ([R29](anyloop::contract#r29)). A readiness report becomes
//! `curl_multi_socket_action` for that socket; the timer becomes the timeout action; after
//! each, finished transfers are taken out of the multi handle and their owners told, with no
//! borrow held, so a completion may start, cancel or pause transfers or close the client.
//!
//! Three things the binding handles that a hand-written one tends to miss:
//! - **The fired one-shot timer.** libcurl 7.88 does not call the timer callback with -1
//!   ("delete") after the timeout that ended its last transfer (a transfer that timed out,
//!   say), and anyloop keeps a fired `Once` timer registered, disabled, until it is removed
//!   ([R27](anyloop::contract#r27)). The client removes its timer itself once it fired or was
//!   deleted and no transfer is in flight, so an idle client leaves nothing on the loop
//!   ([`Loop::stats`](anyloop::Loop::stats) counts 0 watches and 0 timers). While transfers
//!   are in flight the timer stays registered (disabled when libcurl wants none): its free
//!   is how the client learns that the loop was destroyed, even when every transfer is
//!   paused and no socket is watched.
//! - **Resume needs a kick.** After `curl_easy_pause(CURLPAUSE_CONT)` libcurl must run the
//!   transfer again although its socket may stay quiet (what it held back may be all there
//!   is); [`Transfer::resume`] arms the timer for the next iteration itself.
//! - **`Send` closures on one thread.** The `curl` crate demands `Send` closures for
//!   `socket_function` and `timer_function`, although libcurl calls them only from inside the
//!   client's own calls, on the loop's thread. The client's state is an `Rc`, carried inside
//!   an [`anyloop::ThreadBound`] (`Send`, usable and dropped only on its thread); its watches
//!   and timer are thread-bound callbacks ([`Loop::watch_local`](anyloop::Loop::watch_local)).
//!   No `unsafe impl Send`; the crate's only `unsafe` are two libcurl calls the `curl` crate
//!   does not wrap (pausing from outside a callback, the upload size).
//!
//! ## Threads and lifetimes
//!
//! A client is made and used on its loop's thread (it is not `Send`; made elsewhere it is
//! [`Error::Loop`] with [`WrongThread`](anyloop::Error::WrongThread)); so are its futures.
//! Dropping the last clone of a client, or [`Client::close`], ends its transfers in flight
//! with [`Error::Closed`]. When the loop is destroyed, every transfer in flight ends with
//! [`Error::LoopGone`] (its `done` call is made then, and its future is ready), and nothing
//! of the client runs afterwards. libcurl refuses its multi functions from inside its own
//! callbacks: starting a transfer from a handler's `write` is refused
//! ([`Error::Multi`], the easy handle given back), a transfer dropped there is removed right
//! after libcurl returns.
//!
//! ## Example
//!
//! A library function written against [`Client`] only, and an application that runs it on
//! the loop of its choice (here a `file://` URL, so the example needs no server):
//!
//! ```
//! use anyloop_curl::curl::easy::{Easy2, Handler, WriteError};
//! use anyloop_curl::{Client, TransferDone};
//!
//! /// Library side: collects a body.
//! pub struct Collect(pub Vec<u8>);
//! impl Handler for Collect {
//!     fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
//!         self.0.extend_from_slice(data);
//!         Ok(data.len())
//!     }
//! }
//!
//! /// Library side: downloads `url`, whatever loop the client runs on.
//! pub async fn download(client: &Client, url: &str) -> Result<Vec<u8>, anyloop_curl::Error> {
//!     let mut easy = Easy2::new(Collect(Vec::new()));
//!     easy.url(url).map_err(|source| anyloop_curl::Error::Easy { what: "CURLOPT_URL", source })?;
//!     let mut easy = client.fetch(easy).await?;
//!     Ok(std::mem::take(&mut easy.get_mut().0))
//! }
//!
//! /// Application side: any loop (`select`, `select-mio`, `glib`, `calloop`, `tokio`).
//! fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     let path = std::env::temp_dir().join(format!("anyloop-curl-doc-{}", std::process::id()));
//!     std::fs::write(&path, b"hello from a file")?;
//!     let mut event_loop = "calloop".parse::<anyloop_backends::LoopChoice>()?.create()?;
//!     let client = Client::new(&event_loop.handle())?;
//!     client.events().on_local::<TransferDone>(|done| println!("{}: {:?}", done.transfer, done.result))?;
//!     let url = format!("file://{}", path.display());
//!     let body = anyloop_async::block_on(&mut event_loop, download(&client, &url))??;
//!     assert_eq!(body, b"hello from a file");
//!     std::fs::remove_file(&path)?;
//!     Ok(())
//! }
//! ```
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

mod client;
mod error;
mod events;
mod ffi;
mod shared;
mod slot;
mod transfer;

pub use client::{Client, ClientBuilder, ClientStats};
pub use error::{Error, Failed, Result};
pub use events::{
    Progress, TransferDone, TransferEvent, TransferId, TransferKind, TransferProgress,
    TransferStarted,
};
pub use transfer::{Fetch, Transfer};

/// The `curl` crate this crate is built on (its `Easy2`, `Handler`, errors).
pub use curl;
