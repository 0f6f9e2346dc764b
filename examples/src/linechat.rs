//! `linechat`: an `async fn` library written with `anyloop-async` only: a client for a small
//! line protocol over a Unix socket, with a time limit on every request, and the server it
//! talks to. Neither picks a loop: the same code runs on the built-in loop, GLib (inside a GTK
//! application), calloop and tokio; the application decides, here with `--loop`
//! (`src/bin/async_client.rs`).
//!
//! The protocol: one request per line, one reply line per request, in order.
//!
//! | request | reply |
//! |---|---|
//! | `PING` | `PONG` |
//! | `ECHO <text>` | `<text>` |
//! | `UPPER <text>` | `<text>` in upper case |
//! | `WAIT <ms> <text>` | `<text>`, after `<ms>` milliseconds |
//! | `BYE` | `BYE`, then the server closes the connection |
//! | anything else | `ERR <why>` |
//!
//! What it shows:
//! - [`Client::connect`] is a non-blocking `connect(2)` that awaits
//!   [`Async::writable`] when the server's backlog is full, then reads `SO_ERROR`;
//! - [`Client::request`] writes with [`Async::write_with`] and reads the reply line with
//!   [`Async::read_with`] (read until `WouldBlock`, await `readable()`, again: a readable fd
//!   is a hint, not a promise), inside [`anyloop_async::timeout`]; a request that times out
//!   closes the connection, since a late reply would otherwise be taken for the next one;
//! - [`serve`] accepts connections in a loop and runs each as a task of a
//!   [`LocalExecutor`] (its own non-`Send` state in an `Rc`), so that dropping the server's
//!   future also cancels every connection, and the `WAIT` request is an
//!   [`anyloop_async::sleep`].

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use anyloop::Loop;
use anyloop_async::{sleep, timeout, Async, LocalExecutor, TimeoutError};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// The longest line either side accepts (bytes, newline excluded).
pub const MAX_LINE: usize = 64 * 1024;

/// What went wrong in a [`Client`] call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached (no such socket, connection refused...).
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket path.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading or writing failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// No reply within the time limit; the connection was closed.
    #[error("no reply within {after:?} (the connection was closed)")]
    TimedOut {
        /// The limit.
        after: Duration,
    },
    /// The server closed the connection (or an earlier request timed out and closed it).
    #[error("the connection is closed")]
    Closed,
    /// The reply was not a line of text of at most [`MAX_LINE`] bytes.
    #[error("bad reply: {0}")]
    BadReply(String),
    /// The loop refused: it is gone, or this is not its thread.
    #[error(transparent)]
    Loop(#[from] anyloop::Error),
}

/// A connection to a `linechat` server. Every call is an `async fn`: await it on the loop's
/// thread, from a task ([`anyloop_async::spawn_local`]) or through
/// [`anyloop_async::block_on`].
pub struct Client {
    lp: Loop,
    socket: Option<Async<UnixStream>>,
    /// Bytes read after the last reply line.
    pending: Vec<u8>,
    limit: Duration,
}

impl Client {
    /// Connects to the server at `path`; each later request may take at most `limit`.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the server cannot be reached, [`ClientError::TimedOut`]
    /// when the connection is not accepted within `limit`, [`ClientError::Loop`] off the
    /// loop's thread.
    pub async fn connect(lp: &Loop, path: &Path, limit: Duration) -> Result<Client, ClientError> {
        let failed = |source: io::Error| ClientError::Connect {
            path: path.display().to_string(),
            source,
        };
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| failed(e.into()))?;
        let address = SocketAddrUnix::new(path).map_err(|e| failed(e.into()))?;
        let in_progress = match rustix::net::connect(&fd, &address) {
            Ok(()) => false,
            // A full backlog: the socket becomes writable once the server accepts.
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INPROGRESS) => true,
            Err(errno) => return Err(failed(errno.into())),
        };
        let socket = Async::new(lp, UnixStream::from(fd))?;
        if in_progress {
            match timeout(lp, limit, socket.writable()).await {
                Ok(ready) => {
                    ready?;
                }
                Err(TimeoutError::Elapsed { after }) => {
                    return Err(ClientError::TimedOut { after })
                }
                Err(TimeoutError::Loop(error)) => return Err(error.into()),
                Err(other) => return Err(failed(io::Error::other(other))),
            }
            match rustix::net::sockopt::socket_error(socket.get_ref()) {
                Ok(Ok(())) => {}
                Ok(Err(errno)) => return Err(failed(errno.into())),
                Err(errno) => return Err(failed(errno.into())),
            }
        }
        Ok(Client {
            lp: lp.clone(),
            socket: Some(socket),
            pending: Vec::new(),
            limit,
        })
    }

    /// Sends one request line and returns the reply line (without its newline).
    ///
    /// # Errors
    /// [`ClientError::TimedOut`] when the reply does not come within the limit (the
    /// connection is then closed), [`ClientError::Closed`] when the server closed it,
    /// [`ClientError::Io`], [`ClientError::BadReply`].
    pub async fn request(&mut self, line: &str) -> Result<String, ClientError> {
        if line.contains('\n') || line.len() > MAX_LINE {
            return Err(ClientError::BadReply("a request is one line".into()));
        }
        let limit = self.limit;
        let lp = self.lp.clone();
        let exchange = async {
            let socket = self.socket.as_ref().ok_or(ClientError::Closed)?;
            write_all(socket, format!("{line}\n").as_bytes()).await?;
            read_line(socket, &mut self.pending)
                .await?
                .ok_or(ClientError::Closed)
        };
        let outcome = match timeout(&lp, limit, exchange).await {
            // Writing to a connection the server closed.
            Ok(Err(ClientError::Io(error)))
                if matches!(
                    error.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                Err(ClientError::Closed)
            }
            Ok(reply) => reply,
            Err(TimeoutError::Elapsed { after }) => Err(ClientError::TimedOut { after }),
            Err(TimeoutError::Loop(error)) => Err(error.into()),
            Err(other) => Err(ClientError::Io(io::Error::other(other))),
        };
        match outcome {
            Ok(reply) => String::from_utf8(reply)
                .map_err(|e| ClientError::BadReply(format!("not UTF-8: {e}"))),
            Err(error) => {
                if matches!(error, ClientError::TimedOut { .. } | ClientError::Closed) {
                    self.close();
                }
                Err(error)
            }
        }
    }

    /// `PING`, and how long the answer took.
    ///
    /// # Errors
    /// As [`request`](Self::request), or [`ClientError::BadReply`] for anything but `PONG`.
    pub async fn ping(&mut self) -> Result<Duration, ClientError> {
        let started = std::time::Instant::now();
        match self.request("PING").await?.as_str() {
            "PONG" => Ok(started.elapsed()),
            other => Err(ClientError::BadReply(other.to_owned())),
        }
    }

    /// True until the server closed the connection or a request timed out.
    pub fn is_open(&self) -> bool {
        self.socket.is_some()
    }

    /// Closes the connection (the watch is removed first).
    pub fn close(&mut self) {
        self.socket = None;
        self.pending.clear();
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("open", &self.is_open())
            .field("limit", &self.limit)
            .finish()
    }
}

/// Writes all of `bytes`, awaiting writability when the socket buffer is full.
async fn write_all(socket: &Async<UnixStream>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = socket.write_with(|mut s| s.write(bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Reads the next line (without its newline), keeping what follows it in `pending`; `None`
/// at end of file before a full line.
async fn read_line(
    socket: &Async<UnixStream>,
    pending: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, ClientError> {
    loop {
        if let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line = pending[..end].to_vec();
            pending.drain(..=end);
            return Ok(Some(line));
        }
        if pending.len() > MAX_LINE {
            return Err(ClientError::BadReply(format!(
                "a line longer than {MAX_LINE} bytes"
            )));
        }
        let mut buf = [0u8; 4096];
        let n = socket.read_with(|mut s| s.read(&mut buf)).await?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Serves `listener` (made non-blocking here) on `lp` until the returned future is dropped or
/// accepting fails; every connection is a task, cancelled with the server. `served` counts the
/// requests answered.
///
/// # Errors
/// The error that stopped the accept loop (not a failing connection: that one just ends).
pub async fn serve(lp: Loop, listener: UnixListener, served: Rc<Cell<u64>>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = Async::new(&lp, listener).map_err(io::Error::other)?;
    let connections = LocalExecutor::new(&lp);
    loop {
        let (stream, _) = listener.read_with(|l| l.accept()).await?;
        stream.set_nonblocking(true)?;
        let socket = Async::new(&lp, stream).map_err(io::Error::other)?;
        let (lp, served) = (lp.clone(), Rc::clone(&served));
        connections
            .spawn(async move {
                // A connection that fails just ends.
                let _ = answer(&lp, socket, &served).await;
            })
            .map_err(io::Error::other)?
            .detach();
    }
}

/// One connection: answers requests until `BYE`, end of file or an error.
async fn answer(
    lp: &Loop,
    socket: Async<UnixStream>,
    served: &Cell<u64>,
) -> Result<(), ClientError> {
    let mut pending = Vec::new();
    while let Some(line) = read_line(&socket, &mut pending).await? {
        let line = String::from_utf8_lossy(&line).into_owned();
        let (command, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let reply = match command {
            "PING" => "PONG".to_owned(),
            "ECHO" => rest.to_owned(),
            "UPPER" => rest.to_uppercase(),
            "WAIT" => {
                let (ms, text) = rest.split_once(' ').unwrap_or((rest, ""));
                match ms.parse::<u64>() {
                    Ok(ms) => {
                        sleep(lp, Duration::from_millis(ms)).await?;
                        text.to_owned()
                    }
                    Err(_) => format!("ERR bad delay {ms:?}"),
                }
            }
            "BYE" => "BYE".to_owned(),
            _ => format!("ERR unknown command {command:?}"),
        };
        write_all(&socket, format!("{reply}\n").as_bytes()).await?;
        served.set(served.get() + 1);
        if command == "BYE" {
            break;
        }
    }
    Ok(())
}
