//! [R57](anyloop::contract#r57) (with [R25](anyloop::contract#r25), [R46](anyloop::contract#r46)):
//! `LoopStats`, the same from every thread and from callbacks, with the same meaning on every
//! backend: live watches and timers, pending frees, iterations.
//!
//! The loop is not pumped here: it only iterates when a scenario runs it, so every count is
//! stable between two reads and a window in which nobody runs the loop can be watched.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyloop::{IoEvents, LoopStats, Schedule};

use crate::bounded::{join, on_other_thread};
use crate::driver::TIMEOUT;
use crate::fds::Pipe;
use crate::probe::Log;
use crate::runner::Env;

/// The counts that do not move while the loop is idle.
fn counts(stats: LoopStats) -> (usize, usize, usize) {
    (stats.watches, stats.timers, stats.pending_frees)
}

/// [R57](anyloop::contract#r57): `Loop::stats()` read on the loop thread, inside a callback and
/// from another thread agrees with `Runner::stats()`, for every field; inside a callback the counts
/// include the running registration, and `iterations` lies between the values before and after that
/// iteration.
pub fn r57_stats_same_from_loop_thread_callbacks_and_other_threads(env: &Env) {
    let d = env.start();
    let pipes: Vec<Pipe> = (0..3).map(|_| Pipe::new()).collect();
    for (k, pipe) in pipes.iter().enumerate() {
        let token = env.token(format!("w{k}"));
        let interest = [IoEvents::READABLE, IoEvents::empty(), IoEvents::WRITABLE][k];
        d.lp()
            .add_watch(pipe.fd(), interest, move |_, _, _| {
                let _ = &token;
            })
            .expect("add watch");
    }
    let inside = Arc::new(Log::new());
    let (i, lp, token) = (inside.clone(), d.lp().clone(), env.token("reader"));
    d.lp()
        .add_timer(Schedule::Once(Duration::ZERO), move |_| {
            let _ = &token;
            i.push(lp.stats());
        })
        .expect("add timer");
    let token = env.token("idle");
    d.lp()
        .add_timer(Schedule::Disabled, move |_| {
            let _ = &token;
        })
        .expect("add timer");
    let lp = d.lp().clone();
    let (before, after) = d.on_loop(move |ctx| {
        let before = ctx.stats();
        assert_eq!(lp.stats(), before, "R57: Loop::stats() on the loop thread");
        ctx.run_once(Some(Duration::ZERO)).expect("run_once");
        let after = ctx.stats();
        assert_eq!(lp.stats(), after, "R57: Loop::stats() on the loop thread");
        (before, after)
    });
    assert_eq!(counts(before), (3, 2, 0), "R57: {before:?}");
    let from_here = d.lp().stats();
    let from_thread = {
        let lp = d.lp().clone();
        on_other_thread("R57: stats from a foreign thread", move || lp.stats())
    };
    assert_eq!(from_here, after, "R57: from the test thread");
    assert_eq!(from_thread, after, "R57: from another thread");
    assert_eq!(
        d.raw().stats(),
        after,
        "R57: through the backend's own handle"
    );
    let got = inside.snapshot();
    assert_eq!(
        got.len(),
        1,
        "the Once(ZERO) reader fired {} times",
        got.len()
    );
    let seen = got[0];
    assert_eq!(
        counts(seen),
        (3, 2, 0),
        "R57: read inside a callback: {seen:?}"
    );
    assert!(
        before.iterations <= seen.iterations && seen.iterations <= after.iterations,
        "R57: iterations read inside the callback {} outside [{}, {}]",
        seen.iterations,
        before.iterations,
        after.iterations
    );
    assert_eq!(counts(after), (3, 2, 0), "R27: a fired Once stays counted");
}

/// [R57](anyloop::contract#r57)/[R25](anyloop::contract#r25): `watches` and `timers` follow every
/// add and remove, enabled or not; after a remove made from another thread while nobody runs the
/// loop, `pending_frees` is non-zero (watched over a window) until the next iteration, which runs
/// the frees; zero after.
pub fn r57_counts_follow_add_and_remove_pending_frees_until_next_iteration_r25(env: &Env) {
    let d = env.start();
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let lp = d.lp().clone();
    let mut watches = Vec::new();
    let mut timers = Vec::new();
    for k in 0..3 {
        let token = env.token(format!("w{k}"));
        let interest = if k == 0 {
            IoEvents::empty()
        } else {
            IoEvents::READABLE
        };
        watches.push(
            lp.add_watch(null.as_raw_fd(), interest, move |_, _, _| {
                let _ = &token;
            })
            .expect("add watch"),
        );
        assert_eq!(
            counts(lp.stats()),
            (k + 1, 0, 0),
            "R57: after add_watch {k}"
        );
    }
    for (k, schedule) in [
        Schedule::Disabled,
        Schedule::Once(Duration::ZERO),
        Schedule::Every(Duration::from_secs(3600)),
    ]
    .into_iter()
    .enumerate()
    {
        let token = env.token(format!("t{k}"));
        timers.push(
            lp.add_timer(schedule, move |_| {
                let _ = &token;
            })
            .expect("add timer"),
        );
        assert_eq!(
            counts(lp.stats()),
            (3, k + 1, 0),
            "R57: after add_timer {k}"
        );
    }
    d.on_loop(|ctx| ctx.turns(2)); // the Once fires and stays counted
    assert_eq!(counts(lp.stats()), (3, 3, 0), "R57/R27");
    // Removes from another thread while nobody runs the loop.
    let (remover, w, t) = (lp.clone(), watches.remove(1), timers.remove(1));
    on_other_thread(
        "R39: removes from a foreign thread while nobody runs the loop",
        move || {
            remover.remove_watch(w).expect("remove watch");
            remover.remove_timer(t).expect("remove timer");
        },
    );
    for look in 0..5 {
        let stats = lp.stats();
        assert_eq!(
            (stats.watches, stats.timers),
            (2, 2),
            "R57: look {look}: removed registrations still counted: {stats:?}"
        );
        assert_eq!(
            stats.pending_frees, 2,
            "R25/R57: look {look}: two frees must be pending until the loop iterates: {stats:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(env.probe().total(), 0, "R24: freed without an iteration");
    d.on_loop(|ctx| ctx.turns(1));
    assert_eq!(
        counts(lp.stats()),
        (2, 2, 0),
        "R25: frees not run by the next iteration"
    );
    assert_eq!(
        env.probe().total(),
        2,
        "R25: the two frees of removals made while nobody ran the loop, by the next iteration"
    );
    // The rest, from the loop thread.
    let lp2 = lp.clone();
    let pending = d.on_loop(move |_| {
        for w in watches {
            lp2.remove_watch(w).expect("remove watch");
        }
        for t in timers {
            lp2.remove_timer(t).expect("remove timer");
        }
        lp2.stats()
    });
    assert_eq!(
        counts(pending),
        (0, 0, 4),
        "R57: removes on the loop thread"
    );
    d.on_loop(|ctx| ctx.turns(1));
    assert_eq!(counts(lp.stats()), (0, 0, 0), "R25");
    assert!(
        lp.stats().is_idle(),
        "R57: stats not idle after everything was removed and freed: {:?}",
        lp.stats()
    );
}

/// [R57](anyloop::contract#r57)/[R46](anyloop::contract#r46): `iterations` grows by at least one
/// per `run_once` even when nothing is ready (idle waits that time out, and non-blocking ones),
/// and does not grow while nobody runs the loop, even with operations and wake-ups arriving from
/// other threads meanwhile.
pub fn r57_iterations_count_idle_waits_and_stand_still_r46(env: &Env) {
    let d = env.start();
    let token = env.token("far");
    d.lp()
        .add_timer(Schedule::Every(Duration::from_secs(3600)), move |_| {
            let _ = &token;
        })
        .expect("add timer");
    let per_call = d.on_loop(|ctx| {
        // Waits that time out, and non-blocking ones.
        [5, 0, 5, 0, 5, 0].map(|ms| {
            let before = ctx.stats().iterations;
            let ran = ctx
                .run_once(Some(Duration::from_millis(ms)))
                .expect("run_once");
            assert_eq!(ran, 0, "nothing is due");
            ctx.stats().iterations - before
        })
    });
    assert!(
        per_call.iter().all(|n| *n >= 1),
        "R57: an idle run_once not counted as an iteration: {per_call:?}"
    );
    // Nobody runs the loop: the count stands still through foreign ops and wake-ups.
    let still = d.lp().stats().iterations;
    let stop = Arc::new(AtomicBool::new(false));
    let (lp, s, token) = (d.lp().clone(), stop.clone(), env.token("churn"));
    let churn = thread::spawn(move || {
        let id = lp
            .add_timer(Schedule::Disabled, move |_| {
                let _ = &token;
            })
            .expect("add");
        while !s.load(Ordering::SeqCst) {
            lp.update_timer(id, Schedule::Every(Duration::from_secs(60)))
                .expect("update");
            lp.wake();
            thread::sleep(Duration::from_millis(5));
        }
        lp.remove_timer(id).expect("remove");
    });
    for look in 0..10 {
        thread::sleep(Duration::from_millis(10));
        assert_eq!(
            d.lp().stats().iterations,
            still,
            "R57: look {look}: iterations counted while nobody ran the loop"
        );
    }
    stop.store(true, Ordering::SeqCst);
    join(
        churn,
        "R39: the thread adding and removing while nobody runs the loop",
    );
    assert_eq!(d.lp().stats().iterations, still, "R57");
    // And it moves again once the loop runs (the frees of the churn, too).
    d.on_loop(|ctx| ctx.turns(1));
    assert!(d.lp().stats().iterations > still, "R57");
    assert!(
        env.probe().wait_freed("churn", TIMEOUT),
        "R25: the churn timer was not freed"
    );
}
