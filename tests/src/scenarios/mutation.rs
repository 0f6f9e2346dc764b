//! [S28–S29](anyloop::contract#s28) and [R15–R20](anyloop::contract#r15): registrations changing
//! while the loop dispatches.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyloop::{IoEvents, Loop, Schedule, TimerId, WatchId};

use crate::driver::TIMEOUT;
use crate::fds::{read_one, Pipe};
use crate::probe::{lock, Log, Token};
use crate::runner::Env;

/// [S28](anyloop::contract#s28): a watch and a 0-interval timer added by a callback are not
/// dispatched in that iteration, and are in the next ([R17](anyloop::contract#r17),
/// [R37](anyloop::contract#r37), [R41](anyloop::contract#r41)).
pub fn s28_add_during_dispatch_waits_next_iteration_r17_r37(env: &Env) {
    let d = env.start();
    let (p1, p2) = (Pipe::new(), Pipe::new());
    p1.write(1);
    p2.write(1);
    let (calls, iters) = (Arc::new(Log::new()), d.iteration_counter());
    let (c, lp, fd2, it) = (calls.clone(), d.lp().clone(), p2.fd(), iters.clone());
    let mut tokens = Some((env.token("c"), env.token("t")));
    let token = env.token("a");
    d.lp()
        .add_watch(p1.fd(), IoEvents::READABLE, move |id, fd, _| {
            let _ = &token;
            read_one(fd);
            c.push(("a", it.load(Ordering::SeqCst)));
            lp.remove_watch(id).expect("remove self");
            let Some((ct, tt)) = tokens.take() else {
                return;
            };
            let (c2, it2) = (c.clone(), it.clone());
            lp.add_watch(fd2, IoEvents::READABLE, move |id, fd, _| {
                let _ = &ct;
                c2.push(("c", it2.load(Ordering::SeqCst)));
                read_one(fd);
                let _ = id;
            })
            .expect("add C");
            let (c3, it3) = (c.clone(), it.clone());
            lp.add_timer(Schedule::EVERY_ITERATION, move |_| {
                let _ = &tt;
                c3.push(("t", it3.load(Ordering::SeqCst)));
            })
            .expect("add T");
        })
        .expect("add A");
    d.on_loop(|ctx| ctx.run_once(Some(TIMEOUT)).expect("run_once"));
    let first = calls.take();
    assert_eq!(
        first.len(),
        1,
        "R17: added registrations ran in the same iteration: {first:?}"
    );
    let a_iter = first[0].1;
    d.on_loop(|ctx| ctx.run_once(Some(TIMEOUT)).expect("run_once"));
    let mut second: Vec<_> = calls.take();
    second.sort();
    assert_eq!(
        second,
        vec![("c", a_iter + 1), ("t", a_iter + 1)],
        "R17: C and T must both run in the next iteration"
    );
}

/// [S29](anyloop::contract#s29): inside its callback a watch removes itself and re-adds the same
/// fd: the new watch has a new id, is called later with that id, and the old free does not disturb
/// it ([R19](anyloop::contract#r19)).
pub fn s29_remove_readd_same_fd_r19(env: &Env) {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let calls = Arc::new(Log::new());
    let (c, lp) = (calls.clone(), d.lp().clone());
    let mut next_token = Some(env.token("a2"));
    let token = env.token("a1");
    let first = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |id, fd, _| {
            let _ = &token;
            c.push(("a1", id));
            lp.remove_watch(id).expect("remove self");
            let Some(t2) = next_token.take() else { return };
            let c2 = c.clone();
            let new_id = lp
                .add_watch(fd, IoEvents::READABLE, move |id, fd, _| {
                    let _ = &t2;
                    c2.push(("a2", id));
                    read_one(fd);
                })
                .expect("re-add");
            assert_ne!(new_id, id, "R1/R19: the re-added watch reused the id");
        })
        .expect("add");
    pipe.write(1); // left unread by A: A' must see it in a later iteration
    assert!(calls.wait_len(2, TIMEOUT), "A' never called");
    assert!(env.probe().wait_freed("a1", TIMEOUT), "A never freed");
    pipe.write(1);
    assert!(
        calls.wait_len(3, TIMEOUT),
        "A' stopped working after A's free"
    );
    d.settle();
    let got = calls.snapshot();
    assert_eq!(
        got[0],
        ("a1", first),
        "R19: the first call is A's, with its id: {got:?}"
    );
    assert!(
        got[1..]
            .iter()
            .all(|(who, id)| *who == "a2" && *id != first),
        "{got:?}"
    );
    assert_eq!(got.len(), 3, "{got:?}");
}

/// [R15](anyloop::contract#r15): a foreign-thread remove lets at most the one already-claimed
/// dispatch start; after the next iterations, never again. Repeated on an always-ready fd.
pub fn r15_foreign_remove_never_started_again(env: &Env) {
    let d = env.start_pumped();
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    use std::os::fd::AsRawFd;
    for round in 0..20 {
        let removed = Arc::new(AtomicBool::new(false));
        let after = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(Log::new());
        let (r, a, c, token) = (
            removed.clone(),
            after.clone(),
            calls.clone(),
            env.token(format!("w{round}")),
        );
        let id = d
            .lp()
            .add_watch(null.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
                let _ = &token;
                if r.load(Ordering::SeqCst) {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                c.push(());
            })
            .expect("add");
        assert!(
            calls.wait_len(2, TIMEOUT),
            "the always-ready watch is not called"
        );
        d.lp().remove_watch(id).expect("remove");
        removed.store(true, Ordering::SeqCst);
        d.wait_iterations(3);
        let settled = after.load(Ordering::SeqCst);
        assert!(
            settled <= 1,
            "R15: started {settled} times after remove returned"
        );
        d.wait_iterations(3);
        assert_eq!(
            after.load(Ordering::SeqCst),
            settled,
            "R15: still called later"
        );
    }
}

/// [R16](anyloop::contract#r16): a callback that removes itself keeps its state alive until it
/// returns.
pub fn r16_self_removal_state_alive_until_return(env: &Env) {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let (seen, lp, probe) = (Arc::new(Log::new()), d.lp().clone(), env.probe().clone());
    let s = seen.clone();
    let token = env.token("self");
    let state = vec![1u8; 1024];
    d.lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |id, _, _| {
            lp.remove_watch(id).expect("remove self");
            thread::sleep(Duration::from_millis(20));
            s.push((probe.count("self"), state.len(), token.label().to_owned()));
        })
        .expect("add");
    pipe.write(1);
    assert!(
        seen.wait_len(1, TIMEOUT),
        "R16: the self-removing callback never ran"
    );
    assert_eq!(seen.snapshot()[0], (0, 1024, "self".to_owned()), "R16");
    assert!(env.probe().wait_freed("self", TIMEOUT), "never freed");
}

/// [R18](anyloop::contract#r18): a callback narrowing its own interest gets only the new bits from
/// then on.
pub fn r18_update_from_callback_applies_next_poll(env: &Env) {
    let d = env.start();
    let sp = crate::fds::SocketPair::new();
    sp.peer_write(1);
    let (calls, lp, token) = (Arc::new(Log::new()), d.lp().clone(), env.token("w"));
    let c = calls.clone();
    d.lp()
        .add_watch(
            sp.fd(),
            IoEvents::READABLE | IoEvents::WRITABLE,
            move |id, _, ev| {
                let _ = &token;
                c.push(ev);
                lp.update_watch(id, IoEvents::READABLE).expect("narrow");
            },
        )
        .expect("add");
    d.on_loop(|ctx| ctx.turns(3));
    let got = calls.snapshot();
    assert_eq!(
        got[0],
        IoEvents::READABLE | IoEvents::WRITABLE,
        "R12/R18: the first call carries both bits of the updated interest: {got:?}"
    );
    assert!(got.len() >= 2, "R8: unread data not reported again");
    for ev in &got[1..] {
        assert_eq!(
            *ev,
            IoEvents::READABLE,
            "R18: bits outside the new interest: {got:?}"
        );
    }
}

/// Shared state of the churn scenario.
struct Churn {
    lp: Loop,
    fds: Vec<i32>,
    watches: Mutex<Vec<WatchId>>,
    timers: Mutex<Vec<TimerId>>,
    removed: Mutex<HashSet<u64>>,
    rng: AtomicU64,
    calls: AtomicU64,
    late: Log<String>,
    tokens: Mutex<Vec<Token>>,
}

impl Churn {
    fn next(&self, n: usize) -> usize {
        let x = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        ((x >> 33) as usize) % n.max(1)
    }

    fn check_alive(&self, raw: u64) {
        if lock(&self.removed).contains(&raw) {
            self.late.push(format!(
                "#{raw} called after its removal on the loop thread"
            ));
        }
    }

    fn add_one(self: &Arc<Self>) {
        let token = lock(&self.tokens).pop();
        let Some(token) = token else { return };
        let me = self.clone();
        if self.next(2) == 0 {
            let fd = self.fds[self.next(self.fds.len())];
            let interest =
                [IoEvents::READABLE, IoEvents::empty(), IoEvents::WRITABLE][self.next(3)];
            let id = self.lp.add_watch(fd, interest, move |id: WatchId, _, _| {
                let _ = &token;
                me.check_alive(id.get());
                me.calls.fetch_add(1, Ordering::Relaxed);
                me.mutate();
            });
            lock(&self.watches).push(id.expect("add_watch"));
        } else {
            let interval = [
                Schedule::EVERY_ITERATION,
                Schedule::Disabled,
                Schedule::Every(Duration::from_millis(1)),
                Schedule::Once(Duration::ZERO),
            ][self.next(4)];
            let id = self.lp.add_timer(interval, move |id: TimerId| {
                let _ = &token;
                me.check_alive(id.get());
                me.calls.fetch_add(1, Ordering::Relaxed);
                me.mutate();
            });
            lock(&self.timers).push(id.expect("add_timer"));
        }
    }

    fn mutate(self: &Arc<Self>) {
        match self.next(6) {
            0 | 1 => self.add_one(),
            2 => {
                let list = lock(&self.watches).clone();
                if !list.is_empty() {
                    let id = list[self.next(list.len())];
                    let ev =
                        [IoEvents::READABLE, IoEvents::empty(), IoEvents::WRITABLE][self.next(3)];
                    let _ = self.lp.update_watch(id, ev);
                }
                let list = lock(&self.timers).clone();
                if !list.is_empty() {
                    let id = list[self.next(list.len())];
                    let _ = self.lp.update_timer(
                        id,
                        [
                            Schedule::Disabled,
                            Schedule::EVERY_ITERATION,
                            Schedule::Once(Duration::ZERO),
                        ][self.next(3)],
                    );
                }
            }
            _ => {
                let victim = {
                    let mut list = lock(&self.watches);
                    let n = list.len();
                    (n > 0).then(|| list.swap_remove(self.next(n)))
                };
                if let Some(id) = victim {
                    self.lp.remove_watch(id).expect("remove_watch");
                    lock(&self.removed).insert(id.get());
                }
                let victim = {
                    let mut list = lock(&self.timers);
                    let n = list.len();
                    (n > 0).then(|| list.swap_remove(self.next(n)))
                };
                if let Some(id) = victim {
                    self.lp.remove_timer(id).expect("remove_timer");
                    lock(&self.removed).insert(id.get());
                }
            }
        }
    }
}

/// [R20](anyloop::contract#r20): callbacks add, update and remove random registrations (including
/// themselves) for hundreds of iterations: no skipped or doubled dispatch, nothing called after its
/// removal, every free exactly once.
pub fn r20_heavy_mutation_from_callbacks(env: &Env) {
    let d = env.start();
    let pipes: Vec<Pipe> = (0..4).map(|_| Pipe::new()).collect();
    for p in &pipes {
        p.write(1);
    }
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    use std::os::fd::AsRawFd;
    let mut fds: Vec<i32> = pipes.iter().map(Pipe::fd).collect();
    fds.push(null.as_raw_fd());
    let churn = Arc::new(Churn {
        lp: d.lp().clone(),
        fds,
        watches: Mutex::default(),
        timers: Mutex::default(),
        removed: Mutex::default(),
        rng: AtomicU64::new(42),
        calls: AtomicU64::new(0),
        late: Log::new(),
        tokens: Mutex::new((0..3000).map(|i| env.token(format!("c{i}"))).collect()),
    });
    for _ in 0..40 {
        churn.add_one();
    }
    d.on_loop(|ctx| {
        for _ in 0..300 {
            ctx.run_once(Some(Duration::from_millis(2)))
                .expect("run_once");
        }
    });
    assert!(
        churn.calls.load(Ordering::Relaxed) > 100,
        "too few callbacks ran to judge"
    );
    assert_eq!(churn.late.snapshot(), Vec::<String>::new(), "R15/R20");
    // Whatever is left is removed now; the rest is freed at destruction.
    for id in lock(&churn.watches).drain(..) {
        churn.lp.remove_watch(id).expect("final remove");
    }
    for id in lock(&churn.timers).drain(..) {
        churn.lp.remove_timer(id).expect("final remove");
    }
    d.on_loop(|ctx| ctx.turns(2));
    let stats = d.stats();
    assert_eq!(
        (stats.watches, stats.timers, stats.pending_frees),
        (0, 0, 0),
        "{stats:?}"
    );
    lock(&churn.tokens).clear();
}

/// [R20](anyloop::contract#r20)/[R24](anyloop::contract#r24): frees that add and remove
/// registrations while many frees drain at once.
pub fn r20_mutation_from_frees(env: &Env) {
    let d = env.start_pumped();
    let lp = d.lp().clone();
    let fired = Arc::new(Log::new());
    struct Chain(Option<Box<dyn FnOnce() + Send>>);
    impl Drop for Chain {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    let mut ids = Vec::new();
    for i in 0..50 {
        let (lp2, f2, token) = (lp.clone(), fired.clone(), env.token(format!("chain{i}")));
        let child_token = env.token(format!("child{i}"));
        let chain = Chain(Some(Box::new(move || {
            // Each free adds a timer that fires once and removes itself.
            lp2.add_timer(Schedule::EVERY_ITERATION, {
                let (lp3, f3) = (lp2.clone(), f2.clone());
                move |id| {
                    let _ = &child_token;
                    f3.push(i);
                    lp3.remove_timer(id).expect("child removes itself");
                }
            })
            .expect("add from a free");
        })));
        ids.push(
            lp.add_timer(Schedule::Disabled, move |_| {
                let _ = (&chain, &token);
            })
            .expect("add"),
        );
    }
    for id in ids {
        lp.remove_timer(id).expect("remove");
    }
    assert!(
        fired.wait_len(50, TIMEOUT),
        "timers added by frees: {} of 50 fired",
        fired.len()
    );
    for i in 0..50 {
        assert!(
            env.probe().wait_freed(&format!("child{i}"), TIMEOUT),
            "R24: timer child{i}, added by a free, was never freed"
        );
    }
    d.settle();
    assert_eq!(fired.len(), 50, "a child fired twice");
}
