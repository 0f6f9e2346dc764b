//! A line relay with an idle timeout, written against the anyloop vtable only.
//!
//! [`LineRelay`] copies text from an input fd to an output fd a line at a time, numbering the
//! lines, and reports what happens through a callback ([`RelayEvent`]). It never blocks and
//! never spawns a thread: it is driven by two fd watches and one timer on whatever
//! [`Loop`] the application gives it, which is the point of the example. It shows the
//! patterns a real library needs:
//!
//! - **Interest toggling**: the output watch asks for `WRITABLE` only while output is pending,
//!   and the input watch is paused (empty interest) while too much output is queued
//!   (backpressure), then resumed.
//! - **Timer restart**: the idle timer is a one-shot ([`Schedule::Once`]): it fires once per
//!   quiet spell and is then disabled by the loop ([R27](anyloop::contract#r27)); every chunk
//!   of input re-arms it with `update_timer`, which restarts the countdown
//!   ([R29](anyloop::contract#r29)).
//! - **Clean teardown**: watches are removed before their fds are closed
//!   ([R53](anyloop::contract#r53)): stopping removes every registration first, then closes
//!   both fds at once, so the peers see end of file or a broken pipe without waiting for the
//!   relay object to be dropped.
//! - **No lock around user code**: events are handed to the application's callback after the
//!   relay's own lock is released, so the callback may call back into the relay.
//! - **Any-thread or thread-bound reports**: [`LineRelay::start`] takes a `Send` callback and
//!   may be called from any thread; [`LineRelay::start_local`] takes one that need not be
//!   `Send` (it may capture an `Rc` or GTK widgets) and registers thread-bound callbacks
//!   ([`WatchCallback::local`], [`TimerCallback::local`]) on the loop's own thread: the
//!   application's state is updated straight from the callback, with no channel and no lock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyloop::{IoEvents, Loop, Schedule, TimerCallback, TimerId, WatchCallback, WatchId};
use rustix::fs::OFlags;

/// Bytes read from the input per readiness callback; level-triggered delivery calls again if
/// more is waiting, so one bounded read per call keeps the loop fair.
const READ_CHUNK: usize = 64 * 1024;

/// How the relay behaves.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Report [`RelayEvent::Idle`] after this long without input; `None` never does.
    pub idle_timeout: Option<Duration>,
    /// Prefix every line with its number (like `cat -n`).
    pub number_lines: bool,
    /// Longer lines are cut into pieces of this many bytes (each reported as a line), so a
    /// peer that never sends a newline cannot make the relay buffer without bound.
    pub max_line: usize,
    /// Input is paused while more than this many bytes wait to be written (backpressure).
    pub max_pending_output: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            idle_timeout: Some(Duration::from_secs(10)),
            number_lines: true,
            max_line: 64 * 1024,
            max_pending_output: 1024 * 1024,
        }
    }
}

/// What the relay reports to the application, on the loop thread.
#[derive(Debug)]
pub enum RelayEvent {
    /// A line was queued for output (`bytes` without the newline and the number prefix).
    Line {
        /// 1-based line number.
        number: u64,
        /// Length of the line's text in bytes.
        bytes: usize,
        /// True when the line was cut at [`RelayConfig::max_line`].
        truncated: bool,
    },
    /// No input arrived for the configured idle timeout. Reported once per quiet spell.
    Idle {
        /// The configured timeout.
        after: Duration,
    },
    /// Input paused because too much output is pending (true) or resumed (false).
    Backpressure {
        /// Whether input is now paused.
        paused: bool,
    },
    /// The input reached end of file and every line was written. The relay has stopped.
    Finished {
        /// Lines relayed.
        lines: u64,
        /// Bytes read from the input.
        bytes: u64,
    },
    /// Reading or writing failed; the relay has stopped.
    Failed {
        /// Which side failed: `"read"` or `"write"`.
        side: &'static str,
        /// The OS error.
        error: io::Error,
    },
}

/// The idle timeout the example programs use in `--demo` mode.
pub const DEMO_IDLE_TIMEOUT: Duration = Duration::from_millis(800);

/// Reads an `--idle SECONDS` option as the example programs take it: `0` disables the idle
/// report, a positive number of seconds sets it.
///
/// # Errors
/// A message naming the bad value, for a negative, infinite or NaN number.
///
/// ```
/// use anyloop_examples::relay::idle_timeout_from_secs;
/// use std::time::Duration;
/// assert_eq!(idle_timeout_from_secs(0.0), Ok(None));
/// assert_eq!(idle_timeout_from_secs(1.5), Ok(Some(Duration::from_millis(1500))));
/// assert!(idle_timeout_from_secs(-1.0).is_err());
/// assert!(idle_timeout_from_secs(f64::NAN).is_err());
/// ```
pub fn idle_timeout_from_secs(secs: f64) -> Result<Option<Duration>, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "--idle must be a non-negative number of seconds, got {secs}"
        ));
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

/// Where the relay's reports go: the application's callback, `Send` or thread-bound. The
/// relay's own watch and timer callbacks are built from it, and are `Send` exactly when it is.
trait Sink: Clone + 'static {
    /// Hands `reports` to the application's callback, in order.
    fn deliver(&self, reports: Vec<RelayEvent>);
}

/// The callback of [`LineRelay::start`]: may be called on any thread, so it sits behind a
/// mutex.
#[derive(Clone)]
struct AnyThreadSink(Arc<Mutex<Box<OnEvent>>>);

/// The application's report callback, any-thread.
type OnEvent = dyn FnMut(RelayEvent) + Send;

impl Sink for AnyThreadSink {
    fn deliver(&self, reports: Vec<RelayEvent>) {
        if reports.is_empty() {
            return;
        }
        let mut sink = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for report in reports {
            (sink)(report);
        }
    }
}

/// The callback of [`LineRelay::start_local`]: only ever called on the loop's thread (the
/// relay's callbacks that hold it are thread-bound), so a `RefCell` is enough.
#[derive(Clone)]
struct LocalSink(Rc<RefCell<Box<OnEventLocal>>>);

/// The application's report callback, thread-bound.
type OnEventLocal = dyn FnMut(RelayEvent);

impl Sink for LocalSink {
    fn deliver(&self, reports: Vec<RelayEvent>) {
        if reports.is_empty() {
            return;
        }
        // Never re-entered: anyloop never runs a callback inside another one, nor inside an
        // operation (contract R42).
        let mut sink = self.0.borrow_mut();
        for report in reports {
            (sink)(report);
        }
    }
}

/// The relay's three callbacks, before they are wrapped as `Send` or thread-bound.
fn input_callback<S: Sink>(
    shared: Arc<Mutex<Shared>>,
    sink: S,
) -> impl FnMut(WatchId, RawFd, IoEvents) + 'static {
    move |_id, _fd, events| sink.deliver(on_input_ready(&shared, events))
}

fn output_callback<S: Sink>(
    shared: Arc<Mutex<Shared>>,
    sink: S,
) -> impl FnMut(WatchId, RawFd, IoEvents) + 'static {
    move |_id, _fd, events| sink.deliver(on_output_ready(&shared, events))
}

fn idle_callback<S: Sink>(sink: S, after: Duration) -> impl FnMut(TimerId) + 'static {
    // A one-shot: the loop disabled the timer before this runs, so there is one report per
    // quiet spell until input re-arms it.
    move |_id| sink.deliver(vec![RelayEvent::Idle { after }])
}

/// The relay's callbacks, wrapped, ready to name and register.
struct Callbacks {
    input: WatchCallback,
    output: WatchCallback,
    idle: Option<TimerCallback>,
}

/// Counters a caller can read at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Lines relayed so far.
    pub lines: u64,
    /// Bytes read so far.
    pub bytes_in: u64,
    /// Bytes written so far (prefixes included).
    pub bytes_out: u64,
    /// Bytes waiting to be written.
    pub pending_output: usize,
}

/// The two fds, open while the relay runs. Their status flags are restored when they close:
/// on a terminal `O_NONBLOCK` is shared with the shell.
struct Fds {
    input: OwnedFd,
    output: OwnedFd,
    /// The flags before we set `O_NONBLOCK`, where we had to change them.
    restore_flags: [Option<OFlags>; 2],
}

impl Drop for Fds {
    fn drop(&mut self) {
        for (fd, flags) in [
            (&self.input, self.restore_flags[0]),
            (&self.output, self.restore_flags[1]),
        ] {
            if let Some(flags) = flags {
                let _ = rustix::fs::fcntl_setfl(fd, flags);
            }
        }
    }
}

/// State shared by the relay's callbacks and the [`LineRelay`] object.
struct Shared {
    lp: Loop,
    config: RelayConfig,
    /// `None` once stopped: closed right after the watches were removed
    /// ([R53](anyloop::contract#r53)).
    fds: Option<Fds>,
    input_watch: Option<WatchId>,
    output_watch: Option<WatchId>,
    idle_timer: Option<TimerId>,
    partial_line: Vec<u8>,
    pending: VecDeque<u8>,
    input_paused: bool,
    input_done: bool,
    stats: RelayStats,
}

/// A running relay. Dropping it stops the relay (its watches and timer are removed).
///
/// ```no_run
/// use anyloop_examples::relay::{LineRelay, RelayConfig};
/// # fn demo(lp: &anyloop::Loop, input: std::os::fd::OwnedFd, output: std::os::fd::OwnedFd)
/// #     -> anyloop::Result<()> {
/// let relay = LineRelay::start(lp, input, output, RelayConfig::default(), |event| {
///     eprintln!("relay: {event:?}");
/// })?;
/// # drop(relay); Ok(()) }
/// ```
pub struct LineRelay {
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for LineRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineRelay")
            .field("stats", &self.stats())
            .finish()
    }
}

impl LineRelay {
    /// Starts relaying from `input` to `output` on `lp`, reporting to `on_event`, which may
    /// be called on the loop's thread whichever thread this is (it must be `Send`).
    ///
    /// Both fds are switched to non-blocking mode (and back when the relay is done). Regular
    /// files work too: they are always ready, as under poll(2).
    ///
    /// # Errors
    /// Any vtable error from registering the watches or the timer (for example
    /// [`anyloop::Error::InvalidFd`]); nothing stays registered on error.
    pub fn start(
        lp: &Loop,
        input: OwnedFd,
        output: OwnedFd,
        config: RelayConfig,
        on_event: impl FnMut(RelayEvent) + Send + 'static,
    ) -> anyloop::Result<LineRelay> {
        let sink = AnyThreadSink(Arc::new(Mutex::new(Box::new(on_event))));
        let idle = config.idle_timeout;
        LineRelay::start_with(lp, input, output, config, |shared| Callbacks {
            input: WatchCallback::new(input_callback(Arc::clone(shared), sink.clone())),
            output: WatchCallback::new(output_callback(Arc::clone(shared), sink.clone())),
            idle: idle.map(|after| TimerCallback::new(idle_callback(sink, after))),
        })
    }

    /// As [`start`](Self::start), with an `on_event` that need not be `Send`: it may capture
    /// an `Rc`, a `RefCell` or GTK widgets and update them directly. The relay's callbacks are
    /// then thread-bound ([`WatchCallback::local`]): they are only ever called and dropped on
    /// this thread, which must be `lp`'s loop thread.
    ///
    /// ```
    /// use anyloop::Runner;
    /// use anyloop_examples::relay::{LineRelay, RelayConfig, RelayEvent};
    /// use std::{cell::Cell, io::Write, rc::Rc};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mut lp = anyloop_backends::LoopChoice::Select.create()?;
    /// let (input, mut feed) = std::io::pipe()?;
    /// let (_out, output) = std::io::pipe()?;
    /// let lines = Rc::new(Cell::new(0)); // not `Send`
    /// let seen = lines.clone();
    /// let config = RelayConfig { idle_timeout: None, ..RelayConfig::default() };
    /// let _relay = LineRelay::start_local(&lp.handle(), input.into(), output.into(), config,
    ///     move |event| if let RelayEvent::Line { .. } = event { seen.set(seen.get() + 1) })?;
    /// feed.write_all(b"one\ntwo\n")?;
    /// lp.run_until(None, &mut || lines.get() == 2)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`WrongThread`](anyloop::Error::WrongThread) when called off the loop's thread (or on
    /// a backend that cannot name its loop thread); otherwise as [`start`](Self::start).
    pub fn start_local(
        lp: &Loop,
        input: OwnedFd,
        output: OwnedFd,
        config: RelayConfig,
        on_event: impl FnMut(RelayEvent) + 'static,
    ) -> anyloop::Result<LineRelay> {
        let sink = LocalSink(Rc::new(RefCell::new(Box::new(on_event))));
        let idle = config.idle_timeout;
        LineRelay::start_with(lp, input, output, config, |shared| Callbacks {
            input: WatchCallback::local(input_callback(Arc::clone(shared), sink.clone())),
            output: WatchCallback::local(output_callback(Arc::clone(shared), sink.clone())),
            idle: idle.map(|after| TimerCallback::local(idle_callback(sink, after))),
        })
    }

    fn start_with(
        lp: &Loop,
        input: OwnedFd,
        output: OwnedFd,
        config: RelayConfig,
        callbacks: impl FnOnce(&Arc<Mutex<Shared>>) -> Callbacks,
    ) -> anyloop::Result<LineRelay> {
        let restore_flags = [set_nonblocking(&input), set_nonblocking(&output)];
        let (input_fd, output_fd) = (input.as_raw_fd(), output.as_raw_fd());
        let idle = config.idle_timeout;
        let shared = Arc::new(Mutex::new(Shared {
            lp: lp.clone(),
            config,
            fds: Some(Fds {
                input,
                output,
                restore_flags,
            }),
            input_watch: None,
            output_watch: None,
            idle_timer: None,
            partial_line: Vec::new(),
            pending: VecDeque::new(),
            input_paused: false,
            input_done: false,
            stats: RelayStats::default(),
        }));
        // From here on, dropping `relay` on an error removes what was registered.
        let relay = LineRelay {
            shared: Arc::clone(&shared),
        };
        let Callbacks {
            input,
            output,
            idle: idle_callback,
        } = callbacks(&shared);

        let input_watch = lp.add_watch(input_fd, IoEvents::READABLE, input.named("relay-input"))?;
        lock(&shared).input_watch = Some(input_watch);

        // Added disabled: it is switched on only while output is pending.
        let output_watch =
            lp.add_watch(output_fd, IoEvents::empty(), output.named("relay-output"))?;
        lock(&shared).output_watch = Some(output_watch);

        if let (Some(after), Some(callback)) = (idle, idle_callback) {
            let timer = lp.add_timer(Schedule::Once(after), callback.named("relay-idle"))?;
            lock(&shared).idle_timer = Some(timer);
        }
        Ok(relay)
    }

    /// Current counters.
    pub fn stats(&self) -> RelayStats {
        let state = lock(&self.shared);
        RelayStats {
            pending_output: state.pending.len(),
            ..state.stats
        }
    }

    /// True once the relay stopped (finished, failed or stopped by the caller).
    pub fn is_stopped(&self) -> bool {
        let state = lock(&self.shared);
        state.input_watch.is_none() && state.output_watch.is_none() && state.idle_timer.is_none()
    }

    /// Stops relaying now; unwritten output is dropped. Idempotent.
    pub fn stop(&self) {
        stop(&mut lock(&self.shared));
    }
}

impl Drop for LineRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic inside one of our callbacks cannot leave the state half-updated in a way that
    // matters more than stopping, so keep going with the inner value.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sets `O_NONBLOCK` and returns the previous flags if they had to change.
fn set_nonblocking(fd: &OwnedFd) -> Option<OFlags> {
    let flags = rustix::fs::fcntl_getfl(fd).ok()?;
    if flags.contains(OFlags::NONBLOCK) {
        return None;
    }
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK).ok()?;
    Some(flags)
}

/// Removes every registration, then closes the fds (a watch is removed before its fd closes,
/// [R53](anyloop::contract#r53)).
fn stop(state: &mut Shared) {
    if let Some(id) = state.input_watch.take() {
        let _ = state.lp.remove_watch(id);
    }
    if let Some(id) = state.output_watch.take() {
        let _ = state.lp.remove_watch(id);
    }
    if let Some(id) = state.idle_timer.take() {
        let _ = state.lp.remove_timer(id);
    }
    state.fds = None;
}

fn on_input_ready(shared: &Mutex<Shared>, events: IoEvents) -> Vec<RelayEvent> {
    let mut state = lock(shared);
    let mut reports = Vec::new();
    let Some(fds) = state
        .fds
        .as_ref()
        .filter(|_| !state.input_done && state.input_watch.is_some())
    else {
        return reports;
    };
    let mut buf = vec![0u8; READ_CHUNK];
    match rustix::io::read(&fds.input, &mut buf[..]) {
        Ok(0) => end_of_input(&mut state, &mut reports),
        Ok(n) => {
            state.stats.bytes_in += n as u64;
            if let (Some(timer), Some(after)) = (state.idle_timer, state.config.idle_timeout) {
                // Re-arms the one-shot and restarts its countdown (R29).
                let _ = state.lp.update_timer(timer, Schedule::Once(after));
            }
            split_lines(&mut state, &buf[..n], &mut reports);
            after_queueing(&mut state, &mut reports);
        }
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
            // Spurious readiness is allowed (contract R14); HANGUP with nothing left to read
            // shows up as a 0-byte read on the next call.
        }
        Err(errno) if events.contains(IoEvents::HANGUP) && errno == rustix::io::Errno::IO => {
            end_of_input(&mut state, &mut reports)
        }
        Err(errno) => {
            stop(&mut state);
            reports.push(RelayEvent::Failed {
                side: "read",
                error: errno.into(),
            });
        }
    }
    reports
}

fn split_lines(state: &mut Shared, mut data: &[u8], reports: &mut Vec<RelayEvent>) {
    while !data.is_empty() {
        let room = state.config.max_line.max(1) - state.partial_line.len();
        match data.iter().take(room).position(|&b| b == b'\n') {
            Some(end) => {
                state.partial_line.extend_from_slice(&data[..end]);
                data = &data[end + 1..];
                emit_line(state, false, reports);
            }
            None if data.len() >= room => {
                state.partial_line.extend_from_slice(&data[..room]);
                data = &data[room..];
                emit_line(state, true, reports);
            }
            None => {
                state.partial_line.extend_from_slice(data);
                data = &[];
            }
        }
    }
}

fn emit_line(state: &mut Shared, truncated: bool, reports: &mut Vec<RelayEvent>) {
    state.stats.lines += 1;
    let number = state.stats.lines;
    let line = std::mem::take(&mut state.partial_line);
    if state.config.number_lines {
        state.pending.extend(format!("{number:6}  ").as_bytes());
    }
    state.pending.extend(&line);
    state.pending.push_back(b'\n');
    reports.push(RelayEvent::Line {
        number,
        bytes: line.len(),
        truncated,
    });
    state.partial_line = line;
    state.partial_line.clear();
}

fn end_of_input(state: &mut Shared, reports: &mut Vec<RelayEvent>) {
    state.input_done = true;
    if !state.partial_line.is_empty() {
        emit_line(state, false, reports);
    }
    // The input watch has nothing more to say; the idle timer neither.
    if let Some(id) = state.input_watch.take() {
        let _ = state.lp.remove_watch(id);
    }
    if let Some(id) = state.idle_timer.take() {
        let _ = state.lp.remove_timer(id);
    }
    after_queueing(state, reports);
}

/// Arms the output watch when something is pending, applies backpressure, and finishes when
/// the input is done and everything was written.
fn after_queueing(state: &mut Shared, reports: &mut Vec<RelayEvent>) {
    if let Some(id) = state.output_watch {
        let interest = if state.pending.is_empty() {
            IoEvents::empty()
        } else {
            IoEvents::WRITABLE
        };
        let _ = state.lp.update_watch(id, interest);
    }
    if let Some(id) = state.input_watch {
        let limit = state.config.max_pending_output;
        if !state.input_paused && state.pending.len() > limit {
            state.input_paused = true;
            let _ = state.lp.update_watch(id, IoEvents::empty());
            reports.push(RelayEvent::Backpressure { paused: true });
        } else if state.input_paused && state.pending.len() <= limit / 2 {
            state.input_paused = false;
            let _ = state.lp.update_watch(id, IoEvents::READABLE);
            reports.push(RelayEvent::Backpressure { paused: false });
        }
    }
    if state.input_done && state.pending.is_empty() && state.output_watch.is_some() {
        let (lines, bytes) = (state.stats.lines, state.stats.bytes_in);
        stop(state);
        reports.push(RelayEvent::Finished { lines, bytes });
    }
}

fn on_output_ready(shared: &Mutex<Shared>, events: IoEvents) -> Vec<RelayEvent> {
    let mut state = lock(shared);
    let mut reports = Vec::new();
    if state.output_watch.is_none() || state.fds.is_none() {
        return reports;
    }
    if events.intersects(IoEvents::ERROR | IoEvents::HANGUP) && !events.contains(IoEvents::WRITABLE)
    {
        stop(&mut state);
        let error = io::Error::new(io::ErrorKind::BrokenPipe, "output closed by the reader");
        reports.push(RelayEvent::Failed {
            side: "write",
            error,
        });
        return reports;
    }
    let written = match &state.fds {
        Some(fds) => rustix::io::write(fds.output.as_fd(), state.pending.as_slices().0),
        None => return reports,
    };
    match written {
        Ok(n) => {
            state.pending.drain(..n);
            state.stats.bytes_out += n as u64;
            after_queueing(&mut state, &mut reports);
        }
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
        Err(errno) => {
            stop(&mut state);
            reports.push(RelayEvent::Failed {
                side: "write",
                error: errno.into(),
            });
        }
    }
    reports
}
