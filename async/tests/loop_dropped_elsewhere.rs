//! What the kit's `async_layer` scenarios cannot check through a `LoopFactory`: a loop
//! dropped on *another* thread than the one its futures are polled on. Only a loop that is
//! `Send` can be moved there (the kit's factories hand out `Box<dyn Runner>`, which is not),
//! so this runs on the built-in loop, `SelectLoop`. (The rest of the futures layer's battery
//! is the kit's `async_layer` group, run on every backend by the kit's test binaries.)

use std::future::Future;
use std::os::unix::net::UnixStream;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use anyloop::{Error, Registry, Runner};
use anyloop_async::{events, sleep, spawn_local, Async, Interval, JoinError};

/// How long the test may take before it is called hung.
const WATCHDOG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Note {
    seq: u32,
}

anyloop::event_set! {
    /// The test's events.
    enum TestEvent {
        kind: TestKind,
        key: u32,
        /// A numbered note.
        Note(Note) => seq,
    }
}

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A loop dropped on another thread cannot free this thread's thread-bound callbacks (their
/// drop waits for this thread, R42), so nothing wakes the futures: polled again, each still
/// finds out and says so instead of hanging.
#[test]
fn a_loop_dropped_on_another_thread_ends_its_futures_when_polled() {
    let (done_tx, done_rx) = mpsc::channel();
    let test = thread::spawn(move || {
        scenario();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(WATCHDOG) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = test.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("R48: no result within {WATCHDOG:?}: a future on a dropped loop hangs")
        }
    }
}

fn scenario() {
    let event_loop = anyloop_select::SelectLoop::new().expect("SelectLoop::new");
    let lp = event_loop.handle();
    let registry: Registry<TestEvent> = Registry::with_loop(lp.clone()).expect("registry");
    let (ours, _theirs) = UnixStream::pair().expect("socketpair");
    ours.set_nonblocking(true).expect("non-blocking");
    let socket = Async::new(&lp, ours).expect("Async::new");
    let mut interval = Interval::new(&lp, Duration::from_secs(3600)).expect("interval");
    let mut stream = events::<Note, _>(&registry).expect("event stream");
    let mut nap = sleep(&lp, Duration::from_secs(3600));
    let never = spawn_local(&lp, std::future::pending::<()>()).expect("spawn_local");
    let mut never = pin!(never);
    let waker = Waker::from(Arc::new(CountingWaker::default()));
    let mut cx = Context::from_waker(&waker);
    let mut read = pin!(socket.readable());
    let mut tick = pin!(interval.tick());
    let mut next = pin!(stream.next());
    assert!(
        read.as_mut().poll(&mut cx).is_pending(),
        "readable() resolved"
    );
    assert!(tick.as_mut().poll(&mut cx).is_pending(), "tick resolved");
    assert!(
        next.as_mut().poll(&mut cx).is_pending(),
        "the stream yielded"
    );
    assert!(
        Pin::new(&mut nap).poll(&mut cx).is_pending(),
        "the sleep resolved"
    );
    assert!(never.as_mut().poll(&mut cx).is_pending(), "the task ended");
    thread::spawn(move || drop(event_loop))
        .join()
        .expect("dropping the loop on another thread");
    let outcome = read.as_mut().poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(Err(Error::LoopGone))),
        "R48: readable() after the loop went elsewhere: {outcome:?}, expected LoopGone"
    );
    let outcome = tick.as_mut().poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(Err(Error::LoopGone))),
        "R48: a tick after the loop went elsewhere: {outcome:?}, expected LoopGone"
    );
    let outcome = Pin::new(&mut nap).poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(Err(Error::LoopGone))),
        "R48: a sleep after the loop went elsewhere: {outcome:?}, expected LoopGone"
    );
    let outcome = never.as_mut().poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(Err(JoinError::LoopGone))),
        "R48: a task's handle after the loop went elsewhere: {outcome:?}, expected LoopGone"
    );
    let outcome = next.as_mut().poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(None)),
        "R48/E16: the stream after the loop went elsewhere: {outcome:?}, expected its end"
    );
}
