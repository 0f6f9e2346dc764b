//! [`HostedEngine`]: the three calls a host loop makes (prepare, after its poll, the outcome),
//! checked with an OS layer that counts waits: when the host found the poller's fd quiet the
//! engine does not wait on its poller (a kernel call that would find nothing) unless an fd
//! must be probed; a nested host iteration never re-enters the engine; quit requests are
//! consumed by the dispatch; the outcome counts this loop's callbacks and reports the first
//! error; closing from inside a callback frees everything right after that dispatch.

mod common;

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, Schedule};
use anyloop_engine::{Engine, HostedEngine, NextIteration};

use common::Fake;

const SOCKET: RawFd = 1000;
const FILE: RawFd = 1001;

fn counter() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    (count.clone(), count)
}

fn hosted(fake: &Fake) -> HostedEngine<Fake> {
    HostedEngine::new(Engine::new(fake.clone(), fake.clone()))
}

#[test]
fn a_timer_dispatch_with_the_poller_quiet_makes_no_wait() {
    let fake = Fake::default();
    let host = hosted(&fake);
    let lp = host.handle();
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
    let wait = host.prepare();
    assert!(wait.poll_fd());
    assert!(wait.is_due(Instant::now()), "a zero-delay timer is due");
    assert_eq!(wait.timeout(Instant::now()), Some(Duration::ZERO));
    host.after_poll(false);
    assert_eq!(host.take_outcome().expect("outcome"), 1);
    assert_eq!(fake.waits(), 0, "no wait on the poller");
    assert_eq!(fired_seen.load(Ordering::SeqCst), 1);

    // The socket becomes ready: the host's next poll sees the poller's fd readable.
    fake.0.lock().unwrap().ready.push(SOCKET);
    assert!(
        !host.prepare().is_due(Instant::now()),
        "nothing due any more"
    );
    host.after_poll(true);
    assert_eq!(host.take_outcome().expect("outcome"), 1);
    assert_eq!(fake.waits(), 1, "one wait collects the readiness");
    assert!(!host.fd_found_quiet(), "the wait found the socket ready");
    assert_eq!(read_seen.load(Ordering::SeqCst), 1);
    assert_eq!(
        fired_seen.load(Ordering::SeqCst),
        1,
        "a one-shot fires once"
    );

    fake.0.lock().unwrap().ready.clear();
    host.prepare();
    host.after_poll(true);
    assert_eq!(host.take_outcome().expect("outcome"), 0);
    assert!(host.fd_found_quiet(), "the engine's own look found nothing");
}

#[test]
fn an_always_ready_fd_is_probed_even_with_the_poller_quiet() {
    let fake = Fake::default();
    fake.0.lock().unwrap().always_ready.push(FILE);
    let host = hosted(&fake);
    let lp = host.handle();
    let (read, read_seen) = counter();
    lp.add_watch(FILE, IoEvents::READABLE, move |_, _, _| {
        read.fetch_add(1, Ordering::SeqCst);
    })
    .expect("watch");
    assert_eq!(
        host.prepare().next(),
        NextIteration::Now,
        "an always-ready fd needs an iteration now"
    );
    // The host's poll cannot see a probed fd: the engine probes it itself.
    host.after_poll(false);
    assert_eq!(host.take_outcome().expect("outcome"), 1);
    assert_eq!(fake.waits(), 1);
    assert_eq!(read_seen.load(Ordering::SeqCst), 1);
}

#[test]
fn a_quiet_poll_before_the_deadline_dispatches_nothing_and_counts_one_iteration() {
    let fake = Fake::default();
    let host = hosted(&fake);
    let (fired, fired_seen) = counter();
    host.handle()
        .add_timer(Schedule::Once(Duration::from_secs(60)), move |_| {
            fired.fetch_add(1, Ordering::SeqCst);
        })
        .expect("timer");
    let wait = host.prepare();
    let timeout = wait.timeout(Instant::now()).expect("a deadline");
    assert!(timeout > Duration::from_secs(59), "{timeout:?}");
    assert!(wait.timeout_ms(Instant::now()) > 59_000);
    assert!(!host.check(false), "not due, fd quiet: no dispatch");
    assert_eq!(host.take_outcome().expect("outcome"), 0);
    assert_eq!(fake.waits(), 0);
    assert_eq!(fired_seen.load(Ordering::SeqCst), 0);
    assert_eq!(host.stats().iterations, 1, "the host's poll counts (R57)");
    // A poll that is dispatched counts once too, not twice.
    host.prepare();
    host.after_poll(true);
    assert_eq!(host.stats().iterations, 2);
}

#[test]
fn a_nested_host_iteration_never_reenters_the_engine() {
    let fake = Fake::default();
    let host = Rc::new(hosted(&fake));
    let seen: Rc<Cell<Option<(bool, bool, usize)>>> = Rc::default();
    let (inner_host, inner_seen) = (host.clone(), seen.clone());
    let (other, other_seen) = counter();
    let _nested = host
        .handle()
        .timer_local(Schedule::Once(Duration::ZERO), move |_| {
            // A modal dialog's nested main loop: the host iterates again inside our callback.
            let wait = inner_host.prepare();
            let check = inner_host.check(true);
            inner_host.dispatch(true);
            inner_seen.set(Some((
                wait.poll_fd(),
                check,
                inner_host.drain().expect("drain"),
            )));
        })
        .expect("timer");
    host.handle()
        .add_timer(Schedule::Once(Duration::ZERO), move |_| {
            other.fetch_add(1, Ordering::SeqCst);
        })
        .expect("second timer");
    host.prepare();
    host.after_poll(false);
    assert_eq!(
        seen.get(),
        Some((false, false, 0)),
        "inside: not polled, not checked, nothing drained"
    );
    assert_eq!(
        other_seen.load(Ordering::SeqCst),
        1,
        "the batch still ran once"
    );
    assert_eq!(host.take_outcome().expect("outcome"), 2);
    assert!(!host.is_dispatching());
}

#[test]
fn the_outcome_reports_the_first_panic_and_the_loop_goes_on() {
    let fake = Fake::default();
    let host = hosted(&fake);
    host.handle()
        .add_timer(Schedule::Once(Duration::ZERO), |_| panic!("boom"))
        .expect("timer");
    host.prepare();
    host.after_poll(false);
    match host.take_outcome() {
        Err(Error::CallbackPanicked { message, .. }) => assert!(message.contains("boom")),
        other => panic!("R54: expected CallbackPanicked, got {other:?}"),
    }
    assert_eq!(host.take_outcome().expect("reported once"), 0);
    let (fired, fired_seen) = counter();
    host.handle()
        .add_timer(Schedule::Once(Duration::ZERO), move |_| {
            fired.fetch_add(1, Ordering::SeqCst);
        })
        .expect("timer");
    host.prepare();
    host.after_poll(false);
    assert_eq!(
        host.take_outcome().expect("outcome"),
        1,
        "usable after a panic"
    );
    assert_eq!(fired_seen.load(Ordering::SeqCst), 1);
}

#[test]
fn a_quit_is_consumed_by_the_dispatch_and_taken_once() {
    let fake = Fake::default();
    let host = hosted(&fake);
    host.quitter().quit();
    assert!(host.quit_requested());
    assert_eq!(
        host.prepare().next(),
        NextIteration::Now,
        "a quit needs a dispatch"
    );
    host.after_poll(false);
    assert_eq!(
        host.prepare().next(),
        NextIteration::OnReadiness,
        "consumed: a host that does not stop does not spin"
    );
    host.end_wait();
    assert!(host.take_quit());
    assert!(!host.take_quit(), "once per request");
}

#[test]
fn close_from_a_callback_frees_everything_after_that_dispatch() {
    struct Freed(Rc<Cell<usize>>);
    impl Drop for Freed {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let fake = Fake::default();
    let host = Rc::new(hosted(&fake));
    let frees = Rc::new(Cell::new(0));
    let during: Rc<Cell<Option<usize>>> = Rc::default();
    let (inner_host, inner_frees, inner_during) = (host.clone(), frees.clone(), during.clone());
    let guard = Freed(frees.clone());
    let _closer = host
        .handle()
        .timer_local(Schedule::Once(Duration::ZERO), move |_| {
            let _keep = &guard;
            inner_host.close();
            inner_during.set(Some(inner_frees.get()));
        })
        .expect("timer");
    let other = Freed(frees.clone());
    let _other = host
        .handle()
        .timer_local(Schedule::Disabled, move |_| {
            let _keep = &other;
        })
        .expect("second timer");
    host.prepare();
    host.after_poll(false);
    assert_eq!(
        during.get(),
        Some(0),
        "R21/R48: nothing freed inside the callback"
    );
    assert_eq!(
        frees.get(),
        2,
        "R48: everything freed once the dispatch returned"
    );
    assert!(host.is_closed());
    assert!(!host.prepare().poll_fd(), "a closed engine is not polled");
    assert!(matches!(
        host.handle().add_timer(Schedule::Disabled, |_| {}),
        Err(rejected) if matches!(rejected.error(), Error::LoopGone)
    ));
}
