//! The cross-thread wake-up of the `poll(2)` layer: a self-pipe.
//!
//! An op from a foreign thread writes one byte; the loop's `poll(2)` sees the read end
//! readable and the loop reads the pipe empty *before* the engine looks at its state (contract
//! [R40](anyloop::contract#r40)), so a change made after that read always leaves a readable pipe
//! behind for the next wait. Both ends are non-blocking: a full pipe already means "wake up",
//! and the loop reads until a short read, so nothing is left behind
//! ([R45](anyloop::contract#r45)).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

/// How much one drain reads at a time: the engine coalesces wake-ups (at most one is pending),
/// so one short read normally empties the pipe.
const DRAIN_CHUNK: usize = 64;

/// A non-blocking, close-on-exec pipe used as a wake-up flag.
#[derive(Debug)]
pub struct PipeWaker {
    read: OwnedFd,
    write: OwnedFd,
}

impl PipeWaker {
    /// A fresh pipe, both ends non-blocking and close-on-exec: `pipe2` where the system has
    /// it, `pipe` and `fcntl` elsewhere.
    ///
    /// # Errors
    /// The OS error if no pipe can be made (e.g. `EMFILE`) or its flags cannot be set.
    pub fn new() -> io::Result<Self> {
        let (read, write) = nonblocking_cloexec_pipe()?;
        Ok(PipeWaker { read, write })
    }

    /// Signals the loop. Never blocks.
    ///
    /// # Errors
    /// Unexpected OS failures (not a full pipe, which is already a pending wake-up).
    pub fn wake(&self) -> io::Result<()> {
        loop {
            match rustix::io::write(&self.write, &[1]) {
                Ok(_) => return Ok(()),
                // The pipe is full: a wake-up is pending already (R45).
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Consumes every pending wake-up: reads until a short read (the pipe is empty) or
    /// `EAGAIN`.
    pub fn drain(&self) {
        let mut buf = [0u8; DRAIN_CHUNK];
        loop {
            match rustix::io::read(&self.read, &mut buf) {
                // A full chunk: there may be more.
                Ok(n) if n == buf.len() => continue,
                Err(Errno::INTR) => continue,
                // A short read: drained; AGAIN: nothing was pending; anything else: nothing
                // we can do (the loop then wakes again, which is harmless).
                _ => return,
            }
        }
    }
}

/// The read end, which the loop polls.
impl AsFd for PipeWaker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

/// A non-blocking, close-on-exec pipe: `pipe2(O_NONBLOCK | O_CLOEXEC)` on the systems where
/// `rustix` offers it (one call, and no window in which a concurrent `fork`+`exec` could
/// inherit the ends), [`pipe_then_fcntl`] on the others (macOS among them).
#[allow(unreachable_code)] // where pipe2 exists, the portable way after it is not reached
fn nonblocking_cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
        target_os = "illumos",
        target_os = "solaris"
    ))]
    return Ok(rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
    )?);
    pipe_then_fcntl()
}

/// Plain POSIX: `pipe`, then `fcntl` on each end. A `fork`+`exec` on another thread between
/// the calls could inherit the ends; the loop works all the same. (Compiled everywhere, so
/// that the tests run it on Linux too.)
fn pipe_then_fcntl() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    use rustix::io::{fcntl_setfd, FdFlags};
    let (read, write) = rustix::pipe::pipe()?;
    for end in [&read, &write] {
        fcntl_setfd(end, FdFlags::CLOEXEC)?;
        fcntl_setfl(end, fcntl_getfl(end)? | OFlags::NONBLOCK)?;
    }
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{fcntl_getfl, OFlags};
    use rustix::io::{fcntl_getfd, FdFlags};

    fn assert_nonblocking_cloexec(read: &OwnedFd, write: &OwnedFd) {
        for end in [read, write] {
            assert!(fcntl_getfd(end).unwrap().contains(FdFlags::CLOEXEC));
            assert!(fcntl_getfl(end).unwrap().contains(OFlags::NONBLOCK));
        }
    }

    #[test]
    fn both_ways_to_the_pipe_give_nonblocking_cloexec_ends() {
        let (read, write) = nonblocking_cloexec_pipe().unwrap();
        assert_nonblocking_cloexec(&read, &write);
        let (read, write) = pipe_then_fcntl().unwrap();
        assert_nonblocking_cloexec(&read, &write);
    }

    #[test]
    fn a_full_pipe_is_a_pending_wake_up_and_one_drain_empties_it() {
        let waker = PipeWaker::new().unwrap();
        // Far more than a pipe holds (64 KiB on Linux): the writes past that must not block.
        for _ in 0..200_000 {
            waker.wake().unwrap();
        }
        waker.drain();
        let mut byte = [0u8; 1];
        assert_eq!(
            rustix::io::read(&waker.read, &mut byte),
            Err(Errno::AGAIN),
            "R45: the drain left wake-ups behind"
        );
        waker.wake().unwrap();
        waker.drain();
        assert_eq!(rustix::io::read(&waker.read, &mut byte), Err(Errno::AGAIN));
    }
}
