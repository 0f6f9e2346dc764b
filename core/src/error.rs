//! The one error type of the vtable, and the rejected-add wrapper that hands state back.

use std::io;
use std::os::fd::RawFd;

use crate::id::RegistrationId;

/// What went wrong in a vtable operation, a registration or a loop run (contract R59).
///
/// Every variant names the id or fd involved, so a log line is enough to find the culprit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No loop is bound to this thread and no process default is installed (R7, R50).
    #[error("no event loop: bind one to this thread or install a process default first")]
    NoLoop,
    /// The loop this handle points to has been destroyed (R48).
    #[error("the event loop is gone (it was dropped)")]
    LoopGone,
    /// The id is unknown to this loop or was already removed (R3, R4).
    #[error("{id} not found (never added to this loop, or already removed)")]
    NotFound {
        /// The id that was asked for.
        id: RegistrationId,
    },
    /// The fd is negative or not open (R51).
    #[error("invalid file descriptor {fd}: {reason}")]
    InvalidFd {
        /// The offending descriptor.
        fd: RawFd,
        /// Why it was refused ("negative", "not open").
        reason: &'static str,
    },
    /// The interest has bits no [`IoEvents`](crate::IoEvents) flag defines.
    #[error("unknown interest bits {bits:#x} (fd {fd})")]
    UnknownEvents {
        /// The descriptor the watch was for.
        fd: RawFd,
        /// The undefined bits.
        bits: u32,
    },
    /// The backend cannot watch this kind of descriptor at all (R51).
    #[error("fd {fd} cannot be watched by this backend: {reason}")]
    Unsupported {
        /// The descriptor.
        fd: RawFd,
        /// Why not.
        reason: &'static str,
    },
    /// A process default loop, a thread loop, or a keyed registration already exists (R7,
    /// E4).
    #[error("already registered: {what}")]
    AlreadyRegistered {
        /// What was already there.
        what: &'static str,
    },
    /// No new id can be given: the loop holds 16 million registrations of this kind, or the
    /// process allocated 2^40 ids (ids are never reused, R1).
    #[error("too many registrations: no more {what} can be allocated")]
    Exhausted {
        /// Which ids ran out.
        what: &'static str,
    },
    /// An argument can never be valid: an empty kind set, an object key the registry does
    /// not own, an event type with more than 64 kinds (E1, E21).
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What was wrong.
        what: &'static str,
    },
    /// The event registry was closed; it takes no new callbacks (E16).
    #[error("the event registry is closed")]
    Closed,
    /// A callback, free or filter panicked; the loop caught it and stays usable (R54).
    #[error("the callback of {id} panicked: {message}")]
    CallbackPanicked {
        /// The registration whose code panicked.
        id: RegistrationId,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The operating system refused an operation.
    #[error("{op} failed (fd {fd:?}): {source}")]
    Os {
        /// The system call or step that failed (`"epoll_ctl"`, `"poll"`...).
        op: &'static str,
        /// The descriptor involved, if any.
        fd: Option<RawFd>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Builds [`Error::NotFound`] for any id kind.
    pub fn not_found(id: impl Into<RegistrationId>) -> Self {
        Error::NotFound { id: id.into() }
    }

    /// Builds [`Error::CallbackPanicked`] from a caught panic payload.
    pub fn panicked(id: impl Into<RegistrationId>, payload: &(dyn std::any::Any + Send)) -> Self {
        let message = if let Some(text) = payload.downcast_ref::<&'static str>() {
            (*text).to_owned()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "non-string panic payload".to_owned()
        };
        Error::CallbackPanicked {
            id: id.into(),
            message,
        }
    }
}

/// A failed add: the error, and the callback handed back to the caller untouched.
///
/// On a failed add the backend never runs the free (drops the callback); ownership returns to
/// the caller through this value (contract R2, as calloop's `InsertError` does). Convert it
/// into [`Error`] with `?` when the callback is not needed back.
///
/// ```
/// use anyloop::{Error, Rejected};
/// fn keep_only_the_error(r: Rejected<u32>) -> Error { r.into() }
/// ```
#[derive(thiserror::Error)]
#[error("{error}")]
pub struct Rejected<C> {
    /// Why the add failed.
    #[source]
    pub error: Error,
    /// The callback that was not registered.
    pub callback: C,
}

/// Shows the error; the callback is opaque (closures have no `Debug`), so `expect` works on
/// any rejected add or registration.
impl<C> std::fmt::Debug for Rejected<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .field("callback", &std::any::type_name::<C>())
            .finish()
    }
}

impl<C> Rejected<C> {
    /// Wraps an error and the callback it refused.
    pub fn new(error: Error, callback: C) -> Self {
        Rejected { error, callback }
    }
}

impl<C> From<Rejected<C>> for Error {
    fn from(rejected: Rejected<C>) -> Self {
        rejected.error
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
