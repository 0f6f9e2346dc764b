//! The path of an application that already runs tokio: a `LocalDriver` spawned on a
//! `LocalSet`, beside the application's own tasks, on a current-thread runtime and inside a
//! multi-thread runtime's `block_on`.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, Schedule};
use anyloop_tokio::LocalDriver;
use tokio::runtime::{Builder, Runtime};
use tokio::task::LocalSet;

/// Every wait here only turns a hang into a failure.
const TIMEOUT: Duration = Duration::from_secs(5);

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi_thread() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A library-style watch and timer run inside the application's `LocalSet`, interleaved with
/// the application's own task; a quit from that task ends `drive`, which frees every
/// remaining callback on the loop thread.
#[test]
fn drive_on_a_local_set_beside_the_applications_tasks_r42_r48() {
    let runtime = current_thread();
    let local = LocalSet::new();
    let driver = LocalDriver::new().unwrap();
    let lp = driver.handle();
    let quitter = driver.quitter();
    let here = thread::current().id();
    let (mut writer, reader) = {
        let (r, w) = std::io::pipe().unwrap();
        (w, r)
    };
    let got = Rc::new(RefCell::new(Vec::new()));
    let freed = Rc::new(Cell::new(0));
    struct Freed(Rc<Cell<usize>>);
    impl Drop for Freed {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let (g, f) = (got.clone(), Freed(freed.clone()));
    let mut reader_end = reader.try_clone().unwrap();
    let watch = lp
        .add_watch(
            reader.as_raw_fd(),
            IoEvents::READABLE,
            anyloop::WatchCallback::local(move |_id, _fd, _ev| {
                let _keep = &f;
                assert_eq!(thread::current().id(), here);
                let mut byte = [0u8; 1];
                reader_end.read_exact(&mut byte).unwrap();
                g.borrow_mut().push(byte[0]);
            }),
        )
        .unwrap();
    let f2 = Freed(freed.clone());
    let _tick = lp
        .add_timer(
            Schedule::Every(Duration::from_millis(1)),
            anyloop::TimerCallback::local(move |_id| {
                let _keep = &f2;
            }),
        )
        .unwrap();
    let engine = local.spawn_local(driver.drive());
    let g = got.clone();
    local.block_on(&runtime, async move {
        // The application writes three bytes, one per millisecond, from its own task; each
        // is delivered by the anyloop watch on this thread.
        for b in 1..=3u8 {
            writer.write_all(&[b]).unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let start = Instant::now();
        while g.borrow().len() < 3 && start.elapsed() < TIMEOUT {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        quitter.quit();
        engine.await.unwrap();
    });
    assert_eq!(*got.borrow(), [1, 2, 3]);
    // The driver is gone: both callbacks were freed, once, on this thread.
    assert_eq!(freed.get(), 2);
    assert!(matches!(lp.remove_watch(watch), Err(Error::LoopGone)));
}

/// R41: a timer added by another task of the loop thread while the driver waits (no fd
/// ready, no deadline) fires on time: the driver is nudged, not left asleep until an
/// unrelated wake-up.
#[test]
fn a_timer_added_by_another_task_of_the_loop_thread_fires_promptly_r41() {
    let runtime = current_thread();
    let local = LocalSet::new();
    let mut driver = LocalDriver::new().unwrap();
    let lp = driver.handle();
    let fired = Rc::new(Cell::new(None));
    local.block_on(&runtime, async {
        let (lp2, fired2) = (lp.clone(), fired.clone());
        let adder = tokio::task::spawn_local(async move {
            // Let the driver block first.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let armed = Instant::now();
            let f = fired2.clone();
            let _ = lp2
                .add_timer(
                    Schedule::Once(Duration::from_millis(5)),
                    anyloop::TimerCallback::local(move |_id| f.set(Some(armed.elapsed()))),
                )
                .unwrap();
        });
        // One iteration with no bound: nothing is registered yet, so only the nudge (then
        // the new timer's deadline) can end it.
        let started = Instant::now();
        let mut ran = 0;
        while ran == 0 && started.elapsed() < TIMEOUT {
            ran += driver.run_once(None).await.unwrap();
        }
        adder.await.unwrap();
    });
    let after = fired.get().expect("the timer fired");
    assert!(after >= Duration::from_millis(5), "early: {after:?}");
    assert!(after < Duration::from_secs(1), "late: {after:?}");
}

/// A quit from another task of the loop thread ends `run` while it waits (R41, R47).
#[test]
fn quit_from_another_task_of_the_loop_thread_ends_run_r47() {
    let runtime = current_thread();
    let local = LocalSet::new();
    let mut driver = LocalDriver::new().unwrap();
    let quitter = driver.quitter();
    local.block_on(&runtime, async {
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            quitter.quit();
        });
        let started = Instant::now();
        tokio::time::timeout(TIMEOUT, driver.run())
            .await
            .expect("run returned")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    });
}

/// On a multi-thread runtime: the driver runs in a `LocalSet` on the thread that calls
/// `block_on`; operations made by tasks on the worker threads wake it at once (R40) and every
/// callback runs on that one thread (R42), including thread-bound ones.
#[test]
fn multi_thread_runtime_local_set_ops_from_workers_wake_the_loop_r40_r42() {
    let runtime = multi_thread();
    let local = LocalSet::new();
    let here = thread::current().id();
    let calls = Arc::new(AtomicUsize::new(0));
    let threads = Arc::new(Mutex::new(Vec::new()));
    local.block_on(&runtime, async {
        let driver = LocalDriver::new().unwrap();
        let lp = driver.handle();
        let quitter = driver.quitter();
        let engine = tokio::task::spawn_local(driver.drive());
        // A thread-bound callback, on the loop thread.
        let local_calls = Rc::new(Cell::new(0));
        let lc = local_calls.clone();
        let _local_timer = lp
            .timer_local(Schedule::Every(Duration::from_millis(2)), move |_| {
                lc.set(lc.get() + 1)
            })
            .unwrap();
        // Workers arm zero-delay timers through the vtable, one after the other.
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (lp, calls, threads) = (lp.clone(), calls.clone(), threads.clone());
            workers.push(tokio::spawn(async move {
                for _ in 0..25 {
                    let before = calls.load(Ordering::SeqCst);
                    let (c, t) = (calls.clone(), threads.clone());
                    lp.timer(Schedule::Once(Duration::ZERO), move |_| {
                        t.lock().unwrap().push(thread::current().id());
                        c.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap()
                    .into_id();
                    let start = Instant::now();
                    while calls.load(Ordering::SeqCst) == before && start.elapsed() < TIMEOUT {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                }
            }));
        }
        for worker in workers {
            worker.await.unwrap();
        }
        let start = Instant::now();
        while local_calls.get() < 3 && start.elapsed() < TIMEOUT {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(local_calls.get() >= 3);
        quitter.quit();
        engine.await.unwrap();
    });
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    assert!(threads.lock().unwrap().iter().all(|t| *t == here));
}

/// A callback that panics: `run_once` reports it and the loop goes on; under `drive` the
/// error is traced and the driver keeps running (R54).
#[test]
fn panicking_callbacks_are_reported_and_the_driver_goes_on_r54() {
    let runtime = current_thread();
    let local = LocalSet::new();
    let mut driver = LocalDriver::new().unwrap();
    let lp = driver.handle();
    let id = lp
        .add_timer(Schedule::Once(Duration::ZERO), |_| panic!("boom"))
        .unwrap();
    local.block_on(&runtime, async {
        match driver.run_once(Some(Duration::from_millis(100))).await {
            Err(Error::CallbackPanicked { message, .. }) => assert!(message.contains("boom")),
            other => panic!("want CallbackPanicked, got {other:?}"),
        }
    });
    lp.remove_timer(id).unwrap();
    // Under `drive`: a second panic is traced, and a later timer still fires.
    lp.add_timer(Schedule::Once(Duration::ZERO), |_| panic!("boom again"))
        .unwrap();
    let quitter = driver.quitter();
    let _ = lp
        .timer(Schedule::Once(Duration::from_millis(5)), move |_| {
            quitter.quit()
        })
        .unwrap()
        .into_id();
    local.block_on(&runtime, async {
        tokio::time::timeout(TIMEOUT, driver.drive())
            .await
            .expect("drive ended by the quit");
    });
}

/// Polled outside any tokio runtime, or on a runtime without its I/O driver: a typed error,
/// not a panic (R60). (Without a time driver it works: anyloop's timers are its own.)
#[test]
fn no_runtime_or_no_time_driver_is_a_typed_error_r60() {
    let mut driver = LocalDriver::new().unwrap();
    // A minimal executor of our own: block on the future with a no-op waker.
    let outcome = block_on_without_tokio(driver.run_once(Some(Duration::ZERO)));
    assert!(matches!(outcome, Err(Error::Os { .. })), "{outcome:?}");
    let time_only = Builder::new_current_thread().enable_time().build().unwrap();
    let outcome = time_only.block_on(driver.run_once(Some(Duration::ZERO)));
    assert!(matches!(outcome, Err(Error::Os { .. })), "{outcome:?}");
    // The driver stays usable on a runtime with I/O, timers included.
    let io_only = Builder::new_current_thread().enable_io().build().unwrap();
    let lp = driver.handle();
    let _timer = lp
        .timer(Schedule::Once(Duration::from_millis(2)), |_| {})
        .unwrap();
    let start = Instant::now();
    let ran = io_only.block_on(driver.run_once(Some(Duration::from_secs(5))));
    assert_eq!(ran.unwrap(), 1);
    assert!(start.elapsed() < Duration::from_secs(1));
}

fn block_on_without_tokio<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// A busy anyloop (a zero-interval timer) does not starve the application's tasks: the
/// driver yields to tokio in every iteration (R35, for the host).
#[test]
fn a_busy_anyloop_does_not_starve_the_runtimes_tasks_r35() {
    let runtime = current_thread();
    let local = LocalSet::new();
    let driver = LocalDriver::new().unwrap();
    let lp = driver.handle();
    let quitter = driver.quitter();
    let spins = Arc::new(AtomicUsize::new(0));
    let s = spins.clone();
    let _busy = lp
        .timer(Schedule::EVERY_ITERATION, move |_| {
            s.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    local.block_on(&runtime, async move {
        let engine = tokio::task::spawn_local(driver.drive());
        let mut ticks = 0;
        for _ in 0..50 {
            tokio::task::yield_now().await;
            ticks += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        quitter.quit();
        engine.await.unwrap();
        assert_eq!(ticks, 50);
    });
    assert!(spins.load(Ordering::Relaxed) >= 50);
}

/// The reproduction: a library adds a watch, closes its fd (R53 broken) before the
/// driver's first turn, and updates the watch after it. The driver made its own fds when it
/// was made, so the closed number is not the driver's: the update succeeds (R52) and the
/// watch hears nothing of any file of the driver's, on both runtime flavours.
#[test]
fn a_number_closed_before_the_first_turn_is_never_the_drivers_r52() {
    for runtime in [current_thread(), multi_thread()] {
        let local = LocalSet::new();
        let mut driver = LocalDriver::new().unwrap();
        let lp = driver.handle();
        let heard = Rc::new(Cell::new(0));
        let (r, _w) = std::io::pipe().unwrap();
        let fd = r.as_raw_fd();
        let count = heard.clone();
        let watch = lp
            .watch_local(fd, IoEvents::WRITABLE, move |_, _, _| {
                count.set(count.get() + 1)
            })
            .unwrap();
        drop(r);
        local
            .block_on(&runtime, driver.run_once(Some(Duration::ZERO)))
            .unwrap();
        watch
            .update(IoEvents::READABLE | IoEvents::WRITABLE)
            .expect("R52: an update never fails because of the dead number");
        for _ in 0..5 {
            local
                .block_on(&runtime, driver.run_once(Some(Duration::from_millis(5))))
                .unwrap();
        }
        assert_eq!(
            heard.get(),
            0,
            "R52: the watch heard a file of the driver's"
        );
        drop(watch);
        assert_eq!(lp.stats().watches, 0);
    }
}
