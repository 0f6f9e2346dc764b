//! Ops from other threads wake a calloop loop blocked in `dispatch(None)`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyloop_calloop::CalloopBackend;

#[test]
fn cross_thread_add_wakes_blocked_dispatch() {
    let mut event_loop = calloop::EventLoop::<()>::try_new().expect("calloop");
    let backend = CalloopBackend::new(&event_loop.handle()).expect("backend");
    let lp = backend.handle();
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    let start = Instant::now();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        lp.add_timeout(Some(Duration::ZERO), move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        })
        .map_err(|r| r.error)
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
