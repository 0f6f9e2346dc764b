//! The futures layer, `anyloop-async`, on the backend: what it promises holds on any loop that
//! keeps the contract, and a loop that breaks the contract shows here as a future that never
//! resolves, resolves off its thread, or wakes after it was dropped.
//!
//! Each scenario makes its loop on its own thread ([`Env::create_here`]) and drives it with
//! `block_on`, as an application does. What it pins: futures resolve on the loop thread
//! ([R42](anyloop::contract#r42)); a dropped future removes its registration and its waker is
//! never called afterwards ([R15](anyloop::contract#r15)); no wake-up is lost when a waker
//! fires from another thread while the loop blocks ([R40](anyloop::contract#r40)); a future
//! polled on a loop that has gone resolves to `LoopGone` instead of hanging
//! ([R48](anyloop::contract#r48)); spawn, join, abort, detach, panics
//! ([R54](anyloop::contract#r54)), executor drop; sleeps in deadline order, never early
//! ([R31](anyloop::contract#r31), [R33](anyloop::contract#r33)); interval ticks with missed
//! firings merged ([R30](anyloop::contract#r30)); registry streams in order, ending at close
//! ([E7](anyloop::contract#e7), [E16](anyloop::contract#e16)); readiness on a socket pair
//! with real reads and writes, level-triggered ([R8](anyloop::contract#r8),
//! [R14](anyloop::contract#r14)).
//!
//! A hang here (a lost wake-up blocks `block_on` for good, by design: only the waker may end
//! such a wait) is caught by the kit's watchdog ([`run_scenario`](crate::run_scenario)),
//! which names the scenario.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, LoopStats, Registry, Runner, Stopped};
use anyloop_async::{
    block_on, events, events_with, readable, sleep, spawn_local, timeout, Async, Interval,
    JoinError, LocalExecutor, TimeoutError,
};

use crate::bounded::{join, on_other_thread};
use crate::probe::lock;
use crate::runner::Env;

/// A generous bound for a single wait inside a scenario (a `block_on`, a `run_until`, the
/// futures' own timeouts): 10 s, more when the kit's watchdog is raised (runs under valgrind).
fn long() -> Duration {
    (crate::watchdog() / 6).max(Duration::from_secs(10))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Note {
    seq: u32,
    topic: u32,
}

struct Shutdown;

anyloop::event_set! {
    /// The scenarios' events.
    enum TestEvent {
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
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }

    fn parked(&self) -> bool {
        lock(&self.waker).is_some()
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            *lock(&self.waker) = Some(cx.waker().clone());
            if self.flag.swap(false, Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// A waker that counts its wakes (from any thread).
#[derive(Default)]
struct CountingWaker {
    wakes: AtomicUsize,
}

impl CountingWaker {
    fn new() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        (counter, waker)
    }

    fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `future` once with `waker`.
fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// A connected pair of non-blocking Unix stream sockets.
fn socket_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("non-blocking");
    b.set_nonblocking(true).expect("non-blocking");
    (a, b)
}

/// Iterates until `done()`, at most [`long`]; panics with `what` if it never holds.
#[track_caller]
fn iterate_until(env: &Env, lp: &mut dyn Runner, what: &str, mut done: impl FnMut() -> bool) {
    let long = long();
    env.step(format!("run_until: {what}"));
    let deadline = Instant::now() + long;
    match lp.run_until(Some(deadline), &mut done) {
        Ok(Stopped::Done) => {}
        Ok(other) => panic!("{what}: not done within {long:?} (run_until ended with {other:?})"),
        Err(err) => panic!("{what}: run_until failed: {err}"),
    }
}

/// Runs a few short iterations (so pending frees and due timers are done).
#[track_caller]
fn settle(lp: &mut dyn Runner, iterations: usize) {
    for i in 0..iterations {
        if let Err(err) = lp.run_once(Some(Duration::from_millis(2))) {
            panic!("run_once failed in iteration {i} of {iterations} while settling: {err}");
        }
    }
}

/// After [`long`], unless dropped first, sets a flag and wakes the waker parked with it, from
/// a thread of its own: it bounds a wait that only a wake-up can end, without ending it
/// earlier (a wake-up lost by the loop still fails, after [`long`]).
struct Deadline {
    expired: Arc<AtomicBool>,
    parked: Arc<Mutex<Option<Waker>>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Deadline {
    /// Starts the clock; `also` runs on the clock's thread when it expires (after the wake).
    fn start(also: impl FnOnce() + Send + 'static) -> Deadline {
        let expired = Arc::new(AtomicBool::new(false));
        let parked: Arc<Mutex<Option<Waker>>> = Arc::default();
        let (stop, stopped) = mpsc::channel::<()>();
        let (e, p) = (expired.clone(), parked.clone());
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(long()) {
                e.store(true, Ordering::SeqCst);
                if let Some(waker) = lock(&p).take() {
                    waker.wake();
                }
                also();
            }
        });
        Deadline {
            expired,
            parked,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Parks `waker` to be woken at expiry; true once expired. (Parked before the flag is
    /// read: an expiry in between finds the waker, or is seen.)
    fn expired(&self, waker: &Waker) -> bool {
        *lock(&self.parked) = Some(waker.clone());
        self.expired.load(Ordering::SeqCst)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        drop(self.stop.take()); // ends the clock's wait at once
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `future` to its end on `lp` (`block_on`), at most [`long`]; panics with `what` when
/// it is not done by then or the loop fails.
#[track_caller]
fn finish<F: Future>(env: &Env, lp: &mut dyn Runner, what: &str, future: F) -> F::Output {
    let long = long();
    env.step(format!("block_on: {what}"));
    let deadline = Deadline::start(|| {});
    let mut future = pin!(future);
    let bounded = poll_fn(|cx| {
        if deadline.expired(cx.waker()) {
            return Poll::Ready(None);
        }
        future.as_mut().poll(cx).map(Some)
    });
    match block_on(lp, bounded) {
        Ok(Some(output)) => output,
        Ok(None) => panic!(
            "{what}: not done within {long:?} (block_on polls the future again when its waker \
             is woken, R40)"
        ),
        Err(err) => panic!("{what}: block_on failed: {err}"),
    }
}

/// Watches and timers only (iterations and frees move).
fn registrations(stats: LoopStats) -> (usize, usize) {
    (stats.watches, stats.timers)
}

/// [R42](anyloop::contract#r42)/[R40](anyloop::contract#r40): a sleep, readable and writable
/// on a socket written by another thread, an interval tick, a registry stream event emitted by
/// another thread, a waker fired by another thread, and a joined task: each resolves, on the
/// loop thread.
pub fn r42_futures_resolve_on_the_loop_thread_r40(env: &Env) {
    let long = long();
    let mut runner = env.create_here();
    let lp = runner.handle();
    let me = thread::current().id();
    let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).expect("registry");
    let seen: Rc<RefCell<Vec<(&'static str, ThreadId)>>> = Rc::default();
    let (ours, theirs) = socket_pair();
    let remote = Arc::new(Remote::default());
    let mut stream = events::<Note, _>(&registry).expect("event stream");

    // Other threads write to the socket, emit an event and wake a waker.
    let emitter = registry.clone();
    let remote2 = Arc::clone(&remote);
    let helper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        (&theirs).write_all(b"x").expect("write to the socket");
        emitter.emit(Note { seq: 1, topic: 1 });
        remote2.fire();
        theirs
    });

    let task = spawn_local(&lp, {
        let (lp, seen) = (lp.clone(), Rc::clone(&seen));
        async move {
            let note = |what| seen.borrow_mut().push((what, thread::current().id()));
            sleep(&lp, Duration::from_millis(1)).await.expect("sleep");
            note("sleep");
            let socket = Async::new(&lp, ours).expect("Async::new");
            socket.readable().await.expect("readable");
            note("readable");
            socket.writable().await.expect("writable");
            note("writable");
            let mut interval = Interval::new(&lp, Duration::from_millis(1)).expect("interval");
            interval.tick().await.expect("tick");
            note("tick");
            let event = stream.next().await;
            assert_eq!(
                event,
                Some(Note { seq: 1, topic: 1 }),
                "E7: the stream's first event is the one emitted"
            );
            note("stream");
            remote.wait().await;
            note("remote waker");
            let inner = spawn_local(&lp, async { thread::current().id() }).expect("spawn_local");
            assert_eq!(
                inner.await.expect("the inner task's output"),
                thread::current().id(),
                "R42: a task ran off the loop thread"
            );
            note("join");
            assert!(
                lp.is_loop_thread(),
                "R42: the task is not on the loop thread"
            );
        }
    })
    .expect("spawn_local");
    finish(env, &mut *runner, "the task", timeout(&lp, long, task))
        .unwrap_or_else(|_| panic!("R40: the task did not finish within {long:?}"))
        .expect("R54: the task did not end normally");
    join(helper, "the helper thread writing, emitting and waking");
    let seen = seen.borrow();
    assert_eq!(
        seen.len(),
        7,
        "every step of the task must have resolved: {seen:?}"
    );
    for (what, thread) in seen.iter() {
        assert_eq!(*thread, me, "R42: {what} resolved off the loop thread");
    }
}

/// [R15](anyloop::contract#r15)/[R21](anyloop::contract#r21): a future dropped while waiting
/// (readable on an `Async` and on a raw fd, a sleep, an interval tick, an event stream, a
/// cancelled task) removes its registration at once, and its waker is never called afterwards,
/// even when what it waited for happens; a cancelled task is never polled again.
pub fn r15_dropped_futures_remove_their_registrations_and_never_wake_r21(env: &Env) {
    let mut runner = env.create_here();
    let lp = runner.handle();
    let base = registrations(lp.stats());

    // Async: a readable future dropped while waiting; its waker is never called.
    let (ours, theirs) = socket_pair();
    let socket = Async::new(&lp, ours).expect("Async::new");
    assert_eq!(
        registrations(lp.stats()),
        (base.0 + 1, base.1),
        "R57: Async::new adds one watch (watches, timers)"
    );
    let (count, waker) = CountingWaker::new();
    {
        let mut wait = pin!(socket.readable());
        assert!(
            wait.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending(),
            "readable() on an empty socket resolved"
        );
    }
    (&theirs).write_all(b"data").expect("write");
    settle(&mut *runner, 5);
    assert_eq!(count.wakes(), 0, "R15: a dropped readable() was woken");
    drop(socket);
    assert_eq!(
        registrations(lp.stats()),
        base,
        "R15/R57: Async's watch stays after its drop (watches, timers)"
    );

    // readable(fd): its own watch goes with it.
    let (ours, theirs) = socket_pair();
    let (count, waker) = CountingWaker::new();
    {
        let mut wait = readable(&lp, ours.as_fd());
        assert!(
            poll_once(&mut wait, &waker).is_pending(),
            "readable(fd) on an empty socket resolved"
        );
        assert_eq!(
            registrations(lp.stats()),
            (base.0 + 1, base.1),
            "R57: a waiting readable(fd) holds one watch (watches, timers)"
        );
    }
    assert_eq!(
        registrations(lp.stats()),
        base,
        "R15/R57: readable(fd)'s watch stays after its drop (watches, timers)"
    );
    (&theirs).write_all(b"data").expect("write");
    settle(&mut *runner, 5);
    assert_eq!(count.wakes(), 0, "R15: a dropped readable(fd) was woken");

    // Sleep.
    let (count, waker) = CountingWaker::new();
    {
        let mut nap = sleep(&lp, Duration::from_millis(1));
        assert!(
            poll_once(&mut nap, &waker).is_pending(),
            "a 1 ms sleep resolved at its first poll"
        );
        assert_eq!(
            registrations(lp.stats()),
            (base.0, base.1 + 1),
            "R57: a waiting sleep holds one timer (watches, timers)"
        );
    }
    assert_eq!(
        registrations(lp.stats()),
        base,
        "R15/R57: the sleep's timer stays after its drop (watches, timers)"
    );
    thread::sleep(Duration::from_millis(3));
    settle(&mut *runner, 5);
    assert_eq!(count.wakes(), 0, "R15: a dropped sleep was woken");

    // Interval.
    let (count, waker) = CountingWaker::new();
    {
        let mut interval = Interval::new(&lp, Duration::from_millis(1)).expect("interval");
        let mut tick = pin!(interval.tick());
        assert!(
            tick.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending(),
            "a 1 ms interval ticked at its first poll"
        );
    }
    assert_eq!(
        registrations(lp.stats()),
        base,
        "R15/R57: the interval's timer stays after its drop (watches, timers)"
    );
    thread::sleep(Duration::from_millis(3));
    settle(&mut *runner, 5);
    assert_eq!(count.wakes(), 0, "R15: a dropped interval was woken");

    // Event stream: dropping it deregisters its callback.
    let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).expect("registry");
    let (count, waker) = CountingWaker::new();
    {
        let mut stream = events::<Note, _>(&registry).expect("event stream");
        let mut next = pin!(stream.next());
        assert!(
            next.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending(),
            "E6: a stream with nothing emitted yielded"
        );
        assert_eq!(
            registry.callbacks(),
            1,
            "E26: a stream holds one registry callback"
        );
    }
    assert_eq!(
        registry.callbacks(),
        0,
        "E10: the dropped stream's registry callback stays"
    );
    assert!(
        !registry.emit(Note { seq: 1, topic: 1 }),
        "E27: emit says a callback listens, after the only stream was dropped"
    );
    settle(&mut *runner, 5);
    assert_eq!(count.wakes(), 0, "R15: a dropped stream was woken");
    registry.close().expect("close the registry");
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
            let socket = Async::new(&lp, ours).expect("Async::new");
            let nap = sleep(&lp, Duration::from_secs(3600));
            let read = socket.readable();
            let mut both = pin!(async { futures_util::join!(nap, read) });
            poll_fn(|cx| {
                polls.set(polls.get() + 1);
                *lock(&parked) = Some(cx.waker().clone());
                let _ = both.as_mut().poll(cx);
                Poll::<()>::Pending
            })
            .await;
        }
    })
    .expect("spawn_local");
    iterate_until(
        env,
        &mut *runner,
        "R27: the spawned task's first poll",
        || polls.get() >= 1,
    );
    assert_eq!(
        registrations(lp.stats()),
        (base.0 + 1, base.1 + 2),
        "R57: the task's timer, the sleep's timer and the socket's watch (watches, timers)"
    );
    drop(handle);
    assert!(
        dropped.get(),
        "R15: the cancelled task's future was not dropped at once"
    );
    assert_eq!(
        registrations(lp.stats()),
        base,
        "R15/R57: a cancelled task left registrations (watches, timers)"
    );
    let waker = lock(&parked).take().expect("the task parked its waker");
    on_other_thread("waking the cancelled task's waker", move || waker.wake());
    settle(&mut *runner, 5);
    assert_eq!(polls.get(), 1, "R15: a cancelled task was polled again");
    assert_eq!(
        registrations(lp.stats()),
        base,
        "R57: registrations appeared after the wake (watches, timers)"
    );
    assert_eq!(
        lp.stats().pending_frees,
        0,
        "R25: frees still pending after the loop iterated"
    );
}

/// [R40](anyloop::contract#r40): a waker shipped to another thread and fired after a varying
/// delay (some wakes land before the loop blocks, some while it blocks, some while it polls)
/// always ends the loop's wait without a timeout; so does a wake of `block_on`'s root future,
/// and a `futures-channel` oneshot sent from another thread.
pub fn r40_no_wake_up_lost_when_another_thread_wakes_a_blocked_loop(env: &Env) {
    let long = long();
    let mut runner = env.create_here();
    let lp = runner.handle();
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
        .expect("spawn_local");
        env.step(format!(
            "round {round} of 200: a task waiting for a waker fired from another thread (R40)"
        ));
        // Let the task park its waker first.
        iterate_until(env, &mut *runner, "R27: the task's first poll", || {
            remote.parked()
        });
        let remote2 = remote.clone();
        let firing = thread::spawn(move || {
            if round % 4 != 0 {
                thread::sleep(Duration::from_micros(u64::from(round % 7) * 150));
            }
            remote2.fire();
        });
        // Blocks with no timeout: only the waker can end the wait. (After long, the kit wakes
        // the loop itself, which fails the round: a lost wake-up.)
        let lp2 = lp.clone();
        let deadline = Deadline::start(move || lp2.wake());
        while !done.get() {
            if let Err(err) = runner.run_once(None) {
                panic!("round {round}: run_once(None) failed: {err}");
            }
            if !done.get() && deadline.expired(Waker::noop()) {
                panic!(
                    "R40: round {round}: a waker fired from another thread did not end \
                     run_once(None) within {long:?}: a lost wake-up"
                );
            }
        }
        drop(deadline);
        join(firing, "the thread firing the waker");
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
        finish(
            env,
            &mut *runner,
            "block_on of a remotely woken future",
            remote.wait(),
        );
        join(firing, "the thread firing the waker");
    }
    // A channel: futures-channel's oneshot, sent from another thread.
    for _ in 0..50 {
        let (tx, rx) = futures_channel::oneshot::channel::<u32>();
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_micros(200));
            tx.send(7).expect("send on the oneshot");
        });
        let task = spawn_local(&lp, rx).expect("spawn_local");
        assert_eq!(
            finish(env, &mut *runner, "a task awaiting a oneshot", task),
            Ok(Ok(7)),
            "R40: the oneshot's value"
        );
        join(sender, "the thread sending on the oneshot");
    }
    settle(&mut *runner, 2);
    assert_eq!(
        registrations(lp.stats()),
        (0, 0),
        "R57: registrations left (watches, timers)"
    );
}

/// [R48](anyloop::contract#r48): futures made before, and first polled after, the loop was
/// dropped resolve to `LoopGone`, as do new objects; futures waiting when the loop is dropped
/// on its thread are woken and say so; a stream ends.
pub fn r48_futures_on_a_loop_that_has_gone_end_with_loop_gone(env: &Env) {
    // Made before, first polled after the loop was dropped.
    let runner = env.create_here();
    let lp = runner.handle();
    let mut nap = sleep(&lp, Duration::from_millis(1));
    let (ours, _theirs) = socket_pair();
    let mut wait = readable(&lp, ours.as_fd());
    drop(runner);
    let (_count, waker) = CountingWaker::new();
    let outcome = poll_once(&mut nap, &waker);
    assert!(
        matches!(outcome, Poll::Ready(Err(Error::LoopGone))),
        "R48: a sleep first polled after the loop went: {outcome:?}, expected LoopGone"
    );
    let outcome = poll_once(&mut wait, &waker);
    assert!(
        matches!(outcome, Poll::Ready(Err(Error::LoopGone))),
        "R48: readable(fd) first polled after the loop went: {outcome:?}, expected LoopGone"
    );
    let (ours, _theirs) = socket_pair();
    let made = Async::new(&lp, ours).map(drop);
    assert!(
        matches!(made, Err(Error::LoopGone)),
        "R48: Async::new on a gone loop: {made:?}, expected LoopGone"
    );
    let made = Interval::new(&lp, Duration::from_millis(1)).map(drop);
    assert!(
        matches!(made, Err(Error::LoopGone)),
        "R48: Interval::new on a gone loop: {made:?}, expected LoopGone"
    );
    let made = spawn_local(&lp, async {}).map(drop);
    assert!(
        matches!(made, Err(Error::LoopGone)),
        "R48: spawn_local on a gone loop: {made:?}, expected LoopGone"
    );

    // Waiting when the loop is dropped (on its thread): each is woken and says so.
    let runner = env.create_here();
    let lp = runner.handle();
    let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).expect("registry");
    let (ours, _theirs) = socket_pair();
    let socket = Async::new(&lp, ours).expect("Async::new");
    let mut interval = Interval::new(&lp, Duration::from_secs(3600)).expect("interval");
    let mut stream = events::<Note, _>(&registry).expect("event stream");
    let mut nap = sleep(&lp, Duration::from_secs(3600));
    let never = spawn_local(&lp, std::future::pending::<()>()).expect("spawn_local");
    let mut never = pin!(never);
    let (count, waker) = CountingWaker::new();
    let mut cx = Context::from_waker(&waker);
    let mut read = pin!(socket.readable());
    let mut tick = pin!(interval.tick());
    assert!(
        read.as_mut().poll(&mut cx).is_pending(),
        "readable() on an empty socket resolved"
    );
    assert!(
        tick.as_mut().poll(&mut cx).is_pending(),
        "an hourly interval ticked"
    );
    assert!(
        pin!(stream.next()).poll(&mut cx).is_pending(),
        "E6: a stream with nothing emitted yielded"
    );
    assert!(
        Pin::new(&mut nap).poll(&mut cx).is_pending(),
        "an hour's sleep resolved"
    );
    assert!(
        never.as_mut().poll(&mut cx).is_pending(),
        "a pending task resolved"
    );
    drop(runner);
    assert!(
        count.wakes() >= 4,
        "R48: only {} wakes when the loop went, expected one per waiting future (at least 4)",
        count.wakes()
    );
    let outcome = read.as_mut().poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(Err(Error::LoopGone))),
        "R48: a waiting readable() after the loop went: {outcome:?}, expected LoopGone"
    );
    let outcome = tick.as_mut().poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(Err(Error::LoopGone))),
        "R48: a waiting tick after the loop went: {outcome:?}, expected LoopGone"
    );
    let outcome = Pin::new(&mut nap).poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(Err(Error::LoopGone))),
        "R48: a waiting sleep after the loop went: {outcome:?}, expected LoopGone"
    );
    let outcome = never.as_mut().poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(Err(JoinError::LoopGone))),
        "R48: a task's handle after the loop went: {outcome:?}, expected LoopGone"
    );
    let outcome = pin!(stream.next()).poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(None)),
        "R48/E16: a stream after the loop went: {outcome:?}, expected its end"
    );
}

/// [R54](anyloop::contract#r54)/[R50](anyloop::contract#r50): tasks: output, a task spawned by
/// a task, abort (the future dropped at once), detach, a panic with a handle (the handle gets
/// it) and without (the loop reports it, other tasks run), a task dropping its own handle, a
/// `LocalExecutor` dropped with its tasks, and a spawn off the loop thread refused.
pub fn r54_tasks_spawn_join_abort_detach_and_panics_r50(env: &Env) {
    let long = long();
    let mut runner = env.create_here();
    let lp = runner.handle();

    // Output, and a task spawned by a task.
    let outer = spawn_local(&lp, {
        let lp = lp.clone();
        async move {
            let inner = spawn_local(&lp, async { Rc::new(21) }).expect("spawn_local");
            *inner.await.expect("the inner task's output") * 2
        }
    })
    .expect("spawn_local");
    assert_eq!(
        finish(env, &mut *runner, "the outer task", outer),
        Ok(42),
        "a task's output, through a task it spawned"
    );

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
            sleep(&lp, Duration::from_secs(3600)).await.expect("sleep");
        }
    })
    .expect("spawn_local");
    settle(&mut *runner, 2);
    assert!(!task.is_finished(), "a task sleeping an hour finished");
    task.abort();
    assert!(
        dropped.get(),
        "abort did not drop the task's future at once"
    );
    assert!(task.is_finished(), "an aborted task is not finished");
    assert_eq!(
        finish(env, &mut *runner, "an aborted task's handle", task),
        Err(JoinError::Cancelled),
        "an aborted task's handle"
    );

    // detach: the task runs to its end without its handle.
    let ran = Rc::new(Cell::new(false));
    spawn_local(&lp, {
        let (lp, ran) = (lp.clone(), ran.clone());
        async move {
            sleep(&lp, Duration::from_millis(2)).await.expect("sleep");
            ran.set(true);
        }
    })
    .expect("spawn_local")
    .detach();
    iterate_until(env, &mut *runner, "a detached task runs to its end", || {
        ran.get()
    });

    // A panic with a handle: the handle gets it, the loop goes on.
    let task = spawn_local(&lp, async {
        if true {
            panic!("boom in a task");
        }
    })
    .expect("spawn_local");
    match finish(env, &mut *runner, "a panicking task's handle", task) {
        Err(JoinError::Panicked { message }) => {
            assert_eq!(message, "boom in a task", "R54: the handle's panic message")
        }
        other => panic!("R54: a panicking task's handle gave {other:?}, expected its panic"),
    }

    // A detached panic is reported by the loop; other tasks still run.
    let other_ran = Rc::new(Cell::new(false));
    spawn_local(&lp, async { panic!("detached boom") })
        .expect("spawn_local")
        .detach();
    spawn_local(&lp, {
        let other_ran = other_ran.clone();
        async move { other_ran.set(true) }
    })
    .expect("spawn_local")
    .detach();
    let mut reported = None;
    let deadline = Instant::now() + long;
    while (reported.is_none() || !other_ran.get()) && Instant::now() < deadline {
        if let Err(error) = runner.run_once(Some(Duration::from_millis(5))) {
            reported = Some(error);
        }
    }
    match reported {
        Some(Error::CallbackPanicked { message, .. }) => assert!(
            message.contains("detached boom"),
            "R54: the loop reported another panic: {message}"
        ),
        other => panic!(
            "R54: a detached task's panic: run_once gave {other:?} within {long:?}, expected \
             CallbackPanicked"
        ),
    }
    assert!(
        other_ran.get(),
        "R54: another task did not run after a detached task panicked"
    );

    // A task that drops its own handle: cancelled after its current poll.
    let slot: Rc<RefCell<Option<anyloop_async::JoinHandle<()>>>> = Rc::default();
    let after = Rc::new(Cell::new(false));
    let handle = spawn_local(&lp, {
        let (lp, slot, after) = (lp.clone(), slot.clone(), after.clone());
        async move {
            sleep(&lp, Duration::ZERO).await.expect("sleep");
            drop(slot.borrow_mut().take()); // ourselves
            sleep(&lp, Duration::ZERO).await.expect("sleep");
            after.set(true);
        }
    })
    .expect("spawn_local");
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
                sleep(&lp, Duration::from_secs(3600)).await.expect("sleep");
            })
            .expect("LocalExecutor::spawn")
            .detach();
    }
    let quick = executor.spawn(async { 5 }).expect("LocalExecutor::spawn");
    assert_eq!(
        finish(env, &mut *runner, "an executor's task", quick),
        Ok(5),
        "an executor task's output"
    );
    iterate_until(
        env,
        &mut *runner,
        "the executor's three tasks start",
        || alive.get() == 3,
    );
    assert_eq!(
        executor.len(),
        3,
        "the executor counts a finished task (or lost one)"
    );
    drop(executor);
    settle(&mut *runner, 2);
    assert_eq!(
        registrations(lp.stats()),
        (0, 0),
        "R15/R57: the dropped executor's tasks left registrations (watches, timers)"
    );

    // Off the loop thread, a task is refused.
    let lp2 = lp.clone();
    let refused = on_other_thread("spawn_local off the loop thread", move || {
        matches!(spawn_local(&lp2, async {}), Err(Error::WrongThread { .. }))
    });
    assert!(
        refused,
        "R50: spawn_local off the loop thread was not refused with WrongThread"
    );
}

/// [R33](anyloop::contract#r33)/[R29](anyloop::contract#r29)/[R31](anyloop::contract#r31):
/// sleeps of 30, 10, 20, 0 and 15 ms resolve in deadline order and never early; a sleep reset
/// later then earlier resolves at the new time; `timeout` passes a future that finishes in
/// time and cuts one that does not.
pub fn r33_sleeps_resolve_in_deadline_order_never_early_r29_r31(env: &Env) {
    let long = long();
    let mut runner = env.create_here();
    let lp = runner.handle();
    let order: Rc<RefCell<Vec<u64>>> = Rc::default();
    let early: Rc<RefCell<Vec<(u64, Duration)>>> = Rc::default();
    let started = Instant::now();
    let executor = LocalExecutor::new(&lp);
    for ms in [30u64, 10, 20, 0, 15] {
        let (lp, order, early) = (lp.clone(), order.clone(), early.clone());
        executor
            .spawn(async move {
                let asked = Instant::now();
                sleep(&lp, Duration::from_millis(ms)).await.expect("sleep");
                let slept = asked.elapsed();
                if slept < Duration::from_millis(ms) {
                    early.borrow_mut().push((ms, slept));
                }
                order.borrow_mut().push(ms);
            })
            .expect("LocalExecutor::spawn")
            .detach();
    }
    iterate_until(env, &mut *runner, "R27: five sleeps resolve", || {
        order.borrow().len() == 5
    });
    assert!(
        early.borrow().is_empty(),
        "R31: sleeps resolved early (asked, slept): {:?}",
        early.borrow()
    );
    assert_eq!(
        *order.borrow(),
        [0, 10, 15, 20, 30],
        "R33: sleeps resolved out of deadline order"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "R31: a 30 ms sleep resolved after {:?}",
        started.elapsed()
    );

    // reset: later, then earlier.
    let result = finish(env, &mut *runner, "a sleep reset to 5 ms", {
        let lp = lp.clone();
        async move {
            let mut nap = sleep(&lp, Duration::from_secs(3600));
            let until = Instant::now() + Duration::from_millis(5);
            nap.reset(until)?;
            nap.await?;
            Ok::<_, Error>(Instant::now().checked_duration_since(until))
        }
    });
    let late_by = result.expect("a reset sleep failed");
    assert!(
        late_by.is_some(),
        "R29/R31: a sleep reset to 5 ms from now resolved before its new deadline"
    );

    // timeout: a future that finishes in time, one that does not.
    let quick = finish(
        env,
        &mut *runner,
        "timeout around a 1 ms sleep",
        timeout(&lp, long, sleep(&lp, Duration::from_millis(1))),
    );
    assert!(
        matches!(quick, Ok(Ok(()))),
        "a 1 ms sleep under a {long:?} timeout: {quick:?}, expected its output"
    );
    let slow = finish(
        env,
        &mut *runner,
        "timeout around an hour's sleep",
        timeout(
            &lp,
            Duration::from_millis(3),
            sleep(&lp, Duration::from_secs(3600)),
        ),
    );
    assert!(
        matches!(slow, Err(TimeoutError::Elapsed { .. })),
        "an hour's sleep under a 3 ms timeout: {slow:?}, expected Elapsed"
    );
    settle(&mut *runner, 2);
    assert_eq!(
        registrations(lp.stats()),
        (0, 0),
        "R57: registrations left (watches, timers)"
    );
}

/// [R30](anyloop::contract#r30): an interval of 3 ms ticks, never early; firings missed while
/// the task was busy elsewhere come as one tick; `reset` restarts the period.
pub fn r30_intervals_tick_and_merge_missed_firings(env: &Env) {
    let mut runner = env.create_here();
    let lp = runner.handle();
    let period = Duration::from_millis(3);
    let (ticks, late, first_five, after_reset) = finish(env, &mut *runner, "the interval task", {
        let lp = lp.clone();
        async move {
            let started = Instant::now();
            let mut interval = Interval::new(&lp, period)?;
            let mut ticks = 0;
            while ticks < 5 {
                ticks += interval.tick().await?;
            }
            let first_five = started.elapsed();
            // Busy elsewhere for a while: the firings meanwhile come as one tick.
            sleep(&lp, period * 6).await?;
            let late = interval.tick().await?;
            interval.reset()?;
            let reset_at = Instant::now();
            interval.tick().await?;
            Ok::<_, Error>((ticks, late, first_five, reset_at.elapsed()))
        }
    })
    .expect("the interval task failed");
    assert!(
        first_five >= period * 5,
        "R31: five ticks of {period:?} came after {first_five:?}: early"
    );
    assert!(ticks >= 5, "five ticks counted {ticks}");
    assert!(
        late >= 1,
        "R30: the tick after a busy spell counted {late} firings, expected at least one"
    );
    assert!(
        after_reset >= period,
        "R29: the first tick after reset came after {after_reset:?}, before a period"
    );
    settle(&mut *runner, 2);
    assert_eq!(
        registrations(lp.stats()),
        (0, 0),
        "R57: registrations left (watches, timers)"
    );
}

/// [E7](anyloop::contract#e7)/[E16](anyloop::contract#e16): 1000 events emitted by another
/// thread reach a stream in order, a filtered stream gets its object's only, and both end when
/// the registry is closed (from that thread, once everything was delivered).
pub fn e07_registry_streams_deliver_in_order_and_end_at_close_e16(env: &Env) {
    let mut runner = env.create_here();
    let lp = runner.handle();
    let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).expect("registry");
    let mut all = events::<Note, _>(&registry).expect("event stream");
    let mut topic2 = events_with(&registry, |listen| listen.object(2), |n: &Note| n.seq)
        .expect("filtered event stream");
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
        let deadline = Instant::now() + long();
        while seen.load(Ordering::SeqCst) < 1000 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        emitter.close().expect("close the registry");
    });
    let (got, got2) = finish(
        env,
        &mut *runner,
        "reading both streams to their end",
        async {
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
        },
    );
    join(
        producer,
        "the thread emitting 1000 events and closing the registry",
    );
    assert!(
        got == (0..1000).collect::<Vec<_>>(),
        "E7: the stream got {} events, not 0..1000 in order (first differences at {:?})",
        got.len(),
        got.iter().enumerate().find(|(i, s)| **s as usize != *i)
    );
    assert_eq!(
        got2,
        (0..1000).filter(|s| s % 3 == 2).collect::<Vec<_>>(),
        "E8/E29: the stream filtered on object 2"
    );
    assert_eq!(all.queued(), 0, "E16: events left queued after the end");
    drop((all, topic2));
    settle(&mut *runner, 3);
    assert_eq!(
        registrations(lp.stats()),
        (0, 0),
        "E16/R57: registrations left after the registry closed (watches, timers)"
    );
}

/// [R8](anyloop::contract#r8)/[R14](anyloop::contract#r14): 4 MiB through a socket pair (the
/// writer fills the buffer and waits for writable, the reader drains); two waiters resolve on
/// the same report and the one that finds nothing waits again without spinning; `AsyncRead`
/// and `AsyncWrite`; the peer's hang-up resolves a readable and a read gives 0.
pub fn r08_socket_pair_readiness_with_real_reads_and_writes_r14(env: &Env) {
    let long = long();
    let mut runner = env.create_here();
    let lp = runner.handle();
    let (a, b) = socket_pair();
    let a = Rc::new(Async::new(&lp, a).expect("Async::new"));
    let b = Rc::new(Async::new(&lp, b).expect("Async::new"));

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
    .expect("spawn_local");
    let reader = spawn_local(&lp, {
        let b = b.clone();
        async move {
            let mut buf = vec![0u8; 50_000];
            let mut got = 0usize;
            while got < TOTAL {
                let n = b.read_with(|mut s| s.read(&mut buf)).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                if let Some(i) = (0..n).find(|i| buf[*i] != ((got + i) % 251) as u8) {
                    return Err(io::Error::other(format!("corrupt byte at {}", got + i)));
                }
                got += n;
            }
            Ok::<_, io::Error>(got)
        }
    })
    .expect("spawn_local");
    let (waits, got) = finish(env, &mut *runner, "4 MiB through the socket pair", async {
        (writer.await, reader.await)
    });
    let waits = waits.expect("the writer task").expect("the writer's I/O");
    let got = got.expect("the reader task").expect("the reader's I/O");
    assert_eq!(got, TOTAL, "bytes read");
    assert!(
        waits > 0,
        "the writer never had to wait for writable: the case proves nothing"
    );

    // Two waiters on the same direction resolve on the same report; a resolved readable
    // is no promise: the second reader finds nothing and waits again, without spinning.
    let polls_b = Rc::new(Cell::new(0u32));
    let first = spawn_local(&lp, {
        let b = b.clone();
        async move {
            b.readable().await.expect("readable");
            let mut byte = [0u8; 1];
            b.get_ref().read(&mut byte)
        }
    })
    .expect("spawn_local");
    let second = spawn_local(&lp, {
        let (b, polls_b) = (b.clone(), polls_b.clone());
        async move {
            b.readable().await.expect("readable");
            let mut byte = [0u8; 1];
            let mut early = pin!(async {
                // Let the first waiter take the byte.
                sleep(b.event_loop(), Duration::ZERO).await.expect("sleep");
                b.get_ref().read(&mut byte)
            });
            let outcome = poll_fn(|cx| early.as_mut().poll(cx)).await;
            let kind = outcome.as_ref().map_err(io::Error::kind);
            if kind != Err(io::ErrorKind::WouldBlock) {
                return Err(format!(
                    "R14: the second reader's read gave {outcome:?}, expected WouldBlock"
                ));
            }
            // Waits again, for a new report.
            let mut wait = pin!(b.readable());
            poll_fn(|cx| {
                polls_b.set(polls_b.get() + 1);
                wait.as_mut().poll(cx)
            })
            .await
            .map_err(|err| err.to_string())
        }
    })
    .expect("spawn_local");
    settle(&mut *runner, 2);
    a.get_ref().write_all(b"1").expect("write");
    let got = finish(env, &mut *runner, "the first reader", first)
        .expect("the first reader's task")
        .expect("the first reader's read");
    assert_eq!(got, 1, "the first reader read one byte");
    settle(&mut *runner, 20);
    assert_eq!(
        polls_b.get(),
        1,
        "R8/R14: the second waiter, with nothing to read, was polled again (it spins)"
    );
    a.get_ref().write_all(b"2").expect("write");
    let events = finish(
        env,
        &mut *runner,
        "the second reader",
        timeout(&lp, long, second),
    )
    .unwrap_or_else(|_| panic!("R8: the second reader was not woken within {long:?}"))
    .expect("the second reader's task")
    .unwrap_or_else(|problem| panic!("{problem}"));
    assert!(
        events.contains(IoEvents::READABLE),
        "R9: the second reader's readable resolved with {events:?}"
    );

    // futures-io: AsyncWrite / AsyncRead on &Async.
    let buf = finish(env, &mut *runner, "AsyncWrite and AsyncRead", async {
        use futures_util::io::{AsyncReadExt, AsyncWriteExt};
        let mut to = &*a;
        let mut from = &*b;
        to.write_all(b"hello").await?; // the "2" from above is still unread
        let mut buf = [0u8; 6];
        from.read_exact(&mut buf).await?;
        Ok::<_, io::Error>(buf)
    })
    .expect("AsyncWrite / AsyncRead");
    assert_eq!(&buf, b"2hello", "bytes through AsyncWrite and AsyncRead");

    // The peer hangs up: readable resolves (HANGUP and/or READABLE) and a read gives 0.
    let Ok(b) = Rc::try_unwrap(b) else {
        panic!("a task still holds the reading end, although every task is done");
    };
    drop(a);
    let events = finish(
        env,
        &mut *runner,
        "readable after the peer's hang-up",
        b.readable(),
    )
    .expect("readable after the hang-up");
    assert!(
        events.intersects(IoEvents::READABLE | IoEvents::HANGUP),
        "R9: readable after the peer's hang-up resolved with {events:?}"
    );
    assert_eq!(
        b.get_ref()
            .read(&mut [0u8; 8])
            .expect("read after the hang-up"),
        0,
        "a read after the peer's hang-up"
    );
    drop(b);
    settle(&mut *runner, 2);
    assert_eq!(
        registrations(lp.stats()),
        (0, 0),
        "R57: registrations left (watches, timers)"
    );
}

/// [R50](anyloop::contract#r50)/[R42](anyloop::contract#r42): a sleep first polled, an `Async`
/// and an event stream made off the loop thread are refused with `WrongThread`.
pub fn r50_futures_made_off_the_loop_thread_are_wrong_thread_r42(env: &Env) {
    let runner = env.create_here();
    let lp = runner.handle();
    let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).expect("registry");
    let (ours, _theirs) = socket_pair();
    let outcome = on_other_thread("making futures off the loop thread", move || {
        let (_count, waker) = CountingWaker::new();
        let mut nap = sleep(&lp, Duration::from_millis(1));
        let nap = poll_once(&mut nap, &waker);
        let socket = Async::new(&lp, ours).map(drop);
        let stream = events::<Note, _>(&registry).map(drop);
        [
            (
                "a sleep polled",
                matches!(nap, Poll::Ready(Err(Error::WrongThread { .. }))),
                format!("{nap:?}"),
            ),
            (
                "Async::new",
                matches!(socket, Err(Error::WrongThread { .. })),
                format!("{socket:?}"),
            ),
            (
                "events()",
                matches!(stream, Err(Error::WrongThread { .. })),
                format!("{stream:?}"),
            ),
        ]
    });
    for (what, refused, got) in outcome {
        assert!(
            refused,
            "R50: {what} off the loop thread gave {got}, expected WrongThread"
        );
    }
    drop(runner);
}

/// [R46](anyloop::contract#r46): `block_on` of a future that wakes itself 100 times iterates
/// the loop (it does not block on a wake that already happened); `sleep(ZERO)` lets the loop
/// run once.
pub fn r46_block_on_a_future_that_wakes_itself_does_not_block(env: &Env) {
    let mut runner = env.create_here();
    let lp = runner.handle();
    let before = lp.stats().iterations;
    let mut left = 100;
    finish(
        env,
        &mut *runner,
        "a self-waking future",
        poll_fn(|cx| {
            if left == 0 {
                return Poll::Ready(());
            }
            left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }),
    );
    assert!(
        lp.stats().iterations > before,
        "R57: block_on of a self-waking future made no iteration ({} before and after)",
        before
    );
    // sleep(ZERO) lets the loop run once.
    let before = lp.stats().iterations;
    finish(env, &mut *runner, "sleep(ZERO)", sleep(&lp, Duration::ZERO)).expect("sleep(ZERO)");
    assert!(
        lp.stats().iterations > before,
        "R46: sleep(ZERO) resolved without an iteration ({before} before and after)"
    );
}

/// [E17](anyloop::contract#e17)/[R40](anyloop::contract#r40): a wake that reaches a task while
/// that same task is being polled (its poll made one of the crate's callbacks run
/// synchronously: a registry's `close_with` on the loop thread delivers the closing event at
/// once) is not lost: the task is polled again.
pub fn e17_a_wake_during_the_tasks_own_poll_is_not_lost_r40(env: &Env) {
    let long = long();
    let mut runner = env.create_here();
    let lp = runner.handle();
    let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).expect("registry");
    let mut closing =
        events_with(&registry, |listen| listen, |_: &Shutdown| "closing").expect("event stream");
    let task = spawn_local(&lp, {
        let registry = registry.clone();
        async move {
            let (first, closed) =
                futures_util::join!(closing.next(), async { registry.close_with(Shutdown) });
            closed.map_err(|err| err.to_string())?;
            Ok::<_, String>((first, closing.next().await))
        }
    })
    .expect("spawn_local");
    let outcome = finish(
        env,
        &mut *runner,
        "the closing task",
        timeout(&lp, long, task),
    )
    .unwrap_or_else(|_| {
        panic!("R40: the task woken during its own poll was not polled again within {long:?}")
    })
    .expect("the closing task")
    .unwrap_or_else(|err| panic!("E17: close_with failed: {err}"));
    assert_eq!(
        outcome,
        (Some("closing"), None),
        "E17: the closing event, then the stream's end"
    );
}
