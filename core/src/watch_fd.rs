//! [`AsWatchFd`]: what a watch can be added on, a borrowed fd or a raw number.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// An fd a watch can be added on ([`Loop::watch`](crate::Loop::watch) and friends): anything
/// that borrows one (`&T` for any `T:`[`AsFd`], such as `&UnixStream`, `&OwnedFd`,
/// `&tokio::net::TcpStream`'s inner socket; a [`BorrowedFd`]), or a raw [`RawFd`] number, for a
/// C binding that only has a number.
///
/// A watch does not keep its fd open: the borrow ends with the call, and the library must
/// still remove (or drop) the watch before it closes the fd ([R53](crate::contract#r53)).
///
/// ```
/// use anyloop::AsWatchFd;
/// use std::os::fd::AsRawFd;
/// use std::os::unix::net::UnixStream;
///
/// let (a, _b) = UnixStream::pair()?;
/// assert_eq!((&a).watch_fd(), a.as_raw_fd()); // borrowed: what Rust code usually has
/// assert_eq!(a.as_raw_fd().watch_fd(), a.as_raw_fd()); // a number: what C code has
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait AsWatchFd {
    /// The fd's number, for the vtable ([`Backend::add_watch`](crate::Backend::add_watch)).
    fn watch_fd(&self) -> RawFd;
}

impl AsWatchFd for RawFd {
    fn watch_fd(&self) -> RawFd {
        *self
    }
}

impl AsWatchFd for BorrowedFd<'_> {
    fn watch_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl<T: AsFd + ?Sized> AsWatchFd for &T {
    fn watch_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
