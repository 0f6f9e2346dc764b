//! The one error type of the vtable, and the rejected-add wrapper that hands state back.

use std::io;
use std::os::fd::RawFd;

use sync_wrapper::SyncWrapper;

use crate::id::RegistrationId;

/// What went wrong in a vtable operation, a registration or a loop run (contract [R59](crate::contract#r59)).
///
/// Every variant names the id or fd involved, so a log line is enough to find the culprit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No loop is bound to this thread and no process default is installed ([R7](crate::contract#r7), [R50](crate::contract#r50)).
    #[error("no event loop: bind one to this thread or install a process default first")]
    NoLoop,
    /// The loop this handle points to has been destroyed ([R48](crate::contract#r48)).
    #[error("the event loop is gone (it was dropped)")]
    LoopGone,
    /// The id is unknown to this loop or was already removed ([R3](crate::contract#r3), [R4](crate::contract#r4)).
    #[error("{id} not found (never added to this loop, or already removed)")]
    NotFound {
        /// The id that was asked for.
        id: RegistrationId,
    },
    /// The fd is negative or not open ([R51](crate::contract#r51)).
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
    /// The backend cannot watch this kind of descriptor at all ([R51](crate::contract#r51)).
    #[error("fd {fd} cannot be watched by this backend: {reason}")]
    Unsupported {
        /// The descriptor.
        fd: RawFd,
        /// Why not.
        reason: &'static str,
    },
    /// A process default loop, a thread loop, or a keyed registration already exists ([R7](crate::contract#r7),
    /// [E4](crate::contract#e4)).
    #[error("already registered: {what}")]
    AlreadyRegistered {
        /// What was already there.
        what: &'static str,
    },
    /// No new id can be given: the loop holds 16 million registrations of this kind, or the
    /// process allocated 2^40 ids (ids are never reused, [R1](crate::contract#r1)).
    #[error("too many registrations: no more {what} can be allocated")]
    Exhausted {
        /// Which ids ran out.
        what: &'static str,
    },
    /// An argument can never be valid: an empty kind set, an object key the registry does
    /// not own, an event type with more than 64 kinds ([E1](crate::contract#e1), [E21](crate::contract#e21)).
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What was wrong.
        what: &'static str,
    },
    /// The event registry was closed; it takes no new callbacks ([E16](crate::contract#e16)).
    #[error("the event registry is closed")]
    Closed,
    /// Code ran, or was about to run, on a thread it may not run on: a thread-bound callback
    /// registered off its loop's thread, or due on a loop that now runs on another thread (it
    /// is then not called), or a loop driven from a thread that cannot own it
    /// ([R42](crate::contract#r42), [R50](crate::contract#r50)).
    #[error("wrong thread{}: {what}", id.map(|id| format!(" for {id}")).unwrap_or_default())]
    WrongThread {
        /// The registration concerned, if any.
        id: Option<RegistrationId>,
        /// What was refused.
        what: &'static str,
    },
    /// A callback, free or filter panicked; the loop caught it and stays usable ([R54](crate::contract#r54)).
    #[error("the callback of {id} panicked: {message}")]
    CallbackPanicked {
        /// The registration whose code panicked.
        id: RegistrationId,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The operating system refused an operation.
    #[error("{op} failed{}: {source}", on_fd(*fd))]
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

/// " on fd N" when an fd is involved.
fn on_fd(fd: Option<RawFd>) -> String {
    fd.map(|fd| format!(" on fd {fd}")).unwrap_or_default()
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
/// the caller through this value ([R2](crate::contract#r2), as calloop's `InsertError` does).
/// [`into_callback`](Self::into_callback) takes it back.
///
/// It is an error type of its own that converts with `?` into [`Error`], `anyhow::Error` or
/// `Box<dyn std::error::Error + Send + Sync>` (it is `Send` and `Sync` whenever the callback is
/// `Send`, which every [`WatchCallback`](crate::WatchCallback) and
/// [`TimerCallback`](crate::TimerCallback) is, thread-bound ones included); it displays as
/// the error it carries.
///
/// ```
/// use anyloop::{IoEvents, Loop, Schedule};
/// use std::time::Duration;
///
/// // Into the boxed error most libraries return...
/// fn start(lp: &Loop) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let id = lp.add_timer(Schedule::Once(Duration::from_secs(1)), |_id| println!("late"))?;
///     lp.add_watch(-1, IoEvents::READABLE, |_id, _fd, _events| {})?; // fails: negative fd
///     lp.remove_timer(id)?;
///     Ok(())
/// }
///
/// // ...into anyhow's...
/// fn start_anyhow(lp: &Loop) -> anyhow::Result<()> {
///     let id = lp.add_timer(Schedule::Once(Duration::from_secs(1)), |_id| println!("late"))?;
///     lp.remove_timer(id)?;
///     Ok(())
/// }
///
/// // ...or take the callback back.
/// fn retry(lp: &Loop, fd: i32) -> anyloop::Result<()> {
///     match lp.add_watch(fd, IoEvents::READABLE, |_id, _fd, _events| {}) {
///         Ok(_) => Ok(()),
///         Err(rejected) => {
///             eprintln!("{}", rejected.error());
///             let callback = rejected.into_callback(); // not dropped: ours again
///             lp.add_watch(0, IoEvents::READABLE, callback)?;
///             Ok(())
///         }
///     }
/// }
/// ```
pub struct Rejected<C> {
    error: Error,
    /// Shared references never reach the callback, so the error is `Sync` even though
    /// closures are not (the callback can only be taken back by value).
    callback: SyncWrapper<C>,
}

impl<C> Rejected<C> {
    /// Wraps an error and the callback it refused.
    pub fn new(error: Error, callback: C) -> Self {
        Rejected {
            error,
            callback: SyncWrapper::new(callback),
        }
    }

    /// Why the add failed.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The callback that was not registered, given back.
    pub fn into_callback(self) -> C {
        self.callback.into_inner()
    }

    /// The error and the callback.
    pub fn into_parts(self) -> (Error, C) {
        (self.error, self.callback.into_inner())
    }

    /// Turns the callback into another type (e.g. boxes it), keeping the error.
    pub fn map_callback<D>(self, f: impl FnOnce(C) -> D) -> Rejected<D> {
        let (error, callback) = self.into_parts();
        Rejected::new(error, f(callback))
    }
}

impl<C> std::fmt::Display for Rejected<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The error's own source: a `Rejected` stands for the error it carries.
impl<C> std::error::Error for Rejected<C> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
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

impl<C> From<Rejected<C>> for Error {
    fn from(rejected: Rejected<C>) -> Self {
        rejected.error
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
