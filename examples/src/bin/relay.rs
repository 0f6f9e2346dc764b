//! `relay`: the example line relay on the loop chosen with `--loop` (the built-in one by
//! default).
//!
//! ```text
//! cargo run -p anyloop-examples --bin relay -- --demo                  # self-contained demo
//! cargo run -p anyloop-examples --bin relay -- --demo --loop calloop   # the same on calloop
//! printf 'a\nb\n' | cargo run -p anyloop-examples --bin relay          # relay stdin to stdout
//! ```
//!
//! Lines go to stdout, numbered; what the relay reports goes to stderr. The program ends at
//! end of input, or after the idle timeout when `--exit-on-idle` (or `--demo`) is given.
//!
//! The loop is made by anyloop's one chooser ([`anyloop_backends::LoopChoice`]) and driven
//! through [`anyloop::Runner`] only, so nothing here depends on the backend. The relay's
//! reports reach the program through [`LineRelay::start_local`]: a callback that is not
//! `Send` (it counts failures in an `Rc<Cell<..>>`), called on this thread, the loop's.

use std::cell::Cell;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyloop::{Loop, Runner, Schedule, TimerId};
use anyloop_backends::LoopChoice;
use anyloop_examples::relay::{
    idle_timeout_from_secs, LineRelay, RelayConfig, RelayEvent, DEMO_IDLE_TIMEOUT,
};
use clap::Parser;

/// Relay lines from stdin to stdout with numbering and an idle timeout, on the anyloop
/// backend of your choice.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Run a self-contained demo: a timer on the same loop feeds lines into a pipe.
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
    /// The loop that runs the relay: the built-in loop on level-triggered epoll (`select`),
    /// on mio's edge-triggered epoll (`select-mio`) or on portable `poll(2)` (`select-poll`),
    /// a GLib main context (`glib`, in builds with the `glib` feature), a calloop event loop
    /// (`calloop`) or a tokio runtime (`tokio`, or `tokio-multi` for a multi-thread one).
    #[arg(
        long = "loop",
        default_value_t = LoopChoice::Select,
        value_name = "LOOP",
        value_parser = anyloop_examples::cli::loop_choice()
    )]
    event_loop: LoopChoice,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("relay: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let idle = idle_timeout_from_secs(args.idle)?;
    // Made on this thread, which owns it and runs it: the loop thread.
    let mut event_loop = args.event_loop.create()?;
    let lp = event_loop.handle();
    let quitter = event_loop.quitter();

    let idle_timeout = if args.demo {
        Some(DEMO_IDLE_TIMEOUT)
    } else {
        idle
    };
    let exit_on_idle = args.exit_on_idle || args.demo;
    let config = RelayConfig {
        idle_timeout,
        number_lines: !args.plain,
        ..RelayConfig::default()
    };

    let output: OwnedFd = io::stdout().as_fd().try_clone_to_owned()?;
    let (input, _feeder) = if args.demo {
        let (read_end, write_end) = rustix::pipe::pipe()?;
        (read_end, Some(start_demo_feeder(&lp, write_end)?))
    } else {
        (io::stdin().as_fd().try_clone_to_owned()?, None)
    };

    // Only ever touched on this thread: a `Cell` in an `Rc`, no atomics.
    let failed = Rc::new(Cell::new(false));
    let relay = {
        let failed = Rc::clone(&failed);
        LineRelay::start_local(&lp, input, output, config, move |event| {
            report(&event);
            match event {
                RelayEvent::Finished { .. } => quitter.quit(),
                RelayEvent::Failed { .. } => {
                    failed.set(true);
                    quitter.quit()
                }
                RelayEvent::Idle { .. } if exit_on_idle => quitter.quit(),
                _ => {}
            }
        })?
    };

    event_loop.run()?;
    let stats = relay.stats();
    drop(relay);
    // Let the loop run the frees of what the relay removed (its fds close then).
    event_loop.run_once(Some(Duration::ZERO))?;
    eprintln!(
        "relay: done on the {} loop: {} lines, {} bytes in, {} bytes out",
        args.event_loop, stats.lines, stats.bytes_in, stats.bytes_out
    );
    Ok(if failed.get() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn report(event: &RelayEvent) {
    let mut err = io::stderr().lock();
    let _ = match event {
        RelayEvent::Line {
            number,
            bytes,
            truncated: false,
        } => {
            writeln!(err, "relay: line {number} ({bytes} bytes)")
        }
        RelayEvent::Line {
            number,
            bytes,
            truncated: true,
        } => {
            writeln!(
                err,
                "relay: line {number} ({bytes} bytes, cut at the length limit)"
            )
        }
        RelayEvent::Idle { after } => writeln!(err, "relay: idle for {after:?}"),
        RelayEvent::Backpressure { paused: true } => {
            writeln!(err, "relay: output backed up, input paused")
        }
        RelayEvent::Backpressure { paused: false } => writeln!(err, "relay: input resumed"),
        RelayEvent::Finished { lines, bytes } => {
            writeln!(
                err,
                "relay: end of input after {lines} lines ({bytes} bytes)"
            )
        }
        RelayEvent::Failed { side, error } => writeln!(err, "relay: {side} failed: {error}"),
    };
}

/// The demo's producer: a one-shot timer on the same loop that writes a line into the pipe
/// and re-arms itself 150 ms later while lines remain (six in all); then it stays disabled,
/// keeping the pipe open, so the relay idles.
fn start_demo_feeder(lp: &Loop, pipe: OwnedFd) -> anyloop::Result<anyloop::Timer> {
    const PERIOD: Duration = Duration::from_millis(150);
    const LINES: [&str; 6] = [
        "anyloop demo: this line was written by a timer",
        "and read back by an fd watch on the same loop",
        "the relay numbers each line and writes it when stdout is writable",
        "every line restarts the relay's idle countdown",
        "after the last line the relay reports idle",
        "and the demo quits",
    ];
    let mut next = 0;
    let lp_for_timer = lp.clone();
    let timer = lp.timer(Schedule::Once(PERIOD), move |id: TimerId| {
        let Some(line) = LINES.get(next) else {
            return;
        };
        let text = format!("{line}\n");
        // A pipe has room for far more than six short lines: this write never blocks.
        let _ = rustix::io::write(&pipe, text.as_bytes());
        next += 1;
        if next < LINES.len() {
            // Re-arming a one-shot from its own callback starts a new countdown (R36).
            let _ = lp_for_timer.update_timer(id, Schedule::Once(PERIOD));
        }
    })?;
    Ok(timer)
}
