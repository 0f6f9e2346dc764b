//! The OS layer: everything that makes a system call lives under this module.
//!
//! Two implementations of anyloop's [`Poller`](anyloop::backend::Poller) /
//! [`Registrar`](anyloop::backend::Registrar) pair:
//!
//! - [`epoll`]: Linux level-triggered epoll through `rustix`, one `epoll_wait` per
//!   iteration: the default.
//! - [`mio`](self::mio): mio's edge-triggered epoll, with level-triggered delivery emulated by
//!   one batched zero-timeout `poll(2)` over the fds dispatched in the previous iteration.
//!
//! Both share [`probe`] (the batched `poll(2)`, also used for always-ready fds such as regular
//! files) and the fd helpers below.

pub(crate) mod epoll;
pub(crate) mod mio;
pub(crate) mod probe;

use std::os::fd::{BorrowedFd, RawFd};

use anyloop::{Error, IoEvents, Result};
use rustix::io::Errno;

/// Borrows a caller's fd number for the duration of one system call.
///
/// The vtable deals in raw fd numbers (as libvirt does); the kernel validates them.
pub(crate) fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    debug_assert!(fd >= 0);
    // SAFETY: `fd` is non-negative (checked at add time), so it is not the -1 sentinel that
    // `borrow_raw` forbids. It is only passed to system calls that inspect it and never take
    // ownership or close it (fcntl, epoll_ctl, poll); if it is not open they fail with EBADF
    // (or report POLLNVAL), which callers handle. No memory is accessed through it.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// `fcntl(F_GETFD)`: the cheapest way to ask whether an fd number is open.
pub(crate) fn check_open(fd: RawFd) -> Result<()> {
    match rustix::io::fcntl_getfd(borrow(fd)) {
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

/// True when an interest asks for nothing the OS layer can express (never passed in).
pub(crate) fn is_expressible(interest: IoEvents) -> bool {
    interest.intersects(IoEvents::READABLE | IoEvents::WRITABLE)
}
