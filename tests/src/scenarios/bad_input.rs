//! [S54–S57](anyloop::contract#s54) and [R1–R4](anyloop::contract#r1),
//! [R51–R55](anyloop::contract#r51), [R59–R60](anyloop::contract#r59): bad input, closed fds,
//! panics, signals.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread;
use std::time::Duration;

use anyloop::{Error, IoEvents, RegistrationId, Schedule, TimerId, WatchId};

use crate::bounded::on_other_thread;
use crate::driver::Driver;
use crate::fds::{closed_fd, high_fd, read_one, reuse_number, Pipe};
use crate::probe::Log;
use crate::runner::Env;

/// Panics unless `heard`, what an old watch heard after its number was closed and reused by
/// another file that was ready meanwhile, is at most one `ERROR` and nothing else: the old
/// watch never hears the new file ([R52](anyloop::contract#r52)). (Its own file had nothing
/// to report.)
#[track_caller]
fn assert_old_watch_never_heard_the_new_file(heard: &[IoEvents], number: RawFd, when: &str) {
    assert!(
        heard.len() <= 1 && heard.iter().all(|e| e.contains(IoEvents::ERROR)),
        "R52: the old watch on fd {number}, closed and reused by another file, heard {} \
         callbacks by the end of {when}, first {:?}: expected at most one ERROR and nothing else \
         (never the new file's readiness)",
        heard.len(),
        &heard[..heard.len().min(6)]
    );
}

/// The old watch of the reused-number scenarios: READABLE on `number` (an empty pipe),
/// logging what it hears; checked silent over `turns` iterations
/// ([R8](anyloop::contract#r8)).
fn listening_old_watch(
    env: &Env,
    d: &Driver,
    number: RawFd,
    turns: usize,
) -> (WatchId, Arc<Log<IoEvents>>) {
    let (heard, token) = (Arc::new(Log::new()), env.token("old"));
    let h = heard.clone();
    let id = d
        .lp()
        .add_watch(number, IoEvents::READABLE, move |_, _, ev| {
            let _ = &token;
            h.push(ev);
        })
        .expect("add old");
    d.on_loop(move |ctx| ctx.turns(turns));
    assert!(
        heard.is_empty(),
        "R8: the old watch heard {:?} of an empty pipe",
        heard.snapshot()
    );
    (id, heard)
}

/// The new file on a reused number made ready for a 200 ms window with its watch `new_id`
/// disabled: nobody may hear it, the old watch included ([R10](anyloop::contract#r10),
/// [R52](anyloop::contract#r52)). One byte is left unread in `fresh`.
#[track_caller]
fn new_file_ready_with_its_watch_disabled(
    d: &Driver,
    new_id: WatchId,
    fresh: &Pipe,
    calls: &Log<(WatchId, RawFd)>,
) {
    d.lp()
        .update_watch(new_id, IoEvents::empty())
        .expect("disable the new watch");
    fresh.write(1);
    d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(200)))
        .assert_quiet(
            "a reused number's new file ready, its watch disabled, the old watch enabled (R52)",
        );
    assert_eq!(
        calls.take(),
        vec![],
        "R10: the disabled new watch was called"
    );
}

/// [S54](anyloop::contract#s54): a watched fd closed without removing the watch: ERROR at most once
/// (poll-style) or silence (epoll-style), never a spin; remove later is Ok and frees once
/// ([R52](anyloop::contract#r52)).
pub fn s54_fd_closed_while_watched_no_spin_r52(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let rd = high_fd(pipe.rd.try_clone().expect("dup"), 400);
    let fd = rd.as_raw_fd();
    let (calls, token) = (Arc::new(Log::new()), env.token("w"));
    let c = calls.clone();
    let id = d
        .lp()
        .add_watch(fd, IoEvents::READABLE, move |_, _, ev| {
            let _ = &token;
            c.push(ev);
        })
        .expect("add");
    d.on_loop(|ctx| ctx.turns(2));
    drop(rd); // closed while watched (pipe.rd, another description, stays open)
    d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(200)))
        .assert_quiet("a watch on a closed fd");
    let got = calls.snapshot();
    assert!(got.len() <= 1, "R52: ERROR must come at most once: {got:?}");
    if let Some(ev) = got.first() {
        assert!(
            ev.contains(IoEvents::ERROR),
            "R9: a closed fd reports ERROR: {ev:?}"
        );
    }
    d.lp()
        .remove_watch(id)
        .expect("R52: remove after close must work");
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(env.probe().count("w"), 1, "R52: free after remove");
    drop(pipe);
}

/// [R52](anyloop::contract#r52)/[B62](anyloop::contract#b62): a watched fd closed while its file
/// description stays open elsewhere (a dup) and data arrives: no spin, and remove still works and
/// frees once.
pub fn r52_closed_fd_open_elsewhere_no_spin_b62(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let rd = high_fd(pipe.rd.try_clone().expect("dup"), 300);
    let (calls, token) = (Arc::new(Log::new()), env.token("w"));
    let c = calls.clone();
    let id = d
        .lp()
        .add_watch(rd.as_raw_fd(), IoEvents::READABLE, move |_, _, ev| {
            let _ = &token;
            c.push(ev);
        })
        .expect("add");
    d.on_loop(|ctx| ctx.turns(2));
    drop(rd);
    pipe.write(1); // readable through the surviving description
                   // The window with the number closed and its file alive: no spin, at most one report of
                   // the old file before the loop notices, at most one ERROR, then silence; still counted.
    let report = d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(200)));
    report.assert_quiet("while a watched fd is closed but its file lives on (R52)");
    let heard = calls.snapshot();
    assert!(
        heard.len() <= 2 && heard.iter().filter(|e| e.contains(IoEvents::ERROR)).count() <= 1,
        "R52: a closed number's watch heard {} callbacks (first {:?}): at most one report and one ERROR",
        heard.len(),
        &heard[..heard.len().min(4)]
    );
    let quiet = d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(100)));
    assert_eq!(quiet.callbacks, 0, "R52: not silent after the ERROR");
    assert_eq!(
        d.stats().watches,
        1,
        "R52: the watch stays registered until removed"
    );
    d.lp().remove_watch(id).expect("R52: remove after close");
    d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(200)))
        .assert_quiet("after removing a watch whose fd was closed but still open elsewhere");
    assert_eq!(
        env.probe().count("w"),
        1,
        "R52/R23: the watch must be freed once after its remove"
    );
}

/// [R19](anyloop::contract#r19)/[R52](anyloop::contract#r52)/[B40](anyloop::contract#b40): as
/// above, but the new watch on the reused number is added disabled and enabled later by an update,
/// while the stale watch keeps the same interest: the enable must reach the kernel (the old
/// registration vanished with the closed file), so the new watch fires. (Found by the model-based
/// tests: the update was skipped as a no-op.) The old watch is listened to throughout: while the
/// new file is ready (the new watch reading it, then disabled with data left unread) it hears at
/// most one `ERROR` and never the new file.
pub fn r52_reused_fd_number_watch_enabled_by_update_r19(env: &Env) {
    let d = env.start();
    let old = Pipe::new();
    let rd = high_fd(old.rd.try_clone().expect("dup"), 210);
    let number = rd.as_raw_fd();
    let (old_id, old_heard) = listening_old_watch(env, &d, number, 1);
    // Closed under its watch (a library bug, R53), with no iteration in between.
    drop(rd);
    drop(old);
    let fresh = Pipe::new();
    let reused = reuse_number(&fresh.rd, number);
    let (calls, token) = (Arc::new(Log::new()), env.token("new"));
    let c = calls.clone();
    let new_id = d
        .lp()
        .add_watch(number, IoEvents::empty(), move |id, fd, _| {
            let _ = &token;
            c.push((id, fd));
            read_one(fd);
        })
        .expect("add on the reused number");
    d.lp()
        .update_watch(new_id, IoEvents::READABLE)
        .expect("enable the new watch");
    fresh.write(1);
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        calls.take(),
        vec![(new_id, number)],
        "R19: the new watch, enabled by update on the reused number, never fired"
    );
    assert_old_watch_never_heard_the_new_file(
        &old_heard.snapshot(),
        number,
        "two iterations with the new file readable and its new watch enabled",
    );
    new_file_ready_with_its_watch_disabled(&d, new_id, &fresh, &calls);
    assert_old_watch_never_heard_the_new_file(
        &old_heard.snapshot(),
        number,
        "a 200 ms window with the new file readable and its new watch disabled",
    );
    d.lp()
        .remove_watch(old_id)
        .expect("R52: remove the old watch");
    d.lp().remove_watch(new_id).expect("remove new");
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        (env.probe().count("old"), env.probe().count("new")),
        (1, 1),
        "R52/R23: each watch freed once after its remove (old, new)"
    );
    drop(reused);
}

/// [R19](anyloop::contract#r19)/[R52](anyloop::contract#r52)/[B40](anyloop::contract#b40): a
/// watched fd is closed (its file kept open by another descriptor) and its number reused by a
/// new pipe with a new watch; removing the old watch never tears down the new one. The old
/// watch is listened to throughout: while the new file is ready (the new watch reading it, then
/// disabled with data left unread) it hears at most one `ERROR` and never the new file.
pub fn r52_closed_fd_number_reused_r19(env: &Env) {
    let d = env.start();
    let old = Pipe::new();
    let rd = high_fd(old.rd.try_clone().expect("dup"), 200);
    let number = rd.as_raw_fd();
    let (old_id, old_heard) = listening_old_watch(env, &d, number, 2);
    drop(rd);
    d.on_loop(|ctx| ctx.turns(2));
    // Reuse the very number for a fresh pipe's read end.
    let fresh = Pipe::new();
    let reused = reuse_number(&fresh.rd, number);
    let (calls, token) = (Arc::new(Log::new()), env.token("new"));
    let c = calls.clone();
    let new_id = d
        .lp()
        .add_watch(number, IoEvents::READABLE, move |id, fd, _| {
            let _ = &token;
            c.push((id, fd));
            read_one(fd);
        })
        .expect("add on the reused number");
    assert_ne!(new_id, old_id, "R1: the new watch got the old watch's id");
    fresh.write(1);
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        calls.take(),
        vec![(new_id, number)],
        "R19: the new watch on the reused number, once for one byte"
    );
    assert_old_watch_never_heard_the_new_file(
        &old_heard.snapshot(),
        number,
        "two iterations with the new file readable and its new watch enabled",
    );
    new_file_ready_with_its_watch_disabled(&d, new_id, &fresh, &calls);
    d.lp()
        .update_watch(new_id, IoEvents::READABLE)
        .expect("enable the new watch again");
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        calls.take(),
        vec![(new_id, number)],
        "R19: the new watch, enabled again, for the byte left unread"
    );
    assert_old_watch_never_heard_the_new_file(
        &old_heard.snapshot(),
        number,
        "a 200 ms window with the new file readable and its new watch disabled",
    );
    d.lp()
        .remove_watch(old_id)
        .expect("R52: remove the old watch");
    d.on_loop(|ctx| ctx.turns(2));
    fresh.write(1);
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        calls.take(),
        vec![(new_id, number)],
        "R19: the old removal broke the new watch"
    );
    d.lp().remove_watch(new_id).expect("remove new");
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        (env.probe().count("old"), env.probe().count("new")),
        (1, 1),
        "R52/R23: each watch freed once after its remove (old, new)"
    );
    drop(reused);
}

/// [S56](anyloop::contract#s56)/[R51](anyloop::contract#r51): negative, closed and out-of-range fds
/// give InvalidFd naming the fd; unknown bits give UnknownEvents naming fd and bits; nothing is
/// registered, nothing freed ([R2](anyloop::contract#r2), [R59](anyloop::contract#r59)).
pub fn s56_invalid_fd_and_unknown_bits_r02_r51_r59(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let bad_fds = [-1, -1000, i32::MIN, closed_fd(), i32::MAX];
    for fd in bad_fds {
        let token = env.token(format!("fd{fd}"));
        let r = d.raw().add_watch(fd, IoEvents::READABLE, move |_, _, _| {
            let _ = &token;
        });
        let rejected = r.expect_err("a bad fd was accepted");
        match rejected.error() {
            Error::InvalidFd { fd: got, .. } => assert_eq!(*got, fd, "R59: wrong fd named"),
            Error::Unsupported { fd: got, .. } if fd == i32::MAX => assert_eq!(
                *got, fd,
                "R59: Unsupported names another fd than the one added"
            ),
            other => panic!("R51: fd {fd}: {other:?}"),
        }
        assert_eq!(
            env.probe().count(&format!("fd{fd}")),
            0,
            "R2: freed a rejected callback"
        );
    }
    for bits in [0x10u32, 0x8000_0000, 0xFFFF_FFF0] {
        let token = env.token(format!("bits{bits:x}"));
        let events = IoEvents::from_bits_retain(bits | IoEvents::READABLE.bits());
        let r = d.raw().add_watch(pipe.fd(), events, move |_, _, _| {
            let _ = &token;
        });
        let rejected = r.expect_err("unknown bits accepted");
        match rejected.error() {
            Error::UnknownEvents { fd, bits: got } => {
                assert_eq!(*fd, pipe.fd(), "R59: fd");
                assert_eq!(*got, bits, "R59: bits");
            }
            other => panic!("unknown bits {bits:#x}: {other:?}"),
        }
    }
    // Unknown bits on update: refused, and the old interest stays.
    let (calls, token) = (Arc::new(Log::new()), env.token("good"));
    let c = calls.clone();
    let id = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |_, fd, _| {
            let _ = &token;
            c.push(());
            read_one(fd);
        })
        .expect("add");
    let r = d.lp().update_watch(id, IoEvents::from_bits_retain(0x40));
    assert!(
        matches!(r, Err(Error::UnknownEvents { bits: 0x40, .. })),
        "{r:?}"
    );
    let stats = d.stats();
    assert_eq!(
        stats.watches, 1,
        "R2: a failed add left a registration: {stats:?}"
    );
    pipe.write(1);
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(calls.len(), 1, "a refused update changed the watch");
}

/// [S57](anyloop::contract#s57): a panicking callback: run_once returns CallbackPanicked naming it;
/// the other ready callback still runs; pending frees run; the loop stays usable; remove works
/// ([R54](anyloop::contract#r54)).
pub fn s57_panicking_callback_r54(env: &Env) {
    let d = env.start();
    let (p1, p2) = (Pipe::new(), Pipe::new());
    let (calls, token) = (Arc::new(Log::new()), env.token("panicky"));
    let c = calls.clone();
    let bad = d
        .lp()
        .add_watch(p1.fd(), IoEvents::READABLE, move |_, fd, _| {
            let _ = &token;
            read_one(fd);
            c.push("panicky");
            panic!("deliberate panic from a conformance scenario");
        })
        .expect("add");
    let (c, token) = (calls.clone(), env.token("good"));
    d.lp()
        .add_watch(p2.fd(), IoEvents::READABLE, move |_, fd, _| {
            let _ = &token;
            read_one(fd);
            c.push("good");
        })
        .expect("add");
    let pending_token = env.token("pending");
    let doomed = d
        .lp()
        .add_timer(Schedule::Disabled, move |_| {
            let _ = &pending_token;
        })
        .expect("add");
    d.lp().remove_timer(doomed).expect("remove");
    p1.write(1);
    p2.write(1);
    let results = d.on_loop(|ctx| {
        (0..3)
            .map(|_| ctx.run_once(Some(Duration::ZERO)))
            .collect::<Vec<_>>()
    });
    let panicked: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert_eq!(panicked.len(), 1, "R54: {results:?}");
    match panicked[0] {
        Err(Error::CallbackPanicked { id, .. }) => {
            assert_eq!(*id, RegistrationId::Watch(bad), "R54/R59: wrong id named")
        }
        other => panic!("R54: {other:?}"),
    }
    let mut got = calls.snapshot();
    got.sort_unstable();
    assert_eq!(
        got,
        vec!["good", "panicky"],
        "R54: the other callback must still run"
    );
    assert_eq!(
        env.probe().count("pending"),
        1,
        "R54: pending frees must still run"
    );
    p1.write(1);
    d.on_loop(|ctx| ctx.run_once(Some(Duration::ZERO)))
        .expect_err("panics again");
    d.lp().remove_watch(bad).expect("R54: remove after a panic");
    p1.write(1);
    p2.write(1);
    let ran = d
        .on_loop(|ctx| ctx.run_once(Some(Duration::ZERO)))
        .expect("usable");
    assert_eq!(ran, 1, "R54: only the good watch is left");
    d.on_loop(|ctx| ctx.turns(1));
    assert_eq!(
        env.probe().count("panicky"),
        1,
        "R23: freed once after the panic"
    );
}

/// [R54](anyloop::contract#r54): a panicking timer callback and a panicking free are caught and
/// reported with their ids; the loop keeps working; every free still runs once
/// ([R23](anyloop::contract#r23)).
pub fn r54_panicking_timer_and_free_r23(env: &Env) {
    let d = env.start();
    let token = env.token("timer");
    let timer = d
        .lp()
        .add_timer(Schedule::EVERY_ITERATION, move |_| {
            let _ = &token;
            panic!("deliberate panic in a timer");
        })
        .expect("add");
    let r = d.on_loop(|ctx| ctx.run_once(Some(Duration::ZERO)));
    match r {
        Err(Error::CallbackPanicked { id, .. }) => assert_eq!(
            id,
            RegistrationId::Timer(timer),
            "R54: CallbackPanicked names another registration than the panicking timer"
        ),
        other => panic!("R54: {other:?}"),
    }
    d.lp().remove_timer(timer).expect("remove");
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            if !thread::panicking() {
                panic!("deliberate panic in a free");
            }
        }
    }
    let (guard, token) = (PanicOnDrop, env.token("panicking-free"));
    let victim = d
        .lp()
        .add_timer(Schedule::Disabled, move |_| {
            let _ = (&guard, &token);
        })
        .expect("add");
    d.lp().remove_timer(victim).expect("remove");
    let results = d.on_loop(|ctx| {
        (0..3)
            .map(|_| ctx.run_once(Some(Duration::ZERO)))
            .collect::<Vec<_>>()
    });
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(
        errors.len(),
        1,
        "R54: a panicking free must be reported once: {results:?}"
    );
    assert!(
        matches!(errors[0], Error::CallbackPanicked { id, .. } if *id == RegistrationId::Timer(victim)),
        "R54: {:?}",
        errors[0]
    );
    assert_eq!(
        env.probe().count("panicking-free"),
        1,
        "R54/R23: the panicking free must run exactly once"
    );
    let (calls, token) = (Arc::new(Log::new()), env.token("after"));
    let c = calls.clone();
    d.lp()
        .add_timer(Schedule::EVERY_ITERATION, move |_| {
            let _ = &token;
            c.push(());
        })
        .expect("add after panics");
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(calls.len(), 2, "the loop is not usable after panics");
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs (once per process) a SIGUSR2 handler that does nothing, without `SA_RESTART`, so that a
/// blocking call of the thread it is sent to fails with EINTR ([R55](anyloop::contract#r55)).
pub(crate) fn install_noop_sigusr2() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: installs a handler that does nothing (async-signal-safe) for
        // SIGUSR2, which nothing else in the kit uses; the sigaction struct is zeroed and
        // then filled completely.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = 0; // no SA_RESTART: blocking calls fail with EINTR
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut());
        }
    });
}

/// [R55](anyloop::contract#r55): signals interrupting the loop's poll (EINTR: a handler installed
/// without SA_RESTART) never surface as errors, and the pending timer still fires on time. (An
/// interrupted iteration may return having dispatched nothing.)
pub fn r55_eintr_is_retried(env: &Env) {
    install_noop_sigusr2();
    let d = env.start();
    let (calls, token) = (Arc::new(Log::new()), env.token("t"));
    let c = calls.clone();
    d.lp()
        .add_timer(Schedule::Every(Duration::from_millis(300)), move |id| {
            let _ = &token;
            c.push(id);
        })
        .expect("add");
    let pthread = d.on_loop(|_| {
        // SAFETY: pthread_self has no preconditions.
        unsafe { libc::pthread_self() }
    });
    /// Stops and joins the signalling thread, also when the scenario fails: it must never
    /// signal a thread that may have exited.
    struct Killer(Arc<AtomicBool>, Option<thread::JoinHandle<()>>);
    impl Drop for Killer {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
            if let Some(t) = self.1.take() {
                let _ = t.join();
            }
        }
    }
    let pending = d.spawn(|ctx| {
        let mut results = Vec::new();
        // An interrupted iteration may return Ok(0) (as GLib's does); never an error.
        for _ in 0..100 {
            let r = ctx.run_once(None);
            let fired = matches!(r, Ok(n) if n > 0);
            results.push(r.map_err(|e| e.to_string()));
            if fired {
                break;
            }
        }
        results
    });
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let killer = Killer(
        stop,
        Some(thread::spawn(move || {
            for _ in 0..10 {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
                // SAFETY: the loop thread is alive: the driver outlives `killer`, which
                // stops and joins this thread when dropped.
                unsafe { libc::pthread_kill(pthread, libc::SIGUSR2) };
            }
        })),
    );
    let results = pending.wait();
    drop(killer);
    assert!(
        results.iter().all(|r| r.is_ok()),
        "R55: EINTR surfaced: {results:?}"
    );
    assert_eq!(calls.len(), 1, "the timer did not fire: {results:?}");
}

/// [R3](anyloop::contract#r3): removing an unknown id, twice the same id, or another loop's id is
/// NotFound naming the id, and has no effect.
pub fn r03_double_and_unknown_remove_not_found_r59(env: &Env) {
    let (d, other) = (env.start(), env.start());
    let pipe = Pipe::new();
    let (th, tt) = (env.token("h"), env.token("t"));
    let h = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |_, _, _| {
            let _ = &th;
        })
        .expect("add");
    let t = d
        .lp()
        .add_timer(Schedule::Disabled, move |_| {
            let _ = &tt;
        })
        .expect("add");
    let foreign = other
        .lp()
        .add_timer(Schedule::Disabled, |_| {})
        .expect("add on the other loop");
    let not_found = |r: anyloop::Result<()>, want: RegistrationId| match r {
        Err(Error::NotFound { id }) => assert_eq!(id, want, "R59: wrong id named"),
        other => panic!("R3: expected NotFound for {want}: {other:?}"),
    };
    let fresh_h = WatchId::allocate();
    let fresh_t = TimerId::allocate();
    not_found(d.lp().remove_watch(fresh_h), fresh_h.into());
    not_found(d.lp().remove_timer(fresh_t), fresh_t.into());
    not_found(d.lp().remove_timer(foreign), foreign.into());
    not_found(
        d.lp().update_timer(foreign, Schedule::Disabled),
        foreign.into(),
    );
    d.lp().remove_watch(h).expect("first remove");
    d.lp().remove_timer(t).expect("first remove");
    not_found(d.lp().remove_watch(h), h.into());
    not_found(d.lp().remove_timer(t), t.into());
    not_found(d.lp().update_watch(h, IoEvents::READABLE), h.into());
    not_found(d.lp().update_timer(t, Schedule::Disabled), t.into());
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        (env.probe().count("h"), env.probe().count("t")),
        (1, 1),
        "R3/R23: each removed registration freed exactly once (watch, timer)"
    );
    other
        .lp()
        .remove_timer(foreign)
        .expect("the other loop's id is untouched");
    let msg = Error::not_found(h).to_string();
    assert!(
        msg.contains(&h.get().to_string()),
        "R59: message does not name the id: {msg}"
    );
}

/// [R4](anyloop::contract#r4): an update between remove and the deferred free (from the callback
/// itself, from the loop thread, from a foreign thread) is NotFound and never re-arms.
pub fn r04_update_after_remove_never_rearms(env: &Env) {
    let d = env.start();
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let fd = null.as_raw_fd();
    let calls = Arc::new(Log::new());
    // 1. From its own callback: remove, then try to re-enable.
    let (c, lp, token) = (calls.clone(), d.lp().clone(), env.token("self"));
    d.lp()
        .add_watch(fd, IoEvents::READABLE, move |id, _, _| {
            let _ = &token;
            c.push("self");
            lp.remove_watch(id).expect("remove");
            let r = lp.update_watch(id, IoEvents::READABLE);
            assert!(matches!(r, Err(Error::NotFound { .. })), "R4: {r:?}");
        })
        .expect("add");
    // 2. From another thread, while the loop is stopped (free still pending).
    let (c, token) = (calls.clone(), env.token("foreign"));
    let h = d
        .lp()
        .add_watch(fd, IoEvents::empty(), move |_, _, _| {
            let _ = &token;
            c.push("foreign");
        })
        .expect("add");
    let (c, token) = (calls.clone(), env.token("timer"));
    let t = d
        .lp()
        .add_timer(Schedule::Disabled, move |_| {
            let _ = &token;
            c.push("timer");
        })
        .expect("add");
    let lp = d.lp().clone();
    on_other_thread(
        "R4: removes, then updates (which must fail), from a foreign thread",
        move || {
            lp.remove_watch(h).expect("remove");
            lp.remove_timer(t).expect("remove");
            assert!(
                lp.update_watch(h, IoEvents::READABLE).is_err(),
                "R4: update_watch after remove must fail with NotFound"
            );
            assert!(
                lp.update_timer(t, Schedule::EVERY_ITERATION).is_err(),
                "R4: update_timer after remove must fail with NotFound"
            );
        },
    );
    let results = d.on_loop(|ctx| {
        (0..4)
            .map(|_| {
                ctx.run_once(Some(Duration::ZERO))
                    .map_err(|e| e.to_string())
            })
            .collect::<Vec<_>>()
    });
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(
        calls.snapshot(),
        vec!["self"],
        "R4: a removed registration was re-armed"
    );
    for label in ["self", "foreign", "timer"] {
        assert_eq!(env.probe().count(label), 1, "{label}");
    }
}

/// [R1](anyloop::contract#r1): ids are positive and never reused: 10 000 add/remove cycles on one
/// loop plus adds on a second loop give 10 000+ distinct ids, all positive.
pub fn r01_ids_unique_across_churn_and_loops(env: &Env) {
    let (a, b) = (env.start_pumped(), env.start_pumped());
    let pipe = Pipe::new();
    let mut seen = HashSet::new();
    for i in 0..10_000u32 {
        let lp = if i % 5 == 0 { b.lp() } else { a.lp() };
        let raw = if i % 2 == 0 {
            let id = lp
                .add_watch(pipe.fd(), IoEvents::empty(), |_, _, _| {})
                .expect("add");
            lp.remove_watch(id).expect("remove");
            id.get()
        } else {
            let id = lp.add_timer(Schedule::Disabled, |_| {}).expect("add");
            lp.remove_timer(id).expect("remove");
            id.get()
        };
        assert!(raw > 0, "R1: id {raw} not positive");
        assert!(seen.insert(raw), "R1: id {raw} reused after {i} cycles");
    }
}

/// [R60](anyloop::contract#r60): no operation panics on any bad input: odd fds, bits, intervals,
/// ids of every kind, in every order; every answer is a typed result.
pub fn r60_bad_input_never_panics(env: &Env) {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let lp = d.raw().clone();
    let fds = [-1, i32::MIN, i32::MAX, closed_fd(), pipe.fd()];
    let bits = [0u32, 1, 3, 0xF, 0x10, 0xFFFF_FFFF];
    let intervals = [
        Schedule::Disabled,
        Schedule::EVERY_ITERATION,
        Schedule::Every(Duration::from_nanos(1)),
        Schedule::Every(Duration::MAX),
        Schedule::Every(Duration::from_millis(u32::MAX as u64)),
        Schedule::Once(Duration::ZERO),
        Schedule::Once(Duration::MAX),
        Schedule::Once(Duration::from_secs(u64::MAX)),
    ];
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut ids = Vec::new();
        for &fd in &fds {
            for &b in &bits {
                if let Ok(id) = lp.add_watch(fd, IoEvents::from_bits_retain(b), |_, _, _| {}) {
                    ids.push(id);
                }
            }
        }
        let stale = [
            WatchId::allocate(),
            WatchId::from_raw(u64::MAX).expect("nonzero"),
        ];
        for id in ids.iter().chain(&stale) {
            for &b in &bits {
                let _ = lp.update_watch(*id, IoEvents::from_bits_retain(b));
            }
        }
        for id in ids.iter().chain(&stale) {
            let _ = lp.remove_watch(*id);
            let _ = lp.remove_watch(*id);
        }
        let mut timers = Vec::new();
        for &i in &intervals {
            timers.push(lp.add_timer(i, |_| {}).expect("add_timer"));
        }
        let stale_t = [TimerId::allocate(), TimerId::from_raw(1).expect("nonzero")];
        for id in timers.iter().chain(&stale_t) {
            for &i in &intervals {
                let _ = lp.update_timer(*id, i);
            }
        }
        for id in timers.iter().chain(&stale_t) {
            let _ = lp.remove_timer(*id);
            let _ = lp.remove_timer(*id);
        }
    }));
    assert!(outcome.is_ok(), "R60: an operation panicked on bad input");
    d.settle();
    d.stop_pump();
    let stats = d.stats();
    assert_eq!((stats.watches, stats.timers), (0, 0), "{stats:?}");
}

/// [R18](anyloop::contract#r18)/[R10](anyloop::contract#r10)/[R52](anyloop::contract#r52): a
/// watch disabled by an earlier callback of the same iteration hears nothing, not even the
/// `ERROR` of its fd found closed in that iteration. A regular file (re-checked every iteration,
/// so the closed number is reported deterministically) whose file a dup keeps open; a
/// zero-delay one-shot timer (timers run before watches) disables the watch in the iteration
/// after the close. Callbacks are counted over the whole window.
pub fn r18_disabled_earlier_in_iteration_no_error_for_closed_fd_r52(env: &Env) {
    let d = env.start();
    let file = std::fs::File::open("/proc/self/status").expect("a regular file");
    let watched = high_fd(OwnedFd::from(file), 330);
    let keeper = watched.try_clone().expect("dup keeps the file open");
    let (calls, token) = (Arc::new(Log::new()), env.token("w"));
    let c = calls.clone();
    let id = d
        .lp()
        .add_watch(watched.as_raw_fd(), IoEvents::READABLE, move |_, _, ev| {
            let _ = &token;
            c.push(ev);
        })
        .expect("add");
    d.on_loop(|ctx| ctx.turns(1));
    let before = calls.snapshot().len();
    assert!(before >= 1, "R8: a regular file is always readable");
    // Close the number; the next iteration's timer disables the watch before its turn.
    drop(watched);
    let lp = d.lp().clone();
    let timer = d
        .lp()
        .timer(Schedule::Once(Duration::ZERO), move |_| {
            lp.update_watch(id, IoEvents::empty())
                .expect("R52: update after close must work");
        })
        .expect("timer");
    d.on_loop(|ctx| ctx.turns(5));
    let after: Vec<IoEvents> = calls.snapshot().split_off(before);
    assert!(
        after.is_empty(),
        "R18: a watch disabled earlier in the iteration was called: {:?}",
        &after[..after.len().min(4)]
    );
    drop(timer);
    d.lp().remove_watch(id).expect("R52: remove after close");
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(env.probe().count("w"), 1, "R52: freed once");
    drop(keeper);
}
