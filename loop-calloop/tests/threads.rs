//! Ops from other threads wake a calloop loop blocked in `dispatch(None)`.

use anyloop::Schedule;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyloop_calloop::CalloopSource;

#[test]
fn cross_thread_add_wakes_blocked_dispatch() {
    let mut event_loop = calloop::EventLoop::<()>::try_new().expect("calloop");
    let backend = CalloopSource::new(&event_loop.handle()).expect("backend");
    let lp = backend.handle();
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    let start = Instant::now();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        lp.add_timer(Schedule::EVERY_ITERATION, move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        })
        .map_err(anyloop::Error::from)
        .expect("add");
    });
    while fired.load(Ordering::SeqCst) == 0 {
        backend
            .dispatch(&mut event_loop, Some(Duration::from_secs(5)), &mut ())
            .expect("dispatch");
        assert!(start.elapsed() < Duration::from_secs(3), "lost wake-up");
    }
    t.join().expect("thread");
}

/// W3's pattern, many times: a disabled timer armed to 0 ms by another thread, disabled again
/// by its own callback; every post must wake the blocked `dispatch(None)` ([R40](anyloop::contract#r40)).
#[test]
fn cross_thread_rearm_of_a_disabled_timer_never_loses_a_wake_up() {
    use std::sync::mpsc;
    const ROUNDS: usize = 3000;
    let (id_tx, id_rx) = mpsc::channel();
    let (fired_tx, fired_rx) = mpsc::channel::<()>();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loop_stop = stop.clone();
    let looper = std::thread::spawn(move || {
        let mut event_loop = calloop::EventLoop::<()>::try_new().expect("calloop");
        let backend = CalloopSource::new(&event_loop.handle()).expect("backend");
        let lp = backend.handle();
        let lp2 = lp.clone();
        let id = lp
            .add_timer(Schedule::Disabled, move |id| {
                // Disable first, then report: a post that follows the report can never be
                // undone by this disable (W3 reports first, which races under load).
                lp2.update_timer(id, Schedule::Disabled).expect("disable");
                let _ = fired_tx.send(());
            })
            .map_err(anyloop::Error::from)
            .expect("add");
        id_tx.send((lp, id)).expect("send");
        while !loop_stop.load(Ordering::SeqCst) {
            backend
                .dispatch(&mut event_loop, None, &mut ())
                .expect("dispatch");
        }
    });
    let (lp, id) = id_rx.recv().expect("id");
    let mut lost = 0;
    for i in 0..ROUNDS {
        std::thread::sleep(Duration::from_micros(50 + (i % 7) as u64 * 20));
        if i == ROUNDS - 1 {
            stop.store(true, Ordering::SeqCst);
        }
        lp.update_timer(id, Schedule::EVERY_ITERATION).expect("arm");
        if fired_rx.recv_timeout(Duration::from_secs(2)).is_err() {
            lost += 1;
            eprintln!("lost wake-up at round {i}");
            if lost > 2 {
                break;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = lp.update_timer(id, Schedule::EVERY_ITERATION);
    looper.join().expect("loop thread");
    assert_eq!(lost, 0, "wake-ups were lost");
}
