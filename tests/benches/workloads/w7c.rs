//! W7c, interest changes that cancel out: the W4 ping-pong (two AF_UNIX socketpairs, one
//! thread), where each side's callback, after reading its byte, sets its own watch's interest
//! to READABLE|WRITABLE, re-arms its own timer (`Once(30 s)`, which never fires), sets the
//! interest back to READABLE, then writes to the other side, all within the one callback.
//!
//! What it models: a library that flips its interest and re-arms its timeout around a send
//! that succeeds at once (libdbus's READABLE → READABLE|WRITABLE → READABLE when the write
//! does not block), i.e. the cost of interest changes the loop can coalesce. What it does not
//! model: a watch that really waits for WRITABLE (that is W7), nor any raw substrate (they
//! have no call that could cancel out; it runs on the floor and the anyloop backends).
//!
//! Reported: ns per round trip. The floor calls `epoll_ctl(MOD)` on every interest change
//! (four per round trip) and re-keys a node of its timer heap (no syscall). Kernel calls per
//! round trip are counted outside the benchmark by `tests/benches/syscalls.sh W7c` (strace);
//! `W7_ROUND_TRIPS=K` in the environment shrinks K for that purpose.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyloop::{IoEvents, Schedule, TimerId};
use rustix::event::epoll;
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

use crate::anyloop_adapter::{with_current, Anyloop};
use crate::backends::Choice;
use crate::contender::Contender;
use crate::floor::Heap;
use crate::measure::{median, Measure, Params};
use crate::sys::{borrow, now_ns, read1, write1};

/// The re-armed timeout: never fires during the test.
const REARM: Duration = Duration::from_secs(30);

/// Where side 0 (echo) writes and where side 1 (back) writes.
static WRITE_TO: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(0);

/// After the toggle: side 0 echoes; side 1 completes a round trip and starts the next one.
fn after_toggle(side: usize) {
    if side == 1 {
        let done = ROUND_TRIPS.load(Relaxed) + 1;
        ROUND_TRIPS.store(done, Relaxed);
        if done >= TARGET.load(Relaxed) {
            return;
        }
    }
    write1(WRITE_TO[side].load(Relaxed));
}

fn pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .expect("socketpair")
}

/// K round trips per repeat (`W7_ROUND_TRIPS` overrides it), for W7 and W7c.
pub(crate) fn round_trips(p: &Params) -> u64 {
    std::env::var("W7_ROUND_TRIPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(p.w4_k)
}

/// The measurement driver shared by the floor and the anyloop backends: `iterate` runs one
/// loop iteration. Sets up `WRITE_TO` from the two pairs first.
fn drive(p: &Params, k: u64, sp1: &(OwnedFd, OwnedFd), mut iterate: impl FnMut()) -> Measure {
    let mut reps = Vec::with_capacity(p.w4_reps);
    let mut total = 0;
    for r in -1..p.w4_reps as i64 {
        let n = if r < 0 { (k / 10).max(1) } else { k };
        ROUND_TRIPS.store(0, Relaxed);
        TARGET.store(n, Relaxed);
        let t0 = now_ns();
        write1(sp1.0.as_raw_fd());
        while ROUND_TRIPS.load(Relaxed) < n {
            iterate();
        }
        let t1 = now_ns();
        total += n;
        if r >= 0 {
            reps.push((t1 - t0) as f64 / n as f64);
        }
    }
    eprintln!("  W7c: {total} round trips in all (warm-up included)");
    Measure::new("W7c", k, median(&reps))
}

/// The floor: a raw level-triggered epoll loop doing the same work, `epoll_ctl(MOD)` on every
/// interest change, its timer re-arm a heap re-key.
pub fn floor(p: &Params) -> Vec<Measure> {
    let k = round_trips(p);
    let (sp1, sp2) = (pair(), pair());
    WRITE_TO[0].store(sp2.0.as_raw_fd(), Relaxed);
    WRITE_TO[1].store(sp1.0.as_raw_fd(), Relaxed);
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll_create1");
    let fds = [sp1.1.as_raw_fd(), sp2.1.as_raw_fd()];
    for (key, fd) in fds.iter().enumerate() {
        epoll::add(
            &ep,
            borrow(*fd),
            epoll::EventData::new_u64(key as u64),
            epoll::EventFlags::IN,
        )
        .expect("epoll_ctl ADD");
    }
    let mut heap = Heap::default();
    let deadline = || now_ns() + REARM.as_nanos() as u64;
    let timers = [
        heap.insert(deadline(), || {}, true),
        heap.insert(deadline(), || {}, true),
    ];
    let mut events: Vec<epoll::Event> = Vec::with_capacity(16);
    let m = drive(p, k, &sp1, || {
        let timeout = heap.earliest().map(|expiry| {
            let wait = expiry.saturating_sub(now_ns());
            rustix::time::Timespec {
                tv_sec: (wait / 1_000_000_000) as i64,
                tv_nsec: (wait % 1_000_000_000) as _,
            }
        });
        events.clear();
        loop {
            match epoll::wait(
                &ep,
                rustix::buffer::spare_capacity(&mut events),
                timeout.as_ref(),
            ) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => panic!("epoll_wait: {err}"),
            }
        }
        for event in &events {
            let side = event.data.u64() as usize;
            let fd = fds[side];
            read1(fd);
            let data = epoll::EventData::new_u64(side as u64);
            epoll::modify(
                &ep,
                borrow(fd),
                data,
                epoll::EventFlags::IN | epoll::EventFlags::OUT,
            )
            .expect("epoll_ctl MOD");
            heap.rekey(timers[side], deadline());
            epoll::modify(&ep, borrow(fd), data, epoll::EventFlags::IN).expect("epoll_ctl MOD");
            after_toggle(side);
        }
        // The timers are 30 s away: nothing to expire.
    });
    drop(ep);
    vec![m]
}

/// An anyloop backend: the same work through the vtable (`update_watch` twice and
/// `update_timer` once per side per round trip).
pub fn anyloop<C: Choice>(p: &Params) -> Vec<Measure> {
    let k = round_trips(p);
    let (sp1, sp2) = (pair(), pair());
    WRITE_TO[0].store(sp2.0.as_raw_fd(), Relaxed);
    WRITE_TO[1].store(sp1.0.as_raw_fd(), Relaxed);
    let mut c = Anyloop::<C>::make();
    let lp = c.event_loop().expect("anyloop loop");
    for (side, fd) in [sp1.1.as_raw_fd(), sp2.1.as_raw_fd()]
        .into_iter()
        .enumerate()
    {
        let timer: TimerId = lp
            .add_timer(Schedule::Once(REARM), |_id| {})
            .map_err(anyloop::Error::from)
            .expect("add_timer");
        lp.add_watch(fd, IoEvents::READABLE, move |id, fd: RawFd, _events| {
            read1(fd);
            with_current(|lp| {
                lp.update_watch(id, IoEvents::READABLE | IoEvents::WRITABLE)
                    .expect("update_watch RW");
                lp.update_timer(timer, Schedule::Once(REARM))
                    .expect("update_timer");
                lp.update_watch(id, IoEvents::READABLE)
                    .expect("update_watch R");
            });
            after_toggle(side);
        })
        .map_err(anyloop::Error::from)
        .expect("add_watch");
    }
    drop(lp);
    let m = drive(p, k, &sp1, || c.run_once());
    drop(c);
    vec![m]
}
