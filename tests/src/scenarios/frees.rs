//! [S13–S20](anyloop::contract#s13) and [R21–R26](anyloop::contract#r21): when, where and how often
//! a callback's state is freed (dropped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, Schedule, Stopped, TimerId, WatchId};

use crate::bounded::on_other_thread;
use crate::driver::TIMEOUT;
use crate::fds::Pipe;
use crate::probe::Log;
use crate::runner::Env;

fn dev_null() -> std::fs::File {
    std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null")
}

/// [S13](anyloop::contract#s13): a disabled watch can be removed; update/remove afterwards are
/// NotFound; the free runs once, after remove returned, by the end of the next iteration
/// ([R4](anyloop::contract#r4), [R6](anyloop::contract#r6), [R25](anyloop::contract#r25)).
pub fn s13_remove_disabled_watch_frees_once_r04_r06(env: &Env) {
    use std::os::fd::AsRawFd;
    let d = env.start();
    let null = dev_null();
    let fd = null.as_raw_fd();
    let (token, calls) = (env.token("w"), Arc::new(Log::new()));
    let c = calls.clone();
    let lp = d.lp().clone();
    let probe = env.probe().clone();
    d.on_loop(move |ctx| {
        let id = lp
            .add_watch(
                fd,
                IoEvents::READABLE | IoEvents::WRITABLE,
                move |_, _, _| {
                    let _ = &token;
                    c.push(());
                },
            )
            .expect("add");
        lp.update_watch(id, IoEvents::empty()).expect("disable");
        lp.remove_watch(id)
            .expect("R6: removing a disabled watch works");
        assert_eq!(probe.count("w"), 0, "R21: freed inside remove");
        let again = lp.update_watch(id, IoEvents::READABLE);
        assert!(
            matches!(again, Err(Error::NotFound { .. })),
            "R4: {again:?}"
        );
        let again = lp.remove_watch(id);
        assert!(
            matches!(again, Err(Error::NotFound { .. })),
            "R3: {again:?}"
        );
        ctx.turns(2);
        assert_eq!(
            probe.count("w"),
            1,
            "R25: free by the end of the next iteration"
        );
        ctx.turns(3);
    });
    assert_eq!(
        calls.len(),
        0,
        "R4: the removed watch was re-armed and called"
    );
    drop(null);
}

/// [S14](anyloop::contract#s14): a disabled timer can be removed; update/remove afterwards are
/// NotFound; it never fires; the free runs once, deferred ([R4](anyloop::contract#r4),
/// [R6](anyloop::contract#r6)).
pub fn s14_remove_disabled_timer_frees_once_r04_r06(env: &Env) {
    let d = env.start_pumped();
    let (token, calls) = (env.token("t"), Arc::new(Log::new()));
    let c = calls.clone();
    let lp = d.lp();
    let id = lp
        .add_timer(Schedule::Every(Duration::from_secs(10)), move |_| {
            let _ = &token;
            c.push(());
        })
        .expect("add");
    lp.update_timer(id, Schedule::Disabled).expect("disable");
    lp.remove_timer(id).expect("R6: remove a disabled timer");
    let again = lp.update_timer(id, Schedule::Every(Duration::from_secs(20)));
    assert!(
        matches!(again, Err(Error::NotFound { .. })),
        "R4: {again:?}"
    );
    let again = lp.update_timer(id, Schedule::EVERY_ITERATION);
    assert!(
        matches!(again, Err(Error::NotFound { .. })),
        "R4: {again:?}"
    );
    let again = lp.remove_timer(id);
    assert!(
        matches!(again, Err(Error::NotFound { .. })),
        "R3: {again:?}"
    );
    assert!(env.probe().wait_freed("t", TIMEOUT), "free never ran");
    d.settle();
    assert_eq!(calls.len(), 0, "a removed timer fired");
}

/// [S15](anyloop::contract#s15): the free never runs inside remove, whether remove is called on the
/// loop thread (from another callback) or from a foreign thread; it runs on the loop thread
/// ([R21](anyloop::contract#r21), [R24](anyloop::contract#r24)).
pub fn s15_free_never_inside_remove_r21_r24(env: &Env) {
    let d = env.start_pumped();
    let lp = d.lp().clone();
    let pipe = Pipe::new();
    let mut ids = Vec::new();
    for label in ["by-callback", "by-foreign"] {
        let token = env.token(label);
        let id = lp
            .add_watch(pipe.fd(), IoEvents::empty(), move |_, _, _| {
                let _ = &token;
            })
            .expect("add");
        ids.push(id);
    }
    // Removal on the loop thread, from inside a timer callback.
    let (victim, probe, seen) = (ids[0], env.probe().clone(), Arc::new(Log::new()));
    let (lp2, seen2) = (lp.clone(), seen.clone());
    let remover = lp
        .add_timer(Schedule::EVERY_ITERATION, move |me| {
            let result = lp2.remove_watch(victim);
            seen2.push((result.is_ok(), probe.count("by-callback")));
            let _ = lp2.remove_timer(me);
        })
        .expect("add timer");
    assert!(seen.wait_len(1, TIMEOUT), "remover timer never fired");
    assert_eq!(
        seen.snapshot()[0],
        (true, 0),
        "freed inside remove or by then"
    );
    // Removal from a foreign thread.
    let lp3 = lp.clone();
    let other = ids[1];
    on_other_thread("R39: a remove from a foreign thread", move || {
        lp3.remove_watch(other).expect("remove")
    });
    for label in ["by-callback", "by-foreign"] {
        assert!(
            env.probe().wait_freed(label, TIMEOUT),
            "{label} never freed"
        );
    }
    for record in env.probe().records() {
        assert!(
            !record.inside_op,
            "R21: {} freed inside an op",
            record.label
        );
        assert_eq!(
            record.thread,
            d.loop_thread(),
            "R24: {} freed off-loop",
            record.label
        );
    }
    let _ = remover;
}

/// [S16](anyloop::contract#s16): a foreign thread removes a watch while its callback runs: remove
/// returns at once ([R44](anyloop::contract#r44)), the free waits until the callback returned
/// ([R22](anyloop::contract#r22)), the callback is not started again
/// ([R15](anyloop::contract#r15)).
pub fn s16_free_after_running_callback_r22_r44(env: &Env) {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let returned = Arc::new(Log::new());
    let (token, r) = (env.token("busy"), returned.clone());
    let probe = env.probe().clone();
    let id = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |_, _, _| {
            let _ = &token;
            let _ = entered_tx.send(());
            let released = release_rx.recv_timeout(TIMEOUT).is_ok();
            // Still alive: the free must not have run while this callback runs.
            r.push((released, probe.count("busy"), Instant::now()));
        })
        .expect("add");
    pipe.write(1); // never read: the fd stays ready, so a second start would show
    entered_rx
        .recv_timeout(TIMEOUT)
        .expect("callback never started");
    let lp = d.lp().clone();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(lp.remove_watch(id).map_err(|e| e.to_string()));
    });
    let removed = done_rx.recv_timeout(TIMEOUT);
    let _ = release_tx.send(());
    assert_eq!(
        removed,
        Ok(Ok(())),
        "R44: remove waited for the running callback"
    );
    assert!(env.probe().wait_freed("busy", TIMEOUT), "never freed");
    assert!(
        returned.wait_len(1, TIMEOUT),
        "R22: the blocked callback never returned after it was released"
    );
    d.settle();
    let runs = returned.snapshot();
    assert_eq!(runs.len(), 1, "R15: started again after remove returned");
    let (released, count_inside, returned_at) = runs[0];
    assert!(
        released,
        "S16: the callback's wait for its release timed out (the release came too late)"
    );
    assert_eq!(count_inside, 0, "R22: freed while the callback was running");
    let freed_at = env.probe().records()[0].at;
    assert!(
        freed_at >= returned_at,
        "R22: free before the callback returned"
    );
}

/// [S17](anyloop::contract#s17): a free may call every vtable operation (no lock held,
/// [R24](anyloop::contract#r24)): it adds and updates a timer, adds, updates and removes a watch,
/// removes another timer; all take effect.
pub fn s17_free_may_call_every_op_r24_r43(env: &Env) {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let lp = d.lp().clone();
    let fired = Arc::new(Log::new());
    let other_token = env.token("other-watch");
    let other = lp
        .add_watch(pipe.fd(), IoEvents::empty(), move |_, _, _| {
            let _ = &other_token;
        })
        .expect("add other");
    let doomed_token = env.token("doomed-timer");
    let doomed = lp
        .add_timer(Schedule::Disabled, move |_| {
            let _ = &doomed_token;
        })
        .expect("add doomed");
    struct OnFree(Box<dyn FnMut() + Send>);
    impl Drop for OnFree {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let (lp2, f2, fd) = (lp.clone(), fired.clone(), pipe.fd());
    let (new_timer_token, new_watch_token) = (env.token("new-timer"), env.token("new-watch"));
    let mut tokens = Some((new_timer_token, new_watch_token));
    let on_free = OnFree(Box::new(move || {
        let Some((tt, wt)) = tokens.take() else {
            return;
        };
        let f3 = f2.clone();
        let t = lp2
            .add_timer(Schedule::Disabled, move |id| {
                let _ = &tt;
                f3.push(id);
            })
            .expect("add_timer in a free");
        lp2.update_timer(t, Schedule::Every(Duration::from_millis(10)))
            .expect("update_timer in a free");
        let w = lp2
            .add_watch(fd, IoEvents::empty(), move |_, _, _| {
                let _ = &wt;
            })
            .expect("add_watch in a free");
        lp2.update_watch(w, IoEvents::READABLE)
            .expect("update_watch in a free");
        lp2.remove_watch(w).expect("remove_watch in a free");
        lp2.remove_watch(other)
            .expect("remove_watch(other) in a free");
        lp2.remove_timer(doomed).expect("remove_timer in a free");
    }));
    let token = env.token("freeing");
    let id = lp
        .add_watch(pipe.fd(), IoEvents::empty(), move |_, _, _| {
            let _ = (&on_free, &token);
        })
        .expect("add");
    lp.remove_watch(id).expect("remove");
    assert!(
        fired.wait_len(1, TIMEOUT),
        "the timer added by the free never fired"
    );
    for label in ["freeing", "other-watch", "doomed-timer", "new-watch"] {
        assert!(
            env.probe().wait_freed(label, TIMEOUT),
            "{label} never freed"
        );
    }
}

/// [S18](anyloop::contract#s18): destroying the loop frees every registration still present, once,
/// on the loop thread; afterwards operations report LoopGone or NotFound and adds hand the callback
/// back.
pub fn s18_frees_at_loop_destruction_r23_r48(env: &Env) {
    let d = env.start_pumped();
    let pipes: Vec<Pipe> = (0..3).map(|_| Pipe::new()).collect();
    let lp = d.lp().clone();
    let mut watches: Vec<WatchId> = Vec::new();
    let mut timers: Vec<TimerId> = Vec::new();
    for (i, pipe) in pipes.iter().enumerate() {
        let token = env.token(format!("h{i}"));
        watches.push(
            lp.add_watch(pipe.fd(), IoEvents::READABLE, move |_, _, _| {
                let _ = &token;
            })
            .expect("add"),
        );
        let token = env.token(format!("t{i}"));
        let interval = [
            Schedule::Disabled,
            Schedule::Every(Duration::from_secs(60)),
            Schedule::Every(Duration::from_millis(5)),
        ][i];
        timers.push(
            lp.add_timer(interval, move |_| {
                let _ = &token;
            })
            .expect("add"),
        );
    }
    d.settle();
    assert_eq!(env.probe().total(), 0, "freed before destruction");
    d.destroy();
    assert_eq!(
        env.probe().total(),
        6,
        "R48: destruction did not free all six"
    );
    assert!(
        env.probe().not_freed_exactly_once().is_empty(),
        "R23: not freed exactly once (label, frees): {:?}",
        env.probe().not_freed_exactly_once()
    );
    for record in env.probe().records() {
        assert_eq!(
            record.thread,
            d.loop_thread(),
            "R24: freed on the destroying thread"
        );
    }
    let gone =
        |r: anyloop::Result<()>| matches!(r, Err(Error::LoopGone) | Err(Error::NotFound { .. }));
    for (&h, &t) in watches.iter().zip(&timers) {
        assert!(
            gone(lp.update_watch(h, IoEvents::READABLE)),
            "R48 update_watch"
        );
        assert!(gone(lp.remove_watch(h)), "R48 remove_watch");
        assert!(
            gone(lp.update_timer(t, Schedule::EVERY_ITERATION)),
            "R48 update_timer"
        );
        assert!(gone(lp.remove_timer(t)), "R48 remove_timer");
    }
    let token = env.token("late-add");
    let late = d.raw().add_timer(Schedule::EVERY_ITERATION, move |_| {
        let _ = &token;
    });
    let rejected = late.expect_err("R48: add on a destroyed loop succeeded");
    assert!(
        matches!(rejected.error(), Error::LoopGone),
        "{:?}",
        rejected.error()
    );
    assert_eq!(
        env.probe().count("late-add"),
        0,
        "R2: the rejected callback was freed"
    );
    drop(rejected);
    let token = env.token("late-watch");
    let late = d
        .raw()
        .add_watch(pipes[0].fd(), IoEvents::READABLE, move |_, _, _| {
            let _ = &token;
        });
    assert!(
        matches!(late, Err(ref r) if matches!(r.error(), Error::LoopGone)),
        "R48: an add after destruction gave {:?}, expected LoopGone",
        late.as_ref().map_err(|r| r.error())
    );
    assert_eq!(
        env.probe().count("late-watch"),
        0,
        "R2: the rejected callback was freed"
    );
}

/// [S19](anyloop::contract#s19): a failed add (fd -1) returns a typed error naming the fd and hands
/// the callback back unfreed; the returned callback is the caller's own and still works
/// ([R2](anyloop::contract#r2)).
pub fn s19_failed_add_returns_callback_r02_r59(env: &Env) {
    let d = env.start_pumped();
    let (token, calls) = (env.token("rejected"), Arc::new(Log::new()));
    let c = calls.clone();
    let result = d.raw().add_watch(-1, IoEvents::READABLE, move |_, fd, _| {
        let _ = &token;
        c.push(fd);
    });
    let rejected = result.expect_err("fd -1 accepted");
    assert!(
        matches!(rejected.error(), Error::InvalidFd { fd: -1, .. }),
        "R59: {:?}",
        rejected.error()
    );
    d.settle();
    assert_eq!(env.probe().count("rejected"), 0, "R2: the backend freed it");
    let mut callback = rejected.into_callback();
    callback.call(WatchId::allocate(), 7, IoEvents::READABLE);
    assert_eq!(
        calls.snapshot(),
        vec![7],
        "the returned callback is not the caller's"
    );
    drop(callback);
    assert_eq!(
        env.probe().count("rejected"),
        1,
        "R2: the callback handed back must be freed once, by its drop"
    );
    assert_eq!(d.stats().watches, 0, "a failed add left a registration");
}

/// [S20](anyloop::contract#s20): 100 removals from a foreign thread while the loop is stopped stay
/// pending (`is_idle` false, counted), and one iteration runs them all
/// ([R25](anyloop::contract#r25), [R57](anyloop::contract#r57)).
pub fn s20_drain_pending_frees_r25_r57(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let lp = d.lp().clone();
    let mut watches = Vec::new();
    let mut timers = Vec::new();
    for i in 0..50 {
        let token = env.token(format!("h{i}"));
        watches.push(
            lp.add_watch(pipe.fd(), IoEvents::empty(), move |_, _, _| {
                let _ = &token;
            })
            .expect("add"),
        );
        let token = env.token(format!("t{i}"));
        timers.push(
            lp.add_timer(Schedule::Disabled, move |_| {
                let _ = &token;
            })
            .expect("add"),
        );
    }
    let before = d.stats();
    assert_eq!((before.watches, before.timers), (50, 50), "R57: {before:?}");
    on_other_thread(
        "R39: removes from a foreign thread while the loop is stopped",
        move || {
            for (h, t) in watches.into_iter().zip(timers) {
                lp.remove_watch(h).expect("remove");
                lp.remove_timer(t).expect("remove");
            }
        },
    );
    let stats = d.stats();
    assert_eq!(
        env.probe().total(),
        0,
        "R21: frees ran inside remove or off-loop"
    );
    assert_eq!((stats.watches, stats.timers), (0, 0), "R57: {stats:?}");
    assert_eq!(
        stats.pending_frees, 100,
        "R25: pending frees not reported: {stats:?}"
    );
    assert!(
        !stats.is_idle(),
        "R57: stats report idle with 100 frees pending: {stats:?}"
    );
    d.on_loop(|ctx| ctx.run_once(Some(Duration::ZERO)).expect("run_once"));
    assert_eq!(
        env.probe().total(),
        100,
        "R25: one iteration did not drain the frees"
    );
    assert!(d.stats().is_idle(), "R25: still not idle");
}

/// [R25](anyloop::contract#r25): `Runner::drain` runs the frees of registrations removed while
/// the loop was stopped, on the loop thread, and says how many (the free probe checks where they
/// ran, R42); nothing is left pending, and a drain with nothing pending runs nothing.
pub fn r25_drain_runs_pending_frees_and_counts_them_r57(env: &Env) {
    let d = env.start();
    let lp = d.lp().clone();
    let mut timers = Vec::new();
    for i in 0..5 {
        let token = env.token(format!("t{i}"));
        timers.push(
            lp.add_timer(Schedule::Disabled, move |_| {
                let _ = &token;
            })
            .expect("add"),
        );
    }
    on_other_thread("R39: removes from a foreign thread", move || {
        for t in timers {
            lp.remove_timer(t).expect("remove");
        }
    });
    assert_eq!(env.probe().total(), 0, "R21: frees ran inside remove");
    let drained = d.on_loop(|ctx| ctx.runner().drain().expect("drain"));
    assert_eq!(
        (drained, env.probe().total(), d.stats().pending_frees),
        (5, 5, 0),
        "R25: Runner::drain (ran, frees seen, pending after) with 5 frees pending"
    );
    let again = d.on_loop(|ctx| ctx.runner().drain().expect("drain"));
    assert_eq!(
        again, 0,
        "R25: a drain with nothing pending ran {again} frees"
    );
}

/// [R26](anyloop::contract#r26): frees of registrations removed in one iteration run in removal
/// order.
pub fn r26_frees_run_in_removal_order(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let lp = d.lp().clone();
    let mut ids = Vec::new();
    for i in 0..6 {
        let token = env.token(format!("r{i}"));
        if i % 2 == 0 {
            ids.push(Ok(lp
                .add_timer(Schedule::Disabled, move |_| {
                    let _ = &token;
                })
                .expect("add")));
        } else {
            ids.push(Err(lp
                .add_watch(pipe.fd(), IoEvents::empty(), move |_, _, _| {
                    let _ = &token;
                })
                .expect("add")));
        }
    }
    let order = [3usize, 0, 5, 1, 4, 2];
    let lp2 = lp.clone();
    // All removed inside one callback on the loop thread, then from the test thread.
    let first: Vec<_> = order[..3].iter().map(|&i| ids[i]).collect();
    let token = env.token("remover");
    lp.add_timer(Schedule::EVERY_ITERATION, move |me| {
        let _ = &token;
        for id in &first {
            match id {
                Ok(t) => lp2.remove_timer(*t).expect("remove"),
                Err(h) => lp2.remove_watch(*h).expect("remove"),
            }
        }
        lp2.remove_timer(me).expect("remove self");
    })
    .expect("add remover");
    d.on_loop(|ctx| ctx.turns(3));
    for &i in &order[3..] {
        match ids[i] {
            Ok(t) => lp.remove_timer(t).expect("remove"),
            Err(h) => lp.remove_watch(h).expect("remove"),
        }
    }
    d.on_loop(|ctx| ctx.turns(3));
    let freed: Vec<String> = env
        .probe()
        .records()
        .into_iter()
        .map(|r| r.label)
        .filter(|l| l.starts_with('r') && l != "remover")
        .collect();
    let want: Vec<String> = order.iter().map(|i| format!("r{i}")).collect();
    assert_eq!(freed, want, "R26: frees not in removal order");
}

/// [R25](anyloop::contract#r25)/[R21](anyloop::contract#r21): a removal made inside a callback is
/// not freed during that callback, and is freed by the end of the next iteration.
pub fn r25_free_by_end_of_next_iteration(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let lp = d.lp().clone();
    let token = env.token("victim");
    let victim = lp
        .add_watch(pipe.fd(), IoEvents::empty(), move |_, _, _| {
            let _ = &token;
        })
        .expect("add");
    let (lp2, probe, seen) = (lp.clone(), env.probe().clone(), Arc::new(Log::new()));
    let s2 = seen.clone();
    let token = env.token("remover");
    lp.add_timer(Schedule::EVERY_ITERATION, move |me| {
        let _ = &token;
        lp2.remove_watch(victim).expect("remove");
        s2.push(probe.count("victim"));
        lp2.remove_timer(me).expect("remove self");
    })
    .expect("add");
    let probe = env.probe().clone();
    let counts = d.on_loop(move |ctx| {
        let mut counts = Vec::new();
        for _ in 0..2 {
            ctx.run_once(Some(Duration::ZERO)).expect("run_once");
            counts.push(probe.count("victim"));
        }
        counts
    });
    assert_eq!(
        seen.snapshot(),
        vec![0],
        "R21: freed inside remove or its callback"
    );
    assert_eq!(
        counts[1], 1,
        "R25: not freed by the end of the next iteration: {counts:?}"
    );
}

/// [R46](anyloop::contract#r46)/[R25](anyloop::contract#r25): a free left over from a removal
/// made while the loop was not running is user code that may be what the owner waits for: the
/// iteration that runs it does not block, so `run_until` sees the condition it makes true at
/// once instead of at its deadline (30 s here: a backend that blocks fails the assertion).
pub fn r46_leftover_free_ends_the_iteration_r25(env: &Env) {
    let d = env.start();
    let freed = Arc::new(AtomicBool::new(false));
    let (flag, token) = (freed.clone(), env.token("t"));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let guard = SetOnDrop(flag);
    let id = d
        .lp()
        .add_timer(Schedule::Disabled, move |_| {
            let _ = (&guard, &token);
        })
        .expect("add");
    // Removed from this thread while the loop is not running: its free is pending.
    d.lp().remove_timer(id).expect("remove");
    let stopped = d.on_loop(move |ctx| {
        let deadline = Instant::now() + Duration::from_secs(30);
        ctx.run_until(Some(deadline), &mut || freed.load(Ordering::SeqCst))
            .expect("run_until")
    });
    assert_eq!(
        stopped,
        Stopped::Done,
        "R46: the iteration that ran the free blocked"
    );
    assert_eq!(env.probe().count("t"), 1, "R23: freed once");
}
