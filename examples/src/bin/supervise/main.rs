//! `supervise`: runs commands under the example supervisor library and prints what it
//! reports, as it arrives, on the loop chosen with `--loop`.
//!
//! ```text
//! cargo run -p anyloop-examples --bin supervise -- --demo                 # three children at once
//! cargo run -p anyloop-examples --bin supervise -- -- make -j4            # any command
//! cargo run -p anyloop-examples --bin supervise -- --loop calloop --json -- sh -c 'echo hi'
//! ```
//!
//! On a terminal: coloured stream labels and a progress bar per child that reports progress
//! (`progress: N/M` or `progress: N%` lines, or `--expect SECONDS`). With `--json`: one JSON
//! object per event on stdout, for scripts. The exit status is the command's (128 + signal
//! when a signal killed it, 127 when it could not be started); the demo exits 0 when every
//! child ended as scripted.

mod demo;
mod human;
mod json;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyloop::{IoEvents, KindSet, Loop, Runner, Watch};
use anyloop_backends::{ChooseError, LoopChoice};
use anyloop_examples::supervisor::{
    ChildId, ExitReason, SpawnOptions, Supervisor, SupervisorError, SupervisorEvent,
    SupervisorHandle,
};
use clap::{Parser, ValueEnum};

/// Run a command under anyloop's example child-process supervisor and print its events
/// (launch, every output line, progress, signals, exit) as they arrive.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The loop that runs the supervisor (the same library code on each): the built-in loop
    /// on epoll (`select`), on mio (`select-mio`) or on `poll(2)` (`select-poll`), a GLib main
    /// context (`glib`, in builds with the `glib` feature), a calloop event loop (`calloop`)
    /// or a tokio runtime (`tokio`, or `tokio-multi` for a multi-thread one).
    #[arg(
        long = "loop",
        default_value_t = LoopChoice::Select,
        value_name = "LOOP",
        value_parser = anyloop_examples::cli::loop_choice()
    )]
    event_loop: LoopChoice,
    /// Print one JSON object per event instead of the terminal view.
    #[arg(long)]
    json: bool,
    /// Run three demo children at once instead of COMMAND: one with progress, one that
    /// fails, one that ignores SIGTERM and is killed when its grace period ends.
    #[arg(long, conflicts_with_all = ["command", "timeout", "expect"])]
    demo: bool,
    /// Seconds between SIGTERM and SIGKILL when a child is killed (by --timeout or Ctrl-C).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS", value_parser = seconds)]
    grace: f64,
    /// Kill the command when it runs longer than this.
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    timeout: Option<f64>,
    /// Show time-based progress, expecting the command to take this long.
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    expect: Option<f64>,
    /// Lines starting with this, then `N/M` or `N%`, report progress.
    #[arg(long, default_value = "progress:", value_name = "TEXT")]
    progress_prefix: String,
    /// When to colour the terminal view.
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    color: ColorArg,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ColorArg {
    /// When stdout is a terminal and NO_COLOR is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && (0.0..=1e9).contains(&value) => Ok(value),
        _ => Err(format!(
            "`{text}` is not a number of seconds between 0 and 1e9"
        )),
    }
}

/// Shell convention for "command not found or not executable".
const CANNOT_START: u8 = 127;

fn main() -> ExitCode {
    let args = Args::parse();
    anstream::ColorChoice::write_global(match args.color {
        ColorArg::Auto => anstream::ColorChoice::Auto,
        ColorArg::Always => anstream::ColorChoice::Always,
        ColorArg::Never => anstream::ColorChoice::Never,
    });
    if args.command.is_empty() && !args.demo {
        eprintln!("supervise: error: give a COMMAND to run (after `--`) or --demo");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("supervise: error: {error}");
            match error {
                RunError::Supervisor(SupervisorError::Spawn { .. }) => ExitCode::from(CANNOT_START),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Loop(#[from] ChooseError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("the loop failed: {0}")]
    Anyloop(#[from] anyloop::Error),
    #[error("cannot watch for Ctrl-C: {0}")]
    Interrupt(std::io::Error),
}

/// What the event callback needs to know about the children, shared with `main` and the
/// interrupt watch. Every one of them runs on this thread (the callbacks are thread-bound), so
/// an `Rc<RefCell<..>>` is all the sharing needs.
#[derive(Default)]
struct Children {
    /// Display name of each child.
    names: BTreeMap<ChildId, String>,
    /// How each child ended, once it did.
    ended: BTreeMap<ChildId, ExitReason>,
}

fn run(args: &Args) -> Result<ExitCode, RunError> {
    // This thread owns the loop and runs it: it is the loop thread.
    let mut runner = args.event_loop.create()?;
    let supervisor = Supervisor::new(&runner.handle())?;
    let children: Rc<RefCell<Children>> = Rc::default();
    let grace = Duration::from_secs_f64(args.grace);

    let mut render: Box<dyn Render> = if args.json {
        Box::new(json::Json::new(args.event_loop))
    } else {
        Box::new(human::Terminal::new())
    };
    let quitter = runner.quitter();
    let shared = Rc::clone(&children);
    // Thread-bound: the callback holds an `Rc` and a renderer that need not be `Send` (the
    // progress bars); events are delivered on the loop's thread, this one.
    supervisor
        .events()
        .on_kinds_local(KindSet::all(), move |_, event| {
            let mut children = shared.borrow_mut();
            if let SupervisorEvent::SubprocessQuit(quit) = event {
                children.ended.insert(quit.child, quit.reason);
            }
            let name = event
                .child()
                .and_then(|child| children.names.get(&child))
                .map_or("", String::as_str);
            render.event(event, name);
            if children.ended.len() == children.names.len() {
                quitter.quit();
            }
        })
        .map_err(anyloop::Error::from)?;

    // Before any child exists: a signal that came earlier would kill this process and leave
    // the children (in process groups of their own) running.
    let interrupt = watch_interrupts(
        &runner.handle(),
        supervisor.handle(),
        Rc::clone(&children),
        grace,
    )?;
    let plan = if args.demo {
        demo::children(&args.progress_prefix)
    } else {
        vec![single_command(args)]
    };
    for planned in plan {
        let name = planned.name.clone();
        let child = supervisor.spawn(planned.command, &planned.options)?;
        children.borrow_mut().names.insert(child, name);
        if let Some(limit) = planned.timeout {
            supervisor.kill_after(child, limit, planned.grace.unwrap_or(grace))?;
        }
    }

    let started = Instant::now();
    runner.run()?;
    drop(interrupt);
    supervisor.close()?;
    // The frees of everything the supervisor removed run on the loop; let them.
    runner.run_once(Some(Duration::ZERO))?;

    let children = children.borrow();
    let code = if args.demo {
        let as_scripted = demo::ended_as_scripted(&children.names, &children.ended);
        if !args.json {
            human::demo_summary(as_scripted, started.elapsed(), args.event_loop);
        }
        u8::from(!as_scripted)
    } else {
        let reason = children.ended.values().next().copied();
        reason.map_or(1, |reason| {
            u8::try_from(reason.shell_status().clamp(0, 255)).unwrap_or(1)
        })
    };
    Ok(ExitCode::from(code))
}

/// One child to start.
struct Planned {
    name: String,
    command: Command,
    options: SpawnOptions,
    timeout: Option<Duration>,
    grace: Option<Duration>,
}

fn single_command(args: &Args) -> Planned {
    let mut command = Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    let name = std::path::Path::new(&args.command[0])
        .file_name()
        .unwrap_or(args.command[0].as_os_str())
        .to_string_lossy()
        .into_owned();
    Planned {
        name,
        command,
        options: SpawnOptions {
            progress_prefix: Some(args.progress_prefix.clone()),
            expected_duration: args.expect.map(Duration::from_secs_f64),
            ..SpawnOptions::default()
        },
        timeout: args.timeout.map(Duration::from_secs_f64),
        grace: None,
    }
}

/// Ctrl-C (SIGINT), Ctrl-\\ (SIGQUIT), a hang-up (SIGHUP) or SIGTERM: the first kills every
/// child with the grace period, the next kills at once; `supervise` itself ends when the
/// children have. The signal handler only writes to a pipe; an fd watch on the loop does the
/// rest, so no code runs in signal context and no thread is needed. The watch is
/// thread-bound: it reads the children's table (an `Rc`) directly.
fn watch_interrupts(
    lp: &Loop,
    supervisor: SupervisorHandle,
    children: Rc<RefCell<Children>>,
    grace: Duration,
) -> Result<Watch, RunError> {
    let (read_end, write_end) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
    )
    .map_err(|e| RunError::Interrupt(e.into()))?;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    for signal in [SIGINT, SIGQUIT, SIGHUP, SIGTERM] {
        let write_end = write_end.try_clone().map_err(RunError::Interrupt)?;
        signal_hook::low_level::pipe::register(signal, write_end).map_err(RunError::Interrupt)?;
    }
    let mut interrupts = 0u32;
    let fd = read_end.as_raw_fd();
    // The callback owns the read end: it is closed when the callback is freed, which the
    // loop does only after the watch is removed (contract R21), so the watched fd stays
    // valid.
    let watch = lp
        .watch_local(fd, IoEvents::READABLE, move |_, _, _| {
            let mut drained = [0u8; 64];
            while matches!(rustix::io::read(&read_end, &mut drained), Ok(n) if n > 0) {}
            interrupts += 1;
            let now = if interrupts == 1 {
                grace
            } else {
                Duration::ZERO
            };
            let ids: Vec<ChildId> = {
                let children = children.borrow();
                children
                    .names
                    .keys()
                    .filter(|child| !children.ended.contains_key(child))
                    .copied()
                    .collect()
            };
            for child in ids {
                // A child that ended meanwhile is not an error here.
                let _ = supervisor.kill(child, now);
            }
        })
        .map_err(anyloop::Error::from)?;
    Ok(watch)
}

/// How events are shown (on the loop's thread only: a renderer need not be `Send`).
trait Render {
    /// Shows one event of the child called `name`.
    fn event(&mut self, event: &SupervisorEvent, name: &str);
}

/// The child an event is about.
trait AboutChild {
    fn child(&self) -> Option<ChildId>;
}

impl AboutChild for SupervisorEvent {
    fn child(&self) -> Option<ChildId> {
        anyloop::EventSet::key(self).copied()
    }
}
