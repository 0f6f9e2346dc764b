//! `Error::Exhausted` on every backend. Ids are never reused ([R1](anyloop::contract#r1)): past
//! 2^40 ids in a process, adds fail. That limit is out of reach in a test, so this binary moves the
//! process-wide id counter to its end with the hidden hook `anyloop::__exhaust_ids_leaving`
//! (process-wide and permanent, hence a test binary of its own with a single test).
//!
//! Checked on each backend: an add is refused with `Exhausted`, hands its callback back without
//! running its free ([R2](anyloop::contract#r2)), nothing panics ([R60](anyloop::contract#r60)),
//! and everything registered before keeps working: dispatch, update, remove, frees exactly once
//! ([R23](anyloop::contract#r23)). Same for the event registry: a registration is refused with
//! `Exhausted` and its callback handed back ([E3](anyloop::contract#e3)), and the callbacks
//! registered before still get the events.

mod support;

use std::sync::Arc;
use std::time::Duration;

use anyloop::{Error, IoEvents, Registry, Rejected, Schedule, TimerId, WatchId};
use anyloop_conformance::fds::{read_one, Pipe};
use anyloop_conformance::probe::Log;
use anyloop_conformance::{Driver, Env, TIMEOUT};

/// A one-kind event set for the registry part.
#[derive(Debug)]
pub struct Tick(pub u64);

anyloop::event_set! {
    /// The events of this test.
    pub enum TestEvent {
        kind: TestKind,
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

fn setup(env: Env) -> Setup {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let calls = Arc::new(Log::new());
    let (c, token) = (calls.clone(), env.token("watch"));
    let watch = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |_, fd, _| {
            let _ = &token;
            read_one(fd);
            c.push("watch");
        })
        .expect("add watch");
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

#[test]
fn exhausted_ids_are_a_typed_error_and_the_loop_keeps_working_r01_r02_r60() {
    // Every loop and registration first: after the exhaustion no id can be had here.
    let setups: Vec<Setup> = support::backends()
        .into_iter()
        .map(|backend| setup(Env::new(backend)))
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
