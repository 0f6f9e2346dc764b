//! Registration, deregistration, frees, close, panics and threads ([E1–E4](anyloop::contract#e1),
//! [E11](anyloop::contract#e11), [E14–E18](anyloop::contract#e14),
//! [E23–E26](anyloop::contract#e23), [E30](anyloop::contract#e30)).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyloop::{CallbackId, Error, KindSet, Loop, Registry};

use super::fixture::*;
use crate::bounded::{join, on_other_thread, Latch};
use crate::driver::TIMEOUT;
use crate::probe::{lock, Log};
use crate::runner::Env;

/// [E1](anyloop::contract#e1)/[E3](anyloop::contract#e3): refused registrations hand the callback
/// back untouched and never free it: on a closed registry (Closed), on a destroyed loop (LoopGone),
/// for an object the library's check refuses (InvalidArgument); a registry without any loop is
/// NoLoop.
pub fn e01_refused_register_hands_callback_back_e03(env: &Env) {
    let d = env.start();
    let owned = Registry::<Ev>::builder()
        .event_loop(d.lp().clone())
        .object_check(|obj| obj.0 < 100)
        .build()
        .expect("registry");
    let token = env.token("foreign-object");
    let rejected = owned
        .listen::<Lifecycle>()
        .object(Obj(500))
        .call(move |_| {
            let _ = &token;
        })
        .expect_err("E1: an object of another registry was accepted");
    assert!(
        matches!(rejected.error(), Error::InvalidArgument { .. }),
        "E1: the refusal of another registry's object must be InvalidArgument: {:?}",
        rejected.error()
    );
    assert_eq!(env.probe().count("foreign-object"), 0, "E3");
    drop(rejected);
    owned
        .listen::<Lifecycle>()
        .object(Obj(5))
        .call(|_| {})
        .expect("an owned object is accepted");
    owned.close().expect("close");

    let closed = registry(&d);
    closed.close().expect("close");
    let calls = Arc::new(AtomicUsize::new(0));
    let (c, token) = (calls.clone(), env.token("on-closed"));
    let rejected = closed
        .on(move |_: &Progress| {
            let _ = &token;
            c.fetch_add(1, Ordering::SeqCst);
        })
        .expect_err("register on a closed registry");
    assert!(
        matches!(rejected.error(), Error::Closed),
        "{}",
        rejected.error()
    );
    let mut callback = rejected.into_callback();
    callback(&Progress(vec![]));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "E3: the callback came back working"
    );
    assert_eq!(env.probe().count("on-closed"), 0, "E3: freed while refused");
    drop(callback);

    let gone = registry(&d);
    let lived = registry(&d);
    let token = env.token("outlived-its-loop");
    lived
        .on(move |_: &Progress| {
            let _ = &token;
        })
        .expect("register");
    let lp: Loop = d.lp().clone();
    d.destroy();
    // The loop is gone: events are dropped, not piled up for nobody.
    for n in 0..3 {
        lived.emit(Progress(vec![n]));
    }
    assert!(
        !lived.emit(Progress(vec![9])),
        "emit with a destroyed loop queued"
    );
    assert_eq!(
        lived.queued(),
        0,
        "E16: events queued on a registry whose loop is gone"
    );
    lived.close().expect("close");
    assert_eq!(
        env.probe().count("outlived-its-loop"),
        1,
        "E16: freed on the closing thread once the loop is gone"
    );
    let token = env.token("on-dead-loop");
    let rejected = gone
        .on(move |_: &Progress| {
            let _ = &token;
        })
        .expect_err("register with a destroyed loop");
    assert!(
        matches!(rejected.error(), Error::LoopGone),
        "{}",
        rejected.error()
    );
    assert_eq!(env.probe().count("on-dead-loop"), 0, "E3");
    drop(rejected);
    drop(lp);
    gone.close().expect("close");
    let unbound = on_other_thread("E24: Registry::new on a thread with no loop", || {
        Registry::<Ev>::new().map(|r| r.close())
    });
    if anyloop::default_loop().is_none() {
        assert!(matches!(unbound, Err(Error::NoLoop)), "R7: {unbound:?}");
    }
}

/// [E4](anyloop::contract#e4): the keyed form refuses a second live registration with the same key,
/// kind and object filter (AlreadyRegistered) and accepts it again after deregister; plain closures
/// are never duplicates.
pub fn e04_keyed_duplicates_refused_e04(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let keyed = |obj: u64| {
        reg.listen::<Reboot>()
            .object(Obj(obj))
            .keyed("backup")
            .call(|_| {})
    };
    let first = keyed(1).expect("first keyed");
    let token = env.token("dup");
    let dup = reg
        .listen::<Reboot>()
        .object(Obj(1))
        .keyed("backup")
        .call(move |_| {
            let _ = &token;
        })
        .expect_err("E4: duplicate accepted");
    assert!(
        matches!(dup.error(), Error::AlreadyRegistered { .. }),
        "{}",
        dup.error()
    );
    assert_eq!(
        env.probe().count("dup"),
        0,
        "E3: a refused callback was freed"
    );
    drop(dup);
    keyed(2).expect("another object is not a duplicate");
    reg.listen::<Lifecycle>()
        .object(Obj(1))
        .keyed("backup")
        .call(|_| {})
        .expect("another kind is not a duplicate");
    reg.on(|_: &Reboot| {}).expect("closure 1");
    reg.on(|_: &Reboot| {})
        .expect("closures are never duplicates");
    reg.deregister(first).expect("deregister");
    keyed(1).expect("E4: the key is free again after deregister");
    reg.close().expect("close");
    flush(&d);
}

/// [E11](anyloop::contract#e11): the free never runs inside deregister nor while the callback runs:
/// a foreign deregister of a running callback returns at once, the free waits for the return; a
/// deregister with the loop idle frees on the loop thread at its next iteration.
pub fn e11_free_never_inside_deregister_nor_while_running(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let frees = Arc::new(Log::new());
    let running = Arc::new(AtomicBool::new(false));
    let (entered, leave) = (Arc::new(Latch::new()), Arc::new(Latch::new()));
    let spy = FreeSpy {
        label: "blocking",
        running: running.clone(),
        log: frees.clone(),
    };
    let (run, en, lv) = (running.clone(), entered.clone(), leave.clone());
    let id = reg
        .on(move |_: &Lifecycle| {
            let _ = &spy;
            run.store(true, Ordering::SeqCst);
            en.open();
            // Bounded: if the scenario failed meanwhile, return and let the loop go on.
            lv.wait_for(TIMEOUT);
            thread::sleep(Duration::from_millis(20));
            run.store(false, Ordering::SeqCst);
        })
        .expect("register");
    reg.emit(k(1, 1));
    reg.emit(k(1, 2));
    let pending = d.spawn_doing(
        "two iterations, which flush the two queued events (E6)",
        |ctx| ctx.turns(2),
    );
    entered.wait(
        "E6/E11: the registry callback started running in one of the loop's two iterations \
         (run_once(Some(0)) with two events queued)",
    );
    let r = reg.clone();
    let left = on_other_thread(
        "E11/R44: a foreign deregister of a running callback returns without waiting for it",
        move || inside(|| r.deregister(id)),
    )
    .expect("deregister a running callback");
    assert_eq!(left, 0, "E28: deregister returns the callbacks left");
    assert!(
        frees.is_empty(),
        "E11: freed while running / inside deregister"
    );
    leave.open();
    pending.wait();
    flush(&d);
    let seen = frees.snapshot();
    assert_eq!(seen.len(), 1, "E11: {seen:?}");
    assert!(
        !seen[0].callback_running && !seen[0].inside_call,
        "E11: {seen:?}"
    );
    assert_eq!(
        seen[0].thread,
        d.loop_thread(),
        "E11/R42: the free ran off the loop thread"
    );

    // Idle loop: deregister returns, the free waits for the loop.
    let spy = FreeSpy {
        label: "idle",
        running: Arc::new(AtomicBool::new(false)),
        log: frees.clone(),
    };
    let id = reg
        .on(move |_: &Reboot| {
            let _ = &spy;
        })
        .expect("register");
    inside(|| reg.deregister(id)).expect("deregister");
    assert_eq!(frees.len(), 1, "E11: freed inside deregister");
    flush(&d);
    let seen = frees.snapshot();
    assert_eq!(
        seen.len(),
        2,
        "E11: free did not run at the next iterations"
    );
    assert_eq!(
        seen[1].thread,
        d.loop_thread(),
        "E11: free off the loop thread"
    );
    reg.close().expect("close");
}

/// [E14](anyloop::contract#e14): the last deregister discards the queued events and removes the
/// flush timer; a later registration starts clean.
pub fn e14_last_deregister_discards_queue_and_timer(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let (mut only, token) = (logger(&d, &log, "only"), env.token("only"));
    let id = reg
        .on_kinds(KindSet::all(), move |kind, ev| {
            let _ = &token;
            only(kind, ev);
        })
        .expect("register");
    for n in 0..3 {
        reg.emit(k(1, n));
    }
    assert_eq!(reg.queued(), 3, "E5: three events queued");
    assert_eq!(reg.deregister(id).expect("deregister"), 0, "E28");
    assert_eq!(reg.queued(), 0, "E14: queue kept after the last deregister");
    flush(&d);
    assert_eq!(d.stats().timers, 0, "E14: flush timer kept");
    let (mut fresh, token) = (logger(&d, &log, "fresh"), env.token("fresh"));
    reg.on_kinds(KindSet::all(), move |kind, ev| {
        let _ = &token;
        fresh(kind, ev);
    })
    .expect("register again");
    reg.emit(l(2, 9));
    flush(&d);
    assert!(
        events_of(&log, "only").is_empty(),
        "E14: stale events delivered"
    );
    assert_eq!(events_of(&log, "fresh"), vec![Ev::Reboot(l(2, 9))], "E14");
    reg.close().expect("close");
}

/// [E15](anyloop::contract#e15)/[E28](anyloop::contract#e28): the library sees per-kind 0→1 and 1→0
/// transitions, in order, including from a kind-set registration and at close; deregister returns
/// the callbacks left for the kind.
pub fn e15_transition_hooks_and_counts_e28(env: &Env) {
    let d = env.start();
    let transitions = Arc::new(Log::new());
    let t = transitions.clone();
    let reg = Registry::<Ev>::builder()
        .event_loop(d.lp().clone())
        .on_transition(move |kind, listened| t.push((kind, listened)))
        .build()
        .expect("registry");
    let a = reg.on(|_: &Lifecycle| {}).expect("a");
    let b = reg.on(|_: &Lifecycle| {}).expect("b");
    assert_eq!(
        transitions.snapshot(),
        vec![(Kind::Lifecycle, true)],
        "E15: one transition to listened for the first callback of a kind"
    );
    assert_eq!(
        reg.count(Kind::Lifecycle),
        2,
        "E26: two callbacks for Lifecycle"
    );
    assert_eq!(reg.deregister(a).expect("a"), 1, "E28");
    assert_eq!(reg.deregister(b).expect("b"), 0, "E28");
    assert_eq!(
        transitions.take(),
        vec![(Kind::Lifecycle, true), (Kind::Lifecycle, false)],
        "E15: the last deregister of a kind reports it unlistened"
    );
    let mask = reg
        .on_kinds(KindSet::from(Kind::Warning) | Kind::Library, |_, _| {})
        .expect("mask");
    assert_eq!(
        transitions.take(),
        vec![(Kind::Library, true), (Kind::Warning, true)],
        "E15: a kind set reports each of its kinds listened"
    );
    reg.on(|_: &Warning| {}).expect("warning");
    assert_eq!(
        reg.deregister(mask).expect("mask"),
        1,
        "E28: one left for a kind of the set"
    );
    assert_eq!(
        transitions.take(),
        vec![(Kind::Library, false)],
        "E15: the kind left without callback reported unlistened"
    );
    reg.close().expect("close");
    assert_eq!(
        transitions.take(),
        vec![(Kind::Warning, false)],
        "E15: at close"
    );
    flush(&d);
}

/// [E16](anyloop::contract#e16)/[E17](anyloop::contract#e17): close delivers the closing event
/// synchronously on the closing thread to the callbacks registered for it, nothing is delivered
/// after it, every callback is freed once on the loop thread; close from inside a callback on the
/// loop thread works too.
pub fn e16_close_delivers_closing_event_then_frees_e17(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    for who in ["close-1", "close-2"] {
        let (mut cb, token) = (logger(&d, &log, who), env.token(who));
        reg.on_kinds(KindSet::from(Kind::Close), move |kind, ev| {
            let _ = &token;
            cb(kind, ev);
        })
        .expect("register");
    }
    let (mut other, token) = (logger(&d, &log, "other"), env.token("other"));
    reg.on_kinds(KindSet::from(Kind::Lifecycle), move |kind, ev| {
        let _ = &token;
        other(kind, ev);
    })
    .expect("register");
    reg.emit(k(1, 1));
    reg.close_with(Close).expect("close");
    let got = log.snapshot();
    assert_eq!(
        got.len(),
        2,
        "E17: closing event not delivered synchronously: {got:?}"
    );
    assert!(
        got.iter().all(|g| g.thread == thread::current().id()),
        "E17: not synchronous"
    );
    assert_eq!(got[0].who, "close-1", "E7: registration order");
    flush(&d);
    assert_eq!(log.len(), 2, "E17: an event after the closing one");
    for who in ["close-1", "close-2", "other"] {
        assert_eq!(env.probe().count(who), 1, "E16: {who}");
    }
    assert!(
        env.probe()
            .records()
            .iter()
            .all(|r| r.thread == d.loop_thread()),
        "E16"
    );

    // Close from inside a callback, during a flush: no deadlock, the rest is not delivered.
    let reg = registry(&d);
    let (r, token) = (reg.clone(), env.token("closer"));
    let closer_log = log.clone();
    reg.on(move |e: &Lifecycle| {
        let _ = &token;
        closer_log.push(Got {
            who: "closer",
            event: Ev::Lifecycle(e.clone()),
            thread: thread::current().id(),
            iteration: 0,
        });
        r.close_with(Close).expect("close from a callback");
    })
    .expect("register");
    let (mut closing, token) = (logger(&d, &log, "closing"), env.token("closing"));
    reg.on_kinds(KindSet::from(Kind::Close), move |kind, ev| {
        let _ = &token;
        closing(kind, ev);
    })
    .expect("register");
    reg.emit(k(1, 1));
    reg.emit(k(1, 2));
    flush(&d);
    assert_eq!(
        events_of(&log, "closer").len(),
        1,
        "E17: delivered after close"
    );
    assert_eq!(
        events_of(&log, "closing"),
        vec![Ev::Close(Close)],
        "E17: the closing callback gets only the closing event"
    );
    assert!(
        reg.is_closed(),
        "E16: the registry is not closed after close_with"
    );
    assert_eq!(env.probe().count("closer"), 1, "E16: freed once");
}

/// [E18](anyloop::contract#e18): the flush timer keeps the registry state alive: the last handle
/// dropped inside a callback, mid-flush, closes the registry without crashing the flush; the other
/// callbacks of that flush are not called, every callback is freed once and no timer is left.
pub fn e18_last_handle_dropped_during_its_own_flush(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let handle = Arc::new(Mutex::new(Some(reg.clone())));
    let log = Arc::new(Log::new());
    let (h, token) = (handle.clone(), env.token("dropper"));
    reg.on(move |_: &Lifecycle| {
        let _ = &token;
        let last = lock(&h).take();
        drop(last); // the last handle: closes the registry from its own flush
    })
    .expect("register");
    let (mut after, token) = (logger(&d, &log, "after"), env.token("after"));
    reg.on_kinds(KindSet::from(Kind::Lifecycle), move |kind, ev| {
        let _ = &token;
        after(kind, ev);
    })
    .expect("register");
    reg.emit(k(1, 1));
    reg.emit(k(1, 2));
    drop(reg);
    flush(&d);
    assert!(
        log.is_empty(),
        "E18/E16: delivery after close: {:?}",
        log.snapshot()
    );
    assert_eq!(
        env.probe().count("dropper"),
        1,
        "E16: the callback that dropped the last handle freed once"
    );
    assert_eq!(
        env.probe().count("after"),
        1,
        "E16: the callback registered after it freed once"
    );
    let stats = d.stats();
    assert_eq!(stats.timers, 0, "E16: timer left: {stats:?}");
}

/// [E23](anyloop::contract#e23): panics in a callback and in a predicate do not stop the flush; the
/// loop reports CallbackPanicked naming the event callback and stays usable; the callbacks stay
/// registered and are freed once.
pub fn e23_panics_do_not_stop_the_flush(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let token = env.token("panics");
    let bad = reg
        .on(move |e: &Lifecycle| {
            let _ = &token;
            if e.n == 1 {
                panic!("callback exploded");
            }
        })
        .expect("register");
    let token = env.token("bad-predicate");
    reg.listen::<Lifecycle>()
        .filter(|e| {
            if e.n == 2 {
                panic!("predicate exploded")
            } else {
                true
            }
        })
        .call(move |_| {
            let _ = &token;
        })
        .expect("register");
    let (mut good, token) = (logger(&d, &log, "good"), env.token("good"));
    reg.on_kinds(KindSet::from(Kind::Lifecycle), move |kind, ev| {
        let _ = &token;
        good(kind, ev);
    })
    .expect("register");
    for n in 1..=3 {
        reg.emit(k(1, n));
    }
    let result = d.on_loop(|ctx| ctx.run_once(Some(TIMEOUT)));
    match result {
        Err(Error::CallbackPanicked { message, .. }) => {
            assert!(
                message.contains(&bad.to_string()),
                "E23: not named: {message}"
            );
            assert!(message.contains("callback exploded"), "E23: {message}");
        }
        other => panic!("E23: the panic was not reported: {other:?}"),
    }
    assert_eq!(events_of(&log, "good").len(), 3, "E23: the flush stopped");
    reg.emit(k(1, 4));
    flush(&d);
    assert_eq!(
        events_of(&log, "good").len(),
        4,
        "E23: the registry is unusable"
    );
    assert_eq!(
        reg.callbacks(),
        3,
        "E23: three callbacks still registered after the panics"
    );
    // A callback whose state panics when dropped: the free is reported by the loop too,
    // and the registry stays usable.
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("free exploded");
        }
    }
    let bomb = PanicOnDrop;
    let id = reg
        .on(move |_: &Reboot| {
            let _ = &bomb;
        })
        .expect("register");
    reg.deregister(id).expect("deregister");
    let reported = d.on_loop(|ctx| (0..3).find_map(|_| ctx.run_once(Some(Duration::ZERO)).err()));
    assert!(
        matches!(&reported, Some(Error::CallbackPanicked { message, .. }) if message.contains("free exploded")),
        "E23/R54: a panicking free was not reported: {reported:?}"
    );
    reg.emit(k(1, 5));
    flush(&d);
    assert_eq!(
        events_of(&log, "good").len(),
        5,
        "E23: unusable after a free panicked"
    );
    reg.close().expect("close");
    flush(&d);
}

/// [E24](anyloop::contract#e24)/[E25](anyloop::contract#e25): two loops on two threads, each with
/// its own registry (created on its thread without naming a loop) and its own objects; four foreign
/// threads emit for both. Each callback receives only its own objects' events, on its own loop's
/// thread. Callbacks register, deregister and emit on their registry re-entrantly.
pub fn e24_two_loops_two_threads_own_objects_e25(env: &Env) {
    let drivers = [env.start_pumped(), env.start_pumped()];
    let log = Arc::new(Log::new());
    let mut registries = Vec::new();
    for (i, d) in drivers.iter().enumerate() {
        let lp = d.lp().clone();
        let reg = d.on_loop(move |_| {
            let binding = anyloop::bind_thread_loop(lp).expect("bind");
            let reg = Registry::<Ev>::new().expect("registry on the thread's loop");
            drop(binding);
            reg
        });
        let who: &'static str = ["loop0", "loop1"][i];
        let (r, mut cb, token) = (reg.clone(), logger(d, &log, who), env.token(who));
        reg.listen::<Lifecycle>()
            .object(Obj(i as u64))
            .call(move |e| {
                let _ = &token;
                cb(Kind::Lifecycle, &Ev::Lifecycle(e.clone()));
                // E25: re-entrant registry use from a callback.
                let extra = r.on(|_: &Reboot| {}).expect("register from a callback");
                r.emit(l(e.obj.0, e.n));
                r.deregister(extra).expect("deregister from a callback");
            })
            .expect("register");
        registries.push(reg);
    }
    let emitters: Vec<_> = (0..4u64)
        .map(|t| {
            let regs = registries.clone();
            thread::spawn(move || {
                for n in 0..50 {
                    for (i, reg) in regs.iter().enumerate() {
                        // Each registry gets events for both objects; only its own matches.
                        reg.emit(k(i as u64, t * 1000 + n));
                        reg.emit(k(1 - i as u64, t * 1000 + n));
                    }
                }
            })
        })
        .collect();
    for e in emitters {
        join(e, "E5: an emitting thread");
    }
    assert!(
        log.wait_len(2 * 4 * 50, TIMEOUT),
        "E24: {} of 400 delivered",
        log.len()
    );
    for d in &drivers {
        d.settle();
    }
    let got = log.snapshot();
    assert_eq!(got.len(), 400, "E24: extra deliveries");
    for (i, d) in drivers.iter().enumerate() {
        let who = ["loop0", "loop1"][i];
        let mine: Vec<&Got> = got.iter().filter(|g| g.who == who).collect();
        assert_eq!(mine.len(), 200, "E24: {who}");
        for g in mine {
            assert_eq!(
                g.thread,
                d.loop_thread(),
                "E24: {who} delivered on another thread"
            );
            assert!(
                matches!(&g.event, Ev::Lifecycle(e) if e.obj == Obj(i as u64)),
                "E29"
            );
        }
    }
    for reg in &registries {
        reg.close().expect("close");
    }
    for d in &drivers {
        d.settle();
    }
}

/// [E26](anyloop::contract#e26): counts of live callbacks, per-kind callbacks and queued events.
pub fn e26_counts_of_callbacks_and_queued_events(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    assert_eq!(
        (reg.callbacks(), reg.queued()),
        (0, 0),
        "E26: a new registry has no callbacks and no events (callbacks, queued)"
    );
    let a = reg.on(|_: &Lifecycle| {}).expect("a");
    reg.on_kinds(KindSet::all(), |_, _| {}).expect("all");
    assert_eq!(reg.callbacks(), 2, "E26: two callbacks registered");
    assert_eq!(
        (reg.count(Kind::Lifecycle), reg.count(Kind::Close)),
        (2, 1),
        "E26: per-kind counts (Lifecycle, Close)"
    );
    for n in 0..5 {
        reg.emit(k(1, n));
    }
    assert_eq!(reg.queued(), 5, "E26: five events queued");
    flush(&d);
    assert_eq!(reg.queued(), 0, "E26: flushed events still counted");
    reg.deregister(a).expect("deregister");
    assert_eq!(
        (reg.callbacks(), reg.count(Kind::Lifecycle)),
        (1, 1),
        "E26: after one deregister (callbacks, Lifecycle)"
    );
    reg.close().expect("close");
    assert_eq!(reg.callbacks(), 0, "E16/E26: callbacks counted after close");
    flush(&d);
}

/// [E30](anyloop::contract#e30): the fallback sink runs only for events no callback took (no
/// callback, or all filtered out), on the loop thread.
pub fn e30_fallback_only_when_no_callback_matched(env: &Env) {
    let d = env.start();
    let fallen = Arc::new(Log::new());
    let (f, token) = (fallen.clone(), env.token("fallback"));
    let reg = Registry::<Ev>::builder()
        .event_loop(d.lp().clone())
        .fallback(
            KindSet::from(Kind::Warning) | Kind::Library,
            move |kind, ev| {
                let _ = &token;
                f.push((kind, ev.clone(), thread::current().id()));
            },
        )
        .build()
        .expect("registry");
    assert!(
        reg.emit(Warning(b"nobody listens".to_vec())),
        "E30: the fallback listens"
    );
    assert!(!reg.emit(k(1, 1)), "E5: not a fallback kind");
    let token = env.token("picky");
    reg.listen::<Warning>()
        .filter(|w| w.0.starts_with(b"mine"))
        .call(move |_| {
            let _ = &token;
        })
        .expect("register");
    reg.emit(Warning(b"mine".to_vec()));
    reg.emit(Warning(b"filtered out".to_vec()));
    flush(&d);
    let got: Vec<Ev> = fallen.snapshot().into_iter().map(|(_, ev, _)| ev).collect();
    assert_eq!(
        got,
        vec![
            Ev::Warning(Warning(b"nobody listens".to_vec())),
            Ev::Warning(Warning(b"filtered out".to_vec()))
        ],
        "E30"
    );
    assert!(
        fallen
            .snapshot()
            .iter()
            .all(|(_, _, t)| *t == d.loop_thread()),
        "E30/E24: the fallback ran off the loop thread"
    );
    reg.close().expect("close");
    flush(&d);
    assert_eq!(
        env.probe().count("fallback"),
        1,
        "the sink is freed at close"
    );

    // A sink may use the registry, close included (no lock of the registry held around it).
    let weak = Arc::new(std::sync::OnceLock::<anyloop::registry::WeakRegistry<Ev>>::new());
    let (w, token) = (weak.clone(), env.token("closing-sink"));
    let reg = Registry::<Ev>::builder()
        .event_loop(d.lp().clone())
        .fallback(KindSet::from(Kind::Library), move |_, _| {
            let _ = &token;
            if let Some(registry) = w.get().and_then(|w| w.upgrade()) {
                registry.emit(Library(b"ignored after close".to_vec()));
                registry.close().expect("close from the sink");
            }
        })
        .build()
        .expect("registry");
    let _ = weak.set(reg.downgrade());
    reg.emit(Library(b"close, please".to_vec()));
    flush(&d);
    assert!(
        reg.is_closed(),
        "E30: the sink could not close the registry"
    );
    assert_eq!(
        env.probe().count("closing-sink"),
        1,
        "the sink is freed once"
    );
}

/// [E16](anyloop::contract#e16)/[E25](anyloop::contract#e25): callbacks holding a weak handle do
/// not keep the registry open: dropping the last strong handle closes it (callbacks freed once on
/// the loop thread, timer removed), and a weak handle used from a callback works while it is open.
pub fn e16_drop_of_last_handle_closes_despite_weak_handles_e25(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let deregistered = Arc::new(Log::new());
    let own_id = Arc::new(Mutex::new(None::<CallbackId>));
    let (weak, me, dl, token) = (
        reg.downgrade(),
        own_id.clone(),
        deregistered.clone(),
        env.token("weak-holder"),
    );
    let id = reg
        .on(move |_: &Lifecycle| {
            let _ = &token;
            let registry = weak.upgrade().expect("open while the library holds it");
            let id = lock(&me).expect("id");
            dl.push(registry.deregister(id).map_err(|e| e.to_string()));
        })
        .expect("register");
    *lock(&own_id) = Some(id);
    let weak = reg.downgrade();
    let token = env.token("weak-survivor");
    let w = reg.downgrade();
    reg.on(move |_: &Reboot| {
        let _ = (&token, &w);
    })
    .expect("register");
    reg.emit(k(1, 1));
    flush(&d);
    assert_eq!(
        deregistered.snapshot(),
        vec![Ok(0)],
        "E25: deregister through a weak handle"
    );
    assert_eq!(
        env.probe().count("weak-holder"),
        1,
        "E25: the callback holding a weak handle freed once"
    );
    drop(reg);
    assert!(
        weak.upgrade().is_none(),
        "the registry outlived its last handle"
    );
    flush(&d);
    assert_eq!(
        env.probe().count("weak-survivor"),
        1,
        "E16: not freed on close"
    );
    assert_eq!(d.stats().timers, 0, "E16: flush timer left");
}

/// [E17](anyloop::contract#e17): close from a foreign thread while a callback runs on the loop
/// thread: close waits for it, then delivers the closing event to every callback registered for it;
/// no callback gets any event after the closing one, and the rest of the flush is not delivered.
pub fn e17_foreign_close_waits_for_running_callback(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let (entered, leave) = (Arc::new(Latch::new()), Arc::new(Latch::new()));
    let both = KindSet::from(Kind::Lifecycle) | Kind::Close;
    let (mut a, en, lv, token) = (
        logger(&d, &log, "A"),
        entered.clone(),
        leave.clone(),
        env.token("A"),
    );
    reg.on_kinds(both, move |kind, ev| {
        let _ = &token;
        a(kind, ev);
        if kind == Kind::Lifecycle {
            en.open();
            // Bounded: if the scenario failed meanwhile, return and let the loop go on.
            lv.wait_for(TIMEOUT);
        }
    })
    .expect("register A");
    let (mut b, token) = (logger(&d, &log, "B"), env.token("B"));
    reg.on_kinds(both, move |kind, ev| {
        let _ = &token;
        b(kind, ev);
    })
    .expect("register B");
    reg.emit(k(1, 1));
    reg.emit(k(1, 2));
    let pending = d.spawn_doing(
        "two iterations, which flush the two queued events (E6)",
        |ctx| ctx.turns(2),
    );
    entered.wait(
        "E6/E17: the registry callback started running in one of the loop's two iterations \
         (run_once(Some(0)) with two events queued)",
    );
    let r = reg.clone();
    let closer = thread::spawn(move || r.close_with(Close));
    thread::sleep(Duration::from_millis(50));
    assert!(
        events_of(&log, "A") == vec![Ev::Lifecycle(k(1, 1))] && events_of(&log, "B").is_empty(),
        "E17: the closing event overtook a running callback: {:?}",
        log.snapshot()
    );
    leave.open();
    join(
        closer,
        "E17: a foreign close_with returns once the running callback has returned",
    )
    .expect("close");
    pending.wait();
    flush(&d);
    assert_eq!(
        events_of(&log, "A"),
        vec![Ev::Lifecycle(k(1, 1)), Ev::Close(Close)],
        "E17"
    );
    assert_eq!(
        events_of(&log, "B"),
        vec![Ev::Close(Close)],
        "E17: events after close"
    );
    assert_eq!(
        (env.probe().count("A"), env.probe().count("B")),
        (1, 1),
        "E16"
    );
}
