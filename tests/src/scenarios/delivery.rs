//! [S21–S27](anyloop::contract#s21) and [R8–R14](anyloop::contract#r8),
//! [R51](anyloop::contract#r51) ([D4](anyloop::contract#d4)): what a watch is told, and when.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyloop::{IoEvents, WatchId};

use crate::driver::TIMEOUT;
use crate::fds::{drain, read_one, Pipe, SocketPair};
use crate::probe::Log;
use crate::runner::Env;

const RW: IoEvents = IoEvents::READABLE.union(IoEvents::WRITABLE);

/// [R9](anyloop::contract#r9): events are never empty and a subset of interest ∪ {ERROR, HANGUP}.
fn assert_bits(events: IoEvents, interest: IoEvents) {
    assert!(!events.is_empty(), "R9: empty events delivered");
    assert!(
        (interest | IoEvents::ALWAYS_REPORTED).contains(events),
        "R9/R11: {events:?} delivered to a watch with interest {interest:?}"
    );
}

/// [S21](anyloop::contract#s21): two bytes, one read per call: called twice, in two iterations,
/// then never again.
pub fn s21_level_triggered_partial_read_r08(env: &Env) {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let (calls, iters, token) = (Arc::new(Log::new()), d.iteration_counter(), env.token("w"));
    let c = calls.clone();
    d.lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |_, fd, ev| {
            let _ = &token;
            c.push((iters.load(Ordering::SeqCst), ev));
            read_one(fd);
        })
        .expect("add");
    pipe.write(2);
    assert!(
        calls.wait_len(2, TIMEOUT),
        "R8: the second byte was not delivered"
    );
    d.settle();
    let calls = calls.snapshot();
    assert_eq!(calls.len(), 2, "called {} times for 2 bytes", calls.len());
    assert_ne!(calls[0].0, calls[1].0, "R12: two calls in one iteration");
    for (_, ev) in calls {
        assert_eq!(
            ev,
            IoEvents::READABLE,
            "R9/R11: a READABLE watch was told {ev:?}, expected READABLE alone"
        );
    }
}

/// [R8](anyloop::contract#r8): a watch on an always-writable socket is called on consecutive
/// iterations until it disables itself.
pub fn r08_writable_is_level_triggered(env: &Env) {
    let d = env.start_pumped();
    let sp = SocketPair::new();
    let (calls, token, lp) = (Arc::new(Log::new()), env.token("w"), d.lp().clone());
    let c = calls.clone();
    d.lp()
        .add_watch(sp.fd(), IoEvents::WRITABLE, move |id, _, ev| {
            let _ = &token;
            c.push(ev);
            if c.len() == 5 {
                lp.update_watch(id, IoEvents::empty()).expect("disable");
            }
        })
        .expect("add");
    assert!(
        calls.wait_len(5, TIMEOUT),
        "R8: writable not reported on every iteration"
    );
    d.settle();
    assert_eq!(calls.len(), 5, "R6/R10: called after disabling itself");
    for ev in calls.snapshot() {
        assert_eq!(
            ev,
            IoEvents::WRITABLE,
            "R9/R11: a WRITABLE watch was told {ev:?}, expected WRITABLE alone"
        );
    }
}

/// [S22](anyloop::contract#s22): a READABLE watch gets HANGUP when the writer closes, without
/// asking; after the callback removes the watch, the loop is quiet.
pub fn s22_hangup_without_asking_r09(env: &Env) {
    let d = env.start_pumped();
    let mut pipe = Pipe::new();
    let (calls, token, lp) = (Arc::new(Log::new()), env.token("w"), d.lp().clone());
    let c = calls.clone();
    d.lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |id, _, ev| {
            let _ = &token;
            c.push(ev);
            lp.remove_watch(id).expect("remove self");
        })
        .expect("add");
    pipe.close_writer();
    assert!(
        calls.wait_len(1, TIMEOUT),
        "no callback after the writer closed"
    );
    let ev = calls.snapshot()[0];
    assert_bits(ev, IoEvents::READABLE);
    assert!(
        ev.contains(IoEvents::HANGUP),
        "R9: HANGUP not reported: {ev:?}"
    );
    d.stop_pump();
    d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(200)))
        .assert_quiet("after removing the hung-up watch");
    assert_eq!(
        calls.len(),
        1,
        "R15: the hung-up watch was called {} times, expected once before its remove",
        calls.len()
    );
}

/// [S23](anyloop::contract#s23): a disabled watch on a hung-up pipe gets nothing and causes no
/// wake-ups ([R10](anyloop::contract#r10)).
pub fn s23_disabled_watch_silent_on_hangup_r10(env: &Env) {
    let d = env.start();
    let mut pipe = Pipe::new();
    pipe.write(1);
    let (calls, token) = (Arc::new(Log::new()), env.token("w"));
    let c = calls.clone();
    let id = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::empty(), move |_, _, ev| {
            let _ = &token;
            c.push(ev);
        })
        .expect("add");
    pipe.close_writer();
    d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(200)))
        .assert_quiet("disabled watch on a hung-up pipe");
    assert_eq!(calls.len(), 0, "R10: a disabled watch was called");
    // And it can still be re-enabled (R6): then it sees the data and the hang-up.
    d.lp().update_watch(id, IoEvents::READABLE).expect("enable");
    d.on_loop(|ctx| ctx.turns(2));
    let got = calls.snapshot();
    assert!(!got.is_empty(), "R6: re-enabled watch not called");
    assert_bits(got[0], IoEvents::READABLE);
    d.lp().remove_watch(id).expect("remove");
}

/// [S24](anyloop::contract#s24): readable and writable at once arrive in one call with both bits
/// ([R12](anyloop::contract#r12)).
pub fn s24_read_write_in_one_call_r12(env: &Env) {
    let d = env.start();
    let sp = SocketPair::new();
    sp.peer_write(3);
    let (calls, token, lp) = (Arc::new(Log::new()), env.token("w"), d.lp().clone());
    let c = calls.clone();
    d.lp()
        .add_watch(sp.fd(), RW, move |id, fd, ev| {
            let _ = &token;
            c.push(ev);
            drain(fd);
            lp.update_watch(id, IoEvents::empty()).expect("disable");
        })
        .expect("add");
    d.on_loop(|ctx| ctx.turns(3));
    assert_eq!(
        calls.snapshot(),
        vec![RW],
        "R12: not one call with both bits"
    );
}

/// [S25](anyloop::contract#s25): two watches on one socket, READABLE and WRITABLE: each gets only
/// its own bit, and both get HANGUP when the peer closes ([R9](anyloop::contract#r9),
/// [R11](anyloop::contract#r11)).
pub fn s25_overlapping_watches_own_bits_r09_r11(env: &Env) {
    let d = env.start();
    let mut sp = SocketPair::new();
    let mut logs = Vec::new();
    let mut ids = Vec::new();
    for (k, interest) in [IoEvents::READABLE, IoEvents::WRITABLE]
        .into_iter()
        .enumerate()
    {
        let (calls, token, lp) = (
            Arc::new(Log::new()),
            env.token(format!("w{k}")),
            d.lp().clone(),
        );
        let c = calls.clone();
        ids.push(
            d.lp()
                .add_watch(sp.fd(), interest, move |id, fd, ev| {
                    let _ = &token;
                    c.push(ev);
                    drain(fd);
                    lp.update_watch(id, IoEvents::empty()).expect("disable");
                })
                .expect("add"),
        );
        logs.push(calls);
    }
    sp.peer_write(1);
    d.on_loop(|ctx| ctx.turns(3));
    assert_eq!(
        logs[0].take(),
        vec![IoEvents::READABLE],
        "R11: the READABLE watch"
    );
    assert_eq!(
        logs[1].take(),
        vec![IoEvents::WRITABLE],
        "R11: the WRITABLE watch"
    );
    sp.close_peer();
    for (k, interest) in [IoEvents::READABLE, IoEvents::WRITABLE]
        .into_iter()
        .enumerate()
    {
        d.lp().update_watch(ids[k], interest).expect("re-enable");
    }
    d.on_loop(|ctx| ctx.turns(3));
    for (k, interest) in [IoEvents::READABLE, IoEvents::WRITABLE]
        .into_iter()
        .enumerate()
    {
        let got = logs[k].take();
        assert_eq!(got.len(), 1, "watch {k}: {got:?}");
        assert_bits(got[0], interest);
        assert!(
            got[0].contains(IoEvents::HANGUP),
            "R9: watch {k} missed HANGUP: {got:?}"
        );
    }
}

/// [R11](anyloop::contract#r11): three overlapping watches on one fd each get their own
/// intersection.
pub fn r11_three_overlapping_watches_one_fd(env: &Env) {
    let d = env.start();
    let sp = SocketPair::new();
    sp.peer_write(1);
    let interests = [IoEvents::READABLE, RW, IoEvents::WRITABLE];
    let mut logs = Vec::new();
    for (k, interest) in interests.into_iter().enumerate() {
        let (calls, token, lp) = (
            Arc::new(Log::new()),
            env.token(format!("w{k}")),
            d.lp().clone(),
        );
        let c = calls.clone();
        d.lp()
            .add_watch(sp.fd(), interest, move |id, _, ev| {
                let _ = &token;
                c.push(ev);
                lp.update_watch(id, IoEvents::empty()).expect("disable");
            })
            .expect("add");
        logs.push(calls);
    }
    d.on_loop(|ctx| ctx.turns(3));
    for (k, interest) in interests.into_iter().enumerate() {
        assert_eq!(logs[k].snapshot(), vec![interest], "R11: watch {k}");
    }
}

/// [S26](anyloop::contract#s26): of two watches ready in one iteration that disable each other,
/// exactly one is called; the other is skipped until re-enabled, and then called
/// ([R18](anyloop::contract#r18)).
pub fn s26_interest_change_mid_iteration_r18(env: &Env) {
    let d = env.start();
    let pipes = [Pipe::new(), Pipe::new()];
    let calls = Arc::new(Log::new());
    let ids: Arc<std::sync::Mutex<Vec<WatchId>>> = Arc::default();
    for (k, pipe) in pipes.iter().enumerate() {
        let (c, token, lp, ids2) = (
            calls.clone(),
            env.token(format!("w{k}")),
            d.lp().clone(),
            ids.clone(),
        );
        let id = d
            .lp()
            .add_watch(pipe.fd(), IoEvents::READABLE, move |_, fd, _| {
                let _ = &token;
                c.push(k);
                read_one(fd);
                let other = crate::probe::lock(&ids2)[1 - k];
                let _ = lp.update_watch(other, IoEvents::empty());
            })
            .expect("add");
        crate::probe::lock(&ids).push(id);
    }
    for pipe in &pipes {
        pipe.write(1);
    }
    d.on_loop(|ctx| ctx.turns(3));
    let got = calls.take();
    assert_eq!(
        got.len(),
        1,
        "R18: a watch disabled mid-iteration was called: {got:?}"
    );
    let silenced = 1 - got[0];
    let silenced_id = crate::probe::lock(&ids)[silenced];
    d.lp()
        .update_watch(silenced_id, IoEvents::READABLE)
        .expect("re-enable");
    d.on_loop(|ctx| ctx.turns(1));
    assert!(
        calls.take().contains(&silenced),
        "R6: re-enabled watch not called"
    );
}

/// [S27](anyloop::contract#s27): updating a watch to its current interest is a no-op: no call, same
/// id still works.
pub fn s27_update_same_interest_noop_r05(env: &Env) {
    let d = env.start();
    let pipe = Pipe::new();
    let (calls, token) = (Arc::new(Log::new()), env.token("w"));
    let c = calls.clone();
    let id = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |id, fd, _| {
            let _ = &token;
            c.push(id);
            read_one(fd);
        })
        .expect("add");
    for _ in 0..50 {
        d.lp()
            .update_watch(id, IoEvents::READABLE)
            .expect("same interest");
    }
    d.on_loop(|ctx| ctx.turns(3));
    assert_eq!(
        calls.len(),
        0,
        "R5: an update to the same interest dispatched"
    );
    pipe.write(1);
    d.on_loop(|ctx| ctx.turns(2));
    assert_eq!(
        calls.snapshot(),
        vec![id],
        "the watch stopped working after no-op updates"
    );
}

/// [R9](anyloop::contract#r9): over many interest changes on a busy socket, every call's bits are
/// non-empty and a subset of the current interest plus ERROR/HANGUP.
pub fn r09_reported_bits_subset_of_interest(env: &Env) {
    let d = env.start();
    let sp = SocketPair::new();
    let interests = [
        IoEvents::READABLE,
        IoEvents::WRITABLE,
        RW,
        IoEvents::ALWAYS_REPORTED,
    ];
    let (calls, token) = (Arc::new(Log::new()), env.token("w"));
    let c = calls.clone();
    let id = d
        .lp()
        .add_watch(sp.fd(), RW, move |_, _, ev| {
            let _ = &token;
            c.push(ev);
        })
        .expect("add");
    for round in 0..12 {
        let interest = interests[round % interests.len()];
        d.lp().update_watch(id, interest).expect("update");
        if round % 3 == 0 {
            sp.peer_write(1);
        } else {
            drain(sp.fd());
        }
        d.on_loop(|ctx| ctx.turns(2));
        for ev in calls.take() {
            assert_bits(ev, interest);
        }
    }
}

/// [R51](anyloop::contract#r51)/[D4](anyloop::contract#d4): a regular file and /dev/null are
/// accepted and always ready for what was asked, on every iteration (level), as under poll(2).
pub fn r51_regular_file_and_dev_null_always_ready_d4(env: &Env) {
    let d = env.start();
    let path = std::env::temp_dir().join(format!(
        "anyloop-conformance-{}-{:?}.txt",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, b"hello\n").expect("write temp file");
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open temp file");
    let _ = std::fs::remove_file(&path);
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    let cases = [
        (file.as_raw_fd(), RW),
        (null.as_raw_fd(), IoEvents::READABLE),
    ];
    let mut logs = Vec::new();
    for (k, (fd, interest)) in cases.into_iter().enumerate() {
        let (calls, token, lp) = (
            Arc::new(Log::new()),
            env.token(format!("w{k}")),
            d.lp().clone(),
        );
        let c = calls.clone();
        d.lp()
            .add_watch(fd, interest, move |id, _, ev| {
                let _ = &token;
                c.push(ev);
                if c.len() == 3 {
                    lp.remove_watch(id).expect("remove");
                }
            })
            .unwrap_or_else(|r| panic!("R51/D4: fd {fd} refused: {}", r.error()));
        logs.push(calls);
    }
    d.on_loop(|ctx| ctx.turns(5));
    for (k, (_, interest)) in cases.into_iter().enumerate() {
        assert_eq!(
            logs[k].snapshot(),
            vec![interest; 3],
            "D4: case {k} not always ready"
        );
    }
}

/// [R13](anyloop::contract#r13): each call carries its own id and fd, across many watches on
/// distinct fds.
pub fn r13_arguments_are_own_id_and_fd(env: &Env) {
    let d = env.start();
    let pipes: Vec<Pipe> = (0..8).map(|_| Pipe::new()).collect();
    let calls = Arc::new(Log::new());
    let mut want = Vec::new();
    for (k, pipe) in pipes.iter().enumerate() {
        let (c, token) = (calls.clone(), env.token(format!("w{k}")));
        let id = d
            .lp()
            .add_watch(pipe.fd(), IoEvents::READABLE, move |id, fd, ev| {
                let _ = &token;
                c.push((k, id, fd, ev));
                read_one(fd);
            })
            .expect("add");
        want.push((k, id, pipe.fd(), IoEvents::READABLE));
        pipe.write(1);
    }
    d.on_loop(|ctx| ctx.turns(2));
    let mut got = calls.snapshot();
    got.sort_by_key(|c| c.0);
    assert_eq!(got, want, "R13: wrong id/fd/events");
}
