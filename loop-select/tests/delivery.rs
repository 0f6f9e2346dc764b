//! Level-triggered delivery, fan-out to several watches on one fd, reported bits.
mod util;

use anyloop::Runner;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyloop::IoEvents;
use util::*;

#[test]
fn level_triggered_partial_reads_are_called_again() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let pipe = Pipe::new();
        let calls = Counter::default();
        let c = calls.clone();
        lp.handle()
            .add_watch(
                pipe.rfd(),
                IoEvents::READABLE,
                move |_id, fd, ev: IoEvents| {
                    assert!(ev.contains(IoEvents::READABLE));
                    assert!(take_one(fd), "called without data");
                    c.hit();
                },
            )
            .unwrap();
        pipe.put(3);
        run_until(&mut lp, || calls.get() == 3);
        // Drained: no further calls.
        run_for(&mut lp, Duration::from_millis(50));
        assert_eq!(calls.get(), 3, "{poller:?}");
    }
}

#[test]
fn one_call_with_both_bits_and_own_bits_per_watch() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (&b).write_all_helper(b"x");
        let seen: Arc<Mutex<Vec<(&str, IoEvents)>>> = Arc::default();
        let h = lp.handle();
        for (name, interest) in [
            ("both", IoEvents::READABLE | IoEvents::WRITABLE),
            ("r", IoEvents::READABLE),
            ("w", IoEvents::WRITABLE),
            ("off", IoEvents::empty()),
        ] {
            let seen = seen.clone();
            h.add_watch(a.as_raw_fd(), interest, move |_id, _fd, ev| {
                seen.lock().unwrap().push((name, ev))
            })
            .unwrap();
        }
        assert_eq!(lp.run_once(Some(Duration::from_secs(5))).unwrap(), 3);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("both", IoEvents::READABLE | IoEvents::WRITABLE),
                ("r", IoEvents::READABLE),
                ("w", IoEvents::WRITABLE),
            ],
            "{poller:?}"
        );
    }
}

#[test]
fn hangup_reported_without_asking_and_no_spin_after_removal() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let pipe = Pipe::new();
        let got = Arc::new(Mutex::new(IoEvents::empty()));
        let g = got.clone();
        let h = lp.handle();
        let h2 = h.clone();
        h.add_watch(pipe.rfd(), IoEvents::READABLE, move |id, _fd, ev| {
            *g.lock().unwrap() |= ev;
            h2.remove_watch(id).unwrap();
        })
        .unwrap();
        let Pipe { read, write } = pipe;
        drop(write);
        run_until(&mut lp, || !got.lock().unwrap().is_empty());
        assert!(got.lock().unwrap().contains(IoEvents::HANGUP), "{poller:?}");
        assert!(
            run_for(&mut lp, Duration::from_millis(200)) < 30,
            "{poller:?} spins"
        );
        drop(read);
    }
}

#[test]
fn disabled_watch_is_silent_even_on_hangup() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let pipe = Pipe::new();
        let calls = Counter::default();
        let c = calls.clone();
        let id = lp
            .handle()
            .add_watch(pipe.rfd(), IoEvents::READABLE, move |_, _, _| c.hit())
            .unwrap();
        lp.handle().update_watch(id, IoEvents::empty()).unwrap();
        let Pipe { read, write } = pipe;
        drop(write);
        assert!(
            run_for(&mut lp, Duration::from_millis(200)) < 30,
            "{poller:?} spins"
        );
        assert_eq!(calls.get(), 0);
        // Re-enabled: the hang-up is reported.
        lp.handle().update_watch(id, IoEvents::READABLE).unwrap();
        run_until(&mut lp, || calls.get() > 0);
        lp.handle().remove_watch(id).unwrap();
        drop(read);
    }
}

#[test]
fn update_to_same_interest_is_a_no_op() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let pipe = Pipe::new();
        let calls = Counter::default();
        let c = calls.clone();
        let id = lp
            .handle()
            .add_watch(pipe.rfd(), IoEvents::READABLE, move |_, fd, _| {
                take_one(fd);
                c.hit()
            })
            .unwrap();
        pipe.put(1);
        run_until(&mut lp, || calls.get() == 1);
        lp.handle().update_watch(id, IoEvents::READABLE).unwrap();
        run_for(&mut lp, Duration::from_millis(50));
        assert_eq!(calls.get(), 1, "{poller:?}");
    }
}

#[test]
fn many_ready_fds_beyond_one_wait_buffer_are_all_delivered() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let pipes: Vec<Pipe> = (0..1500).map(|_| Pipe::new()).collect();
        let calls = Counter::default();
        for p in &pipes {
            let c = calls.clone();
            lp.handle()
                .add_watch(p.rfd(), IoEvents::READABLE, move |_, fd, _| {
                    assert!(take_one(fd));
                    c.hit()
                })
                .unwrap();
            p.put(1);
        }
        run_until(&mut lp, || calls.get() == pipes.len());
        run_for(&mut lp, Duration::from_millis(30));
        assert_eq!(calls.get(), pipes.len(), "{poller:?}");
    }
}

trait WriteAll {
    fn write_all_helper(self, bytes: &[u8]);
}

impl WriteAll for &UnixStream {
    fn write_all_helper(self, bytes: &[u8]) {
        use std::io::Write;
        let mut s = self;
        s.write_all(bytes).unwrap();
    }
}

/// A watch on a borrowed fd (`&UnixStream`, a `BorrowedFd`) and on its raw number name the
/// same fd ([`anyloop::AsWatchFd`]): all three hear it, with its number.
#[test]
fn watches_take_borrowed_fds_and_raw_numbers_alike() {
    for poller in POLLERS {
        let mut lp = new_loop(poller);
        let (ours, theirs) = UnixStream::pair().unwrap();
        let number = theirs.as_raw_fd();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let watch = |label: &'static str| {
            let heard = heard.clone();
            move |_id, fd, _ev| heard.lock().unwrap().push((label, fd))
        };
        let h = lp.handle();
        let _a = h
            .watch(&theirs, IoEvents::READABLE, watch("borrowed"))
            .unwrap();
        let _b = h
            .watch(
                std::os::fd::AsFd::as_fd(&theirs),
                IoEvents::READABLE,
                watch("fd"),
            )
            .unwrap();
        let _c = h
            .watch(number, IoEvents::READABLE, watch("number"))
            .unwrap();
        std::io::Write::write_all(&mut &ours, b"x").unwrap();
        run_until(&mut lp, || heard.lock().unwrap().len() >= 3);
        let mut got = heard.lock().unwrap()[..3].to_vec();
        got.sort();
        assert_eq!(
            got,
            [("borrowed", number), ("fd", number), ("number", number)],
            "{poller:?}"
        );
    }
}
