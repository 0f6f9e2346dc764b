//! The Linux OS layer every epoll-based backend shares: the only place in this crate that
//! makes system calls.
//!
//! - [`EpollPoller`] / [`EpollRegistrar`]: a level-triggered epoll instance, one
//!   `epoll_wait` per iteration, with an eventfd wake-up ([`EventFdWaker`]) inside its set.
//!   The built-in loop waits on it directly; a loop that hosts the engine (GLib, calloop,
//!   tokio, an application's own loop) polls the epoll fd as a single entry of its poll set,
//!   through [`HostedEngine`](crate::HostedEngine), whose three calls (before the poll, after
//!   it, the outcome) also give the host its timeout for the engine's timers and make a
//!   wake-up from another thread reach it.
//! - [`Prober`]: one batched zero-timeout `poll(2)` over a list of fds (always-ready files,
//!   and level re-checks for edge-triggered substrates).
//! - [`check_open`] and [`borrow_fd`]: fd helpers for registrars.

mod epoll;
mod probe;
mod waker;

use std::os::fd::{BorrowedFd, RawFd};

use rustix::io::Errno;

use anyloop::{Error, Result};

pub use epoll::{new_epoll, verify_epoll, EpollPoller, EpollRegistrar};
pub use probe::Prober;
pub use waker::EventFdWaker;

/// Borrows a caller's fd number for the duration of one system call.
///
/// The vtable deals in raw fd numbers (as libvirt does); the kernel validates them. Only
/// pass the result to calls that inspect an fd (`fcntl`, `epoll_ctl`, `poll`), never to
/// anything that closes it. Negative numbers are refused by the engine before they get here;
/// this returns `None` for them rather than build an invalid `BorrowedFd`.
pub fn borrow_fd(fd: RawFd) -> Option<BorrowedFd<'static>> {
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is non-negative, so it is not the -1 sentinel that `borrow_raw` forbids.
    // The borrow is only handed to system calls that inspect the number and never take
    // ownership or close it; if it is not open they fail with EBADF (or report POLLNVAL),
    // which callers handle. No memory is accessed through it.
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Returns `Ok` if `fd` is an open descriptor (`fcntl(F_GETFD)`, the cheapest check).
///
/// # Errors
/// [`Error::InvalidFd`] for a negative or closed fd; [`Error::Os`] for anything unexpected.
pub fn check_open(fd: RawFd) -> Result<()> {
    let Some(borrowed) = borrow_fd(fd) else {
        return Err(Error::InvalidFd {
            fd,
            reason: "negative",
        });
    };
    match rustix::io::fcntl_getfd(borrowed) {
        Ok(_) => Ok(()),
        Err(Errno::BADF) => Err(Error::InvalidFd {
            fd,
            reason: "not open",
        }),
        Err(err) => Err(Error::Os {
            op: "fcntl(F_GETFD)",
            fd: Some(fd),
            source: err.into(),
        }),
    }
}

/// The identity of the file `fd` names now (`fstat`'s device and inode), `None` if it is not
/// open: what [`Registrar::identity`](crate::Registrar::identity) answers on Linux.
pub fn file_identity(fd: RawFd) -> Option<crate::FileId> {
    let target = borrow_fd(fd)?;
    let stat = rustix::fs::fstat(target).ok()?;
    Some(crate::FileId {
        dev: stat.st_dev,
        ino: stat.st_ino,
    })
}
