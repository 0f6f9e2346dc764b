//! Soak: registrations churned on every backend at once for minutes, with the process's
//! resident memory sampled at intervals; it must stay flat (no leak per operation).
//!
//! Not part of `cargo test` (ignored); run it with `ANYLOOP_SOAK_SECS=300 cargo test --release -p
//! anyloop-conformance --test soak -- --ignored --nocapture` (default 60 s). It prints one line per
//! sample: elapsed time, operations so far, RSS.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{IoEvents, Loop, Schedule};
use anyloop_conformance::fds::{drain, Pipe};
use anyloop_conformance::{Driver, TIMEOUT};

/// Resident set size of this process in KiB (the `VmRSS` line of /proc/self/status: the
/// same figure as /proc/self/statm's second field, already in KiB).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Counts adds and frees: a free is the drop of this, moved into every callback.
struct Counted(Arc<AtomicU64>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// One worker: cycles of add watch / add `Once(ZERO)` timer / update / remove on `lp`, with a
/// bounded live set, plus writes that make the watches fire.
fn churn(
    lp: Loop,
    pipe: Arc<Pipe>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    adds: Arc<AtomicU64>,
    frees: Arc<AtomicU64>,
) {
    let mut live = Vec::new();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let counted = Counted(frees.clone());
        let watch = lp
            .add_watch(pipe.fd(), IoEvents::READABLE, move |_, fd, _| {
                let _ = &counted;
                drain(fd);
            })
            .expect("add_watch");
        let counted = Counted(frees.clone());
        let timer = lp
            .add_timer(Schedule::Once(Duration::ZERO), move |_| {
                let _ = &counted;
            })
            .expect("add_timer");
        adds.fetch_add(2, Ordering::Relaxed);
        if n.is_multiple_of(4) {
            pipe.write(1);
        }
        let _ = lp.update_watch(watch, IoEvents::READABLE | IoEvents::WRITABLE);
        live.push((watch, timer));
        if live.len() > 32 {
            let (w, t) = live.remove(0);
            lp.remove_watch(w).expect("remove_watch");
            lp.remove_timer(t).expect("remove_timer");
        }
        ops.fetch_add(6, Ordering::Relaxed);
        if n.is_multiple_of(64) {
            // Back-pressure: wait for an iteration of the loop, which also runs the frees of
            // everything removed before it (R25). Without it a fast worker outruns a busy
            // loop and RSS measures the backlog of pending frees, not leaks.
            let (tx, rx) = std::sync::mpsc::channel();
            let lp2 = lp.clone();
            lp.add_timer(Schedule::EVERY_ITERATION, move |id| {
                let _ = lp2.remove_timer(id);
                let _ = tx.send(());
            })
            .expect("add ping");
            rx.recv_timeout(TIMEOUT)
                .expect("the loop stopped answering");
            ops.fetch_add(2, Ordering::Relaxed);
        }
    }
    for (w, t) in live {
        lp.remove_watch(w).expect("remove_watch");
        lp.remove_timer(t).expect("remove_timer");
    }
}

#[test]
#[ignore = "minutes long: run with --ignored (see the file's doc)"]
fn soak_churn_on_every_backend_memory_stays_flat() {
    let secs: u64 = std::env::var("ANYLOOP_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let duration = Duration::from_secs(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let (ops, adds, frees) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut drivers = Vec::new();
    let mut workers = Vec::new();
    let mut loop_jobs = Vec::new();
    for backend in support::backends() {
        let d = Driver::start(&backend);
        // The loop blocks until woken: the churn's own wake-ups drive it.
        let s = stop.clone();
        loop_jobs.push(d.spawn(move |ctx| {
            while !s.load(Ordering::Relaxed) {
                ctx.run_once(Some(Duration::from_millis(50)))
                    .expect("run_once");
            }
        }));
        for _ in 0..2 {
            let (lp, pipe) = (d.lp().clone(), Arc::new(Pipe::new()));
            let (s, o, a, f) = (stop.clone(), ops.clone(), adds.clone(), frees.clone());
            workers.push(thread::spawn(move || churn(lp, pipe, s, o, a, f)));
        }
        drivers.push(d);
    }
    let start = Instant::now();
    let samples = 20u32;
    let mut rss = Vec::new();
    println!("soak: {} backends, {secs} s", drivers.len());
    for _ in 0..samples {
        thread::sleep(duration / samples);
        let kib = rss_kib();
        rss.push(kib);
        println!(
            "soak: t={:>6.1}s ops={:>11} live={:>6} rss={kib} KiB",
            start.elapsed().as_secs_f64(),
            ops.load(Ordering::Relaxed),
            adds.load(Ordering::Relaxed) - frees.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker panicked");
    }
    for job in loop_jobs {
        job.wait_for(TIMEOUT).expect("loop job did not end");
    }
    for d in &drivers {
        d.on_loop(|ctx| ctx.turns(2));
        let stats = d.stats();
        assert_eq!(
            (stats.watches, stats.timers, stats.pending_frees),
            (0, 0, 0),
            "{}: {stats:?}",
            d.name()
        );
    }
    drop(drivers);
    assert_eq!(
        adds.load(Ordering::Relaxed),
        frees.load(Ordering::Relaxed),
        "every add freed once"
    );
    // Flat: after the first quarter (allocator and caches warmed up), RSS may wobble but
    // not grow with the operation count.
    let warm = rss[rss.len() / 4];
    let last = *rss.last().expect("samples");
    println!(
        "soak: {} ops in {:?}; rss after warm-up {warm} KiB, at the end {last} KiB",
        ops.load(Ordering::Relaxed),
        start.elapsed()
    );
    assert!(
        last <= warm + warm / 5 + 2048,
        "resident memory grew from {warm} KiB to {last} KiB: a leak per operation?"
    );
}
