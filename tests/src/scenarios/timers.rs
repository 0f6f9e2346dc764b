//! [S32–S43](anyloop::contract#s32) and [R27–R38](anyloop::contract#r27): timers.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{IoEvents, Schedule, TimerId};

use crate::bounded::on_other_thread;
use crate::driver::TIMEOUT;
use crate::probe::Log;
use crate::runner::Env;

const MS: Duration = Duration::from_millis(1);

/// The tolerance of "never early": deadlines have millisecond granularity
/// ([R31](anyloop::contract#r31)).
const GRANULARITY: Duration = MS;

/// [S32](anyloop::contract#s32): a 0-interval timer fires exactly once per iteration, and an
/// always-ready fd is still dispatched on every one of them ([R27](anyloop::contract#r27),
/// [R35](anyloop::contract#r35)).
pub fn s32_zero_interval_every_iteration_no_starvation_r27_r35(env: &Env) {
    let d = env.start();
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let (ticks, reads, iters) = (
        Arc::new(Log::new()),
        Arc::new(Log::new()),
        d.iteration_counter(),
    );
    let (t, i, token) = (ticks.clone(), iters.clone(), env.token("t"));
    d.lp()
        .add_timer(Schedule::EVERY_ITERATION, move |_| {
            let _ = &token;
            t.push(i.load(Ordering::SeqCst));
        })
        .expect("add timer");
    let (r, i, token) = (reads.clone(), iters.clone(), env.token("w"));
    d.lp()
        .add_watch(null.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
            let _ = &token;
            r.push(i.load(Ordering::SeqCst));
        })
        .expect("add watch");
    // Blocking iterations: the 0 timer must keep them from blocking.
    let start = d.iterations();
    d.on_loop(|ctx| {
        for _ in 0..20 {
            ctx.run_once(None).expect("run_once");
        }
    });
    let want: Vec<u64> = (start..start + 20).collect();
    assert_eq!(ticks.snapshot(), want, "R27: not once per iteration");
    assert_eq!(reads.snapshot(), want, "R35: the fd starved");
}

/// [R27](anyloop::contract#r27)/[R30](anyloop::contract#r30): as [S32](anyloop::contract#s32), with
/// an fd the kernel reports ready (a socket's free buffer space) rather than an always-ready file,
/// and non-blocking iterations too: one iteration still runs the 0-interval timer and the watch
/// once each, never twice (a host whose poll reports both the fd and the timer must not run two
/// engine iterations for them). (Found by the model-based tests on calloop.)
pub fn r27_zero_interval_and_kernel_ready_fd_once_per_iteration_r30(env: &Env) {
    let d = env.start();
    let pair = crate::fds::SocketPair::new();
    let (ticks, writes, iters) = (
        Arc::new(Log::new()),
        Arc::new(Log::new()),
        d.iteration_counter(),
    );
    let (t, i, token) = (ticks.clone(), iters.clone(), env.token("t"));
    d.lp()
        .add_timer(Schedule::EVERY_ITERATION, move |_| {
            let _ = &token;
            t.push(i.load(Ordering::SeqCst));
        })
        .expect("add timer");
    let (w, i, token) = (writes.clone(), iters.clone(), env.token("w"));
    d.lp()
        .add_watch(pair.fd(), IoEvents::WRITABLE, move |_, _, _| {
            let _ = &token;
            w.push(i.load(Ordering::SeqCst));
        })
        .expect("add watch");
    let start = d.iterations();
    d.on_loop(|ctx| {
        for n in 0..40 {
            let timeout = if n % 2 == 0 {
                Some(Duration::ZERO)
            } else {
                None
            };
            ctx.run_once(timeout).expect("run_once");
        }
    });
    let want: Vec<u64> = (start..start + 40).collect();
    assert_eq!(ticks.snapshot(), want, "R27/R30: not once per iteration");
    assert_eq!(
        writes.snapshot(),
        want,
        "R8/R12: the watch not once per iteration"
    );
}

/// [S33](anyloop::contract#s33): a 0-interval timer that disables itself fires exactly once
/// (one-shot).
pub fn s33_one_shot_by_self_disable_r34(env: &Env) {
    let d = env.start_pumped();
    let (calls, lp, token) = (Arc::new(Log::new()), d.lp().clone(), env.token("t"));
    let c = calls.clone();
    d.lp()
        .add_timer(Schedule::EVERY_ITERATION, move |id| {
            let _ = &token;
            c.push(id);
            lp.update_timer(id, Schedule::Disabled)
                .expect("disable self");
        })
        .expect("add");
    assert!(
        calls.wait_len(1, TIMEOUT),
        "S33: the self-disabling zero-delay timer never fired"
    );
    d.settle();
    assert_eq!(calls.len(), 1, "R34: fired again after disabling itself");
}

/// [S34](anyloop::contract#s34): a timer added disabled never fires, and causes no wake-ups
/// ([R27](anyloop::contract#r27)).
pub fn s34_disabled_never_fires_r27(env: &Env) {
    let d = env.start();
    let (calls, token) = (Arc::new(Log::new()), env.token("t"));
    let c = calls.clone();
    d.lp()
        .add_timer(Schedule::Disabled, move |_| {
            let _ = &token;
            c.push(());
        })
        .expect("add");
    d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(300)))
        .assert_quiet("a disabled timer");
    assert_eq!(calls.len(), 0, "R27: a disabled timer fired");
}

/// [S35](anyloop::contract#s35): a foreign thread arms a disabled timer to 0 while the loop blocks
/// with no deadline: the loop wakes, the timer fires on every iteration until disabled
/// ([R28](anyloop::contract#r28), [R40](anyloop::contract#r40)).
pub fn s35_cross_thread_arm_wakes_r28_r40(env: &Env) {
    let d = env.start();
    let (calls, token) = (Arc::new(Log::new()), env.token("t"));
    let c = calls.clone();
    let id = d
        .lp()
        .add_timer(Schedule::Disabled, move |_| {
            let _ = &token;
            c.push(());
        })
        .expect("add");
    let pending = d.spawn_doing(
        "run_once(None) until a callback runs: only the foreign arm can end it (R28, R40)",
        |ctx| {
            let mut n = 0;
            while n == 0 {
                n = ctx.run_once(None).expect("run_once");
            }
            n
        },
    );
    thread::sleep(Duration::from_millis(30));
    let lp = d.lp().clone();
    on_other_thread("R28: arming a timer from a foreign thread", move || {
        lp.update_timer(id, Schedule::EVERY_ITERATION).expect("arm")
    });
    let ran = pending.wait();
    assert!(
        ran == 1 && calls.len() == 1,
        "R28/R46: the iteration woken by the foreign arm returned {ran} (run_once's count of \
         this loop's callbacks) and the armed timer's callback ran {} times: expected 1 and 1",
        calls.len()
    );
    d.on_loop(|ctx| ctx.turns(5));
    assert_eq!(calls.len(), 6, "R27: a 0 timer fires once per iteration");
    d.lp()
        .update_timer(id, Schedule::Disabled)
        .expect("disable");
    d.on_loop(|ctx| ctx.turns(3));
    assert_eq!(calls.len(), 6, "fired after being disabled");
}

fn first_firing(env: &Env, interval: Duration, update_after: Duration, new: Duration) -> Duration {
    let d = env.start_pumped();
    let (calls, token) = (Arc::new(Log::new()), env.token("t"));
    let c = calls.clone();
    let lp = d.lp().clone();
    let id = lp
        .add_timer(Schedule::Every(interval), move |id: TimerId| {
            let _ = &token;
            c.push(Instant::now());
            let _ = id;
        })
        .expect("add");
    thread::sleep(update_after);
    let updated_at = Instant::now();
    lp.update_timer(id, Schedule::Every(new)).expect("update");
    // A firing before the update (this thread was descheduled for long) does not count.
    let fired_after = |v: &[Instant]| v.iter().copied().find(|t| *t >= updated_at);
    assert!(
        calls.wait_until(TIMEOUT, |v| fired_after(v).is_some()),
        "the updated timer never fired"
    );
    lp.remove_timer(id).expect("remove");
    let fired = fired_after(&calls.snapshot()).expect("a firing after the update");
    fired.duration_since(updated_at)
}

/// [S36](anyloop::contract#s36): updating a 300 ms timer after ~200 ms to 300 ms restarts it: it
/// fires no earlier than 300 ms after the update ([R29](anyloop::contract#r29)).
pub fn s36_update_restarts_countdown_r29(env: &Env) {
    let d = Duration::from_millis(300);
    let since_update = first_firing(env, d, Duration::from_millis(200), d);
    assert!(
        since_update + GRANULARITY >= d,
        "R29: fired {since_update:?} after the update, the countdown was not restarted"
    );
}

/// [S37](anyloop::contract#s37): shortening a 5 s timer to 10 ms makes it fire soon, not after 5 s
/// ([R29](anyloop::contract#r29), [B7](anyloop::contract#b7)).
pub fn s37_update_shortens_r29(env: &Env) {
    let since_update = first_firing(
        env,
        Duration::from_secs(5),
        Duration::from_millis(50),
        Duration::from_millis(10),
    );
    assert!(
        since_update < Duration::from_millis(2500),
        "R29: a shortened timer waited {since_update:?} (the old 5 s sleep was kept)"
    );
    assert!(
        since_update + GRANULARITY >= Duration::from_millis(10),
        "R31: early"
    );
}

/// [S38](anyloop::contract#s38): timers of 1, 10, 50 and 100 ms never fire before their deadline,
/// on a monotonic clock, and periodic firings are at least one interval apart
/// ([R27](anyloop::contract#r27), [R31](anyloop::contract#r31), [R32](anyloop::contract#r32)).
pub fn s38_never_early_r27_r31_r32(env: &Env) {
    let d = env.start_pumped();
    let intervals = [1u64, 10, 50, 100].map(Duration::from_millis);
    let mut logs = Vec::new();
    for (k, &interval) in intervals.iter().enumerate() {
        let (calls, token, lp) = (
            Arc::new(Log::new()),
            env.token(format!("t{k}")),
            d.lp().clone(),
        );
        let c = calls.clone();
        let added = Instant::now();
        d.lp()
            .add_timer(Schedule::Every(interval), move |id| {
                let _ = &token;
                c.push(Instant::now());
                if c.len() == 3 {
                    lp.remove_timer(id).expect("remove");
                }
            })
            .expect("add");
        logs.push((added, calls));
    }
    for (k, (added, calls)) in logs.iter().enumerate() {
        assert!(calls.wait_len(3, TIMEOUT), "timer {k} did not fire 3 times");
        let times = calls.snapshot();
        let interval = intervals[k];
        let first = times[0].duration_since(*added);
        assert!(
            first + GRANULARITY >= interval,
            "R31: {interval:?} timer fired after {first:?}"
        );
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(
                gap + GRANULARITY >= interval,
                "R27/R31: {interval:?} timer fired {gap:?} apart"
            );
        }
    }
}

/// [R33](anyloop::contract#r33): two periodic timers with the same period that fire in one
/// iteration are re-armed from the same instant, so their next deadlines tie exactly; they
/// then fire in creation order, even when the later one took a table slot freed by an earlier
/// timer (creation order is not slot order).
pub fn r33_equal_deadlines_fire_in_creation_order(env: &Env) {
    let d = env.start();
    let order = Arc::new(Log::new());
    // `first` takes a slot, `early` a later one; removing `first` frees the earlier slot for
    // `late`, created after `early`.
    let first = d
        .lp()
        .add_timer(Schedule::Disabled, |_| {})
        .expect("add first");
    let mut ids = Vec::new();
    for label in ["early", "late"] {
        if label == "late" {
            d.lp().remove_timer(first).expect("remove first");
        }
        let (o, token) = (order.clone(), env.token(label));
        let id = d
            .lp()
            .add_timer(Schedule::Every(Duration::from_millis(20)), move |_| {
                let _ = &token;
                o.push(label);
            })
            .expect("add");
        ids.push(id);
    }
    for round in 0..3 {
        // Both due: one iteration fires both (in round 0 by deadline, after that by the tie).
        thread::sleep(Duration::from_millis(30));
        let ran = d.on_loop(|ctx| ctx.run_once(Some(Duration::ZERO)).expect("run_once"));
        assert_eq!(ran, 2, "round {round}: both periodic timers were due");
    }
    assert_eq!(
        order.snapshot(),
        vec!["early", "late", "early", "late", "early", "late"],
        "R33: equal deadlines fire in creation order"
    );
    for id in ids {
        d.lp().remove_timer(id).expect("remove");
    }
}

/// [S40](anyloop::contract#s40): expired timers fire in deadline order (30, 10, 20 ms created in
/// that order, then two of 40 ms): 10, 20, 30, 40a, 40b, also when all are due in one iteration
/// ([R33](anyloop::contract#r33)).
pub fn s40_deadline_order_r33(env: &Env) {
    for same_iteration in [true, false] {
        let d = if same_iteration {
            env.start()
        } else {
            env.start_pumped()
        };
        let order = Arc::new(Log::new());
        for (label, ms) in [
            ("30", 30u64),
            ("10", 10),
            ("20", 20),
            ("40a", 40),
            ("40b", 40),
        ] {
            let (o, token) = (
                order.clone(),
                env.token(format!("{label}-{same_iteration}")),
            );
            d.lp()
                .add_timer(Schedule::Once(Duration::from_millis(ms)), move |_| {
                    let _ = &token;
                    o.push(label);
                })
                .expect("add");
        }
        if same_iteration {
            thread::sleep(Duration::from_millis(60));
            let ran = d.on_loop(|ctx| ctx.run_once(Some(Duration::ZERO)).expect("run_once"));
            assert_eq!(ran, 5, "all five were due in this iteration");
        } else {
            assert!(
                order.wait_len(5, TIMEOUT),
                "R33: five due timers did not all fire: {:?}",
                order.snapshot()
            );
        }
        assert_eq!(
            order.snapshot(),
            vec!["10", "20", "30", "40a", "40b"],
            "R33"
        );
    }
}

/// [S41](anyloop::contract#s41): of two timers due in one iteration, the first disables the second:
/// the second does not fire in that iteration (nor later, being disabled)
/// ([R34](anyloop::contract#r34)).
pub fn s41_timer_disabled_by_earlier_timer_r34(env: &Env) {
    for remove in [false, true] {
        let d = env.start();
        let calls = Arc::new(Log::new());
        let (c2, token2) = (calls.clone(), env.token(format!("second-{remove}")));
        let lp = d.lp().clone();
        let (c1, token1) = (calls.clone(), env.token(format!("first-{remove}")));
        let ten = Schedule::Every(Duration::from_millis(10));
        // Created first, so due first; the second's id is filled in before either is due.
        let second_id = Arc::new(std::sync::Mutex::new(None::<TimerId>));
        let s = second_id.clone();
        let lp1 = lp.clone();
        lp.add_timer(Schedule::Once(Duration::from_millis(10)), move |_| {
            let _ = &token1;
            c1.push("first");
            let victim = crate::probe::lock(&s).expect("second id");
            if remove {
                lp1.remove_timer(victim).expect("remove second");
            } else {
                lp1.update_timer(victim, Schedule::Disabled)
                    .expect("disable second");
            }
        })
        .expect("add first");
        let id2 = lp
            .add_timer(ten, move |_| {
                let _ = &token2;
                c2.push("second");
            })
            .expect("add second");
        *crate::probe::lock(&second_id) = Some(id2);
        thread::sleep(Duration::from_millis(40));
        d.on_loop(|ctx| ctx.turns(3));
        assert_eq!(calls.snapshot(), vec!["first"], "R34 (remove: {remove})");
    }
}

/// [S42](anyloop::contract#s42): a 0-interval timer added by a timer callback is not fired in that
/// iteration, but in the next ([R17](anyloop::contract#r17), [R37](anyloop::contract#r37)).
pub fn s42_timer_added_in_timer_callback_waits_r37(env: &Env) {
    let d = env.start();
    let (calls, iters, lp) = (Arc::new(Log::new()), d.iteration_counter(), d.lp().clone());
    let (c, i) = (calls.clone(), iters.clone());
    let mut child = Some(env.token("child"));
    let token = env.token("parent");
    d.lp()
        .add_timer(Schedule::EVERY_ITERATION, move |id| {
            let _ = &token;
            c.push(("parent", i.load(Ordering::SeqCst)));
            lp.remove_timer(id).expect("remove self");
            if let Some(ct) = child.take() {
                let (c2, i2) = (c.clone(), i.clone());
                lp.add_timer(Schedule::EVERY_ITERATION, move |_| {
                    let _ = &ct;
                    c2.push(("child", i2.load(Ordering::SeqCst)));
                })
                .expect("add child");
            }
        })
        .expect("add");
    d.on_loop(|ctx| ctx.turns(2));
    let got = calls.snapshot();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[1].1,
        got[0].1 + 1,
        "R37: the child did not wait for the next iteration: {got:?}"
    );
}

/// [S43](anyloop::contract#s43): huge intervals (Duration::MAX, u32::MAX ms, u64::MAX s) neither
/// overflow nor fire; run_once with a short or a huge timeout still returns
/// ([R38](anyloop::contract#r38), [B24](anyloop::contract#b24), [B30](anyloop::contract#b30)).
pub fn s43_huge_intervals_no_overflow_r38(env: &Env) {
    let d = env.start();
    let huge = [
        Duration::MAX,
        Duration::from_millis(u32::MAX as u64),
        Duration::from_secs(u64::MAX),
        Duration::from_secs(i64::MAX as u64),
        Duration::from_millis(i32::MAX as u64 + 1),
    ];
    let calls = Arc::new(Log::new());
    let mut ids = Vec::new();
    for (k, interval) in huge.into_iter().enumerate() {
        let (c, token) = (calls.clone(), env.token(format!("t{k}")));
        ids.push(
            d.lp()
                .add_timer(Schedule::Every(interval), move |_| {
                    let _ = &token;
                    c.push(k);
                })
                .expect("add"),
        );
    }
    let start = Instant::now();
    let ran = d.on_loop(|ctx| {
        ctx.run_once(Some(Duration::from_millis(10)))
            .expect("run_once")
    });
    assert_eq!(ran, 0, "R38: a huge timer fired at once");
    assert!(
        start.elapsed() < TIMEOUT,
        "R38: a 10 ms run_once with huge timers pending took {:?}",
        start.elapsed()
    );
    for (&id, interval) in ids.iter().zip(huge) {
        d.lp()
            .update_timer(id, Schedule::Every(interval))
            .expect("update to huge");
    }
    // A huge loop timeout together with a short timer: the short one wins (B30).
    let (c, token) = (calls.clone(), env.token("short"));
    d.lp()
        .add_timer(Schedule::Every(Duration::from_millis(30)), move |id| {
            let _ = &token;
            let _ = id;
            c.push(99);
        })
        .expect("add short");
    let ran = d.on_loop(|ctx| {
        let mut ran = 0;
        while ran == 0 {
            ran = ctx.run_once(Some(Duration::MAX)).expect("run_once");
        }
        ran
    });
    assert_eq!(
        ran, 1,
        "R38: run_once(Some(Duration::MAX)) returned {ran} callbacks, expected 1 (the due timer)"
    );
    assert_eq!(
        calls.snapshot(),
        vec![99],
        "R38: only the short timer may fire"
    );
}

/// [R30](anyloop::contract#r30): after a stall of many periods, a periodic timer fires once, then
/// resumes its cadence from that firing (no catch-up burst).
pub fn r30_no_catch_up_after_stall(env: &Env) {
    let d = env.start();
    let (calls, token) = (Arc::new(Log::new()), env.token("t"));
    let c = calls.clone();
    d.lp()
        .add_timer(Schedule::Every(Duration::from_millis(10)), move |_| {
            let _ = &token;
            c.push(Instant::now());
        })
        .expect("add");
    let per_iteration = d.on_loop(move |ctx| {
        thread::sleep(Duration::from_millis(150)); // the stall: 15 periods
        let mut per = Vec::new();
        for _ in 0..3 {
            per.push(ctx.run_once(Some(Duration::ZERO)).expect("run_once"));
        }
        per
    });
    assert_eq!(
        per_iteration[0], 1,
        "R30: after the stall it fires exactly once"
    );
    assert_eq!(
        &per_iteration[1..],
        &[0, 0],
        "R30: catch-up firings: {per_iteration:?}"
    );
}

/// [R36](anyloop::contract#r36): a timer callback re-arming itself restarts the countdown from the
/// update, and does not fire again in the same iteration.
pub fn r36_rearm_from_own_callback_r36(env: &Env) {
    let d = env.start_pumped();
    let (calls, lp, iters, token) = (
        Arc::new(Log::new()),
        d.lp().clone(),
        d.iteration_counter(),
        env.token("t"),
    );
    let c = calls.clone();
    d.lp()
        .add_timer(Schedule::Every(Duration::from_millis(5)), move |id| {
            let _ = &token;
            let now = Instant::now();
            let first = c.is_empty();
            if first {
                lp.update_timer(id, Schedule::Every(Duration::from_millis(150)))
                    .expect("re-arm");
            }
            c.push((now, Instant::now(), iters.load(Ordering::SeqCst)));
        })
        .expect("add");
    assert!(
        calls.wait_len(2, TIMEOUT),
        "R36: the timer re-armed from its own callback to 150 ms did not fire again"
    );
    let got = calls.snapshot();
    let (_, updated_at, iter0) = got[0];
    let (second, _, iter1) = got[1];
    assert_ne!(iter0, iter1, "R36: fired twice in one iteration");
    let gap = second.duration_since(updated_at);
    assert!(
        gap + GRANULARITY >= Duration::from_millis(150),
        "R36: re-armed timer fired after {gap:?}"
    );
}

/// [R29](anyloop::contract#r29)/[R5](anyloop::contract#r5): an update to the *same* interval still
/// restarts the countdown.
pub fn r29_update_same_interval_restarts(env: &Env) {
    let d = Duration::from_millis(200);
    let since_update = first_firing(env, d, Duration::from_millis(120), d);
    assert!(
        since_update + GRANULARITY >= d,
        "R29: fired {since_update:?} after the update"
    );
}

/// [R6](anyloop::contract#r6)/[R27](anyloop::contract#r27): a disabled timer can be enabled,
/// disabled and enabled again, keeping its id.
pub fn r06_timer_disable_enable_cycles(env: &Env) {
    let d = env.start();
    let (calls, token) = (Arc::new(Log::new()), env.token("t"));
    let c = calls.clone();
    let id = d
        .lp()
        .add_timer(Schedule::Disabled, move |id| {
            let _ = &token;
            c.push(id);
        })
        .expect("add");
    for round in 0..5 {
        d.lp()
            .update_timer(id, Schedule::EVERY_ITERATION)
            .expect("enable");
        d.on_loop(|ctx| ctx.turns(1));
        d.lp()
            .update_timer(id, Schedule::Disabled)
            .expect("disable");
        d.on_loop(|ctx| ctx.turns(2));
        assert_eq!(calls.snapshot(), vec![id; round + 1], "round {round}");
    }
}
