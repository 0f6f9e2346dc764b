//! What the per-backend scenarios share: handlers, the loop helpers, a watchdog, and the
//! servers (`server`, `tls`).

#![allow(dead_code)] // each test binary uses its own part

pub mod scenarios;
pub mod server;
pub mod tls;

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyloop::{Runner, Stopped};
use anyloop_backends::LoopChoice;
use anyloop_curl::curl::easy::{Easy2, Handler, ReadError, WriteError};

/// Collects a response body; counts bytes written and its own drop.
pub struct Sink {
    pub data: Vec<u8>,
    /// Body bytes written so far (shared with the test, which may not own the handle).
    pub written: Rc<Cell<usize>>,
    /// Incremented when this handler is dropped (leak checks).
    pub drops: Rc<Cell<usize>>,
}

impl Handler for Sink {
    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        self.data.extend_from_slice(data);
        self.written.set(self.written.get() + data.len());
        Ok(data.len())
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sink({} bytes)", self.data.len())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

/// Counters shared by the handlers of one test.
#[derive(Clone, Default)]
pub struct Counters {
    pub written: Rc<Cell<usize>>,
    pub drops: Rc<Cell<usize>>,
}

impl Counters {
    /// An easy handle for `url` whose handler counts into these counters.
    pub fn easy(&self, url: &str) -> Easy2<Sink> {
        let mut easy = Easy2::new(Sink {
            data: Vec::new(),
            written: self.written.clone(),
            drops: self.drops.clone(),
        });
        easy.url(url).expect("url");
        easy
    }
}

/// An easy handle for `url` with a fresh sink.
pub fn easy(url: &str) -> Easy2<Sink> {
    Counters::default().easy(url)
}

/// Sends a body (through libcurl's read callback) and keeps the answer.
pub struct Upload {
    pub body: Vec<u8>,
    pub sent: usize,
    pub answer: Vec<u8>,
}

impl Handler for Upload {
    fn read(&mut self, into: &mut [u8]) -> Result<usize, ReadError> {
        let n = into.len().min(self.body.len() - self.sent);
        into[..n].copy_from_slice(&self.body[self.sent..self.sent + n]);
        self.sent += n;
        Ok(n)
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        self.answer.extend_from_slice(data);
        Ok(data.len())
    }
}

/// Aborts the process when a test runs longer than its limit: no test hangs CI.
pub struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    pub fn new(test: &str, limit: Duration) -> Watchdog {
        let (done, wait) = mpsc::channel::<()>();
        let test = test.to_owned();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                eprintln!("WATCHDOG: {test} still running after {limit:?}: aborting");
                std::process::abort();
            }
        });
        Watchdog(Some(done))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            let _ = done.send(());
        }
    }
}

/// The chosen loop, owned by (and run on) this thread.
pub fn new_loop(choice: LoopChoice) -> Box<dyn Runner> {
    choice.create().expect("create the loop")
}

/// Runs the loop until `done()` or `limit`; says whether `done()` held.
pub fn run_until(lp: &mut dyn Runner, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    lp.run_until(Some(deadline), &mut done)
        .expect("run the loop")
        == Stopped::Done
}

/// Runs the loop until `done()` or `limit`, for a condition another thread makes true (the
/// test server's counters): nothing wakes the loop for it, so it iterates at least every
/// 10 ms.
pub fn run_until_seen(
    lp: &mut dyn Runner,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        lp.run_once(Some(Duration::from_millis(10)))
            .expect("run the loop");
    }
    done()
}

/// Runs the loop for `span`, whatever happens.
pub fn run_for(lp: &mut dyn Runner, span: Duration) {
    let deadline = Instant::now() + span;
    let stopped = lp
        .run_until(Some(deadline), &mut || false)
        .expect("run the loop");
    assert_eq!(stopped, Stopped::DeadlinePassed);
}

/// Runs `future` on the loop, at most `limit`.
pub fn block_on<F: Future>(lp: &mut dyn Runner, limit: Duration, future: F) -> F::Output {
    let handle = lp.handle();
    anyloop_async::block_on(lp, anyloop_async::timeout(&handle, limit, future))
        .expect("run the loop")
        .expect("the future did not resolve in time")
}

/// Runs the frees the loop still owes (a removal's free runs in a later iteration).
pub fn settle(lp: &mut dyn Runner) {
    lp.drain().expect("drain the loop's pending frees");
}

/// Nothing of the client is left on the loop.
pub fn assert_nothing_registered(lp: &mut dyn Runner, what: &str) {
    settle(lp);
    let stats = lp.stats();
    assert_eq!(
        (stats.watches, stats.timers, stats.pending_frees),
        (0, 0, 0),
        "{what}: left on the loop: {stats:?}"
    );
}
