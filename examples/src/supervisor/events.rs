//! What the supervisor reports: one payload type per event kind, declared with
//! [`anyloop::event_set!`] so applications register typed callbacks for each.

use std::fmt;
use std::time::Duration;

/// Identifies one supervised child for the supervisor's whole life (never reused), and is the
/// object key applications filter on (`registry.listen::<LogLine>().object(child)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildId(pub u64);

impl fmt::Display for ChildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "child {}", self.0)
    }
}

/// Which of the child's output pipes a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
}

impl Stream {
    /// `"stdout"` or `"stderr"`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitReason {
    /// It exited with this status (0 is success).
    Exited(i32),
    /// A signal killed it (the signal's number).
    Signaled(i32),
    /// Its status could not be read: something else in the process reaped it (for example
    /// `SIGCHLD` set to `SIG_IGN`).
    Unknown,
}

impl ExitReason {
    /// Whether the child exited with status 0.
    pub fn success(self) -> bool {
        self == ExitReason::Exited(0)
    }

    /// The status a shell would report: the exit status, or 128 + the signal number (255
    /// when unknown).
    pub fn shell_status(self) -> i32 {
        match self {
            ExitReason::Exited(code) => code,
            ExitReason::Signaled(signal) => 128 + signal,
            ExitReason::Unknown => 255,
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Exited(code) => write!(f, "exited with status {code}"),
            ExitReason::Signaled(signal) => {
                write!(f, "killed by signal {signal} ({})", signal_name(*signal))
            }
            ExitReason::Unknown => f.write_str("ended with an unknown status"),
        }
    }
}

/// The conventional name of a signal number (`SIGTERM`), or `"unknown signal"`.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "unknown signal",
    }
}

/// Where a [`Progress`] figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgressSource {
    /// A progress line the child printed (see
    /// [`SpawnOptions::progress_prefix`](super::SpawnOptions::progress_prefix)).
    Output,
    /// The supervisor's estimate from elapsed time (see
    /// [`SpawnOptions::expected_duration`](super::SpawnOptions::expected_duration)).
    Timer,
}

/// The child was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// The new child.
    pub child: ChildId,
    /// Its process id (also its process group id: the supervisor signals the whole group).
    pub pid: u32,
    /// The command line, for display.
    pub command: String,
}

/// The child wrote one line on one of its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Who wrote it.
    pub child: ChildId,
    /// On which stream.
    pub stream: Stream,
    /// The line as written, without its newline; any bytes, NULs and invalid UTF-8 included.
    /// A last line without a newline is reported when the stream ends.
    pub bytes: Vec<u8>,
    /// The line was longer than [`SpawnOptions::max_line`](super::SpawnOptions::max_line)
    /// and was cut: the rest follows as further `LogLine`s.
    pub truncated: bool,
}

/// How far the child has got (libguestfs's progress event): `position` out of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Whose progress.
    pub child: ChildId,
    /// Work done, in the unit of `total`.
    pub position: u64,
    /// Work in all; never 0.
    pub total: u64,
    /// Printed by the child or estimated from the elapsed time.
    pub source: ProgressSource,
}

/// The supervisor sent a signal to the child's process group (a kill, or its escalation
/// after the grace period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalSent {
    /// The child.
    pub child: ChildId,
    /// The signal sent (`SIGTERM` = 15 first, `SIGKILL` = 9 when the grace period ran out).
    pub signal: i32,
    /// `true` when this is the `SIGKILL` sent because the grace period expired.
    pub escalated: bool,
}

/// The child is gone: it was reaped and its output streams have been read to the end (every
/// `LogLine` of the child comes before this event). If a descendant kept the pipes open
/// [`SpawnOptions::drain_after_exit`](super::SpawnOptions::drain_after_exit) after the exit,
/// what was in them then is still reported, and later output of the descendant is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubprocessQuit {
    /// The child.
    pub child: ChildId,
    /// How it ended.
    pub reason: ExitReason,
    /// From the start of the process to its reaping.
    pub runtime: Duration,
    /// `true` when it ended after [`Supervisor::kill`](super::Supervisor::kill) was called.
    pub killed: bool,
}

/// The supervisor is closing: delivered synchronously to `Close` listeners by
/// [`Supervisor::close`](super::Supervisor::close), after which every callback is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// Children still running at close, which it killed (`SIGKILL` to the group) and reaped.
    pub killed_children: usize,
}

anyloop::event_set! {
    /// Everything the supervisor reports, one variant per kind.
    #[derive(Debug, Clone)]
    pub enum SupervisorEvent {
        kind: SupervisorKind,
        key: ChildId,
        /// A child started.
        Launched(Launched) => child,
        /// A child wrote a line.
        LogLine(LogLine) => child,
        /// A child's progress.
        Progress(Progress) => child,
        /// A signal was sent to a child.
        SignalSent(SignalSent) => child,
        /// A child ended.
        SubprocessQuit(SubprocessQuit) => child,
        /// The supervisor is closing.
        Close(Close),
    }
}
