//! Free probes and event logs: what scenarios capture in callbacks to observe the backend.
//!
//! A [`Token`] is moved into a callback closure; its `Drop` is therefore the callback's free,
//! and records how many times, on which thread, and whether it ran inside a vtable operation
//! (the kit's interposed loop sets a thread-local flag around every operation, see
//! [`crate::track::inside_op`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::track::inside_op;

/// One observed free.
#[derive(Debug, Clone)]
pub struct FreeRecord {
    /// The token's label.
    pub label: String,
    /// The thread the drop ran on.
    pub thread: ThreadId,
    /// True if the drop ran inside a vtable operation of the interposed loop
    /// ([R21](anyloop::contract#r21)).
    pub inside_op: bool,
    /// When it ran.
    pub at: Instant,
}

/// Counts the frees of every [`Token`] it made; shared by a scenario and its callbacks.
#[derive(Debug, Clone, Default)]
pub struct FreeProbe {
    inner: Arc<ProbeInner>,
}

#[derive(Debug, Default)]
struct ProbeInner {
    made: Mutex<Vec<String>>,
    frees: Log<FreeRecord>,
}

impl FreeProbe {
    /// A new, empty probe.
    pub fn new() -> FreeProbe {
        FreeProbe::default()
    }

    /// A token whose drop records a free under `label`.
    pub fn token(&self, label: impl Into<String>) -> Token {
        let label = label.into();
        lock(&self.inner.made).push(label.clone());
        Token {
            probe: self.inner.clone(),
            label,
        }
    }

    /// How many frees were recorded for `label`.
    pub fn count(&self, label: &str) -> usize {
        self.inner
            .frees
            .snapshot()
            .iter()
            .filter(|r| r.label == label)
            .count()
    }

    /// Every free recorded so far, in the order they ran.
    pub fn records(&self) -> Vec<FreeRecord> {
        self.inner.frees.snapshot()
    }

    /// Total frees recorded.
    pub fn total(&self) -> usize {
        self.inner.frees.len()
    }

    /// Waits until `label` was freed at least once; false on timeout.
    pub fn wait_freed(&self, label: &str, timeout: Duration) -> bool {
        self.inner
            .frees
            .wait_until(timeout, |v| v.iter().any(|r| r.label == label))
    }

    /// Waits until `n` frees in total were recorded; false on timeout.
    pub fn wait_total(&self, n: usize, timeout: Duration) -> bool {
        self.inner.frees.wait_until(timeout, |v| v.len() >= n)
    }

    /// Labels of tokens not freed exactly once, with their counts (empty means all good).
    pub fn not_freed_exactly_once(&self) -> Vec<(String, usize)> {
        let mut expected: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for label in lock(&self.inner.made).iter() {
            expected.entry(label.clone()).or_default().0 += 1;
        }
        for r in self.inner.frees.snapshot() {
            expected.entry(r.label).or_default().1 += 1;
        }
        expected
            .into_iter()
            .filter(|(_, (made, freed))| made != freed)
            .map(|(label, (_, freed))| (label, freed))
            .collect()
    }
}

/// A value whose drop is recorded by its [`FreeProbe`]; move it into a callback closure.
#[derive(Debug)]
pub struct Token {
    probe: Arc<ProbeInner>,
    label: String,
}

impl Token {
    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.probe.frees.push(FreeRecord {
            label: std::mem::take(&mut self.label),
            thread: thread::current().id(),
            inside_op: inside_op(),
            at: Instant::now(),
        });
    }
}

/// An append-only log with a condition variable: callbacks push, the test thread waits.
#[derive(Debug)]
pub struct Log<T> {
    items: Mutex<Vec<T>>,
    changed: Condvar,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log {
            items: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        }
    }
}

impl<T: Clone> Log<T> {
    /// A new, empty log.
    pub fn new() -> Log<T> {
        Log::default()
    }

    /// Appends an item and wakes waiters.
    pub fn push(&self, item: T) {
        lock(&self.items).push(item);
        self.changed.notify_all();
    }

    /// A copy of the items so far.
    pub fn snapshot(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// Number of items so far.
    pub fn len(&self) -> usize {
        lock(&self.items).len()
    }

    /// True when nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns every item.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *lock(&self.items))
    }

    /// Waits until `pred` holds for the items; false if `timeout` passed first.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[T]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut items = lock(&self.items);
        loop {
            if pred(&items) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            items = match self.changed.wait_timeout(items, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Waits until at least `n` items were logged; false on timeout.
    pub fn wait_len(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |v| v.len() >= n)
    }
}

/// Locks a mutex, ignoring poisoning (a failed scenario must not cascade into others).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
