//! The [B62](anyloop::contract#b62) trap on a hosted loop: a watched fd closed while a duplicate keeps its file open
//! makes the engine replace its epoll instance behind the same fd number (`dup3`). GLib
//! polls that fd by number, so it must keep working: no spin, and new watches delivered.

mod util;

use anyloop::Runner;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyloop::IoEvents;
use anyloop_glib::GlibLoop;
use glib::MainContext;
use util::{read_one, thread_cpu_time, Pair, TIMEOUT};

#[test]
fn closed_fd_open_elsewhere_then_new_watch_delivered() {
    let context = MainContext::new();
    let mut lp = GlibLoop::new(&context).expect("loop");
    let old = Pair::new();
    let dup: OwnedFd = old.rx.try_clone().expect("dup").into();
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let id = lp
        .handle()
        .add_watch(dup.as_raw_fd(), IoEvents::READABLE, move |_, _, ev| {
            e.lock().unwrap().push(ev)
        })
        .expect("add");
    lp.run_once(Some(Duration::ZERO)).expect("iterate");
    // Close the watched number; `old.rx` keeps the file open, so epoll keeps the
    // registration, and it can no longer be removed by number.
    drop(dup);
    old.send(1);
    for _ in 0..3 {
        let _ = lp.run_once(Some(Duration::from_millis(5)));
    }
    lp.handle().remove_watch(id).expect("remove after close");

    // No spin: iterating for 200 ms in 20 ms steps stays quiet.
    let (cpu0, iter0, start) = (thread_cpu_time(), lp.stats().iterations, Instant::now());
    let mut loops = 0;
    while start.elapsed() < Duration::from_millis(200) {
        lp.run_once(Some(Duration::from_millis(20)))
            .expect("iterate");
        loops += 1;
    }
    let engine = lp.stats().iterations - iter0;
    let cpu = thread_cpu_time() - cpu0;
    assert!(
        loops < 100 && engine < 200,
        "spins: {loops} iterates, {engine} engine iterations"
    );
    assert!(cpu < Duration::from_millis(150), "burns CPU: {cpu:?}");

    // A new watch is still delivered through the (replaced) epoll fd GLib polls.
    let fresh = Pair::new();
    let rx = fresh.rx.try_clone().expect("dup");
    let got = Arc::new(Mutex::new(0));
    let g = got.clone();
    let _watch = lp
        .handle()
        .watch(fresh.rx.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
            while read_one(&rx) {
                *g.lock().unwrap() += 1;
            }
        })
        .expect("new watch");
    fresh.send(2);
    let deadline = Instant::now() + TIMEOUT;
    while *got.lock().unwrap() < 2 && Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(20)))
            .expect("iterate");
    }
    assert_eq!(*got.lock().unwrap(), 2, "the new watch was not delivered");
    // And plain GLib iteration (not `iterate`) still sees it.
    fresh.send(1);
    assert!(util::iterate_until(&context, || *got.lock().unwrap() == 3));
}
