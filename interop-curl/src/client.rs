//! [`Client`]: one libcurl multi handle on an anyloop loop, and how it is configured.

use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyloop::{Loop, Registry};
use curl::easy::{Easy2, Handler};

use crate::error::{Error, Failed, Result};
use crate::events::{TransferEvent, TransferKind};
use crate::shared::{Shared, State};
use crate::transfer::{Fetch, Transfer};

/// What a [`ClientBuilder`] sets.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_total_connections: Option<usize>,
    pub(crate) max_host_connections: Option<usize>,
    pub(crate) max_connects: Option<usize>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) progress_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_total_connections: None,
            max_host_connections: None,
            max_connects: None,
            connect_timeout: None,
            timeout: None,
            progress_interval: Duration::from_millis(100),
        }
    }
}

impl Config {
    /// Sets the client's timeouts on a transfer's easy handle.
    pub(crate) fn apply<H>(
        &self,
        easy: &mut Easy2<H>,
    ) -> std::result::Result<(), (&'static str, curl::Error)> {
        if let Some(limit) = self.connect_timeout {
            easy.connect_timeout(limit)
                .map_err(|e| ("CURLOPT_CONNECTTIMEOUT_MS", e))?;
        }
        if let Some(limit) = self.timeout {
            easy.timeout(limit).map_err(|e| ("CURLOPT_TIMEOUT_MS", e))?;
        }
        Ok(())
    }
}

/// Configures a [`Client`]: connection limits, default timeouts, how often progress is
/// reported. Made by [`Client::builder`].
#[derive(Debug, Clone)]
#[must_use = "build the client with `build`"]
pub struct ClientBuilder {
    lp: Loop,
    config: Config,
}

impl ClientBuilder {
    /// At most this many connections open at once, all hosts together
    /// (`CURLMOPT_MAX_TOTAL_CONNECTIONS`); further transfers wait in libcurl's queue.
    /// Default: no limit.
    pub fn max_total_connections(mut self, limit: usize) -> Self {
        self.config.max_total_connections = Some(limit);
        self
    }

    /// At most this many connections open at once to one host
    /// (`CURLMOPT_MAX_HOST_CONNECTIONS`). Default: no limit.
    pub fn max_host_connections(mut self, limit: usize) -> Self {
        self.config.max_host_connections = Some(limit);
        self
    }

    /// How many idle connections libcurl keeps for reuse (`CURLMOPT_MAXCONNECTS`). Default:
    /// libcurl's (four times the transfers in flight, at least).
    pub fn max_idle_connections(mut self, limit: usize) -> Self {
        self.config.max_connects = Some(limit);
        self
    }

    /// Gives up on a connection not made within `limit` (`CURLOPT_CONNECTTIMEOUT_MS`), set
    /// on every transfer the client starts (replacing the easy handle's own setting).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.config.connect_timeout = Some(limit);
        self
    }

    /// Gives up on a transfer not done within `limit` (`CURLOPT_TIMEOUT_MS`), set on every
    /// transfer the client starts (replacing the easy handle's own setting).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.config.timeout = Some(limit);
        self
    }

    /// At most one [`TransferProgress`](crate::TransferProgress) event per transfer per
    /// `interval` (default 100 ms; zero reports after every loop iteration that moved bytes).
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.config.progress_interval = interval;
        self
    }

    /// Makes the client, on the loop's thread.
    ///
    /// # Errors
    /// [`Error::Loop`] with [`WrongThread`](anyloop::Error::WrongThread) off the loop's
    /// thread (the client's watches and timer are thread-bound callbacks, and the client is
    /// not `Send`); [`Error::LoopGone`]; [`Error::Multi`] when libcurl refuses a setting.
    pub fn build(self) -> Result<Client> {
        if !self.lp.is_alive() {
            return Err(Error::LoopGone);
        }
        if !self.lp.is_loop_thread() {
            return Err(Error::from_loop(
                "a curl client off its loop's thread",
                anyloop::Error::WrongThread {
                    id: None,
                    what: "a curl client is made on its loop's thread",
                },
            ));
        }
        let progress_listened = Arc::new(AtomicBool::new(false));
        let listened = progress_listened.clone();
        let events = Registry::<TransferEvent>::builder()
            .event_loop(self.lp.clone())
            .on_transition(move |kind, listened_now| {
                if kind == TransferKind::Progress {
                    listened.store(listened_now, Ordering::Relaxed);
                }
            })
            .build()
            .map_err(|error| Error::from_loop("making the client's event registry", error))?;
        let shared = Shared::new(&self.lp, events, progress_listened, self.config)?;
        Ok(Client { shared })
    }
}

/// What a [`Client`] has on the loop and in flight ([`Client::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClientStats {
    /// Transfers in flight (started, not yet ended nor cancelled).
    pub in_flight: usize,
    /// Sockets watched for libcurl now.
    pub sockets: usize,
    /// Whether libcurl's timer is registered on the loop.
    pub timer_registered: bool,
    /// Whether it is armed (libcurl asked for a timeout that has not passed yet).
    pub timer_armed: bool,
    /// Transfers started so far.
    pub started: u64,
    /// Transfers libcurl completed.
    pub completed: u64,
    /// Transfers that failed (libcurl's error, a closed client, a gone loop).
    pub failed: u64,
    /// Transfers cancelled by their owner.
    pub cancelled: u64,
}

/// One libcurl multi handle, running its transfers on an anyloop [`Loop`] through the vtable
/// only: it works on every backend (the built-in loop, GLib, calloop, tokio...).
///
/// A client lives on its loop's thread (it is not `Send`; clones are cheap and share the
/// multi handle). Each transfer is an [`Easy2<H>`] the application configured (URL, handler,
/// options): [`start`](Self::start) calls back with it when it ends,
/// [`fetch`](Self::fetch) is a future of it. The easy handle comes back with the result, so
/// the handler's data and libcurl's information (`response_code`...) are at hand.
///
/// How it sits on the loop: one fd watch per socket libcurl asks for, with the interest it
/// asks for (so a paused or idle socket is not watched and the loop never spins on it), and
/// one timer for libcurl's timeout, registered while the timeout is armed or a transfer is in
/// flight. Dropping the last clone closes the client ([`close`](Self::close)).
///
/// ```no_run
/// use anyloop::Runner;
/// use curl::easy::{Easy2, Handler, WriteError};
///
/// struct Collect(Vec<u8>);
/// impl Handler for Collect {
///     fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
///         self.0.extend_from_slice(data);
///         Ok(data.len())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let client = anyloop_curl::Client::new(&event_loop.handle())?;
/// let mut easy = Easy2::new(Collect(Vec::new()));
/// easy.url("http://127.0.0.1:8080/")?;
/// let easy = anyloop_async::block_on(&mut event_loop, client.fetch(easy))??;
/// println!("{} bytes, status {}", easy.get_ref().0.len(), easy.response_code()?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Rc<Shared>,
}

impl Client {
    /// A client on `lp` with libcurl's defaults; see [`builder`](Self::builder).
    ///
    /// # Errors
    /// As [`ClientBuilder::build`].
    pub fn new(lp: &Loop) -> Result<Client> {
        Client::builder(lp).build()
    }

    /// Configures a client on `lp`.
    pub fn builder(lp: &Loop) -> ClientBuilder {
        ClientBuilder {
            lp: lp.clone(),
            config: Config::default(),
        }
    }

    /// Starts a transfer; `done` is called once, on the loop's thread, with the easy handle
    /// when libcurl completed the transfer (whatever the HTTP status), or with the error and
    /// the handle when it failed, the client was closed or the loop went away.
    ///
    /// Dropping the returned [`Transfer`] cancels the transfer (`done` is then dropped
    /// without being called); [`Transfer::detach`] lets it run on its own.
    ///
    /// # Errors
    /// The easy handle comes back in [`Failed`]: [`Error::Closed`], [`Error::LoopGone`],
    /// [`Error::Multi`] when libcurl refuses it (also from inside a libcurl callback, such as
    /// a handler's `write`), [`Error::Easy`] when a client timeout cannot be set,
    /// [`Error::Loop`] when the loop refuses libcurl's timer.
    pub fn start<H, F>(&self, easy: Easy2<H>, done: F) -> Result<Transfer<H>, Failed<H>>
    where
        H: Handler + 'static,
        F: FnOnce(std::result::Result<Easy2<H>, Failed<H>>) + 'static,
    {
        let id = self.shared.start(easy, Box::new(done))?;
        Ok(Transfer::new(&self.shared, id))
    }

    /// Starts a transfer now and returns a future of its end: the easy handle, or
    /// [`Failed`] (with the handle) as for [`start`](Self::start). Dropping the future
    /// cancels the transfer. Poll it on the loop's thread, from any executor
    /// (`anyloop_async::block_on` or `spawn_local`, a GTK application's `glib::spawn_future_local`...).
    pub fn fetch<H: Handler + 'static>(&self, easy: Easy2<H>) -> Fetch<H> {
        Fetch::start(self, easy)
    }

    /// What the client's transfers report: [`TransferStarted`](crate::TransferStarted),
    /// [`TransferProgress`](crate::TransferProgress) (only computed while a callback
    /// listens to it) and [`TransferDone`](crate::TransferDone), delivered on the loop's
    /// thread, each about one [`TransferId`](crate::TransferId) (an object filter selects
    /// one transfer).
    pub fn events(&self) -> &Registry<TransferEvent> {
        &self.shared.events
    }

    /// Closes the client: every transfer in flight ends now with [`Error::Closed`] (their
    /// `done` calls are made before this returns), its sockets and timer leave the loop, and
    /// later transfers are refused. The same happens when the last clone is dropped.
    pub fn close(&self) {
        self.shared.close();
    }

    /// True once [`close`](Self::close) was called or the loop went away.
    pub fn is_closed(&self) -> bool {
        self.shared.state() != State::Open
    }

    /// Transfers in flight, watched sockets, the timer, and counts so far.
    pub fn stats(&self) -> ClientStats {
        let counters = self.shared.counters.get();
        ClientStats {
            in_flight: self.shared.in_flight(),
            sockets: self.shared.sockets(),
            timer_registered: self.shared.timer_registered(),
            timer_armed: self.shared.timer_armed(),
            started: counters.started,
            completed: counters.completed,
            failed: counters.failed,
            cancelled: counters.cancelled,
        }
    }

    /// The loop the client runs on.
    pub fn event_loop(&self) -> &Loop {
        &self.shared.lp
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("loop", &self.shared.lp)
            .field("stats", &self.stats())
            .finish()
    }
}
