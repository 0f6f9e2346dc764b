//! The `poll(2)` layer on its own, through the [`Poller`] / [`Registrar`] traits the engine
//! uses.

use std::io::{PipeReader, PipeWriter, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

use super::{new_poll, PollPoller};
use crate::{Poller, Probe, Readiness, Registered, Registrar, Token};
use anyloop::IoEvents;

const OLD: Token = Token(7);
const NEW: Token = Token(8);
/// A wait that must find nothing: long enough for anything pending to show.
const SHORT: Duration = Duration::from_millis(20);
/// A wait that must end early; only ever reached when a test fails.
const PATIENCE: Duration = Duration::from_secs(5);

/// One wait: whether it was woken, and what it reported.
fn wait(poller: &mut PollPoller, timeout: Duration) -> (bool, Vec<Readiness>) {
    let mut out = Vec::new();
    let woken = poller.wait(&[], Some(timeout), &mut out).expect("wait");
    (woken, out)
}

fn ready(token: Token, events: IoEvents) -> Readiness {
    Readiness {
        token,
        events,
        invalid: false,
    }
}

fn invalid(token: Token) -> Readiness {
    Readiness {
        token,
        events: IoEvents::ERROR,
        invalid: true,
    }
}

/// A copy of `fd` at a number of at least `min`, far above what the tests running beside this
/// one open, so that no other test's file takes it once it is closed.
fn high(fd: &impl AsFd, min: RawFd) -> OwnedFd {
    rustix::io::fcntl_dupfd_cloexec(fd, min).expect("F_DUPFD_CLOEXEC")
}

/// Whether `fd` is readable now, asked of `poll(2)` directly.
fn readable_now(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).expect("poll") == 1
}

/// `number` is readable, but the next wait does not hear it: it is not polled.
fn assert_unheard(poller: &mut PollPoller, number: &OwnedFd, why: &str) {
    assert!(readable_now(number));
    assert_eq!(wait(poller, SHORT), (false, vec![]), "{why}");
}

/// The read end of a fresh pipe (nothing written), and its writer.
fn quiet_pipe() -> (OwnedFd, PipeWriter) {
    let (reader, writer) = std::io::pipe().unwrap();
    (reader.into(), writer)
}

/// Makes `number` name another file, a readable pipe (dup2 closes the old file atomically);
/// returns that pipe's ends, which keep it open and readable.
fn reuse_for_a_readable_pipe(number: &mut OwnedFd) -> (PipeReader, PipeWriter) {
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"the new file's data").unwrap();
    let fd = number.as_raw_fd();
    rustix::io::dup2(&reader, number).unwrap();
    assert_eq!(number.as_raw_fd(), fd);
    (reader, writer)
}

#[test]
fn a_number_reused_by_another_file_is_reported_invalid_once_then_dropped() {
    let (mut poller, registrar) = new_poll().unwrap();
    let (mut number, _old_writer) = quiet_pipe();
    let fd = number.as_raw_fd();
    let registered = registrar.register(fd, OLD, IoEvents::READABLE).unwrap();
    assert_eq!(registered, Registered::Kernel);
    assert_eq!(wait(&mut poller, Duration::ZERO), (false, vec![]));

    let _new_file = reuse_for_a_readable_pipe(&mut number);
    assert_eq!(
        wait(&mut poller, PATIENCE).1,
        vec![invalid(OLD)],
        "R52: the new file's readiness reached the old registration"
    );

    // Dropped from the set.
    assert_unheard(
        &mut poller,
        &number,
        "the invalid registration is still polled",
    );

    // An update registers whatever file the number names now (R53).
    let registered = registrar.reregister(fd, NEW, IoEvents::READABLE).unwrap();
    assert_eq!(registered, Registered::Kernel);
    assert_eq!(
        wait(&mut poller, PATIENCE).1,
        vec![ready(NEW, IoEvents::READABLE)]
    );
}

#[test]
fn forget_drops_a_registration_made_again_after_an_invalid_report() {
    let (mut poller, registrar) = new_poll().unwrap();
    let (mut number, _old_writer) = quiet_pipe();
    let fd = number.as_raw_fd();
    registrar.register(fd, OLD, IoEvents::READABLE).unwrap();
    let _new_file = reuse_for_a_readable_pipe(&mut number);
    assert_eq!(wait(&mut poller, PATIENCE).1, vec![invalid(OLD)]);

    // An update from another thread lands before the engine takes the report in (it still
    // counts the fd as registered): the set holds the number again...
    let answer = registrar.reregister(fd, OLD, IoEvents::READABLE).unwrap();
    assert_eq!(answer, Registered::Kernel);
    // ...until the engine, taking the report in, says it marked the fd gone.
    registrar.forget(fd, NEW);
    assert_eq!(
        wait(&mut poller, PATIENCE).1,
        vec![ready(OLD, IoEvents::READABLE)],
        "forget of another token dropped the registration"
    );
    registrar.forget(fd, OLD);
    assert_unheard(
        &mut poller,
        &number,
        "a registration the engine forgot is still polled",
    );
}

#[test]
fn a_closed_number_is_reported_invalid_once_then_dropped() {
    let (mut poller, registrar) = new_poll().unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"x").unwrap();
    let reader = high(&reader, 600);
    registrar
        .register(reader.as_raw_fd(), OLD, IoEvents::READABLE)
        .unwrap();
    assert_eq!(
        wait(&mut poller, PATIENCE).1,
        vec![ready(OLD, IoEvents::READABLE)]
    );
    // POLLNVAL; the file lives on in the pipe's first read end.
    drop(reader);
    assert_eq!(wait(&mut poller, PATIENCE).1, vec![invalid(OLD)]);
    assert_eq!(
        wait(&mut poller, SHORT),
        (false, vec![]),
        "R52: the closed number is polled again (a spin)"
    );
}

#[test]
fn regular_files_are_registered_and_ready_in_every_wait_closed_fds_are_gone() {
    let (mut poller, registrar) = new_poll().unwrap();
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let registered = registrar
        .register(
            file.as_raw_fd(),
            OLD,
            IoEvents::READABLE | IoEvents::WRITABLE,
        )
        .unwrap();
    assert_eq!(registered, Registered::Kernel, "D4: no always-ready path");
    for _ in 0..3 {
        assert_eq!(
            wait(&mut poller, PATIENCE).1,
            vec![ready(OLD, IoEvents::READABLE | IoEvents::WRITABLE)]
        );
    }

    let closed = high(&file, 700).as_raw_fd(); // dropped at once: closed
    let registered = registrar.register(closed, NEW, IoEvents::READABLE).unwrap();
    assert_eq!(registered, Registered::Gone);
    let registered = registrar.register(-1, NEW, IoEvents::READABLE).unwrap();
    assert_eq!(registered, Registered::Gone);
    assert_eq!(
        wait(&mut poller, PATIENCE).1,
        vec![ready(OLD, IoEvents::READABLE | IoEvents::WRITABLE)],
        "a Gone answer left a registration behind"
    );
}

#[test]
fn a_deregistered_fd_is_not_polled() {
    let (mut poller, registrar) = new_poll().unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"x").unwrap();
    registrar
        .register(reader.as_raw_fd(), OLD, IoEvents::READABLE)
        .unwrap();
    assert_eq!(
        wait(&mut poller, PATIENCE).1,
        vec![ready(OLD, IoEvents::READABLE)]
    );
    registrar.deregister(reader.as_raw_fd()).unwrap();
    assert_eq!(wait(&mut poller, SHORT), (false, vec![]));
    // Deregistering what is not registered is no error.
    registrar.deregister(reader.as_raw_fd()).unwrap();
}

#[test]
fn the_pollfd_array_is_rebuilt_only_after_a_change() {
    let (mut poller, registrar) = new_poll().unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"x").unwrap();
    let fd = reader.as_raw_fd();
    registrar.register(fd, OLD, IoEvents::READABLE).unwrap();
    for _ in 0..3 {
        assert_eq!(
            wait(&mut poller, PATIENCE).1,
            vec![ready(OLD, IoEvents::READABLE)]
        );
    }
    assert_eq!(poller.rebuilds(), 1, "a steady loop rebuilt its array");
    // The same registration again changes nothing.
    registrar.reregister(fd, OLD, IoEvents::READABLE).unwrap();
    wait(&mut poller, PATIENCE);
    assert_eq!(poller.rebuilds(), 1);
    // Another interest does.
    registrar
        .reregister(fd, OLD, IoEvents::READABLE | IoEvents::WRITABLE)
        .unwrap();
    assert_eq!(wait(&mut poller, PATIENCE).1.len(), 1);
    assert_eq!(poller.rebuilds(), 2);
    registrar.deregister(fd).unwrap();
    wait(&mut poller, Duration::ZERO);
    assert_eq!(poller.rebuilds(), 3);
}

#[test]
fn a_registration_from_another_thread_during_the_wait_wakes_it_and_is_polled_next() {
    let (mut poller, registrar) = new_poll().unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"x").unwrap();
    let fd = reader.as_raw_fd();
    // The engine's sequence for an op from another thread: change, then wake (R40).
    let other = std::thread::spawn(move || {
        registrar.register(fd, NEW, IoEvents::READABLE).unwrap();
        registrar.wake().unwrap();
        registrar
    });
    let (woken, mut heard) = wait(&mut poller, PATIENCE);
    assert!(woken, "R40: the wake-up did not end the wait");
    let _registrar = other.join().unwrap();
    if heard.is_empty() {
        // The registration came after the array was copied: the next wait has it.
        heard = wait(&mut poller, PATIENCE).1;
    }
    assert_eq!(heard, vec![ready(NEW, IoEvents::READABLE)]);
    let (woken, _) = wait(&mut poller, SHORT);
    assert!(!woken, "R45: the wake-up was not drained");
    drop(reader);
}

#[test]
fn probes_are_polled_in_the_same_call() {
    let (mut poller, _registrar) = new_poll().unwrap();
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let probe = Probe {
        token: OLD,
        fd: file.as_raw_fd(),
        interest: IoEvents::READABLE,
    };
    let mut out = Vec::new();
    let woken = poller.wait(&[probe], Some(PATIENCE), &mut out).unwrap();
    assert!(!woken);
    assert_eq!(out, vec![ready(OLD, IoEvents::READABLE)]);
    // A probe is for one wait only.
    assert_eq!(wait(&mut poller, SHORT), (false, vec![]));
}

/// The poll layer with a hook that runs right after each wait returns, before the engine takes
/// its reports in; it counts the reports of each wait.
struct Interposed {
    inner: PollPoller,
    after_wait: Arc<Mutex<Option<Hook>>>,
    reports: Vec<usize>,
}

type Hook = Box<dyn FnOnce() + Send>;

impl Poller for Interposed {
    type Registrar = super::PollRegistrar;
    const EDGE_TRIGGERED: bool = false;

    fn wait(
        &mut self,
        probes: &[Probe],
        timeout: Option<Duration>,
        out: &mut Vec<Readiness>,
    ) -> anyloop::Result<bool> {
        let before = out.len();
        let woken = self.inner.wait(probes, timeout, out)?;
        self.reports.push(out.len() - before);
        let hook = self.after_wait.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        Ok(woken)
    }
}

#[test]
fn an_update_between_an_invalid_report_and_the_engine_leaves_nothing_polled() {
    let (inner, registrar) = new_poll().unwrap();
    let after_wait = Arc::new(Mutex::new(None));
    let poller = Interposed {
        inner,
        after_wait: after_wait.clone(),
        reports: Vec::new(),
    };
    let mut engine = crate::Engine::new(poller, registrar);
    let (mut number, _old_writer) = quiet_pipe();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    let id = engine
        .handle()
        .add_watch(
            number.as_raw_fd(),
            IoEvents::READABLE,
            move |_, _, events| {
                log.lock().unwrap().push(events);
            },
        )
        .unwrap();
    engine.run_once(Some(SHORT)).unwrap();

    // The number is reused by a readable file (a library bug, R53), and another thread
    // updates the watch right after the wait that finds out, before the engine takes that
    // report in (a wait that may sleep runs without the engine's lock).
    let _new_file = reuse_for_a_readable_pipe(&mut number);
    let handle = engine.handle();
    *after_wait.lock().unwrap() = Some(Box::new(move || {
        std::thread::spawn(move || {
            handle
                .update_watch(id, IoEvents::READABLE | IoEvents::WRITABLE)
                .unwrap();
        })
        .join()
        .unwrap();
    }));
    engine.run_once(Some(PATIENCE)).unwrap();
    assert_eq!(*heard.lock().unwrap(), vec![IoEvents::ERROR], "R52");

    // The engine marked the fd gone: nothing of it may be polled any more (the new file is
    // readable, so a leftover registration would end every wait at once: a spin).
    let waits = engine.poller().reports.len();
    for _ in 0..3 {
        engine.run_once(Some(SHORT)).unwrap();
    }
    assert_eq!(
        engine.poller().reports[waits..],
        [0, 0, 0],
        "a registration the engine no longer knows is still polled"
    );
    assert_eq!(*heard.lock().unwrap(), vec![IoEvents::ERROR]);
    engine.handle().remove_watch(id).unwrap();
}
