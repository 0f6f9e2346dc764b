//! `TokioLoop`: the owner-side API (a runtime anyloop owns), from angles the conformance kit
//! does not take: the application's async main beside anyloop, a multi-thread runtime, a loop
//! on a `spawn_blocking` thread, a nested runtime, and the epoll reset of B62.

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, Runner, Schedule, Stopped};
use anyloop_tokio::TokioLoop;
use tokio::runtime::Builder;

/// Every wait here only turns a hang into a failure.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `block_on`: the application's async main runs while anyloop's callbacks run beside it; a
/// panic meanwhile is kept for `take_error` (R54), a quit for the next `run` (R47).
#[test]
fn block_on_runs_async_main_beside_anyloop_r47_r54() {
    let mut lp = TokioLoop::new().unwrap();
    let handle = lp.handle();
    let ticks = Rc::new(Cell::new(0));
    let t = ticks.clone();
    let _tick = handle
        .timer_local(Schedule::Every(Duration::from_millis(1)), move |_| {
            t.set(t.get() + 1)
        })
        .unwrap();
    let _boom = handle
        .timer(Schedule::Once(Duration::ZERO), |_| panic!("in block_on"))
        .unwrap();
    let quitter = lp.quitter();
    let t = ticks.clone();
    let seen = lp.block_on(async move {
        // Async main: waits on tokio while anyloop's timer ticks on this thread.
        while t.get() < 5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        quitter.quit();
        t.get()
    });
    assert!(seen >= 5);
    match lp.take_error() {
        Some(Error::CallbackPanicked { message, .. }) => assert!(message.contains("in block_on")),
        other => panic!("want the panic, got {other:?}"),
    }
    // The quit requested during block_on stops the next run at once.
    let start = Instant::now();
    lp.run().unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// A `TokioLoop` driven from inside a tokio task is a typed error, not tokio's panic (R60).
#[test]
fn driving_from_inside_a_runtime_is_a_typed_error_r60() {
    let outer = Builder::new_current_thread().enable_all().build().unwrap();
    let mut lp = TokioLoop::new().unwrap();
    let outcome = outer.block_on(async { lp.run_once(Some(Duration::ZERO)) });
    assert!(
        matches!(outcome, Err(Error::WrongThread { .. })),
        "{outcome:?}"
    );
    // Still usable outside.
    assert_eq!(lp.run_once(Some(Duration::ZERO)).unwrap(), 0);
}

/// The multi-thread answer: `with_runtime` takes the application's multi-thread runtime;
/// anyloop's callbacks run on the thread that runs the loop while the application's
/// `spawn`ed tasks run on the workers, and ops from those tasks wake the loop (R40, R42).
#[test]
fn with_a_multi_thread_runtime_callbacks_stay_on_the_loop_thread_r40_r42() {
    let runtime = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut lp = TokioLoop::with_runtime(runtime).unwrap();
    let here = thread::current().id();
    let handle = lp.handle();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (handle.clone(), seen.clone());
    // A task on a worker thread arms 20 zero-delay timers, one per millisecond.
    let task = lp.runtime().spawn(async move {
        let worker = thread::current().id();
        for _ in 0..20 {
            let s = s.clone();
            h.add_timer(Schedule::Once(Duration::ZERO), move |id| {
                s.lock().unwrap().push(thread::current().id());
                let _ = id;
            })
            .unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        worker
    });
    let deadline = Instant::now() + TIMEOUT;
    let stopped = lp
        .run_until(Some(deadline), &mut || seen.lock().unwrap().len() == 20)
        .unwrap();
    assert_eq!(stopped, Stopped::Done);
    let worker = lp.block_on(task).unwrap();
    assert_ne!(worker, here, "the application's task ran on a worker");
    assert!(seen.lock().unwrap().iter().all(|t| *t == here));
}

/// Another multi-thread answer: a `TokioLoop` on a `spawn_blocking` thread of the
/// application's runtime, fed from the application's tasks.
#[test]
fn a_tokio_loop_on_a_spawn_blocking_thread() {
    let app = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let count = app.block_on(async {
        let (tx, rx) = std::sync::mpsc::channel();
        let looper = tokio::task::spawn_blocking(move || {
            let mut lp = TokioLoop::new().unwrap();
            tx.send((lp.handle(), lp.quitter())).unwrap();
            let mut fired = 0;
            while !lp.take_quit() {
                fired += lp.run_once(None).unwrap();
            }
            fired
        });
        let (handle, quitter) = rx.recv().unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let d = done.clone();
            let _ = handle
                .add_timer(Schedule::Once(Duration::ZERO), move |_| {
                    d.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        }
        let start = Instant::now();
        while done.load(Ordering::SeqCst) < 10 && start.elapsed() < TIMEOUT {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        quitter.quit();
        looper.await.unwrap()
    });
    assert_eq!(count, 10);
}

/// `Loop::wake` from another thread ends a `run_once` blocked with nothing registered (R40,
/// R46).
#[test]
fn wake_from_another_thread_ends_a_blocked_run_once_r40_r46() {
    let mut lp = TokioLoop::new().unwrap();
    let handle = lp.handle();
    let waker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        handle.wake();
    });
    let start = Instant::now();
    assert_eq!(lp.run_once(None).unwrap(), 0);
    assert!(start.elapsed() < TIMEOUT);
    waker.join().unwrap();
}

/// B62: a watched fd closed while a dup keeps its file open makes the engine rebuild its
/// epoll instance; the driver registers the new instance with tokio, so the loop neither
/// spins nor goes deaf: a watch on another socket still hears its data afterwards (R52).
#[test]
fn after_an_epoll_reset_the_new_instance_is_registered_with_tokio_b62_r52() {
    let mut lp = TokioLoop::new().unwrap();
    let handle = lp.handle();
    let (doomed, mut doomed_peer) = UnixStream::pair().unwrap();
    let keep_alive: OwnedFd = doomed.try_clone().unwrap().into(); // the file lives on
    let errors = Rc::new(Cell::new(0));
    let e = errors.clone();
    let _doomed_watch = handle
        .watch_local(doomed.as_raw_fd(), IoEvents::READABLE, move |_, _, ev| {
            if ev.contains(IoEvents::ERROR) {
                e.set(e.get() + 1);
            }
        })
        .unwrap();
    // Closed under its watch (a library bug, R53) while its file stays open, and ready for
    // ever (level-triggered).
    drop(doomed);
    doomed_peer.write_all(b"x").unwrap();
    // Let the engine notice (consecutive reports, verify, stale reports, reset).
    for _ in 0..10 {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert!(errors.get() <= 1, "ERROR at most once");
    // No spin: blocking iterations with nothing to do take their time.
    let before = lp.stats().iterations;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        lp.run_once(Some(Duration::from_millis(20))).unwrap();
    }
    let spun = lp.stats().iterations - before;
    assert!(spun < 40, "the loop spins: {spun} iterations in 200 ms");
    // Not deaf: a new watch's data arrives through the (new) epoll instance.
    let (live, mut live_peer) = UnixStream::pair().unwrap();
    let got = Rc::new(Cell::new(false));
    let (g, mut reader) = (got.clone(), live.try_clone().unwrap());
    let _live_watch = handle
        .watch_local(live.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
            let mut byte = [0u8; 1];
            let _ = reader.read(&mut byte);
            g.set(true);
        })
        .unwrap();
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        live_peer.write_all(b"y").unwrap();
        live_peer
    });
    // One blocking iteration at a time: a driver deaf to the new instance would only find
    // the data when the bound of its wait expires.
    let start = Instant::now();
    while !got.get() && start.elapsed() < TIMEOUT {
        lp.run_once(Some(TIMEOUT)).unwrap();
    }
    assert!(got.get());
    assert!(
        start.elapsed() < TIMEOUT / 2,
        "woken late: {:?}",
        start.elapsed()
    );
    drop(writer.join().unwrap());
    drop(keep_alive);
}

/// Dropping the loop frees every callback once, on the dropping thread, after the
/// application's local tasks were dropped (R23, R48).
#[test]
fn drop_frees_every_callback_once_on_the_dropping_thread_r48() {
    struct Freed(Arc<Mutex<Vec<thread::ThreadId>>>);
    impl Drop for Freed {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(thread::current().id());
        }
    }
    let frees = Arc::new(Mutex::new(Vec::new()));
    let lp = TokioLoop::new().unwrap();
    let handle = lp.handle();
    let (a, b) = (Freed(frees.clone()), Freed(frees.clone()));
    handle
        .add_timer(Schedule::Every(Duration::from_secs(60)), move |_| {
            let _ = &a;
        })
        .unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    handle
        .add_watch(r.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
            let _ = &b;
        })
        .unwrap();
    // A local task holding a guard: dropped with the loop, its remove frees once too.
    let c = Freed(frees.clone());
    let guard = handle
        .timer(Schedule::Disabled, move |_| {
            let _ = &c;
        })
        .unwrap();
    lp.spawn_local(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    drop(lp);
    let frees = frees.lock().unwrap();
    assert_eq!(frees.len(), 3);
    assert!(frees.iter().all(|t| *t == thread::current().id()));
    assert!(matches!(
        handle.add_timer(Schedule::Disabled, |_| {}),
        Err(ref r) if matches!(r.error(), Error::LoopGone)
    ));
}

/// A timer re-armed for deadlines a few microseconds away, on a multi-thread runtime whose
/// reactor runs on the worker threads: an expiry recorded by a worker while the loop thread
/// re-arms the timer is never lost (each blocking iteration ends when the timer fires, not at
/// its bound).
#[test]
fn short_timers_on_a_multi_thread_runtime_never_stall_r28_r40() {
    let runtime = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut lp = TokioLoop::with_runtime(runtime).unwrap();
    // A lost expiry stalls the loop for good (the bound of `run_once` is the same timer):
    // turn that hang into a failure.
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if watch.recv_timeout(Duration::from_secs(60)).is_err() {
            eprintln!("short_timers_on_a_multi_thread_runtime_never_stall: the loop stalled");
            std::process::exit(101);
        }
    });
    let fired = Rc::new(Cell::new(0u32));
    let f = fired.clone();
    let _timer = lp
        .handle()
        .timer_local(Schedule::Every(Duration::from_micros(15)), move |_| {
            f.set(f.get() + 1)
        })
        .unwrap();
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    while fired.get() < 3000 && start.elapsed() < Duration::from_secs(20) {
        let turn = Instant::now();
        lp.run_once(Some(Duration::from_secs(1))).unwrap();
        slowest = slowest.max(turn.elapsed());
    }
    done.send(()).unwrap();
    watchdog.join().unwrap();
    assert!(fired.get() >= 3000, "only {} firings", fired.get());
    assert!(
        slowest < Duration::from_millis(500),
        "an iteration stalled: {slowest:?}"
    );
}

/// Readiness that appears around the moment the driver forgets tokio's previous report, on a
/// multi-thread runtime whose reactor records it on a worker thread: never lost (R8, R40).
#[test]
fn bursts_of_readiness_on_a_multi_thread_runtime_are_never_lost_r08_r40() {
    let runtime = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut lp = TokioLoop::with_runtime(runtime).unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let (r, mut reader) = (read.clone(), ours.try_clone().unwrap());
    let _watch = lp
        .handle()
        .watch(ours.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
            let mut byte = [0u8; 1];
            if reader.read(&mut byte).unwrap_or(0) == 1 {
                r.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    const BYTES: usize = 3000;
    let r = read.clone();
    let writer = thread::spawn(move || {
        let mut theirs = theirs;
        for sent in 0..BYTES {
            theirs.write_all(b"x").unwrap();
            // Wait until the loop has read it, so every byte is a fresh edge.
            let start = Instant::now();
            while r.load(Ordering::SeqCst) <= sent && start.elapsed() < TIMEOUT {
                std::hint::spin_loop();
            }
        }
    });
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    while read.load(Ordering::SeqCst) < BYTES && start.elapsed() < Duration::from_secs(30) {
        let turn = Instant::now();
        lp.run_once(Some(Duration::from_secs(1))).unwrap();
        slowest = slowest.max(turn.elapsed());
    }
    writer.join().unwrap();
    assert_eq!(read.load(Ordering::SeqCst), BYTES);
    assert!(
        slowest < Duration::from_millis(500),
        "a byte waited for the bound: {slowest:?}"
    );
}

/// The handles of a dropped loop say it is gone (R48), through the tokio backend's vtable.
#[test]
fn handles_know_when_the_loop_is_gone_r48() {
    let lp = TokioLoop::new().unwrap();
    let handle = lp.handle();
    assert!(handle.is_alive());
    drop(lp);
    assert!(!handle.is_alive());
    assert_eq!(handle.stats().watches, 0);
}
