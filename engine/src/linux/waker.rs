//! The cross-thread wake-up of the epoll poller: an `eventfd`.
//!
//! An op from a foreign thread writes it; the loop's `epoll_wait` sees it readable and the
//! loop reads it back to zero *before* looking at its state (contract [R40](anyloop::contract#r40)), so a change made
//! after that read always leaves a readable eventfd behind for the next wait. Writes never
//! block: a counter that is already full still means "wake up" ([R45](anyloop::contract#r45)). (The mio poller uses
//! `mio::Waker`, which is the same eventfd underneath.)

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

/// A non-blocking eventfd used as a wake-up flag.
#[derive(Debug)]
pub struct EventFdWaker {
    fd: OwnedFd,
}

impl EventFdWaker {
    /// A fresh eventfd, non-blocking and close-on-exec.
    ///
    /// # Errors
    /// The OS error if no eventfd can be created (e.g. `EMFILE`).
    pub fn new() -> io::Result<Self> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(EventFdWaker { fd })
    }

    /// Signals the loop. Never blocks.
    ///
    /// # Errors
    /// Unexpected OS failures (not a saturated counter, which is already a pending wake-up).
    pub fn wake(&self) -> io::Result<()> {
        loop {
            match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
                Ok(_) => return Ok(()),
                // The counter is saturated: a wake-up is pending already (R45).
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Consumes every pending wake-up (one read empties an eventfd).
    pub fn drain(&self) {
        let mut buf = [0u8; 8];
        loop {
            match rustix::io::read(&self.fd, &mut buf) {
                Err(Errno::INTR) => continue,
                // Ok: drained; AGAIN: nothing was pending; anything else: nothing we can do.
                _ => return,
            }
        }
    }
}

impl AsFd for EventFdWaker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
