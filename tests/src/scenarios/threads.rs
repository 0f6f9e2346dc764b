//! [S44–S50](anyloop::contract#s44) and [R39–R45](anyloop::contract#r39): operations from other
//! threads, wake-ups, where callbacks run.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use anyloop::{IoEvents, Loop, Schedule};

use crate::bounded::{join, on_other_thread};
use crate::driver::{Driver, Pending, TIMEOUT};
use crate::fds::{read_one, Pipe};
use crate::probe::Log;
use crate::runner::Env;

/// Starts a job that blocks in `run_once(None)` until `done` is set (a lost wake-up hangs it).
fn block_until(d: &Driver, done: &Arc<AtomicBool>) -> Pending<usize> {
    let done = done.clone();
    d.spawn_doing(
        "run_once(None) until the foreign operation's callback runs: only its wake-up can end it (R40)",
        move |ctx| {
        let mut iterations = 0;
        while !done.load(Ordering::SeqCst) {
            ctx.run_once(None).expect("run_once");
            iterations += 1;
        }
        iterations
    },
    )
}

fn on_foreign_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    on_other_thread("R39: an operation from a foreign thread", f)
}

/// [S44](anyloop::contract#s44): a foreign thread adds a watch on a readable pipe while the loop
/// blocks forever: the callback runs with no other activity ([R40](anyloop::contract#r40)).
pub fn s44_cross_thread_add_wakes_r40(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    pipe.write(1);
    let done = Arc::new(AtomicBool::new(false));
    let pending = block_until(&d, &done);
    thread::sleep(Duration::from_millis(30));
    let (lp, dn, fd, token) = (d.lp().clone(), done.clone(), pipe.fd(), env.token("w"));
    on_foreign_thread(move || {
        lp.add_watch(fd, IoEvents::READABLE, move |_, fd, _| {
            let _ = &token;
            read_one(fd);
            dn.store(true, Ordering::SeqCst);
        })
        .expect("add")
    });
    let iterations = pending.wait();
    assert!(
        iterations <= 3,
        "R40: {iterations} iterations to deliver one add"
    );
}

/// [S45](anyloop::contract#s45): a foreign thread enables a disabled watch on a readable pipe while
/// the loop blocks: the callback runs ([R40](anyloop::contract#r40)).
pub fn s45_cross_thread_update_wakes_r40(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    pipe.write(1);
    let done = Arc::new(AtomicBool::new(false));
    let (dn, token) = (done.clone(), env.token("w"));
    let id = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::empty(), move |_, fd, _| {
            let _ = &token;
            read_one(fd);
            dn.store(true, Ordering::SeqCst);
        })
        .expect("add");
    let pending = block_until(&d, &done);
    thread::sleep(Duration::from_millis(30));
    let lp = d.lp().clone();
    on_foreign_thread(move || lp.update_watch(id, IoEvents::READABLE).expect("update"));
    pending.wait();
}

/// [R40](anyloop::contract#r40): wake-ups are never lost: 400 rounds of "loop blocks forever, a
/// foreign op makes something runnable", racing the op against the loop entering its poll, with
/// four kinds of operation (add watch, enable watch, add 0 timer, arm timer).
pub fn r40_wakeups_never_lost_repeated(env: &Env) {
    let d = env.start();
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let fd = null.as_raw_fd();
    let lp = d.lp().clone();
    let flag = Arc::new(AtomicBool::new(false));
    let (f, token) = (flag.clone(), env.token("armed-timer"));
    let lp2 = lp.clone();
    let timer = lp
        .add_timer(Schedule::Disabled, move |id| {
            let _ = &token;
            f.store(true, Ordering::SeqCst);
            lp2.update_timer(id, Schedule::Disabled).expect("disable");
        })
        .expect("add timer");
    let (f, token, lp2) = (flag.clone(), env.token("enabled-watch"), lp.clone());
    let watch = lp
        .add_watch(fd, IoEvents::empty(), move |id, _, _| {
            let _ = &token;
            f.store(true, Ordering::SeqCst);
            lp2.update_watch(id, IoEvents::empty()).expect("disable");
        })
        .expect("add watch");
    for round in 0..400 {
        flag.store(false, Ordering::SeqCst);
        let pending = block_until(&d, &flag);
        let (lp, f, token) = (lp.clone(), flag.clone(), env.token(format!("r{round}")));
        on_foreign_thread(move || match round % 4 {
            0 => {
                lp.update_timer(timer, Schedule::EVERY_ITERATION)
                    .expect("arm");
                drop(token);
            }
            1 => {
                lp.update_watch(watch, IoEvents::READABLE).expect("enable");
                drop(token);
            }
            2 => {
                let lp2 = lp.clone();
                lp.add_timer(Schedule::EVERY_ITERATION, move |id| {
                    let _ = &token;
                    f.store(true, Ordering::SeqCst);
                    lp2.remove_timer(id).expect("remove");
                })
                .expect("add timer");
            }
            _ => {
                let lp2 = lp.clone();
                lp.add_watch(fd, IoEvents::READABLE, move |id, _, _| {
                    let _ = &token;
                    f.store(true, Ordering::SeqCst);
                    lp2.remove_watch(id).expect("remove");
                })
                .expect("add watch");
            }
        });
        if pending.wait_for(TIMEOUT).is_none() {
            panic!(
                "R40: wake-up lost in round {round} (operation kind {})",
                round % 4
            );
        }
    }
}

/// [R40](anyloop::contract#r40)/[R46](anyloop::contract#r46): a foreign remove and a foreign quit
/// each wake a loop blocked forever.
pub fn r40_cross_thread_remove_and_quit_wake(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let token = env.token("w");
    let id = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |_, _, _| {
            let _ = &token;
        })
        .expect("add");
    for step in 0..2 {
        let pending = d.spawn(|ctx| ctx.run_once(None));
        thread::sleep(Duration::from_millis(30));
        if step == 0 {
            let lp = d.lp().clone();
            on_foreign_thread(move || lp.remove_watch(id).expect("remove"));
        } else {
            let quit = d.quitter();
            on_foreign_thread(move || quit.quit());
        }
        let result = pending.wait_for(TIMEOUT);
        assert!(
            result.is_some(),
            "R40: step {step}: run_once(None) not woken"
        );
        assert_eq!(result.and_then(|r| r.ok()), Some(0), "nothing may run");
    }
}

/// [R39](anyloop::contract#r39): four threads add, update and remove watches and timers
/// concurrently while the loop dispatches them; ids stay unique, every free runs once, counts
/// return to zero.
pub fn r39_concurrent_ops_from_four_threads(env: &Env) {
    let d = env.start_pumped();
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let fd = null.as_raw_fd();
    let calls = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Log::new());
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (lp, calls, ids) = (d.lp().clone(), calls.clone(), ids.clone());
            let tokens: Vec<_> = (0..400).map(|i| env.token(format!("w{w}-{i}"))).collect();
            thread::spawn(move || {
                let mut tokens = tokens.into_iter();
                for i in 0..200 {
                    let (c1, t1) = (calls.clone(), tokens.next().expect("token"));
                    let h = lp
                        .add_watch(fd, IoEvents::READABLE, move |_, _, _| {
                            let _ = &t1;
                            c1.fetch_add(1, Ordering::Relaxed);
                        })
                        .expect("add_watch");
                    let (c2, t2) = (calls.clone(), tokens.next().expect("token"));
                    let t = lp
                        .add_timer(Schedule::EVERY_ITERATION, move |_| {
                            let _ = &t2;
                            c2.fetch_add(1, Ordering::Relaxed);
                        })
                        .expect("add_timer");
                    ids.push(h.get());
                    ids.push(t.get());
                    if i % 3 == 0 {
                        thread::yield_now();
                    }
                    lp.update_watch(h, [IoEvents::empty(), IoEvents::WRITABLE][i % 2])
                        .expect("update_watch");
                    lp.update_timer(
                        t,
                        [
                            Schedule::Disabled,
                            Schedule::Every(Duration::from_millis(1)),
                        ][i % 2],
                    )
                    .expect("update_timer");
                    lp.remove_watch(h).expect("remove_watch");
                    lp.remove_timer(t).expect("remove_timer");
                }
            })
        })
        .collect();
    for w in workers {
        join(w, "R39: a worker thread adding, updating and removing");
    }
    d.settle();
    let stats = d.stats();
    assert_eq!(
        (stats.watches, stats.timers, stats.pending_frees),
        (0, 0, 0),
        "{stats:?}"
    );
    let mut all = ids.snapshot();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "R1: duplicate ids under concurrency");
}

/// [S50](anyloop::contract#s50): registrations made from four foreign threads: every callback and
/// every free runs on the loop thread ([R42](anyloop::contract#r42), [R50](anyloop::contract#r50)).
pub fn s50_callbacks_and_frees_on_loop_thread_r42_r50(env: &Env) {
    let d = env.start_pumped();
    let pipes: Vec<Arc<Pipe>> = (0..4).map(|_| Arc::new(Pipe::new())).collect();
    let threads_seen = Arc::new(Log::new());
    let workers: Vec<_> = pipes
        .iter()
        .enumerate()
        .map(|(k, pipe)| {
            let (lp, seen, pipe) = (d.lp().clone(), threads_seen.clone(), pipe.clone());
            let (th, tt) = (env.token(format!("h{k}")), env.token(format!("t{k}")));
            thread::spawn(move || {
                let s = seen.clone();
                lp.add_watch(pipe.fd(), IoEvents::READABLE, move |id, fd, _| {
                    let _ = &th;
                    read_one(fd);
                    s.push(thread::current().id());
                    let _ = id;
                })
                .expect("add_watch");
                let (s, lp2) = (seen.clone(), lp.clone());
                lp.add_timer(Schedule::Every(Duration::from_millis(5)), move |id| {
                    let _ = &tt;
                    s.push(thread::current().id());
                    lp2.remove_timer(id).expect("remove");
                })
                .expect("add_timer");
                pipe.write(1);
            })
        })
        .collect();
    for w in workers {
        join(w, "R39/R50: a worker thread registering on the loop");
    }
    assert!(threads_seen.wait_len(8, TIMEOUT), "not all callbacks ran");
    d.destroy();
    let loop_thread = d.loop_thread();
    assert!(
        threads_seen.snapshot().iter().all(|t| *t == loop_thread),
        "R42: callback off-loop"
    );
    assert_eq!(
        env.probe().total(),
        8,
        "R23: eight registrations, eight frees"
    );
    for r in env.probe().records() {
        assert_eq!(r.thread, loop_thread, "R24: {} freed off-loop", r.label);
    }
}

/// [R43](anyloop::contract#r43): no backend lock is held around a callback or a free: both wait for
/// another thread to complete all six operations on the same loop (a held lock would deadlock it).
pub fn r43_no_lock_held_around_callbacks_and_frees(env: &Env) {
    let d = env.start_pumped();
    let pipe = Arc::new(Pipe::new());
    fn ops_elsewhere(lp: &Loop, pipe: &Arc<Pipe>) -> bool {
        let (lp, pipe) = (lp.clone(), pipe.clone());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let h = lp
                .add_watch(pipe.fd(), IoEvents::empty(), |_, _, _| {})
                .expect("add");
            lp.update_watch(h, IoEvents::READABLE).expect("update");
            lp.remove_watch(h).expect("remove");
            let t = lp.add_timer(Schedule::Disabled, |_| {}).expect("add");
            lp.update_timer(t, Schedule::Every(Duration::from_secs(9)))
                .expect("update");
            lp.remove_timer(t).expect("remove");
            let _ = tx.send(());
        });
        rx.recv_timeout(TIMEOUT).is_ok()
    }
    let results = Arc::new(Log::new());
    struct OnFree(Option<Box<dyn FnOnce() + Send>>);
    impl Drop for OnFree {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    let (r, lp, p) = (results.clone(), d.lp().clone(), pipe.clone());
    let on_free = OnFree(Some(Box::new(move || {
        r.push(("free", ops_elsewhere(&lp, &p)))
    })));
    let (r, lp, p, token) = (
        results.clone(),
        d.lp().clone(),
        pipe.clone(),
        env.token("t"),
    );
    d.lp()
        .add_timer(Schedule::EVERY_ITERATION, move |id| {
            let _ = (&token, &on_free);
            r.push(("callback", ops_elsewhere(&lp, &p)));
            lp.remove_timer(id).expect("remove self");
        })
        .expect("add");
    assert!(
        results.wait_len(2, TIMEOUT * 2),
        "callback or free never ran"
    );
    assert_eq!(
        results.snapshot(),
        vec![("callback", true), ("free", true)],
        "R43 deadlock"
    );
}

/// [R44](anyloop::contract#r44): removing a timer from another thread while its callback runs
/// returns without waiting for the callback (which is itself waiting for the remove to return).
pub fn r44_remove_does_not_wait_for_running_timer(env: &Env) {
    let d = env.start_pumped();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (removed_tx, removed_rx) = mpsc::channel::<()>();
    let (outcome, token) = (Arc::new(Log::new()), env.token("t"));
    let o = outcome.clone();
    let id = d
        .lp()
        .add_timer(Schedule::EVERY_ITERATION, move |_| {
            let _ = &token;
            if o.is_empty() {
                let _ = entered_tx.send(());
                o.push(removed_rx.recv_timeout(TIMEOUT).is_ok());
            } else {
                o.push(false); // started again after remove
            }
        })
        .expect("add");
    entered_rx.recv_timeout(TIMEOUT).expect("timer never fired");
    let lp = d.lp().clone();
    on_foreign_thread(move || {
        lp.remove_timer(id).expect("remove");
        let _ = removed_tx.send(());
    });
    assert!(env.probe().wait_freed("t", TIMEOUT), "never freed");
    d.settle();
    assert_eq!(outcome.snapshot(), vec![true], "R44/R15");
}
