//! Living inside an application's calloop loop: its own shared data, its own sources, its own
//! `run`, and ops made from its callbacks (outside the anyloop source's dispatch).

use anyloop::Schedule;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyloop::IoEvents;
use anyloop_calloop::CalloopSource;
use calloop::generic::Generic;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{Interest, Mode, PostAction};

/// A compositor-like state struct, passed to every calloop callback.
#[derive(Default)]
struct App {
    log: Vec<&'static str>,
    calloop_reads: usize,
}

#[test]
fn shared_data_and_other_sources_side_by_side() {
    let mut event_loop = calloop::EventLoop::<App>::try_new().expect("calloop");
    let backend = CalloopSource::new(&event_loop.handle()).expect("backend");
    let lp = backend.handle();

    // The application's own Generic source, next to the anyloop one.
    let (mut app_tx, app_rx) = UnixStream::pair().expect("pair");
    app_rx.set_nonblocking(true).expect("nonblocking");
    event_loop
        .handle()
        .insert_source(
            Generic::new(app_rx, Interest::READ, Mode::Level),
            |_readiness, rx, app: &mut App| {
                let mut buf = [0u8; 16];
                let n = (&**rx).read(&mut buf).unwrap_or(0);
                app.calloop_reads += n;
                Ok(PostAction::Continue)
            },
        )
        .expect("generic");

    // An anyloop watch (a library's) on another socket.
    let (mut lib_tx, lib_rx) = UnixStream::pair().expect("pair");
    let mut reader = lib_rx.try_clone().expect("dup");
    let events = Arc2::new();
    let ev = events.clone();
    let _watch = lp
        .watch(lib_rx.as_raw_fd(), IoEvents::READABLE, move |_, _, got| {
            let mut buf = [0u8; 16];
            let n = reader.read(&mut buf).unwrap_or(0);
            ev.push((got, n));
        })
        .expect("watch");

    app_tx.write_all(b"abc").expect("write");
    lib_tx.write_all(b"xy").expect("write");
    let mut app = App::default();
    let deadline = Instant::now() + Duration::from_secs(3);
    while (app.calloop_reads < 3 || events.len() < 1) && Instant::now() < deadline {
        backend
            .dispatch(&mut event_loop, Some(Duration::from_millis(100)), &mut app)
            .expect("dispatch");
    }
    assert_eq!(app.calloop_reads, 3);
    assert_eq!(events.take(), vec![(IoEvents::READABLE, 2)]);
}

#[test]
fn ops_from_calloop_callbacks_and_calloop_run_with_quit() {
    let mut event_loop = calloop::EventLoop::<App>::try_new().expect("calloop");
    let backend = CalloopSource::new(&event_loop.handle()).expect("backend");
    backend.stop_calloop_on_quit(event_loop.get_signal());
    let lp = backend.handle();
    let quitter = backend.quitter();

    // After 5 ms, an application timer (a calloop source) adds an anyloop timeout of 10 ms:
    // an op on the loop thread, outside the anyloop source's dispatch (R41). It must fire
    // on time although nothing wakes calloop for it.
    let started = Instant::now();
    let fired_at = std::sync::Arc::new(std::sync::Mutex::new(None));
    let f = fired_at.clone();
    let lp2 = lp.clone();
    let added_at = Rc::new(RefCell::new(None));
    let a = added_at.clone();
    event_loop
        .handle()
        .insert_source(
            Timer::from_duration(Duration::from_millis(5)),
            move |_, _, app: &mut App| {
                app.log.push("calloop timer");
                *a.borrow_mut() = Some(Instant::now());
                let quitter = quitter.clone();
                let f = f.clone();
                lp2.add_timer(Schedule::Every(Duration::from_millis(10)), move |id| {
                    let _ = id;
                    f.lock().expect("lock").get_or_insert_with(Instant::now);
                    quitter.quit();
                })
                .map_err(anyloop::Error::from)
                .expect("add_timer from a calloop callback");
                TimeoutAction::Drop
            },
        )
        .expect("timer");

    let mut app = App::default();
    // calloop's own run: stopped through the LoopSignal given to the backend.
    event_loop
        .run(Some(Duration::from_secs(5)), &mut app, |_| {})
        .expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "quit did not stop calloop's run"
    );
    assert_eq!(app.log, ["calloop timer"]);
    let fired = fired_at
        .lock()
        .expect("lock")
        .expect("the anyloop timer fired");
    let added = added_at.borrow().expect("added");
    assert!(
        fired >= added + Duration::from_millis(10),
        "R31: never early"
    );
    assert!(backend.take_error().is_none());
}

#[test]
fn panics_are_reported_through_take_error_with_calloop_dispatch() {
    let mut event_loop = calloop::EventLoop::<()>::try_new().expect("calloop");
    let backend = CalloopSource::new(&event_loop.handle()).expect("backend");
    let lp = backend.handle();
    let id = lp
        .add_timer(Schedule::EVERY_ITERATION, |_| panic!("boom"))
        .map_err(anyloop::Error::from)
        .expect("add");
    event_loop
        .dispatch(Some(Duration::from_millis(100)), &mut ())
        .expect("calloop dispatch never fails for a panicking callback");
    match backend.take_error() {
        Some(anyloop::Error::CallbackPanicked { id: got, .. }) => assert_eq!(got, id.into()),
        other => panic!("expected CallbackPanicked, got {other:?}"),
    }
    lp.remove_timer(id).expect("remove");
    // The loop stays usable.
    assert_eq!(
        backend
            .dispatch(&mut event_loop, Some(Duration::from_millis(10)), &mut ())
            .expect("dispatch"),
        0
    );
}

/// A tiny thread-safe log for callbacks (which must be `Send`).
#[derive(Clone)]
struct Arc2(std::sync::Arc<std::sync::Mutex<Vec<(IoEvents, usize)>>>);

impl Arc2 {
    fn new() -> Self {
        Arc2(Default::default())
    }
    fn push(&self, v: (IoEvents, usize)) {
        self.0.lock().expect("lock").push(v);
    }
    fn len(&self) -> usize {
        self.0.lock().expect("lock").len()
    }
    fn take(&self) -> Vec<(IoEvents, usize)> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}
