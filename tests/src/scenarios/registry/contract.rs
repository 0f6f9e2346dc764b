//! The contract's registry scenarios [S59–S66](anyloop::contract#s59).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyloop::{CallbackId, Error, KindSet, RegistrationId};

use super::fixture::*;
use crate::bounded::on_other_thread;
use crate::driver::TIMEOUT;
use crate::probe::{lock, Log};
use crate::runner::Env;

/// [S59](anyloop::contract#s59): X for kind K on object 1, Y for K on any object, Z for kind L.
/// Emit K(1), K(2), L(1). → X gets K(1); Y gets K(1) and K(2) in order; Z gets L(1); nothing is
/// delivered inside `emit`; delivery on the loop thread ([E6](anyloop::contract#e6),
/// [E8](anyloop::contract#e8), [E24](anyloop::contract#e24), [E29](anyloop::contract#e29)).
pub fn s59_filter_by_object_e06_e08_e29(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let (tx, ty, tz) = (env.token("X"), env.token("Y"), env.token("Z"));
    let mut x = logger(&d, &log, "X");
    reg.listen::<Lifecycle>()
        .object(Obj(1))
        .call(move |e| {
            let _ = &tx;
            x(Kind::Lifecycle, &Ev::Lifecycle(e.clone()));
        })
        .expect("register X");
    let mut y = logger(&d, &log, "Y");
    reg.on(move |e: &Lifecycle| {
        let _ = &ty;
        y(Kind::Lifecycle, &Ev::Lifecycle(e.clone()));
    })
    .expect("register Y");
    let mut z = logger(&d, &log, "Z");
    reg.on::<Reboot>(move |e| {
        let _ = &tz;
        z(Kind::Reboot, &Ev::Reboot(e.clone()));
    })
    .expect("register Z");
    inside(|| {
        assert!(
            reg.emit(k(1, 1)),
            "E5: emit must say a callback listens (X, Y)"
        );
        assert!(
            reg.emit(k(2, 2)),
            "E5: emit must say a callback listens (Y)"
        );
        assert!(
            reg.emit(l(1, 3)),
            "E5: emit must say a callback listens (Z)"
        );
    });
    assert!(log.is_empty(), "E6: delivered inside emit");
    assert_eq!(reg.queued(), 3, "E26: three events queued");
    d.pump();
    assert!(
        log.wait_len(4, TIMEOUT),
        "S59: deliveries missing: {:?}",
        log.snapshot()
    );
    d.settle();
    assert_eq!(
        events_of(&log, "X"),
        vec![Ev::Lifecycle(k(1, 1))],
        "S59/E8: callback X (kind K, object 1)"
    );
    assert_eq!(
        events_of(&log, "Y"),
        vec![Ev::Lifecycle(k(1, 1)), Ev::Lifecycle(k(2, 2))],
        "S59/E8: callback Y (kind K, any object)"
    );
    assert_eq!(
        events_of(&log, "Z"),
        vec![Ev::Reboot(l(1, 3))],
        "S59/E29: callback Z (kind L)"
    );
    assert!(
        all_on_thread(&log, d.loop_thread()),
        "E24: not on the loop thread"
    );
    assert_eq!(reg.queued(), 0, "E26: events still queued after the flush");
    reg.close().expect("close");
}

/// [S60](anyloop::contract#s60): three events queued; A deregisters itself on the first. → A sees
/// exactly one; B (registered after A) sees all three; A's free runs after the flush, on the loop
/// thread, not inside deregister ([E10](anyloop::contract#e10), [E11](anyloop::contract#e11)).
pub fn s60_deregister_inside_flush_e10_e11(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let frees = Arc::new(Log::new());
    let a_id = Arc::new(Mutex::new(None::<CallbackId>));
    let running = Arc::new(AtomicBool::new(false));
    let spy = FreeSpy {
        label: "A",
        running: running.clone(),
        log: frees.clone(),
    };
    let (r, id_slot, mut a, token) = (
        reg.clone(),
        a_id.clone(),
        logger(&d, &log, "A"),
        env.token("A"),
    );
    let (frees_seen, run) = (frees.clone(), running.clone());
    let id = reg
        .on_kinds(KindSet::from(Kind::Lifecycle), move |kind, event| {
            let _ = (&spy, &token);
            run.store(true, Ordering::SeqCst);
            a(kind, event);
            let me = lock(&id_slot).expect("own id");
            let left = inside(|| r.deregister(me)).expect("self-deregister");
            assert_eq!(left, 1, "E28: B still listens");
            assert!(frees_seen.is_empty(), "E11: A freed inside its deregister");
            run.store(false, Ordering::SeqCst);
        })
        .expect("register A");
    *lock(&a_id) = Some(id);
    let (mut b, token) = (logger(&d, &log, "B"), env.token("B"));
    reg.on_kinds(KindSet::from(Kind::Lifecycle), move |kind, event| {
        let _ = &token;
        b(kind, event);
    })
    .expect("register B");
    for n in 1..=3 {
        reg.emit(k(1, n));
    }
    d.on_loop(|ctx| {
        ctx.turns(1);
    });
    flush(&d);
    assert_eq!(
        events_of(&log, "A"),
        vec![Ev::Lifecycle(k(1, 1))],
        "S60/E10"
    );
    assert_eq!(events_of(&log, "B").len(), 3, "S60: B sees all three");
    let seen = frees.snapshot();
    assert_eq!(seen.len(), 1, "E11: A freed exactly once by now: {seen:?}");
    assert!(
        !seen[0].inside_call && !seen[0].callback_running,
        "E11: {seen:?}"
    );
    assert_eq!(
        seen[0].thread,
        d.loop_thread(),
        "E11: free off the loop thread"
    );
    assert_eq!(seen[0].label, "A", "E11: the free recorded is not A's");
    assert!(
        matches!(reg.deregister(id), Err(Error::NotFound { .. })),
        "E12: double deregister"
    );
    reg.close().expect("close");
}

/// [S64](anyloop::contract#s64): a registry with 3 callbacks and 2 queued events is closed (from a
/// foreign thread). → No event delivered, three frees exactly once on the loop thread, the flush
/// timer removed (no timer left on the loop, which is idle) ([E14](anyloop::contract#e14),
/// [E16](anyloop::contract#e16)).
pub fn s64_close_drops_queue_and_frees_e16(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    for who in ["c1", "c2", "c3"] {
        let (mut cb, token) = (logger(&d, &log, who), env.token(who));
        reg.on_kinds(KindSet::all(), move |kind, ev| {
            let _ = &token;
            cb(kind, ev);
        })
        .expect("register");
    }
    reg.emit(k(1, 1));
    reg.emit(Warning(b"w".to_vec()));
    assert_eq!((reg.callbacks(), reg.queued()), (3, 2), "E26");
    let closer = reg.clone();
    on_other_thread(
        "E16: closing the registry from a foreign thread",
        move || closer.close().expect("close"),
    );
    assert!(
        reg.is_closed(),
        "E16: the registry is not closed after close() returned"
    );
    assert_eq!((reg.callbacks(), reg.queued()), (0, 0), "E16");
    flush(&d);
    assert!(
        log.is_empty(),
        "S64: delivered after close: {:?}",
        log.snapshot()
    );
    for who in ["c1", "c2", "c3"] {
        assert_eq!(
            env.probe().count(who),
            1,
            "E16: {who} not freed exactly once"
        );
    }
    let records = env.probe().records();
    assert!(
        records.iter().all(|r| r.thread == d.loop_thread()),
        "E16: frees off the loop thread"
    );
    let stats = d.stats();
    assert_eq!(
        stats.timers, 0,
        "E16: the flush timer is still there: {stats:?}"
    );
    assert!(stats.is_idle(), "S64: frees still pending: {stats:?}");
    assert!(!reg.emit(k(1, 2)), "E16: emit after close queued");
}

/// [S65](anyloop::contract#s65): unknown and double deregister → NotFound naming the id; ids of a
/// closed registry → NotFound; ids positive and never reused across 10 000 register/deregister
/// cycles ([E2](anyloop::contract#e2), [E12](anyloop::contract#e12)).
pub fn s65_unknown_double_deregister_ids_never_reused_e02_e12(env: &Env) {
    let d = env.start_pumped();
    let reg = registry(&d);
    let unknown = CallbackId::allocate();
    match reg.deregister(unknown) {
        Err(Error::NotFound { id }) => assert_eq!(
            id,
            RegistrationId::Callback(unknown),
            "E12: NotFound names another id"
        ),
        other => panic!("E12: unknown id: {other:?}"),
    }
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let id = reg.on(|_: &Progress| {}).expect("register");
        assert!(id.get() > 0, "E2: id not positive");
        assert!(seen.insert(id), "E2: {id} reused");
        assert_eq!(reg.deregister(id).expect("deregister"), 0, "E28");
        let again = reg.deregister(id).expect_err("E12: double deregister");
        assert!(again.to_string().contains(&id.to_string()), "R59: {again}");
    }
    let token = env.token("survivor");
    let live = reg
        .on(move |_: &Progress| {
            let _ = &token;
        })
        .expect("register");
    reg.close().expect("close");
    assert!(
        matches!(reg.deregister(live), Err(Error::NotFound { .. })),
        "E12: id of a closed registry"
    );
    // A new registry on the same loop never hands out an old id.
    let other = registry(&d);
    let fresh = other.on(|_: &Progress| {}).expect("register");
    assert!(
        !seen.contains(&fresh) && fresh != live,
        "E2: reuse across registries"
    );
    assert!(
        matches!(other.deregister(live), Err(Error::NotFound { .. })),
        "E12: another registry deregistered a live id of this one"
    );
    other.close().expect("close");
    d.settle();
}

/// [S66](anyloop::contract#s66): one callback for {LIBRARY, WARNING}, one for ALL; emit a WARNING
/// with 5 bytes holding a NUL and a PROGRESS `[1,2,3,4]`. → The first gets only the WARNING, bytes
/// identical; the second both, the array intact; a mask of 0 is refused (callback handed back, not
/// freed); an event emitted by a callback during the flush is delivered in a later flush
/// ([E13](anyloop::contract#e13), [E20](anyloop::contract#e20), [E21](anyloop::contract#e21),
/// [E3](anyloop::contract#e3)).
pub fn s66_bitmask_and_payload_e03_e13_e20_e21(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let (mut first, token) = (logger(&d, &log, "messages"), env.token("messages"));
    reg.on_kinds(
        KindSet::from(Kind::Library) | Kind::Warning,
        move |kind, ev| {
            let _ = &token;
            first(kind, ev);
        },
    )
    .expect("register {LIBRARY, WARNING}");
    let (mut all, token, r) = (logger(&d, &log, "all"), env.token("all"), reg.clone());
    reg.on_kinds(KindSet::all(), move |kind, ev| {
        let _ = &token;
        all(kind, ev);
        if kind == Kind::Warning {
            assert!(
                r.emit(Library(b"from the flush".to_vec())),
                "E13: an emit inside the flush must queue (for a later flush)"
            );
        }
    })
    .expect("register ALL");
    let token = env.token("empty-mask");
    let rejected = reg
        .on_kinds(KindSet::empty(), move |_, _| {
            let _ = &token;
        })
        .expect_err("E21: a mask of 0 was accepted");
    assert!(
        matches!(rejected.error(), Error::InvalidArgument { .. }),
        "{}",
        rejected.error()
    );
    assert_eq!(
        env.probe().count("empty-mask"),
        0,
        "E3: refused callback freed"
    );
    drop(rejected);
    let bytes = vec![b'a', 0, b'b', 0xff, 0];
    reg.emit(Warning(bytes.clone()));
    reg.emit(Progress(vec![1, 2, 3, 4]));
    d.pump();
    assert!(log.wait_len(5, TIMEOUT), "S66: {:?}", log.snapshot());
    d.settle();
    let lib = Ev::Library(Library(b"from the flush".to_vec()));
    assert_eq!(
        events_of(&log, "messages"),
        vec![Ev::Warning(Warning(bytes.clone())), lib.clone()],
        "S66/E20: the messages callback (Warning with a NUL byte, then Library)"
    );
    assert_eq!(
        events_of(&log, "all"),
        vec![
            Ev::Warning(Warning(bytes)),
            Ev::Progress(Progress(vec![1, 2, 3, 4])),
            lib.clone()
        ],
        "S66/E21: the all-kinds callback, in order, payloads intact"
    );
    let got = log.snapshot();
    let at = |pred: &dyn Fn(&Got) -> bool| got.iter().find(|g| pred(g)).map(|g| g.iteration);
    let warning = at(&|g| matches!(g.event, Ev::Warning(_))).expect("warning");
    let library = at(&|g| g.event == lib).expect("library");
    assert!(
        library > warning,
        "E13: emitted during a flush, delivered in the same one"
    );
    reg.close().expect("close");
}
