//! The example relay with real pipes and files, on every backend this build includes: the
//! same library code on the built-in loop (epoll and mio), a GLib context and a calloop loop,
//! reporting through a `Send` callback or a thread-bound one.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{Runner, Stopped};
use anyloop_backends::LoopChoice;
use anyloop_examples::relay::{LineRelay, RelayConfig, RelayEvent};

type Events = Arc<Mutex<Vec<RelayEvent>>>;

/// The loop a scenario runs on.
type Lp = Box<dyn Runner>;

/// Runs `scenario` once per backend this build includes, each on a fresh loop.
fn each_loop(scenario: impl Fn(LoopChoice, &mut Lp)) {
    for choice in LoopChoice::built() {
        let mut lp = choice.create().expect("the loop");
        scenario(choice, &mut lp);
    }
}

fn start(lp: &Lp, input: OwnedFd, output: OwnedFd, config: RelayConfig) -> (LineRelay, Events) {
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    let relay = LineRelay::start(&lp.handle(), input, output, config, move |event| {
        sink.lock().unwrap().push(event);
    })
    .expect("relay starts");
    (relay, events)
}

/// Runs the loop until `done` holds, failing after a generous timeout.
fn run_until(lp: &mut Lp, events: &Events, done: impl Fn(&[RelayEvent]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let stopped = lp
        .run_until(Some(deadline), &mut || done(&events.lock().unwrap()))
        .expect("iteration");
    assert_eq!(
        stopped,
        Stopped::Done,
        "timed out; events so far: {:?}",
        events.lock().unwrap()
    );
}

fn finished(events: &[RelayEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, RelayEvent::Finished { .. } | RelayEvent::Failed { .. }))
}

fn read_all(fd: OwnedFd) -> String {
    let mut out = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut out)
        .expect("read output");
    out
}

fn no_idle() -> RelayConfig {
    RelayConfig {
        idle_timeout: None,
        ..RelayConfig::default()
    }
}

#[test]
fn relays_numbered_lines_until_end_of_input() {
    each_loop(|choice, lp| {
        let (input, mut feed) = std::io::pipe().unwrap();
        let (out_read, out_write) = std::io::pipe().unwrap();
        let (_relay, events) = start(lp, input.into(), out_write.into(), no_idle());
        feed.write_all(b"alpha\nbeta\ngamma without newline")
            .unwrap();
        drop(feed);
        run_until(lp, &events, finished);
        assert!(
            matches!(
                events.lock().unwrap().last(),
                Some(RelayEvent::Finished {
                    lines: 3,
                    bytes: 32
                })
            ),
            "{choice}"
        );
        // Let the frees run so the relay's write end closes and the reader sees end of file.
        lp.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(
            read_all(out_read.into()),
            "     1  alpha\n     2  beta\n     3  gamma without newline\n",
            "{choice}"
        );
        let stats = lp.stats();
        assert_eq!(
            stats.watches + stats.timers,
            0,
            "{choice}: relay removed all it registered"
        );
    });
}

#[test]
fn plain_mode_and_regular_file_input() {
    each_loop(|choice, lp| {
        let path =
            std::env::temp_dir().join(format!("anyloop-relay-{}-{choice}.txt", std::process::id()));
        std::fs::write(&path, "one\ntwo\n").unwrap();
        let input: OwnedFd = std::fs::File::open(&path).unwrap().into();
        std::fs::remove_file(&path).unwrap();
        let (out_read, out_write) = std::io::pipe().unwrap();
        let config = RelayConfig {
            number_lines: false,
            ..no_idle()
        };
        let (_relay, events) = start(lp, input, out_write.into(), config);
        run_until(lp, &events, finished);
        lp.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(read_all(out_read.into()), "one\ntwo\n", "{choice}");
    });
}

#[test]
fn idle_is_reported_once_per_quiet_spell_and_input_restarts_it() {
    each_loop(|choice, lp| {
        let (input, mut feed) = std::io::pipe().unwrap();
        let (_out_read, out_write) = std::io::pipe().unwrap();
        let config = RelayConfig {
            idle_timeout: Some(Duration::from_millis(100)),
            ..RelayConfig::default()
        };
        let started = Instant::now();
        let (relay, events) = start(lp, input.into(), out_write.into(), config);
        let idles = |events: &[RelayEvent]| {
            events
                .iter()
                .filter(|e| matches!(e, RelayEvent::Idle { .. }))
                .count()
        };
        run_until(lp, &events, |e| idles(e) == 1);
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "{choice}: idle never fires early"
        );
        // Quiet for three more timeouts: still one report (the one-shot stays disabled).
        let until = Instant::now() + Duration::from_millis(300);
        let stopped = lp.run_until(Some(until), &mut || false).unwrap();
        assert_eq!(stopped, Stopped::DeadlinePassed);
        assert_eq!(idles(&events.lock().unwrap()), 1, "{choice}");
        // The timer is still registered, disabled, until input re-arms it.
        assert_eq!(lp.stats().timers, 1, "{choice}");
        // Input restarts the countdown: a second report follows.
        feed.write_all(b"wake up\n").unwrap();
        run_until(lp, &events, |e| idles(e) == 2);
        drop(relay);
    });
}

#[test]
fn overlong_lines_are_cut() {
    each_loop(|choice, lp| {
        let (input, mut feed) = std::io::pipe().unwrap();
        let (out_read, out_write) = std::io::pipe().unwrap();
        let config = RelayConfig {
            max_line: 4,
            number_lines: false,
            ..no_idle()
        };
        let (_relay, events) = start(lp, input.into(), out_write.into(), config);
        feed.write_all(b"abcdefghij\nxy\n").unwrap();
        drop(feed);
        run_until(lp, &events, finished);
        lp.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(
            read_all(out_read.into()),
            "abcd\nefgh\nij\nxy\n",
            "{choice}"
        );
        let cut = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    RelayEvent::Line {
                        truncated: true,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(cut, 2, "{choice}");
    });
}

#[test]
fn backpressure_pauses_input_until_output_drains() {
    each_loop(|choice, lp| {
        let (input, mut feed) = std::io::pipe().unwrap();
        let (mut out_read, out_write) = std::io::pipe().unwrap();
        let config = RelayConfig {
            max_pending_output: 16 * 1024,
            number_lines: false,
            ..no_idle()
        };
        // Nobody reads the output, and its pipe is full from the start: the relay's queue
        // passes the limit and stays above it until the reader below drains the pipe.
        let prefilled = fill(&out_write);
        let (relay, events) = start(lp, input.into(), out_write.into(), config);
        let writer = thread::spawn(move || {
            let line = [b'x'; 1023];
            for _ in 0..256 {
                feed.write_all(&line).unwrap();
                feed.write_all(b"\n").unwrap();
            }
        });
        let paused = |e: &[RelayEvent]| {
            e.iter()
                .any(|e| matches!(e, RelayEvent::Backpressure { paused: true }))
        };
        run_until(lp, &events, paused);
        assert!(relay.stats().pending_output > 16 * 1024, "{choice}");
        // Drain the output from another thread; the relay resumes and finishes.
        let reader = thread::spawn(move || {
            let mut total = 0usize;
            let mut buf = [0u8; 8192];
            loop {
                match out_read.read(&mut buf) {
                    Ok(0) | Err(_) => break total,
                    Ok(n) => total += n,
                }
            }
        });
        // The writer finishes (dropping its end: end of input) only while the loop runs.
        run_until(lp, &events, finished);
        writer.join().unwrap();
        drop(relay);
        lp.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(reader.join().unwrap(), prefilled + 256 * 1024, "{choice}");
        assert!(events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, RelayEvent::Backpressure { paused: false })));
    });
}

#[test]
fn a_closed_reader_is_a_write_failure_not_a_spin() {
    each_loop(|choice, lp| {
        let (input, mut feed) = std::io::pipe().unwrap();
        let (out_read, out_write) = std::io::pipe().unwrap();
        drop(out_read);
        let (_relay, events) = start(lp, input.into(), out_write.into(), no_idle());
        feed.write_all(b"nobody will read this\n").unwrap();
        run_until(lp, &events, finished);
        assert!(
            matches!(
                events.lock().unwrap().last(),
                Some(RelayEvent::Failed { side: "write", .. })
            ),
            "{choice}"
        );
    });
}

#[test]
fn stop_removes_everything_and_frees_close_the_fds() {
    each_loop(|choice, lp| {
        let (input, feed) = std::io::pipe().unwrap();
        let (out_read, out_write) = std::io::pipe().unwrap();
        let (relay, _events) = start(lp, input.into(), out_write.into(), RelayConfig::default());
        let counts = |lp: &Lp| (lp.stats().watches, lp.stats().timers);
        assert_eq!(counts(lp), (2, 1), "{choice}");
        relay.stop();
        assert!(relay.is_stopped());
        assert_eq!(counts(lp), (0, 0), "{choice}");
        drop(relay);
        lp.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(lp.stats().pending_frees, 0, "{choice}");
        // The relay's copy of the output's write end is closed: the reader sees end of file.
        assert_eq!(read_all(out_read.into()), "", "{choice}");
        // And its copy of the input's read end too: writing now fails with a broken pipe.
        let mut feed = feed;
        let _ = feed.as_raw_fd();
        assert!(feed.write_all(b"late\n").is_err(), "{choice}");
    });
}

/// `start_local`: the application's callback is not `Send` (it fills an `Rc<RefCell<..>>`),
/// runs on the loop's thread only, and is dropped there, by the loop, once the relay stopped.
#[test]
fn a_thread_bound_report_callback_updates_rc_state_directly() {
    each_loop(|choice, lp| {
        let me = thread::current().id();
        let seen: Rc<RefCell<Vec<(RelayEvent, ThreadId)>>> = Rc::default();
        let dropped_on: Arc<Mutex<Option<ThreadId>>> = Arc::default();
        let (input, mut feed) = std::io::pipe().unwrap();
        let (out_read, out_write) = std::io::pipe().unwrap();
        let relay = {
            let (seen, guard) = (Rc::clone(&seen), DropWitness(Arc::clone(&dropped_on)));
            LineRelay::start_local(
                &lp.handle(),
                input.into(),
                out_write.into(),
                no_idle(),
                move |event| {
                    let _held = &guard;
                    seen.borrow_mut().push((event, thread::current().id()));
                },
            )
            .expect("relay starts")
        };
        feed.write_all(b"one\ntwo\n").unwrap();
        drop(feed);
        let deadline = Some(Instant::now() + Duration::from_secs(10));
        let stopped = lp
            .run_until(deadline, &mut || {
                seen.borrow()
                    .iter()
                    .any(|(e, _)| matches!(e, RelayEvent::Finished { .. }))
            })
            .unwrap();
        assert_eq!(stopped, Stopped::Done, "{choice}");
        assert_eq!(seen.borrow().len(), 3, "{choice}: two lines, then finished");
        assert!(seen.borrow().iter().all(|(_, on)| *on == me), "{choice}");
        // The relay removed its watches when it finished; the loop frees their callbacks (and
        // the application's callback with them) by its next iteration, on its own thread.
        drop(relay);
        lp.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(*dropped_on.lock().unwrap(), Some(me), "{choice}");
        assert_eq!(read_all(out_read.into()), "     1  one\n     2  two\n");
    });
}

/// Off the loop's thread, `start_local` is refused with a typed error and nothing stays
/// registered.
#[test]
fn start_local_off_the_loop_thread_is_wrong_thread() {
    each_loop(|choice, lp| {
        let handle = lp.handle();
        let outcome = thread::spawn(move || {
            let (input, _feed) = std::io::pipe().unwrap();
            let (_out, output) = std::io::pipe().unwrap();
            LineRelay::start_local(&handle, input.into(), output.into(), no_idle(), |_| {})
                .map(drop)
        })
        .join()
        .unwrap();
        assert!(
            matches!(outcome, Err(anyloop::Error::WrongThread { id: None, .. })),
            "{choice}: {outcome:?}"
        );
        lp.run_once(Some(Duration::ZERO)).unwrap();
        let stats = lp.stats();
        assert_eq!(
            (stats.watches, stats.timers, stats.pending_frees),
            (0, 0, 0),
            "{choice}"
        );
    });
}

/// The `relay` program on every loop, reading stdin; a loop left out of the build is a clear
/// error.
#[test]
fn the_relay_program_runs_on_every_loop() {
    for choice in LoopChoice::ALL {
        let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["--loop", choice.name(), "--idle", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run relay");
        let mut stdin = child.stdin.take().unwrap();
        // Ignore a broken pipe: a loop left out of the build exits before reading.
        let _ = stdin.write_all(b"alpha\nbeta\n");
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if choice.is_built() {
            assert!(output.status.success(), "{choice}: {stderr}");
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                "     1  alpha\n     2  beta\n",
                "{choice}"
            );
            assert!(
                stderr.contains(&format!("done on the {choice} loop: 2 lines")),
                "{choice}: {stderr}"
            );
        } else {
            assert_eq!(output.status.code(), Some(1), "{choice}");
            assert!(
                stderr.contains("not built into this binary"),
                "{choice}: {stderr}"
            );
        }
    }
}

/// Fills a pipe to capacity (it is left non-blocking); returns how many bytes that took.
fn fill(pipe: &std::io::PipeWriter) -> usize {
    let flags = rustix::fs::fcntl_getfl(pipe).unwrap();
    rustix::fs::fcntl_setfl(pipe, flags | rustix::fs::OFlags::NONBLOCK).unwrap();
    let chunk = [b'-'; 4096];
    let mut total = 0;
    loop {
        match rustix::io::write(pipe, &chunk) {
            Ok(n) => total += n,
            Err(rustix::io::Errno::AGAIN) => return total,
            Err(err) => panic!("filling the pipe: {err}"),
        }
    }
}

/// Records the thread it is dropped on.
struct DropWitness(Arc<Mutex<Option<ThreadId>>>);

impl Drop for DropWitness {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(thread::current().id());
    }
}
