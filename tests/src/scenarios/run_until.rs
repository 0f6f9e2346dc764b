//! [R46](anyloop::contract#r46) and [R47](anyloop::contract#r47): `Runner::run_until` (done,
//! deadline, quit) and `Loop::wake`.
//!
//! A lost wake-up or a lost quit would hang the loop thread; every such wait is bounded by
//! the kit's watchdog (a job waited for with [`TIMEOUT`], which fails the scenario), and the
//! hung loop is then unblocked by the driver's shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{Schedule, Stopped};

use crate::bounded::on_other_thread;
use crate::driver::{Pending, TIMEOUT};
use crate::runner::Env;

/// The tolerance of "never early": deadlines have millisecond granularity
/// ([R31](anyloop::contract#r31)).
const GRANULARITY: Duration = Duration::from_millis(1);

/// Waits for a loop job with the watchdog's bound; fails the scenario if it never finishes.
fn watchdog<R>(pending: &Pending<R>, what: &str) -> R {
    pending
        .wait_for(TIMEOUT)
        .unwrap_or_else(|| panic!("{what}: the loop thread was still blocked after {TIMEOUT:?}"))
}

/// [R47](anyloop::contract#r47): `run_until` returns `Done` once a callback of the loop (a `Once(20
/// ms)` timer) makes the condition true, well before its deadline; the condition was checked after
/// that iteration, not only at the deadline.
pub fn r47_run_until_done_by_callback(env: &Env) {
    let d = env.start();
    let done = Arc::new(AtomicBool::new(false));
    let (flag, token) = (done.clone(), env.token("setter"));
    d.lp()
        .add_timer(Schedule::Once(Duration::from_millis(20)), move |_| {
            let _ = &token;
            flag.store(true, Ordering::SeqCst);
        })
        .expect("add");
    let flag = done.clone();
    let (stopped, checks) = d.on_loop(move |ctx| {
        let mut checks = 0;
        let stopped = ctx
            .run_until(Some(Instant::now() + TIMEOUT), &mut || {
                checks += 1;
                flag.load(Ordering::SeqCst)
            })
            .expect("run_until");
        (stopped, checks)
    });
    assert_eq!(stopped, Stopped::Done, "R47");
    assert!(
        done.load(Ordering::SeqCst),
        "R47: run_until returned Done before the condition held"
    );
    assert!(checks >= 2, "R47: the condition was checked {checks} times");
}

/// [R47](anyloop::contract#r47): with nothing to do, `run_until` with a 50 ms deadline returns
/// `DeadlinePassed`, not before the deadline; the same with a condition that stays false while a
/// periodic timer keeps the loop iterating.
pub fn r47_run_until_deadline_passed_when_idle(env: &Env) {
    let d = env.start();
    for busy in [false, true] {
        let ticks = Arc::new(AtomicUsize::new(0));
        let timer = busy.then(|| {
            let (t, token) = (ticks.clone(), env.token("ticker"));
            d.lp()
                .timer(Schedule::Every(Duration::from_millis(5)), move |_| {
                    let _ = &token;
                    t.fetch_add(1, Ordering::SeqCst);
                })
                .expect("add")
        });
        let (stopped, elapsed) = d.on_loop(|ctx| {
            let start = Instant::now();
            let stopped = ctx
                .run_until(Some(start + Duration::from_millis(50)), &mut || false)
                .expect("run_until");
            (stopped, start.elapsed())
        });
        assert_eq!(stopped, Stopped::DeadlinePassed, "R47 (busy: {busy})");
        assert!(
            elapsed + GRANULARITY >= Duration::from_millis(50),
            "R47: returned {elapsed:?} into a 50 ms deadline (busy: {busy})"
        );
        if busy {
            assert!(ticks.load(Ordering::SeqCst) >= 1, "the ticker never ran");
        }
        drop(timer);
    }
}

/// [R47](anyloop::contract#r47): a quit from another thread ends a `run_until` blocked with no
/// condition in sight (`Stopped::Quit`, before its deadline), and is consumed: the next `run_until`
/// with a short deadline returns `DeadlinePassed`.
pub fn r47_run_until_quit_from_foreign_thread_consumed(env: &Env) {
    let d = env.start();
    let running = d.spawn(|ctx| ctx.run_until(Some(Instant::now() + TIMEOUT * 2), &mut || false));
    thread::sleep(Duration::from_millis(50));
    assert!(
        !running.is_done(),
        "R47: run_until returned with nothing to do"
    );
    let quitter = d.quitter();
    on_other_thread("R47: a quit request from a foreign thread", move || {
        quitter.quit()
    });
    let stopped = watchdog(&running, "R47: quit did not end run_until").expect("run_until");
    assert_eq!(stopped, Stopped::Quit, "R47");
    let again = d.on_loop(|ctx| {
        ctx.run_until(
            Some(Instant::now() + Duration::from_millis(50)),
            &mut || false,
        )
    });
    assert_eq!(
        again.expect("run_until"),
        Stopped::DeadlinePassed,
        "R47: the quit was not consumed"
    );
}

/// [R47](anyloop::contract#r47): the condition is checked before the first iteration: already true,
/// `run_until` returns `Done` at once without iterating (the backend's `iterations` do not move),
/// whatever the deadline, even one already passed.
pub fn r47_run_until_checks_done_before_first_iteration(env: &Env) {
    let d = env.start();
    let token = env.token("ready");
    d.lp()
        .add_timer(Schedule::EVERY_ITERATION, move |_| {
            let _ = &token;
        })
        .expect("add a timer that would run in any iteration");
    let results = d.on_loop(|ctx| {
        let now = Instant::now();
        [None, Some(now + TIMEOUT), Some(now)]
            .into_iter()
            .map(|deadline| {
                let before = ctx.stats().iterations;
                let mut checks = 0;
                let stopped = ctx
                    .run_until(deadline, &mut || {
                        checks += 1;
                        true
                    })
                    .expect("run_until");
                (stopped, checks, ctx.stats().iterations - before)
            })
            .collect::<Vec<_>>()
    });
    for (k, (stopped, checks, iterations)) in results.into_iter().enumerate() {
        assert_eq!(stopped, Stopped::Done, "R47: case {k}");
        assert_eq!(checks, 1, "R47: case {k}: checked {checks} times");
        assert_eq!(
            iterations, 0,
            "R47: case {k}: iterated with the condition already true"
        );
    }
}

/// [R47](anyloop::contract#r47)/[R46](anyloop::contract#r46): a condition made true by another
/// thread, followed by `Loop::wake` from that thread, ends a `run_until` that has no deadline and
/// nothing registered (`Done`).
pub fn r47_run_until_sees_foreign_condition_after_wake_r46(env: &Env) {
    let d = env.start();
    for round in 0..20 {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let running = d.spawn(move |ctx| ctx.run_until(None, &mut || flag.load(Ordering::SeqCst)));
        if round % 2 == 0 {
            thread::sleep(Duration::from_millis(10)); // else race the loop into its wait
        }
        let lp = d.lp().clone();
        on_other_thread(
            "R47: setting the condition and Loop::wake from a foreign thread",
            move || {
                done.store(true, Ordering::SeqCst);
                lp.wake();
            },
        );
        let stopped =
            watchdog(&running, &format!("R46: round {round}: wake-up lost")).expect("run_until");
        assert_eq!(stopped, Stopped::Done, "R47: round {round}");
    }
}

/// [R46](anyloop::contract#r46)/[R40](anyloop::contract#r40): `Loop::wake` from another thread
/// makes a `run_once(None)` blocked with nothing registered return (having run nothing), over 50
/// rounds that race the wake against the loop entering its wait; a wake with no loop waiting is not
/// lost either: it ends the next wait, or is absorbed, but never blocks the caller.
pub fn r46_wake_from_foreign_thread_ends_blocked_run_once_r40(env: &Env) {
    let d = env.start();
    for round in 0..50 {
        let blocked = d.spawn(|ctx| ctx.run_once(None));
        if round % 5 == 0 {
            thread::sleep(Duration::from_millis(20));
            assert!(
                !blocked.is_done(),
                "R46: run_once(None) returned with nothing to do (round {round})"
            );
        }
        let lp = d.lp().clone();
        on_other_thread("R46: Loop::wake from a foreign thread", move || lp.wake());
        let ran =
            watchdog(&blocked, &format!("R46: round {round}: wake-up lost")).expect("run_once");
        assert_eq!(ran, 0, "R46: a wake-up ran a callback (round {round})");
    }
}
