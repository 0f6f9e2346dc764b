//! Checks that change the whole process (its descriptor limit, its id counter, its memory
//! over minutes): each must run in a test binary of its own, with one test, so a third party
//! runs them on their backend exactly as anyloop's own `tests/tests/emfile.rs`,
//! `id_exhaustion.rs` and `soak.rs` do:
//!
//! ```no_run
//! // tests/emfile.rs of a third-party backend crate
//! use std::sync::Arc;
//! # struct MyFactory;
//! # impl anyloop_conformance::LoopFactory for MyFactory {
//! #     fn name(&self) -> String { "my-loop".into() }
//! #     fn create(&self) -> anyloop::Result<Box<dyn anyloop::Runner>> {
//! #         Ok(Box::new(anyloop_conformance::reference::PollLoop::new()?))
//! #     }
//! # }
//!
//! #[test]
//! fn emfile() {
//!     anyloop_conformance::process::emfile_is_a_typed_error_and_running_loops_keep_working_r40_r60(
//!         &[Arc::new(MyFactory)],
//!     );
//! }
//! ```

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, Loop, Registry, Rejected, Schedule, TimerId, WatchId};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::driver::{Driver, TIMEOUT};
use crate::fds::{drain, read_one, Pipe};
use crate::harness::LoopFactory;
use crate::probe::Log;
use crate::runner::Env;

// ---------------------------------------------------------------------------------------
// EMFILE
/// The descriptor table filled: the fillers, and the old limit, restored (the fillers closed
/// first) when this is dropped, also when a check fails on the way.
struct FullTable {
    fillers: Vec<OwnedFd>,
    old: Rlimit,
}

impl Drop for FullTable {
    fn drop(&mut self) {
        self.fillers.clear();
        if let Err(err) = setrlimit(Resource::Nofile, self.old) {
            eprintln!("restoring RLIMIT_NOFILE failed: {err}");
        }
    }
}

/// Lowers the soft descriptor limit to a little above the highest open descriptor and opens
/// `/dev/null` until the kernel says EMFILE.
fn fill_descriptor_table() -> FullTable {
    let old = getrlimit(Resource::Nofile);
    let highest = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(64);
    let low = Rlimit {
        current: Some(highest + 32),
        maximum: old.maximum,
    };
    setrlimit(Resource::Nofile, low).expect("lowering RLIMIT_NOFILE");
    let mut fillers = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => fillers.push(OwnedFd::from(file)),
            Err(err) if err.raw_os_error() == Some(libc::EMFILE) => break,
            Err(err) => panic!("opening /dev/null: {err}"),
        }
    }
    FullTable { fillers, old }
}

/// Makes a loop of `backend` *under EMFILE* with the backend's own factory, on a thread of
/// its own (loops are made on their own thread). For GLib this is the chooser's check: GLib
/// itself aborts the process when a new context cannot get its wake-up fd, so
/// `LoopChoice::Glib` refuses before making one.
fn try_create(backend: &Arc<dyn LoopFactory>) -> anyloop::Result<()> {
    let backend = backend.clone();
    let name = backend.name();
    crate::bounded::join(
        thread::spawn(move || backend.create().map(drop)),
        &format!("{name}: making a loop (R60: a typed error, never a panic or a hang)"),
    )
}

fn assert_emfile(name: &str, result: anyloop::Result<()>) {
    match result {
        Err(Error::Os { ref source, .. }) if source.raw_os_error() == Some(libc::EMFILE) => {
            eprintln!("{name}: under EMFILE: {}", result.unwrap_err());
        }
        Err(other) => panic!("{name}: making a loop under EMFILE gave {other:?}, want Os(EMFILE)"),
        Ok(()) => panic!("{name}: making a loop succeeded with the descriptor table full"),
    }
}

/// EMFILE: the process runs out of file descriptors ([R60](anyloop::contract#r60),
/// [R40](anyloop::contract#r40), [R23](anyloop::contract#r23)). On each backend, while the
/// table is full (the soft `RLIMIT_NOFILE` is lowered to a little above the highest open
/// descriptor and filled with `/dev/null`): making a new loop fails with a typed `Error::Os`
/// carrying EMFILE (no panic, no abort); a loop made before keeps working: its watches fire,
/// timers added from another thread fire (the wake-up needs no new fd), update and remove work,
/// frees run once; once descriptors are free again, new loops can be made. The limit is
/// restored at the end.
///
/// Process-wide: call it from a test binary of its own (with one test), as
/// `tests/tests/emfile.rs` does for anyloop's backends. A backend whose substrate makes a
/// global resource lazily (GLib's default main context) should have it made before.
pub fn emfile_is_a_typed_error_and_running_loops_keep_working_r40_r60(
    backends: &[Arc<dyn LoopFactory>],
) {
    for backend in backends {
        let name = backend.name();
        let env = Env::new(backend.clone());
        let d = env.start_pumped();
        let (pipe, spare) = (Pipe::new(), Pipe::new());
        let calls = Arc::new(Log::new());
        let watch = reading_watch(&env, &d, &pipe, &calls);

        let full = fill_descriptor_table();
        assert_emfile(&name, try_create(backend));
        // The running loop: its watch, a timer added from another thread, a new watch on a
        // descriptor opened before, update and remove.
        pipe.write(1);
        assert!(
            calls.wait_until(TIMEOUT, |c| c.contains(&"watch")),
            "{name}: the watch stopped firing under EMFILE"
        );
        let (lp, c, token) = (d.lp().clone(), calls.clone(), env.token("timer"));
        crate::bounded::join(
            thread::spawn(move || {
                let lp2 = lp.clone();
                lp.add_timer(Schedule::EVERY_ITERATION, move |id| {
                    let _ = &token;
                    c.push("timer");
                    let _ = lp2.remove_timer(id);
                })
                .expect("add timer under EMFILE")
            }),
            &format!("{name}: adding a timer from another thread under EMFILE (R40)"),
        );
        assert!(
            calls.wait_until(TIMEOUT, |c| c.contains(&"timer")),
            "{name}: a timer added from another thread did not fire under EMFILE (R40)"
        );
        let (c, token) = (calls.clone(), env.token("spare"));
        let second = d
            .lp()
            .add_watch(spare.fd(), IoEvents::empty(), move |_, fd, _| {
                let _ = &token;
                read_one(fd);
                c.push("spare");
            })
            .expect("add a watch under EMFILE");
        d.lp()
            .update_watch(second, IoEvents::READABLE)
            .expect("update under EMFILE");
        spare.write(1);
        assert!(
            calls.wait_until(TIMEOUT, |c| c.contains(&"spare")),
            "{name}: a watch added under EMFILE did not fire"
        );
        d.lp().remove_watch(second).expect("remove under EMFILE");
        d.lp().remove_watch(watch).expect("remove under EMFILE");
        assert!(
            env.probe().wait_total(3, TIMEOUT),
            "{name}: frees did not run under EMFILE"
        );

        drop(full);
        try_create(backend)
            .unwrap_or_else(|err| panic!("{name}: no loop after descriptors were freed: {err}"));
        drop(d);
        env.finish();
        eprintln!("{name}: the running loop kept working under EMFILE");
    }
}

// ---------------------------------------------------------------------------------------
// Id exhaustion

/// The one event of [`exhausted_ids_are_a_typed_error_and_the_loop_keeps_working_r01_r02_r60`]'s
/// registry part.
#[derive(Debug)]
pub struct Tick(pub u64);

anyloop::event_set! {
    /// The events of the id-exhaustion check.
    pub enum TestEvent {
        kind: TestKind,
        /// A numbered tick.
        Tick(Tick),
    }
}

struct Setup {
    env: Env,
    d: Driver,
    pipe: Pipe,
    watch: WatchId,
    timer: TimerId,
    calls: Arc<Log<&'static str>>,
    registry: Registry<TestEvent>,
    ticks: Arc<Log<u64>>,
}

/// A READABLE watch on `pipe` that reads one byte per call and logs `"watch"` in `calls`.
fn reading_watch(env: &Env, d: &Driver, pipe: &Pipe, calls: &Arc<Log<&'static str>>) -> WatchId {
    let (c, token) = (calls.clone(), env.token("watch"));
    d.lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |_, fd, _| {
            let _ = &token;
            read_one(fd);
            c.push("watch");
        })
        .expect("add watch")
}

fn setup(env: Env) -> Setup {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let calls = Arc::new(Log::new());
    let watch = reading_watch(&env, &d, &pipe, &calls);
    let (c, token) = (calls.clone(), env.token("timer"));
    let timer = d
        .lp()
        .add_timer(Schedule::Disabled, move |_| {
            let _ = &token;
            c.push("timer");
        })
        .expect("add timer");
    let registry = Registry::with_loop(d.lp().clone()).expect("registry");
    let ticks = Arc::new(Log::new());
    let (t, token) = (ticks.clone(), env.token("listener"));
    registry
        .on(move |tick: &Tick| {
            let _ = &token;
            t.push(tick.0);
        })
        .expect("register");
    Setup {
        env,
        d,
        pipe,
        watch,
        timer,
        calls,
        registry,
        ticks,
    }
}

fn assert_exhausted<C>(
    backend: &str,
    what: &str,
    got: Result<impl std::fmt::Debug, Rejected<C>>,
) -> C {
    match got {
        Err(rejected) if matches!(rejected.error(), Error::Exhausted { .. }) => {
            rejected.into_callback()
        }
        Err(other) => panic!(
            "{backend}: {what} refused with {:?}, want Exhausted",
            other.error()
        ),
        Ok(id) => panic!("{backend}: {what} succeeded with {id:?} after the ids ran out (R1)"),
    }
}

/// `Error::Exhausted` on every backend ([R1](anyloop::contract#r1), [R2](anyloop::contract#r2),
/// [R60](anyloop::contract#r60), [E3](anyloop::contract#e3)): ids are never reused, so past 2^40
/// ids in a process adds fail. The process-wide id counter is moved to its end with the hidden
/// hook `anyloop::__exhaust_ids_leaving` (permanent). On each backend: an add is refused with
/// `Exhausted` and hands its callback back without running its free, nothing panics, and
/// everything registered before keeps working (dispatch, update, remove, frees exactly once);
/// same for the event registry.
///
/// Process-wide and permanent: call it from a test binary of its own (with one test), as
/// `tests/tests/id_exhaustion.rs` does for anyloop's backends.
pub fn exhausted_ids_are_a_typed_error_and_the_loop_keeps_working_r01_r02_r60(
    backends: &[Arc<dyn LoopFactory>],
) {
    // Every loop and registration first: after the exhaustion no id can be had here.
    let setups: Vec<Setup> = backends
        .iter()
        .map(|backend| setup(Env::new(backend.clone())))
        .collect();
    anyloop::__exhaust_ids_leaving(0);
    for s in &setups {
        let name = s.d.name().to_owned();
        // Refused adds, through the backend's own handle (the rejected callback comes back
        // unwrapped): the free is the caller's, and has not run (R2).
        let token = s.env.token("refused watch");
        let got =
            s.d.raw()
                .add_watch(s.pipe.fd(), IoEvents::READABLE, move |_, _, _| {
                    let _ = &token;
                });
        let callback = assert_exhausted(&name, "add_watch", got);
        assert_eq!(
            s.env.probe().count("refused watch"),
            0,
            "{name}: R2: freed by the loop"
        );
        drop(callback);
        let token = s.env.token("refused timer");
        let got = s.d.raw().add_timer(Schedule::EVERY_ITERATION, move |_| {
            let _ = &token;
        });
        let callback = assert_exhausted(&name, "add_timer", got);
        assert_eq!(
            s.env.probe().count("refused timer"),
            0,
            "{name}: R2: freed by the loop"
        );
        drop(callback);
        // What was registered before still works.
        s.pipe.write(1);
        assert!(
            s.calls.wait_until(TIMEOUT, |c| c.contains(&"watch")),
            "{name}: the watch stopped firing"
        );
        s.d.lp()
            .update_timer(s.timer, Schedule::Once(Duration::ZERO))
            .expect("update timer");
        assert!(
            s.calls.wait_until(TIMEOUT, |c| c.contains(&"timer")),
            "{name}: the timer did not fire"
        );
        // The registry: a new registration is refused, the earlier one still gets events.
        let token = s.env.token("refused listener");
        let got = s.registry.on(move |_: &Tick| {
            let _ = &token;
        });
        let callback = assert_exhausted(&name, "Registry::on", got);
        assert_eq!(
            s.env.probe().count("refused listener"),
            0,
            "{name}: E3: freed"
        );
        drop(callback);
        s.registry.emit(Tick(7));
        assert!(
            s.ticks.wait_until(TIMEOUT, |t| t == [7]),
            "{name}: the registry stopped delivering"
        );
        s.registry.close().expect("close the registry");
        s.d.lp().remove_timer(s.timer).expect("remove timer");
        s.d.lp().remove_watch(s.watch).expect("remove watch");
        assert!(
            s.env.probe().wait_total(6, TIMEOUT),
            "{name}: frees did not run: {:?}",
            s.env.probe().records()
        );
        eprintln!("{name}: Exhausted for add_watch, add_timer and Registry::on; all still works");
    }
    for s in setups {
        let Setup { env, d, .. } = s;
        drop(d);
        env.finish();
    }
}

// ---------------------------------------------------------------------------------------
// Soak

/// Resident set size of this process in KiB (the `VmRSS` line of /proc/self/status: the
/// same figure as /proc/self/statm's second field, already in KiB).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Counts adds and frees: a free is the drop of this, moved into every callback.
struct Counted(Arc<AtomicU64>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// One worker: cycles of add watch / add `Once(ZERO)` timer / update / remove on `lp`, with a
/// bounded live set, plus writes that make the watches fire.
fn churn(
    looping: crate::driver::DriverChecks,
    lp: Loop,
    pipe: Arc<Pipe>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    adds: Arc<AtomicU64>,
    frees: Arc<AtomicU64>,
) {
    let mut live = Vec::new();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let counted = Counted(frees.clone());
        let watch = lp
            .add_watch(pipe.fd(), IoEvents::READABLE, move |_, fd, _| {
                let _ = &counted;
                drain(fd);
            })
            .expect("add_watch");
        let counted = Counted(frees.clone());
        let timer = lp
            .add_timer(Schedule::Once(Duration::ZERO), move |_| {
                let _ = &counted;
            })
            .expect("add_timer");
        adds.fetch_add(2, Ordering::Relaxed);
        if n.is_multiple_of(4) {
            pipe.write(1);
        }
        let _ = lp.update_watch(watch, IoEvents::READABLE | IoEvents::WRITABLE);
        live.push((watch, timer));
        if live.len() > 32 {
            let (w, t) = live.remove(0);
            lp.remove_watch(w).expect("remove_watch");
            lp.remove_timer(t).expect("remove_timer");
        }
        ops.fetch_add(6, Ordering::Relaxed);
        if n.is_multiple_of(64) {
            // Back-pressure: wait for an iteration of the loop, which also runs the frees of
            // everything removed before it (R25). Without it a fast worker outruns a busy
            // loop and RSS measures the backlog of pending frees, not leaks.
            let (tx, rx) = std::sync::mpsc::channel();
            let lp2 = lp.clone();
            lp.add_timer(Schedule::EVERY_ITERATION, move |id| {
                let _ = lp2.remove_timer(id);
                let _ = tx.send(());
            })
            .expect("add ping");
            rx.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
                panic!(
                    "R40: the loop did not run a timer added from another thread within \
                     {TIMEOUT:?} ({:?}); {}",
                    lp.stats(),
                    looping.describe()
                )
            });
            ops.fetch_add(2, Ordering::Relaxed);
        }
    }
    for (w, t) in live {
        lp.remove_watch(w).expect("remove_watch");
        lp.remove_timer(t).expect("remove_timer");
    }
}

/// Soak: registrations churned on every backend at once for `duration` (two worker threads per
/// loop: add a watch and a `Once(ZERO)` timer, update, remove, with a bounded live set and
/// writes that make the watches fire), the process's resident memory sampled 20 times; it must
/// stay flat (no leak per operation), every add must be freed once, and nothing may be left
/// registered. Prints one line per sample.
///
/// Minutes long, and it measures the whole process: call it from a test binary of its own,
/// ignored by default, as `tests/tests/soak.rs` does for anyloop's backends.
pub fn soak_churn_memory_stays_flat(backends: &[Arc<dyn LoopFactory>], duration: Duration) {
    let secs = duration.as_secs();
    // The workers stop first and are joined while the loops still run: a worker waiting for its
    // loop to answer (its back-pressure timer) must get the answer.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_loops = Arc::new(AtomicBool::new(false));
    let (ops, adds, frees) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut drivers = Vec::new();
    let mut workers = Vec::new();
    let mut loop_jobs = Vec::new();
    for backend in backends {
        let d = Driver::start(backend);
        // The loop blocks until woken: the churn's own wake-ups drive it.
        let s = stop_loops.clone();
        loop_jobs.push(d.spawn(move |ctx| {
            while !s.load(Ordering::Relaxed) {
                ctx.run_once(Some(Duration::from_millis(50)))
                    .expect("run_once");
            }
        }));
        for _ in 0..2 {
            let (lp, pipe) = (d.lp().clone(), Arc::new(Pipe::new()));
            let (s, o, a, f) = (stop.clone(), ops.clone(), adds.clone(), frees.clone());
            let looping = d.checks();
            workers.push(thread::spawn(move || churn(looping, lp, pipe, s, o, a, f)));
        }
        drivers.push(d);
    }
    let start = Instant::now();
    let samples = 20u32;
    let mut rss = Vec::new();
    println!("soak: {} backends, {secs} s", drivers.len());
    for _ in 0..samples {
        thread::sleep(duration / samples);
        let kib = rss_kib();
        rss.push(kib);
        println!(
            "soak: t={:>6.1}s ops={:>11} live={:>6} rss={kib} KiB",
            start.elapsed().as_secs_f64(),
            ops.load(Ordering::Relaxed),
            adds.load(Ordering::Relaxed) - frees.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        // A worker's own waits are bounded (its loop's answer, TIMEOUT).
        crate::bounded::join(w, "a soak worker (R40: its loop answers)");
    }
    stop_loops.store(true, Ordering::Relaxed);
    for job in loop_jobs {
        job.wait_for(TIMEOUT).expect("loop job did not end");
    }
    for d in &drivers {
        d.on_loop(|ctx| ctx.turns(2));
        let stats = d.stats();
        assert_eq!(
            (stats.watches, stats.timers, stats.pending_frees),
            (0, 0, 0),
            "{}: {stats:?}",
            d.name()
        );
    }
    drop(drivers);
    assert_eq!(
        adds.load(Ordering::Relaxed),
        frees.load(Ordering::Relaxed),
        "every add freed once"
    );
    // Flat: after the first quarter (allocator and caches warmed up), RSS may wobble but
    // not grow with the operation count.
    let warm = rss[rss.len() / 4];
    let last = *rss.last().expect("samples");
    println!(
        "soak: {} ops in {:?}; rss after warm-up {warm} KiB, at the end {last} KiB",
        ops.load(Ordering::Relaxed),
        start.elapsed()
    );
    assert!(
        last <= warm + warm / 5 + 2048,
        "resident memory grew from {warm} KiB to {last} KiB: a leak per operation?"
    );
}
