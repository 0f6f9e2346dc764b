//! tokio used directly, as an application would without anyloop: a current-thread runtime and
//! a `LocalSet`, one task per watch awaiting its `AsyncFd`, one task per timer awaiting a
//! `tokio::time::Sleep` (re-armed with `Sleep::reset`, removed with `abort`), a spawned task
//! per zero-delay one-shot, `Handle::spawn` or a `tokio::sync::mpsc` channel for cross-thread
//! wake-ups. The yardstick of the `anyloop-tokio` backend.
//!
//! A watch task clears tokio's readiness after its callback, as tokio code does once it has
//! drained the fd (the workloads' callbacks read the one byte written per event): tokio's
//! edge-based readiness used the idiomatic way, with none of the level-triggered re-check that
//! anyloop's contract requires of `anyloop-tokio` ([R8](anyloop::contract#r8)).
//!
//! One loop iteration (`run_once`) is one `LocalSet::block_on` that returns once a callback
//! ran, as `anyloop_tokio::TokioLoop::run_once` is one `block_on` for one anyloop iteration.
//!
//! A W7/W8 watch is a task awaiting `AsyncFd::ready` for the interest its callback asked for
//! last (the fd is registered once for reading and writing: changing what a task awaits costs
//! no kernel call), and clearing tokio's readiness only when the callback's I/O drained the fd
//! (a short read or write, or `EAGAIN`), as tokio's own streams do, and spending one unit of
//! the task's budget per callback as they do: a socket that stays ready is served without
//! asking the kernel again until the budget (128) runs out.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use anyloop::IoEvents;
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::runtime::{Builder, Runtime};
use tokio::task::{JoinHandle, LocalSet};
use tokio::time::{Instant, Sleep};

use crate::contender::{oneshot_fired, xt_fired, Contender, Step};
use crate::sys::borrow;

thread_local! {
    /// Callbacks run on this (loop) thread so far: what `run_once` waits to see move.
    static PROGRESS: Cell<u64> = const { Cell::new(0) };
    /// The `run_once` waiting for progress, if any.
    static WAITER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Counts a callback and wakes the `run_once` waiting for one.
fn progress() {
    PROGRESS.with(|p| p.set(p.get() + 1));
    if let Some(waker) = WAITER.with(|w| w.borrow_mut().take()) {
        waker.wake();
    }
}

/// What tokio's readiness tells an anyloop-style watch.
fn told(ready: Ready) -> IoEvents {
    let mut events = IoEvents::empty();
    if ready.is_readable() {
        events |= IoEvents::READABLE;
    }
    if ready.is_writable() {
        events |= IoEvents::WRITABLE;
    }
    if ready.is_error() {
        events |= IoEvents::ERROR;
    }
    if ready.is_read_closed() || ready.is_write_closed() {
        events |= IoEvents::HANGUP;
    }
    events
}

/// One timer: the task that waits for it, and its `Sleep`, re-armed from outside.
struct RawTimer {
    task: JoinHandle<()>,
    sleep: Rc<RefCell<Pin<Box<Sleep>>>>,
}

/// Decrements the live-timer count when a timer task's future is dropped (fired or aborted).
struct Live(Rc<Cell<usize>>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Raw tokio on a current-thread runtime of the loop thread.
pub struct TokioRaw {
    // Dropped first: the tasks (and their `AsyncFd`s) go before the runtime.
    local: LocalSet,
    timers: Vec<Option<RawTimer>>,
    /// Timer tasks whose future is not dropped yet.
    live: Rc<Cell<usize>>,
    runtime: Runtime,
}

impl Drop for TokioRaw {
    fn drop(&mut self) {
        for timer in self.timers.iter().flatten() {
            timer.task.abort();
        }
    }
}

impl TokioRaw {
    /// Runs the runtime until `done` holds.
    fn block_until(&mut self, mut done: impl FnMut() -> bool) {
        self.local.block_on(
            &self.runtime,
            poll_fn(|cx| {
                if done() {
                    return Poll::Ready(());
                }
                WAITER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
                Poll::Pending
            }),
        );
    }
}

impl Contender for TokioRaw {
    type Timer = usize;

    fn make() -> Self {
        TokioRaw {
            local: LocalSet::new(),
            timers: Vec::new(),
            live: Rc::new(Cell::new(0)),
            runtime: Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
        }
    }

    fn watch_add(&mut self, fd: RawFd, mut cb: impl FnMut(RawFd) + Send + 'static) {
        let _context = self.runtime.enter();
        // SAFETY: the workload driver keeps `fd` open, naming the same pipe or socket, until
        // after it dropped this contender, which drops the task owning the `AsyncFd` (see
        // `sys::borrow`); nothing else closes or duplicates onto it meanwhile.
        let io = unsafe { AsyncFd::register_with_interest(borrow(fd), Interest::READABLE) }
            .unwrap_or_else(|err| panic!("AsyncFd::register: {}", err.into_parts().1));
        self.local.spawn_local(async move {
            loop {
                let Ok(mut guard) = io.readable().await else {
                    return;
                };
                cb(fd);
                progress();
                // The callback drained the fd (one byte per event): tokio's idiom.
                guard.clear_ready();
            }
        });
    }

    fn io_watch_add(
        &mut self,
        fd: RawFd,
        interest: IoEvents,
        mut cb: impl FnMut(RawFd, IoEvents) -> Step + Send + 'static,
    ) {
        let _context = self.runtime.enter();
        // SAFETY: as in `watch_add`: the driver keeps `fd` open until after it dropped this
        // contender, and with it the task owning the `AsyncFd`.
        let io = unsafe {
            AsyncFd::register_with_interest(borrow(fd), Interest::READABLE | Interest::WRITABLE)
        }
        .unwrap_or_else(|err| panic!("AsyncFd::register: {}", err.into_parts().1));
        self.local.spawn_local(async move {
            let mut interest = interest;
            loop {
                let wanted = match (
                    interest.contains(IoEvents::READABLE),
                    interest.contains(IoEvents::WRITABLE),
                ) {
                    (true, true) => Interest::READABLE | Interest::WRITABLE,
                    (true, false) => Interest::READABLE,
                    (false, true) => Interest::WRITABLE,
                    // Nothing to wait for (no workload disables a watch).
                    (false, false) => return,
                };
                let Ok(mut guard) = io.ready(wanted).await else {
                    return;
                };
                let ready = guard.ready();
                let told = told(ready) & (interest | IoEvents::ALWAYS_REPORTED);
                if told.is_empty() {
                    guard.clear_ready_matching(ready);
                    continue;
                }
                let step = cb(fd, told);
                progress();
                if step.drained {
                    guard.clear_ready_matching(ready);
                }
                drop(guard);
                interest = step.interest;
                // One unit of the task's budget per I/O operation, as tokio's own streams
                // spend it (`AsyncFd::ready` spends none): after 128 the task yields to the
                // runtime, which then also polls its reactor now and then.
                tokio::task::coop::consume_budget().await;
            }
        });
    }

    fn run_once(&mut self) {
        let start = PROGRESS.with(Cell::get);
        self.block_until(|| PROGRESS.with(Cell::get) != start);
    }

    fn timer_add(&mut self, after: Duration, cb: fn()) -> usize {
        let sleep = {
            let _context = self.runtime.enter();
            Rc::new(RefCell::new(Box::pin(tokio::time::sleep(after))))
        };
        let (shared, live) = (sleep.clone(), Live(self.live.clone()));
        self.live.set(self.live.get() + 1);
        let task = self.local.spawn_local(async move {
            let _live = live;
            poll_fn(|cx| shared.borrow_mut().as_mut().poll(cx)).await;
            cb();
            progress();
        });
        self.timers.push(Some(RawTimer { task, sleep }));
        self.timers.len() - 1
    }

    fn timer_update(&mut self, timer: usize, after: Duration) {
        if let Some(timer) = &self.timers[timer] {
            let _context = self.runtime.enter();
            timer
                .sleep
                .borrow_mut()
                .as_mut()
                .reset(Instant::now() + after);
        }
    }

    fn timer_remove(&mut self, timer: usize) {
        if let Some(timer) = self.timers[timer].take() {
            // The task's future (and the `Sleep`'s timer entry) is dropped when the runtime
            // next runs: `timer_drain` waits for that.
            timer.task.abort();
        }
    }

    fn timer_drain(&mut self) {
        self.timers.retain(Option::is_some);
        let (live, left) = (self.live.clone(), self.timers.len());
        // Let the runtime run the cancellations until every removed timer's task is gone.
        self.local.block_on(&self.runtime, async move {
            while live.get() > left {
                tokio::task::yield_now().await;
            }
        });
    }

    fn oneshot0(&mut self) {
        self.local.spawn_local(async {
            oneshot_fired();
            progress();
        });
    }

    fn xt_variants() -> &'static [&'static str] {
        &["spawn", "mpsc"]
    }

    fn xt_setup(&mut self, variant: usize) -> Box<dyn FnMut() + Send> {
        match Self::xt_variants()[variant] {
            "spawn" => {
                let handle = self.runtime.handle().clone();
                Box::new(move || {
                    handle.spawn(async {
                        xt_fired();
                        progress();
                    });
                })
            }
            "mpsc" => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
                self.local.spawn_local(async move {
                    while rx.recv().await.is_some() {
                        xt_fired();
                        progress();
                    }
                });
                Box::new(move || tx.send(()).expect("mpsc send"))
            }
            other => unreachable!("unknown W3 variant {other}"),
        }
    }
}
