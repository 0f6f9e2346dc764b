//! What the async battery's scenarios share: the loop of each backend, a watchdog, counting
//! wakers, socket pairs.

#![allow(dead_code)]

use std::future::Future;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use anyloop::{LoopStats, Runner};
use anyloop_backends::LoopChoice;

/// How long one scenario may take on one backend before the watchdog calls it a hang.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// A generous bound for a single wait inside a scenario.
pub const LONG: Duration = Duration::from_secs(10);

/// Runs `scenario` once per backend this build includes, each on a fresh thread that creates
/// its loop there, under a watchdog: a scenario that does not finish in [`WATCHDOG`] fails the
/// test instead of hanging it.
pub fn on_every_loop(name: &str, scenario: fn(LoopChoice)) {
    let built: Vec<LoopChoice> = LoopChoice::built().collect();
    assert!(!built.is_empty());
    for choice in built {
        watchdog(&format!("{name} on {choice}"), move || scenario(choice));
    }
}

/// Runs `f` on its own thread and waits at most [`WATCHDOG`] for it.
pub fn watchdog(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            f();
            let _ = done_tx.send(());
        })
        .expect("spawn the scenario thread");
    match done_rx.recv_timeout(WATCHDOG) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no result within {WATCHDOG:?}: hung")
        }
    }
}

/// Creates the chosen loop on this thread.
pub fn create(choice: LoopChoice) -> Box<dyn Runner> {
    choice
        .create()
        .unwrap_or_else(|err| panic!("creating the {choice} loop: {err}"))
}

/// A waker that counts its wakes (from any thread).
#[derive(Default)]
pub struct CountingWaker {
    wakes: AtomicUsize,
}

impl CountingWaker {
    pub fn new() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        (counter, waker)
    }

    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `future` once with `waker`.
pub fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// A connected pair of non-blocking Unix stream sockets.
pub fn socket_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("non-blocking");
    b.set_nonblocking(true).expect("non-blocking");
    (a, b)
}

/// Iterates without blocking for long until `done()` or [`LONG`] passed.
pub fn iterate_until(lp: &mut dyn Runner, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + LONG;
    lp.run_until(Some(deadline), &mut done).expect("run_until") == anyloop::Stopped::Done
}

/// Runs a few short iterations (so pending frees and due timers are done).
pub fn settle(lp: &mut dyn Runner, iterations: usize) {
    for _ in 0..iterations {
        lp.run_once(Some(Duration::from_millis(2)))
            .expect("run_once");
    }
}

/// Watches and timers only (iterations and frees move).
pub fn registrations(stats: LoopStats) -> (usize, usize) {
    (stats.watches, stats.timers)
}
