//! The contender abstraction: the table of operations of the C peers' harness (`peer_ops`),
//! so W1–W5, W7 and W8 run identical workload code over every backend (W5 only where there is a
//! registry).
//!
//! A new backend is either one [`Contender`] impl (a raw substrate such as glib-rs or calloop
//! used directly) or, for an anyloop backend, one marker type naming its
//! [`LoopChoice`](anyloop_backends::LoopChoice) ([`Choice`](crate::backends::Choice)): the
//! generic adapter maps the operations onto the vtable and drives the loop through
//! `anyloop::Runner`. Either way it is then one line in `backends()` (`main`).

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Sender;
use std::time::Duration;

use anyloop::IoEvents;

use crate::sys::now_ns;

/// What an I/O callback (W7, W8) answers after it ran: the interest it wants from now on and
/// whether its I/O emptied what it was told was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The watch's interest from now on. A change reaches the contender the way its own users
    /// change one: `epoll_ctl(MOD)` on the floor, `update_watch` through the vtable on anyloop,
    /// a GLib fd source created or destroyed per direction, a calloop re-registration, the
    /// readiness a tokio task awaits next.
    pub interest: IoEvents,
    /// The callback's read or write was short or would block (or read a whole message that
    /// was all there was): tokio-raw then clears tokio's readiness for what it was told, as
    /// tokio's own streams do after a short read or write. The level-triggered contenders
    /// ignore it: they ask the kernel again.
    pub drained: bool,
}

/// One event loop under test, driven on the thread that created it.
///
/// Every callback a contender is given must run through the loop's own dispatch (one call
/// from the loop into the body, as the C peers' `fd_fn`).
pub trait Contender: Sized {
    /// What `timer_add` returns: a node, an id...
    type Timer: Copy;

    /// W5: whether [`event_loop`](Self::event_loop) gives an anyloop `Loop` (the registry
    /// workload runs only on anyloop backends).
    const HAS_REGISTRY: bool = false;

    /// W5: the anyloop `Loop` of this contender, for a registry.
    fn event_loop(&self) -> Option<anyloop::Loop> {
        None
    }

    /// Creates the loop on the calling thread (W3 calls it on the loop thread: some loops,
    /// calloop's, cannot move between threads).
    fn make() -> Self;

    /// A persistent level-triggered read watch; while `fd` is readable, calls `cb(fd)`.
    fn watch_add(&mut self, fd: RawFd, cb: impl FnMut(RawFd) + Send + 'static);

    /// W7, W8: a persistent level-triggered watch on `fd` for `interest` (`READABLE`,
    /// `WRITABLE` or both) whose callback is told what is ready (a subset of its interest,
    /// plus `ERROR` and `HANGUP`) and answers with a [`Step`]: the interest it wants from now
    /// on, which the contender applies after the call (the library's interest change, e.g.
    /// libdbus enabling its write watch), and whether its I/O drained the fd.
    fn io_watch_add(
        &mut self,
        fd: RawFd,
        interest: IoEvents,
        cb: impl FnMut(RawFd, IoEvents) -> Step + Send + 'static,
    );

    /// One blocking loop iteration.
    fn run_once(&mut self);

    /// W2: a timer that must not fire during the test, whose callback is `cb`.
    fn timer_add(&mut self, after: Duration, cb: fn()) -> Self::Timer;
    /// W2: the native re-arm (restarts the countdown with a new interval).
    fn timer_update(&mut self, timer: Self::Timer, after: Duration);
    /// W2: removal.
    fn timer_remove(&mut self, timer: Self::Timer);
    /// W2: runs the loop until the state of every removed timer is really dropped (the
    /// "deferred drain"). Nothing to do for a loop that frees inside remove.
    fn timer_drain(&mut self) {}

    /// W2: arms a zero-interval one-shot whose callback calls [`oneshot_fired`] once and
    /// releases the timer (it removes or disables itself).
    fn oneshot0(&mut self);

    /// W6, in a fresh child process: resident bytes per registration of `kind` for `n`
    /// registrations (`None`: not measured on this contender).
    fn w6(_kind: &str, _n: usize) -> Option<f64> {
        None
    }

    /// W7c: the ping-pong whose interest changes cancel out within each callback, through
    /// the contender's own interest-change calls (empty: not measured on this contender; the
    /// raw substrates have no call to make that could cancel out).
    fn w7c(_p: &crate::measure::Params) -> Vec<crate::measure::Measure> {
        Vec::new()
    }

    /// W3: names of the cross-thread wake-up mechanisms this contender offers.
    fn xt_variants() -> &'static [&'static str];
    /// W3, on the loop thread before the loop runs: prepares `variant` and returns the poster
    /// the other thread calls; each post makes the loop call [`xt_fired`] once, promptly.
    fn xt_setup(&mut self, variant: usize) -> Box<dyn FnMut() + Send>;
}

// --- the shared callback bodies -----------------------------------------------------------
//
// Single-writer counters: only the loop thread bumps them, with a plain load + store (what the
// C harness' `volatile long g_fired++` compiles to), never a locked read-modify-write.

/// W1 callbacks and W2 firings seen so far.
static FIRED: AtomicU64 = AtomicU64::new(0);

/// Callbacks counted so far.
#[inline]
pub fn fired() -> u64 {
    FIRED.load(Relaxed)
}

#[inline]
fn bump() {
    FIRED.store(FIRED.load(Relaxed) + 1, Relaxed);
}

/// The W1 callback body: read the byte, count the event.
pub fn w1_read_cb(fd: RawFd) {
    crate::sys::read1(fd);
    bump();
}

/// The W2 one-shot body.
pub fn oneshot_fired() {
    bump();
}

/// The body of W2 churn timers, which never fire.
pub fn never_fires() {
    panic!("a W2 churn timer (60–160 s) fired during the test");
}

/// Runs `c` until `target` callbacks have been counted (`run_until` of the C peers' harness).
#[inline]
pub fn run_until<C: Contender>(c: &mut C, target: u64) {
    while fired() < target {
        c.run_once();
    }
}

thread_local! {
    /// W3: where the loop thread reports t1 (set by the W3 driver on the loop thread).
    static XT_TX: RefCell<Option<Sender<u64>>> = const { RefCell::new(None) };
}

/// Installs the W3 reply channel on the calling (loop) thread.
pub fn xt_install(tx: Sender<u64>) {
    XT_TX.with(|slot| *slot.borrow_mut() = Some(tx));
}

/// The W3 callback body: takes t1 first, then hands it to the waiting sender.
pub fn xt_fired() {
    let t1 = now_ns();
    XT_TX.with(|slot| {
        if let Some(tx) = slot.borrow().as_ref() {
            let _ = tx.send(t1);
        }
    });
}
