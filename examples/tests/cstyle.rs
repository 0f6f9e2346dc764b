//! The C-style library (state that is not `Send`, driven through socket and timer callbacks)
//! bound to anyloop with thread-bound callbacks, on every backend this build includes: a real
//! exchange over socket pairs, every callback and every free on the loop's thread, and
//! thread-bound callbacks from another thread refused with a typed error and handed back.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, Runner, Schedule, Stopped, WatchCallback};
use anyloop_backends::LoopChoice;
use anyloop_examples::cstyle::{answer_pings, Done, LoopBinding, Multi, Outcome};

/// A hang guard: far longer than any scenario needs.
const LIMIT: Duration = Duration::from_secs(20);

/// What ran or was dropped, and on which thread; shared with other threads, so it can record
/// a mistake wherever it happens.
#[derive(Clone, Default)]
struct Threads(Arc<Mutex<Vec<(&'static str, ThreadId)>>>);

impl Threads {
    fn record(&self, what: &'static str) {
        self.0.lock().unwrap().push((what, thread::current().id()));
    }

    fn count(&self, what: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == what)
            .count()
    }

    /// Everything recorded somewhere else than on `thread`.
    fn elsewhere_than(&self, thread: ThreadId) -> Vec<(&'static str, ThreadId)> {
        let all = self.0.lock().unwrap();
        all.iter().filter(|e| e.1 != thread).copied().collect()
    }
}

/// Records the thread it is dropped on: put in a callback, it shows where the callback's
/// state was freed.
struct DropProbe {
    threads: Threads,
    what: &'static str,
}

impl DropProbe {
    fn new(threads: &Threads, what: &'static str) -> DropProbe {
        DropProbe {
            threads: threads.clone(),
            what,
        }
    }
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.threads.record(self.what);
    }
}

/// A library handle whose done callback records where it runs and where it is freed (it is
/// freed with the library, so the probe also shows where the library's last handle died).
fn probed_library(threads: &Threads) -> (Multi, Rc<RefCell<Vec<Done>>>) {
    let multi = Multi::new();
    let finished: Rc<RefCell<Vec<Done>>> = Rc::default();
    let (sink, threads, probe) = (
        Rc::clone(&finished),
        threads.clone(),
        DropProbe::new(threads, "library freed"),
    );
    multi.set_done_function(move |done| {
        let _held = &probe;
        threads.record("done callback ran");
        sink.borrow_mut().push(done);
    });
    (multi, finished)
}

#[test]
fn a_real_exchange_on_every_backend_with_every_callback_and_free_on_the_loop_thread() {
    for choice in LoopChoice::built() {
        let me = thread::current().id();
        let threads = Threads::default();
        let mut lp = choice.create().expect("the loop");
        let (multi, finished) = probed_library(&threads);
        let binding = LoopBinding::new(&lp.handle(), &multi).expect("bound on the loop thread");

        // Three peers answer all 25 pings; the fourth answers 2, then stays silent.
        let mut peers = Vec::new();
        for limit in [None, None, None, Some(2)] {
            let (ours, theirs) = UnixStream::pair().unwrap();
            peers.push(thread::spawn(move || answer_pings(theirs, limit)));
            let reply_timeout = match limit {
                None => LIMIT,
                Some(_) => Duration::from_millis(150),
            };
            multi.add(ours, 25, reply_timeout).expect("add");
        }
        // The library asked for its four sockets and its timeout, synchronously.
        assert_eq!(binding.watches(), 4, "{choice}");
        let stats = lp.stats();
        assert_eq!((stats.watches, stats.timers), (4, 1), "{choice}");

        let started = Instant::now();
        let stopped = lp
            .run_until(Some(started + LIMIT), &mut || finished.borrow().len() == 4)
            .expect("the loop runs");
        assert_eq!(stopped, Stopped::Done, "{choice}: {:?}", finished.borrow());
        {
            let finished = finished.borrow();
            let (answered, silent): (Vec<&Done>, Vec<&Done>) =
                finished.iter().partition(|d| d.outcome.is_success());
            assert_eq!(answered.len(), 3, "{choice}: {finished:?}");
            assert!(answered.iter().all(|d| d.answered == 25), "{choice}");
            assert!(
                matches!(
                    silent[..],
                    [Done {
                        answered: 2,
                        outcome: Outcome::TimedOut { ping: 3 },
                        ..
                    }]
                ),
                "{choice}: {finished:?}"
            );
        }
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{choice}: a timeout never fires early"
        );
        // Every socket is closed (after its watch was removed): each peer saw end of file.
        let answers: Vec<u32> = peers
            .into_iter()
            .map(|peer| peer.join().unwrap().expect("the peer"))
            .collect();
        assert_eq!(answers, [25, 25, 25, 2], "{choice}");
        assert_eq!((multi.running(), binding.watches()), (0, 0), "{choice}");
        let stats = lp.stats();
        assert_eq!((stats.watches, stats.timers), (0, 1), "{choice}");

        // The library's last handle is held by the binding's timer callback: dropping the
        // binding removes the timer, and the loop frees the callback, and the library with
        // it, at its next iteration, on its own thread. Never inside the remove.
        drop(binding);
        drop(multi);
        assert_eq!(
            threads.count("library freed"),
            0,
            "{choice}: freed too early"
        );
        lp.run_once(Some(Duration::ZERO)).expect("the loop runs");
        assert_eq!(threads.count("library freed"), 1, "{choice}");
        assert_eq!(threads.count("done callback ran"), 4, "{choice}");
        assert_eq!(threads.elsewhere_than(me), [], "{choice}");
        let stats = lp.stats();
        assert_eq!(
            (stats.watches, stats.timers, stats.pending_frees),
            (0, 0, 0),
            "{choice}"
        );
    }
}

#[test]
fn dropping_the_binding_mid_transfer_removes_everything_and_the_library_closes_after() {
    for choice in LoopChoice::built() {
        let me = thread::current().id();
        let threads = Threads::default();
        let mut lp = choice.create().expect("the loop");
        let (multi, finished) = probed_library(&threads);
        let binding = LoopBinding::new(&lp.handle(), &multi).expect("bound");
        let (ours, theirs) = UnixStream::pair().unwrap();
        // Answers the first ping only: the transfer stays in flight.
        let peer = thread::spawn(move || answer_pings(theirs, Some(1)));
        multi.add(ours, 3, LIMIT).expect("add");
        let stopped = lp
            .run_until(
                Some(Instant::now() + Duration::from_millis(300)),
                &mut || false,
            )
            .expect("the loop runs");
        assert_eq!(stopped, Stopped::DeadlinePassed);
        assert_eq!(multi.running(), 1, "{choice}");

        drop(binding);
        let stats = lp.stats();
        assert_eq!(
            (stats.watches, stats.timers),
            (0, 0),
            "{choice}: removed at once"
        );
        // The library's socket is still open (its watch callback is not freed yet); once the
        // loop freed it and the application dropped its handle, the socket closes.
        drop(multi);
        lp.run_once(Some(Duration::ZERO)).expect("the loop runs");
        assert_eq!(threads.count("library freed"), 1, "{choice}");
        assert_eq!(peer.join().unwrap().expect("the peer"), 1, "{choice}");
        assert!(finished.borrow().is_empty(), "{choice}");
        assert_eq!(threads.elsewhere_than(me), [], "{choice}");
        assert_eq!(lp.stats().pending_frees, 0, "{choice}");
    }
}

#[test]
fn thread_bound_callbacks_from_another_thread_are_refused_and_handed_back() {
    for choice in LoopChoice::built() {
        let threads = Threads::default();
        let mut lp = choice.create().expect("the loop");
        let handle = lp.handle();
        assert!(handle.is_loop_thread(), "{choice}");
        let (watched, mut peer) = UnixStream::pair().unwrap();
        // Readable at once: a registered watch would run in the iteration below.
        peer.write_all(b"x").unwrap();
        let fd = watched.as_raw_fd();
        let record = threads.clone();
        let other = thread::spawn(move || {
            let other = thread::current().id();
            assert!(!handle.is_loop_thread());
            let calls = Rc::new(Cell::new(0)); // not `Send`

            // The id API: a `WatchCallback::local` comes back inside the `Rejected`.
            let (count, probe) = (Rc::clone(&calls), DropProbe::new(&record, "watch dropped"));
            let callback = WatchCallback::local(move |_, _, _| {
                let _held = &probe;
                count.set(count.get() + 1);
            });
            let rejected = handle
                .add_watch(fd, IoEvents::READABLE, callback)
                .expect_err("refused off the loop thread");
            assert!(
                matches!(rejected.error(), Error::WrongThread { id: None, .. }),
                "{}",
                rejected.error()
            );
            let callback = rejected.into_callback();
            assert_eq!(callback.thread(), Some(other));
            assert!(callback.runs_here());
            drop(callback); // on its own thread: fine

            // The guard API.
            let (count, probe) = (Rc::clone(&calls), DropProbe::new(&record, "timer dropped"));
            let rejected = handle
                .timer_local(Schedule::Once(Duration::ZERO), move |_| {
                    let _held = &probe;
                    count.set(count.get() + 1);
                })
                .expect_err("refused off the loop thread");
            let (error, callback) = rejected.into_parts();
            assert!(
                matches!(error, Error::WrongThread { id: None, .. }),
                "{error}"
            );
            drop(callback);

            // A library bound here: refused the same way, and the library is untouched.
            let multi = Multi::new();
            let probe = DropProbe::new(&record, "library freed");
            multi.set_done_function(move |_| {
                let _held = &probe;
            });
            let error = LoopBinding::new(&handle, &multi).expect_err("refused");
            assert!(
                matches!(error, Error::WrongThread { id: None, .. }),
                "{error}"
            );
            drop(multi);

            assert_eq!(calls.get(), 0, "never called");
            other
        })
        .join()
        .expect("the other thread's checks");

        // Nothing reached the loop: no registration, no pending free, no callback runs.
        assert_eq!(
            lp.run_once(Some(Duration::from_millis(20))).expect("runs"),
            0,
            "{choice}"
        );
        let stats = lp.stats();
        assert_eq!(
            (stats.watches, stats.timers, stats.pending_frees),
            (0, 0, 0),
            "{choice}"
        );
        // Each refused callback was dropped once, on the thread that made it (its own).
        for what in ["watch dropped", "timer dropped", "library freed"] {
            assert_eq!(threads.count(what), 1, "{choice}: {what}");
        }
        let me = thread::current().id();
        assert!(
            threads.elsewhere_than(me).iter().all(|e| e.1 == other),
            "{choice}"
        );
        drop((watched, peer));
    }
}

/// The `cstyle` program, on every loop this build includes.
#[test]
fn the_cstyle_program_runs_on_every_loop() {
    for choice in LoopChoice::built() {
        let output = Command::new(env!("CARGO_BIN_EXE_cstyle"))
            .args(["--loop", choice.name(), "--transfers", "3", "--pings", "20"])
            .args(["--reply-timeout", "200", "--stall"])
            .output()
            .expect("run cstyle");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{choice}: {stdout}{stderr}");
        assert_eq!(
            stdout.matches("20 pings answered").count(),
            2,
            "{choice}: {stdout}"
        );
        assert!(
            stdout.contains("transfer 3: no answer to ping 11 in time (10 answered)"),
            "{choice}: {stdout}"
        );
        assert!(
            stderr.contains(&format!("on the {choice} loop"))
                && stderr.contains("holds 0 watches, 0 timers, 0 pending frees"),
            "{choice}: {stderr}"
        );
    }
}
