//! W8, streaming: what a protocol library does on a bulk transfer. S AF_UNIX stream
//! socketpairs (S = 1 or 16); on the loop's end of each, one level-triggered watch whose
//! callback makes one 16 KiB `read` (receive) or `write` (send) per call, while the socket
//! stays ready over many iterations. The peer is one blocking thread: for receive, a writer
//! that keeps every socket's buffer full (64 KiB writes, round robin); for send, a reader that
//! keeps draining them (64 KiB reads, round robin, until end of file).
//!
//! Bytes are checked at both ends: every stream is a fixed pattern with a period of 65 521
//! bytes (a prime, so a lost or repeated chunk shows), at a different phase on each socket
//! (so a callback handed another socket's fd shows); the reading end compares every byte it
//! reads with the pattern at its position, and the counts per socket must agree at both ends.
//! Any difference aborts the benchmark.
//!
//! Figures: wall ns per callback and MB/s (from the first callback of a repeat to the one that
//! reaches its byte count), and the loop thread's own CPU ns per callback (`*-cpu`), which
//! leaves out the time the loop slept because the peer was late (a loop can only be as fast as
//! its peer: wall time near CPU time means the socket stayed ready).
//!
//! What it does not model: TCP (no protocol stack, no congestion or delayed acks: AF_UNIX
//! copies straight between buffers), a library that reads until `EAGAIN` in one callback, or
//! one that mixes timers or interest changes into the transfer. The peer runs on the other
//! core of a 2-core machine: on a busy machine the peer is late more often, which the `-cpu`
//! rows show apart.
//!
//! Kernel calls per callback: `tests/benches/syscalls.sh W8` (the peer uses `sendto` and
//! `recvfrom`, so the payload `read`/`write` counted there are the loop's own); `W8_BYTES=B` in
//! the environment sets the bytes per repeat.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use anyloop::IoEvents;
use rustix::io::Errno;
use rustix::net::{
    recv, send, shutdown, socketpair, sockopt, AddressFamily, RecvFlags, SendFlags, Shutdown,
    SocketFlags, SocketType,
};

use crate::contender::{Contender, Step};
use crate::measure::{median, Measure, Params};
use crate::sys::{borrow, now_ns, thread_cpu_ns};

/// One callback's read or write.
pub const CHUNK: usize = 16 * 1024;
/// The peer thread's reads and writes.
const PEER_IO: usize = 64 * 1024;
/// The pattern's period (a prime).
const PERIOD: usize = 65_521;
/// The phase step between sockets' streams.
const PHASE: u64 = 4_099;
/// The most sockets of a W8 job.
pub const MAX_SOCKETS: usize = 16;
/// The send buffer asked for on the writing end (the kernel caps it at twice
/// `net.core.wmem_max`): more bytes in flight, so the reading end finds the socket ready even
/// when the writer is briefly descheduled.
const SNDBUF: usize = 4 << 20;

/// Bytes moved by the loop's callbacks, and the callbacks (single writer: the loop thread).
static BYTES: AtomicU64 = AtomicU64::new(0);
static CALLBACKS: AtomicU64 = AtomicU64::new(0);
/// Callbacks whose read or write would have blocked (a level-triggered loop makes none).
static WOULD_BLOCK: AtomicU64 = AtomicU64::new(0);
/// Send: the bytes the loop may write in all.
static LIMIT: AtomicU64 = AtomicU64::new(0);
/// Bytes moved per socket by the loop's callbacks.
static POSITION: [AtomicU64; MAX_SOCKETS] = [const { AtomicU64::new(0) }; MAX_SOCKETS];

#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed) + by, Relaxed);
}

/// The pattern, one period plus the longest read or write (so every slice is contiguous).
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let period: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        (0..PERIOD + PEER_IO).map(|i| period[i % PERIOD]).collect()
    })
}

/// The `len` bytes of socket `socket`'s stream at position `pos`.
#[inline]
fn expected(socket: usize, pos: u64, len: usize) -> &'static [u8] {
    let start = ((socket as u64 * PHASE + pos) % PERIOD as u64) as usize;
    &pattern()[start..start + len]
}

/// The loop's receive callback for socket `socket`: one read of up to 16 KiB, checked.
fn receiver(socket: usize) -> impl FnMut(RawFd, IoEvents) -> Step + Send + 'static {
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    move |fd, events| {
        bump(&CALLBACKS, 1);
        if !events.contains(IoEvents::READABLE) {
            panic!("W8: socket {socket} (fd {fd}) was told {events:?} while streaming");
        }
        match rustix::io::read(borrow(fd), &mut buf[..]) {
            Ok(0) => panic!("W8: the writer of socket {socket} hung up after {pos} bytes"),
            Ok(n) => {
                if buf[..n] != *expected(socket, pos, n) {
                    panic!("W8: socket {socket} read {n} bytes at {pos} that are not its stream's");
                }
                pos += n as u64;
                POSITION[socket].store(pos, Relaxed);
                bump(&BYTES, n as u64);
                Step {
                    interest: IoEvents::READABLE,
                    drained: n < CHUNK,
                }
            }
            Err(Errno::AGAIN) => {
                bump(&WOULD_BLOCK, 1);
                Step {
                    interest: IoEvents::READABLE,
                    drained: true,
                }
            }
            Err(err) => panic!("W8: read from socket {socket} (fd {fd}): {err}"),
        }
    }
}

/// The loop's send callback for socket `socket`: one write of up to 16 KiB of its stream,
/// until the run's byte count is reached.
fn sender(socket: usize) -> impl FnMut(RawFd, IoEvents) -> Step + Send + 'static {
    let mut pos = 0u64;
    move |fd, events| {
        bump(&CALLBACKS, 1);
        if !events.contains(IoEvents::WRITABLE) {
            panic!("W8: socket {socket} (fd {fd}) was told {events:?} while streaming");
        }
        let left = LIMIT.load(Relaxed) - BYTES.load(Relaxed);
        let len = CHUNK.min(left as usize);
        if len == 0 {
            // Another socket's callback of this iteration sent the run's last bytes.
            return Step {
                interest: IoEvents::WRITABLE,
                drained: false,
            };
        }
        match rustix::io::write(borrow(fd), expected(socket, pos, len)) {
            Ok(n) => {
                pos += n as u64;
                POSITION[socket].store(pos, Relaxed);
                bump(&BYTES, n as u64);
                Step {
                    interest: IoEvents::WRITABLE,
                    drained: n < len,
                }
            }
            Err(Errno::AGAIN) => {
                bump(&WOULD_BLOCK, 1);
                Step {
                    interest: IoEvents::WRITABLE,
                    drained: true,
                }
            }
            Err(err) => panic!("W8: write to socket {socket} (fd {fd}): {err}"),
        }
    }
}

/// The receive peer: writes `quota` bytes of each socket's stream, round robin, blocking.
/// Returns the sockets, which must stay open until the loop has read everything (a closed
/// writer would make the loop's end report end of file).
fn feed(peers: Vec<OwnedFd>, quota: u64) -> Vec<OwnedFd> {
    let mut sent = vec![0u64; peers.len()];
    loop {
        let mut busy = false;
        for (socket, fd) in peers.iter().enumerate() {
            let left = quota - sent[socket];
            if left == 0 {
                continue;
            }
            busy = true;
            let len = PEER_IO.min(left as usize);
            match send(fd, expected(socket, sent[socket], len), SendFlags::NOSIGNAL) {
                Ok(n) => sent[socket] += n as u64,
                Err(err) => panic!("W8 writer: socket {socket}: {err}"),
            }
        }
        if !busy {
            return peers;
        }
    }
}

/// The send peer: reads every socket until end of file, round robin, blocking, and checks
/// every byte. Returns the bytes read per socket.
fn drain(peers: Vec<OwnedFd>) -> Vec<u64> {
    let mut got = vec![0u64; peers.len()];
    let mut open = vec![true; peers.len()];
    let mut buf = vec![0u8; PEER_IO];
    while open.iter().any(|&o| o) {
        for (socket, fd) in peers.iter().enumerate() {
            if !open[socket] {
                continue;
            }
            match recv(fd, &mut buf[..], RecvFlags::empty()) {
                Ok((0, _)) => open[socket] = false,
                Ok((n, _)) => {
                    if buf[..n] != *expected(socket, got[socket], n) {
                        panic!(
                            "W8 reader: socket {socket} received {n} bytes at {} that are not \
                             its stream's",
                            got[socket]
                        );
                    }
                    got[socket] += n as u64;
                }
                Err(err) => panic!("W8 reader: socket {socket}: {err}"),
            }
        }
    }
    got
}

/// Bytes per repeat (`W8_BYTES` overrides [`Params::w8_bytes`]), a whole number of chunks
/// per socket.
fn rep_bytes(p: &Params, sockets: usize) -> u64 {
    let bytes = std::env::var("W8_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(p.w8_bytes);
    let unit = (sockets * CHUNK) as u64;
    (bytes / unit).max(1) * unit
}

/// One W8 job: `sockets` socketpairs, receive or send.
pub fn run<C: Contender>(sockets: usize, send: bool, p: &Params) -> Vec<Measure> {
    assert!((1..=MAX_SOCKETS).contains(&sockets), "W8: 1 to 16 sockets");
    let unit = (sockets * CHUNK) as u64;
    let rep = rep_bytes(p, sockets);
    let warm = (rep / 10 / unit).max(1) * unit;
    let total = warm + rep * p.w8_reps as u64;
    for counter in [&BYTES, &CALLBACKS, &WOULD_BLOCK]
        .into_iter()
        .chain(POSITION.iter())
    {
        counter.store(0, Relaxed);
    }
    LIMIT.store(total, Relaxed);
    let _ = pattern();

    // Blocking sockets for the peer; the loop's ends made non-blocking.
    let mut ours: Vec<OwnedFd> = Vec::with_capacity(sockets);
    let mut peers: Vec<OwnedFd> = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .expect("socketpair");
        rustix::io::ioctl_fionbio(&a, true).expect("FIONBIO");
        let writer = if send { &a } else { &b };
        sockopt::set_socket_send_buffer_size(writer, SNDBUF).expect("SO_SNDBUF");
        ours.push(a);
        peers.push(b);
    }
    let phase = if send { "send" } else { "recv" };
    let peer = std::thread::Builder::new()
        .name(format!("w8-{phase}-peer"))
        .spawn(move || {
            if send {
                (drain(peers), Vec::new())
            } else {
                (Vec::new(), feed(peers, total / sockets as u64))
            }
        })
        .expect("spawn the W8 peer");

    let mut c = C::make();
    for (socket, fd) in ours.iter().enumerate() {
        if send {
            c.io_watch_add(fd.as_raw_fd(), IoEvents::WRITABLE, sender(socket));
        } else {
            c.io_watch_add(fd.as_raw_fd(), IoEvents::READABLE, receiver(socket));
        }
    }

    let (mut wall, mut cpu, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    let mut target = 0;
    // Round -1 is the warm-up.
    for r in -1..p.w8_reps as i64 {
        target += if r < 0 { warm } else { rep };
        let (b0, k0) = (BYTES.load(Relaxed), CALLBACKS.load(Relaxed));
        let (t0, c0) = (now_ns(), thread_cpu_ns());
        while BYTES.load(Relaxed) < target {
            c.run_once();
        }
        let (t1, c1) = (now_ns(), thread_cpu_ns());
        let (b1, k1) = (BYTES.load(Relaxed), CALLBACKS.load(Relaxed));
        if r >= 0 {
            let calls = (k1 - k0) as f64;
            let ns = (t1 - t0) as f64;
            wall.push(ns / calls);
            cpu.push((c1 - c0) as f64 / calls);
            // Bytes per ns times 1 000 is MB/s.
            rates.push((b1 - b0) as f64 / ns * 1e3);
        }
    }
    drop(c);

    if send {
        // End of file for the reader, after the last byte.
        for fd in &ours {
            shutdown(fd, Shutdown::Write).expect("shutdown(SHUT_WR)");
        }
    }
    let (got, _peers) = peer
        .join()
        .unwrap_or_else(|_| panic!("the W8 {phase} peer failed (see its message above)"));
    let moved: Vec<u64> = POSITION[..sockets]
        .iter()
        .map(|p| p.load(Relaxed))
        .collect();
    let counted = BYTES.load(Relaxed);
    assert_eq!(counted, total, "W8 {phase}: bytes moved by the loop");
    if send {
        assert_eq!(got, moved, "W8 send: bytes per socket, sent and received");
    } else {
        let quota = total / sockets as u64;
        assert!(
            moved.iter().all(|&m| m == quota),
            "W8 recv: bytes per socket read {moved:?}, written {quota} each"
        );
    }
    let callbacks = CALLBACKS.load(Relaxed);
    // Read by `tests/benches/syscalls.sh`, which counts kernel calls per callback.
    eprintln!(
        "  W8: {callbacks} callbacks in all (warm-up included), {phase} on {sockets} socket(s), \
         {counted} bytes checked, {} would have blocked",
        WOULD_BLOCK.load(Relaxed)
    );
    vec![
        Measure::new("W8", sockets as u64, median(&wall))
            .phase(phase)
            .extra("mb_per_s", median(&rates)),
        Measure::new("W8", sockets as u64, median(&cpu)).phase(if send {
            "send-cpu"
        } else {
            "recv-cpu"
        }),
    ]
}
