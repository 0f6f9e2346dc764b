//! Runs the `tokio_relay` program: the example library inside a tokio application, in both of
//! anyloop-tokio's ways in: a `LocalDriver` on the application's own `LocalSet` of a
//! multi-thread runtime (the default), and a `TokioLoop` that owns the runtime (`--owned`).

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
            panic!("tokio_relay did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_relays_the_feeder_lines_then_quits_on_idle() {
    demo(&[]);
}

#[test]
fn demo_with_anyloop_owning_the_runtime() {
    demo(&["--owned"]);
}

fn demo(extra: &[&str]) {
    let child = Command::new(env!("CARGO_BIN_EXE_tokio_relay"))
        .arg("--demo")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tokio_relay");
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
    assert!(lines[0].contains("written by a tokio task"), "{}", lines[0]);
    assert!(lines[5].ends_with("and the demo quits"), "{}", lines[5]);
    assert!(stderr.contains("idle for"), "stderr:\n{stderr}");
    assert!(stderr.contains("done: 6 lines"), "stderr:\n{stderr}");
    // The application's own status task ticked while the relay worked.
    assert!(!stderr.contains(" 0 status ticks"), "stderr:\n{stderr}");
}

#[test]
fn relays_stdin_to_end_of_input_either_way() {
    for extra in [&[][..], &["--owned"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokio_relay"))
            .args(["--plain", "--idle", "0"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tokio_relay");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"alpha\nbeta\n").unwrap();
        drop(stdin);
        let out = wait_with_timeout(child);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "alpha\nbeta\n",
            "{extra:?}"
        );
        assert!(stderr.contains("done: 2 lines"), "{extra:?}: {stderr}");
    }
}
