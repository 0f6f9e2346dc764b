//! Cross-thread operations, wake-ups and quit (contract [R39](anyloop::contract#r39)–[R47](anyloop::contract#r47)).
mod util;

use anyloop::Runner;
use anyloop::Schedule;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::IoEvents;
use anyloop_select::SelectLoop;
use util::*;

/// Runs `lp.run_once(None)` on a helper thread and returns its result (the loop moves).
fn blocked_run_once(mut lp: SelectLoop) -> mpsc::Receiver<(SelectLoop, usize)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let n = lp.run_once(None).expect("run_once");
        let _ = tx.send((lp, n));
    });
    rx
}

#[test]
fn foreign_ops_wake_a_blocked_loop() {
    for poller in POLLERS {
        // Add of a watch on a readable fd.
        let lp = new_loop(poller);
        let h = lp.handle();
        let p = Pipe::new();
        p.put(1);
        let rx = blocked_run_once(lp);
        thread::sleep(Duration::from_millis(30));
        let hits = Counter::default();
        let c = hits.clone();
        h.add_watch(p.rfd(), IoEvents::READABLE, move |_, fd, _| {
            take_one(fd);
            c.hit()
        })
        .unwrap();
        let (mut lp, _) = rx
            .recv_timeout(PATIENCE)
            .expect("add did not wake the loop");
        run_until(&mut lp, || hits.get() == 1);

        // Update of a disabled timer to zero (libvirt's flush pattern).
        let fired = Counter::default();
        let c = fired.clone();
        let t = h.add_timer(Schedule::Disabled, move |_| c.hit()).unwrap();
        let rx = blocked_run_once(lp);
        thread::sleep(Duration::from_millis(30));
        h.update_timer(t, Schedule::EVERY_ITERATION).unwrap();
        let (lp, _) = rx
            .recv_timeout(PATIENCE)
            .expect("update did not wake the loop");

        // Remove ends the wait with nothing dispatched.
        let rx = blocked_run_once(lp);
        thread::sleep(Duration::from_millis(30));
        h.remove_timer(t).unwrap();
        let (_lp, _n) = rx
            .recv_timeout(PATIENCE)
            .expect("remove did not wake the loop");
        assert!(fired.get() >= 1, "{poller:?}");
    }
}

#[test]
fn wakeups_are_never_lost_under_a_storm_of_foreign_ops() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let h = lp.handle();
        let hits = Counter::default();
        let total = 2_000;
        let c = hits.clone();
        let sender = thread::spawn(move || {
            for i in 0..total {
                let c = c.clone();
                let h2 = h.clone();
                h.add_timer(Schedule::EVERY_ITERATION, move |id| {
                    c.hit();
                    h2.remove_timer(id).unwrap();
                })
                .unwrap();
                if i % 100 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        });
        let start = Instant::now();
        while hits.get() < total {
            assert!(
                start.elapsed() < PATIENCE * 4,
                "{poller:?}: stuck at {}",
                hits.get()
            );
            // No limit: a lost wake-up would hang here (and trip the test timeout).
            let rx_done = hits.get();
            let _ = rx_done;
            lp.run_once(Some(Duration::from_secs(2))).unwrap();
        }
        sender.join().unwrap();
        assert!(lp.stats().is_idle() || lp.drain().is_ok());
    }
}

#[test]
fn quit_before_run_is_not_lost_and_is_consumed() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        lp.quitter().quit();
        lp.run().unwrap(); // returns at once
        let q = lp.quitter();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            q.quit();
        });
        let start = Instant::now();
        lp.run().unwrap(); // flag was consumed: runs until the thread quits
        assert!(start.elapsed() >= Duration::from_millis(40), "{poller:?}");
    }
}

#[test]
fn quit_from_a_callback_finishes_the_batch() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let p = Pipe::new();
        let hits = Counter::default();
        let q = lp.quitter();
        let h = lp.handle();
        for _ in 0..3 {
            let (c, q) = (hits.clone(), q.clone());
            h.add_watch(p.rfd(), IoEvents::READABLE, move |_, _, _| {
                c.hit();
                q.quit();
            })
            .unwrap();
        }
        p.put(1);
        lp.run().unwrap();
        assert_eq!(
            hits.get(),
            3,
            "{poller:?}: the collected batch was cut short"
        );
    }
}

#[test]
fn loop_moves_between_threads_and_callbacks_run_on_the_running_thread() {
    for poller in POLLERS {
        let lp = new_loop(poller);
        let h = lp.handle();
        let (tx, rx) = mpsc::channel();
        h.add_timer(Schedule::EVERY_ITERATION, move |_| {
            let _ = tx.send(thread::current().id());
        })
        .unwrap();
        let runner = thread::spawn(move || {
            let mut lp = lp;
            lp.run_once(Some(PATIENCE)).unwrap();
            thread::current().id()
        });
        let ran_on = runner.join().unwrap();
        assert_eq!(rx.recv().unwrap(), ran_on, "{poller:?}");
    }
}
