//! The supervisor's error type.

use std::io;

use super::events::ChildId;

/// What can go wrong when supervising children.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// The program could not be started (not found, not executable, ...).
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program as given.
        program: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The child started but its output pipes could not be made non-blocking; it was killed
    /// and reaped. (A loop that refuses the watches or timers gives [`Loop`](Self::Loop),
    /// also after killing and reaping the child.)
    #[error("cannot set up {what} for `{program}`: {source}")]
    Setup {
        /// The program as given.
        program: String,
        /// Which part failed.
        what: &'static str,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// No running child has this id: it ended (its `SubprocessQuit` was emitted) or never
    /// existed.
    #[error("{0} is not running under this supervisor")]
    UnknownChild(ChildId),
    /// Sending a signal to the child's process group failed.
    #[error("cannot send signal {signal} to {child}: {source}")]
    Signal {
        /// The child.
        child: ChildId,
        /// The signal's number.
        signal: i32,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The supervisor was closed (or dropped).
    #[error("the supervisor is closed")]
    Closed,
    /// The loop refused an operation.
    #[error(transparent)]
    Loop(#[from] anyloop::Error),
}
