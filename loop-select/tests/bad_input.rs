//! Bad input, closed fds, always-ready files, panics (contract [R2](anyloop::contract#r2)–[R4](anyloop::contract#r4), [R51](anyloop::contract#r51)–[R55](anyloop::contract#r55), [R60](anyloop::contract#r60)).
mod util;

use anyloop::Runner;
use anyloop::Schedule;
use std::fs::File;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyloop::{Error, IoEvents, RegistrationId, TimerId, WatchId};
use util::*;

#[test]
fn rejected_adds_hand_the_callback_back_without_freeing() {
    for poller in POLLERS {
        let lp = new_loop(poller);
        let frees = FreeLog::default();
        let h = lp.handle();
        let probe = frees.probe("cb");
        let rejected = h
            .add_watch(-1, IoEvents::READABLE, move |_, _, _| {
                let _keep = &probe;
            })
            .unwrap_err();
        assert!(matches!(rejected.error(), Error::InvalidFd { fd: -1, .. }));
        assert!(frees.freed().is_empty());
        // Closed fd.
        let closed = Pipe::new().rfd();
        let rejected = h
            .add_watch(closed, IoEvents::READABLE, rejected.into_callback())
            .unwrap_err();
        assert!(
            matches!(rejected.error(), Error::InvalidFd { .. }),
            "{:?}",
            rejected.error()
        );
        // Unknown bits.
        let p = Pipe::new();
        let rejected = h
            .add_watch(
                p.rfd(),
                IoEvents::from_bits_retain(0x40),
                rejected.into_callback(),
            )
            .unwrap_err();
        assert!(matches!(
            rejected.error(),
            Error::UnknownEvents { bits: 0x40, .. }
        ));
        assert!(frees.freed().is_empty(), "{poller:?}: a failed add freed");
        assert_eq!(lp.stats().watches, 0);
        drop(rejected); // the caller's to drop
        assert_eq!(frees.count("cb"), 1);
    }
}

#[test]
fn unknown_ids_double_remove_and_no_resurrection() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let h = lp.handle();
        let fake = WatchId::allocate();
        assert!(matches!(h.remove_watch(fake), Err(Error::NotFound { .. })));
        assert!(matches!(
            h.update_watch(fake, IoEvents::READABLE),
            Err(Error::NotFound { .. })
        ));
        let dev_null = File::open("/dev/null").unwrap();
        let hits = Counter::default();
        let c = hits.clone();
        let id = h
            .add_watch(
                dev_null.as_raw_fd(),
                IoEvents::READABLE | IoEvents::WRITABLE,
                move |_, _, _| c.hit(),
            )
            .unwrap();
        h.update_watch(id, IoEvents::empty()).unwrap();
        h.remove_watch(id).unwrap();
        assert!(
            matches!(h.update_watch(id, IoEvents::READABLE), Err(Error::NotFound { id: RegistrationId::Watch(x) }) if x == id)
        );
        assert!(matches!(h.remove_watch(id), Err(Error::NotFound { .. })));
        let t = h
            .add_timer(Schedule::Every(Duration::from_secs(10)), |_| {})
            .unwrap();
        h.update_timer(t, Schedule::Disabled).unwrap();
        h.remove_timer(t).unwrap();
        assert!(matches!(
            h.update_timer(t, Schedule::EVERY_ITERATION),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(h.remove_timer(t), Err(Error::NotFound { .. })));
        assert!(matches!(
            h.remove_timer(TimerId::allocate()),
            Err(Error::NotFound { .. })
        ));
        run_for(&mut lp, Duration::from_millis(50));
        assert_eq!(hits.get(), 0, "{poller:?}: resurrected");
        assert_eq!(lp.stats().pending_frees, 0);
    }
}

#[test]
fn regular_files_and_dev_null_are_always_ready() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let file = File::open("/etc/hostname")
            .or_else(|_| File::open(std::env::current_exe().unwrap()))
            .unwrap();
        let null = File::options().write(true).open("/dev/null").unwrap();
        let got: Arc<Mutex<Vec<IoEvents>>> = Arc::default();
        let (g1, g2) = (got.clone(), got.clone());
        let h = lp.handle();
        let a = h
            .add_watch(file.as_raw_fd(), IoEvents::READABLE, move |_, _, ev| {
                g1.lock().unwrap().push(ev)
            })
            .unwrap();
        let b = h
            .add_watch(null.as_raw_fd(), IoEvents::WRITABLE, move |_, _, ev| {
                g2.lock().unwrap().push(ev)
            })
            .unwrap();
        // No limit, yet it must not block: both are ready at once.
        assert_eq!(lp.run_once(None).unwrap(), 2, "{poller:?}");
        assert_eq!(lp.run_once(None).unwrap(), 2, "{poller:?}: level-triggered");
        let got = got.lock().unwrap().clone();
        assert!(
            got.contains(&IoEvents::READABLE) && got.contains(&IoEvents::WRITABLE),
            "{got:?}"
        );
        // Disabled: silent, and the loop may block again.
        h.update_watch(a, IoEvents::empty()).unwrap();
        h.remove_watch(b).unwrap();
        assert_eq!(lp.run_once(Some(Duration::from_millis(20))).unwrap(), 0);
    }
}

#[test]
fn fd_closed_while_watched_never_spins_and_remove_still_frees() {
    for poller in POLLERS {
        for (close_idle, label) in [(true, "idle"), (false, "after dispatch")] {
            let mut lp = new_loop(poller);
            let p = Pipe::new();
            let frees = FreeLog::default();
            let probe = frees.probe("w");
            let hits = Counter::default();
            let c = hits.clone();
            let h = lp.handle();
            let id = h
                .add_watch(p.rfd(), IoEvents::READABLE, move |_, _, _| {
                    let _keep = &probe;
                    c.hit();
                })
                .unwrap();
            if !close_idle {
                p.put(1); // dispatched once, unread: the mio poller re-checks it next time
                lp.run_once(Some(PATIENCE)).unwrap();
            }
            let Pipe { read, write } = p;
            drop(read);
            let before = hits.get();
            let iterations = run_for(&mut lp, Duration::from_millis(200));
            assert!(
                iterations < 40,
                "{poller:?}/{label}: {iterations} iterations: spinning"
            );
            assert!(
                hits.get() - before <= 1,
                "{poller:?}/{label}: ERROR delivered more than once"
            );
            h.remove_watch(id).unwrap();
            lp.drain().unwrap();
            assert_eq!(frees.count("w"), 1);
            drop(write);
        }
    }
}

#[test]
fn closed_fd_number_reused_by_a_new_pipe_is_watched_afresh() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let old = Pipe::new();
        let number = old.rfd();
        let h = lp.handle();
        let stale = h
            .add_watch(number, IoEvents::READABLE, |_, _, _| {})
            .unwrap();
        // Library bug (R53): closed without removing. Then the number comes back.
        let Pipe { read, write } = old;
        drop(read);
        drop(write);
        let fresh = Pipe::new();
        let fresh = if fresh.rfd() == number {
            fresh
        } else {
            // The number was not reused: make it so with dup2-like renumbering.
            let (r, w) = (fresh.read.into_raw_fd(), fresh.write);
            let target = rustix::io::fcntl_dupfd_cloexec(
                // SAFETY: test helper; r is an open fd we own.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(r) },
                number,
            )
            .unwrap();
            // SAFETY: r is ours and no longer used.
            drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(r) });
            Pipe {
                read: target,
                write: w,
            }
        };
        if fresh.rfd() != number {
            continue; // could not reproduce the reuse on this system
        }
        let hits = Counter::default();
        let c = hits.clone();
        let new = h
            .add_watch(number, IoEvents::READABLE, move |_, fd, _| {
                take_one(fd);
                c.hit()
            })
            .unwrap();
        fresh.put(1);
        run_until(&mut lp, || hits.get() == 1);
        h.remove_watch(stale).unwrap();
        fresh.put(1);
        run_until(&mut lp, || hits.get() == 2);
        h.remove_watch(new).unwrap();
        let _ = poller;
    }
}

#[test]
fn panicking_callback_is_reported_and_the_loop_stays_usable() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let h = lp.handle();
        let others = Counter::default();
        let frees = FreeLog::default();
        let c = others.clone();
        let probe = frees.probe("bad");
        let bad = h
            .add_timer(Schedule::EVERY_ITERATION, move |_| {
                let _keep = &probe;
                panic!("boom")
            })
            .unwrap();
        h.add_timer(Schedule::EVERY_ITERATION, move |_| c.hit())
            .unwrap();
        let err = lp.run_once(Some(PATIENCE)).unwrap_err();
        match err {
            Error::CallbackPanicked { id, message } => {
                assert_eq!(id, RegistrationId::Timer(bad));
                assert_eq!(message, "boom");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            others.get(),
            1,
            "{poller:?}: the rest of the batch did not run"
        );
        h.remove_timer(bad).unwrap();
        assert_eq!(lp.run_once(Some(PATIENCE)).unwrap(), 1);
        assert_eq!(frees.count("bad"), 1);
        // A panicking free is reported too.
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("free boom")
            }
        }
        let bomb = Bomb;
        let t = h
            .add_timer(Schedule::Disabled, move |_| {
                let _keep = &bomb;
            })
            .unwrap();
        h.remove_timer(t).unwrap();
        assert!(matches!(lp.drain(), Err(Error::CallbackPanicked { .. })));
        assert_eq!(lp.stats().pending_frees, 0);
    }
}

#[test]
fn closed_fd_whose_file_lives_on_elsewhere_does_not_spin_after_removal() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let p = Pipe::new();
        let other = Pipe::new();
        let dup = p.read.try_clone().unwrap(); // keeps the file open after we close `watched`
        let watched = p.read.try_clone().unwrap();
        let h = lp.handle();
        let id = h
            .add_watch(watched.as_raw_fd(), IoEvents::READABLE, |_, _, _| {})
            .unwrap();
        let hits = Counter::default();
        let c = hits.clone();
        let live = h
            .add_watch(other.rfd(), IoEvents::READABLE, move |_, fd, _| {
                take_one(fd);
                c.hit()
            })
            .unwrap();
        lp.run_once(Some(Duration::from_millis(5))).unwrap();
        drop(watched); // library bug (R53): closed before removal
        p.put(1); // readable through `dup`: epoll still reports the old registration
        h.remove_watch(id).unwrap(); // EPOLL_CTL_DEL can no longer reach it
        let iterations = run_for(&mut lp, Duration::from_millis(200));
        assert!(
            iterations < 40,
            "{poller:?}: {iterations} iterations: spinning"
        );
        // Other registrations survive the clean-up.
        other.put(1);
        run_until(&mut lp, || hits.get() == 1);
        h.remove_watch(live).unwrap();
        drop(dup);
    }
}

#[test]
fn a_panic_report_names_the_callback() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let h = lp.handle();
        let id = h
            .add_timer(
                Schedule::EVERY_ITERATION,
                anyloop::TimerCallback::new(|_| panic!("boom")).named("keepalive"),
            )
            .unwrap();
        match lp.run_once(Some(Duration::ZERO)) {
            Err(Error::CallbackPanicked { id: got, message }) => {
                assert_eq!(got, RegistrationId::Timer(id));
                assert!(message.contains("boom"), "{message}");
                assert!(message.contains("keepalive"), "R56: {message}");
            }
            other => panic!("{other:?}"),
        }
        h.remove_timer(id).unwrap();
        lp.run_once(Some(Duration::ZERO)).unwrap();
    }
}

/// A watch disabled by an earlier callback of the same iteration is silent, even when its fd
/// was found closed in that iteration ([R18](anyloop::contract#r18),
/// [R52](anyloop::contract#r52)): the engine's forced ERROR meets the interest in force at
/// dispatch time. A regular file is re-checked every iteration, so the closed number is
/// reported deterministically; timers run before watches.
#[test]
fn a_watch_disabled_earlier_in_the_iteration_gets_no_error_for_its_closed_fd() {
    use std::os::fd::AsRawFd;
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let h = lp.handle();
        let file = std::fs::File::open("/proc/self/status").expect("a regular file");
        let fd = file.as_raw_fd();
        let calls = Counter::default();
        let c = calls.clone();
        let watch = h
            .add_watch(fd, IoEvents::READABLE, move |_, _, _| c.hit())
            .expect("watch");
        assert_eq!(lp.run_once(Some(Duration::ZERO)).expect("run"), 1);
        assert_eq!(calls.get(), 1);

        // Close the number; in the next iteration a timer disables the watch first.
        drop(file);
        let h2 = h.clone();
        let _timer = h
            .timer(Schedule::Once(Duration::ZERO), move |_| {
                h2.update_watch(watch, IoEvents::empty()).expect("disable");
            })
            .expect("timer");
        let before = calls.get();
        for _ in 0..5 {
            lp.run_once(Some(Duration::from_millis(5))).expect("run");
            assert_eq!(
                calls.get(),
                before,
                "{poller:?}: a disabled watch was called"
            );
        }
        h.remove_watch(watch).expect("remove");
        lp.run_once(Some(Duration::ZERO)).expect("run");
    }
}
