//! The `fetch` program as a user runs it, against a loopback server, on every loop this
//! build includes: bodies saved byte-exact, `--json` events, exit statuses.

#[allow(dead_code)]
#[path = "../../interop-curl/tests/support/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyloop_backends::LoopChoice;
use serde_json::Value;
use server::{pattern, Server};

/// Runs `fetch`; killed after a minute, so that a hang fails the test instead of stalling it.
fn fetch(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_fetch"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fetch");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    let finished = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let finished = finished.clone();
        let args = args.join(" ");
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !finished.load(SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !finished.load(SeqCst) {
                eprintln!("fetch {args} still running after 60 s: killed");
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        })
    };
    let output = child.wait_with_output().expect("wait for fetch");
    finished.store(true, SeqCst);
    let _ = watchdog.join();
    output
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

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn downloads_several_urls_at_once_on_every_loop() {
    let server = Server::http();
    for choice in LoopChoice::built() {
        let dir = fresh_dir(&format!("fetch-{choice}"));
        let big = server.url("/bytes/3000000?seed=1");
        let slow = server.url("/slow/300000?chunk=20000&ms=10&seed=2");
        let small = server.url("/bytes/1000?seed=3");
        let output = fetch(&[
            "--loop",
            choice.name(),
            "--json",
            "-o",
            dir.to_str().unwrap(),
            &big,
            &slow,
            &small,
        ]);
        assert!(output.status.success(), "{choice}: {output:?}");
        // Three URLs named `N?seed=S`: the file names get their number.
        for (k, seed, len) in [(1, 1, 3_000_000), (2, 2, 300_000), (3, 3, 1000)] {
            let name = ["3000000", "300000", "1000"][k - 1];
            let saved = std::fs::read(dir.join(name)).expect("saved");
            assert!(saved == pattern(seed, len), "{choice}: {name} differs");
        }
        let events = json_events(&output);
        assert!(events.iter().all(|e| e["loop"] == choice.name()));
        assert_eq!(of_kind(&events, "started").len(), 3);
        let done = of_kind(&events, "done");
        assert_eq!(done.len(), 3, "{choice}");
        assert!(done.iter().all(|d| d["ok"] == true && d["status"] == 200));
        let slow_progress: Vec<u64> = of_kind(&events, "progress")
            .iter()
            .filter(|p| p["name"] == "300000")
            .map(|p| p["downloaded"].as_u64().unwrap())
            .collect();
        assert!(slow_progress.len() >= 2, "{choice}: {slow_progress:?}");
        assert!(slow_progress.windows(2).all(|w| w[0] < w[1]));
        let summary = of_kind(&events, "summary");
        assert_eq!(summary[0]["completed"], 3);
        assert_eq!(summary[0]["failed"], 0);
    }
}

#[test]
fn failures_are_reported_and_set_the_exit_status() {
    let server = Server::http();
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone", listener.local_addr().unwrap())
    };
    for choice in LoopChoice::built() {
        let dir = fresh_dir(&format!("fetch-fail-{choice}"));
        let output = fetch(&[
            "--loop",
            choice.name(),
            "--json",
            "--fail",
            "-o",
            dir.to_str().unwrap(),
            &server.url("/die/5000"),
            &refused,
            &server.url("/missing"),
            &server.url("/bytes/10"),
        ]);
        assert_eq!(output.status.code(), Some(1), "{choice}: {output:?}");
        let events = json_events(&output);
        let done = of_kind(&events, "done");
        let by_name = |name: &str| *done.iter().find(|d| d["name"] == name).unwrap();
        assert_eq!(by_name("5000")["curl_code"], 18, "partial file");
        assert_eq!(by_name("gone")["curl_code"], 7, "couldn't connect");
        assert_eq!(by_name("gone")["file"], Value::Null, "no file for nothing");
        assert_eq!(by_name("missing")["curl_code"], 22, "--fail: HTTP 404");
        assert_eq!(by_name("10")["ok"], true);
        assert_eq!(of_kind(&events, "summary")[0]["failed"], 3);
    }
}

#[test]
fn bars_view_and_bad_options() {
    let server = Server::http();
    let output = fetch(&[&server.url("/bytes/2000")]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2000 bytes, status 200"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 completed, 0 failed"));
    assert_eq!(fetch(&[]).status.code(), Some(2), "no URL");
    assert_eq!(fetch(&["--loop", "qt", "http://x/"]).status.code(), Some(2));
}
