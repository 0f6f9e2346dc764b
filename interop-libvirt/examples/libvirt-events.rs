//! `libvirt-events`: prints the domain lifecycle events of a libvirt URI, on the event loop
//! of your choice; a Rust `virsh event --all --loop` (lifecycle events only).
//!
//! ```text
//! cargo run -p anyloop-libvirt --example libvirt-events -- --demo                # test:///default
//! cargo run -p anyloop-libvirt --example libvirt-events -- --demo --loop glib
//! cargo run -p anyloop-libvirt --example libvirt-events -- --loop calloop --timeout 60 qemu:///system
//! cargo run -p anyloop-libvirt --example libvirt-events -- --keepalive 5 qemu+ssh://host/system
//! ```
//!
//! libvirt's event implementation is the loop chosen with `--loop` (anyloop's one chooser,
//! `anyloop_backends::LoopChoice`), running on the main thread and driven through
//! `anyloop::Runner` only; events are printed by a typed, thread-bound callback on that
//! thread. With `--demo`, a worker thread defines, starts, suspends, resumes, destroys and
//! undefines a domain, and the program exits once the six events arrived. Without it, the
//! program runs until interrupted or until `--timeout` seconds passed. If libvirt closes a
//! remote connection (the daemon went away, or stopped answering the keep-alive messages
//! `--keepalive` turns on), the program says why and exits with status 1.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyloop::{Runner, Schedule};
use anyloop_backends::LoopChoice;
use anyloop_libvirt::{vtable_stats, CloseReason, Connection, ConnectionClosed, DomainLifecycle};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Parser;

/// Print libvirt domain lifecycle events, with libvirt's event machinery on an anyloop loop.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The libvirt URI to watch.
    #[arg(default_value = "test:///default")]
    uri: String,
    /// The event loop that runs libvirt's events: the built-in loop on epoll (`select`), on
    /// mio (`select-mio`) or on `poll(2)` (`select-poll`), a GLib main context (`glib`) as in a
    /// GTK application, a calloop event loop (`calloop`) as in a Wayland compositor, or a
    /// tokio runtime (`tokio`, or `tokio-multi` for a multi-thread one).
    #[arg(
        long = "loop",
        default_value_t = LoopChoice::Select,
        value_name = "LOOP",
        value_parser = PossibleValuesParser::new(LoopChoice::ALL.map(LoopChoice::name))
            .try_map(|name| name.parse::<LoopChoice>())
    )]
    event_loop: LoopChoice,
    /// Drive a domain through define, start, suspend, resume, destroy and undefine from a
    /// worker thread, print the six events, then exit.
    #[arg(long)]
    demo: bool,
    /// Exit after this many seconds (default: run until interrupted; 10 with --demo, as a
    /// safety net).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Send libvirt keep-alive messages after this many seconds of silence from the daemon,
    /// and give the connection up after 3 unanswered ones (remote URIs only).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    keepalive: Option<u32>,
}

/// Unanswered keep-alive messages before libvirt gives a connection up (`--keepalive`).
const KEEPALIVE_COUNT: u32 = 3;

/// Name of the domain the demo creates and removes again.
const DEMO_DOMAIN: &str = "anyloop-demo";
/// The demo's operations, each producing one lifecycle event.
const DEMO_EVENTS: usize = 6;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("libvirt-events: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // Made on this thread, which runs it: the loop thread.
    let mut main_loop = args.event_loop.create()?;
    let lp = main_loop.handle();
    anyloop_libvirt::silence_libvirt_stderr(); // errors are reported below, once
    anyloop_libvirt::register(&lp)?;
    let conn = Connection::open(&args.uri)
        .map_err(|error| format!("cannot open {:?}: {error}", args.uri))?;

    let quit = main_loop.quitter();
    // Events are delivered on this thread: the callbacks keep their counts in `Rc<Cell<..>>`.
    let seen = Rc::new(Cell::new(0usize));
    let demo = args.demo;
    let counter = Rc::clone(&seen);
    let quit_when_done = quit.clone();
    conn.domain_events()?
        .on_local::<DomainLifecycle>(move |event| {
            println!("{event}");
            if !demo || event.name == DEMO_DOMAIN {
                counter.set(counter.get() + 1);
                if demo && counter.get() == DEMO_EVENTS {
                    quit_when_done.quit();
                }
            }
        })
        .map_err(anyloop::Error::from)?;

    if let Some(secs) = args.keepalive {
        conn.set_keep_alive(Duration::from_secs(secs.into()), KEEPALIVE_COUNT)?;
    }
    // libvirt closing the connection under us (the daemon went away) ends the program.
    let closed: Rc<Cell<Option<CloseReason>>> = Rc::new(Cell::new(None));
    let (close_reason, quit_on_close) = (Rc::clone(&closed), quit.clone());
    conn.connection_events()?
        .on_local::<ConnectionClosed>(move |event| {
            close_reason.set(Some(event.reason));
            quit_on_close.quit();
        })
        .map_err(anyloop::Error::from)?;

    let timed_out = Rc::new(Cell::new(false));
    let timeout = args.timeout.or(demo.then_some(10));
    let _deadline = match timeout {
        Some(secs) => {
            let (flag, quit) = (Rc::clone(&timed_out), quit.clone());
            Some(
                lp.timer_local(Schedule::Once(Duration::from_secs(secs)), move |_id| {
                    flag.set(true);
                    quit.quit();
                })?,
            )
        }
        None => None,
    };

    let worker_failed = std::thread::scope(|scope| -> Result<bool, Box<dyn std::error::Error>> {
        let worker = demo.then(|| {
            let (conn, quit) = (&conn, quit.clone());
            scope.spawn(move || {
                let outcome = drive_demo_domain(conn);
                if outcome.is_err() {
                    quit.quit();
                }
                outcome
            })
        });
        main_loop.run()?;
        Ok(match worker.map(|worker| worker.join()) {
            Some(Ok(Err(error))) => {
                eprintln!("libvirt-events: demo: {error}");
                true
            }
            Some(Err(_)) => true,
            _ => false,
        })
    })?;

    // Closing deregisters libvirt's callbacks; libvirt then removes its event timer, whose
    // free runs on the loop: let the loop run it before the program ends. On a connection
    // libvirt closed already, telling the daemon fails: that is expected.
    match conn.close() {
        Err(error) if closed.get().is_none() => return Err(error.into()),
        _ => {}
    }
    drop(_deadline);
    main_loop.run_once(Some(Duration::ZERO))?;
    let stats = vtable_stats();
    eprintln!(
        "vtable: {} handles and {} timeouts added by libvirt, {} still registered, {} frees pending",
        stats.handles_added,
        stats.timeouts_added,
        stats.handles + stats.timeouts,
        stats.pending_frees()
    );

    if let Some(reason) = closed.get() {
        return Err(format!("libvirt closed the connection: {reason}").into());
    }
    if worker_failed {
        return Err("the demo failed".into());
    }
    if demo && seen.get() < DEMO_EVENTS {
        return Err(format!(
            "only {} of {DEMO_EVENTS} demo events arrived before the timeout",
            seen.get()
        )
        .into());
    }
    if timed_out.get() && !demo {
        eprintln!("libvirt-events: timeout reached");
    }
    Ok(())
}

/// The demo's domain operations, from a worker thread: libvirt then calls the vtable from
/// that thread, and the loop thread delivers the events.
fn drive_demo_domain(conn: &Connection) -> anyloop_libvirt::Result<()> {
    let xml = format!(
        "<domain type='test'><name>{DEMO_DOMAIN}</name><memory unit='MiB'>64</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    );
    let domain = conn.define_domain(&xml)?;
    domain.start()?;
    domain.suspend()?;
    domain.resume()?;
    domain.destroy()?;
    domain.undefine()
}
