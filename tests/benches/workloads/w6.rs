//! W6 memory: resident growth per registration in a fresh process.
//!
//! For each (backend, kind) the benchmark re-executes itself (`--w6-child BACKEND KIND N`):
//! the child creates the loop, opens the fds it needs (watches), reads `RssAnon` from
//! `/proc/self/status`, adds N registrations, runs one non-blocking iteration (anyloop
//! backends: so lazily applied registrations are counted), reads `RssAnon` again and prints the
//! growth per registration (anonymous memory only: see [`RSS_LINE`]). Every callback is a
//! zero-sized closure (`|_| {}`): its box is no allocation, so the figure is the
//! registration's own cost, beyond any closure.
//!
//! Kinds: 100 000 disabled timers (`Schedule::Disabled`), 100 000 armed timers
//! (`Schedule::Every(60..160 s)`, never firing), 10 000 read watches on eventfds. The floor's
//! figure is its own structures (heap slab, heap index, watch vector) for the same N; the
//! kernel's epoll items are not resident memory of the process and are not counted.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use anyloop::{IoEvents, Schedule};
use rustix::event::{eventfd, EventfdFlags};

use crate::anyloop_adapter::Anyloop;
use crate::backends::Choice;
use crate::contender::{never_fires, Contender};
use crate::floor::Floor;
use crate::measure::Measure;

/// The kinds measured and their N.
pub const KINDS: [(&str, usize); 3] = [
    ("timers-disabled", 100_000),
    ("timers-armed", 100_000),
    ("watches", 10_000),
];

/// The line of `/proc/self/status` read: the process's anonymous resident memory. `VmRSS`
/// also counts file-backed pages, among them the program's own code, paged in the first time a
/// path runs: on the anyloop backends the two lines' growth differed by 60–260 KiB over the
/// watch run (6–26 of its "bytes per watch" at N = 10 000, and its ±7 % spread). Code is paid
/// once per process, not per registration.
const RSS_LINE: &str = "RssAnon:";

/// Anonymous resident memory of this process in bytes.
fn anon_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(RSS_LINE))
        .expect("RssAnon line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("RssAnon value");
    kb * 1024
}

/// The i-th armed interval: 60..160 s, spread.
fn interval(i: usize) -> Duration {
    Duration::from_millis(60_000 + (i as u64 * 7919) % 100_000)
}

fn eventfds(kind: &str, n: usize) -> Vec<OwnedFd> {
    if kind != "watches" {
        return Vec::new();
    }
    (0..n)
        .map(|_| eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC).expect("eventfd"))
        .collect()
}

/// Resident bytes per registration on an anyloop backend.
pub fn anyloop<C: Choice>(kind: &str, n: usize) -> f64 {
    let mut c = Anyloop::<C>::make();
    let lp = c.event_loop().expect("anyloop loop");
    let fds = eventfds(kind, n);
    // Warm the allocator's path for the status read, then take the baseline.
    let _ = anon_rss();
    let before = anon_rss();
    for i in 0..n {
        match kind {
            "timers-disabled" => {
                lp.add_timer(Schedule::Disabled, |_id| {})
                    .map_err(anyloop::Error::from)
                    .expect("add_timer");
            }
            "timers-armed" => {
                lp.add_timer(Schedule::Every(interval(i)), |_id| {})
                    .map_err(anyloop::Error::from)
                    .expect("add_timer");
            }
            "watches" => {
                lp.add_watch(
                    fds.get(i).expect("eventfd").as_raw_fd(),
                    IoEvents::READABLE,
                    |_id, _fd, _ev| {},
                )
                .map_err(anyloop::Error::from)
                .expect("add_watch");
            }
            other => panic!("unknown W6 kind {other}"),
        }
    }
    c.run_nonblocking();
    let after = anon_rss();
    drop(lp);
    drop(c);
    drop(fds);
    after.saturating_sub(before) as f64 / n as f64
}

/// Resident bytes per registration of the floor's own structures.
pub fn floor(kind: &str, n: usize) -> f64 {
    let mut f = Floor::make();
    let fds = eventfds(kind, n);
    let _ = anon_rss();
    let before = anon_rss();
    for i in 0..n {
        match kind {
            "timers-disabled" => {
                f.timer_add_disabled();
            }
            "timers-armed" => {
                f.timer_add(interval(i), never_fires);
            }
            "watches" => f.watch_add(fds.get(i).expect("eventfd").as_raw_fd(), |_| {}),
            other => panic!("unknown W6 kind {other}"),
        }
    }
    let after = anon_rss();
    drop(f);
    drop(fds);
    after.saturating_sub(before) as f64 / n as f64
}

/// The child side: runs `w6` (the backend's entry point) and prints the figure, or `none`.
pub fn child(w6: fn(&str, usize) -> Option<f64>, kind: &str, n: usize) {
    match w6(kind, n) {
        Some(bytes) => println!("W6-RESULT {bytes}"),
        None => println!("W6-RESULT none"),
    }
}

/// The parent side: re-executes this binary for one (backend, kind) and collects its figure.
pub fn spawn(backend: &'static str, kind: usize) -> Vec<Measure> {
    let (name, n) = KINDS[kind];
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args(["--w6-child", backend, name, &n.to_string()])
        .output()
        .expect("spawn the W6 child");
    if !out.status.success() {
        eprintln!(
            "  W6 child {backend} {name} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return Vec::new();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("W6-RESULT "))
        .next_back()
        .and_then(|v| v.trim().parse::<f64>().ok());
    match value {
        Some(bytes) => vec![Measure::new("W6", n as u64, bytes).phase(name)],
        None => Vec::new(),
    }
}
