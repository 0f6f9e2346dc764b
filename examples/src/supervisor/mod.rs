//! A child-process supervisor written against anyloop only: a real library on top of the
//! vtable and the typed [`Registry`].
//!
//! In the spirit of libguestfs's appliance handle, a [`Supervisor`] starts commands, reads
//! their stdout and stderr through fd watches, notices their exit through a pidfd watch, and
//! tells applications what happens through typed events ([`SupervisorEvent`]): [`Launched`],
//! one [`LogLine`] per line (stream and bytes), [`Progress`] (from the child's
//! `progress: N/M` lines, or estimated by a timer), [`SignalSent`], [`SubprocessQuit`] (exit
//! status or signal) and [`Close`]. It never blocks the loop and never starts a thread, so it
//! runs unchanged on the built-in loop, a GLib context or a calloop loop, with any number of
//! children on one loop.
//!
//! - Output is read a bounded chunk per readiness callback; lines are cut at
//!   [`SpawnOptions::max_line`]. `SubprocessQuit` comes after every line of its child.
//! - [`Supervisor::kill`] sends `SIGTERM` to the child's process group and `SIGKILL` when the
//!   grace period ends (a timer).
//! - Events are delivered on the loop's thread, asynchronously; the API may be called from
//!   any thread, and from inside event callbacks (through a [`SupervisorHandle`]).
//! - Each child runs in a process group of its own, so a terminal's Ctrl-C or hang-up
//!   reaches only the application, which decides (the `supervise` program kills its
//!   children with a grace period). An application that dies from a signal's default action
//!   never runs the supervisor's `Drop`, so its children keep running: handle the signals
//!   that should end it (an fd watch on a signal pipe does, see `supervise`).
//! - [`Supervisor::close`] (and `Drop`) kill the children still running with `SIGKILL` and
//!   reap them with a blocking `wait`: prompt, unless a child is stuck in the kernel
//!   (uninterruptible sleep). Nothing else the supervisor does blocks.
//!
//! ```
//! use std::process::Command;
//! use std::time::Duration;
//! use anyloop::Runner;
//! use anyloop_examples::supervisor::{LogLine, SpawnOptions, SubprocessQuit, Supervisor};
//!
//! let mut event_loop = anyloop_select::SelectLoop::new()?;
//! let supervisor = Supervisor::new(&event_loop.handle())?;
//! let events = supervisor.events();
//! events.on::<LogLine>(|line| {
//!     println!("{} {}: {}", line.child, line.stream, String::from_utf8_lossy(&line.bytes))
//! })?;
//! let quitter = event_loop.quitter();
//! events.on::<SubprocessQuit>(move |quit| {
//!     println!("{} {}", quit.child, quit.reason);
//!     quitter.quit();
//! })?;
//!
//! let mut command = Command::new("sh");
//! command.args(["-c", "echo out; echo err >&2; exit 3"]);
//! let child = supervisor.spawn(command, &SpawnOptions::default())?;
//! supervisor.kill_after(child, Duration::from_secs(10), Duration::from_secs(2))?;
//! event_loop.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod child;
mod engine;
mod error;
mod events;
mod lines;
mod process;
mod progress;

use std::fmt;
use std::process::Command;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyloop::{Loop, Registry};

use engine::Engine;
pub use error::SupervisorError;
pub use events::{
    signal_name, ChildId, Close, ExitReason, Launched, LogLine, Progress, ProgressSource,
    SignalSent, Stream, SubprocessQuit, SupervisorEvent, SupervisorKind,
};

/// How the supervisor notices that a child exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitDetection {
    /// A watch on the child's pidfd (Linux 5.3+): no signal handler, no thread, no delay.
    /// Falls back to polling every [`ExitDetection::DEFAULT_POLL`] where pidfds are missing.
    Pidfd,
    /// A timer that tries to reap the child this often (at most every millisecond).
    Poll(Duration),
}

impl ExitDetection {
    /// The polling period used when pidfds are not available.
    pub const DEFAULT_POLL: Duration = Duration::from_millis(50);
}

/// How one child is supervised.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// Longer lines are reported in pieces of this many bytes (marked `truncated`).
    pub max_line: usize,
    /// Lines starting with this prefix and then `N/M` or `N%` also produce a [`Progress`]
    /// event; `None` disables parsing.
    pub progress_prefix: Option<String>,
    /// When set, a timer reports [`Progress`] from the elapsed time against this duration
    /// (libguestfs-style progress for programs that print none), until the child prints a
    /// progress line of its own.
    pub expected_duration: Option<Duration>,
    /// How often the time-based progress is reported (at least every millisecond).
    pub progress_interval: Duration,
    /// After the child exits, how long to wait for its pipes to reach end of file: a
    /// descendant that inherited them may keep them open. After that, the streams are
    /// abandoned and `SubprocessQuit` is reported.
    pub drain_after_exit: Duration,
    /// How the exit is noticed.
    pub exit_detection: ExitDetection,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            max_line: 64 * 1024,
            progress_prefix: Some("progress:".to_owned()),
            expected_duration: None,
            progress_interval: Duration::from_millis(200),
            drain_after_exit: Duration::from_millis(500),
            exit_detection: ExitDetection::Pidfd,
        }
    }
}

/// Supervises child processes on one anyloop [`Loop`]; see the [module docs](self).
///
/// Dropping it (or [`close`](Self::close)) kills and reaps the children still running and
/// frees every registered callback.
pub struct Supervisor {
    engine: Arc<Engine>,
}

impl Supervisor {
    /// A supervisor on `lp`: its events are delivered on that loop's thread.
    ///
    /// # Errors
    /// [`SupervisorError::Loop`] if the registry cannot be created on the loop.
    pub fn new(lp: &Loop) -> Result<Supervisor, SupervisorError> {
        Ok(Supervisor {
            engine: Engine::new(lp.clone())?,
        })
    }

    /// Where applications register their callbacks.
    pub fn events(&self) -> &Registry<SupervisorEvent> {
        self.engine.events()
    }

    /// The loop the supervisor runs on.
    pub fn event_loop(&self) -> &Loop {
        self.engine.event_loop()
    }

    /// A weak handle for callbacks (holding the `Supervisor` itself in a callback would keep
    /// it alive through its own registry).
    pub fn handle(&self) -> SupervisorHandle {
        SupervisorHandle {
            engine: Arc::downgrade(&self.engine),
        }
    }

    /// Starts `command` with stdin from `/dev/null` and stdout/stderr watched, in a process
    /// group of its own. [`Launched`] follows on the loop.
    ///
    /// # Errors
    /// [`SupervisorError::Spawn`] when the program cannot be started (not found, ...);
    /// [`SupervisorError::Setup`] when its pipes cannot be made non-blocking and
    /// [`SupervisorError::Loop`] when the loop refuses its watches or timers (the child is
    /// then killed and reaped); [`SupervisorError::Closed`].
    pub fn spawn(
        &self,
        command: Command,
        options: &SpawnOptions,
    ) -> Result<ChildId, SupervisorError> {
        self.engine.spawn(command, options)
    }

    /// Sends `SIGTERM` to the child's process group, and `SIGKILL` if it is still running
    /// `grace` later (at once when `grace` is zero). [`SignalSent`] events report each signal.
    /// Returns `false` when the child already exited (its last output is still being read).
    ///
    /// # Errors
    /// [`SupervisorError::UnknownChild`] when it already ended or never existed;
    /// [`SupervisorError::Signal`] when the signal cannot be sent; [`SupervisorError::Loop`]
    /// when the grace timer cannot be added.
    pub fn kill(&self, child: ChildId, grace: Duration) -> Result<bool, SupervisorError> {
        self.engine.kill(child, grace)
    }

    /// Kills the child with `grace` if it still runs after `limit` (a timeout for the whole
    /// run; calling it again restarts the countdown). The timer goes with the child.
    ///
    /// # Errors
    /// [`SupervisorError::UnknownChild`] when it already ended or never existed;
    /// [`SupervisorError::Loop`] when the timer cannot be added.
    pub fn kill_after(
        &self,
        child: ChildId,
        limit: Duration,
        grace: Duration,
    ) -> Result<(), SupervisorError> {
        self.engine.kill_after(child, limit, grace)
    }

    /// Children started and not yet reported ended.
    pub fn running(&self) -> usize {
        self.engine.running()
    }

    /// Kills (`SIGKILL`) and reaps the children still running, delivers [`Close`]
    /// synchronously to its listeners, then frees every callback. Idempotent.
    ///
    /// # Errors
    /// [`SupervisorError::Loop`] if the registry's close failed (a `Close` callback panicked).
    pub fn close(&self) -> Result<(), SupervisorError> {
        self.engine.close()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.engine.close();
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

/// A weak handle on a [`Supervisor`], for use inside callbacks; every call fails with
/// [`SupervisorError::Closed`] once the supervisor is gone.
#[derive(Clone)]
pub struct SupervisorHandle {
    engine: Weak<Engine>,
}

impl SupervisorHandle {
    fn engine(&self) -> Result<Arc<Engine>, SupervisorError> {
        self.engine.upgrade().ok_or(SupervisorError::Closed)
    }

    /// As [`Supervisor::spawn`].
    ///
    /// # Errors
    /// As [`Supervisor::spawn`].
    pub fn spawn(
        &self,
        command: Command,
        options: &SpawnOptions,
    ) -> Result<ChildId, SupervisorError> {
        self.engine()?.spawn(command, options)
    }

    /// As [`Supervisor::kill`].
    ///
    /// # Errors
    /// As [`Supervisor::kill`].
    pub fn kill(&self, child: ChildId, grace: Duration) -> Result<bool, SupervisorError> {
        self.engine()?.kill(child, grace)
    }

    /// As [`Supervisor::kill_after`].
    ///
    /// # Errors
    /// As [`Supervisor::kill_after`].
    pub fn kill_after(
        &self,
        child: ChildId,
        limit: Duration,
        grace: Duration,
    ) -> Result<(), SupervisorError> {
        self.engine()?.kill_after(child, limit, grace)
    }

    /// As [`Supervisor::running`]; 0 once the supervisor is gone.
    pub fn running(&self) -> usize {
        self.engine.upgrade().map_or(0, |engine| engine.running())
    }
}

impl fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorHandle")
            .field("alive", &(self.engine.strong_count() > 0))
            .finish()
    }
}
