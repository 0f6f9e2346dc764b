//! [S1–S12](anyloop::contract#s1): libvirt's own event-loop test, replayed case by case.
//!
//! Setup as in libvirt's test: 31 non-blocking pipes, every read end watched READABLE, and 31
//! timers added disabled. Every handle callback records its id, fd and events and reads one
//! byte; every timer callback records its id. After each case the scenario checks that exactly
//! the expected registrations fired, with their own id, fd and READABLE, and nothing else.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyloop::{Error, IoEvents, Schedule, TimerId, WatchId};

use crate::driver::{Driver, TIMEOUT};
use crate::fds::{read_one, Pipe};
use crate::probe::{lock, Log};
use crate::runner::Env;

const N: usize = 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Who {
    Handle(usize),
    Timer(usize),
    Extra(usize),
}

#[derive(Debug, Clone)]
struct Hit {
    who: Who,
    handle: Option<WatchId>,
    timer: Option<TimerId>,
    fd: i32,
    events: IoEvents,
}

type Hook = Box<dyn FnMut() + Send>;

struct Eventtest {
    d: Driver,
    pipes: Vec<Pipe>,
    watches: Vec<WatchId>,
    timers: Vec<TimerId>,
    hits: Arc<Log<Hit>>,
    hooks: Arc<Mutex<HashMap<Who, Hook>>>,
}

fn run_hook(hooks: &Mutex<HashMap<Who, Hook>>, who: Who) {
    let hook = lock(hooks).remove(&who);
    if let Some(mut hook) = hook {
        hook();
        lock(hooks).entry(who).or_insert(hook);
    }
}

impl Eventtest {
    fn setup(env: &Env) -> Eventtest {
        let d = env.start_pumped();
        let hits: Arc<Log<Hit>> = Arc::new(Log::new());
        let hooks: Arc<Mutex<HashMap<Who, Hook>>> = Arc::default();
        let pipes: Vec<Pipe> = (0..N).map(|_| Pipe::new()).collect();
        let mut watches = Vec::new();
        for (i, pipe) in pipes.iter().enumerate() {
            let (hits, hooks, token) = (hits.clone(), hooks.clone(), env.token(format!("h{i}")));
            let id = d
                .lp()
                .add_watch(pipe.fd(), IoEvents::READABLE, move |id, fd, events| {
                    let _ = &token;
                    hits.push(Hit {
                        who: Who::Handle(i),
                        handle: Some(id),
                        timer: None,
                        fd,
                        events,
                    });
                    read_one(fd);
                    run_hook(&hooks, Who::Handle(i));
                })
                .expect("add_watch");
            watches.push(id);
        }
        let mut timers = Vec::new();
        for i in 0..N {
            let (hits, hooks, token) = (hits.clone(), hooks.clone(), env.token(format!("t{i}")));
            let id = d
                .lp()
                .add_timer(Schedule::Disabled, move |id| {
                    let _ = &token;
                    hits.push(Hit {
                        who: Who::Timer(i),
                        handle: None,
                        timer: Some(id),
                        fd: -1,
                        events: IoEvents::empty(),
                    });
                    run_hook(&hooks, Who::Timer(i));
                })
                .expect("add_timer");
            timers.push(id);
        }
        Eventtest {
            d,
            pipes,
            watches,
            timers,
            hits,
            hooks,
        }
    }

    fn hook(&self, who: Who, hook: impl FnMut() + Send + 'static) {
        lock(&self.hooks).insert(who, Box::new(hook));
    }

    /// Waits until each of `expected` fired at least once.
    fn wait_fired(&self, expected: &[Who]) {
        let ok = self.hits.wait_until(TIMEOUT, |hits| {
            expected.iter().all(|w| hits.iter().any(|h| h.who == *w))
        });
        assert!(
            ok,
            "expected {expected:?} to fire; fired: {:?}",
            self.fired()
        );
    }

    fn fired(&self) -> BTreeSet<Who> {
        self.hits.snapshot().iter().map(|h| h.who).collect()
    }

    /// After a settle: exactly `expected` fired (watches exactly once), with the right
    /// arguments ([R13](anyloop::contract#r13)); then forgets the hits.
    fn check_only(&self, expected: &[Who]) {
        self.d.settle();
        let hits = self.hits.take();
        let fired: BTreeSet<Who> = hits.iter().map(|h| h.who).collect();
        let want: BTreeSet<Who> = expected.iter().copied().collect();
        assert_eq!(fired, want, "wrong set of registrations fired: {hits:?}");
        for hit in &hits {
            match hit.who {
                Who::Handle(i) => {
                    assert_eq!(hit.handle, Some(self.watches[i]), "R13: own id");
                    assert_eq!(hit.fd, self.pipes[i].fd(), "R13: own fd");
                    assert_eq!(hit.events, IoEvents::READABLE, "R9/R13: events");
                    let n = hits.iter().filter(|h| h.who == hit.who).count();
                    assert_eq!(n, 1, "watch {i} fired {n} times for one byte");
                }
                Who::Timer(i) => assert_eq!(hit.timer, Some(self.timers[i]), "own timer id"),
                Who::Extra(_) => {}
            }
        }
    }

    /// Stops the pump and absorbs any wake-up the setup left behind: an op from this thread that
    /// landed while the pump's last iteration was inside `run_once` woke it, and if that iteration
    /// had already polled, the wake-up stays pending and would end the next `run_once(None)` at
    /// once (allowed by [R46](anyloop::contract#r46), but not what
    /// [S3](anyloop::contract#s3)/[S8](anyloop::contract#s8) are about). Every setup op has
    /// returned, so its wake-up is written; one non-blocking iteration consumes it.
    fn stop_pump_quietly(&self) {
        self.d.stop_pump();
        self.d.on_loop(|ctx| ctx.turns(1));
    }

    fn assert_blocked(&self, pending: &crate::driver::Pending<anyloop::Result<usize>>) {
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !pending.is_done(),
            "run_once(None) returned with nothing ready and nothing changed (R46)"
        );
    }
}

/// [S1](anyloop::contract#s1): one byte on pipe 1 fires exactly watch 1, with its id, fd and
/// READABLE.
pub fn s01_simple_write_r13(env: &Env) {
    let t = Eventtest::setup(env);
    t.pipes[1].write(1);
    t.wait_fired(&[Who::Handle(1)]);
    t.check_only(&[Who::Handle(1)]);
}

/// [S2](anyloop::contract#s2): a watch removed before the poll never fires, even with data on its
/// pipe.
pub fn s02_deleted_before_poll_r15(env: &Env) {
    let t = Eventtest::setup(env);
    t.d.lp().remove_watch(t.watches[0]).expect("remove watch 0");
    t.pipes[0].write(1);
    t.pipes[1].write(1);
    t.wait_fired(&[Who::Handle(1)]);
    t.check_only(&[Who::Handle(1)]);
}

/// [S3](anyloop::contract#s3): removing a watch from another thread wakes a blocked `run_once`;
/// nothing fires.
pub fn s03_interrupted_during_poll_r40_r46(env: &Env) {
    let t = Eventtest::setup(env);
    t.stop_pump_quietly();
    let pending = t.d.spawn_doing(
        "run_once(None) with nothing ready: only the foreign remove can end it (S3, R40)",
        |ctx| ctx.run_once(None),
    );
    t.assert_blocked(&pending);
    t.d.lp().remove_watch(t.watches[1]).expect("remove");
    let ran = pending.wait().expect("run_once");
    assert_eq!(
        ran, 0,
        "R46: run_once, woken by the foreign remove with nothing ready, returned {ran} \
         (its count of this loop's callbacks), expected 0"
    );
    t.d.pump();
    t.check_only(&[]);
}

/// [S4](anyloop::contract#s4): of two ready watches that remove each other, exactly one fires, once
/// ([R15](anyloop::contract#r15)).
pub fn s04_removed_during_dispatch_not_called_r15(env: &Env) {
    let t = Eventtest::setup(env);
    let (h2, h3) = (t.watches[2], t.watches[3]);
    let lp = t.d.lp().clone();
    let removed = Arc::new(Log::<Result<(), String>>::new());
    let (lp2, r2) = (lp.clone(), removed.clone());
    t.hook(Who::Handle(2), move || {
        r2.push(lp2.remove_watch(h3).map_err(|e| e.to_string()))
    });
    let r3 = removed.clone();
    t.hook(Who::Handle(3), move || {
        r3.push(lp.remove_watch(h2).map_err(|e| e.to_string()))
    });
    // Both bytes land before one iteration: both fds are in the same poll batch.
    t.d.stop_pump();
    t.pipes[2].write(1);
    t.pipes[3].write(1);
    t.d.on_loop(|ctx| ctx.run_once(Some(TIMEOUT)).expect("run_once"));
    t.d.pump();
    t.d.settle();
    let fired = t.fired();
    assert_eq!(
        fired.len(),
        1,
        "exactly one of watch 2 and 3 fires: {fired:?}"
    );
    assert_eq!(
        removed.snapshot(),
        vec![Ok(())],
        "the removal inside dispatch"
    );
    let who = *fired.iter().next().expect("one fired");
    t.check_only(&[who]);
}

/// [S5](anyloop::contract#s5): a watch removing itself fires once, its state lives until it
/// returns, never again.
pub fn s05_self_removal_during_dispatch_r16(env: &Env) {
    let t = Eventtest::setup(env);
    let (lp, h2) = (t.d.lp().clone(), t.watches[2]);
    let result = Arc::new(Log::new());
    let r = result.clone();
    t.hook(Who::Handle(2), move || {
        r.push(lp.remove_watch(h2).map_err(|e| e.to_string()))
    });
    t.pipes[2].write(1);
    t.wait_fired(&[Who::Handle(2)]);
    assert!(
        env.probe().wait_freed("h2", TIMEOUT),
        "free after self-removal"
    );
    t.pipes[2].write(1);
    t.check_only(&[Who::Handle(2)]);
    assert_eq!(
        result.snapshot(),
        vec![Ok(())],
        "R16: the self-removal inside the callback failed"
    );
    assert_eq!(
        env.probe().count("h2"),
        1,
        "R23: the self-removed watch freed exactly once"
    );
}

/// [S6](anyloop::contract#s6): enabling a timer at 100 ms fires it with its own id, and nothing
/// else.
pub fn s06_firing_a_timer_r27(env: &Env) {
    let t = Eventtest::setup(env);
    t.d.lp()
        .update_timer(t.timers[1], Schedule::Every(Duration::from_millis(100)))
        .expect("update");
    t.wait_fired(&[Who::Timer(1)]);
    t.d.lp()
        .update_timer(t.timers[1], Schedule::Disabled)
        .expect("disable");
    t.check_only(&[Who::Timer(1)]);
}

/// [S7](anyloop::contract#s7): a timer removed before the poll never fires.
pub fn s07_timer_deleted_before_poll_r15(env: &Env) {
    let t = Eventtest::setup(env);
    let lp = t.d.lp();
    lp.update_timer(t.timers[0], Schedule::Every(Duration::from_millis(100)))
        .expect("update 0");
    lp.update_timer(t.timers[1], Schedule::Every(Duration::from_millis(100)))
        .expect("update 1");
    lp.remove_timer(t.timers[0]).expect("remove 0");
    t.wait_fired(&[Who::Timer(1)]);
    lp.update_timer(t.timers[1], Schedule::Disabled)
        .expect("disable");
    std::thread::sleep(Duration::from_millis(100));
    t.check_only(&[Who::Timer(1)]);
}

/// [S8](anyloop::contract#s8): removing the only pending timer from another thread wakes the
/// blocked loop.
pub fn s08_timer_removal_interrupts_poll_r40_r46(env: &Env) {
    let t = Eventtest::setup(env);
    t.stop_pump_quietly();
    t.d.lp()
        .update_timer(t.timers[1], Schedule::Every(Duration::from_secs(30)))
        .expect("update");
    let pending = t.d.spawn_doing(
        "run_once(None) with only a 30 s timer: only the foreign remove can end it (S8, R40)",
        |ctx| ctx.run_once(None),
    );
    t.assert_blocked(&pending);
    t.d.lp().remove_timer(t.timers[1]).expect("remove");
    assert_eq!(
        pending.wait().expect("run_once"),
        0,
        "S8/R46: run_once, woken by the foreign remove, ran callbacks"
    );
    t.d.pump();
    t.check_only(&[]);
}

/// [S9](anyloop::contract#s9): timer 2 removes timer 3 (same interval, enabled after it): 3 never
/// fires ([R33](anyloop::contract#r33), [R34](anyloop::contract#r34)).
pub fn s09_timer_deleted_during_dispatch_r33_r34(env: &Env) {
    let t = Eventtest::setup(env);
    let (lp, t3) = (t.d.lp().clone(), t.timers[3]);
    let result = Arc::new(Log::new());
    let r = result.clone();
    t.hook(Who::Timer(2), move || {
        r.push(lp.remove_timer(t3).map_err(|e| e.to_string()));
    });
    let hundred = Schedule::Every(Duration::from_millis(100));
    t.d.lp().update_timer(t.timers[2], hundred).expect("t2");
    t.d.lp().update_timer(t.timers[3], hundred).expect("t3");
    t.wait_fired(&[Who::Timer(2)]);
    t.d.lp()
        .update_timer(t.timers[2], Schedule::Disabled)
        .expect("disable t2");
    std::thread::sleep(Duration::from_millis(150));
    t.check_only(&[Who::Timer(2)]);
    assert_eq!(
        result.snapshot()[0],
        Ok(()),
        "S9: the removal of timer 3 by timer 2 failed"
    );
}

/// [S10](anyloop::contract#s10): a timer removing itself fires once and never again.
pub fn s10_timer_deletes_itself_r16(env: &Env) {
    let t = Eventtest::setup(env);
    let (lp, t2) = (t.d.lp().clone(), t.timers[2]);
    t.hook(Who::Timer(2), move || {
        lp.remove_timer(t2).expect("self-removal");
    });
    t.d.lp()
        .update_timer(t2, Schedule::Every(Duration::from_millis(50)))
        .expect("update");
    t.wait_fired(&[Who::Timer(2)]);
    std::thread::sleep(Duration::from_millis(200));
    t.check_only(&[Who::Timer(2)]);
    assert_eq!(env.probe().count("t2"), 1, "freed once after self-removal");
}

/// [S11](anyloop::contract#s11): after removing watches and timers 0–29 (some twice: NotFound),
/// watch 30 still works.
pub fn s11_survivor_after_mass_removal_r03(env: &Env) {
    let t = Eventtest::setup(env);
    let lp = t.d.lp();
    for i in 0..15 {
        lp.remove_watch(t.watches[i]).expect("first remove");
        lp.remove_timer(t.timers[i]).expect("first remove");
    }
    for i in 0..30 {
        let h = lp.remove_watch(t.watches[i]);
        let tm = lp.remove_timer(t.timers[i]);
        if i < 15 {
            assert!(matches!(h, Err(Error::NotFound { .. })), "R3: {h:?}");
            assert!(matches!(tm, Err(Error::NotFound { .. })), "R3: {tm:?}");
        } else {
            h.expect("remove");
            tm.expect("remove");
        }
    }
    t.pipes[5].write(1);
    for _ in 0..4 {
        t.pipes[30].write(1);
        t.wait_fired(&[Who::Handle(30)]);
        t.check_only(&[Who::Handle(30)]);
    }
    let stats = t.d.stats();
    assert_eq!(
        (stats.watches, stats.timers),
        (1, 1),
        "R57 counts: {stats:?}"
    );
}

/// [S12](anyloop::contract#s12): a disabled and an enabled watch on one fd: only the enabled one
/// fires ([R10](anyloop::contract#r10), [R11](anyloop::contract#r11)).
pub fn s12_same_fd_twice_r10_r11(env: &Env) {
    let t = Eventtest::setup(env);
    let lp = t.d.lp();
    lp.remove_watch(t.watches[1])
        .expect("remove fixture watch 1");
    let fd = t.pipes[1].fd();
    let mut ids = Vec::new();
    for (k, interest) in [IoEvents::empty(), IoEvents::READABLE]
        .into_iter()
        .enumerate()
    {
        let (hits, token) = (t.hits.clone(), env.token(format!("dup{k}")));
        let id = lp
            .add_watch(fd, interest, move |id, fd, events| {
                let _ = &token;
                hits.push(Hit {
                    who: Who::Extra(k),
                    handle: Some(id),
                    timer: None,
                    fd,
                    events,
                });
                read_one(fd);
            })
            .expect("add");
        ids.push(id);
    }
    t.pipes[1].write(1);
    t.wait_fired(&[Who::Extra(1)]);
    t.d.settle();
    let hits = t.hits.take();
    assert_eq!(hits.len(), 1, "only B fires, once: {hits:?}");
    assert_eq!(hits[0].handle, Some(ids[1]), "with B's id");
    assert_eq!(
        (hits[0].fd, hits[0].events),
        (fd, IoEvents::READABLE),
        "R13: B was told another fd or other events than (its fd, READABLE)"
    );
}
