//! The supervisor's state machine: what happens when a child writes, exits, is killed or the
//! supervisor closes. Every entry point runs on the loop thread from a watch or timer
//! callback, or on any thread from the public API; all of them go through one lock.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use anyloop::{IoEvents, Loop, Registry, Schedule, Timer, TimerId, Watch};
use rustix::process::Signal;

use super::child::{Child, ExitWatch, OutputStream};
use super::error::SupervisorError;
use super::events::{
    ChildId, Close, ExitReason, Launched, LogLine, Progress, ProgressSource, SignalSent, Stream,
    SubprocessQuit, SupervisorEvent,
};
use super::lines::Line;
use super::process;
use super::progress::parse_progress;
use super::{ExitDetection, SpawnOptions};

/// Bytes read per readiness callback.
const READ_CHUNK: usize = 64 * 1024;

/// The shortest period of the supervisor's repeating timers: a 0-interval timer would fire
/// on every loop iteration and keep the loop spinning.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// Shared by the [`Supervisor`](super::Supervisor), its handles and its callbacks (which hold
/// it weakly, so dropping the supervisor ends everything).
pub(crate) struct Engine {
    lp: Loop,
    events: Registry<SupervisorEvent>,
    state: Mutex<State>,
}

struct State {
    next_child: u64,
    children: BTreeMap<ChildId, Child>,
    closed: bool,
    read_buffer: Vec<u8>,
}

impl Engine {
    pub(crate) fn new(lp: Loop) -> Result<Arc<Engine>, SupervisorError> {
        let events = Registry::with_loop(lp.clone())?;
        Ok(Arc::new(Engine {
            lp,
            events,
            state: Mutex::new(State {
                next_child: 1,
                children: BTreeMap::new(),
                closed: false,
                read_buffer: vec![0; READ_CHUNK],
            }),
        }))
    }

    pub(crate) fn events(&self) -> &Registry<SupervisorEvent> {
        &self.events
    }

    pub(crate) fn event_loop(&self) -> &Loop {
        &self.lp
    }

    /// A panicking application callback must not wedge the supervisor: the state is only
    /// ever changed in whole steps, so a poisoned lock still holds consistent data.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn running(&self) -> usize {
        self.lock().children.len()
    }

    pub(crate) fn spawn(
        self: &Arc<Self>,
        command: Command,
        options: &SpawnOptions,
    ) -> Result<ChildId, SupervisorError> {
        if self.lock().closed {
            return Err(SupervisorError::Closed);
        }
        let display = display_command(&command);
        let started = process::start(command).map_err(|error| match error {
            process::StartError::Spawn(source) => SupervisorError::Spawn {
                program: display.clone(),
                source,
            },
            process::StartError::Setup(source) => SupervisorError::Setup {
                program: display.clone(),
                what: "non-blocking output pipes",
                source,
            },
        })?;
        let spawned_at = Instant::now();
        let mut state = self.lock();
        let id = ChildId(state.next_child);
        state.next_child += 1;
        let process::Started {
            mut process,
            stdout,
            stderr,
        } = started;
        if state.closed {
            process::kill_and_reap(&mut process);
            return Err(SupervisorError::Closed);
        }
        let pid = process.id();
        // Until the child is in the table, a failure must kill and reap it here.
        let setup = (|| {
            let stdout_watch = self.watch_stream(id, Stream::Stdout, &stdout)?;
            let stderr_watch = self.watch_stream(id, Stream::Stderr, &stderr)?;
            let exit_watch = self.watch_exit(id, &process, options.exit_detection)?;
            let progress_timer = match options.expected_duration {
                Some(expected) if !expected.is_zero() => {
                    Some(self.progress_timer(id, options.progress_interval.max(MIN_PERIOD))?)
                }
                _ => None,
            };
            Ok::<_, anyloop::Error>((stdout_watch, stderr_watch, exit_watch, progress_timer))
        })();
        let (stdout_watch, stderr_watch, exit_watch, progress_timer) = match setup {
            Ok(parts) => parts,
            Err(err) => {
                process::kill_and_reap(&mut process);
                return Err(err.into());
            }
        };
        state.children.insert(
            id,
            Child {
                id,
                process,
                started: spawned_at,
                streams: [
                    Some(OutputStream::new(stdout_watch, stdout, options.max_line)),
                    Some(OutputStream::new(stderr_watch, stderr, options.max_line)),
                ],
                exit_watch: Some(exit_watch),
                reason: None,
                reaped_at: None,
                kill_requested: false,
                limit_timer: None,
                kill_timer: None,
                drain_timer: None,
                progress_timer,
                progress_prefix: options.progress_prefix.clone(),
                expected_duration: options.expected_duration,
                drain_after_exit: options.drain_after_exit,
            },
        );
        self.events.emit(Launched {
            child: id,
            pid,
            command: display,
        });
        Ok(id)
    }

    fn watch_stream(
        self: &Arc<Self>,
        child: ChildId,
        stream: Stream,
        fd: &impl std::os::fd::AsRawFd,
    ) -> anyloop::Result<Watch> {
        let engine = Arc::downgrade(self);
        self.lp
            .watch(fd.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
                on_engine(&engine, |e| e.on_output(child, stream))
            })
            .map_err(anyloop::Error::from)
    }

    fn watch_exit(
        self: &Arc<Self>,
        child: ChildId,
        process: &std::process::Child,
        detection: ExitDetection,
    ) -> anyloop::Result<ExitWatch> {
        let poll_every = match detection {
            ExitDetection::Pidfd => match process::exit_notifier(process) {
                Some(pidfd) => {
                    let engine = Arc::downgrade(self);
                    let watch = self.lp.watch(
                        std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                        IoEvents::READABLE,
                        move |_, _, _| on_engine(&engine, |e| e.on_exit(child)),
                    )?;
                    return Ok(ExitWatch::Pidfd {
                        _watch: watch,
                        _pidfd: pidfd,
                    });
                }
                None => ExitDetection::DEFAULT_POLL,
            },
            ExitDetection::Poll(every) => every.max(MIN_PERIOD),
        };
        let engine = Arc::downgrade(self);
        let timer = self.lp.timer(Schedule::Every(poll_every), move |_| {
            on_engine(&engine, |e| e.on_exit(child))
        })?;
        Ok(ExitWatch::Poll { _timer: timer })
    }

    fn progress_timer(self: &Arc<Self>, child: ChildId, every: Duration) -> anyloop::Result<Timer> {
        let engine = Arc::downgrade(self);
        self.lp
            .timer(Schedule::Every(every), move |_| {
                on_engine(&engine, |e| e.on_progress_tick(child))
            })
            .map_err(anyloop::Error::from)
    }

    /// A stream is readable (or at end of file, or failed).
    fn on_output(&self, child: ChildId, stream: Stream) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(record) = state.children.get_mut(&child) else {
            return;
        };
        let Some(output) = record.stream_mut(stream) else {
            return;
        };
        let outcome = output.read(&mut state.read_buffer);
        if outcome.ended {
            *record.stream_mut(stream) = None;
        }
        self.emit_lines(record, stream, outcome.lines);
        self.finish_if_done(state, child);
    }

    fn emit_lines(&self, record: &mut Child, stream: Stream, lines: Vec<Line>) {
        for line in lines {
            let progress = match (&record.progress_prefix, line.truncated) {
                (Some(prefix), false) => parse_progress(&line.bytes, prefix),
                _ => None,
            };
            self.events.emit(LogLine {
                child: record.id,
                stream,
                bytes: line.bytes,
                truncated: line.truncated,
            });
            if let Some((position, total)) = progress {
                // The child reports its own progress: the time-based estimate stops.
                record.progress_timer = None;
                self.events.emit(Progress {
                    child: record.id,
                    position,
                    total,
                    source: ProgressSource::Output,
                });
            }
        }
    }

    /// The child's pidfd became readable, or the poll timer fired.
    fn on_exit(self: &Arc<Self>, child: ChildId) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(record) = state.children.get_mut(&child) else {
            return;
        };
        let reason = match process::try_reap(&mut record.process) {
            Ok(None) => return,
            Ok(Some(reason)) => reason,
            Err(_) => ExitReason::Unknown,
        };
        record.reason = Some(reason);
        record.reaped_at = Some(Instant::now());
        record.exit_watch = None;
        record.limit_timer = None;
        record.kill_timer = None;
        record.progress_timer = None;
        if record.streams.iter().any(Option::is_some) {
            // Usually the pipes reach end of file right after the exit; a descendant that
            // inherited them may keep them open: stop waiting for it after a while (once).
            let engine = Arc::downgrade(self);
            let drain = record.drain_after_exit;
            match self.lp.timer(Schedule::Once(drain), move |_| {
                on_engine(&engine, |e| e.on_drain_expired(child))
            }) {
                Ok(timer) => record.drain_timer = Some(timer),
                // Without a timer the streams cannot be waited for: give up on them now.
                Err(_) => self.abandon_streams(record, &mut state.read_buffer),
            }
        }
        self.finish_if_done(state, child);
    }

    /// The child exited long enough ago: its pipes are held open by someone else.
    fn on_drain_expired(&self, child: ChildId) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(record) = state.children.get_mut(&child) else {
            return;
        };
        self.abandon_streams(record, &mut state.read_buffer);
        self.finish_if_done(state, child);
    }

    fn abandon_streams(&self, record: &mut Child, buffer: &mut [u8]) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(output) = record.stream_mut(stream).take() {
                let lines = output.abandon(buffer);
                self.emit_lines(record, stream, lines);
            }
        }
    }

    fn on_progress_tick(&self, child: ChildId) {
        let state = self.lock();
        let Some(record) = state.children.get(&child) else {
            return;
        };
        let Some(expected) = record.expected_duration else {
            return;
        };
        let total = millis(expected).max(1);
        // An estimate never claims completion: only the exit does.
        let position = millis(record.started.elapsed()).min(total - 1);
        self.events.emit(Progress {
            child,
            position,
            total,
            source: ProgressSource::Timer,
        });
    }

    /// Reports `SubprocessQuit` and forgets the child once it is reaped and its output read.
    fn finish_if_done(&self, state: &mut State, child: ChildId) {
        if !state.children.get(&child).is_some_and(Child::is_finished) {
            return;
        }
        let Some(record) = state.children.remove(&child) else {
            return;
        };
        self.events.emit(SubprocessQuit {
            child,
            reason: record.reason.unwrap_or(ExitReason::Unknown),
            runtime: record
                .reaped_at
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(record.started),
            killed: record.kill_requested,
        });
        // Dropping the record removes its remaining timers (their frees run later, on the
        // loop thread).
    }

    /// `SIGTERM` now and `SIGKILL` after `grace` (at once when `grace` is zero). Returns
    /// `false` when the child already exited and only its output is still being read.
    pub(crate) fn kill(
        self: &Arc<Self>,
        child: ChildId,
        grace: Duration,
    ) -> Result<bool, SupervisorError> {
        let mut state = self.lock();
        let record = state
            .children
            .get_mut(&child)
            .ok_or(SupervisorError::UnknownChild(child))?;
        if record.reason.is_some() {
            return Ok(false);
        }
        let first = if grace.is_zero() {
            Signal::KILL
        } else {
            Signal::TERM
        };
        send(record, first, false, &self.events)?;
        record.kill_requested = true;
        if !grace.is_zero() && record.kill_timer.is_none() {
            let engine = Arc::downgrade(self);
            record.kill_timer = Some(
                self.lp
                    .timer(Schedule::Once(grace), move |id| {
                        on_engine(&engine, |e| e.on_grace_expired(child, id))
                    })
                    .map_err(anyloop::Error::from)?,
            );
        }
        Ok(true)
    }

    /// Arms (or re-arms) the child's run time limit.
    pub(crate) fn kill_after(
        self: &Arc<Self>,
        child: ChildId,
        limit: Duration,
        grace: Duration,
    ) -> Result<(), SupervisorError> {
        let mut state = self.lock();
        let record = state
            .children
            .get_mut(&child)
            .ok_or(SupervisorError::UnknownChild(child))?;
        if record.reason.is_some() {
            return Ok(());
        }
        let engine = Arc::downgrade(self);
        record.limit_timer = Some(
            self.lp
                .timer(Schedule::Once(limit), move |_| {
                    on_engine(&engine, |e| e.on_limit_reached(child, grace))
                })
                .map_err(anyloop::Error::from)?,
        );
        Ok(())
    }

    fn on_limit_reached(self: &Arc<Self>, child: ChildId, grace: Duration) {
        if let Some(record) = self.lock().children.get_mut(&child) {
            record.limit_timer = None;
        }
        // The child may have ended in between: then there is nothing to kill.
        let _ = self.kill(child, grace);
    }

    fn on_grace_expired(&self, child: ChildId, _timer: TimerId) {
        let mut state = self.lock();
        let Some(record) = state.children.get_mut(&child) else {
            return;
        };
        // A one-shot, already disabled; dropping its guard removes it, which is allowed from
        // its own callback (contract R16), and lets a later `kill` arm a new one.
        record.kill_timer = None;
        if record.reason.is_none() {
            // Nobody to tell when this fails: the group is gone or unreachable either way.
            let _ = send(record, Signal::KILL, true, &self.events);
        }
    }

    /// Kills (`SIGKILL`) and reaps every child still running, drops every watch and timer,
    /// tells `Close` listeners synchronously, then frees every registered callback.
    pub(crate) fn close(&self) -> Result<(), SupervisorError> {
        let children = {
            let mut state = self.lock();
            if state.closed {
                return Ok(());
            }
            state.closed = true;
            std::mem::take(&mut state.children)
        };
        let mut killed_children = 0;
        for (_, mut record) in children {
            if record.reason.is_none() {
                process::kill_and_reap(&mut record.process);
                killed_children += 1;
            }
        }
        self.events.close_with(Close { killed_children })?;
        Ok(())
    }
}

fn send(
    record: &Child,
    signal: Signal,
    escalated: bool,
    events: &Registry<SupervisorEvent>,
) -> Result<(), SupervisorError> {
    process::signal_group(&record.process, signal).map_err(|source| SupervisorError::Signal {
        child: record.id,
        signal: signal.as_raw(),
        source,
    })?;
    events.emit(SignalSent {
        child: record.id,
        signal: signal.as_raw(),
        escalated,
    });
    Ok(())
}

fn on_engine(engine: &Weak<Engine>, f: impl FnOnce(&Arc<Engine>)) {
    if let Some(engine) = engine.upgrade() {
        f(&engine);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `program arg1 'arg two'`: for display only.
fn display_command(command: &Command) -> String {
    let words = std::iter::once(command.get_program()).chain(command.get_args());
    let quoted: Vec<String> = words
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                word.into_owned()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect();
    quoted.join(" ")
}
