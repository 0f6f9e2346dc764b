//! Mutation during dispatch: removal, self-removal, additions, interest changes, re-add on
//! the same fd (contract [R15](anyloop::contract#r15)–[R20](anyloop::contract#r20)).
mod util;

use anyloop::Runner;
use anyloop::Schedule;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyloop::{IoEvents, WatchId};
use util::*;

#[test]
fn removed_by_an_earlier_callback_is_not_called_even_if_collected() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let (p1, p2) = (Pipe::new(), Pipe::new());
        let frees = FreeLog::default();
        let victim: Arc<Mutex<Option<WatchId>>> = Arc::default();
        let (a_calls, b_calls) = (Counter::default(), Counter::default());
        let h = lp.handle();
        let (hv, ac, bc) = (victim.clone(), a_calls.clone(), b_calls.clone());
        let h2 = h.clone();
        let first = h
            .add_watch(p1.rfd(), IoEvents::READABLE, move |_, fd, _| {
                take_one(fd);
                ac.hit();
                if let Some(id) = hv.lock().unwrap().take() {
                    h2.remove_watch(id).unwrap();
                }
            })
            .unwrap();
        let probe = frees.probe("b");
        let second = h
            .add_watch(p2.rfd(), IoEvents::READABLE, move |_, fd, _| {
                let _keep = &probe;
                take_one(fd);
                bc.hit();
            })
            .unwrap();
        // Whichever fires first removes the other: arrange for "first" to remove "second".
        *victim.lock().unwrap() = Some(second);
        p2.put(1);
        p1.put(1);
        std::thread::sleep(Duration::from_millis(10));
        run_for(&mut lp, Duration::from_millis(50));
        assert_eq!(a_calls.get(), 1);
        // Epoll reports fds in readiness order: p2 became ready first, so "second" may have
        // run before "first" removed it — but then only once. Never after the removal.
        assert!(b_calls.get() <= 1, "{poller:?}");
        assert_eq!(frees.count("b"), 1);
        let _ = first;
    }
}

#[test]
fn removed_during_dispatch_never_runs_when_ordered_after() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let p = Pipe::new();
        let calls: Arc<Mutex<Vec<&str>>> = Arc::default();
        let h = lp.handle();
        let later: Arc<Mutex<Option<WatchId>>> = Arc::default();
        let (h2, l2, c1) = (h.clone(), later.clone(), calls.clone());
        // Two watches on one fd are dispatched in registration order: A then B.
        h.add_watch(p.rfd(), IoEvents::READABLE, move |_, _, _| {
            c1.lock().unwrap().push("a");
            if let Some(id) = l2.lock().unwrap().take() {
                h2.remove_watch(id).unwrap();
            }
        })
        .unwrap();
        let c2 = calls.clone();
        let b = h
            .add_watch(p.rfd(), IoEvents::READABLE, move |_, _, _| {
                c2.lock().unwrap().push("b")
            })
            .unwrap();
        *later.lock().unwrap() = Some(b);
        p.put(1);
        lp.run_once(Some(PATIENCE)).unwrap();
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls, vec!["a", "a"], "{poller:?}");
    }
}

#[test]
fn self_removal_frees_after_return() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let p = Pipe::new();
        let frees = FreeLog::default();
        let probe = frees.probe("self");
        let h = lp.handle();
        let h2 = h.clone();
        let f2 = frees.clone();
        h.add_watch(p.rfd(), IoEvents::READABLE, move |id, _, _| {
            h2.remove_watch(id).unwrap();
            assert!(h2.remove_watch(id).is_err(), "second remove must fail");
            // Still usable after removing itself; not freed yet.
            let _still_here = &probe;
            assert_eq!(f2.count("self"), 0);
        })
        .unwrap();
        p.put(2);
        assert_eq!(lp.run_once(Some(PATIENCE)).unwrap(), 1);
        assert_eq!(frees.count("self"), 1, "freed by the end of the iteration");
        assert_eq!(lp.stats().pending_frees, 0);
        run_for(&mut lp, Duration::from_millis(30));
        assert_eq!(frees.count("self"), 1);
    }
}

#[test]
fn added_during_dispatch_waits_for_next_iteration() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let (p1, p2) = (Pipe::new(), Pipe::new());
        p2.put(1); // already readable
        let log: Arc<Mutex<Vec<(u64, &str)>>> = Arc::default();
        let h = lp.handle();
        let (h2, l) = (h.clone(), log.clone());
        let p2fd = p2.rfd();
        h.add_watch(p1.rfd(), IoEvents::READABLE, move |id, fd, _| {
            take_one(fd);
            h2.remove_watch(id).unwrap();
            let (l1, l2) = (l.clone(), l.clone());
            h2.add_watch(p2fd, IoEvents::READABLE, move |id, fd, _| {
                take_one(fd);
                l1.lock().unwrap().push((0, "c"));
                let _ = id;
            })
            .unwrap();
            h2.add_timer(Schedule::EVERY_ITERATION, move |id| {
                l2.lock().unwrap().push((0, "t"));
                let _ = id;
            })
            .unwrap();
        })
        .unwrap();
        p1.put(1);
        assert_eq!(lp.run_once(Some(PATIENCE)).unwrap(), 1);
        assert!(log.lock().unwrap().is_empty());
        assert_eq!(lp.run_once(Some(PATIENCE)).unwrap(), 2, "{poller:?}");
    }
}

#[test]
fn interest_change_mid_iteration_filters_the_rest_of_it() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let p = Pipe::new();
        let h = lp.handle();
        let b_calls = Counter::default();
        let slot: Arc<Mutex<Option<WatchId>>> = Arc::default();
        let (h2, s2) = (h.clone(), slot.clone());
        h.add_watch(p.rfd(), IoEvents::READABLE, move |_, _, _| {
            if let Some(b) = *s2.lock().unwrap() {
                h2.update_watch(b, IoEvents::empty()).unwrap();
            }
        })
        .unwrap();
        let bc = b_calls.clone();
        let b = h
            .add_watch(p.rfd(), IoEvents::READABLE, move |_, _, _| bc.hit())
            .unwrap();
        *slot.lock().unwrap() = Some(b);
        p.put(1);
        run_for(&mut lp, Duration::from_millis(50));
        assert_eq!(b_calls.get(), 0, "{poller:?}");
    }
}

#[test]
fn remove_and_readd_same_fd_in_callback_gives_an_independent_watch() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let p = Pipe::new();
        let frees = FreeLog::default();
        let ids: Arc<Mutex<Vec<WatchId>>> = Arc::default();
        let h = lp.handle();
        let (h2, ids2, probe) = (h.clone(), ids.clone(), frees.probe("old"));
        let first = h
            .add_watch(p.rfd(), IoEvents::READABLE, move |id, fd, _| {
                let _keep = &probe;
                h2.remove_watch(id).unwrap();
                let ids3 = ids2.clone();
                let new = h2
                    .add_watch(fd, IoEvents::READABLE, move |id, fd, _| {
                        take_one(fd);
                        ids3.lock().unwrap().push(id);
                    })
                    .expect("re-add on the same fd must not EEXIST");
                ids2.lock().unwrap().push(new);
            })
            .unwrap();
        p.put(1);
        run_until(&mut lp, || ids.lock().unwrap().len() >= 2);
        let ids = ids.lock().unwrap().clone();
        assert_ne!(ids[0], first);
        assert_eq!(
            ids[0], ids[1],
            "{poller:?}: the new watch is called with its own id"
        );
        assert_eq!(frees.count("old"), 1);
    }
}
