//! [S47–S53](anyloop::contract#s47) and [R46–R50](anyloop::contract#r46): run, run_once, quit,
//! destruction, per-thread and default loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{bind_thread_loop, default_loop, set_default_loop, Error, IoEvents, Loop, Schedule};

use crate::bounded::on_other_thread;
use crate::driver::TIMEOUT;
use crate::fds::Pipe;
use crate::probe::Log;
use crate::runner::Env;

/// [S47](anyloop::contract#s47): quit from a foreign thread while `run` blocks with nothing
/// registered: run returns.
pub fn s47_quit_from_foreign_thread_r47(env: &Env) {
    let d = env.start();
    let running = d.spawn(|ctx| ctx.run());
    thread::sleep(Duration::from_millis(50));
    assert!(!running.is_done(), "run returned without a quit");
    let quit = d.quitter();
    on_other_thread(
        "R47: a quit request from a foreign thread (it never waits for the loop)",
        move || quit.quit(),
    );
    let result = running
        .wait_for(TIMEOUT)
        .expect("R47: run did not return after quit");
    result.expect("run failed");
}

/// [S48](anyloop::contract#s48): quit from a callback while two more watches are ready in the same
/// batch: all three are dispatched once, then run returns without polling again
/// ([R47](anyloop::contract#r47), [D5](anyloop::contract#d5)).
pub fn s48_quit_from_callback_finishes_batch_r47(env: &Env) {
    let d = env.start();
    let pipes: Vec<Pipe> = (0..3).map(|_| Pipe::new()).collect();
    let calls = Arc::new(Log::new());
    let quit_once = Arc::new(AtomicBool::new(false));
    for (k, pipe) in pipes.iter().enumerate() {
        let (c, q, quit, token) = (
            calls.clone(),
            quit_once.clone(),
            d.quitter(),
            env.token(format!("w{k}")),
        );
        d.lp()
            .add_watch(pipe.fd(), IoEvents::READABLE, move |_, _, _| {
                let _ = &token;
                c.push(k); // never reads: a second poll would call it again
                if !q.swap(true, Ordering::SeqCst) {
                    quit.quit();
                }
            })
            .expect("add");
        pipe.write(1);
    }
    d.on_loop(|ctx| ctx.run()).expect("run");
    let mut got = calls.snapshot();
    got.sort_unstable();
    assert_eq!(
        got,
        vec![0, 1, 2],
        "R47: the collected batch must finish, once each"
    );
}

/// [S49](anyloop::contract#s49): run_once with nothing registered honours a 50 ms timeout; with
/// none it blocks until a foreign thread quits or adds something ([R46](anyloop::contract#r46)).
pub fn s49_run_once_nothing_registered_r46(env: &Env) {
    let d = env.start();
    let (ran, elapsed) = d.on_loop(|ctx| {
        let start = Instant::now();
        let ran = ctx
            .run_once(Some(Duration::from_millis(50)))
            .expect("run_once");
        (ran, start.elapsed())
    });
    assert_eq!(
        ran, 0,
        "R46: run_once(Some(50ms)) with nothing registered ran {ran} callbacks, expected 0"
    );
    assert!(
        elapsed >= Duration::from_millis(40),
        "R46: returned after {elapsed:?}"
    );
    for step in 0..2 {
        let pending = d.spawn(|ctx| ctx.run_once(None));
        thread::sleep(Duration::from_millis(50));
        assert!(
            !pending.is_done(),
            "R46: run_once(None) returned with nothing to do"
        );
        // The add first: a quit may stay pending (for `run`) and end later iterations early.
        if step == 1 {
            let quit = d.quitter();
            on_other_thread("R47: a quit request from a foreign thread", move || {
                quit.quit()
            });
        } else {
            let (lp, token) = (d.lp().clone(), env.token("t"));
            on_other_thread("R39/R40: an add from a foreign thread", move || {
                lp.add_timer(Schedule::Disabled, move |_| {
                    let _ = &token;
                })
                .expect("add")
            });
        }
        let result = pending.wait_for(TIMEOUT);
        assert!(
            result.is_some(),
            "R46: step {step}: run_once(None) was not woken"
        );
    }
}

/// [R47](anyloop::contract#r47): a quit issued before run is not lost: run returns at once; pending
/// frees survive the quit (they run on the next iteration or at destruction).
pub fn r47_quit_before_run_not_lost(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let token = env.token("w");
    let id = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::empty(), move |_, _, _| {
            let _ = &token;
        })
        .expect("add");
    d.lp().remove_watch(id).expect("remove");
    d.quitter().quit();
    let result = d.spawn(|ctx| ctx.run()).wait_for(TIMEOUT);
    assert!(result.is_some(), "R47: a quit before run was lost");
    // The free is not lost: it runs by the next iterations at the latest.
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        env.probe().count("w"),
        1,
        "R47/R25: pending free lost across quit"
    );
}

/// [R47](anyloop::contract#r47): quit from a timer callback during run; the loop can be run again
/// afterwards.
pub fn r47_quit_from_timer_then_run_again(env: &Env) {
    let d = env.start();
    let (calls, quit, token) = (Arc::new(Log::new()), d.quitter(), env.token("t"));
    let c = calls.clone();
    d.lp()
        .add_timer(Schedule::Every(Duration::from_millis(5)), move |_| {
            let _ = &token;
            c.push(());
            quit.quit();
        })
        .expect("add");
    for round in 1..=3 {
        d.spawn(|ctx| ctx.run())
            .wait_for(TIMEOUT)
            .expect("run did not return after a quit from a callback")
            .expect("run");
        assert_eq!(calls.len(), round, "one firing per run");
    }
}

/// [R48](anyloop::contract#r48): a destroyed loop says so (`is_alive`), refuses adds (thread-bound
/// ones included) with LoopGone, handing the callback back unfreed, and answers other operations
/// with LoopGone or NotFound.
pub fn r48_ops_after_destruction_loop_gone_r02(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let lp = d.raw().clone();
    assert!(lp.is_alive(), "R48: a running loop is alive");
    d.destroy();
    assert!(!lp.is_alive(), "R48: a destroyed loop says so");
    // A thread-bound add is refused for the same reason, not for the thread it came from.
    let local = lp
        .add_timer(
            anyloop::Schedule::Disabled,
            anyloop::TimerCallback::local(|_| {}),
        )
        .expect_err("thread-bound add on a dead loop");
    assert!(
        matches!(local.error(), Error::LoopGone),
        "R48: {:?}",
        local.error()
    );
    let token = env.token("h");
    let rejected = lp
        .add_watch(pipe.fd(), IoEvents::READABLE, move |_, _, _| {
            let _ = &token;
        })
        .expect_err("add on a dead loop");
    assert!(
        matches!(rejected.error(), Error::LoopGone),
        "{:?}",
        rejected.error()
    );
    assert_eq!(
        env.probe().count("h"),
        0,
        "R2: a rejected callback was freed"
    );
    drop(rejected);
    let ok =
        |r: anyloop::Result<()>| matches!(r, Err(Error::LoopGone) | Err(Error::NotFound { .. }));
    assert!(
        ok(lp.update_watch(anyloop::WatchId::allocate(), IoEvents::READABLE)),
        "R48: update_watch on a destroyed loop must be LoopGone or NotFound"
    );
    assert!(
        ok(lp.remove_timer(anyloop::TimerId::allocate())),
        "R48: remove_timer on a destroyed loop must be LoopGone or NotFound"
    );
}

/// [S52](anyloop::contract#s52): two threads, each with its own loop bound as the thread's current
/// loop: code on each registers without naming a loop and its callbacks run on that thread;
/// operations on the other loop's ids from here are forwarded and work
/// ([R50](anyloop::contract#r50)).
pub fn s52_per_thread_loops_r50(env: &Env) {
    let drivers = [env.start_pumped(), env.start_pumped()];
    let seen = Arc::new(Log::new());
    let mut timers = Vec::new();
    for (k, d) in drivers.iter().enumerate() {
        let (lp, s, token) = (d.lp().clone(), seen.clone(), env.token(format!("t{k}")));
        let id = d.on_loop(move |_| {
            let binding = bind_thread_loop(lp.clone()).expect("bind");
            let twice = bind_thread_loop(lp.clone());
            assert!(
                matches!(twice, Err(Error::AlreadyRegistered { .. })),
                "R50: two loops on one thread"
            );
            let current = Loop::current().expect("current loop");
            assert!(
                current.same_loop(&lp),
                "R50: lookup did not find the thread's loop"
            );
            let id = current
                .add_timer(Schedule::Disabled, move |_| {
                    let _ = &token;
                    s.push((k, thread::current().id()));
                })
                .expect("add");
            drop(binding);
            id
        });
        timers.push(id);
    }
    // From loop 0's thread, arm loop 1's timer (and vice versa) through the other's handle.
    for k in 0..2 {
        let (other_lp, other_id) = (drivers[1 - k].lp().clone(), timers[1 - k]);
        drivers[k].on_loop(move |_| {
            other_lp
                .update_timer(other_id, Schedule::EVERY_ITERATION)
                .expect("forwarded op");
        });
    }
    assert!(
        seen.wait_until(TIMEOUT, |v| (0..2).all(|k| v.iter().any(|(j, _)| *j == k))),
        "R50: each loop's timer, armed from the other loop's thread, fires on its own loop (seen: {:?})",
        seen.snapshot()
    );
    for (k, t) in seen.snapshot() {
        assert_eq!(
            t,
            drivers[k].loop_thread(),
            "R50: loop {k}'s callback ran elsewhere"
        );
    }
    for (d, id) in drivers.iter().zip(timers) {
        d.lp()
            .update_timer(id, Schedule::Disabled)
            .expect("disable");
    }
    // A thread with no bound loop gets the process default, else NoLoop.
    let lookup = on_other_thread("R50: Loop::current on a thread with no loop", Loop::current);
    match default_loop() {
        None => assert!(matches!(lookup, Err(Error::NoLoop)), "R7/R50: {lookup:?}"),
        Some(def) => assert!(
            lookup.expect("default").same_loop(&def),
            "R50: not the default"
        ),
    }
}

/// [S53](anyloop::contract#s53): a second install of the process default is refused with
/// AlreadyRegistered and the first stays active; a thread's own loop takes precedence over the
/// default ([R7](anyloop::contract#r7), [R50](anyloop::contract#r50)). Correct in any test order:
/// whichever install came first in this process wins.
pub fn s53_second_default_install_refused_r07_r50(env: &Env) {
    let (a, b) = (env.start(), env.start());
    let first_try = set_default_loop(a.lp().clone());
    let installed = default_loop().expect("a default after an install attempt");
    match first_try {
        Ok(()) => assert!(
            installed.same_loop(a.lp()),
            "R7: the installed default is another"
        ),
        Err(err) => assert!(
            matches!(err, Error::AlreadyRegistered { .. }),
            "R7: {err:?}"
        ),
    }
    let second = set_default_loop(b.lp().clone());
    assert!(
        matches!(second, Err(Error::AlreadyRegistered { .. })),
        "R7: {second:?}"
    );
    assert!(
        default_loop().expect("default").same_loop(&installed),
        "R7: the first did not stay"
    );
    assert!(
        !installed.same_loop(b.lp()),
        "R7: the second loop became the default although its install was refused"
    );
    // Lookup order: a thread's own loop, then the default.
    let lp = b.lp().clone();
    let (bound, unbound) = on_other_thread(
        "R50: Loop::current on a thread bound to a loop",
        move || {
            let unbound = Loop::current().expect("default");
            let binding = bind_thread_loop(lp.clone()).expect("bind");
            let bound = Loop::current().expect("bound");
            drop(binding);
            (bound.same_loop(&lp), unbound)
        },
    );
    assert!(bound, "R50: the thread's loop must win over the default");
    assert!(
        unbound.same_loop(&installed),
        "R50: an unbound thread gets the default"
    );
}

/// [R49](anyloop::contract#r49): a library object kept alive only by its timer's state stays alive
/// while the timer is registered, even disabled and after firing, and goes away with the timer's
/// free (after the remove, on the loop), never earlier.
pub fn r49_owner_outlives_its_timer(env: &Env) {
    struct Owner {
        ticks: std::sync::atomic::AtomicUsize,
    }
    let d = env.start();
    let owner = Arc::new(Owner {
        ticks: std::sync::atomic::AtomicUsize::new(0),
    });
    let watcher = Arc::downgrade(&owner);
    let token = env.token("owner-timer");
    let id = d
        .lp()
        // A one-shot: once fired it is disabled, but stays registered and keeps its state.
        .add_timer(Schedule::Once(Duration::ZERO), move |_| {
            let _ = &token;
            owner.ticks.fetch_add(1, Ordering::SeqCst);
        })
        .expect("add");
    d.on_loop(|ctx| ctx.turns(3));
    let alive = watcher
        .upgrade()
        .expect("R49: owner dropped while its timer is registered");
    assert_eq!(alive.ticks.load(Ordering::SeqCst), 1, "one-shot fired once");
    drop(alive);
    d.lp().remove_timer(id).expect("remove");
    assert_eq!(
        env.probe().count("owner-timer"),
        0,
        "R21: freed inside remove"
    );
    assert!(
        watcher.upgrade().is_some(),
        "R49: owner dropped by the remove call itself"
    );
    d.on_loop(|ctx| ctx.turns(1));
    assert_eq!(env.probe().count("owner-timer"), 1, "R25: free ran once");
    assert!(
        watcher.upgrade().is_none(),
        "R49: the timer's free released the owner"
    );
}

/// [R56](anyloop::contract#r56)/[R59](anyloop::contract#r59): registrations can carry debug names;
/// errors name the id (unknown ids, panics) and the fd (bad fds).
pub fn r56_debug_names_and_errors_name_ids_and_fds(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let calls = Arc::new(Log::new());
    let (c, token) = (calls.clone(), env.token("named-watch"));
    let named = anyloop::WatchCallback::new(move |_, fd, _| {
        let _ = &token;
        crate::fds::read_one(fd);
        c.push("watch");
    })
    .named("control-socket");
    assert_eq!(
        named.name(),
        Some("control-socket"),
        "R56: the debug name given with named() was lost"
    );
    let watch = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, named)
        .expect("a named callback is accepted");
    let token = env.token("named-timer");
    let timer = d
        .lp()
        .add_timer(
            Schedule::Disabled,
            anyloop::TimerCallback::new(move |_| {
                let _ = &token;
                panic!("named timer exploded");
            })
            .named("keepalive"),
        )
        .expect("add named timer");
    pipe.write(1);
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(calls.snapshot(), vec!["watch"], "named watch dispatches");

    d.lp()
        .update_timer(timer, Schedule::EVERY_ITERATION)
        .expect("arm");
    let result = d.on_loop(|ctx| ctx.run_once(Some(Duration::from_millis(100))));
    let err = result.expect_err("R54: the panic is reported");
    let text = err.to_string();
    assert!(
        text.contains(&timer.to_string()),
        "R56: the panic report names the id: {text}"
    );
    d.lp().remove_timer(timer).expect("remove");

    d.lp().remove_watch(watch).expect("remove");
    let gone = d.lp().remove_watch(watch).expect_err("double remove");
    assert!(
        gone.to_string().contains(&watch.to_string()),
        "R59: NotFound names the id: {gone}"
    );
    let bad_fd = crate::fds::closed_fd();
    let rejected = d
        .lp()
        .add_watch(bad_fd, IoEvents::READABLE, |_, _, _| {})
        .expect_err("closed fd accepted");
    assert!(
        rejected.error().to_string().contains(&bad_fd.to_string()),
        "R59: InvalidFd names the fd: {}",
        rejected.error()
    );
    d.on_loop(|ctx| ctx.turns(1));
    assert_eq!(
        env.probe().count("named-watch"),
        1,
        "R23: the named watch freed exactly once"
    );
    assert_eq!(
        env.probe().count("named-timer"),
        1,
        "R23: the named timer freed exactly once"
    );
}
