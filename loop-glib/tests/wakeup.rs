//! [R40](anyloop::contract#r40) on a hosted loop: the context is blocked in GLib's own `iteration(true)` (not in
//! anyloop code) when another thread adds or arms a timer; the context must wake.

mod util;

use anyloop::Runner;
use anyloop::Schedule;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use anyloop_glib::GlibLoop;
use glib::MainContext;
use util::TIMEOUT;

#[test]
fn foreign_thread_ops_wake_a_context_blocked_in_iteration() {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let iterations = Arc::new(AtomicU64::new(0));
    let (s, it) = (stop.clone(), iterations.clone());
    let owner = thread::spawn(move || {
        let context = MainContext::new();
        let lp = GlibLoop::new(&context).expect("loop");
        tx.send(lp.handle()).expect("send");
        context
            .with_thread_default(|| {
                while !s.load(Ordering::SeqCst) {
                    context.iteration(true);
                    it.fetch_add(1, Ordering::SeqCst);
                }
            })
            .expect("own the context");
        drop(lp);
    });
    let lp = rx.recv().expect("handle");
    // Let the owner block in poll with nothing registered.
    thread::sleep(Duration::from_millis(100));
    let before = iterations.load(Ordering::SeqCst);
    assert!(before < 5, "the idle context spins: {before} iterations");

    for round in 0..20 {
        // add a 0 ms timeout that removes itself...
        let (fired_tx, fired_rx) = mpsc::channel();
        let l = lp.clone();
        lp.add_timer(Schedule::EVERY_ITERATION, move |id| {
            let _ = fired_tx.send(thread::current().id());
            l.remove_timer(id).expect("self-remove");
        })
        .expect("add from another thread");
        let on = fired_rx
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("round {round}: a blocked context was not woken (R40)"));
        assert_eq!(on, owner.thread().id(), "callback on the context's thread");
        // ...and arm a disabled timer to 0 ms.
        let (fired_tx, fired_rx) = mpsc::channel();
        let l = lp.clone();
        let id = lp
            .add_timer(Schedule::Disabled, move |id| {
                let _ = fired_tx.send(());
                l.update_timer(id, Schedule::Disabled).expect("disable");
            })
            .expect("add disabled");
        thread::sleep(Duration::from_millis(5));
        lp.update_timer(id, Schedule::EVERY_ITERATION).expect("arm");
        fired_rx
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("round {round}: arming did not wake the context"));
        lp.remove_timer(id).expect("remove");
    }
    stop.store(true, Ordering::SeqCst);
    lp.add_timer(Schedule::EVERY_ITERATION, |_| {})
        .expect("last wake");
    owner.join().expect("owner thread");
}
