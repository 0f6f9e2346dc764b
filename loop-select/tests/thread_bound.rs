//! Thread-bound callbacks on a loop that moves between threads (`SelectLoop` is `Send`): a
//! callback created on one thread is never called nor dropped on another
//! ([R42](anyloop::contract#r42), [R50](anyloop::contract#r50)); the iteration that skips it says so with a typed error.
mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use anyloop::{Error, IoEvents, RegistrationId, Runner, Schedule};
use anyloop_select::SelectLoop;
use util::*;

/// Records the thread it is dropped on.
struct DropSpy(Arc<Mutex<Vec<ThreadId>>>);

impl Drop for DropSpy {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(thread::current().id());
    }
}

/// Runs `lp.run_once(timeout)` on a new thread and hands the loop back with the result.
fn run_once_elsewhere(
    mut lp: SelectLoop,
    timeout: Duration,
) -> (SelectLoop, anyloop::Result<usize>) {
    thread::spawn(move || {
        let result = lp.run_once(Some(timeout));
        (lp, result)
    })
    .join()
    .expect("the other thread")
}

#[test]
fn a_timer_bound_to_this_thread_is_skipped_and_reported_when_the_loop_runs_elsewhere() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let calls = Rc::new(Cell::new(0u32));
        let drops = Arc::new(Mutex::new(Vec::new()));
        let (count, spy) = (calls.clone(), DropSpy(drops.clone()));
        let timer = lp
            .handle()
            .timer_local(Schedule::EVERY_ITERATION, move |_| {
                let _keep = &spy;
                count.set(count.get() + 1);
            })
            .expect("on the loop thread");
        assert_eq!(lp.run_once(Some(Duration::ZERO)).expect("run"), 1);
        assert_eq!(calls.get(), 1);

        // The loop moves: the due timer is not called there, and the iteration says why.
        let id = timer.id();
        let (back, result) = run_once_elsewhere(lp, Duration::from_millis(5));
        lp = back;
        match result {
            Err(Error::WrongThread {
                id: Some(skipped), ..
            }) => {
                assert_eq!(skipped, RegistrationId::Timer(id));
            }
            other => panic!("{poller:?}: expected WrongThread for the timer, got {other:?}"),
        }
        assert_eq!(calls.get(), 1, "{poller:?}: called on another thread");

        // Back home it runs again.
        assert_eq!(lp.run_once(Some(Duration::ZERO)).expect("run"), 1);
        assert_eq!(calls.get(), 2);

        // Removed, then the loop runs elsewhere: its free must not run there (it is kept
        // until its own thread drops it, or this thread exits).
        drop(timer);
        let (back, result) = run_once_elsewhere(lp, Duration::from_millis(1));
        lp = back;
        result.expect("no callback is due");
        assert!(
            drops
                .lock()
                .unwrap()
                .iter()
                .all(|&t| t == thread::current().id()),
            "{poller:?}: dropped on another thread: {:?}",
            drops.lock().unwrap()
        );
        assert_eq!(lp.stats().timers, 0);
    }
}

#[test]
fn a_watch_bound_to_this_thread_is_freed_on_this_thread_when_the_loop_stays() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let p = Pipe::new();
        p.put(1);
        let calls = Rc::new(Cell::new(0u32));
        let drops = Arc::new(Mutex::new(Vec::new()));
        let (count, spy) = (calls.clone(), DropSpy(drops.clone()));
        let watch = lp
            .handle()
            .watch_local(p.rfd(), IoEvents::READABLE, move |_, fd, _| {
                let _keep = &spy;
                take_one(fd);
                count.set(count.get() + 1);
            })
            .expect("on the loop thread");
        assert_eq!(lp.run_once(Some(Duration::from_secs(5))).expect("run"), 1);
        assert_eq!(calls.get(), 1);

        // Readable again, and the loop runs on another thread: not called there.
        p.put(1);
        let (back, result) = run_once_elsewhere(lp, Duration::from_millis(20));
        lp = back;
        assert!(
            matches!(result, Err(Error::WrongThread { id: Some(RegistrationId::Watch(id)), .. }) if id == watch.id()),
            "{poller:?}: {result:?}"
        );
        assert_eq!(calls.get(), 1);

        // Still level-triggered at home: the byte is delivered now.
        assert_eq!(lp.run_once(Some(Duration::from_secs(5))).expect("run"), 1);
        assert_eq!(calls.get(), 2);

        // Removed and freed on the loop thread, exactly once.
        drop(watch);
        assert!(drops.lock().unwrap().is_empty(), "freed inside the remove");
        lp.run_once(Some(Duration::ZERO)).expect("run");
        assert_eq!(*drops.lock().unwrap(), vec![thread::current().id()]);
    }
}

#[test]
fn adding_a_thread_bound_callback_off_the_loop_thread_is_refused_and_hands_it_back() {
    let lp = SelectLoop::new().expect("loop");
    let handle = lp.handle();
    thread::spawn(move || {
        let marker = Rc::new(());
        let kept = marker.clone();
        let rejected = handle
            .add_timer(
                Schedule::EVERY_ITERATION,
                anyloop::TimerCallback::local(move |_| drop(kept.clone())),
            )
            .expect_err("not the loop's thread");
        assert!(matches!(
            rejected.error(),
            Error::WrongThread { id: None, .. }
        ));
        assert_eq!(
            Rc::strong_count(&marker),
            2,
            "the callback comes back alive"
        );
        drop(rejected.into_callback());
        assert_eq!(Rc::strong_count(&marker), 1);
        assert_eq!(handle.stats().timers, 0);
    })
    .join()
    .expect("the other thread");
}
