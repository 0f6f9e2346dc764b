//! W4 ping-pong over two AF_UNIX stream socketpairs, in one thread (`w4()` of the C peers'
//! harness).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};

use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

use crate::contender::Contender;
use crate::measure::{median, Measure, Params};
use crate::sys::{now_ns, read1, write1};

/// Where the echo callback writes (sp2[0]) and where the back callback writes (sp1[0]).
static TO_BACK: AtomicI32 = AtomicI32::new(-1);
static TO_ECHO: AtomicI32 = AtomicI32::new(-1);
/// Round trips done and wanted (single writer: the loop thread).
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(0);

/// On sp1[1]: read the byte, echo it into sp2[0].
fn echo(fd: RawFd) {
    read1(fd);
    write1(TO_BACK.load(Relaxed));
}

/// On sp2[1]: a round trip is complete; start the next one unless done.
fn back(fd: RawFd) {
    read1(fd);
    let done = ROUND_TRIPS.load(Relaxed) + 1;
    ROUND_TRIPS.store(done, Relaxed);
    if done < TARGET.load(Relaxed) {
        write1(TO_ECHO.load(Relaxed));
    }
}

pub fn run<C: Contender>(p: &Params) -> Measure {
    let pair = || {
        socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .expect("socketpair")
    };
    // Declared before the contender, so they close after it.
    let (sp1, sp2) = (pair(), pair());
    TO_ECHO.store(sp1.0.as_raw_fd(), Relaxed);
    TO_BACK.store(sp2.0.as_raw_fd(), Relaxed);
    let mut c = C::make();
    c.watch_add(sp1.1.as_raw_fd(), echo);
    c.watch_add(sp2.1.as_raw_fd(), back);

    let mut reps = Vec::with_capacity(p.w4_reps);
    let mut total = 0;
    // Round -1 is the warm-up (K/10 round trips).
    for r in -1..p.w4_reps as i64 {
        let n = if r < 0 { p.w4_k / 10 } else { p.w4_k };
        ROUND_TRIPS.store(0, Relaxed);
        TARGET.store(n, Relaxed);
        let t0 = now_ns();
        write1(TO_ECHO.load(Relaxed));
        while ROUND_TRIPS.load(Relaxed) < n {
            c.run_once();
        }
        let t1 = now_ns();
        total += n;
        if r >= 0 {
            reps.push((t1 - t0) as f64 / n as f64);
        }
    }
    // Read by `tests/benches/syscalls.sh`, which counts kernel calls per round trip.
    eprintln!("  W4: {total} round trips in all (warm-up included)");
    Measure::new("W4", p.w4_k, median(&reps))
}
