//! Frees and destruction: every callback state is dropped exactly once, on the loop thread,
//! whether the backend or the calloop loop goes first.

use anyloop::Schedule;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, Loop};
use anyloop_calloop::CalloopSource;

/// Counts its own drops.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Registers one watch and one timer whose states count their drops.
fn register(lp: &Loop, drops: &Arc<AtomicUsize>) -> std::os::unix::net::UnixStream {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
    let state = DropCount(drops.clone());
    lp.add_watch(
        std::os::fd::AsRawFd::as_raw_fd(&b),
        IoEvents::READABLE,
        move |_, _, _| {
            let _ = &state;
        },
    )
    .map_err(anyloop::Error::from)
    .expect("add_watch");
    let state = DropCount(drops.clone());
    lp.add_timer(Schedule::Every(Duration::from_secs(60)), move |_| {
        let _ = &state;
    })
    .map_err(anyloop::Error::from)
    .expect("add_timer");
    drop(a);
    b
}

#[test]
fn dropping_the_backend_frees_everything_once() {
    let mut event_loop = calloop::EventLoop::<()>::try_new().expect("calloop");
    let backend = CalloopSource::new(&event_loop.handle()).expect("backend");
    let lp = backend.handle();
    let drops = Arc::new(AtomicUsize::new(0));
    let _fd = register(&lp, &drops);
    event_loop
        .dispatch(Some(Duration::ZERO), &mut ())
        .expect("dispatch");
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(backend);
    assert_eq!(drops.load(Ordering::SeqCst), 2, "R48: freed at destruction");
    assert!(matches!(
        lp.add_timer(Schedule::Disabled, |_| {})
            .map_err(anyloop::Error::from),
        Err(Error::LoopGone)
    ));
    // The calloop loop carries on without the source.
    event_loop
        .dispatch(Some(Duration::ZERO), &mut ())
        .expect("dispatch");
    drop(event_loop);
    assert_eq!(drops.load(Ordering::SeqCst), 2, "freed exactly once");
}

#[test]
fn dropping_the_calloop_loop_frees_everything_once() {
    let event_loop = calloop::EventLoop::<()>::try_new().expect("calloop");
    let backend = CalloopSource::new(&event_loop.handle()).expect("backend");
    let lp = backend.handle();
    let drops = Arc::new(AtomicUsize::new(0));
    let _fd = register(&lp, &drops);
    drop(event_loop);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "R48: freed with the calloop loop"
    );
    assert!(matches!(
        lp.add_timer(Schedule::Disabled, |_| {})
            .map_err(anyloop::Error::from),
        Err(Error::LoopGone)
    ));
    assert_eq!(backend.handle().stats().watches, 0);
    drop(backend);
    assert_eq!(drops.load(Ordering::SeqCst), 2, "freed exactly once");
}

#[test]
fn a_remove_between_dispatches_is_freed_by_the_next_dispatch_without_waiting() {
    let mut event_loop = calloop::EventLoop::<()>::try_new().expect("calloop");
    let backend = CalloopSource::new(&event_loop.handle()).expect("backend");
    let lp = backend.handle();
    let drops = Arc::new(AtomicUsize::new(0));
    let state = DropCount(drops.clone());
    let loop_thread = std::thread::current().id();
    let freed_on = Arc::new(std::sync::Mutex::new(None));
    let on = freed_on.clone();
    struct Where(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);
    impl Drop for Where {
        fn drop(&mut self) {
            *self.0.lock().expect("lock") = Some(std::thread::current().id());
        }
    }
    let place = Where(on);
    let id = lp
        .add_timer(Schedule::Every(Duration::from_secs(60)), move |_| {
            let _ = (&state, &place);
        })
        .map_err(anyloop::Error::from)
        .expect("add");
    event_loop
        .dispatch(Some(Duration::ZERO), &mut ())
        .expect("dispatch");
    // Removed from another thread while nobody dispatches: the free waits for the loop.
    std::thread::spawn(move || lp.remove_timer(id).expect("remove"))
        .join()
        .expect("thread");
    assert_eq!(drops.load(Ordering::SeqCst), 0, "R21: never inside remove");
    assert_eq!(backend.handle().stats().pending_frees, 1);
    // One plain calloop dispatch with a long timeout runs it at once.
    let start = Instant::now();
    event_loop
        .dispatch(Some(Duration::from_secs(5)), &mut ())
        .expect("dispatch");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the pending free waited"
    );
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(
        *freed_on.lock().expect("lock"),
        Some(loop_thread),
        "R50: on the loop thread"
    );
    assert!(backend.handle().stats().is_idle());
}
