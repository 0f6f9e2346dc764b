//! Thread-bound callbacks on a GLib context iterated by more than one thread: a callback
//! created on the loop thread is never called nor dropped on another
//! ([R42](anyloop::contract#r42)); an iteration that skipped one says so with a typed error;
//! `run_once` on a context another thread owns is refused instead of blocking.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use anyloop::{Error, RegistrationId, Runner, Schedule};
use anyloop_glib::glib::MainContext;
use anyloop_glib::GlibLoop;

/// Records the thread it is dropped on.
struct DropSpy(Arc<Mutex<Vec<ThreadId>>>);

impl Drop for DropSpy {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(thread::current().id());
    }
}

#[test]
fn another_thread_iterating_the_context_never_runs_or_drops_a_thread_bound_callback() {
    let context = MainContext::new();
    let mut lp = GlibLoop::new(&context).expect("loop");
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

    // Another thread iterates the same context: the due timer is skipped there.
    let other = context.clone();
    thread::spawn(move || {
        other
            .with_thread_default(|| {
                for _ in 0..3 {
                    other.iteration(false);
                }
            })
            .expect("the context is free");
    })
    .join()
    .expect("the other thread");
    assert_eq!(calls.get(), 1, "called on another thread");

    // Back home: runs again, and the skip is reported by the next run_once.
    let result = lp.run_once(Some(Duration::ZERO));
    assert!(
        matches!(result, Err(Error::WrongThread { id: Some(RegistrationId::Timer(id)), .. }) if id == timer.id()),
        "{result:?}"
    );
    assert_eq!(calls.get(), 2);
    assert_eq!(lp.run_once(Some(Duration::ZERO)).expect("run"), 1);
    assert_eq!(calls.get(), 3);

    // Removed here, but the next iteration (which runs the free) happens elsewhere: the
    // callback is not dropped there.
    drop(timer);
    let other = context.clone();
    thread::spawn(move || {
        other
            .with_thread_default(|| other.iteration(false))
            .expect("the context is free");
    })
    .join()
    .expect("the other thread");
    assert!(
        drops
            .lock()
            .unwrap()
            .iter()
            .all(|&t| t == thread::current().id()),
        "dropped on another thread: {:?}",
        drops.lock().unwrap()
    );
    assert_eq!(lp.handle().stats().timers, 0);
}

#[test]
fn run_once_on_a_context_another_thread_owns_is_a_typed_error() {
    let context = MainContext::new();
    let lp = GlibLoop::new(&context).expect("loop");
    let owner = context.acquire().expect("acquire");
    let result = thread::spawn(move || {
        let mut lp = lp;
        lp.run_once(Some(Duration::from_millis(10)))
    })
    .join()
    .expect("the other thread");
    assert!(
        matches!(result, Err(Error::WrongThread { id: None, .. })),
        "{result:?}"
    );
    drop(owner);
}
