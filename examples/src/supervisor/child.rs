//! The supervisor's record of one running child: its process, its two output streams and the
//! watches and timers that drive them.

use std::os::fd::OwnedFd;
use std::process::Child as Process;
use std::time::{Duration, Instant};

use anyloop::{Timer, Watch};

use super::events::{ChildId, ExitReason, Stream};
use super::lines::{Line, LineSplitter};

/// One output pipe being read.
pub(crate) struct OutputStream {
    // Declared before `fd` so that it is dropped first: the watch is removed before its fd
    // closes (contract R53).
    _watch: Watch,
    fd: OwnedFd,
    splitter: LineSplitter,
}

/// What one read of a stream produced.
pub(crate) struct ReadOutcome {
    /// Complete lines (and, at the end of the stream, the unterminated last one).
    pub(crate) lines: Vec<Line>,
    /// The stream reached end of file or failed: it is finished.
    pub(crate) ended: bool,
    /// Bytes were read (the pipe may hold more).
    pub(crate) got_data: bool,
}

impl OutputStream {
    pub(crate) fn new(watch: Watch, fd: OwnedFd, max_line: usize) -> Self {
        OutputStream {
            _watch: watch,
            fd,
            splitter: LineSplitter::new(max_line),
        }
    }

    /// One bounded read: level-triggered delivery calls again while more is waiting, so the
    /// loop stays fair between children.
    pub(crate) fn read(&mut self, buffer: &mut [u8]) -> ReadOutcome {
        let mut lines = Vec::new();
        let (ended, got_data) = match rustix::io::read(&self.fd, &mut *buffer) {
            Ok(0) => (true, false),
            Ok(n) => {
                self.splitter.push(&buffer[..n], &mut lines);
                (false, true)
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => (false, false),
            // EIO and friends: nothing more will come from this pipe.
            Err(_) => (true, false),
        };
        if ended {
            lines.extend(self.splitter.finish());
        }
        ReadOutcome {
            lines,
            ended,
            got_data,
        }
    }

    /// Gives up on the stream (its writer outlived the child): what is already in the pipe
    /// is still read (a bounded amount), then the unterminated last line is handed out.
    pub(crate) fn abandon(mut self, buffer: &mut [u8]) -> Vec<Line> {
        const LAST_READS: usize = 16;
        let mut lines = Vec::new();
        for _ in 0..LAST_READS {
            let outcome = self.read(buffer);
            lines.extend(outcome.lines);
            if outcome.ended {
                return lines; // `read` already handed out the last line
            }
            if !outcome.got_data {
                break;
            }
        }
        lines.extend(self.splitter.finish());
        lines
    }
}

/// How the child's exit is noticed.
pub(crate) enum ExitWatch {
    /// A watch on the child's pidfd (and the pidfd, closed after the watch is removed).
    Pidfd { _watch: Watch, _pidfd: OwnedFd },
    /// A periodic timer that tries to reap the child.
    Poll { _timer: Timer },
}

/// Everything the supervisor keeps about one running child.
pub(crate) struct Child {
    pub(crate) id: ChildId,
    pub(crate) process: Process,
    pub(crate) started: Instant,
    /// Stdout and stderr, each `None` once read to the end (or abandoned).
    pub(crate) streams: [Option<OutputStream>; 2],
    /// Until the exit is noticed.
    pub(crate) exit_watch: Option<ExitWatch>,
    /// Set when the child has been reaped.
    pub(crate) reason: Option<ExitReason>,
    /// When it was reaped (the end of its `runtime`).
    pub(crate) reaped_at: Option<Instant>,
    /// [`Supervisor::kill`](super::Supervisor::kill) was called.
    pub(crate) kill_requested: bool,
    /// Starts a kill when the run time limit is reached.
    pub(crate) limit_timer: Option<Timer>,
    /// Escalates to `SIGKILL` when the grace period ends.
    pub(crate) kill_timer: Option<Timer>,
    /// After the exit: how long descendants may keep the pipes open.
    pub(crate) drain_timer: Option<Timer>,
    /// Periodic time-based progress, until the child prints its own.
    pub(crate) progress_timer: Option<Timer>,
    /// The prefix of the child's progress lines.
    pub(crate) progress_prefix: Option<String>,
    /// How long the child is expected to run (time-based progress).
    pub(crate) expected_duration: Option<Duration>,
    /// After the exit, how long to wait for the streams' end of file.
    pub(crate) drain_after_exit: Duration,
}

impl Child {
    pub(crate) fn stream_mut(&mut self, stream: Stream) -> &mut Option<OutputStream> {
        &mut self.streams[stream_index(stream)]
    }

    /// Reaped and both streams finished: time to report `SubprocessQuit`.
    pub(crate) fn is_finished(&self) -> bool {
        self.reason.is_some() && self.streams.iter().all(Option::is_none)
    }
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}
