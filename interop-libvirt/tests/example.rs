//! The `libvirt-events` example as a whole process, on each loop: the demo's six events
//! arrive, every libvirt registration is removed and freed before exit, and the exit status
//! is clean. Errors (bad URI, bad option) exit non-zero with a message.
//!
//! `cargo test` builds the package's examples before running its tests; run this file
//! alone with `cargo test -p anyloop-libvirt --examples --test example`.

use std::path::PathBuf;
use std::process::{Command, Output};

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

fn run(args: &[&str]) -> Output {
    Command::new(example_binary())
        .args(args)
        .output()
        .expect("run libvirt-events")
}

#[test]
fn demo_on_every_loop_exits_cleanly() {
    for event_loop in ["select", "glib", "calloop"] {
        let output = run(&["--demo", "--loop", event_loop]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{event_loop}: {stderr}");
        let events: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            events,
            [
                "event 'lifecycle' for domain 'anyloop-demo': Defined Added",
                "event 'lifecycle' for domain 'anyloop-demo': Started Booted",
                "event 'lifecycle' for domain 'anyloop-demo': Suspended Paused",
                "event 'lifecycle' for domain 'anyloop-demo': Resumed Unpaused",
                "event 'lifecycle' for domain 'anyloop-demo': Stopped Destroyed",
                "event 'lifecycle' for domain 'anyloop-demo': Undefined Removed",
            ],
            "{event_loop}"
        );
        assert!(
            stderr.contains("0 still registered, 0 frees pending"),
            "{event_loop}: {stderr}"
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

    let bad_option = run(&["--loop", "tokio"]);
    assert_eq!(bad_option.status.code(), Some(2));
    let message = String::from_utf8_lossy(&bad_option.stderr);
    assert!(message.contains("invalid value 'tokio'"), "{message}");
}
