//! `calloop_relay`: the example line relay plugged into a calloop program shaped like a
//! Wayland compositor's main loop.
//!
//! ```text
//! cargo run -p anyloop-examples --bin calloop_relay -- --demo          # self-contained demo
//! cargo run -p anyloop-examples --bin calloop_relay -- --demo --owned  # anyloop owns calloop
//! printf 'a\nb\n' | cargo run -p anyloop-examples --bin calloop_relay   # relay stdin to stdout
//! ```
//!
//! The program's calloop sources (a frame clock, and in `--demo` mode a timer that feeds lines
//! into a pipe) get the compositor's data, `&mut Compositor`, from every dispatch, as
//! calloop sources do. The relay, a library written against anyloop only, is given an
//! [`anyloop::Loop`] inside the same calloop loop, in one of the two ways anyloop offers:
//!
//! - by default, the compositor's way: the program owns its `calloop::EventLoop<Compositor>`
//!   and runs it with calloop's own `run`; an [`anyloop_calloop::CalloopSource`] inserted
//!   into it carries anyloop, and anyloop's quit requests stop calloop's `run`;
//! - with `--owned`, for a program that has no calloop loop of its own to keep: an
//!   [`anyloop_calloop::CalloopLoop`] owns the calloop loop (and the compositor's data), the
//!   program adds its calloop sources through its `loop_handle()` and runs it through
//!   [`anyloop::Runner`], like any other anyloop backend.
//!
//! Either way the relay reports through [`LineRelay::start_local`]: its anyloop callbacks are
//! thread-bound, so the program's report callback captures `Rc` state shared with the
//! calloop sources ([`Shell`]) and updates it directly, with no channel and no lock. Lines go
//! to stdout, numbered; reports go to stderr. The program ends at end of input, or when the
//! relay reports idle with `--exit-on-idle` (or `--demo`).

use std::cell::Cell;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyloop::{Quitter, Runner};
use anyloop_calloop::calloop::timer::{TimeoutAction, Timer};
use anyloop_calloop::calloop::{EventLoop, LoopHandle};
use anyloop_calloop::{CalloopLoop, CalloopSource};
use anyloop_examples::relay::{
    idle_timeout_from_secs, LineRelay, RelayConfig, RelayEvent, DEMO_IDLE_TIMEOUT,
};
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
    /// Let anyloop own the calloop loop (`CalloopLoop`, run through `anyloop::Runner`)
    /// instead of inserting anyloop into the program's own calloop loop.
    #[arg(long)]
    owned: bool,
}

/// What the compositor's calloop sources and the relay's thread-bound anyloop callbacks
/// share. Everything runs on this one thread, so `Rc` and `Cell` are enough.
#[derive(Debug, Default)]
struct Shell {
    /// Frames "drawn" by the frame clock.
    frames: Cell<u64>,
    /// Lines the relay reported.
    lines: Cell<u64>,
    /// Whether the relay failed.
    failed: Cell<bool>,
}

/// The calloop loop's shared data, handed to every calloop callback by its dispatch.
struct Compositor {
    shell: Rc<Shell>,
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

type BoxError = Box<dyn std::error::Error>;

fn run(args: &Args) -> Result<ExitCode, BoxError> {
    let idle = idle_timeout_from_secs(args.idle)?;
    let shell = Rc::new(Shell::default());
    let compositor = Compositor {
        shell: Rc::clone(&shell),
    };
    if args.owned {
        run_owned(args, idle, compositor)?;
    } else {
        run_in_own_loop(args, idle, compositor)?;
    }
    Ok(if shell.failed.get() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The compositor's way: its own `EventLoop`, run by calloop's `run`, with anyloop inserted.
fn run_in_own_loop(
    args: &Args,
    idle: Option<Duration>,
    mut compositor: Compositor,
) -> Result<(), BoxError> {
    let mut event_loop: EventLoop<'_, Compositor> = EventLoop::try_new()?;
    // anyloop inside the same loop: one more source. Its quit requests stop calloop's `run`.
    let backend = CalloopSource::new(&event_loop.handle())?;
    backend.stop_calloop_on_quit(event_loop.get_signal());

    let relay = start(
        args,
        idle,
        &event_loop.handle(),
        &backend.handle(),
        backend.quitter(),
        &compositor.shell,
    )?;
    // calloop's own run, as a compositor calls it.
    event_loop.run(None, &mut compositor, |_| {})?;
    // A panic caught in an anyloop callback during calloop's run is reported here.
    if let Some(error) = backend.take_error() {
        return Err(error.into());
    }
    finish(relay, &compositor.shell);
    // One more dispatch runs the frees of what the relay removed (its fds close then).
    backend.dispatch(&mut event_loop, Some(Duration::ZERO), &mut compositor)?;
    Ok(())
}

/// anyloop owns the calloop loop; the program still adds calloop sources of its own.
fn run_owned(args: &Args, idle: Option<Duration>, compositor: Compositor) -> Result<(), BoxError> {
    let shell = Rc::clone(&compositor.shell);
    let mut event_loop = CalloopLoop::with_data(compositor)?;
    let relay = start(
        args,
        idle,
        &event_loop.loop_handle(),
        &event_loop.handle(),
        event_loop.quitter(),
        &shell,
    )?;
    event_loop.run()?;
    finish(relay, &shell);
    // The frees of what the relay removed run on the loop (its fds close then).
    event_loop.run_once(Some(Duration::ZERO))?;
    Ok(())
}

/// Adds the compositor's calloop sources and starts the relay on `lp`.
fn start(
    args: &Args,
    idle: Option<Duration>,
    calloop: &LoopHandle<'_, Compositor>,
    lp: &anyloop::Loop,
    quitter: Quitter,
    shell: &Rc<Shell>,
) -> Result<LineRelay, BoxError> {
    // The compositor's own source: a frame clock at about 60 Hz.
    calloop
        .insert_source(
            Timer::from_duration(Duration::from_millis(16)),
            |_, _, compositor: &mut Compositor| {
                let frames = &compositor.shell.frames;
                frames.set(frames.get() + 1);
                TimeoutAction::ToDuration(Duration::from_millis(16))
            },
        )
        .map_err(|err| err.error)?;

    let config = RelayConfig {
        idle_timeout: if args.demo {
            Some(DEMO_IDLE_TIMEOUT)
        } else {
            idle
        },
        number_lines: !args.plain,
        ..RelayConfig::default()
    };
    let output: OwnedFd = io::stdout().as_fd().try_clone_to_owned()?;
    let input = if args.demo {
        let (read_end, write_end) = rustix::pipe::pipe()?;
        start_demo_feeder(calloop, write_end)?;
        read_end
    } else {
        io::stdin().as_fd().try_clone_to_owned()?
    };

    let exit_on_idle = args.exit_on_idle || args.demo;
    let shell = Rc::clone(shell);
    // Thread-bound: the callback holds the `Rc` the calloop sources also hold.
    let relay = LineRelay::start_local(lp, input, output, config, move |event| {
        report(&event, shell.frames.get());
        match event {
            RelayEvent::Line { .. } => shell.lines.set(shell.lines.get() + 1),
            RelayEvent::Finished { .. } => quitter.quit(),
            RelayEvent::Failed { .. } => {
                shell.failed.set(true);
                quitter.quit();
            }
            RelayEvent::Idle { .. } if exit_on_idle => quitter.quit(),
            _ => {}
        }
    })?;
    Ok(relay)
}

/// Stops the relay and prints the summary.
fn finish(relay: LineRelay, shell: &Shell) {
    let stats = relay.stats();
    drop(relay);
    eprintln!(
        "calloop_relay: done: {} lines, {} bytes in, {} bytes out, {} frames",
        stats.lines,
        stats.bytes_in,
        stats.bytes_out,
        shell.frames.get()
    );
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
fn start_demo_feeder(calloop: &LoopHandle<'_, Compositor>, pipe: OwnedFd) -> Result<(), BoxError> {
    const LINES: [&str; 6] = [
        "anyloop in calloop: this line was written by a calloop timer",
        "and read back by the relay's anyloop fd watch, in the same loop",
        "the relay numbers each line and writes it when stdout is writable",
        "its reports update the compositor's state directly, on this thread",
        "after the last line the relay reports idle",
        "and the demo quits",
    ];
    let mut next = 0;
    calloop
        .insert_source(
            Timer::from_duration(Duration::from_millis(150)),
            move |_, _, _: &mut Compositor| {
                let Some(line) = LINES.get(next) else {
                    // Keep the source, and so the pipe, open (no end of file): the relay goes
                    // idle.
                    return TimeoutAction::ToDuration(Duration::from_secs(3600));
                };
                let text = format!("{line}\n");
                // A pipe has room for six short lines: this write never blocks.
                let _ = rustix::io::write(&pipe, text.as_bytes());
                next += 1;
                TimeoutAction::ToDuration(Duration::from_millis(150))
            },
        )
        .map_err(|err| err.error)?;
    Ok(())
}
