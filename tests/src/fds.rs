//! Descriptor helpers for scenarios: non-blocking pipes and socketpairs, byte I/O, fd reuse.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

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
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024)
        .min(i32::MAX as u64) as RawFd;
    let fd = (soft - 3).max(64);
    assert!(!is_open(fd), "fd {fd} unexpectedly open");
    fd
}
