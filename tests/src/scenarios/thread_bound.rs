//! [R42](anyloop::contract#r42) and [R50](anyloop::contract#r50) for thread-bound callbacks:
//! closures that are not `Send` (here they capture an `Rc`), registered with `watch_local`,
//! `timer_local`, `WatchCallback::local`, `TimerCallback::local` or `Registry::on_local`. They are
//! called and dropped on the loop thread only; registered anywhere else, they are refused with
//! `WrongThread` and handed back; a thread-bound callback of another thread is never called.
//!
//! An `Rc` cannot leave its thread, so these scenarios run a whole sequence in one job on the
//! loop thread (registering, iterating, reading the `Rc`) and return plain numbers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{
    Error, IoEvents, RegistrationId, Registry, Schedule, TimerCallback, TimerId, WatchCallback,
    WatchId,
};

use crate::bounded::{join, on_other_thread};
use crate::driver::{LoopCtx, TIMEOUT};
use crate::fds::{read_one, Pipe};
use crate::runner::Env;

/// An event the registry scenario emits.
#[derive(Debug)]
pub(crate) struct Ping(pub(crate) u64);

anyloop::event_set! {
    /// The events of the thread-bound registry scenario.
    pub(crate) enum PingEvent {
        kind: PingKind,
        Ping(Ping),
    }
}

/// Iterates (at most `TIMEOUT`) until `done` holds; false if it never did.
fn turn_until(ctx: &mut LoopCtx, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        ctx.run_once(Some(Duration::from_millis(20)))
            .expect("run_once");
    }
    true
}

/// [R42](anyloop::contract#r42)/[R50](anyloop::contract#r50): a `watch_local` and a `timer_local`
/// closure capturing an `Rc<Cell<..>>` are called on the loop thread, once per iteration they are
/// due, and count exactly: three bytes read one per call give three calls, then none while the pipe
/// is empty; an every-iteration timer fires once in each of ten iterations. The loop thread is the
/// one `Loop` names.
pub fn r42_thread_bound_callbacks_called_on_loop_thread_r50(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let lp = d.lp().clone();
    assert_eq!(
        lp.loop_thread(),
        Some(d.loop_thread()),
        "R50: loop_thread() does not name the thread that runs the loop"
    );
    assert!(
        !lp.is_loop_thread(),
        "R50: the test thread is not the loop's"
    );
    let (fd, loop_thread) = (pipe.fd(), d.loop_thread());
    let (watch_token, timer_token) = (env.token("local-watch"), env.token("local-timer"));
    let pipe = Arc::new(pipe);
    let writer = pipe.clone();
    let (per_iteration, threads) = d.on_loop(move |ctx| {
        assert!(lp.is_loop_thread(), "R50: is_loop_thread() false on it");
        let reads = Rc::new(Cell::new(0u32));
        let ticks = Rc::new(Cell::new(0u32));
        let threads: Rc<RefCell<Vec<ThreadId>>> = Rc::default();
        let (r, seen) = (reads.clone(), threads.clone());
        let watch = lp
            .watch_local(fd, IoEvents::READABLE, move |_, fd, _| {
                let _ = &watch_token;
                read_one(fd);
                r.set(r.get() + 1);
                seen.borrow_mut().push(thread::current().id());
            })
            .expect("R50: watch_local on the loop thread");
        let (t, seen) = (ticks.clone(), threads.clone());
        let timer = lp
            .timer_local(Schedule::EVERY_ITERATION, move |_| {
                let _ = &timer_token;
                t.set(t.get() + 1);
                seen.borrow_mut().push(thread::current().id());
            })
            .expect("R50: timer_local on the loop thread");
        writer.write(3);
        // Per iteration: (watch calls, timer calls) while data is there and after.
        let mut per_iteration = Vec::new();
        for _ in 0..10 {
            let (r0, t0) = (reads.get(), ticks.get());
            ctx.run_once(Some(Duration::from_millis(50)))
                .expect("run_once");
            per_iteration.push((reads.get() - r0, ticks.get() - t0));
        }
        drop((watch, timer));
        ctx.turns(2); // the frees, on this thread
        let threads = threads.borrow().clone();
        (per_iteration, threads)
    });
    let reads: u32 = per_iteration.iter().map(|(r, _)| r).sum();
    assert_eq!(
        reads, 3,
        "R8/R42: the thread-bound watch was called {reads} times for 3 one-byte reads: {per_iteration:?}"
    );
    assert!(
        per_iteration.iter().all(|&(r, t)| r <= 1 && t == 1),
        "R12/R27: (watch, timer) calls per iteration: {per_iteration:?}"
    );
    assert!(
        threads.iter().all(|t| *t == loop_thread),
        "R42: a thread-bound callback ran off the loop thread"
    );
    for label in ["local-watch", "local-timer"] {
        assert_eq!(env.probe().count(label), 1, "R23: {label} not freed once");
    }
    for r in env.probe().records() {
        assert_eq!(
            r.thread, loop_thread,
            "R24/R42: {} freed elsewhere",
            r.label
        );
    }
}

/// [R50](anyloop::contract#r50)/[R2](anyloop::contract#r2): thread-bound callbacks added from a
/// thread that is not the loop's are refused with `WrongThread { id: None, .. }` and handed back
/// untouched (still callable here, not freed), through the kit's handle and the backend's own
/// alike; nothing is registered and nothing runs on the loop meanwhile.
pub fn r50_thread_bound_add_off_loop_thread_refused_callback_back_r02(env: &Env) {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let before = d.lp().stats();
    let calls = Rc::new(Cell::new(0u32));
    for (k, lp) in [d.lp().clone(), d.raw().clone()].into_iter().enumerate() {
        // A timer, by id.
        let label = format!("refused-timer-{k}");
        let (c, token) = (calls.clone(), env.token(label.as_str()));
        let callback = TimerCallback::local(move |_| {
            let _ = &token;
            c.set(c.get() + 1);
        });
        let rejected = lp
            .add_timer(Schedule::EVERY_ITERATION, callback)
            .expect_err("R50: a thread-bound timer added off the loop thread");
        assert!(
            matches!(rejected.error(), Error::WrongThread { id: None, .. }),
            "R50/R59: {:?}",
            rejected.error()
        );
        let mut callback = rejected.into_callback();
        callback.call(TimerId::allocate());
        assert_eq!(calls.get(), 1, "R2: the callback handed back is not ours");
        assert_eq!(env.probe().count(&label), 0, "R2: freed");
        drop(callback);
        assert_eq!(
            env.probe().count(&label),
            1,
            "R2: the handed-back callback must be freed once, by its drop"
        );
        // A watch, by id.
        let (c, token) = (calls.clone(), env.token("refused-watch"));
        let callback = WatchCallback::local(move |_, _, _| {
            let _ = &token;
            c.set(c.get() + 1);
        });
        let rejected = lp
            .add_watch(pipe.fd(), IoEvents::READABLE, callback)
            .expect_err("R50: a thread-bound watch added off the loop thread");
        assert!(
            matches!(rejected.error(), Error::WrongThread { id: None, .. }),
            "R50/R59: {:?}",
            rejected.error()
        );
        let mut callback = rejected.into_callback();
        callback.call(WatchId::allocate(), pipe.fd(), IoEvents::READABLE);
        assert_eq!(calls.get(), 2, "R2: the callback handed back is not ours");
        drop(callback);
        // The guard forms.
        let c = calls.clone();
        let refused = lp.timer_local(Schedule::Once(Duration::ZERO), move |_| {
            c.set(c.get() + 1);
        });
        assert!(
            matches!(refused, Err(ref r) if matches!(r.error(), Error::WrongThread { .. })),
            "R50: timer_local off the loop thread: {refused:?}"
        );
        let c = calls.clone();
        let refused = lp.watch_local(pipe.fd(), IoEvents::READABLE, move |_, _, _| {
            c.set(c.get() + 1);
        });
        assert!(
            matches!(refused, Err(ref r) if matches!(r.error(), Error::WrongThread { .. })),
            "R50: watch_local off the loop thread: {refused:?}"
        );
        calls.set(0);
    }
    pipe.write(1); // a watch wrongly registered would now be due
    d.settle();
    assert_eq!(calls.get(), 0, "a refused callback ran");
    let after = d.lp().stats();
    assert_eq!(
        (after.watches, after.timers, after.pending_frees),
        (before.watches, before.timers, before.pending_frees),
        "R2: a refused add left a registration: {before:?} -> {after:?}"
    );
}

/// [R42](anyloop::contract#r42)/[R21](anyloop::contract#r21)/[R24](anyloop::contract#r24): a
/// thread-bound callback is dropped (its free runs) on the loop thread, exactly once, after its
/// remove returned: removed on the loop thread it is not freed inside the remove; removed from
/// another thread it stays pending until the next iteration frees it.
pub fn r42_thread_bound_free_on_loop_thread_once_after_remove_r21_r24(env: &Env) {
    let d = env.start();
    let lp = d.lp().clone();
    let loop_thread = d.loop_thread();
    let (on_loop, foreign) = (env.token("removed-on-loop"), env.token("removed-foreign"));
    let pipe = Arc::new(Pipe::new());
    let fd = pipe.fd();
    let ids = d.on_loop(move |ctx| {
        let state = Rc::new(Cell::new(0u32));
        let (s, token) = (state.clone(), on_loop);
        let timer = lp
            .add_timer(
                Schedule::Every(Duration::from_secs(3600)),
                TimerCallback::local(move |_| {
                    let _ = &token;
                    s.set(s.get() + 1);
                }),
            )
            .expect("add a thread-bound timer");
        let (s, token) = (state.clone(), foreign);
        let watch = lp
            .add_watch(
                fd,
                IoEvents::READABLE,
                WatchCallback::local(move |_, _, _| {
                    let _ = &token;
                    s.set(s.get() + 1);
                }),
            )
            .expect("add a thread-bound watch");
        ctx.turns(1);
        lp.remove_timer(timer).expect("remove on the loop thread");
        // Both callbacks still hold their clone of `state`: the remove did not free.
        let freed_inside_remove = Rc::strong_count(&state) < 3;
        (watch, freed_inside_remove, ctx.stats().pending_frees)
    });
    let (watch, freed_inside_remove, pending) = ids;
    assert!(
        !freed_inside_remove,
        "R21: the thread-bound callback was freed inside remove"
    );
    assert!(pending >= 1, "R25/R57: no free pending after the remove");
    assert_eq!(
        env.probe().count("removed-on-loop"),
        0,
        "R21: freed by remove"
    );
    d.on_loop(|ctx| ctx.turns(1));
    assert_eq!(
        env.probe().count("removed-on-loop"),
        1,
        "R25: not freed by the next iteration"
    );
    // From another thread: pending until the loop iterates, then freed there.
    let lp = d.lp().clone();
    on_other_thread(
        "R39: a remove of a thread-bound watch from a foreign thread",
        move || lp.remove_watch(watch).expect("remove from another thread"),
    );
    assert!(
        d.lp().stats().pending_frees >= 1,
        "R25/R57: the foreign remove left no pending free"
    );
    thread::sleep(Duration::from_millis(50)); // the window: nobody iterates, nothing frees
    assert_eq!(
        env.probe().count("removed-foreign"),
        0,
        "R24: freed off the loop thread (or without an iteration)"
    );
    d.on_loop(|ctx| ctx.turns(1));
    assert_eq!(
        env.probe().count("removed-foreign"),
        1,
        "R25: not freed once"
    );
    d.on_loop(|ctx| ctx.turns(2));
    for r in env.probe().records() {
        assert_eq!(
            r.thread, loop_thread,
            "R42: {} freed off the loop thread",
            r.label
        );
        assert!(!r.inside_op, "R21: {} freed inside an operation", r.label);
        assert_eq!(
            env.probe().count(&r.label),
            1,
            "R23: {} not freed exactly once",
            r.label
        );
    }
    drop(pipe);
}

/// [R42](anyloop::contract#r42): a thread-bound callback of another thread that reaches the backend
/// anyway (the backend's own `add_timer`, which does not check the thread; `Loop` would refuse it)
/// is never called by the loop: each iteration it is due in reports `WrongThread` naming it, and a
/// one-shot is disabled as usual; its drop waits for its own thread, where it runs once when that
/// thread ends.
pub fn r42_other_threads_bound_callback_never_called_reported_r59(env: &Env) {
    let d = env.start();
    let raw = d.raw().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let token = env.token("other-thread's");
    let (id_tx, id_rx) = mpsc::channel();
    let (end_tx, end_rx) = mpsc::channel::<()>();
    let (c, lp) = (calls.clone(), raw.clone());
    let owner = thread::spawn(move || {
        let here = Rc::new(Cell::new(0u32)); // not Send: thread-bound to this thread
        let h = here.clone();
        let callback = TimerCallback::local(move |_| {
            let _ = &token;
            h.set(h.get() + 1);
            c.fetch_add(1, Ordering::SeqCst);
        });
        let got = lp.backend().add_timer(Schedule::EVERY_ITERATION, callback);
        let _ = id_tx.send(got.map_err(|r| r.into_parts().0));
        // Stay alive until the scenario is done with the timer: its drop waits for this
        // thread, and runs here when the thread ends.
        let _ = end_rx.recv_timeout(TIMEOUT * 2);
        here.get()
    });
    let owner_thread = owner.thread().id();
    let id = match id_rx.recv_timeout(TIMEOUT).expect("the owner thread died") {
        Ok(id) => id,
        // A backend may refuse it at once: the other correct answer.
        Err(Error::WrongThread { id: None, .. }) => {
            drop(end_tx);
            assert_eq!(
                join(
                    owner,
                    "R42: the owner thread of the refused thread-bound callback"
                ),
                0,
                "R42: the refused callback was called"
            );
            return;
        }
        Err(other) => panic!("R50: {other:?}, want Ok or WrongThread"),
    };
    let results = d.on_loop(|ctx| {
        (0..3)
            .map(|_| ctx.run_once(Some(Duration::from_millis(20))))
            .collect::<Vec<_>>()
    });
    for result in &results {
        match result {
            Err(Error::WrongThread {
                id: Some(named), ..
            }) => {
                assert_eq!(*named, RegistrationId::from(id), "R59: names another id")
            }
            other => panic!(
                "R42: a due thread-bound callback of another thread gave {other:?}, want \
                 WrongThread naming {id}"
            ),
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "R42: called off its thread"
    );
    // A one-shot is disabled as it falls due, called or not.
    raw.update_timer(id, Schedule::Once(Duration::ZERO))
        .expect("update");
    let result = d.on_loop(|ctx| ctx.run_once(Some(Duration::from_millis(20))));
    assert!(
        matches!(result, Err(Error::WrongThread { id: Some(_), .. })),
        "R42: {result:?}"
    );
    assert_eq!(
        raw.timer_schedule(id).expect("timer_schedule"),
        Schedule::Disabled,
        "R27: a fallen-due one-shot not disabled"
    );
    let quiet = d.on_loop(|ctx| ctx.run_once(Some(Duration::from_millis(20))));
    assert!(
        matches!(quiet, Ok(0)),
        "R27: a disabled one-shot is not due: {quiet:?}"
    );
    raw.remove_timer(id).expect("remove");
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        env.probe().count("other-thread's"),
        0,
        "R42: dropped off its own thread"
    );
    drop(end_tx);
    assert_eq!(
        join(
            owner,
            "R42: the owner thread of the other thread's callback"
        ),
        0,
        "R42: another thread's thread-bound callback was called"
    );
    assert!(
        env.probe().wait_freed("other-thread's", TIMEOUT),
        "R23: never freed, even when its thread ended"
    );
    let record = env
        .probe()
        .records()
        .into_iter()
        .find(|r| r.label == "other-thread's")
        .expect("the free");
    assert_eq!(record.thread, owner_thread, "R42: dropped off its thread");
}

/// [E24](anyloop::contract#e24)/[R42](anyloop::contract#r42): a registry callback registered with
/// `on_local`, capturing an `Rc`, receives every event emitted from another thread, in order, on
/// the loop thread; `on_local` off the loop thread is refused with `WrongThread` and the callback
/// handed back.
pub fn e24_registry_on_local_gets_foreign_emits_on_loop_thread_r42(env: &Env) {
    let d = env.start();
    let registry: Registry<PingEvent> =
        Registry::with_loop(d.lp().clone()).expect("a registry on the loop");
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    let rejected = registry
        .on_local(move |_: &Ping| c.set(c.get() + 1))
        .expect_err("E24: on_local off the loop thread");
    assert!(
        matches!(rejected.error(), Error::WrongThread { .. }),
        "R50: {:?}",
        rejected.error()
    );
    // `?`-friendly (the rejection is `Send + Sync`), and the callback comes back on its thread.
    let mut callback = rejected
        .into_callback()
        .into_inner()
        .unwrap_or_else(|_| panic!("E24: handed back on the rejecting thread"));
    callback(&Ping(0));
    assert_eq!(calls.get(), 1, "E3: the callback handed back is not ours");
    drop(callback);

    let (r, token, loop_thread) = (registry.clone(), env.token("on-local"), d.loop_thread());
    let (got, threads) = d.on_loop(move |ctx| {
        let seen: Rc<RefCell<Vec<(u64, ThreadId)>>> = Rc::default();
        let s = seen.clone();
        r.on_local(move |ping: &Ping| {
            let _ = &token;
            s.borrow_mut().push((ping.0, thread::current().id()));
        })
        .expect("E24: on_local on the loop thread");
        let emitter = r.clone();
        on_other_thread("E24: emits from a foreign thread", move || {
            for n in 1..=5 {
                emitter.emit(Ping(n));
            }
        });
        assert!(
            turn_until(ctx, || seen.borrow().len() >= 5),
            "E6: the foreign emits were not delivered"
        );
        ctx.turns(2);
        let seen = seen.borrow();
        (
            seen.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            seen.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        )
    });
    assert_eq!(
        got,
        vec![1, 2, 3, 4, 5],
        "E7: events lost, repeated or reordered"
    );
    assert!(
        threads.iter().all(|t| *t == loop_thread),
        "E24/R42: delivered off the loop thread"
    );
    registry.close().expect("close");
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(env.probe().count("on-local"), 1, "E16: not freed once");
}
