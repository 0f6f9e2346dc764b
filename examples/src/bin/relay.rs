//! `relay`: the example line relay plugged into anyloop's built-in loop.
//!
//! ```text
//! cargo run -p anyloop-examples --bin relay -- --demo        # self-contained demo
//! printf 'a\nb\n' | cargo run -p anyloop-examples --bin relay # relay stdin to stdout
//! ```
//!
//! Lines go to stdout, numbered; what the relay reports goes to stderr. The program ends at
//! end of input, or after the idle timeout when `--exit-on-idle` (or `--demo`) is given.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyloop::{Loop, TimerId};
use anyloop_examples::relay::{
    idle_timeout_from_secs, LineRelay, RelayConfig, RelayEvent, DEMO_IDLE_TIMEOUT,
};
use anyloop_select::{PollerKind, SelectLoop};
use clap::{Parser, ValueEnum};

/// Relay lines from stdin to stdout with numbering and an idle timeout, on anyloop's
/// built-in loop.
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
    /// Which kernel interface the built-in loop uses.
    #[arg(long, value_enum, default_value_t = PollerArg::Epoll)]
    poller: PollerArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PollerArg {
    /// Level-triggered epoll (Linux).
    Epoll,
    /// mio (edge-triggered epoll with level-triggering emulated).
    Mio,
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
    let poller = match args.poller {
        PollerArg::Epoll => PollerKind::Epoll,
        PollerArg::Mio => PollerKind::Mio,
    };
    let mut event_loop = SelectLoop::with_poller(poller)?;
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

    let failed = Arc::new(AtomicU32::new(0));
    let relay = {
        let failed = Arc::clone(&failed);
        LineRelay::start(&lp, input, output, config, move |event| {
            report(&event);
            match event {
                RelayEvent::Finished { .. } => quitter.quit(),
                RelayEvent::Failed { .. } => {
                    failed.fetch_add(1, Ordering::Relaxed);
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
        "relay: done: {} lines, {} bytes in, {} bytes out",
        stats.lines, stats.bytes_in, stats.bytes_out
    );
    Ok(if failed.load(Ordering::Relaxed) > 0 {
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

/// The demo's producer: a periodic timer on the same loop that writes a line into the pipe
/// every 150 ms, six times, then goes quiet (keeping the pipe open) so the relay idles.
fn start_demo_feeder(lp: &Loop, pipe: OwnedFd) -> anyloop::Result<anyloop::Timer> {
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
    let timer = lp.timer(Some(Duration::from_millis(150)), move |id: TimerId| {
        if let Some(line) = LINES.get(next) {
            let text = format!("{line}\n");
            // A pipe has room for far more than six short lines: this write never blocks.
            let _ = rustix::io::write(&pipe, text.as_bytes());
            next += 1;
        } else {
            let _ = lp_for_timer.update_timer(id, None);
        }
    })?;
    Ok(timer)
}
