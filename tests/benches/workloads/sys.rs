//! OS helpers shared by every workload: the clock, the one-fd pipes, raw 1-byte I/O, the
//! fd limit, and the shuffle that gives every contender the same order.

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{Mode, OFlags};

/// CLOCK_MONOTONIC in ns: the clock of the C peers (vDSO, about 25 ns here). Comparable
/// across threads, which W3 needs (t0 on the sender, t1 on the loop thread).
#[inline]
pub fn now_ns() -> u64 {
    // std's clock (libc's vDSO call): rustix's own vDSO parser crashes under valgrind, which
    // this benchmark is also run under to count instructions.
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    base.elapsed().as_nanos() as u64
}

/// Raises the soft fd limit to the hard one (20000 here; it cannot be raised further), as
/// `raise_nofile` in the C peers' harness.
pub fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    // Best effort: at worst N=10000 fails loudly when opening pipes.
    let _ = setrlimit(Resource::Nofile, limit);
}

/// A kernel pipe held by one `O_RDWR` descriptor, exactly as `rdwr_pipe()` in the C peers' harness:
/// `pipe2`, reopen the read end through `/proc/self/fd/N`, close both original ends. Same
/// pipefs code as a classic pipe, one fd instead of two (N = 10000 fits under the hard limit
/// of 20000), and it never reports HUP because it is its own writer.
pub fn rdwr_pipe() -> OwnedFd {
    use std::os::fd::AsRawFd;
    let (rd, _wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe2");
    let path = format!("/proc/self/fd/{}", rd.as_raw_fd());
    rustix::fs::open(
        path.as_str(),
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open /proc/self/fd (rdwr pipe)")
    // `rd` and `_wr` close here.
}

/// Borrows an fd the harness keeps open for the whole workload.
///
/// Every fd handed to a callback belongs to a workload driver that drops the contender (and
/// so every watch) before it closes its fds; callbacks only run inside `run_once`.
#[inline]
pub fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: see above: the descriptor stays open for as long as any callback can run with it.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Reads exactly one byte or aborts the benchmark (a miscount would make the figures lie).
#[inline]
pub fn read1(fd: RawFd) {
    let mut byte = [0u8; 1];
    match rustix::io::read(borrow(fd), &mut byte) {
        Ok(1) => {}
        other => panic!("read of 1 byte from fd {fd}: {other:?}"),
    }
}

/// Writes exactly one byte or aborts the benchmark.
#[inline]
pub fn write1(fd: RawFd) {
    match rustix::io::write(borrow(fd), b"x") {
        Ok(1) => {}
        other => panic!("write of 1 byte to fd {fd}: {other:?}"),
    }
}

/// Drains an eventfd (8 bytes).
#[inline]
pub fn read_eventfd(fd: RawFd) {
    let mut buf = [0u8; 8];
    match rustix::io::read(borrow(fd), &mut buf) {
        Ok(8) => {}
        other => panic!("eventfd read on fd {fd}: {other:?}"),
    }
}

/// Bumps an eventfd by one.
#[inline]
pub fn write_eventfd(fd: RawFd) {
    match rustix::io::write(borrow(fd), &1u64.to_ne_bytes()) {
        Ok(8) => {}
        other => panic!("eventfd write on fd {fd}: {other:?}"),
    }
}

/// The xorshift generator of the C peers' harness, so orders are reproducible and identical for
/// every contender (each workload starts from a fresh generator).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        Rng(0x9E37_79B9_7F4A_7C15)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Fisher–Yates, the same loop as `shuffle_int`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// The 1-, 5- and 15-minute load averages, to show how busy the shared machine was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU time consumed by the calling thread so far, in ns (W8: the loop thread's own work,
/// whatever the peer thread and other processes do meanwhile): the kit's clock, read through
/// libc (rustix's vDSO parser crashes under valgrind, see [`now_ns`]).
pub fn thread_cpu_ns() -> u64 {
    u64::try_from(anyloop_conformance::driver::thread_cpu_time().as_nanos()).unwrap_or(u64::MAX)
}
