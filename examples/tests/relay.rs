//! The example relay, driven by the built-in loop with real pipes and files.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyloop_examples::relay::{LineRelay, RelayConfig, RelayEvent};
use anyloop_select::SelectLoop;

type Events = Arc<Mutex<Vec<RelayEvent>>>;

fn start(
    lp: &SelectLoop,
    input: OwnedFd,
    output: OwnedFd,
    config: RelayConfig,
) -> (LineRelay, Events) {
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    let relay = LineRelay::start(&lp.handle(), input, output, config, move |event| {
        sink.lock().unwrap().push(event);
    })
    .expect("relay starts");
    (relay, events)
}

/// Runs the loop until `done` holds, failing after a generous timeout.
fn run_until(lp: &mut SelectLoop, events: &Events, done: impl Fn(&[RelayEvent]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&events.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "timed out; events so far: {:?}",
            events.lock().unwrap()
        );
        lp.run_once(Some(Duration::from_millis(50)))
            .expect("iteration");
    }
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
    let mut lp = SelectLoop::new().unwrap();
    let (input, mut feed) = std::io::pipe().unwrap();
    let (out_read, out_write) = std::io::pipe().unwrap();
    let (_relay, events) = start(&lp, input.into(), out_write.into(), no_idle());
    feed.write_all(b"alpha\nbeta\ngamma without newline")
        .unwrap();
    drop(feed);
    run_until(&mut lp, &events, finished);
    assert!(matches!(
        events.lock().unwrap().last(),
        Some(RelayEvent::Finished {
            lines: 3,
            bytes: 32
        })
    ));
    // Let the frees run so the relay's write end closes and the reader sees end of file.
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(
        read_all(out_read.into()),
        "     1  alpha\n     2  beta\n     3  gamma without newline\n"
    );
    assert_eq!(
        lp.stats().watches + lp.stats().timers,
        0,
        "relay removed all it registered"
    );
}

#[test]
fn plain_mode_and_regular_file_input() {
    let mut lp = SelectLoop::new().unwrap();
    let path = std::env::temp_dir().join(format!("anyloop-relay-{}.txt", std::process::id()));
    std::fs::write(&path, "one\ntwo\n").unwrap();
    let input: OwnedFd = std::fs::File::open(&path).unwrap().into();
    std::fs::remove_file(&path).unwrap();
    let (out_read, out_write) = std::io::pipe().unwrap();
    let config = RelayConfig {
        number_lines: false,
        ..no_idle()
    };
    let (_relay, events) = start(&lp, input, out_write.into(), config);
    run_until(&mut lp, &events, finished);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(read_all(out_read.into()), "one\ntwo\n");
}

#[test]
fn idle_is_reported_once_per_quiet_spell_and_input_restarts_it() {
    let mut lp = SelectLoop::new().unwrap();
    let (input, mut feed) = std::io::pipe().unwrap();
    let (_out_read, out_write) = std::io::pipe().unwrap();
    let config = RelayConfig {
        idle_timeout: Some(Duration::from_millis(100)),
        ..RelayConfig::default()
    };
    let started = Instant::now();
    let (_relay, events) = start(&lp, input.into(), out_write.into(), config);
    let idles = |events: &[RelayEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, RelayEvent::Idle { .. }))
            .count()
    };
    run_until(&mut lp, &events, |e| idles(e) == 1);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "idle never fires early"
    );
    // Quiet for three more timers: still one report (the timer disabled itself).
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        lp.run_once(Some(Duration::from_millis(20))).unwrap();
    }
    assert_eq!(idles(&events.lock().unwrap()), 1);
    // Input restarts the countdown: a second report follows.
    feed.write_all(b"wake up\n").unwrap();
    run_until(&mut lp, &events, |e| idles(e) == 2);
}

#[test]
fn overlong_lines_are_cut() {
    let mut lp = SelectLoop::new().unwrap();
    let (input, mut feed) = std::io::pipe().unwrap();
    let (out_read, out_write) = std::io::pipe().unwrap();
    let config = RelayConfig {
        max_line: 4,
        number_lines: false,
        ..no_idle()
    };
    let (_relay, events) = start(&lp, input.into(), out_write.into(), config);
    feed.write_all(b"abcdefghij\nxy\n").unwrap();
    drop(feed);
    run_until(&mut lp, &events, finished);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(read_all(out_read.into()), "abcd\nefgh\nij\nxy\n");
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
    assert_eq!(cut, 2);
}

#[test]
fn backpressure_pauses_input_until_output_drains() {
    let mut lp = SelectLoop::new().unwrap();
    let (input, mut feed) = std::io::pipe().unwrap();
    let (mut out_read, out_write) = std::io::pipe().unwrap();
    let config = RelayConfig {
        max_pending_output: 16 * 1024,
        number_lines: false,
        ..no_idle()
    };
    let (relay, events) = start(&lp, input.into(), out_write.into(), config);
    // Nobody reads the output: its pipe fills (64 KiB), then the relay's queue passes the limit.
    let writer = std::thread::spawn(move || {
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
    run_until(&mut lp, &events, paused);
    assert!(relay.stats().pending_output > 16 * 1024);
    // Drain the output from another thread; the relay resumes and finishes.
    let reader = std::thread::spawn(move || {
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
    run_until(&mut lp, &events, finished);
    writer.join().unwrap();
    drop(relay);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(reader.join().unwrap(), 256 * 1024);
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, RelayEvent::Backpressure { paused: false })));
}

#[test]
fn a_closed_reader_is_a_write_failure_not_a_spin() {
    let mut lp = SelectLoop::new().unwrap();
    let (input, mut feed) = std::io::pipe().unwrap();
    let (out_read, out_write) = std::io::pipe().unwrap();
    drop(out_read);
    let (_relay, events) = start(&lp, input.into(), out_write.into(), no_idle());
    feed.write_all(b"nobody will read this\n").unwrap();
    run_until(&mut lp, &events, finished);
    assert!(matches!(
        events.lock().unwrap().last(),
        Some(RelayEvent::Failed { side: "write", .. })
    ));
}

#[test]
fn stop_removes_everything_and_frees_close_the_fds() {
    let mut lp = SelectLoop::new().unwrap();
    let (input, feed) = std::io::pipe().unwrap();
    let (out_read, out_write) = std::io::pipe().unwrap();
    let (relay, _events) = start(&lp, input.into(), out_write.into(), RelayConfig::default());
    assert_eq!((lp.stats().watches, lp.stats().timers), (2, 1));
    relay.stop();
    assert!(relay.is_stopped());
    assert_eq!((lp.stats().watches, lp.stats().timers), (0, 0));
    drop(relay);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(lp.stats().pending_frees, 0);
    // The relay's copy of the output's write end is closed: the reader sees end of file.
    assert_eq!(read_all(out_read.into()), "");
    // And its copy of the input's read end too: writing now fails with a broken pipe.
    let mut feed = feed;
    let _ = feed.as_raw_fd();
    assert!(feed.write_all(b"late\n").is_err());
}
