//! S59–S66 and E1–E30: the typed event registry ([`anyloop::Registry`]) on the backend under
//! test. The registry uses only the vtable, so every backend must carry it unchanged.
//!
//! The scenarios use a small libvirt/libguestfs-like event set: `Lifecycle` and `Reboot` about
//! an object (kinds K and L of S59), `Library`/`Warning` messages with bytes, `Progress` with a
//! `u64` array, and `Close`.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use anyloop::{
    CallbackId, Error, Event, EventKind, EventSet, KindSet, Loop, RegistrationId, Registry,
};

use crate::driver::{Driver, TIMEOUT};
use crate::probe::{lock, Log};
use crate::runner::Env;

// ---- The test library's events ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lifecycle,
    Reboot,
    Library,
    Warning,
    Progress,
    Close,
}

impl EventKind for Kind {
    const ALL: &'static [Kind] = &[
        Kind::Lifecycle,
        Kind::Reboot,
        Kind::Library,
        Kind::Warning,
        Kind::Progress,
        Kind::Close,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// A stable object identity (libvirt's UUID), compared by value (E29).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Obj(u64);

#[derive(Debug, Clone, PartialEq)]
struct Lifecycle {
    obj: Obj,
    n: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct Reboot {
    obj: Obj,
    n: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct Library(Vec<u8>);

#[derive(Debug, Clone, PartialEq)]
struct Warning(Vec<u8>);

#[derive(Debug, Clone, PartialEq)]
struct Progress(Vec<u64>);

#[derive(Debug, Clone, PartialEq)]
struct Close;

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Lifecycle(Lifecycle),
    Reboot(Reboot),
    Library(Library),
    Warning(Warning),
    Progress(Progress),
    Close(Close),
}

impl EventSet for Ev {
    type Kind = Kind;
    type Key = Obj;
    fn kind(&self) -> Kind {
        match self {
            Ev::Lifecycle(_) => Kind::Lifecycle,
            Ev::Reboot(_) => Kind::Reboot,
            Ev::Library(_) => Kind::Library,
            Ev::Warning(_) => Kind::Warning,
            Ev::Progress(_) => Kind::Progress,
            Ev::Close(_) => Kind::Close,
        }
    }
    fn key(&self) -> Option<&Obj> {
        match self {
            Ev::Lifecycle(e) => Some(&e.obj),
            Ev::Reboot(e) => Some(&e.obj),
            _ => None,
        }
    }
}

macro_rules! payloads {
    ($($ty:ident),*) => {$(
        impl Event<Ev> for $ty {
            const KIND: Kind = Kind::$ty;
            fn view(event: &Ev) -> Option<&$ty> {
                match event {
                    Ev::$ty(e) => Some(e),
                    _ => None,
                }
            }
        }
        impl From<$ty> for Ev {
            fn from(e: $ty) -> Ev {
                Ev::$ty(e)
            }
        }
    )*};
}
payloads!(Lifecycle, Reboot, Library, Warning, Progress, Close);

fn k(obj: u64, n: u64) -> Lifecycle {
    Lifecycle { obj: Obj(obj), n }
}

fn l(obj: u64, n: u64) -> Reboot {
    Reboot { obj: Obj(obj), n }
}

// ---- Helpers ----

/// A registry on the driver's (interposed) loop.
fn registry(d: &Driver) -> Registry<Ev> {
    Registry::with_loop(d.lp().clone()).expect("registry")
}

/// A few non-blocking iterations on the loop thread: queued events are flushed, pending
/// frees run.
fn flush(d: &Driver) {
    d.on_loop(|ctx| {
        ctx.turns(3);
    });
}

thread_local! {
    /// Set around registry calls made by the scenarios (emit, deregister), to catch a
    /// callback or free that runs synchronously inside them (E6, E11).
    static IN_REGISTRY_CALL: Cell<bool> = const { Cell::new(false) };
}

fn inside<R>(f: impl FnOnce() -> R) -> R {
    IN_REGISTRY_CALL.with(|c| c.set(true));
    let result = f();
    IN_REGISTRY_CALL.with(|c| c.set(false));
    result
}

fn in_registry_call() -> bool {
    IN_REGISTRY_CALL.with(Cell::get)
}

/// What a free observed when it ran.
#[derive(Debug, Clone)]
struct FreeSeen {
    label: &'static str,
    thread: ThreadId,
    /// The free ran inside a scenario's emit/deregister/close call.
    inside_call: bool,
    /// The callback it belongs to was running.
    callback_running: bool,
}

/// Moved into a callback: its drop (the free) records what it saw.
struct FreeSpy {
    label: &'static str,
    running: Arc<AtomicBool>,
    log: Arc<Log<FreeSeen>>,
}

impl Drop for FreeSpy {
    fn drop(&mut self) {
        self.log.push(FreeSeen {
            label: self.label,
            thread: thread::current().id(),
            inside_call: in_registry_call(),
            callback_running: self.running.load(Ordering::SeqCst),
        });
    }
}

/// One delivery: which callback, what event, on which thread, at which kit iteration.
#[derive(Debug, Clone)]
struct Got {
    who: &'static str,
    event: Ev,
    thread: ThreadId,
    iteration: u64,
}

/// A logging kind-set callback for `who`.
fn logger(
    d: &Driver,
    log: &Arc<Log<Got>>,
    who: &'static str,
) -> impl FnMut(Kind, &Ev) + Send + 'static {
    let (log, iterations) = (log.clone(), d.iteration_counter());
    move |kind, event| {
        assert_eq!(kind, event.kind(), "E21: the kind delivered is the event's");
        assert!(
            !in_registry_call(),
            "E6: a callback ran inside a registry call"
        );
        log.push(Got {
            who,
            event: event.clone(),
            thread: thread::current().id(),
            iteration: iterations.load(Ordering::SeqCst),
        });
    }
}

fn events_of(log: &Log<Got>, who: &str) -> Vec<Ev> {
    log.snapshot()
        .into_iter()
        .filter(|g| g.who == who)
        .map(|g| g.event)
        .collect()
}

fn all_on_thread(log: &Log<Got>, thread: ThreadId) -> bool {
    log.snapshot().iter().all(|g| g.thread == thread)
}

// ---- Contract scenarios S59–S66 ----

/// S59: X for kind K on object 1, Y for K on any object, Z for kind L. Emit K(1), K(2),
/// L(1). → X gets K(1); Y gets K(1) and K(2) in order; Z gets L(1); nothing is delivered
/// inside `emit`; delivery on the loop thread (E6, E8, E24, E29).
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
        assert!(reg.emit(k(1, 1)));
        assert!(reg.emit(k(2, 2)));
        assert!(reg.emit(l(1, 3)));
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
    assert_eq!(events_of(&log, "X"), vec![Ev::Lifecycle(k(1, 1))]);
    assert_eq!(
        events_of(&log, "Y"),
        vec![Ev::Lifecycle(k(1, 1)), Ev::Lifecycle(k(2, 2))]
    );
    assert_eq!(events_of(&log, "Z"), vec![Ev::Reboot(l(1, 3))]);
    assert!(
        all_on_thread(&log, d.loop_thread()),
        "E24: not on the loop thread"
    );
    assert_eq!(reg.queued(), 0);
    reg.close().expect("close");
}

/// S60: three events queued; A deregisters itself on the first. → A sees exactly one; B
/// (registered after A) sees all three; A's free runs after the flush, on the loop thread,
/// not inside deregister (E10, E11).
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
    assert_eq!(seen[0].label, "A");
    assert!(
        matches!(reg.deregister(id), Err(Error::NotFound { .. })),
        "E12: double deregister"
    );
    reg.close().expect("close");
}

/// S64: a registry with 3 callbacks and 2 queued events is closed (from a foreign thread).
/// → No event delivered, three frees exactly once on the loop thread, the flush timer
/// removed (no timer left on the loop, which is idle) (E14, E16).
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
    thread::spawn(move || closer.close().expect("close"))
        .join()
        .expect("closing thread");
    assert!(reg.is_closed());
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
        stats.timeouts, 0,
        "E16: the flush timer is still there: {stats:?}"
    );
    assert!(stats.is_idle(), "S64: frees still pending: {stats:?}");
    assert!(!reg.emit(k(1, 2)), "E16: emit after close queued");
}

/// S65: unknown and double deregister → NotFound naming the id; ids of a closed registry →
/// NotFound; ids positive and never reused across 10 000 register/deregister cycles (E2, E12).
pub fn s65_unknown_double_deregister_ids_never_reused_e02_e12(env: &Env) {
    let d = env.start_pumped();
    let reg = registry(&d);
    let unknown = CallbackId::allocate();
    match reg.deregister(unknown) {
        Err(Error::NotFound { id }) => assert_eq!(id, RegistrationId::Callback(unknown)),
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
    assert!(matches!(
        other.deregister(live),
        Err(Error::NotFound { .. })
    ));
    other.close().expect("close");
    d.settle();
}

/// S66: one callback for {LIBRARY, WARNING}, one for ALL; emit a WARNING with 5 bytes holding
/// a NUL and a PROGRESS [1,2,3,4]. → The first gets only the WARNING, bytes identical; the
/// second both, the array intact; a mask of 0 is refused (callback handed back, not freed);
/// an event emitted by a callback during the flush is delivered in a later flush (E13, E20,
/// E21, E3).
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
            assert!(r.emit(Library(b"from the flush".to_vec())));
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
        matches!(rejected.error, Error::InvalidArgument { .. }),
        "{}",
        rejected.error
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
        vec![Ev::Warning(Warning(bytes.clone())), lib.clone()]
    );
    assert_eq!(
        events_of(&log, "all"),
        vec![
            Ev::Warning(Warning(bytes)),
            Ev::Progress(Progress(vec![1, 2, 3, 4])),
            lib.clone()
        ]
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

// ---- Rules E1–E30 ----

/// E1/E3: refused registrations hand the callback back untouched and never free it: on a
/// closed registry (Closed), on a destroyed loop (LoopGone), for an object the library's
/// check refuses (InvalidArgument); a registry without any loop is NoLoop.
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
    assert!(matches!(rejected.error, Error::InvalidArgument { .. }));
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
        matches!(rejected.error, Error::Closed),
        "{}",
        rejected.error
    );
    let mut callback = rejected.callback;
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
    assert_eq!(lived.queued(), 0);
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
        matches!(rejected.error, Error::LoopGone),
        "{}",
        rejected.error
    );
    assert_eq!(env.probe().count("on-dead-loop"), 0, "E3");
    drop(rejected);
    drop(lp);
    gone.close().expect("close");
    let unbound = thread::spawn(|| Registry::<Ev>::new().map(|r| r.close()))
        .join()
        .expect("thread");
    if anyloop::default_loop().is_none() {
        assert!(matches!(unbound, Err(Error::NoLoop)), "R7: {unbound:?}");
    }
}

/// E4: the keyed form refuses a second live registration with the same key, kind and object
/// filter (AlreadyRegistered) and accepts it again after deregister; plain closures are never
/// duplicates.
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
        matches!(dup.error, Error::AlreadyRegistered { .. }),
        "{}",
        dup.error
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

/// E5/E27: with no callback, emit drops the event at once and arms nothing (no timer on the
/// loop, the loop stays asleep); an event emitted before a registration is not delivered to
/// it (E5, E9).
pub fn e05_no_callbacks_emit_drops_arms_nothing_e27(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    assert!(!reg.emit(k(1, 1)), "E5: queued with no callback");
    assert_eq!(reg.queued(), 0);
    assert_eq!(
        d.stats().timeouts,
        0,
        "E27: a timer exists with no callback"
    );
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
        vec![Ev::Lifecycle(k(1, 2)), Ev::Lifecycle(k(1, 3))]
    );
    assert_eq!(
        events_of(&log, "late"),
        vec![Ev::Lifecycle(k(1, 3))],
        "E5/E9: registered after the emit, still got it"
    );
    reg.close().expect("close");
}

/// E6: emit from the loop thread (a job, a callback) or a foreign thread never calls a
/// callback synchronously; a foreign emit wakes a loop blocked with no deadline.
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
    let blocked = d.spawn(|ctx| {
        let mut ran = 0;
        while ran == 0 {
            ran = ctx.run_once(None).expect("run_once");
        }
    });
    blocked.wait();
    assert!(log.wait_len(1, TIMEOUT));
    let blocked = d.spawn(|ctx| ctx.run_once(None).expect("run_once"));
    assert!(
        blocked.wait() > 0,
        "the event emitted in the flush is flushed next"
    );
    assert!(log.wait_len(2, TIMEOUT));
    let blocked = d.spawn(|ctx| ctx.run_once(None).expect("run_once"));
    thread::sleep(Duration::from_millis(30));
    let r = reg.clone();
    thread::spawn(move || inside(|| r.emit(l(2, 3))))
        .join()
        .expect("emitter");
    assert!(
        blocked.wait_for(TIMEOUT).is_some(),
        "E6: a foreign emit did not wake the loop"
    );
    flush(&d);
    assert_eq!(log.len(), 3);
    assert!(all_on_thread(&log, d.loop_thread()), "E24");
    reg.close().expect("close");
}

/// E7/E22: events arrive in emit order, each to every callback of its kind in registration
/// order; per-thread emit order holds with two emitting threads.
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
        e.join().expect("emitter");
    }
    assert!(
        order.wait_len(2 * 200 * 5, TIMEOUT),
        "E22: deliveries missing"
    );
    let got = order.snapshot();
    for chunk in got.chunks(5) {
        let whos: Vec<usize> = chunk.iter().map(|(_, _, w)| *w).collect();
        assert_eq!(whos, vec![0, 1, 2, 3, 4], "E7: registration order");
        assert!(chunk
            .iter()
            .all(|(o, n, _)| (*o, *n) == (chunk[0].0, chunk[0].1)));
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

/// E8: a predicate filters events, runs on the loop thread with no registry lock held (it
/// may call the registry), and object filters and predicates combine.
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

/// E9: a callback registered during a flush (by a callback) never sees the in-flight events
/// of that flush, only events emitted after its register returned.
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

/// E10: deregister during a flush stops delivery at once: a callback deregistering a later
/// one (for the current event too), and a foreign thread deregistering one while another
/// callback of the same flush runs (the call returns without waiting).
pub fn e10_deregister_during_flush_stops_delivery_at_once(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let log = Arc::new(Log::new());
    let victim = Arc::new(Mutex::new(None::<CallbackId>));
    let gate = Arc::new(Barrier::new(2));
    let released = Arc::new(Barrier::new(2));
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
            // Let the test thread deregister C while this callback runs.
            g.wait();
            rel.wait();
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
    let pending = d.spawn(|ctx| ctx.turns(3));
    gate.wait();
    let r = reg.clone();
    let left = thread::spawn(move || r.deregister(c_id))
        .join()
        .expect("deregistering thread")
        .expect("deregister C while A runs");
    assert_eq!(left, 1, "E28: only A remains");
    released.wait();
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
    assert_eq!(env.probe().count("B"), 1);
    assert_eq!(env.probe().count("C"), 1);
    reg.close().expect("close");
}

/// E11: the free never runs inside deregister nor while the callback runs: a foreign
/// deregister of a running callback returns at once, the free waits for the return; a
/// deregister with the loop idle frees on the loop thread at its next iteration.
pub fn e11_free_never_inside_deregister_nor_while_running(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    let frees = Arc::new(Log::new());
    let running = Arc::new(AtomicBool::new(false));
    let (entered, leave) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
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
            en.wait();
            lv.wait();
            thread::sleep(Duration::from_millis(20));
            run.store(false, Ordering::SeqCst);
        })
        .expect("register");
    reg.emit(k(1, 1));
    reg.emit(k(1, 2));
    let pending = d.spawn(|ctx| ctx.turns(2));
    entered.wait();
    let r = reg.clone();
    let left = thread::spawn(move || inside(|| r.deregister(id)))
        .join()
        .expect("deregistering thread")
        .expect("deregister a running callback");
    assert_eq!(left, 0);
    assert!(
        frees.is_empty(),
        "E11: freed while running / inside deregister"
    );
    leave.wait();
    pending.wait();
    flush(&d);
    let seen = frees.snapshot();
    assert_eq!(seen.len(), 1, "E11: {seen:?}");
    assert!(
        !seen[0].callback_running && !seen[0].inside_call,
        "E11: {seen:?}"
    );
    assert_eq!(seen[0].thread, d.loop_thread());

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

/// E13: a callback that emits on every event cannot livelock the loop: each flush delivers
/// only the events queued before it started, and every iteration returns.
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

/// E14: the last deregister discards the queued events and removes the flush timer; a later
/// registration starts clean.
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
    assert_eq!(reg.queued(), 3);
    assert_eq!(reg.deregister(id).expect("deregister"), 0, "E28");
    assert_eq!(reg.queued(), 0, "E14: queue kept after the last deregister");
    flush(&d);
    assert_eq!(d.stats().timeouts, 0, "E14: flush timer kept");
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

/// E15/E28: the library sees per-kind 0→1 and 1→0 transitions, in order, including from a
/// kind-set registration and at close; deregister returns the callbacks left for the kind.
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
    assert_eq!(transitions.snapshot(), vec![(Kind::Lifecycle, true)]);
    assert_eq!(reg.count(Kind::Lifecycle), 2);
    assert_eq!(reg.deregister(a).expect("a"), 1, "E28");
    assert_eq!(reg.deregister(b).expect("b"), 0, "E28");
    assert_eq!(
        transitions.take(),
        vec![(Kind::Lifecycle, true), (Kind::Lifecycle, false)]
    );
    let mask = reg
        .on_kinds(KindSet::from(Kind::Warning) | Kind::Library, |_, _| {})
        .expect("mask");
    assert_eq!(
        transitions.take(),
        vec![(Kind::Library, true), (Kind::Warning, true)]
    );
    reg.on(|_: &Warning| {}).expect("warning");
    assert_eq!(
        reg.deregister(mask).expect("mask"),
        1,
        "E28: one left for a kind of the set"
    );
    assert_eq!(transitions.take(), vec![(Kind::Library, false)]);
    reg.close().expect("close");
    assert_eq!(
        transitions.take(),
        vec![(Kind::Warning, false)],
        "E15: at close"
    );
    flush(&d);
}

/// E16/E17: close delivers the closing event synchronously on the closing thread to the
/// callbacks registered for it, nothing is delivered after it, every callback is freed once
/// on the loop thread; close from inside a callback on the loop thread works too.
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
    assert_eq!(events_of(&log, "closing"), vec![Ev::Close(Close)]);
    assert!(reg.is_closed());
    assert_eq!(env.probe().count("closer"), 1, "E16: freed once");
}

/// E18: the flush timer keeps the registry state alive: the last handle dropped inside a
/// callback, mid-flush, closes the registry without crashing the flush; the other callbacks
/// of that flush are not called, every callback is freed once and no timer is left.
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
    assert_eq!(env.probe().count("dropper"), 1);
    assert_eq!(env.probe().count("after"), 1);
    let stats = d.stats();
    assert_eq!(stats.timeouts, 0, "E16: timer left: {stats:?}");
}

/// E20: byte payloads (empty, every byte value, NULs) and u64 arrays (0, MAX) arrive
/// bit-exact, from a foreign thread.
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
    thread::spawn(move || {
        for ev in s {
            r.emit(ev);
        }
    })
    .join()
    .expect("emitter");
    flush(&d);
    assert_eq!(got.snapshot(), sent, "E20: payloads altered");
    reg.close().expect("close");
}

/// E23: panics in a callback and in a predicate do not stop the flush; the loop reports
/// CallbackPanicked naming the event callback and stays usable; the callbacks stay
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
    assert_eq!(reg.callbacks(), 3);
    reg.close().expect("close");
    flush(&d);
}

/// E24/E25: two loops on two threads, each with its own registry (created on its thread
/// without naming a loop) and its own objects; four foreign threads emit for both. Each
/// callback receives only its own objects' events, on its own loop's thread. Callbacks
/// register, deregister and emit on their registry re-entrantly.
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
        e.join().expect("emitter");
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

/// E26: counts of live callbacks, per-kind callbacks and queued events.
pub fn e26_counts_of_callbacks_and_queued_events(env: &Env) {
    let d = env.start();
    let reg = registry(&d);
    assert_eq!((reg.callbacks(), reg.queued()), (0, 0));
    let a = reg.on(|_: &Lifecycle| {}).expect("a");
    reg.on_kinds(KindSet::all(), |_, _| {}).expect("all");
    assert_eq!(reg.callbacks(), 2);
    assert_eq!((reg.count(Kind::Lifecycle), reg.count(Kind::Close)), (2, 1));
    for n in 0..5 {
        reg.emit(k(1, n));
    }
    assert_eq!(reg.queued(), 5);
    flush(&d);
    assert_eq!(reg.queued(), 0, "E26: flushed events still counted");
    reg.deregister(a).expect("deregister");
    assert_eq!((reg.callbacks(), reg.count(Kind::Lifecycle)), (1, 1));
    reg.close().expect("close");
    assert_eq!(reg.callbacks(), 0);
    flush(&d);
}

/// E30: the fallback sink runs only for events no callback took (no callback, or all
/// filtered out), on the loop thread.
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
    assert!(fallen
        .snapshot()
        .iter()
        .all(|(_, _, t)| *t == d.loop_thread()));
    reg.close().expect("close");
    flush(&d);
    assert_eq!(
        env.probe().count("fallback"),
        1,
        "the sink is freed at close"
    );
}

/// E6/E27: the arming protocol under races: four threads emit bursts while the loop flushes;
/// no event is stranded (all delivered, the last ones without any later emit), and once the
/// queue is empty the flush timer is disarmed: the loop goes quiet, no spinning.
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
        e.join().expect("emitter");
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
    assert_eq!(reg.queued(), 0);
    d.stop_pump();
    d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(200)))
        .assert_quiet("E27: the flush timer stays armed with an empty queue");
    reg.close().expect("close");
    flush(&d);
}

/// E16/E25: callbacks holding a weak handle do not keep the registry open: dropping the last
/// strong handle closes it (callbacks freed once on the loop thread, timer removed), and a
/// weak handle used from a callback works while it is open.
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
    assert_eq!(env.probe().count("weak-holder"), 1);
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
    assert_eq!(d.stats().timeouts, 0, "E16: flush timer left");
}
