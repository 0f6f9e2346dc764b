//! W7, interest toggling as libdbus and libcurl do it: one AF_UNIX stream socketpair in one
//! thread. The client's watch asks for READABLE; to send, it enables WRITABLE
//! (READABLE|WRITABLE), waits until the loop reports the socket writable, writes its one-byte
//! message there, disables WRITABLE again (READABLE), and waits for the reply as READABLE;
//! reading the reply, it enables WRITABLE for the next message. The server end is a plain
//! READABLE watch that reads the message and writes the reply at once (a server whose send
//! queue is empty writes without waiting). Each repeat's first message is written by the
//! driver (a send on an idle socket); every later one waits for WRITABLE.
//!
//! Per round trip: two interest changes, each in its own iteration (they never cancel out),
//! three iterations (client writable; server readable; client readable), two reads and two
//! writes. Each contender changes the interest its own way (see [`Step`]): the floor calls
//! `epoll_ctl(MOD)`, an anyloop backend `update_watch` through the vtable, raw GLib creates
//! and destroys the write direction's fd source (dbus-glib's mapping of libdbus's write
//! watch), raw calloop re-registers its source, and a raw tokio task awaits the other
//! readiness (its fd is registered for both once; tokio's cached write readiness lets it
//! write without asking the kernel).
//!
//! What it does not model: the timer re-arms libdbus and libcurl make beside their interest
//! changes (W7c has one per side; W2 measures timer operations), messages larger than a byte,
//! a write that would block, or a peer in another thread.
//!
//! Reported: ns per round trip. Kernel calls per round trip: `tests/benches/syscalls.sh W7`;
//! `W7_ROUND_TRIPS=K` in the environment shrinks K for that purpose.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use anyloop::IoEvents;
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

use crate::contender::{Contender, Step};
use crate::measure::{median, Measure, Params};
use crate::sys::{now_ns, read1, write1};
use crate::w7c::round_trips;

/// Round trips done and wanted (single writer: the loop thread).
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(0);

/// The client: writes only when told WRITABLE, then waits for the reply; a reply completes a
/// round trip and, unless the repeat is done, queues the next message (enables WRITABLE).
fn client(fd: RawFd, events: IoEvents) -> Step {
    if events.contains(IoEvents::WRITABLE) {
        write1(fd);
        return Step {
            interest: IoEvents::READABLE,
            drained: false,
        };
    }
    if !events.contains(IoEvents::READABLE) {
        panic!("W7: the client (fd {fd}) was told {events:?}");
    }
    read1(fd);
    let done = ROUND_TRIPS.load(Relaxed) + 1;
    ROUND_TRIPS.store(done, Relaxed);
    let interest = if done < TARGET.load(Relaxed) {
        IoEvents::READABLE | IoEvents::WRITABLE
    } else {
        IoEvents::READABLE
    };
    // The one byte in flight was read: the socket is empty again.
    Step {
        interest,
        drained: true,
    }
}

/// The server: reads the message and replies at once.
fn server(fd: RawFd, events: IoEvents) -> Step {
    if !events.contains(IoEvents::READABLE) {
        panic!("W7: the server (fd {fd}) was told {events:?}");
    }
    read1(fd);
    write1(fd);
    Step {
        interest: IoEvents::READABLE,
        drained: true,
    }
}

pub fn run<C: Contender>(p: &Params) -> Vec<Measure> {
    let k = round_trips(p);
    // Declared before the contender, so they close after it.
    let (client_end, server_end) = socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .expect("socketpair");
    let mut c = C::make();
    c.io_watch_add(client_end.as_raw_fd(), IoEvents::READABLE, client);
    c.io_watch_add(server_end.as_raw_fd(), IoEvents::READABLE, server);

    let mut reps = Vec::with_capacity(p.w4_reps);
    let mut total = 0;
    // Round -1 is the warm-up (K/10 round trips).
    for r in -1..p.w4_reps as i64 {
        let n = if r < 0 { (k / 10).max(1) } else { k };
        ROUND_TRIPS.store(0, Relaxed);
        TARGET.store(n, Relaxed);
        let t0 = now_ns();
        write1(client_end.as_raw_fd());
        while ROUND_TRIPS.load(Relaxed) < n {
            c.run_once();
        }
        let t1 = now_ns();
        total += n;
        if r >= 0 {
            reps.push((t1 - t0) as f64 / n as f64);
        }
    }
    drop(c);
    // Read by `tests/benches/syscalls.sh`, which counts kernel calls per round trip.
    eprintln!("  W7: {total} round trips in all (warm-up included)");
    vec![Measure::new("W7", k, median(&reps))]
}
