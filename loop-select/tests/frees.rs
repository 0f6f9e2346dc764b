//! Deferred frees (contract [R21](anyloop::contract#r21)–[R26](anyloop::contract#r26), [R48](anyloop::contract#r48)).
mod util;

use anyloop::Runner;
use anyloop::Schedule;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use anyloop::{Error, IoEvents};
use util::*;

#[test]
fn frees_never_run_inside_remove_and_run_in_removal_order() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let frees = FreeLog::default();
        let h = lp.handle();
        let mut ids = Vec::new();
        for name in ["t1", "t2", "t3"] {
            let probe = frees.probe(name);
            ids.push(
                h.add_timer(Schedule::Disabled, move |_| {
                    let _keep = &probe;
                })
                .unwrap(),
            );
        }
        for &i in [2, 0, 1].iter() {
            h.remove_timer(ids[i]).unwrap();
            assert!(frees.freed().is_empty(), "free ran inside remove");
        }
        assert_eq!(lp.stats().pending_frees, 3);
        assert!(!lp.stats().is_idle());
        assert_eq!(lp.drain().unwrap(), 3);
        assert_eq!(frees.freed(), vec!["t3", "t1", "t2"], "{poller:?}");
        assert!(lp.stats().is_idle());
    }
}

#[test]
fn self_removal_keeps_its_place_in_removal_order() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let frees = FreeLog::default();
        let h = lp.handle();
        let (pa, pb) = (frees.probe("other-before"), frees.probe("other-after"));
        let before = h
            .add_timer(Schedule::Disabled, move |_| {
                let _keep = &pa;
            })
            .unwrap();
        let after = h
            .add_timer(Schedule::Disabled, move |_| {
                let _keep = &pb;
            })
            .unwrap();
        let (h2, me) = (h.clone(), frees.probe("self"));
        h.add_timer(Schedule::EVERY_ITERATION, move |id| {
            let _keep = &me;
            h2.remove_timer(before).unwrap();
            h2.remove_timer(id).unwrap();
            h2.remove_timer(after).unwrap();
        })
        .unwrap();
        lp.run_once(Some(PATIENCE)).unwrap();
        assert_eq!(
            frees.freed(),
            vec!["other-before", "self", "other-after"],
            "{poller:?}"
        );
    }
}

#[test]
fn foreign_remove_while_running_frees_after_the_callback() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let p = Pipe::new();
        let frees = FreeLog::default();
        let gate = Arc::new(Barrier::new(2));
        let (g, probe, f2) = (gate.clone(), frees.probe("w"), frees.clone());
        let calls = Counter::default();
        let c = calls.clone();
        let id = lp
            .handle()
            .add_watch(p.rfd(), IoEvents::READABLE, move |_, _, _| {
                c.hit();
                g.wait(); // the other thread removes us now
                g.wait(); // ...and has returned from remove
                assert_eq!(f2.count("w"), 0, "freed while running");
                let _keep = &probe;
            })
            .unwrap();
        let h = lp.handle();
        let remover = std::thread::spawn(move || {
            gate.wait();
            h.remove_watch(id).unwrap(); // must not wait for the callback
            gate.wait();
        });
        p.put(1);
        lp.run_once(Some(PATIENCE)).unwrap();
        remover.join().unwrap();
        assert_eq!(frees.count("w"), 1);
        run_for(&mut lp, Duration::from_millis(30));
        assert_eq!(calls.get(), 1, "{poller:?}: started again after remove");
    }
}

#[test]
fn frees_may_call_the_vtable() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let h = lp.handle();
        let fired = Counter::default();
        let other_freed = FreeLog::default();
        let probe = other_freed.probe("other");
        let other = h
            .add_timer(Schedule::Disabled, move |_| {
                let _keep = &probe;
            })
            .unwrap();

        struct OnDrop<F: FnMut()>(F);
        impl<F: FnMut()> Drop for OnDrop<F> {
            fn drop(&mut self) {
                (self.0)()
            }
        }
        let (h2, f2) = (h.clone(), fired.clone());
        let guard = OnDrop(move || {
            let f3 = f2.clone();
            h2.add_timer(Schedule::EVERY_ITERATION, move |_| f3.hit())
                .unwrap();
            h2.remove_timer(other).unwrap();
        });
        let id = h
            .add_timer(Schedule::Disabled, move |_| {
                let _keep = &guard;
            })
            .unwrap();
        h.remove_timer(id).unwrap();
        run_until(&mut lp, || {
            fired.get() > 0 && other_freed.count("other") == 1
        });
    }
}

#[test]
fn dropping_the_loop_frees_everything_once_and_handles_report_loop_gone() {
    for poller in POLLERS {
        let lp = new_loop(poller);
        let p = Pipe::new();
        let frees = FreeLog::default();
        let h = lp.handle();
        let mut hids = Vec::new();
        let mut tids = Vec::new();
        for name in ["h1", "h2", "h3"] {
            let probe = frees.probe(name);
            hids.push(
                h.add_watch(p.rfd(), IoEvents::READABLE, move |_, _, _| {
                    let _keep = &probe;
                })
                .unwrap(),
            );
        }
        for name in ["t1", "t2", "t3"] {
            let probe = frees.probe(name);
            tids.push(
                h.add_timer(Schedule::Every(Duration::from_secs(60)), move |_| {
                    let _keep = &probe;
                })
                .unwrap(),
            );
        }
        h.remove_watch(hids[1]).unwrap(); // pending free: freed at destruction too
        drop(lp);
        let mut freed = frees.freed();
        freed.sort();
        assert_eq!(
            freed,
            vec!["h1", "h2", "h3", "t1", "t2", "t3"],
            "{poller:?}"
        );
        assert!(matches!(h.remove_watch(hids[0]), Err(Error::LoopGone)));
        assert!(matches!(
            h.update_timer(tids[0], Schedule::Disabled),
            Err(Error::LoopGone)
        ));
        let rejected = h.add_timer(Schedule::Disabled, |_| {}).unwrap_err();
        assert!(matches!(rejected.error(), Error::LoopGone));
    }
}

/// A free left over from a removal made while the loop was not running is user code that may
/// be what the owner waits for: the iteration that runs it does not block
/// ([R46](anyloop::contract#r46)), so `run_until` sees the condition at once instead of at
/// its deadline.
#[test]
fn a_free_run_first_ends_the_iteration_for_run_until() {
    use anyloop::Stopped;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let freed = Arc::new(AtomicBool::new(false));
        let guard = SetOnDrop(freed.clone());
        let timer = lp
            .handle()
            .timer(Schedule::Disabled, move |_| {
                let _ = &guard;
            })
            .expect("timer");
        drop(timer); // removed while the loop is not running: its free is pending
        let deadline = Instant::now() + Duration::from_secs(30);
        let stopped = lp
            .run_until(Some(deadline), &mut || freed.load(Ordering::SeqCst))
            .expect("run_until");
        assert_eq!(stopped, Stopped::Done, "{poller:?}");
    }
}
