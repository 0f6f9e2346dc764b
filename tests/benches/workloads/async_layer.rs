//! The futures layer (`anyloop-async`) on W3 and W4, beside the hand-written callbacks of
//! `w3.rs` and `w4.rs`, on the anyloop backends (a contender with a `Loop`):
//!
//! - **W3a**, cross-thread wake-up of a task: a task of the loop awaits a signal; this thread
//!   sleeps 100 µs, takes t0, sets the signal's flag and wakes the task's waker (which arms the
//!   task's zero-delay one-shot timer through `Loop::update_timer`, as the callback variant
//!   `update_timeout0` arms its timer); the task, polled on the loop thread, takes t1.
//! - **W4a**, ping-pong over the same two socket pairs as W4, each side a task looping on
//!   `Async::readable().await`, one byte read, one byte written.
//!
//! Same parameters and statistics as W3 and W4; the rows are compared with the floor's W3 and
//! W4.

use std::future::poll_fn;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use anyloop_async::{spawn_local, Async};
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

use crate::contender::{xt_fired, xt_install, Contender};
use crate::measure::{median, Measure, Params};
use crate::sys::{now_ns, read1, write1};

/// A flag and the waker of the task waiting for it.
#[derive(Default)]
struct Signal {
    raised: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// From any thread: raise the flag, wake the waiting task.
    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        // Wake with the lock released: the woken task takes it at once on the loop thread.
        let waker = self.waker.lock().expect("signal lock").clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// On the loop thread: wait until raised (and lower it).
    async fn wait(&self) {
        poll_fn(|cx| {
            {
                let mut slot = self.waker.lock().expect("signal lock");
                if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *slot = Some(cx.waker().clone());
                }
            }
            if self.raised.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// W3a: latency from another thread's wake to the task's poll.
pub fn w3<C: Contender + 'static>(p: &Params) -> Vec<Measure> {
    if !C::HAS_REGISTRY {
        return Vec::new();
    }
    let (t1_tx, t1_rx) = mpsc::channel::<u64>();
    let (post_tx, post_rx) = mpsc::channel::<Arc<Signal>>();
    let stop = Arc::new(AtomicBool::new(false));
    let loop_stop = Arc::clone(&stop);
    let looper = std::thread::Builder::new()
        .name("w3a".into())
        .spawn(move || {
            xt_install(t1_tx);
            let mut c = C::make();
            let lp = c.event_loop().expect("an anyloop contender");
            let signal = Arc::new(Signal::default());
            let waiter = Arc::clone(&signal);
            let task = spawn_local(&lp, async move {
                loop {
                    waiter.wait().await;
                    xt_fired();
                }
            })
            .expect("spawn the W3a task");
            // Let the task park its waker before the first post.
            while signal.waker.lock().expect("signal lock").is_none() {
                c.run_once();
            }
            post_tx.send(signal).expect("W3a ready");
            while !loop_stop.load(Ordering::Acquire) {
                c.run_once();
            }
            drop(task);
        })
        .expect("spawn the W3a loop thread");
    let signal = post_rx.recv().expect("W3a loop thread died during setup");

    let total = p.w3_warm + p.w3_samples;
    let mut lat = Vec::with_capacity(p.w3_samples);
    let mut lost = 0;
    for i in 0..total {
        std::thread::sleep(Duration::from_micros(p.w3_gap_us)); // the loop is back in its wait
        if i == total - 1 {
            stop.store(true, Ordering::Release); // the last sample also stops the loop
        }
        let t0 = now_ns();
        signal.raise();
        match t1_rx.recv_timeout(Duration::from_secs(2)) {
            Ok(t1) if i >= p.w3_warm => lat.push(t1.saturating_sub(t0) as f64 / 1000.0),
            Ok(_) => {}
            Err(_) => {
                lost += 1;
                eprintln!("W3a: NO WAKE-UP within 2 s (sample {i})");
                assert!(lost <= 3, "W3a: wake-ups are being lost");
            }
        }
    }
    looper.join().expect("W3a loop thread panicked");
    lat.sort_by(f64::total_cmp);
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    vec![Measure::new("W3a", p.w3_samples as u64, at(0.5) * 1000.0)
        .phase("task-waker")
        .extra("p50_us", at(0.5))
        .extra("p90_us", at(0.9))
        .extra("p99_us", at(0.99))
        .extra("p999_us", at(0.999))
        .extra("lost", lost as f64)]
}

/// Where the echo task writes (sp2[0]) and where the back task writes (sp1[0]).
static TO_BACK: AtomicI32 = AtomicI32::new(-1);
static TO_ECHO: AtomicI32 = AtomicI32::new(-1);
/// Round trips done and wanted (single writer: the loop thread).
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(0);

/// W4a: ping-pong between two tasks awaiting `readable()`.
pub fn w4<C: Contender + 'static>(p: &Params) -> Vec<Measure> {
    if !C::HAS_REGISTRY {
        return Vec::new();
    }
    let pair = || {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .expect("socketpair");
        (Rc::new(a), Rc::new(b))
    };
    // Declared before the contender and the tasks, so they close after both.
    let (sp1, sp2) = (pair(), pair());
    TO_ECHO.store(sp1.0.as_raw_fd(), Relaxed);
    TO_BACK.store(sp2.0.as_raw_fd(), Relaxed);
    let mut c = C::make();
    let lp = c.event_loop().expect("an anyloop contender");
    let side = |fd: Rc<OwnedFd>, on_byte: fn(RawFd)| {
        let socket = Async::new(&lp, fd).expect("Async::new");
        spawn_local(&lp, async move {
            loop {
                socket.readable().await.expect("readable");
                on_byte(socket.get_ref().as_raw_fd());
            }
        })
        .expect("spawn a W4a task")
    };
    // Dropped before the contender: the tasks go, and with them their watches.
    let _echo = side(Rc::clone(&sp1.1), |fd| {
        read1(fd);
        write1(TO_BACK.load(Relaxed));
    });
    let _back = side(Rc::clone(&sp2.1), |fd| {
        read1(fd);
        let done = ROUND_TRIPS.load(Relaxed) + 1;
        ROUND_TRIPS.store(done, Relaxed);
        if done < TARGET.load(Relaxed) {
            write1(TO_ECHO.load(Relaxed));
        }
    });

    let mut reps = Vec::with_capacity(p.w4_reps);
    let mut total = 0;
    // Round -1 is the warm-up (K/10 round trips).
    for r in -1..p.w4_reps as i64 {
        let n = if r < 0 { p.w4_k / 10 } else { p.w4_k };
        ROUND_TRIPS.store(0, Relaxed);
        TARGET.store(n, Relaxed);
        let t0 = now_ns();
        write1(TO_ECHO.load(Relaxed));
        while ROUND_TRIPS.load(Relaxed) < n {
            c.run_once();
        }
        let t1 = now_ns();
        total += n;
        if r >= 0 {
            reps.push((t1 - t0) as f64 / n as f64);
        }
    }
    // Read by `tests/benches/syscalls.sh` (W4 and W4a run in one process).
    eprintln!("  W4: {total} round trips in all (warm-up included)");
    vec![Measure::new("W4a", p.w4_k, median(&reps)).phase("readable-await")]
}
