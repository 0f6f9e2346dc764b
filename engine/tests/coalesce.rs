//! Interest changes made by callbacks reach the kernel once, before the next wait, and not
//! at all when they cancel out within the iteration (libdbus toggles READABLE ->
//! READABLE|WRITABLE -> READABLE around every message it sends). Checked with an OS layer that
//! records every kernel call.

mod common;

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyloop::IoEvents;
use anyloop_engine::Engine;

use common::Fake;

const FD: RawFd = 1000;

/// One iteration in which the watch's callback runs `toggle` on its own watch; returns the
/// kernel calls made during the callback and those made by the whole iteration.
fn iteration_with(
    toggle: impl Fn(&anyloop::Loop, anyloop::WatchId) + Send + 'static,
) -> (usize, Vec<(&'static str, RawFd, IoEvents)>) {
    let fake = Fake::default();
    let mut engine = Engine::new(fake.clone(), fake.clone());
    let lp = engine.handle();
    let during = Arc::new(Mutex::new(None));
    let (seen, probe, handle) = (during.clone(), fake.clone(), lp.clone());
    lp.add_watch(FD, IoEvents::READABLE, move |id, _, _| {
        let before = probe.calls().len();
        toggle(&handle, id);
        *seen.lock().unwrap() = Some(probe.calls().len() - before);
    })
    .expect("add");
    fake.0.lock().unwrap().ready.push(FD);
    let start = fake.calls().len();
    assert_eq!(engine.run_once(Some(Duration::ZERO)).expect("run"), 1);
    let during = during.lock().unwrap().expect("the callback ran");
    (during, fake.calls().split_off(start))
}

#[test]
fn a_toggle_that_cancels_out_within_the_iteration_costs_no_kernel_call() {
    let (during, iteration) = iteration_with(|lp, id| {
        lp.update_watch(id, IoEvents::READABLE | IoEvents::WRITABLE)
            .expect("enable writable");
        lp.update_watch(id, IoEvents::READABLE).expect("back");
    });
    assert_eq!(during, 0, "no kernel call inside the callback");
    assert!(iteration.is_empty(), "no kernel call at all: {iteration:?}");
}

#[test]
fn a_change_reaches_the_kernel_once_before_the_next_wait() {
    let (during, iteration) = iteration_with(|lp, id| {
        lp.update_watch(id, IoEvents::WRITABLE).expect("writable");
        lp.update_watch(id, IoEvents::READABLE | IoEvents::WRITABLE)
            .expect("both");
    });
    assert_eq!(during, 0, "no kernel call inside the callback");
    assert_eq!(
        iteration,
        vec![("reregister", FD, IoEvents::READABLE | IoEvents::WRITABLE)],
        "one kernel call, with the interest in force at the end of the iteration"
    );
}

#[test]
fn a_disable_reaches_the_kernel_before_the_next_wait() {
    let (_, iteration) = iteration_with(|lp, id| {
        lp.update_watch(id, IoEvents::empty()).expect("disable");
    });
    assert_eq!(iteration, vec![("deregister", FD, IoEvents::empty())]);
}

#[test]
fn a_change_from_outside_an_iteration_reaches_the_kernel_at_once() {
    let fake = Fake::default();
    let engine = Engine::new(fake.clone(), fake.clone());
    let lp = engine.handle();
    let id = lp
        .add_watch(FD, IoEvents::READABLE, |_, _, _| {})
        .expect("add");
    let start = fake.calls().len();
    lp.update_watch(id, IoEvents::WRITABLE).expect("update");
    assert_eq!(
        fake.calls().split_off(start),
        vec![("reregister", FD, IoEvents::WRITABLE)]
    );
    drop(engine);
}
