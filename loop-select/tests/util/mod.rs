//! Helpers shared by the integration tests: pipes, free counters, and running every test
//! against every poller.
#![allow(dead_code)]

use anyloop::Runner;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyloop_select::{PollerKind, SelectLoop};

pub const POLLERS: [PollerKind; 3] = [PollerKind::Epoll, PollerKind::Mio, PollerKind::Poll];

/// Generous bound for anything that should happen "promptly"; only ever fails a test.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

impl Pipe {
    pub fn new() -> Pipe {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
        )
        .expect("pipe");
        Pipe { read, write }
    }
    pub fn rfd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
    pub fn put(&self, n: usize) {
        let bytes = vec![b'x'; n];
        assert_eq!(rustix::io::write(&self.write, &bytes).expect("write"), n);
    }
}

/// Reads one byte from `fd` (non-blocking); returns whether one was there.
pub fn take_one(fd: RawFd) -> bool {
    let mut buf = [0u8; 1];
    // SAFETY: test helper; the fd is open for the duration of the test.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    matches!(rustix::io::read(fd, &mut buf), Ok(1))
}

/// Counts drops of the values it hands out: put one in a closure to observe its free.
#[derive(Clone, Default)]
pub struct FreeLog {
    log: Arc<Mutex<Vec<&'static str>>>,
}

pub struct Probe {
    name: &'static str,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.log.lock().unwrap().push(self.name);
    }
}

impl FreeLog {
    pub fn probe(&self, name: &'static str) -> Probe {
        Probe {
            name,
            log: self.log.clone(),
        }
    }
    pub fn freed(&self) -> Vec<&'static str> {
        self.log.lock().unwrap().clone()
    }
    pub fn count(&self, name: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|n| **n == name)
            .count()
    }
}

#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn new_loop(poller: PollerKind) -> SelectLoop {
    SelectLoop::with_poller(poller).expect("loop")
}

/// Runs iterations (each at most 10 ms) until `done` or PATIENCE runs out.
pub fn run_until(lp: &mut SelectLoop, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "condition not reached in time");
        lp.run_once(Some(Duration::from_millis(10)))
            .expect("run_once");
    }
}

/// Runs iterations for `time`, returning how many there were.
pub fn run_for(lp: &mut SelectLoop, time: Duration) -> u64 {
    let before = lp.stats().iterations;
    let start = Instant::now();
    while start.elapsed() < time {
        lp.run_once(Some(Duration::from_millis(20)))
            .expect("run_once");
    }
    lp.stats().iterations - before
}
