//! Frees on a hosted loop: never handed to GLib, exactly once, on the right thread.

mod util;

use anyloop::Runner;
use anyloop::Schedule;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyloop::{Error, IoEvents};
use anyloop_glib::GlibLoop;
use glib::MainContext;
use util::{iterate_until, Drops, Pair};

/// Dropping the loop frees every survivor once, on the dropping thread; removed ones are not
/// freed twice; the handle then answers LoopGone.
#[test]
fn drop_frees_everything_once() {
    let context = MainContext::new();
    let lp = GlibLoop::new(&context).expect("loop");
    let drops = Drops::default();
    let pairs: Vec<Pair> = (0..20).map(|_| Pair::new()).collect();
    let mut watches = Vec::new();
    for pair in &pairs {
        let token = drops.token();
        watches.push(
            lp.handle()
                .add_watch(pair.rx.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
                    let _ = &token;
                })
                .expect("add"),
        );
    }
    for k in 0..30 {
        let token = drops.token();
        let interval = if k % 2 == 0 {
            Schedule::Every(Duration::from_secs(60))
        } else {
            Schedule::Disabled
        };
        lp.handle()
            .add_timer(interval, move |_| {
                let _ = &token;
            })
            .expect("add timer");
    }
    // Five removed before the drop: freed on the next iteration, not at the drop again.
    for id in watches.drain(..5) {
        lp.handle().remove_watch(id).expect("remove");
    }
    assert_eq!(drops.count(), 0, "R21: a free ran inside remove");
    context.iteration(false);
    assert_eq!(drops.count(), 5);
    let handle = lp.handle();
    drop(lp);
    assert_eq!(drops.count(), 50, "R23/R48: every survivor freed once");
    let me = std::thread::current().id();
    assert!(
        drops.threads().iter().all(|t| *t == me),
        "R24: frees on this thread"
    );
    assert!(matches!(
        handle
            .add_timer(Schedule::Disabled, |_| {})
            .map_err(anyloop::Error::from),
        Err(Error::LoopGone)
    ));
    assert!(matches!(
        handle.remove_watch(watches[0]),
        Err(Error::LoopGone) | Err(Error::NotFound { .. })
    ));
    // Nothing of ours is left on the context: iterating it is quiet.
    assert!(!context.iteration(false));
}

/// A loop dropped from inside one of its own callbacks: the callback finishes, then
/// everything is freed once, on that thread, as the dispatch returns.
#[test]
fn drop_from_inside_a_callback() {
    let context = MainContext::new();
    let lp = GlibLoop::new(&context).expect("loop");
    let drops = Drops::default();
    let slot = Arc::new(Mutex::new(Some(lp)));
    let s = slot.clone();
    let token = drops.token();
    let handle = slot.lock().unwrap().as_ref().unwrap().handle();
    let other = drops.token();
    handle
        .add_timer(Schedule::Disabled, move |_| {
            let _ = &other;
        })
        .expect("survivor");
    let observed = Arc::new(Mutex::new(None));
    let o = observed.clone();
    let d = drops.clone();
    handle
        .add_timer(Schedule::EVERY_ITERATION, move |_| {
            let _ = &token;
            let lp = s.lock().unwrap().take();
            drop(lp);
            // Still alive while this callback runs (R22).
            *o.lock().unwrap() = Some(d.count());
        })
        .expect("dropper");
    assert!(iterate_until(&context, || drops.count() == 2));
    assert_eq!(
        *observed.lock().unwrap(),
        Some(0),
        "freed while the callback ran"
    );
    assert!(!context.iteration(false), "the source is gone");
}

/// A remove from another thread: the free runs on the thread that iterates the context.
#[test]
fn foreign_remove_frees_on_the_iterating_thread() {
    let context = MainContext::new();
    let lp = GlibLoop::new(&context).expect("loop");
    let drops = Drops::default();
    let token = drops.token();
    let id = lp
        .handle()
        .add_timer(Schedule::Every(Duration::from_secs(60)), move |_| {
            let _ = &token;
        })
        .expect("add");
    let handle = lp.handle();
    std::thread::spawn(move || handle.remove_timer(id).expect("remove"))
        .join()
        .expect("remover");
    assert_eq!(drops.count(), 0, "R21: freed inside remove");
    assert_eq!(lp.stats().pending_frees, 1);
    assert!(iterate_until(&context, || drops.count() == 1));
    assert_eq!(drops.threads(), [std::thread::current().id()]);
}
