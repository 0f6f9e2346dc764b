//! The crate's error type: what libvirt said, or why a call never reached it.

use std::ffi::CStr;

use crate::ffi;

/// What went wrong in a libvirt call or in installing the event implementation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A libvirt call failed; `message` is libvirt's own text (`virGetLastErrorMessage`).
    #[error("{call} failed: {message}")]
    Libvirt {
        /// The libvirt function that failed, e.g. `"virConnectOpen"`.
        call: &'static str,
        /// libvirt's error message for the calling thread.
        message: String,
    },
    /// A string argument holds a NUL byte, which C strings cannot carry.
    #[error("{what} contains a NUL byte")]
    NulByte {
        /// Which argument (`"URI"`, `"domain XML"`, `"domain name"`).
        what: &'static str,
    },
    /// libvirt's event implementation was already installed on a different anyloop loop;
    /// libvirt takes one implementation per process.
    #[error(
        "libvirt's event implementation is already installed on another loop (one per process)"
    )]
    AlreadyRegistered,
    /// Some other code (e.g. `virEventRegisterDefaultImpl`) installed libvirt's event
    /// implementation before this crate; libvirt ignores later registrations.
    #[error("another event implementation was registered with libvirt first; libvirt keeps the first one")]
    ForeignImplementation,
    /// No event loop was installed with [`register`](crate::register): libvirt would have
    /// nothing to deliver events on.
    #[error("no event loop installed: call anyloop_libvirt::register first")]
    NoEventLoop,
    /// A keep-alive interval libvirt cannot express: it counts whole seconds, from 1 to
    /// `i32::MAX` (`Duration::ZERO` disables keep-alive instead).
    #[error("keep-alive interval {0:?} is not a whole number of seconds between 1 and 2^31-1")]
    KeepAliveInterval(std::time::Duration),
    /// The other end of the connection (the daemon) does not answer keep-alive messages, so
    /// libvirt did not start them (`virConnectSetKeepAlive` returned 1).
    #[error("the other end of the connection does not support keep-alive messages")]
    KeepAliveUnsupported,
    /// The event loop refused an operation (for example it was destroyed), or the event
    /// registry could not be created on it.
    #[error("event loop: {0}")]
    Loop(#[source] anyloop::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The calling thread's last libvirt error, for a call that just failed, and resets it so
    /// a later failure is not reported with a stale message.
    pub(crate) fn last(call: &'static str) -> Error {
        // SAFETY: virGetLastErrorMessage never returns NULL (it returns "no error" when
        // there is none); the text lives in thread-local storage until the next libvirt
        // call on this thread, so it is copied before virResetLastError.
        let message = unsafe { CStr::from_ptr(ffi::virGetLastErrorMessage()) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: no arguments; only touches the calling thread's error slot.
        unsafe { ffi::virResetLastError() };
        Error::Libvirt { call, message }
    }
}
