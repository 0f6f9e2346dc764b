//! The `supervise` program as a user runs it: exit statuses, `--json` output, errors, signals,
//! on every loop this build includes.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyloop_backends::LoopChoice;
use serde_json::Value;

fn supervise(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_supervise"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run supervise")
}

fn json_events(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

#[test]
fn the_demo_ends_as_scripted_on_every_loop() {
    for choice in LoopChoice::built() {
        let output = supervise(&["--demo", "--json", "--loop", choice.name()]);
        assert!(output.status.success(), "{choice}: {output:?}");
        let events = json_events(&output);
        assert!(events.iter().all(|e| e["loop"] == choice.name()));
        let quits = of_kind(&events, "quit");
        let by_name = |name: &str| {
            quits
                .iter()
                .find(|q| q["name"] == name)
                .unwrap_or_else(|| panic!("{choice}: no quit for {name}: {events:#?}"))
        };
        assert_eq!(by_name("build")["exit_status"], 0);
        assert_eq!(by_name("flaky")["exit_status"], 3);
        assert_eq!(by_name("stuck")["signal"], "SIGKILL");
        assert_eq!(by_name("stuck")["signal_number"], 9);
        let progress = of_kind(&events, "progress");
        assert_eq!(progress.len(), 8, "{choice}");
        assert_eq!(progress.last().unwrap()["position"], 8);
        let signals: Vec<_> = of_kind(&events, "signal_sent")
            .iter()
            .map(|e| e["signal"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(signals, ["SIGTERM", "SIGKILL"], "{choice}");
        assert_eq!(of_kind(&events, "close").len(), 1);
    }
}

#[test]
fn the_exit_status_is_the_commands() {
    for choice in LoopChoice::built() {
        let output = supervise(&[
            "--json",
            "--loop",
            choice.name(),
            "--",
            "sh",
            "-c",
            "printf 'bin\\377ary\\n'; exit 5",
        ]);
        assert_eq!(output.status.code(), Some(5), "{choice}: {output:?}");
        let events = json_events(&output);
        let line = of_kind(&events, "line")[0];
        assert_eq!(
            line["bytes"],
            serde_json::json!([98, 105, 110, 255, 97, 114, 121])
        );
        assert_eq!(line["stream"], "stdout");
        assert_eq!(of_kind(&events, "launched")[0]["name"], "sh");
    }
}

#[test]
fn the_terminal_view_labels_streams_and_reports_the_end() {
    let output = supervise(&["--", "sh", "-c", "echo hello; echo oops >&2; kill -TERM $$"]);
    assert_eq!(output.status.code(), Some(128 + 15));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("out hello"), "{text}");
    assert!(text.contains("err oops"), "{text}");
    assert!(text.contains("killed by signal 15 (SIGTERM)"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colours when stdout is not a terminal: {text}"
    );
}

#[test]
fn a_timeout_kills_the_command() {
    let started = Instant::now();
    let output = supervise(&[
        "--json",
        "--timeout",
        "0.2",
        "--grace",
        "5",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(output.status.code(), Some(128 + 15), "{output:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let events = json_events(&output);
    assert_eq!(of_kind(&events, "quit")[0]["killed"], true);
}

#[test]
fn clear_errors_for_a_missing_program_and_bad_options() {
    let output = supervise(&["--", "/nonexistent/anyloop-missing"]);
    assert_eq!(output.status.code(), Some(127));
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(
        err.contains("supervise: error: cannot start `/nonexistent/anyloop-missing`: No such file"),
        "{err}"
    );

    for (args, says) in [
        (&["--loop", "qt", "--", "true"][..], "invalid value 'qt'"),
        (&["--grace=-1", "--", "true"], "is not a number of seconds"),
        (
            &["--timeout=nan", "--", "true"],
            "is not a number of seconds",
        ),
        (&["--demo", "--timeout", "1"], "cannot be used with"),
        (&["--frobnicate"], "unexpected argument"),
    ] {
        let output = supervise(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let err = String::from_utf8(output.stderr).unwrap();
        assert!(
            err.contains("error:") && err.contains(says),
            "{args:?}: {err}"
        );
    }

    let output = supervise(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8(output.stderr)
        .unwrap()
        .contains("give a COMMAND"));
}

#[test]
fn ctrl_c_kills_the_children_with_the_grace_period() {
    for choice in LoopChoice::built() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_supervise"))
            .args(["--json", "--loop", choice.name(), "--", "sh", "-c"])
            .arg("echo ready; exec sleep 30")
            .stdout(Stdio::piped())
            .spawn()
            .expect("run supervise");
        // Wait for the child's first line so the signal watch is in place.
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        while !seen.contains("\"ready\"") {
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
            assert!(n > 0, "{choice}: supervise ended early: {seen}");
            seen.push_str(&line);
        }
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        // A hang guard: if the interrupt is not handled, kill supervise (and fail below)
        // rather than wait for the child's `sleep 30`.
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(Duration::from_secs(20)).is_err() {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        });
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let status = child.wait().unwrap();
        let _ = done.send(());
        watchdog.join().unwrap();
        assert_eq!(status.code(), Some(128 + 15), "{choice}: {seen}{rest}");
        assert!(rest.contains("\"signal_sent\""), "{choice}: {rest}");
    }
}

/// A backend this build left out (`--loop glib` without the `glib` feature) is named in a
/// clear error, not a panic; every backend it includes runs. `.ci/run` also runs this test in
/// the build without the `glib` feature.
#[test]
fn a_loop_left_out_of_the_build_is_a_clear_error() {
    for choice in LoopChoice::ALL {
        let output = supervise(&["--json", "--loop", choice.name(), "--", "true"]);
        let err = String::from_utf8_lossy(&output.stderr);
        if choice.is_built() {
            assert!(output.status.success(), "{choice}: {output:?}");
        } else {
            assert_eq!(output.status.code(), Some(1), "{choice}: {output:?}");
            let feature = choice
                .feature()
                .expect("only optional backends can be left out");
            assert!(
                err.contains(&format!(
                    "supervise: error: the {choice} loop is not built into this binary"
                )) && err.contains(&format!("`{feature}` feature")),
                "{choice}: {err}"
            );
        }
    }
}
