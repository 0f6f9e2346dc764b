//! Timers (contract [R27](anyloop::contract#r27)–[R38](anyloop::contract#r38)).
mod util;

use anyloop::Runner;
use anyloop::Schedule;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyloop::{IoEvents, TimerId};
use util::*;

#[test]
fn deadline_order_with_ties_in_creation_order() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let order: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
        let h = lp.handle();
        for ms in [30u64, 10, 20, 40, 40] {
            let o = order.clone();
            let h2 = h.clone();
            h.add_timer(
                Schedule::Every(Duration::from_millis(ms)),
                move |id: TimerId| {
                    o.lock().unwrap().push((ms, id.get()));
                    h2.update_timer(id, Schedule::Disabled).unwrap();
                },
            )
            .unwrap();
        }
        // Let them all expire before the first iteration: one batch, sorted.
        std::thread::sleep(Duration::from_millis(60));
        lp.run_once(Some(PATIENCE)).unwrap();
        let order = order.lock().unwrap().clone();
        let ms: Vec<u64> = order.iter().map(|v| v.0).collect();
        assert_eq!(ms, vec![10, 20, 30, 40, 40], "{poller:?}");
        assert!(order[3].1 < order[4].1, "equal deadlines in creation order");
    }
}

#[test]
fn zero_interval_fires_every_iteration_without_starving_fds() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let p = Pipe::new();
        p.put(1); // never drained: ready on every iteration
        let (t, f) = (Counter::default(), Counter::default());
        let (tc, fc) = (t.clone(), f.clone());
        lp.handle()
            .add_timer(Schedule::EVERY_ITERATION, move |_| tc.hit())
            .unwrap();
        lp.handle()
            .add_watch(p.rfd(), IoEvents::READABLE, move |_, _, _| fc.hit())
            .unwrap();
        for _ in 0..20 {
            // Never blocks although no limit is given.
            assert_eq!(lp.run_once(None).unwrap(), 2, "{poller:?}");
        }
        assert_eq!((t.get(), f.get()), (20, 20));
    }
}

#[test]
fn one_shot_by_self_disable_and_disabled_never_fires() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let (once, never) = (Counter::default(), Counter::default());
        let (oc, nc) = (once.clone(), never.clone());
        let h = lp.handle();
        let h2 = h.clone();
        h.add_timer(Schedule::EVERY_ITERATION, move |id| {
            oc.hit();
            h2.update_timer(id, Schedule::Disabled).unwrap();
        })
        .unwrap();
        h.add_timer(Schedule::Disabled, move |_| nc.hit()).unwrap();
        run_for(&mut lp, Duration::from_millis(100));
        assert_eq!((once.get(), never.get()), (1, 0), "{poller:?}");
    }
}

#[test]
fn never_early_and_update_restarts() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let fired: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
        let h = lp.handle();
        let start = Instant::now();
        for ms in [1u64, 10, 50] {
            let f = fired.clone();
            let h2 = h.clone();
            h.add_timer(Schedule::Every(Duration::from_millis(ms)), move |id| {
                f.lock().unwrap().push((ms, Instant::now()));
                h2.remove_timer(id).unwrap();
            })
            .unwrap();
        }
        let restarted = Counter::default();
        let rc = restarted.clone();
        let r = h
            .add_timer(Schedule::Every(Duration::from_millis(60)), move |_| {
                rc.hit()
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(40));
        let updated_at = Instant::now();
        h.update_timer(r, Schedule::Every(Duration::from_millis(60)))
            .unwrap();
        run_until(&mut lp, || restarted.get() > 0);
        assert!(
            updated_at.elapsed() >= Duration::from_millis(60),
            "{poller:?}: not restarted"
        );
        for (ms, at) in fired.lock().unwrap().iter() {
            assert!(
                at.duration_since(start) >= Duration::from_millis(*ms),
                "{poller:?}: early"
            );
        }
        assert_eq!(fired.lock().unwrap().len(), 3);
    }
}

#[test]
fn earlier_timer_disables_or_removes_a_later_one_in_the_same_batch() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let h = lp.handle();
        let later: Arc<Mutex<Vec<TimerId>>> = Arc::default();
        let hits = Counter::default();
        let (h2, l2) = (h.clone(), later.clone());
        h.add_timer(Schedule::Every(Duration::from_millis(5)), move |id| {
            let ids = l2.lock().unwrap().clone();
            h2.update_timer(ids[0], Schedule::Disabled).unwrap();
            h2.remove_timer(ids[1]).unwrap();
            h2.update_timer(ids[2], Schedule::Every(Duration::from_secs(60)))
                .unwrap();
            h2.remove_timer(id).unwrap();
        })
        .unwrap();
        for _ in 0..3 {
            let c = hits.clone();
            later.lock().unwrap().push(
                h.add_timer(Schedule::Every(Duration::from_millis(5)), move |_| c.hit())
                    .unwrap(),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
        lp.run_once(Some(PATIENCE)).unwrap();
        run_for(&mut lp, Duration::from_millis(30));
        assert_eq!(hits.get(), 0, "{poller:?}");
    }
}

#[test]
fn huge_intervals_neither_overflow_nor_fire() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let hits = Counter::default();
        for interval in [
            Duration::MAX,
            Duration::from_millis(u32::MAX as u64),
            Duration::from_secs(u64::MAX / 2),
        ] {
            let c = hits.clone();
            lp.handle()
                .add_timer(Schedule::Every(interval), move |_| c.hit())
                .unwrap();
        }
        let start = Instant::now();
        assert_eq!(lp.run_once(Some(Duration::from_millis(10))).unwrap(), 0);
        assert!(start.elapsed() < PATIENCE);
        assert_eq!(hits.get(), 0, "{poller:?}");
    }
}

#[test]
fn periodic_timer_has_no_catch_up_after_a_stall() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let hits = Counter::default();
        let c = hits.clone();
        lp.handle()
            .add_timer(Schedule::Every(Duration::from_millis(5)), move |_| c.hit())
            .unwrap();
        std::thread::sleep(Duration::from_millis(60)); // twelve periods missed
        lp.run_once(Some(PATIENCE)).unwrap();
        assert_eq!(hits.get(), 1, "{poller:?}");
        // Next firing is a full period after this one, not immediately.
        lp.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(hits.get(), 1, "{poller:?}");
    }
}
