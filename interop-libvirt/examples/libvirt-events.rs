//! `libvirt-events`: prints the domain lifecycle events of a libvirt URI, on the event loop
//! of your choice; a Rust `virsh event --all --loop` (lifecycle events only).
//!
//! ```text
//! cargo run -p anyloop-libvirt --example libvirt-events -- --demo                # test:///default
//! cargo run -p anyloop-libvirt --example libvirt-events -- --demo --loop glib
//! cargo run -p anyloop-libvirt --example libvirt-events -- --loop calloop --timeout 60 qemu:///system
//! ```
//!
//! libvirt's event implementation is the loop chosen with `--loop`, running on the main
//! thread; events are printed by a typed callback on that thread. With `--demo`, a worker
//! thread defines, starts, suspends, resumes, destroys and undefines a domain, and the
//! program exits once the six events arrived. Without it, the program runs until
//! interrupted or until `--timeout` seconds passed.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyloop_examples::loops::{LoopChoice, LoopRunner};
use anyloop_libvirt::{vtable_stats, Connection, DomainLifecycle};
use clap::{Parser, ValueEnum};

/// Print libvirt domain lifecycle events, with libvirt's event machinery on an anyloop loop.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The libvirt URI to watch.
    #[arg(default_value = "test:///default")]
    uri: String,
    /// The event loop that runs libvirt's events.
    #[arg(long = "loop", value_enum, default_value_t = LoopKind::Select)]
    event_loop: LoopKind,
    /// Drive a domain through define, start, suspend, resume, destroy and undefine from a
    /// worker thread, print the six events, then exit.
    #[arg(long)]
    demo: bool,
    /// Exit after this many seconds (default: run until interrupted; 10 with --demo, as a
    /// safety net).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
}

/// The loops this example can run.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LoopKind {
    /// The built-in loop (`anyloop-select`).
    Select,
    /// A GLib main context (`anyloop-glib`), as in a GTK application.
    Glib,
    /// A calloop `EventLoop` (`anyloop-calloop`), as in a Wayland compositor.
    Calloop,
}

impl From<LoopKind> for LoopChoice {
    fn from(kind: LoopKind) -> LoopChoice {
        match kind {
            LoopKind::Select => LoopChoice::Select,
            LoopKind::Glib => LoopChoice::Glib,
            LoopKind::Calloop => LoopChoice::Calloop,
        }
    }
}

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
    let mut main_loop = LoopRunner::new(args.event_loop.into())?;
    let lp = main_loop.handle();
    anyloop_libvirt::silence_libvirt_stderr(); // errors are reported below, once
    anyloop_libvirt::register(&lp)?;
    let conn = Connection::open(&args.uri)
        .map_err(|error| format!("cannot open {:?}: {error}", args.uri))?;

    let quit = main_loop.quitter();
    let seen = Arc::new(AtomicUsize::new(0));
    let demo = args.demo;
    let counter = Arc::clone(&seen);
    let quit_when_done = quit.clone();
    conn.domain_events()?.on::<DomainLifecycle>(move |event| {
        println!("{event}");
        let mine = !demo || event.name == DEMO_DOMAIN;
        if mine && counter.fetch_add(1, Ordering::SeqCst) + 1 == DEMO_EVENTS && demo {
            quit_when_done.quit();
        }
    })?;

    let timed_out = Arc::new(AtomicBool::new(false));
    let timeout = args.timeout.or(demo.then_some(10));
    let _deadline = match timeout {
        Some(secs) => {
            let (flag, quit) = (Arc::clone(&timed_out), quit.clone());
            Some(lp.timer(Some(Duration::from_secs(secs)), move |_id| {
                flag.store(true, Ordering::SeqCst);
                quit.quit();
            })?)
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

    // Closing deregisters libvirt's callback; libvirt then removes its event timer, whose
    // free runs on the loop: let the loop run it before the program ends.
    conn.close()?;
    drop(_deadline);
    main_loop.turn(Some(Duration::ZERO))?;
    let stats = vtable_stats();
    eprintln!(
        "vtable: {} handles and {} timeouts added by libvirt, {} still registered, {} frees pending",
        stats.handles_added,
        stats.timeouts_added,
        stats.handles + stats.timeouts,
        stats.pending_frees()
    );

    if worker_failed {
        return Err("the demo failed".into());
    }
    if demo && seen.load(Ordering::SeqCst) < DEMO_EVENTS {
        return Err(format!(
            "only {} of {DEMO_EVENTS} demo events arrived before the timeout",
            seen.load(Ordering::SeqCst)
        )
        .into());
    }
    if timed_out.load(Ordering::SeqCst) && !demo {
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
