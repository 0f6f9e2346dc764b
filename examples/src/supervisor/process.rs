//! The OS side of one child: starting it with piped output, watching for its exit, signalling
//! its process group and reaping it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};

use rustix::fs::OFlags;
use rustix::process::{Pid, PidfdFlags, Signal};

use super::events::ExitReason;

/// A started child with its two output pipes, both non-blocking.
pub(crate) struct Started {
    pub(crate) process: Child,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// Why [`start`] failed.
pub(crate) enum StartError {
    /// The program could not be started.
    Spawn(io::Error),
    /// It started, but its pipes could not be made non-blocking (it was killed and reaped).
    Setup(io::Error),
}

/// Starts `command` with stdin from `/dev/null`, stdout and stderr piped, in a process group
/// of its own (so signals reach whatever it starts, and a terminal's Ctrl-C reaches only the
/// supervisor, which decides).
pub(crate) fn start(mut command: Command) -> Result<Started, StartError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut process = command.spawn().map_err(StartError::Spawn)?;
    let pipes = (process.stdout.take(), process.stderr.take());
    let (Some(stdout), Some(stderr)) = pipes else {
        unreachable!("both streams were configured as pipes");
    };
    let started = Started {
        stdout: OwnedFd::from(stdout),
        stderr: OwnedFd::from(stderr),
        process,
    };
    for fd in [&started.stdout, &started.stderr] {
        if let Err(err) = set_nonblocking(fd) {
            let mut process = started.process;
            kill_and_reap(&mut process);
            return Err(StartError::Setup(err));
        }
    }
    Ok(started)
}

fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// A pidfd for the child: it becomes readable when the child exits, which is how the
/// supervisor learns of the exit without a `SIGCHLD` handler or a thread. `None` on kernels
/// without pidfds (before Linux 5.3): the caller polls instead.
pub(crate) fn exit_notifier(process: &Child) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(process.id()).ok()?)?;
    rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK).ok()
}

/// Reaps the child if it exited. `Ok(None)` while it runs; an error when someone else reaped
/// it (e.g. `SIGCHLD` set to `SIG_IGN` in the process).
pub(crate) fn try_reap(process: &mut Child) -> io::Result<Option<ExitReason>> {
    Ok(process.try_wait()?.map(exit_reason))
}

fn exit_reason(status: ExitStatus) -> ExitReason {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Exited(code),
        (None, Some(signal)) => ExitReason::Signaled(signal),
        // Neither exited nor signalled: only for stopped/continued statuses, which `wait`
        // without WUNTRACED does not report.
        (None, None) => ExitReason::Unknown,
    }
}

/// Sends `signal` to the child's process group. Called only before the group leader is
/// reaped, so its id cannot have been reused by an unrelated process group. A group that is
/// already gone is not an error.
pub(crate) fn signal_group(process: &Child, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(process.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    match rustix::process::kill_process_group(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// `SIGKILL` to the group, then a blocking reap (prompt: `SIGKILL` cannot be caught).
/// Returns how the child ended, `None` if it was reaped elsewhere.
pub(crate) fn kill_and_reap(process: &mut Child) -> Option<ExitReason> {
    let _ = signal_group(process, Signal::KILL);
    process.wait().ok().map(exit_reason)
}
