//! Runs the `calloop_relay` program: the example library inside a calloop program, in both
//! of anyloop's ways in: a `CalloopSource` in the program's own calloop loop (the default),
//! and a `CalloopLoop` that owns the calloop loop (`--owned`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_with_timeout(mut child: std::process::Child) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("calloop_relay did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_relays_the_feeder_lines_then_quits_on_idle() {
    demo(&[]);
}

#[test]
fn demo_with_anyloop_owning_the_calloop_loop() {
    demo(&["--owned"]);
}

fn demo(extra: &[&str]) {
    let child = Command::new(env!("CARGO_BIN_EXE_calloop_relay"))
        .arg("--demo")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn calloop_relay");
    let out = wait_with_timeout(child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "stdout:\n{stdout}");
    assert!(
        lines[0].contains("written by a calloop timer"),
        "{}",
        lines[0]
    );
    assert!(lines[5].ends_with("and the demo quits"), "{}", lines[5]);
    assert!(stderr.contains("idle for"), "stderr:\n{stderr}");
    assert!(stderr.contains("done: 6 lines"), "stderr:\n{stderr}");
}

#[test]
fn relays_stdin_until_end_of_input() {
    relay_stdin(&[]);
    relay_stdin(&["--owned"]);
}

fn relay_stdin(extra: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_calloop_relay"))
        .args(["--plain", "--idle", "0"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn calloop_relay");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"alpha\nbeta\ngamma\n").expect("write");
    drop(stdin);
    let out = wait_with_timeout(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{stderr}",
        out.status
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alpha\nbeta\ngamma\n");
    assert!(
        stderr.contains("end of input after 3 lines"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn bad_arguments_fail_cleanly() {
    let out = Command::new(env!("CARGO_BIN_EXE_calloop_relay"))
        .args(["--idle=-1"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--idle must be"));
}
