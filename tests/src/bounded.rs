//! Bounded waits: every wait of the kit ends, and a wait that gives up says what it waited for.
//!
//! A scenario that waits for the backend to do something (run a callback, wake up, let a
//! helper thread's operation return) must fail, not hang, when the backend never does it: a
//! broken adapter (one that runs the engine only when its fd is readable, say) is then told
//! which step of which rule it missed. These replace `std::sync::Barrier` and
//! `JoinHandle::join` in the scenarios; each gives up after [`TIMEOUT`] (or the time given)
//! and names what it waited for, so the failure says what was expected and what happened.
//! The scenario-wide watchdog of [`run_scenario`](crate::run_scenario) is the last resort
//! behind them.

use std::any::Any;
use std::sync::{Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::driver::TIMEOUT;
use crate::probe::lock;

/// A one-way signal between two threads: one side [`open`](Self::open)s it, the other waits
/// for that, at most a bounded time. Share it in an `Arc`.
///
/// Two latches replace a two-party `Barrier` used as "the callback has started" / "the test
/// is done, let it return": unlike a barrier, neither side can wait forever.
#[derive(Debug, Default)]
pub struct Latch {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Latch {
    /// A closed latch.
    pub const fn new() -> Latch {
        Latch {
            open: Mutex::new(false),
            opened: Condvar::new(),
        }
    }

    /// Opens the latch (for good) and wakes every waiter.
    pub fn open(&self) {
        *lock(&self.open) = true;
        self.opened.notify_all();
    }

    /// True once [`open`](Self::open) ran.
    pub fn is_open(&self) -> bool {
        *lock(&self.open)
    }

    /// Waits until the latch is open, at most `timeout`; false if it stayed closed.
    ///
    /// For the side that must not panic (a callback on the loop thread: when the scenario's
    /// thread has failed meanwhile, the callback returns after `timeout` and the loop thread
    /// can end).
    pub fn wait_for(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut open = lock(&self.open);
        while !*open {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            open = match self.opened.wait_timeout(open, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// Waits until the latch is open, at most [`TIMEOUT`]; panics (failing the scenario) with
    /// `expected` if it stayed closed. Say in `expected` what should have opened it and which
    /// rule is at stake.
    #[track_caller]
    pub fn wait(&self, expected: &str) {
        if !self.wait_for(TIMEOUT) {
            panic!("{expected}: did not happen within {TIMEOUT:?}");
        }
    }
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// Joins `thread`, waiting at most [`TIMEOUT`]; returns what it returned.
///
/// Panics (failing the scenario) with `what` if the thread is still running then (it is left
/// detached: a thread blocked inside the backend cannot be stopped), or if it panicked
/// (with its message). Say in `what` what the thread does, and the rule at stake.
#[track_caller]
pub fn join<T>(thread: JoinHandle<T>, what: &str) -> T {
    let deadline = Instant::now() + TIMEOUT;
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            panic!(
                "{what}: the thread did not finish within {TIMEOUT:?} (blocked in the backend?)"
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
    match thread.join() {
        Ok(value) => value,
        Err(payload) => panic!("{what}: the thread panicked: {}", panic_message(&*payload)),
    }
}

/// Runs `f` on a new thread (a foreign thread of the loop) and returns its result, waiting at
/// most [`TIMEOUT`]; fails as [`join`] does.
#[track_caller]
pub fn on_other_thread<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    join(thread::spawn(f), what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_latch_opened_on_another_thread_ends_the_wait() {
        let latch = Arc::new(Latch::new());
        let l = latch.clone();
        let opener = thread::spawn(move || {
            thread::sleep(Duration::from_millis(10));
            l.open();
        });
        latch.wait("the other thread opens the latch");
        assert!(latch.is_open(), "an ended wait leaves the latch open");
        opener.join().expect("opener");
    }

    #[test]
    fn a_latch_never_opened_gives_up() {
        let latch = Latch::new();
        let start = Instant::now();
        assert!(
            !latch.wait_for(Duration::from_millis(30)),
            "a closed latch reported open"
        );
        assert!(
            start.elapsed() >= Duration::from_millis(30),
            "gave up before the time given"
        );
    }

    #[test]
    fn join_reports_the_threads_panic_with_what_it_did() {
        let failed = std::panic::catch_unwind(|| {
            on_other_thread("adding a watch from a foreign thread (R39)", || {
                panic!("boom")
            })
        });
        let message = panic_message(&*failed.expect_err("the panic was swallowed"));
        assert!(
            message.contains("adding a watch from a foreign thread (R39)")
                && message.contains("boom"),
            "the message lost what the thread did or its panic: {message}"
        );
    }
}
