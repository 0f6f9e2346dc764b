//! The async battery: every scenario runs on every backend this build includes
//! (`anyloop_backends::LoopChoice::built()`), each on a fresh loop thread under a watchdog.
//!
//! What it pins: futures resolve on the loop thread; a dropped future removes its
//! registration and its waker is never called afterwards; no wake-up is lost when a waker
//! fires from another thread while the loop blocks; a future polled on a loop that has gone
//! resolves to `LoopGone` instead of hanging; spawn, join, abort, detach, panics, executor
//! drop; sleep order and never early; interval ticks; registry streams in order, ending at
//! close; readiness on a socket pair with real reads and writes, level-triggered semantics.

mod support;

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, Registry, Runner};
use anyloop_async::{
    block_on, events, events_with, readable, sleep, spawn_local, timeout, Async, Interval,
    JoinError, LocalExecutor, TimeoutError,
};
use anyloop_backends::LoopChoice;
use support::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub seq: u32,
    pub topic: u32,
}

pub struct Shutdown;

anyloop::event_set! {
    /// The battery's events.
    pub enum TestEvent {
        kind: TestKind,
        key: u32,
        /// A numbered note about a topic.
        Note(Note) => topic,
        /// The end.
        Shutdown(Shutdown),
    }
}

/// A future that parks its waker where another thread can wake it, and completes once a
/// flag is set.
#[derive(Default)]
struct Remote {
    flag: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Remote {
    fn fire(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap().take() {
            waker.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.flag.swap(false, Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn futures_resolve_on_the_loop_thread() {
    on_every_loop("futures_resolve_on_the_loop_thread", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();
        let me = thread::current().id();
        let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).unwrap();
        let seen: Rc<RefCell<Vec<(&'static str, ThreadId)>>> = Rc::default();
        let (ours, theirs) = socket_pair();
        let remote = Arc::new(Remote::default());
        let mut stream = events::<Note, _>(&registry).unwrap();

        // Other threads write to the socket, emit an event and wake a waker.
        let emitter = registry.clone();
        let remote2 = Arc::clone(&remote);
        let helper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            (&theirs).write_all(b"x").unwrap();
            emitter.emit(Note { seq: 1, topic: 1 });
            remote2.fire();
            theirs
        });

        let task = spawn_local(&lp, {
            let (lp, seen) = (lp.clone(), Rc::clone(&seen));
            async move {
                let note = |what| seen.borrow_mut().push((what, thread::current().id()));
                sleep(&lp, Duration::from_millis(1)).await.unwrap();
                note("sleep");
                let socket = Async::new(&lp, ours).unwrap();
                socket.readable().await.unwrap();
                note("readable");
                socket.writable().await.unwrap();
                note("writable");
                let mut interval = Interval::new(&lp, Duration::from_millis(1)).unwrap();
                interval.tick().await.unwrap();
                note("tick");
                assert_eq!(stream.next().await, Some(Note { seq: 1, topic: 1 }));
                note("stream");
                remote.wait().await;
                note("remote waker");
                let inner = spawn_local(&lp, async { thread::current().id() }).unwrap();
                assert_eq!(inner.await.unwrap(), thread::current().id());
                note("join");
                assert!(lp.is_loop_thread());
            }
        })
        .unwrap();
        block_on(&mut *runner, timeout(&lp, LONG, task))
            .unwrap()
            .expect("in time")
            .expect("the task finished");
        helper.join().unwrap();
        let seen = seen.borrow();
        assert_eq!(seen.len(), 7, "{seen:?}");
        for (what, thread) in seen.iter() {
            assert_eq!(
                *thread, me,
                "{what} resolved off the loop thread on {choice}"
            );
        }
    });
}

#[test]
fn a_dropped_future_removes_its_registration_and_never_wakes() {
    on_every_loop("a_dropped_future_removes_its_registration", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();
        let base = registrations(lp.stats());

        // Async: a readable future dropped while waiting; its waker is never called.
        let (ours, theirs) = socket_pair();
        let socket = Async::new(&lp, ours).unwrap();
        assert_eq!(registrations(lp.stats()), (base.0 + 1, base.1));
        let (count, waker) = CountingWaker::new();
        {
            let mut wait = pin!(socket.readable());
            assert!(wait
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_pending());
        }
        (&theirs).write_all(b"data").unwrap();
        settle(&mut *runner, 5);
        assert_eq!(
            count.wakes(),
            0,
            "a dropped readable() was woken on {choice}"
        );
        drop(socket);
        assert_eq!(
            registrations(lp.stats()),
            base,
            "Async's watch stays on {choice}"
        );

        // readable(fd): its own watch goes with it.
        let (ours, theirs) = socket_pair();
        let (count, waker) = CountingWaker::new();
        {
            let mut wait = readable(&lp, ours.as_fd());
            assert!(poll_once(&mut wait, &waker).is_pending());
            assert_eq!(registrations(lp.stats()), (base.0 + 1, base.1));
        }
        assert_eq!(
            registrations(lp.stats()),
            base,
            "readable(fd)'s watch stays"
        );
        (&theirs).write_all(b"data").unwrap();
        settle(&mut *runner, 5);
        assert_eq!(
            count.wakes(),
            0,
            "a dropped readable(fd) was woken on {choice}"
        );

        // Sleep.
        let (count, waker) = CountingWaker::new();
        {
            let mut nap = sleep(&lp, Duration::from_millis(1));
            assert!(poll_once(&mut nap, &waker).is_pending());
            assert_eq!(registrations(lp.stats()), (base.0, base.1 + 1));
        }
        assert_eq!(registrations(lp.stats()), base, "the sleep's timer stays");
        thread::sleep(Duration::from_millis(3));
        settle(&mut *runner, 5);
        assert_eq!(count.wakes(), 0, "a dropped sleep was woken on {choice}");

        // Interval.
        let (count, waker) = CountingWaker::new();
        {
            let mut interval = Interval::new(&lp, Duration::from_millis(1)).unwrap();
            let mut tick = pin!(interval.tick());
            assert!(tick
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_pending());
        }
        assert_eq!(
            registrations(lp.stats()),
            base,
            "the interval's timer stays"
        );
        thread::sleep(Duration::from_millis(3));
        settle(&mut *runner, 5);
        assert_eq!(count.wakes(), 0, "a dropped interval was woken on {choice}");

        // Event stream: dropping it deregisters its callback.
        let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).unwrap();
        let (count, waker) = CountingWaker::new();
        {
            let mut stream = events::<Note, _>(&registry).unwrap();
            let mut next = pin!(stream.next());
            assert!(next
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_pending());
            assert_eq!(registry.callbacks(), 1);
        }
        assert_eq!(registry.callbacks(), 0, "the stream's callback stays");
        assert!(
            !registry.emit(Note { seq: 1, topic: 1 }),
            "nobody listens any more"
        );
        settle(&mut *runner, 5);
        assert_eq!(count.wakes(), 0, "a dropped stream was woken on {choice}");
        registry.close().unwrap();
        settle(&mut *runner, 3);
        let base = registrations(lp.stats());

        // A task: dropping its handle drops its future at once, with the sleep and the watch
        // it held; a later wake of its waker polls nothing.
        let dropped = Rc::new(Cell::new(false));
        let polls = Rc::new(Cell::new(0u32));
        let parked: Arc<Mutex<Option<Waker>>> = Arc::default();
        let (ours, _theirs) = socket_pair();
        let handle = spawn_local(&lp, {
            let (lp, dropped, polls, parked) =
                (lp.clone(), dropped.clone(), polls.clone(), parked.clone());
            async move {
                struct OnDrop(Rc<Cell<bool>>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        self.0.set(true);
                    }
                }
                let _guard = OnDrop(dropped);
                let socket = Async::new(&lp, ours).unwrap();
                let nap = sleep(&lp, Duration::from_secs(3600));
                let read = socket.readable();
                let mut both = pin!(async { futures_util::join!(nap, read) });
                poll_fn(|cx| {
                    polls.set(polls.get() + 1);
                    *parked.lock().unwrap() = Some(cx.waker().clone());
                    let _ = both.as_mut().poll(cx);
                    Poll::<()>::Pending
                })
                .await;
            }
        })
        .unwrap();
        assert!(iterate_until(&mut *runner, || polls.get() >= 1));
        // The task's timer, the sleep's timer and the socket's watch.
        assert_eq!(registrations(lp.stats()), (base.0 + 1, base.1 + 2));
        drop(handle);
        assert!(
            dropped.get(),
            "the cancelled task's future was not dropped at once"
        );
        assert_eq!(
            registrations(lp.stats()),
            base,
            "a cancelled task left registrations"
        );
        let waker = parked.lock().unwrap().take().unwrap();
        thread::spawn(move || waker.wake()).join().unwrap();
        settle(&mut *runner, 5);
        assert_eq!(
            polls.get(),
            1,
            "a cancelled task was polled again on {choice}"
        );
        assert_eq!(registrations(lp.stats()), base);
        assert_eq!(lp.stats().pending_frees, 0);
    });
}

#[test]
fn no_wake_up_is_lost_when_another_thread_wakes_a_blocked_loop() {
    on_every_loop("no_lost_wake_up", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();
        // Waker shipped to another thread, fired after a varying delay (0 to ~1 ms, so some
        // wakes land before the loop blocks, some while it blocks, some while it polls).
        for round in 0..200u32 {
            let remote = Arc::new(Remote::default());
            let done = Rc::new(Cell::new(false));
            let task = spawn_local(&lp, {
                let (remote, done) = (remote.clone(), done.clone());
                async move {
                    remote.wait().await;
                    done.set(true);
                }
            })
            .unwrap();
            // Let the task park its waker first.
            while remote.waker.lock().unwrap().is_none() {
                runner.run_once(Some(Duration::from_millis(1))).unwrap();
            }
            let remote2 = remote.clone();
            let firing = thread::spawn(move || {
                if round % 4 != 0 {
                    thread::sleep(Duration::from_micros(u64::from(round % 7) * 150));
                }
                remote2.fire();
            });
            // Blocks with no timeout: only the waker can end the wait.
            while !done.get() {
                runner.run_once(None).unwrap();
            }
            firing.join().unwrap();
            task.detach();
        }
        // The root future of block_on, woken from another thread while the loop blocks.
        for _ in 0..50 {
            let remote = Arc::new(Remote::default());
            let remote2 = remote.clone();
            let firing = thread::spawn(move || {
                thread::sleep(Duration::from_micros(300));
                remote2.fire();
            });
            block_on(&mut *runner, remote.wait()).unwrap();
            firing.join().unwrap();
        }
        // A channel: futures-channel's oneshot, sent from another thread.
        for _ in 0..50 {
            let (tx, rx) = futures_channel::oneshot::channel::<u32>();
            let sender = thread::spawn(move || {
                thread::sleep(Duration::from_micros(200));
                tx.send(7).unwrap();
            });
            let task = spawn_local(&lp, rx).unwrap();
            assert_eq!(block_on(&mut *runner, task).unwrap().unwrap(), Ok(7));
            sender.join().unwrap();
        }
        settle(&mut *runner, 2);
        assert_eq!(registrations(lp.stats()), (0, 0));
    });
}

#[test]
fn a_future_on_a_loop_that_has_gone_is_an_error() {
    on_every_loop("a_future_on_a_gone_loop", |choice| {
        // Made before, first polled after the loop was dropped.
        let runner = create(choice);
        let lp = runner.handle();
        let mut nap = sleep(&lp, Duration::from_millis(1));
        let (ours, _theirs) = socket_pair();
        let mut wait = readable(&lp, ours.as_fd());
        drop(runner);
        let (_count, waker) = CountingWaker::new();
        assert!(matches!(
            poll_once(&mut nap, &waker),
            Poll::Ready(Err(Error::LoopGone))
        ));
        assert!(matches!(
            poll_once(&mut wait, &waker),
            Poll::Ready(Err(Error::LoopGone))
        ));
        let (ours, _theirs) = socket_pair();
        assert!(matches!(Async::new(&lp, ours), Err(Error::LoopGone)));
        assert!(matches!(
            Interval::new(&lp, Duration::from_millis(1)),
            Err(Error::LoopGone)
        ));
        assert!(matches!(spawn_local(&lp, async {}), Err(Error::LoopGone)));

        // Waiting when the loop is dropped (on its thread): each is woken and says so.
        let runner = create(choice);
        let lp = runner.handle();
        let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).unwrap();
        let (ours, _theirs) = socket_pair();
        let socket = Async::new(&lp, ours).unwrap();
        let mut interval = Interval::new(&lp, Duration::from_secs(3600)).unwrap();
        let mut stream = events::<Note, _>(&registry).unwrap();
        let mut nap = sleep(&lp, Duration::from_secs(3600));
        let never = spawn_local(&lp, std::future::pending::<()>()).unwrap();
        let mut never = pin!(never);
        let (count, waker) = CountingWaker::new();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut read = pin!(socket.readable());
        let mut tick = pin!(interval.tick());
        assert!(read.as_mut().poll(&mut cx).is_pending());
        assert!(tick.as_mut().poll(&mut cx).is_pending());
        assert!(pin!(stream.next()).poll(&mut cx).is_pending());
        assert!(std::pin::Pin::new(&mut nap).poll(&mut cx).is_pending());
        assert!(never.as_mut().poll(&mut cx).is_pending());
        drop(runner);
        assert!(
            count.wakes() >= 4,
            "only {} wakes when the loop went",
            count.wakes()
        );
        assert!(matches!(
            read.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::LoopGone))
        ));
        assert!(matches!(
            tick.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::LoopGone))
        ));
        assert!(matches!(
            std::pin::Pin::new(&mut nap).poll(&mut cx),
            Poll::Ready(Err(Error::LoopGone))
        ));
        assert!(matches!(
            never.as_mut().poll(&mut cx),
            Poll::Ready(Err(JoinError::LoopGone))
        ));
        assert!(matches!(
            pin!(stream.next()).poll(&mut cx),
            Poll::Ready(None)
        ));
    });
}

#[test]
fn spawn_join_abort_detach_and_panics() {
    on_every_loop("spawn_join_abort", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();

        // Output, and a task spawned by a task.
        let outer = spawn_local(&lp, {
            let lp = lp.clone();
            async move {
                let inner = spawn_local(&lp, async { Rc::new(21) }).unwrap();
                *inner.await.unwrap() * 2
            }
        })
        .unwrap();
        assert_eq!(block_on(&mut *runner, outer).unwrap(), Ok(42));

        // abort: the future is dropped at once, the handle says Cancelled.
        let dropped = Rc::new(Cell::new(false));
        struct OnDrop(Rc<Cell<bool>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let guard = OnDrop(dropped.clone());
        let task = spawn_local(&lp, {
            let lp = lp.clone();
            async move {
                let _guard = guard;
                sleep(&lp, Duration::from_secs(3600)).await.unwrap();
            }
        })
        .unwrap();
        settle(&mut *runner, 2);
        assert!(!task.is_finished());
        task.abort();
        assert!(dropped.get());
        assert!(task.is_finished());
        assert_eq!(
            block_on(&mut *runner, task).unwrap(),
            Err(JoinError::Cancelled)
        );

        // detach: the task runs to its end without its handle.
        let ran = Rc::new(Cell::new(false));
        spawn_local(&lp, {
            let (lp, ran) = (lp.clone(), ran.clone());
            async move {
                sleep(&lp, Duration::from_millis(2)).await.unwrap();
                ran.set(true);
            }
        })
        .unwrap()
        .detach();
        assert!(iterate_until(&mut *runner, || ran.get()));

        // A panic with a handle: the handle gets it, the loop goes on.
        let task = spawn_local(&lp, async {
            if true {
                panic!("boom in a task");
            }
        })
        .unwrap();
        match block_on(&mut *runner, task).unwrap() {
            Err(JoinError::Panicked { message }) => assert_eq!(message, "boom in a task"),
            other => panic!("expected a panic, got {other:?}"),
        }

        // A detached panic is reported by the loop; other tasks still run.
        let other_ran = Rc::new(Cell::new(false));
        spawn_local(&lp, async { panic!("detached boom") })
            .unwrap()
            .detach();
        spawn_local(&lp, {
            let other_ran = other_ran.clone();
            async move { other_ran.set(true) }
        })
        .unwrap()
        .detach();
        let mut reported = None;
        let deadline = Instant::now() + LONG;
        while (reported.is_none() || !other_ran.get()) && Instant::now() < deadline {
            if let Err(error) = runner.run_once(Some(Duration::from_millis(5))) {
                reported = Some(error);
            }
        }
        match reported {
            Some(Error::CallbackPanicked { message, .. }) => {
                assert!(message.contains("detached boom"), "{message}")
            }
            other => panic!("expected CallbackPanicked, got {other:?}"),
        }
        assert!(other_ran.get());

        // A task that drops its own handle: cancelled after its current poll.
        let slot: Rc<RefCell<Option<anyloop_async::JoinHandle<()>>>> = Rc::default();
        let after = Rc::new(Cell::new(false));
        let handle = spawn_local(&lp, {
            let (lp, slot, after) = (lp.clone(), slot.clone(), after.clone());
            async move {
                sleep(&lp, Duration::ZERO).await.unwrap();
                drop(slot.borrow_mut().take()); // ourselves
                sleep(&lp, Duration::ZERO).await.unwrap();
                after.set(true);
            }
        })
        .unwrap();
        *slot.borrow_mut() = Some(handle);
        settle(&mut *runner, 6);
        assert!(!after.get(), "a task that cancelled itself went on");

        // LocalExecutor: dropping it cancels its tasks, detached ones too.
        let executor = LocalExecutor::new(&lp);
        let alive = Rc::new(Cell::new(0));
        for _ in 0..3 {
            let (lp, alive) = (lp.clone(), alive.clone());
            executor
                .spawn(async move {
                    alive.set(alive.get() + 1);
                    sleep(&lp, Duration::from_secs(3600)).await.unwrap();
                })
                .unwrap()
                .detach();
        }
        let quick = executor.spawn(async { 5 }).unwrap();
        assert_eq!(block_on(&mut *runner, quick).unwrap(), Ok(5));
        assert!(iterate_until(&mut *runner, || alive.get() == 3));
        assert_eq!(executor.len(), 3, "a finished task still counted");
        drop(executor);
        settle(&mut *runner, 2);
        assert_eq!(
            registrations(lp.stats()),
            (0, 0),
            "the executor's tasks stay"
        );

        // Off the loop thread, a task is refused.
        let lp2 = lp.clone();
        let refused = thread::spawn(move || {
            matches!(spawn_local(&lp2, async {}), Err(Error::WrongThread { .. }))
        });
        assert!(refused.join().unwrap());
    });
}

#[test]
fn sleeps_resolve_in_deadline_order_and_never_early() {
    on_every_loop("sleep_order", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();
        let order: Rc<RefCell<Vec<u64>>> = Rc::default();
        let started = Instant::now();
        let executor = LocalExecutor::new(&lp);
        for ms in [30u64, 10, 20, 0, 15] {
            let (lp, order) = (lp.clone(), order.clone());
            executor
                .spawn(async move {
                    let asked = Instant::now();
                    sleep(&lp, Duration::from_millis(ms)).await.unwrap();
                    assert!(asked.elapsed() >= Duration::from_millis(ms), "early");
                    order.borrow_mut().push(ms);
                })
                .unwrap()
                .detach();
        }
        assert!(iterate_until(&mut *runner, || order.borrow().len() == 5));
        assert_eq!(*order.borrow(), [0, 10, 15, 20, 30]);
        assert!(started.elapsed() >= Duration::from_millis(30));

        // reset: later, then earlier.
        let result = block_on(&mut *runner, {
            let lp = lp.clone();
            async move {
                let mut nap = sleep(&lp, Duration::from_secs(3600));
                let until = Instant::now() + Duration::from_millis(5);
                nap.reset(until)?;
                nap.await?;
                assert!(Instant::now() >= until);
                Ok::<_, Error>(())
            }
        });
        result.unwrap().unwrap();

        // timeout: a future that finishes in time, one that does not.
        let quick = block_on(
            &mut *runner,
            timeout(&lp, LONG, sleep(&lp, Duration::from_millis(1))),
        )
        .unwrap();
        assert!(matches!(quick, Ok(Ok(()))));
        let slow = block_on(
            &mut *runner,
            timeout(
                &lp,
                Duration::from_millis(3),
                sleep(&lp, Duration::from_secs(3600)),
            ),
        )
        .unwrap();
        assert!(matches!(slow, Err(TimeoutError::Elapsed { .. })));
        settle(&mut *runner, 2);
        assert_eq!(registrations(lp.stats()), (0, 0));
    });
}

#[test]
fn intervals_tick_and_merge_missed_firings() {
    on_every_loop("interval_ticks", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();
        let period = Duration::from_millis(3);
        let (ticks, late) = block_on(&mut *runner, {
            let lp = lp.clone();
            async move {
                let started = Instant::now();
                let mut interval = Interval::new(&lp, period)?;
                let mut ticks = 0;
                while ticks < 5 {
                    ticks += interval.tick().await?;
                }
                assert!(started.elapsed() >= period * 5, "ticked early");
                // Busy elsewhere for a while: the firings meanwhile come as one tick.
                sleep(&lp, period * 6).await?;
                let late = interval.tick().await?;
                interval.reset()?;
                let after_reset = Instant::now();
                interval.tick().await?;
                assert!(after_reset.elapsed() >= period);
                Ok::<_, Error>((ticks, late))
            }
        })
        .unwrap()
        .unwrap();
        assert!(ticks >= 5);
        assert!(late >= 1);
        settle(&mut *runner, 2);
        assert_eq!(registrations(lp.stats()), (0, 0));
    });
}

#[test]
fn registry_streams_deliver_in_order_and_end_at_close() {
    on_every_loop("registry_stream", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();
        let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).unwrap();
        let mut all = events::<Note, _>(&registry).unwrap();
        let mut topic2 =
            events_with(&registry, |listen| listen.object(2), |n: &Note| n.seq).unwrap();
        let emitter = registry.clone();
        let delivered = Arc::new(AtomicUsize::new(0));
        let seen = delivered.clone();
        let producer = thread::spawn(move || {
            for seq in 0..1000 {
                emitter.emit(Note {
                    seq,
                    topic: seq % 3,
                });
                if seq % 100 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            // Close (from this thread) once everything was delivered: a close discards the
            // events still queued (E16).
            let deadline = Instant::now() + LONG;
            while seen.load(Ordering::SeqCst) < 1000 && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            emitter.close().unwrap();
        });
        let (got, got2) = block_on(&mut *runner, async {
            let mut got = Vec::new();
            while let Some(note) = all.next().await {
                got.push(note.seq);
                delivered.store(got.len(), Ordering::SeqCst);
            }
            let mut got2 = Vec::new();
            while let Some(seq) = topic2.next().await {
                got2.push(seq);
            }
            (got, got2)
        })
        .unwrap();
        producer.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>(), "out of order or lost");
        assert_eq!(got2, (0..1000).filter(|s| s % 3 == 2).collect::<Vec<_>>());
        assert_eq!(all.queued(), 0);
        drop((all, topic2));
        settle(&mut *runner, 3);
        assert_eq!(registrations(lp.stats()), (0, 0));
    });
}

#[test]
fn readiness_on_a_socket_pair_with_real_reads_and_writes() {
    on_every_loop("socket_pair", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();
        let (a, b) = socket_pair();
        let a = Rc::new(Async::new(&lp, a).unwrap());
        let b = Rc::new(Async::new(&lp, b).unwrap());

        // 4 MiB through the pair: the writer fills the socket buffer and waits for writable,
        // the reader drains it.
        const TOTAL: usize = 4 << 20;
        let writer = spawn_local(&lp, {
            let a = a.clone();
            async move {
                let mut sent = 0;
                let mut waits = 0;
                while sent < TOTAL {
                    let want = (TOTAL - sent).min(65536);
                    let chunk: Vec<u8> = (sent..sent + want).map(|p| (p % 251) as u8).collect();
                    match a.get_ref().write(&chunk) {
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            waits += 1;
                            a.writable().await.map_err(io::Error::other)?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok::<_, io::Error>(waits)
            }
        })
        .unwrap();
        let reader = spawn_local(&lp, {
            let b = b.clone();
            async move {
                let mut buf = vec![0u8; 50_000];
                let mut got = 0usize;
                while got < TOTAL {
                    let n = b.read_with(|mut s| s.read(&mut buf)).await?;
                    for (i, byte) in buf[..n].iter().enumerate() {
                        assert_eq!(*byte, ((got + i) % 251) as u8, "corrupt");
                    }
                    got += n;
                }
                Ok::<_, io::Error>(got)
            }
        })
        .unwrap();
        let (waits, got) = block_on(&mut *runner, async {
            (
                writer.await.unwrap().unwrap(),
                reader.await.unwrap().unwrap(),
            )
        })
        .unwrap();
        assert_eq!(got, TOTAL);
        assert!(
            waits > 0,
            "the writer never had to wait: the test proves nothing"
        );

        // Two waiters on the same direction resolve on the same report; a resolved readable
        // is no promise: the second reader finds nothing and waits again, without spinning.
        let polls_b = Rc::new(Cell::new(0u32));
        let first = spawn_local(&lp, {
            let b = b.clone();
            async move {
                b.readable().await.unwrap();
                let mut byte = [0u8; 1];
                b.get_ref().read(&mut byte).unwrap()
            }
        })
        .unwrap();
        let second = spawn_local(&lp, {
            let (b, polls_b) = (b.clone(), polls_b.clone());
            async move {
                b.readable().await.unwrap();
                let mut byte = [0u8; 1];
                let mut early = pin!(async {
                    // Let the first waiter take the byte.
                    sleep(b.event_loop(), Duration::ZERO).await.unwrap();
                    b.get_ref().read(&mut byte)
                });
                let outcome = poll_fn(|cx| early.as_mut().poll(cx)).await;
                assert_eq!(outcome.unwrap_err().kind(), io::ErrorKind::WouldBlock);
                // Waits again, for a new report.
                let mut wait = pin!(b.readable());
                poll_fn(|cx| {
                    polls_b.set(polls_b.get() + 1);
                    wait.as_mut().poll(cx)
                })
                .await
                .unwrap()
            }
        })
        .unwrap();
        settle(&mut *runner, 2);
        a.get_ref().write_all(b"1").unwrap();
        let got = block_on(&mut *runner, first).unwrap().unwrap();
        assert_eq!(got, 1);
        settle(&mut *runner, 20);
        assert_eq!(polls_b.get(), 1, "the second waiter spun on {choice}");
        a.get_ref().write_all(b"2").unwrap();
        let events = block_on(&mut *runner, timeout(&lp, LONG, second))
            .unwrap()
            .expect("in time")
            .unwrap();
        assert!(events.contains(IoEvents::READABLE));

        // futures-io: AsyncWrite / AsyncRead on &Async.
        block_on(&mut *runner, async {
            use futures_util::io::{AsyncReadExt, AsyncWriteExt};
            let mut to = &*a;
            let mut from = &*b;
            to.write_all(b"hello").await.unwrap(); // the "2" from above is still unread
            let mut buf = [0u8; 6];
            from.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"2hello");
        })
        .unwrap();

        // The peer hangs up: readable resolves (HANGUP and/or READABLE) and a read gives 0.
        let b = Rc::try_unwrap(b).ok().unwrap();
        drop(a);
        let events = block_on(&mut *runner, b.readable()).unwrap().unwrap();
        assert!(
            events.intersects(IoEvents::READABLE | IoEvents::HANGUP),
            "{events:?}"
        );
        assert_eq!(b.get_ref().read(&mut [0u8; 8]).unwrap(), 0);
        drop(b);
        settle(&mut *runner, 2);
        assert_eq!(registrations(lp.stats()), (0, 0));
    });
}

#[test]
fn made_off_the_loop_thread_is_wrong_thread() {
    on_every_loop("wrong_thread", |choice| {
        let runner = create(choice);
        let lp = runner.handle();
        let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).unwrap();
        let (ours, _theirs) = socket_pair();
        let outcome = thread::spawn(move || {
            let (_count, waker) = CountingWaker::new();
            let mut nap = sleep(&lp, Duration::from_millis(1));
            let nap_err = matches!(
                poll_once(&mut nap, &waker),
                Poll::Ready(Err(Error::WrongThread { .. }))
            );
            let async_err = matches!(Async::new(&lp, ours), Err(Error::WrongThread { .. }));
            let stream_err = matches!(events::<Note, _>(&registry), Err(Error::WrongThread { .. }));
            (nap_err, async_err, stream_err)
        })
        .join()
        .unwrap();
        assert_eq!(outcome, (true, true, true));
        drop(runner);
    });
}

#[test]
fn block_on_a_future_that_wakes_itself_does_not_block() {
    on_every_loop("self_waking", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();
        let before = lp.stats().iterations;
        let mut left = 100;
        block_on(
            &mut *runner,
            poll_fn(|cx| {
                if left == 0 {
                    return Poll::Ready(());
                }
                left -= 1;
                cx.waker().wake_by_ref();
                Poll::Pending
            }),
        )
        .unwrap();
        assert!(lp.stats().iterations > before);
        // sleep(ZERO) lets the loop run once.
        let before = lp.stats().iterations;
        block_on(&mut *runner, sleep(&lp, Duration::ZERO))
            .unwrap()
            .unwrap();
        assert!(lp.stats().iterations > before);
    });
}

/// `LoopChoice` is the one backend chooser: the battery covers what the build includes.
#[test]
fn the_battery_covers_every_built_backend() {
    let built: Vec<&str> = LoopChoice::built().map(LoopChoice::name).collect();
    for name in [
        "select",
        "select-mio",
        "select-poll",
        "glib",
        "calloop",
        "tokio",
        "tokio-multi",
    ] {
        assert!(
            built.contains(&name),
            "{name} is not built into the battery"
        );
    }
}

/// A loop dropped on another thread cannot free this thread's thread-bound callbacks (their
/// drop waits for this thread, R42), so nothing wakes the futures: polled again, each still
/// finds out and says so instead of hanging. (`SelectLoop` is `Send`; the other loops are
/// bound to their thread, so this is the built-in loop only.)
#[test]
fn a_loop_dropped_on_another_thread_ends_its_futures_when_polled() {
    watchdog("loop dropped elsewhere", || {
        let event_loop = anyloop_select::SelectLoop::new().unwrap();
        let lp = event_loop.handle();
        let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).unwrap();
        let (ours, _theirs) = socket_pair();
        let socket = Async::new(&lp, ours).unwrap();
        let mut interval = Interval::new(&lp, Duration::from_secs(3600)).unwrap();
        let mut stream = events::<Note, _>(&registry).unwrap();
        let mut nap = sleep(&lp, Duration::from_secs(3600));
        let never = spawn_local(&lp, std::future::pending::<()>()).unwrap();
        let mut never = pin!(never);
        let (_count, waker) = CountingWaker::new();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut read = pin!(socket.readable());
        let mut tick = pin!(interval.tick());
        let mut next = pin!(stream.next());
        assert!(read.as_mut().poll(&mut cx).is_pending());
        assert!(tick.as_mut().poll(&mut cx).is_pending());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        assert!(std::pin::Pin::new(&mut nap).poll(&mut cx).is_pending());
        assert!(never.as_mut().poll(&mut cx).is_pending());
        thread::spawn(move || drop(event_loop)).join().unwrap();
        assert!(matches!(
            read.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::LoopGone))
        ));
        assert!(matches!(
            tick.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::LoopGone))
        ));
        assert!(matches!(
            std::pin::Pin::new(&mut nap).poll(&mut cx),
            Poll::Ready(Err(Error::LoopGone))
        ));
        assert!(matches!(
            never.as_mut().poll(&mut cx),
            Poll::Ready(Err(JoinError::LoopGone))
        ));
        assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(None)));
    });
}

/// A wake that reaches a task while that same task is being polled (its poll made one of the
/// crate's callbacks run synchronously: a registry's `close_with` on the loop thread delivers
/// the closing event at once) is not lost: the task is polled again.
#[test]
fn a_wake_during_the_tasks_own_poll_is_not_lost() {
    on_every_loop("wake_during_own_poll", |choice| {
        let mut runner = create(choice);
        let lp = runner.handle();
        let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).unwrap();
        let mut closing =
            events_with(&registry, |listen| listen, |_: &Shutdown| "closing").unwrap();
        let task = spawn_local(&lp, {
            let registry = registry.clone();
            async move {
                let (first, closed) =
                    futures_util::join!(closing.next(), async { registry.close_with(Shutdown) });
                closed.unwrap();
                (first, closing.next().await)
            }
        })
        .unwrap();
        let outcome = block_on(&mut *runner, timeout(&lp, LONG, task))
            .unwrap()
            .expect("the task was woken again")
            .unwrap();
        assert_eq!(outcome, (Some("closing"), None));
    });
}
