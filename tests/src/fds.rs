//! Descriptor helpers for scenarios: non-blocking pipes and socketpairs, byte I/O, numbers out
//! of the way, and numbers reused by another file.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::pipe::PipeFlags;

/// A non-blocking, close-on-exec pipe: the read end is what scenarios watch.
#[derive(Debug)]
pub struct Pipe {
    /// The read end (watched).
    pub rd: OwnedFd,
    /// The write end; `None` once [`close_writer`](Self::close_writer) ran.
    pub wr: Option<OwnedFd>,
}

impl Pipe {
    /// Creates a pipe; panics (failing the scenario) if the OS refuses.
    pub fn new() -> Pipe {
        let (rd, wr) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)
            .expect("pipe2 failed");
        Pipe { rd, wr: Some(wr) }
    }

    /// The read end's number.
    pub fn fd(&self) -> RawFd {
        self.rd.as_raw_fd()
    }

    /// Writes `n` bytes to the write end.
    pub fn write(&self, n: usize) {
        let wr = self.wr.as_ref().expect("write end already closed");
        write_bytes(wr, n);
    }

    /// Closes the write end: the read end then reports HANGUP (and end of file).
    pub fn close_writer(&mut self) {
        self.wr = None;
    }
}

impl Default for Pipe {
    fn default() -> Self {
        Pipe::new()
    }
}

/// A non-blocking UNIX stream socketpair.
#[derive(Debug)]
pub struct SocketPair {
    /// The end scenarios watch.
    pub a: OwnedFd,
    /// The peer; `None` once [`close_peer`](Self::close_peer) ran.
    pub b: Option<OwnedFd>,
}

impl SocketPair {
    /// Creates a socketpair; panics (failing the scenario) if the OS refuses.
    pub fn new() -> SocketPair {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .expect("socketpair failed");
        SocketPair { a, b: Some(b) }
    }

    /// The watched end's number.
    pub fn fd(&self) -> RawFd {
        self.a.as_raw_fd()
    }

    /// Sends `n` bytes from the peer, making the watched end readable.
    pub fn peer_write(&self, n: usize) {
        write_bytes(self.b.as_ref().expect("peer closed"), n);
    }

    /// Closes the peer: the watched end reports HANGUP.
    pub fn close_peer(&mut self) {
        self.b = None;
    }
}

impl Default for SocketPair {
    fn default() -> Self {
        SocketPair::new()
    }
}

/// Writes `n` bytes (value `b'x'`) to `fd`, panicking if they do not all fit.
pub fn write_bytes(fd: impl AsFd, n: usize) {
    let buf = vec![b'x'; n];
    let mut done = 0;
    while done < n {
        match rustix::io::write(fd.as_fd(), &buf[done..]) {
            Ok(k) => done += k,
            Err(Errno::INTR) => {}
            Err(err) => panic!("write failed after {done} of {n} bytes: {err}"),
        }
    }
}

/// Reads at most one byte from a raw fd; `Some(0)` at end of file, `None` if nothing is there.
///
/// Takes a raw fd because callbacks receive one; the caller keeps the fd open.
pub fn read_one(fd: RawFd) -> Option<usize> {
    let mut byte = [0u8; 1];
    // SAFETY: `read(2)` into a live one-byte buffer; an fd that is not open is just EBADF.
    let n = unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) };
    if n < 0 {
        None
    } else {
        Some(n as usize)
    }
}

/// Reads everything available from a raw fd; returns the byte count.
pub fn drain(fd: RawFd) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `read(2)` into a live buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return total;
        }
        total += n as usize;
    }
}

/// True when `fd` is an open descriptor in this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; no memory is passed.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// A descriptor number that is not open and that no scenario will open: three below the
/// soft `RLIMIT_NOFILE` (the kernel hands out the lowest free number, and no scenario holds
/// that many descriptors). A just-closed pipe's number would not do: another test thread may
/// reuse it at once.
pub fn closed_fd() -> RawFd {
    let fd = (soft_limit() - 3).max(64);
    assert!(!is_open(fd), "fd {fd} unexpectedly open");
    fd
}

/// The soft `RLIMIT_NOFILE`: descriptor numbers are below it.
fn soft_limit() -> RawFd {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024)
        .min(i32::MAX as u64) as RawFd
}

/// Moves `fd` to a high descriptor number, the lowest free one from `below_limit` under the
/// soft `RLIMIT_NOFILE` (at least 64): numbers the kernel does not hand out to other
/// scenarios (it gives the lowest free number), so that closing it cannot hand its number to a
/// concurrently running test. Give each scenario a `below_limit` of its own.
pub fn high_fd(fd: OwnedFd, below_limit: RawFd) -> OwnedFd {
    let floor = (soft_limit() - below_limit).max(64);
    // SAFETY: F_DUPFD_CLOEXEC only duplicates a descriptor we own; no memory is passed.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
    assert!(
        moved >= 0,
        "F_DUPFD_CLOEXEC of fd {} to {floor} or above failed: {}",
        fd.as_raw_fd(),
        std::io::Error::last_os_error()
    );
    // SAFETY: `moved` is a fresh descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(moved) }
}

/// Gives `file` the descriptor number `number`, which the scenario closed a moment ago (a
/// watched fd closed under its watch, [R52](anyloop::contract#r52)): the number is reused by
/// another file. Never touches a number someone else may own (no `dup2`): `F_DUPFD_CLOEXEC`
/// takes the lowest free number from `number` up, and the result is checked.
///
/// Panics (failing the scenario) if the number was not free any more: another thread of the
/// process took it first (the kit runs such scenarios alone, [`FdUse::Exclusive`], but a
/// test of the same binary outside the kit may open files too).
///
/// [`FdUse::Exclusive`]: crate::FdUse::Exclusive
pub fn reuse_number(file: impl AsFd, number: RawFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC only duplicates a descriptor we borrow; no memory is passed.
    let got = unsafe { libc::fcntl(file.as_fd().as_raw_fd(), libc::F_DUPFD_CLOEXEC, number) };
    assert!(
        got >= 0,
        "F_DUPFD_CLOEXEC to reuse fd {number} failed: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `got` is a fresh descriptor owned by nobody else.
    let reused = unsafe { OwnedFd::from_raw_fd(got) };
    assert_eq!(
        reused.as_raw_fd(),
        number,
        "fd {number}, closed by the scenario a moment ago, was taken by another thread of the \
         process before the scenario could give it to a new file: the scenario cannot check \
         what a reused number does (R52)"
    );
    reused
}
