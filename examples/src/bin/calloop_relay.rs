//! `calloop_relay`: the example line relay plugged into a calloop program shaped like a
//! Wayland compositor's main loop.
//!
//! ```text
//! cargo run -p anyloop-examples --bin calloop_relay -- --demo        # self-contained demo
//! printf 'a\nb\n' | cargo run -p anyloop-examples --bin calloop_relay # relay stdin to stdout
//! ```
//!
//! The program owns a calloop `EventLoop<Compositor>`: its own state struct is passed to every
//! dispatch, a frame clock (a calloop `Timer`) ticks in it, and calloop's own `run` drives
//! everything. The relay, a library written against anyloop only, is given the
//! [`Loop`](anyloop::Loop) of an [`anyloop_calloop::CalloopSource`] inserted into that loop;
//! its events come back into the compositor's state through a calloop channel. In `--demo`
//! mode another calloop timer of the application feeds lines into a pipe the relay reads.
//!
//! Lines go to stdout, numbered; reports go to stderr. The program ends at end of input, or
//! when the relay reports idle with `--exit-on-idle` (or `--demo`).

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

use anyloop_calloop::CalloopSource;
use anyloop_examples::relay::{
    idle_timeout_from_secs, LineRelay, RelayConfig, RelayEvent, DEMO_IDLE_TIMEOUT,
};
use calloop::channel::{self, Channel, Event};
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, LoopSignal};
use clap::Parser;

/// Relay lines from stdin to stdout with numbering and an idle timeout, inside a calloop
/// program.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Run a self-contained demo: a calloop timer of the application feeds lines into a pipe.
    #[arg(long)]
    demo: bool,
    /// Seconds without input before the relay reports idle (0 disables).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    idle: f64,
    /// Exit when the relay reports idle instead of waiting for more input.
    #[arg(long)]
    exit_on_idle: bool,
    /// Do not number the lines.
    #[arg(long)]
    plain: bool,
}

/// The application's shared state, handed to every calloop callback by `dispatch`.
struct Compositor {
    /// Frames "drawn" by the frame clock.
    frames: u64,
    /// Lines the relay reported.
    lines: u64,
    /// Whether the relay failed.
    failed: bool,
    /// Stop after the relay reports idle.
    exit_on_idle: bool,
    /// Stops calloop's `run`.
    signal: LoopSignal,
}

impl Compositor {
    /// Handles one relay event, delivered through the calloop channel.
    fn on_relay_event(&mut self, event: RelayEvent) {
        report(&event, self.frames);
        match event {
            RelayEvent::Line { .. } => self.lines += 1,
            RelayEvent::Finished { .. } => self.signal.stop(),
            RelayEvent::Failed { .. } => {
                self.failed = true;
                self.signal.stop();
            }
            RelayEvent::Idle { .. } if self.exit_on_idle => self.signal.stop(),
            _ => {}
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("calloop_relay: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let idle = idle_timeout_from_secs(args.idle)?;
    let mut event_loop: EventLoop<'_, Compositor> = EventLoop::try_new()?;
    let handle = event_loop.handle();

    // The compositor's own sources: a frame clock at about 60 Hz...
    handle
        .insert_source(
            Timer::from_duration(Duration::from_millis(16)),
            |_, _, state: &mut Compositor| {
                state.frames += 1;
                TimeoutAction::ToDuration(Duration::from_millis(16))
            },
        )
        .map_err(|err| err.error)?;
    // ...and a channel on which the relay's events arrive (the relay's callback must be
    // `Send`; the channel brings the events into the compositor's state).
    let (events_tx, events_rx): (channel::Sender<RelayEvent>, Channel<RelayEvent>) =
        channel::channel();
    handle
        .insert_source(events_rx, |event, _, state: &mut Compositor| {
            if let Event::Msg(event) = event {
                state.on_relay_event(event);
            }
        })
        .map_err(|err| err.error)?;

    // anyloop inside the same loop: one more source.
    let backend = CalloopSource::new(&handle)?;
    let lp = backend.handle();

    let idle_timeout = if args.demo {
        Some(DEMO_IDLE_TIMEOUT)
    } else {
        idle
    };
    let config = RelayConfig {
        idle_timeout,
        number_lines: !args.plain,
        ..RelayConfig::default()
    };
    let output: OwnedFd = io::stdout().as_fd().try_clone_to_owned()?;
    let input = if args.demo {
        let (read_end, write_end) = rustix::pipe::pipe()?;
        start_demo_feeder(&event_loop, write_end)?;
        read_end
    } else {
        io::stdin().as_fd().try_clone_to_owned()?
    };

    let relay = LineRelay::start(&lp, input, output, config, move |event| {
        // The compositor may already be gone at exit: a lost report is harmless then.
        let _ = events_tx.send(event);
    })?;

    let mut state = Compositor {
        frames: 0,
        lines: 0,
        failed: false,
        exit_on_idle: args.exit_on_idle || args.demo,
        signal: event_loop.get_signal(),
    };
    // calloop's own run, as a compositor calls it.
    event_loop.run(None, &mut state, |_| {})?;
    if let Some(error) = backend.take_error() {
        return Err(error.into());
    }
    let stats = relay.stats();
    drop(relay);
    // One more dispatch runs the frees of what the relay removed (its fds close then).
    backend.dispatch(&mut event_loop, Some(Duration::ZERO), &mut state)?;
    eprintln!(
        "calloop_relay: done: {} lines, {} bytes in, {} bytes out, {} frames",
        stats.lines, stats.bytes_in, stats.bytes_out, state.frames
    );
    Ok(if state.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn report(event: &RelayEvent, frame: u64) {
    let mut err = io::stderr().lock();
    let _ = match event {
        RelayEvent::Line { number, bytes, .. } => {
            writeln!(
                err,
                "calloop_relay: frame {frame}: line {number} ({bytes} bytes)"
            )
        }
        RelayEvent::Idle { after } => writeln!(err, "calloop_relay: idle for {after:?}"),
        RelayEvent::Backpressure { paused } => {
            writeln!(err, "calloop_relay: input paused: {paused}")
        }
        RelayEvent::Finished { lines, bytes } => writeln!(
            err,
            "calloop_relay: end of input after {lines} lines ({bytes} bytes)"
        ),
        RelayEvent::Failed { side, error } => {
            writeln!(err, "calloop_relay: {side} failed: {error}")
        }
    };
}

/// The demo's producer: an application timer (a calloop source, not anyloop) that writes a
/// line into the pipe every 150 ms, six times, then keeps the pipe open so the relay idles.
fn start_demo_feeder(
    event_loop: &EventLoop<'_, Compositor>,
    pipe: OwnedFd,
) -> Result<(), Box<dyn std::error::Error>> {
    const LINES: [&str; 6] = [
        "anyloop in calloop: this line was written by a calloop timer",
        "and read back by the relay's anyloop fd watch, in the same loop",
        "the relay numbers each line and writes it when stdout is writable",
        "its events reach the compositor's state through a calloop channel",
        "after the last line the relay reports idle",
        "and the demo quits",
    ];
    let mut next = 0;
    event_loop
        .handle()
        .insert_source(
            Timer::from_duration(Duration::from_millis(150)),
            move |_, _, _: &mut Compositor| {
                if let Some(line) = LINES.get(next) {
                    let text = format!("{line}\n");
                    // A pipe has room for six short lines: this write never blocks.
                    let _ = rustix::io::write(&pipe, text.as_bytes());
                    next += 1;
                    TimeoutAction::ToDuration(Duration::from_millis(150))
                } else {
                    // Keep the pipe open (no end of file): the relay goes idle.
                    TimeoutAction::ToDuration(Duration::from_secs(3600))
                }
            },
        )
        .map_err(|err| err.error)?;
    Ok(())
}
