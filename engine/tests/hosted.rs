//! A hosted engine's iteration after the host's poll ([`Engine::run_hosted`]): when the host
//! found the poller's fd quiet, the engine does not wait on its poller (a kernel call that
//! would find nothing), unless an fd must be probed; when the host found it readable, the
//! engine collects the readiness as `run_once` does. Checked with an OS layer that counts
//! waits.

mod common;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyloop::{IoEvents, Schedule};
use anyloop_engine::Engine;

use common::Fake;

const SOCKET: RawFd = 1000;
const FILE: RawFd = 1001;

fn counter() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    (count.clone(), count)
}

#[test]
fn a_timer_dispatch_with_the_poller_quiet_makes_no_wait() {
    let fake = Fake::default();
    let mut engine = Engine::new(fake.clone(), fake.clone());
    let lp = engine.handle();
    let (fired, fired_seen) = counter();
    let (read, read_seen) = counter();
    lp.add_timer(Schedule::Once(Duration::ZERO), move |_| {
        fired.fetch_add(1, Ordering::SeqCst);
    })
    .expect("timer");
    lp.add_watch(SOCKET, IoEvents::READABLE, move |_, _, _| {
        read.fetch_add(1, Ordering::SeqCst);
    })
    .expect("watch");

    // The host's poll found the poller's fd quiet, and dispatches for the due timer.
    assert_eq!(engine.run_hosted(false).expect("run"), 1);
    assert_eq!(fake.waits(), 0, "no wait on the poller");
    assert_eq!(fired_seen.load(Ordering::SeqCst), 1);

    // The socket becomes ready: the host's next poll sees the poller's fd readable.
    fake.0.lock().unwrap().ready.push(SOCKET);
    assert_eq!(engine.run_hosted(true).expect("run"), 1);
    assert_eq!(fake.waits(), 1, "one wait collects the readiness");
    assert_eq!(read_seen.load(Ordering::SeqCst), 1);
    assert_eq!(
        fired_seen.load(Ordering::SeqCst),
        1,
        "a one-shot fires once"
    );
}

#[test]
fn an_always_ready_fd_is_probed_even_with_the_poller_quiet() {
    let fake = Fake::default();
    fake.0.lock().unwrap().always_ready.push(FILE);
    let mut engine = Engine::new(fake.clone(), fake.clone());
    let lp = engine.handle();
    let (read, read_seen) = counter();
    lp.add_watch(FILE, IoEvents::READABLE, move |_, _, _| {
        read.fetch_add(1, Ordering::SeqCst);
    })
    .expect("watch");
    assert_eq!(
        engine.next_iteration(),
        anyloop_engine::NextIteration::Now,
        "an always-ready fd needs an iteration now"
    );
    // The host's poll cannot see a probed fd: the engine probes it itself.
    assert_eq!(engine.run_hosted(false).expect("run"), 1);
    assert_eq!(fake.waits(), 1);
    assert_eq!(read_seen.load(Ordering::SeqCst), 1);
}
