//! `tokio_relay`: the example line relay plugged into a tokio application.
//!
//! ```text
//! cargo run -p anyloop-examples --bin tokio_relay -- --demo          # self-contained demo
//! cargo run -p anyloop-examples --bin tokio_relay -- --demo --owned  # anyloop owns the runtime
//! printf 'a\nb\n' | cargo run -p anyloop-examples --bin tokio_relay   # relay stdin to stdout
//! ```
//!
//! The application is an ordinary tokio program: a multi-thread runtime whose `block_on`
//! drives a `tokio::task::LocalSet` on the main thread, a status task of its own (a
//! `tokio::time::interval` ticking on that thread), and in `--demo` mode a feeder task on a
//! worker thread that writes lines into a pipe. The relay, a library written against anyloop
//! only, is given an [`anyloop::Loop`] inside the same runtime, in one of the two ways anyloop
//! offers:
//!
//! - by default, the way of an application that already runs tokio: an
//!   [`anyloop_tokio::LocalDriver`] spawned on the `LocalSet` (`spawn_local(driver.drive())`),
//!   so the relay's callbacks run on the main thread, among the application's local tasks,
//!   while the feeder runs on a worker;
//! - with `--owned`, for a program that lets anyloop own tokio: an
//!   [`anyloop_tokio::TokioLoop`] (a current-thread runtime) run through [`anyloop::Runner`],
//!   like any other anyloop backend, the application's tasks spawned on it.
//!
//! Either way the relay reports through [`LineRelay::start_local`]: its anyloop callbacks are
//! thread-bound, so the report callback captures `Rc` state shared with the application's
//! local status task ([`Shell`]) and updates it directly, with no channel and no lock. Lines
//! go to stdout, numbered; reports go to stderr. The program ends at end of input, or when the
//! relay reports idle with `--exit-on-idle` (or `--demo`).

use std::cell::Cell;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyloop::{Quitter, Runner};
use anyloop_examples::relay::{
    idle_timeout_from_secs, LineRelay, RelayConfig, RelayEvent, DEMO_IDLE_TIMEOUT,
};
use anyloop_tokio::tokio;
use anyloop_tokio::{LocalDriver, TokioLoop};
use clap::Parser;

/// Relay lines from stdin to stdout with numbering and an idle timeout, inside a tokio
/// program.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Run a self-contained demo: a tokio task of the application feeds lines into a pipe.
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
    /// Let anyloop own the runtime (`TokioLoop`, run through `anyloop::Runner`) instead of
    /// spawning anyloop's driver on the application's own `LocalSet`.
    #[arg(long)]
    owned: bool,
}

/// What the application's local status task and the relay's thread-bound anyloop callbacks
/// share. Everything runs on the main thread, so `Rc` and `Cell` are enough.
#[derive(Debug, Default)]
struct Shell {
    /// Ticks of the application's status task.
    ticks: Cell<u64>,
    /// Lines the relay reported.
    lines: Cell<u64>,
    /// Whether the relay failed.
    failed: Cell<bool>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tokio_relay: error: {error}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

fn run(args: &Args) -> Result<ExitCode, BoxError> {
    let idle = idle_timeout_from_secs(args.idle)?;
    let shell = Rc::new(Shell::default());
    if args.owned {
        run_owned(args, idle, &shell)?;
    } else {
        run_in_own_runtime(args, idle, &shell)?;
    }
    Ok(if shell.failed.get() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The tokio application's way: its own multi-thread runtime, a `LocalSet` on the main
/// thread, anyloop's driver one local task among the others.
fn run_in_own_runtime(
    args: &Args,
    idle: Option<Duration>,
    shell: &Rc<Shell>,
) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let driver = LocalDriver::new()?;
        let (lp, quitter) = (driver.handle(), driver.quitter());
        let engine = tokio::task::spawn_local(driver.drive());
        let status = tokio::task::spawn_local(status_task(Rc::clone(shell)));
        let input = input(args, |feeder| {
            // `Send`: runs on a worker thread of the application's runtime.
            tokio::spawn(feeder);
        })?;
        let relay = start(args, idle, &lp, input, quitter, shell)?;
        // The driver returns when the relay asks to quit (end of input, idle, failure).
        engine.await?;
        status.abort();
        // The driver is gone with its engine: the relay's watches and timers were freed, so
        // dropping it only reads its counters.
        finish(relay, shell);
        Ok::<(), BoxError>(())
    })
}

/// anyloop owns a current-thread runtime; the application's tasks are spawned on it.
fn run_owned(args: &Args, idle: Option<Duration>, shell: &Rc<Shell>) -> Result<(), BoxError> {
    let mut event_loop = TokioLoop::new()?;
    let status = event_loop.spawn_local(status_task(Rc::clone(shell)));
    let input = input(args, |feeder| {
        event_loop.spawn_local(feeder);
    })?;
    let relay = start(
        args,
        idle,
        &event_loop.handle(),
        input,
        event_loop.quitter(),
        shell,
    )?;
    event_loop.run()?;
    status.abort();
    finish(relay, shell);
    // The frees of what the relay removed run on the loop (its fds close then).
    event_loop.run_once(Some(Duration::ZERO))?;
    Ok(())
}

/// The application's own local task: a status tick every 50 ms, on the main thread.
async fn status_task(shell: Rc<Shell>) {
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    loop {
        interval.tick().await;
        shell.ticks.set(shell.ticks.get() + 1);
    }
}

/// The relay's input: stdin, or in `--demo` mode a pipe fed by a task handed to `spawn`.
fn input(
    args: &Args,
    spawn: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
) -> Result<OwnedFd, BoxError> {
    if !args.demo {
        return Ok(io::stdin().as_fd().try_clone_to_owned()?);
    }
    let (read_end, write_end) = rustix::pipe::pipe()?;
    spawn(Box::pin(demo_feeder(write_end)));
    Ok(read_end)
}

/// Starts the relay on `lp`; its report callback shares the application's state.
fn start(
    args: &Args,
    idle: Option<Duration>,
    lp: &anyloop::Loop,
    input: OwnedFd,
    quitter: Quitter,
    shell: &Rc<Shell>,
) -> Result<LineRelay, BoxError> {
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
    let exit_on_idle = args.exit_on_idle || args.demo;
    let shell = Rc::clone(shell);
    // Thread-bound: the callback holds the `Rc` the application's status task also holds.
    let relay = LineRelay::start_local(lp, input, output, config, move |event| {
        report(&event, shell.ticks.get());
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
        "tokio_relay: done: {} lines, {} bytes in, {} bytes out, {} status ticks",
        stats.lines,
        stats.bytes_in,
        stats.bytes_out,
        shell.ticks.get()
    );
}

fn report(event: &RelayEvent, tick: u64) {
    let mut err = io::stderr().lock();
    let _ = match event {
        RelayEvent::Line { number, bytes, .. } => {
            writeln!(
                err,
                "tokio_relay: tick {tick}: line {number} ({bytes} bytes)"
            )
        }
        RelayEvent::Idle { after } => writeln!(err, "tokio_relay: idle for {after:?}"),
        RelayEvent::Backpressure { paused } => {
            writeln!(err, "tokio_relay: input paused: {paused}")
        }
        RelayEvent::Finished { lines, bytes } => writeln!(
            err,
            "tokio_relay: end of input after {lines} lines ({bytes} bytes)"
        ),
        RelayEvent::Failed { side, error } => {
            writeln!(err, "tokio_relay: {side} failed: {error}")
        }
    };
}

/// The demo's producer: an application task (tokio, not anyloop) that writes a line into the
/// pipe every 150 ms, six times, then keeps the pipe open so the relay idles.
async fn demo_feeder(pipe: OwnedFd) {
    const LINES: [&str; 6] = [
        "anyloop in tokio: this line was written by a tokio task",
        "and read back by the relay's anyloop fd watch, in the same runtime",
        "the relay numbers each line and writes it when stdout is writable",
        "its reports update the application's state directly, on the main thread",
        "after the last line the relay reports idle",
        "and the demo quits",
    ];
    for line in LINES {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // A pipe has room for six short lines: this write never blocks.
        let _ = rustix::io::write(&pipe, format!("{line}\n").as_bytes());
    }
    // Keep the pipe open (no end of file): the relay goes idle.
    std::future::pending::<()>().await;
}
