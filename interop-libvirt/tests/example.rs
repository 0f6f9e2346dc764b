//! The `libvirt-events` example as a whole process, on each loop: the demo's six events
//! arrive, every libvirt registration is removed and freed before exit, and the exit status
//! is clean. Errors (bad URI, bad option) exit non-zero with a message.
//!
//! `cargo test` builds the package's examples before running its tests; run this file
//! alone with `cargo test -p anyloop-libvirt --examples --test example`.
//!
//! The demo runs once more over a daemon connection, against a private `libvirtd` (skipped
//! without one, unless `ANYLOOP_REQUIRE_LIBVIRTD=1`).

// The daemon helper of the per-backend tests; this file uses only part of it.
#[allow(dead_code)]
#[path = "common/daemon.rs"]
mod daemon;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Longer than the demo's own 10 s safety timeout: a run that takes this long hangs.
const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

/// What a finished run printed, and how it ended.
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// `target/<profile>/examples/libvirt-events`, beside this test's `deps/` directory.
fn example_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("path of the test binary");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("examples").join("libvirt-events");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo test -p anyloop-libvirt --examples --test example`",
        binary.display()
    );
    binary
}

/// Runs the example to completion, killing it (and failing) past [`PROCESS_DEADLINE`].
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(example_binary())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start libvirt-events");
    // Read both pipes while waiting, so a chatty child never blocks on a full pipe.
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stdout = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut bytes);
        bytes
    });
    let stderr = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut bytes);
        bytes
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for libvirt-events") {
            break status;
        }
        if started.elapsed() > PROCESS_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("libvirt-events {args:?} still running after {PROCESS_DEADLINE:?}: killed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The demo's six events, as the example prints them.
const DEMO_EVENTS: [&str; 6] = [
    "event 'lifecycle' for domain 'anyloop-demo': Defined Added",
    "event 'lifecycle' for domain 'anyloop-demo': Started Booted",
    "event 'lifecycle' for domain 'anyloop-demo': Suspended Paused",
    "event 'lifecycle' for domain 'anyloop-demo': Resumed Unpaused",
    "event 'lifecycle' for domain 'anyloop-demo': Stopped Destroyed",
    "event 'lifecycle' for domain 'anyloop-demo': Undefined Removed",
];

/// Runs the demo with `extra` arguments on every loop; each run prints the six events,
/// exits cleanly and leaves nothing registered. Returns each run's stderr.
fn demo_on_every_loop(extra: &[&str]) -> Vec<String> {
    anyloop_backends::LoopChoice::built()
        .map(|choice| {
            let event_loop = choice.name();
            let mut args = vec!["--demo", "--loop", event_loop];
            args.extend_from_slice(extra);
            let output = run(&args);
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(output.status.success(), "{event_loop}: {stderr}");
            assert_eq!(
                stdout.lines().collect::<Vec<_>>(),
                DEMO_EVENTS,
                "{event_loop}"
            );
            assert!(
                stderr.contains("0 still registered, 0 frees pending"),
                "{event_loop}: {stderr}"
            );
            stderr
        })
        .collect()
}

#[test]
fn demo_on_every_loop_exits_cleanly() {
    demo_on_every_loop(&[]);
}

#[test]
fn demo_over_a_daemon_connection_with_keepalive() {
    let Some(daemon) = daemon::Daemon::start("demo_over_a_daemon_connection_with_keepalive") else {
        return; // no libvirtd: skipped, and said so
    };
    let uri = daemon.uri();
    for stderr in demo_on_every_loop(&["--keepalive", "1", &uri]) {
        // libvirt watched its RPC socket on the loop (the local driver adds no handle).
        assert!(
            stderr.contains("vtable: 1 handles"),
            "{stderr}\n{}",
            daemon.log()
        );
    }
}

#[test]
fn bad_uri_and_bad_option_are_clear_errors() {
    let bad_uri = run(&["nosuchdriver:///"]);
    assert_eq!(bad_uri.status.code(), Some(1));
    let message = String::from_utf8_lossy(&bad_uri.stderr);
    assert!(
        message.contains("cannot open \"nosuchdriver:///\""),
        "{message}"
    );

    let bad_keepalive = run(&["--keepalive", "0"]);
    assert_eq!(bad_keepalive.status.code(), Some(2));

    let bad_option = run(&["--loop", "qt"]);
    assert_eq!(bad_option.status.code(), Some(2));
    let message = String::from_utf8_lossy(&bad_option.stderr);
    assert!(message.contains("invalid value 'qt'"), "{message}");
}
