//! Delivery rules: queueing, order, matching, flush boundaries, payloads
//! ([E5–E10](anyloop::contract#e5), [E13](anyloop::contract#e13), [E20](anyloop::contract#e20),
//! [E22](anyloop::contract#e22), [E27](anyloop::contract#e27)).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyloop::{CallbackId, KindSet};

use super::fixture::*;
use crate::bounded::{join, on_other_thread, Latch};
use crate::driver::TIMEOUT;
use crate::probe::{lock, Log};
use crate::runner::Env;

/// [E5](anyloop::contract#e5)/[E27](anyloop::contract#e27): with no callback, emit drops the event
/// at once and arms nothing (no timer on the loop, the loop stays asleep); an event emitted before
/// a registration is not delivered to it ([E5](anyloop::contract#e5), [E9](anyloop::contract#e9)).
pub fn e05_no_callbacks_emit_drops_arms_nothing_e27(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    assert!(!reg.emit(k(1, 1)), "E5: queued with no callback");
    assert_eq!(reg.queued(), 0, "E5: an event with no callback was queued");
    assert_eq!(d.stats().timers, 0, "E27: a timer exists with no callback");
    let ran = d.on_loop(|ctx| {
        ctx.run_once(Some(Duration::from_millis(30)))
            .expect("run_once")
    });
    assert_eq!(ran, 0, "E27: the loop woke for a dropped event");
    let log = Arc::new(Log::new());
    let (mut early, token) = (logger(&d, &log, "early"), env.token("early"));
    reg.on_kinds(KindSet::from(Kind::Lifecycle), move |kind, ev| {
        let _ = &token;
        early(kind, ev);
    })
    .expect("register");
    assert!(reg.emit(k(1, 2)), "queued with a callback");
    let (mut late, token) = (logger(&d, &log, "late"), env.token("late"));
    reg.on_kinds(KindSet::from(Kind::Lifecycle), move |kind, ev| {
        let _ = &token;
        late(kind, ev);
    })
    .expect("register late");
    reg.emit(k(1, 3));
    flush(&d);
    assert_eq!(
        events_of(&log, "early"),
        vec![Ev::Lifecycle(k(1, 2)), Ev::Lifecycle(k(1, 3))],
        "E9: the early callback gets the events emitted after it"
    );
    assert_eq!(
        events_of(&log, "late"),
        vec![Ev::Lifecycle(k(1, 3))],
        "E5/E9: registered after the emit, still got it"
    );
    reg.close().expect("close");
}

/// [E6](anyloop::contract#e6): emit from the loop thread (a job, a callback) or a foreign thread
/// never calls a callback synchronously; a foreign emit wakes a loop blocked with no deadline.
pub fn e06_emit_never_delivers_synchronously_wakes_loop_e06(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let (mut cb, token, r) = (logger(&d, &log, "cb"), env.token("cb"), reg.clone());
    reg.on_kinds(KindSet::all(), move |kind, ev| {
        let _ = &token;
        cb(kind, ev);
        if let Ev::Lifecycle(Lifecycle { n: 1, .. }) = ev {
            inside(|| r.emit(k(1, 2)));
        }
    })
    .expect("register");
    let r = reg.clone();
    d.on_loop(move |_| inside(|| r.emit(k(1, 1))));
    assert!(
        log.is_empty(),
        "E6: delivered inside an emit on the loop thread"
    );
    // Block the loop with no deadline, then emit from a foreign thread: it must wake.
    let blocked = d.spawn_doing(
        "run_once(None) until a callback runs: the flush of an event emitted on the loop thread (E6)",
        |ctx| {
            let mut ran = 0;
            while ran == 0 {
                ran = ctx.run_once(None).expect("run_once");
            }
        },
    );
    blocked.wait();
    assert!(
        log.wait_len(1, TIMEOUT),
        "E6: the event emitted on the loop thread was not delivered by the next iteration"
    );
    let blocked = d.spawn_doing(
        "run_once(None): the flush of the event emitted during the last flush (E13)",
        |ctx| ctx.run_once(None).expect("run_once"),
    );
    assert!(
        blocked.wait() > 0,
        "the event emitted in the flush is flushed next"
    );
    assert!(
        log.wait_len(2, TIMEOUT),
        "E13: the event emitted in the flush was not delivered by the next one"
    );
    let blocked = d.spawn_doing(
        "run_once(None), which only the foreign emit can end (E6, R40)",
        |ctx| ctx.run_once(None).expect("run_once"),
    );
    thread::sleep(Duration::from_millis(30));
    let r = reg.clone();
    on_other_thread("E6: an emit from a foreign thread", move || {
        inside(|| r.emit(l(2, 3)))
    });
    assert!(
        blocked.wait_for(TIMEOUT).is_some(),
        "E6: a foreign emit did not wake the loop"
    );
    flush(&d);
    assert_eq!(
        log.len(),
        3,
        "E6: the three events, delivered: {:?}",
        log.snapshot()
    );
    assert!(all_on_thread(&log, d.loop_thread()), "E24");
    reg.close().expect("close");
}

/// [E7](anyloop::contract#e7)/[E22](anyloop::contract#e22): events arrive in emit order, each to
/// every callback of its kind in registration order; per-thread emit order holds with two emitting
/// threads.
pub fn e07_emit_order_and_registration_order_e22(env: &Env) {
    let d = env.start_pumped();
    let reg = registry(&d);
    let order = Arc::new(Log::new());
    for who in 0..5usize {
        let (o, token) = (order.clone(), env.token(format!("cb{who}")));
        reg.on(move |e: &Lifecycle| {
            let _ = &token;
            o.push((e.obj.0, e.n, who));
        })
        .expect("register");
    }
    let emitters: Vec<_> = (0..2u64)
        .map(|t| {
            let r = reg.clone();
            thread::spawn(move || {
                for n in 0..200 {
                    r.emit(k(t, n));
                }
            })
        })
        .collect();
    for e in emitters {
        join(e, "E5: an emitting thread");
    }
    assert!(
        order.wait_len(2 * 200 * 5, TIMEOUT),
        "E22: deliveries missing"
    );
    let got = order.snapshot();
    for chunk in got.chunks(5) {
        let whos: Vec<usize> = chunk.iter().map(|(_, _, w)| *w).collect();
        assert_eq!(whos, vec![0, 1, 2, 3, 4], "E7: registration order");
        assert!(
            chunk
                .iter()
                .all(|(o, n, _)| (*o, *n) == (chunk[0].0, chunk[0].1)),
            "E7: one event reaches all five callbacks before the next: {chunk:?}"
        );
    }
    for t in 0..2u64 {
        let ns: Vec<u64> = got
            .iter()
            .filter(|(o, _, w)| *o == t && *w == 0)
            .map(|(_, n, _)| *n)
            .collect();
        assert_eq!(
            ns,
            (0..200).collect::<Vec<_>>(),
            "E7: emit order of thread {t}"
        );
    }
    reg.close().expect("close");
    d.settle();
}

/// [E8](anyloop::contract#e8): a predicate filters events, runs on the loop thread with no registry
/// lock held (it may call the registry), and object filters and predicates combine.
pub fn e08_predicate_on_loop_thread_without_locks_e08(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let predicate_threads = Arc::new(Log::new());
    let (r, pt, mut cb, token) = (
        reg.clone(),
        predicate_threads.clone(),
        logger(&d, &log, "even"),
        env.token("even"),
    );
    reg.listen::<Lifecycle>()
        .object(Obj(7))
        .filter(move |e| {
            pt.push(thread::current().id());
            // Registry calls from a predicate: would deadlock if a lock were held.
            let _ = (r.callbacks(), r.queued(), r.count(Kind::Lifecycle));
            e.n % 2 == 0
        })
        .call(move |e| {
            let _ = &token;
            cb(Kind::Lifecycle, &Ev::Lifecycle(e.clone()));
        })
        .expect("register");
    for n in 0..4 {
        reg.emit(k(7, n));
        reg.emit(k(8, n));
    }
    flush(&d);
    assert_eq!(
        events_of(&log, "even"),
        vec![Ev::Lifecycle(k(7, 0)), Ev::Lifecycle(k(7, 2))],
        "E8: object filter and predicate"
    );
    let threads = predicate_threads.snapshot();
    assert_eq!(
        threads.len(),
        4,
        "E8: the predicate runs only for its object"
    );
    assert!(
        threads.iter().all(|t| *t == d.loop_thread()),
        "E8: predicate thread"
    );
    reg.close().expect("close");
}

/// [E9](anyloop::contract#e9): a callback registered during a flush (by a callback) never sees the
/// in-flight events of that flush, only events emitted after its register returned.
pub fn e09_register_during_flush_sees_only_later_events(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let (r, registered, token) = (
        reg.clone(),
        Arc::new(AtomicBool::new(false)),
        env.token("A"),
    );
    let (late_log, dd_iterations) = (log.clone(), d.iteration_counter());
    let late_token = Arc::new(Mutex::new(Some(env.token("late"))));
    reg.on(move |e: &Lifecycle| {
        let _ = &token;
        if e.n == 1 && !registered.swap(true, Ordering::SeqCst) {
            let (log, its, tok) = (
                late_log.clone(),
                dd_iterations.clone(),
                lock(&late_token).take(),
            );
            r.on_kinds(KindSet::from(Kind::Lifecycle), move |_, ev| {
                let _ = &tok;
                log.push(Got {
                    who: "late",
                    event: ev.clone(),
                    thread: thread::current().id(),
                    iteration: its.load(Ordering::SeqCst),
                });
            })
            .expect("register during flush");
            // Emitted after the register returned: the new callback gets it (later flush).
            r.emit(k(1, 100));
        }
    })
    .expect("register A");
    for n in 1..=3 {
        reg.emit(k(1, n));
    }
    flush(&d);
    reg.emit(k(1, 4));
    flush(&d);
    assert_eq!(
        events_of(&log, "late"),
        vec![Ev::Lifecycle(k(1, 100)), Ev::Lifecycle(k(1, 4))],
        "E9: in-flight events reached a callback registered during the flush"
    );
    reg.close().expect("close");
}

/// [E10](anyloop::contract#e10): deregister during a flush stops delivery at once: a callback
/// deregistering a later one (for the current event too), and a foreign thread deregistering one
/// while another callback of the same flush runs (the call returns without waiting).
pub fn e10_deregister_during_flush_stops_delivery_at_once(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let victim = Arc::new(Mutex::new(None::<CallbackId>));
    let gate = Arc::new(Latch::new());
    let released = Arc::new(Latch::new());
    let (r, v, g, rel, token) = (
        reg.clone(),
        victim.clone(),
        gate.clone(),
        released.clone(),
        env.token("A"),
    );
    reg.on(move |e: &Lifecycle| {
        let _ = &token;
        if e.n == 1 {
            let id = lock(&v).take().expect("victim id");
            r.deregister(id).expect("deregister B from A");
        }
        if e.n == 2 {
            // Let the test thread deregister C while this callback runs (bounded: if the
            // scenario failed meanwhile, return and let the loop go on).
            g.open();
            rel.wait_for(TIMEOUT);
        }
    })
    .expect("register A");
    let (mut b, token) = (logger(&d, &log, "B"), env.token("B"));
    let b_id = reg
        .on_kinds(KindSet::from(Kind::Lifecycle), move |kind, ev| {
            let _ = &token;
            b(kind, ev);
        })
        .expect("register B");
    *lock(&victim) = Some(b_id);
    let (mut c, token) = (logger(&d, &log, "C"), env.token("C"));
    let c_id = reg
        .on_kinds(KindSet::from(Kind::Lifecycle), move |kind, ev| {
            let _ = &token;
            c(kind, ev);
        })
        .expect("register C");
    for n in 1..=3 {
        reg.emit(k(1, n));
    }
    let pending = d.spawn_doing(
        "three iterations, which flush the three queued events (E6)",
        |ctx| ctx.turns(3),
    );
    gate.wait(
        "E6/E10: callback A started on the second event in one of the loop's three iterations \
         (run_once(Some(0)) with three events queued)",
    );
    let r = reg.clone();
    let left = on_other_thread(
        "E10/R44: a foreign deregister while another callback of the flush runs returns at once",
        move || r.deregister(c_id),
    )
    .expect("deregister C while A runs");
    assert_eq!(left, 1, "E28: only A remains");
    released.open();
    pending.wait();
    flush(&d);
    assert!(
        events_of(&log, "B").is_empty(),
        "E10: B got the event being delivered"
    );
    assert_eq!(
        events_of(&log, "C"),
        vec![Ev::Lifecycle(k(1, 1))],
        "E10: C got events after its deregister returned"
    );
    assert_eq!(
        env.probe().count("B"),
        1,
        "E11: B, deregistered by A, freed once"
    );
    assert_eq!(
        env.probe().count("C"),
        1,
        "E11: C, deregistered by the foreign thread, freed once"
    );
    reg.close().expect("close");
}

/// [E13](anyloop::contract#e13): a callback that emits on every event cannot livelock the loop:
/// each flush delivers only the events queued before it started, and every iteration returns.
pub fn e13_self_emitting_callback_one_event_per_flush_e13(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, c, token) = (reg.clone(), calls.clone(), env.token("echo"));
    reg.on(move |e: &Lifecycle| {
        let _ = &token;
        c.fetch_add(1, Ordering::SeqCst);
        r.emit(k(1, e.n + 1));
    })
    .expect("register");
    reg.emit(k(1, 0));
    let mut per_iteration = Vec::new();
    for _ in 0..10 {
        let before = calls.load(Ordering::SeqCst);
        d.on_loop(|ctx| {
            ctx.run_once(Some(Duration::from_millis(500)))
                .expect("run_once")
        });
        per_iteration.push(calls.load(Ordering::SeqCst) - before);
    }
    assert!(
        per_iteration.iter().all(|n| *n <= 1),
        "E13: a flush delivered events emitted during it: {per_iteration:?}"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 5,
        "E13: the echo stopped: {per_iteration:?}"
    );
    reg.close().expect("close");
    flush(&d);
}

/// [E20](anyloop::contract#e20): byte payloads (empty, every byte value, NULs) and u64 arrays (0,
/// MAX) arrive bit-exact, from a foreign thread.
pub fn e20_bytes_and_u64_arrays_bit_exact(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let got = Arc::new(Log::new());
    let (g, token) = (got.clone(), env.token("payloads"));
    reg.on_kinds(KindSet::all(), move |_, ev| {
        let _ = &token;
        g.push(ev.clone());
    })
    .expect("register");
    let sent = vec![
        Ev::Library(Library(Vec::new())),
        Ev::Warning(Warning((0..=255u8).collect())),
        Ev::Library(Library(vec![0; 4096])),
        Ev::Progress(Progress(vec![0, u64::MAX, 1 << 63, 42])),
        Ev::Progress(Progress(Vec::new())),
    ];
    let (r, s) = (reg.clone(), sent.clone());
    on_other_thread("E5: emits from a foreign thread", move || {
        for ev in s {
            r.emit(ev);
        }
    });
    flush(&d);
    assert_eq!(got.snapshot(), sent, "E20: payloads altered");
    reg.close().expect("close");
}

/// [E6](anyloop::contract#e6)/[E27](anyloop::contract#e27): the arming protocol under races: four
/// threads emit bursts while the loop flushes; no event is stranded (all delivered, the last ones
/// without any later emit), and once the queue is empty the flush timer is disarmed: the loop goes
/// quiet, no spinning.
pub fn e27_arming_races_never_strand_nor_spin_e06(env: &Env) {
    let d = env.start_pumped();
    let reg = registry(&d);
    let count = Arc::new(AtomicUsize::new(0));
    let (c, token) = (count.clone(), env.token("counter"));
    reg.on(move |_: &Progress| {
        let _ = &token;
        c.fetch_add(1, Ordering::SeqCst);
    })
    .expect("register");
    let emitters: Vec<_> = (0..4u64)
        .map(|t| {
            let r = reg.clone();
            thread::spawn(move || {
                for n in 0..2000u64 {
                    r.emit(Progress(vec![t, n]));
                    if n % 97 == t {
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for e in emitters {
        join(e, "E5: an emitting thread");
    }
    let deadline = std::time::Instant::now() + TIMEOUT;
    while count.load(Ordering::SeqCst) < 8000 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        8000,
        "E6: events stranded in the queue"
    );
    assert_eq!(
        reg.queued(),
        0,
        "E26: events still queued after everything was delivered"
    );
    d.stop_pump();
    d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(200)))
        .assert_quiet("E27: the flush timer stays armed with an empty queue");
    reg.close().expect("close");
    flush(&d);
}
