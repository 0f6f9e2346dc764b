//! Helpers shared by the GLib backend's integration tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The generous bound of every wait (never a speed assertion).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A connected socket pair: write on `tx`, watch `rx`.
pub struct Pair {
    pub tx: UnixStream,
    pub rx: UnixStream,
}

impl Pair {
    pub fn new() -> Pair {
        let (tx, rx) = UnixStream::pair().expect("socketpair");
        rx.set_nonblocking(true).expect("nonblocking");
        Pair { tx, rx }
    }

    pub fn send(&self, n: usize) {
        (&self.tx).write_all(&vec![b'x'; n]).expect("write");
    }
}

/// Reads one byte from a non-blocking fd owned elsewhere; false on EAGAIN or error.
pub fn read_one(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!((&*stream).read(&mut byte), Ok(1))
}

/// Counts drops of the value it is captured in (a callback's "free").
#[derive(Debug, Clone, Default)]
pub struct Drops(Arc<AtomicUsize>, Arc<Mutex<Vec<std::thread::ThreadId>>>);

impl Drops {
    pub fn token(&self) -> DropToken {
        DropToken(self.clone())
    }
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    pub fn threads(&self) -> Vec<std::thread::ThreadId> {
        self.1.lock().unwrap().clone()
    }
}

/// Bumps its [`Drops`] when dropped.
#[derive(Debug)]
pub struct DropToken(Drops);

impl Drop for DropToken {
    fn drop(&mut self) {
        (self.0).0.fetch_add(1, Ordering::SeqCst);
        (self.0).1.lock().unwrap().push(std::thread::current().id());
    }
}

/// Iterates `context` (non-blocking steps with short sleeps) until `done` or [`TIMEOUT`].
pub fn iterate_until(context: &glib::MainContext, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        if !context.iteration(false) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    true
}

/// CPU time used by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
