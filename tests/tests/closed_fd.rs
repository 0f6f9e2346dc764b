//! A watched fd number closed under its watch, on every backend, watching the window in which
//! a bug shows ([R52](anyloop::contract#r52), [R10](anyloop::contract#r10),
//! [R18](anyloop::contract#r18)): the callbacks are counted *while* the number is closed
//! (and its file kept open elsewhere, or the number reused by another file), not only once
//! the watch was removed.
//!
//! The truth every backend keeps: the watch never spins and never hears of another file that
//! reused its number; it is told `ERROR` at most once (when the loop notices the close: a
//! report for the dead number in consecutive iterations, or a number probed as invalid) and
//! is silent afterwards; it stays registered and counted until removed, and remove frees it
//! once. Before the loop notices, one report of the old file may still arrive as it was (the
//! loop cannot see a `close` it is not told about without a syscall per event).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyloop::{IoEvents, Runner, Schedule};
use anyloop_backends::LoopChoice;

/// How long the window with the closed number is watched.
const WINDOW: Duration = Duration::from_millis(200);
/// One iteration's bound: an idle loop makes about WINDOW / TICK iterations.
const TICK: Duration = Duration::from_millis(20);
/// More iterations than this in one window is a spin (idle: about 10).
const SPIN: u64 = 100;

/// The tests of this binary run one at a time: they close numbers and wait for them to be
/// handed out again, which a test opening files on another thread would disturb.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a watch was told, in order.
#[derive(Default)]
struct Heard(Mutex<Vec<IoEvents>>);

impl Heard {
    fn push(&self, events: IoEvents) {
        self.0.lock().unwrap().push(events);
    }

    fn all(&self) -> Vec<IoEvents> {
        self.0.lock().unwrap().clone()
    }

    fn errors(&self) -> usize {
        self.all()
            .iter()
            .filter(|e| e.contains(IoEvents::ERROR))
            .count()
    }
}

/// Runs `lp` for [`WINDOW`] in bounded iterations; returns the iterations it made.
fn run_window(lp: &mut dyn Runner, name: &str) -> u64 {
    let before = lp.stats().iterations;
    let start = Instant::now();
    while start.elapsed() < WINDOW {
        if let Err(err) = lp.run_once(Some(TICK)) {
            panic!("{name}: run_once: {err}");
        }
    }
    lp.stats().iterations - before
}

/// Adds a READABLE watch on `fd` that records what it hears (without reading).
fn watch_heard(lp: &dyn Runner, fd: RawFd, heard: &Arc<Heard>) -> anyloop::WatchId {
    let h = heard.clone();
    lp.handle()
        .add_watch(fd, IoEvents::READABLE, move |_, _, events| h.push(events))
        .expect("add watch")
}

/// How a closed number's file is kept open elsewhere.
#[derive(Debug, Clone, Copy)]
enum KeptBy {
    Dup,
    Child,
    ScmRights,
}

/// Keeps the file of `fd` open by `how`; the returned value holds it.
fn keep_open(fd: &UnixStream, how: KeptBy) -> Box<dyn std::any::Any> {
    match how {
        KeptBy::Dup => Box::new(fd.try_clone().expect("dup")),
        KeptBy::Child => {
            // The child's stdin is the file: it stays open as long as the child lives.
            let child_end = OwnedFd::from(fd.try_clone().expect("dup"));
            let child = Command::new("sleep")
                .arg("30")
                .stdin(Stdio::from(child_end))
                .spawn()
                .expect("spawn sleep");
            wait_exec_done(child.id());
            Box::new(KillOnDrop(child))
        }
        KeptBy::ScmRights => {
            // An fd in flight in a socket's queue keeps its file open until received.
            let (tx, rx) = UnixStream::pair().expect("pair");
            let fds = [fd.as_fd()];
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
            assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
            rustix::net::sendmsg(
                &tx,
                &[std::io::IoSlice::new(b"f")],
                &mut control,
                rustix::net::SendFlags::empty(),
            )
            .expect("sendmsg SCM_RIGHTS");
            Box::new((tx, rx))
        }
    }
}

/// Waits until a child spawned a moment ago has finished its `exec`: until then it still
/// holds copies of every descriptor of ours, close-on-exec or not (a hosted loop's kernel
/// state included), which is not what this test is about.
fn wait_exec_done(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|dir| dir.flatten().count())
            .unwrap_or(usize::MAX);
        // stdin, stdout, stderr, and what the test harness passes down without
        // close-on-exec: a handful, where before exec it is every descriptor of ours.
        if fds <= 8 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn closed_number_whose_file_lives_on_never_spins_and_errors_at_most_once() {
    let _serial = serial();
    for choice in LoopChoice::built() {
        for how in [KeptBy::Dup, KeptBy::Child, KeptBy::ScmRights] {
            let name = format!("{choice}/{how:?}");
            let mut lp = choice.create().expect("loop");
            let (mut peer, watched) = UnixStream::pair().expect("pair");
            let heard = Arc::new(Heard::default());
            let id = watch_heard(&*lp, watched.as_raw_fd(), &heard);
            lp.run_once(Some(Duration::ZERO)).expect("run");
            assert!(heard.all().is_empty(), "{name}: nothing was written yet");

            let keeper = keep_open(&watched, how);
            drop(watched); // the number is closed; the file lives on
            peer.write_all(b"data").expect("write");
            let iterations = run_window(&mut *lp, &name);
            let all = heard.all();
            assert!(
                iterations < SPIN,
                "{name}: {iterations} iterations in {WINDOW:?}: the loop spins ({} callbacks, first {:?})",
                all.len(),
                &all[..all.len().min(4)]
            );
            assert!(heard.errors() <= 1, "{name}: ERROR more than once");
            assert!(
                all.len() <= 2,
                "{name}: {} callbacks for a closed number, first {:?}",
                all.len(),
                &all[..all.len().min(4)]
            );
            // Silent afterwards, still registered, and removable.
            let count = all.len();
            run_window(&mut *lp, &name);
            assert_eq!(heard.all().len(), count, "{name}: not silent afterwards");
            assert_eq!(
                lp.stats().watches,
                1,
                "{name}: the watch must stay registered"
            );
            lp.handle().remove_watch(id).expect("remove");
            lp.run_once(Some(Duration::ZERO)).expect("run");
            assert_eq!(lp.stats().watches, 0);
            // Still a working loop (and no spin left behind by the dead registration).
            let iterations = run_window(&mut *lp, &name);
            assert!(
                iterations < SPIN,
                "{name}: spins after remove: {iterations}"
            );
            drop(keeper);
        }
    }
}

/// What a reused number names.
#[derive(Debug, Clone, Copy)]
enum NewFile {
    Pipe,
    Socket,
    RegularFile,
}

/// Opens files of `kind` until one gets number `fd` (the lowest free one, normally at once);
/// returns it, and a way to make it readable.
fn reopen_as(fd: RawFd, kind: NewFile) -> (OwnedFd, Option<Box<dyn Write>>) {
    let mut spare = Vec::new();
    for _ in 0..64 {
        let (file, feeder): (OwnedFd, Option<Box<dyn Write>>) = match kind {
            NewFile::Pipe => {
                let (reader, writer) = std::io::pipe().expect("pipe");
                (reader.into(), Some(Box::new(writer)))
            }
            NewFile::Socket => {
                let (ours, theirs) = UnixStream::pair().expect("pair");
                (ours.into(), Some(Box::new(theirs)))
            }
            // Another file than the watched regular files of these tests (the same file
            // opened again is, rightly, the same file).
            NewFile::RegularFile => (
                std::fs::File::open("/proc/self/stat").expect("open").into(),
                None,
            ),
        };
        if file.as_raw_fd() == fd {
            return (file, feeder);
        }
        spare.push((file, feeder));
    }
    panic!("number {fd} was not handed out again");
}

#[test]
fn a_number_reused_by_another_file_is_never_reported_to_the_old_watch() {
    let _serial = serial();
    for choice in LoopChoice::built() {
        // The old watch is on a pipe (the kernel tracks it) or on a regular file (always
        // ready: the loop probes it by number, so only an identity check tells files apart).
        for old_is_file in [false, true] {
            for kind in [NewFile::Pipe, NewFile::Socket, NewFile::RegularFile] {
                for after_next_iteration in [false, true] {
                    let name = format!(
                        "{choice}/old-{}/{kind:?}/after-iteration={after_next_iteration}",
                        if old_is_file { "file" } else { "pipe" }
                    );
                    reuse_case(choice, old_is_file, kind, after_next_iteration, &name);
                }
            }
        }
    }
}

fn reuse_case(
    choice: LoopChoice,
    old_is_file: bool,
    kind: NewFile,
    after_next_iteration: bool,
    name: &str,
) {
    let mut lp = choice.create().expect("loop");
    let (old, _writer): (OwnedFd, Option<std::io::PipeWriter>) = if old_is_file {
        let file = std::fs::File::open("/proc/self/status").expect("open");
        (file.into(), None)
    } else {
        let (reader, writer) = std::io::pipe().expect("pipe");
        (reader.into(), Some(writer))
    };
    let number = old.as_raw_fd();
    let heard = Arc::new(Heard::default());
    let id = watch_heard(&*lp, number, &heard);
    lp.run_once(Some(Duration::ZERO)).expect("run");
    drop(old); // closed everywhere
    if after_next_iteration {
        lp.run_once(Some(Duration::ZERO)).expect("run");
    }
    let before = heard.all().len();
    let (new_file, feeder) = reopen_as(number, kind);
    if let Some(mut feeder) = feeder {
        feeder.write_all(b"new file's data").expect("feed");
        std::mem::forget(feeder); // keep the writer open: no HANGUP either
    }
    let iterations = run_window(&mut *lp, name);
    let since: Vec<IoEvents> = heard.all().split_off(before);
    assert!(
        since.iter().all(|e| !e.contains(IoEvents::READABLE)),
        "{name}: the old watch heard the new file: {} callbacks, first {:?}",
        since.len(),
        &since[..since.len().min(4)]
    );
    assert!(
        since.iter().filter(|e| e.contains(IoEvents::ERROR)).count() <= 1,
        "{name}: ERROR more than once ({} callbacks)",
        since.len()
    );
    assert!(iterations < SPIN, "{name}: spins: {iterations}");
    lp.handle().remove_watch(id).expect("remove");
    lp.run_once(Some(Duration::ZERO)).expect("run");
    drop(new_file);
}

/// How the watched fd is made: something readable whose number will be closed.
#[derive(Debug, Clone, Copy)]
enum Watched {
    Pipe,
    Socket,
    RegularFile,
}

#[test]
fn a_watch_disabled_by_an_earlier_callback_hears_nothing_of_its_closed_fd() {
    let _serial = serial();
    for choice in LoopChoice::built() {
        for kind in [Watched::Pipe, Watched::Socket, Watched::RegularFile] {
            let name = format!("{choice}/{kind:?}");
            let mut lp = choice.create().expect("loop");
            // A readable fd, never read (level-triggered: ready every iteration), whose file a
            // second descriptor keeps open after the watched number is closed.
            let (watched, keeper): (OwnedFd, Box<dyn std::any::Any>) = match kind {
                Watched::Pipe => {
                    let (reader, mut writer) = std::io::pipe().expect("pipe");
                    writer.write_all(b"x").expect("write");
                    let keep = reader.try_clone().expect("dup");
                    (reader.into(), Box::new((keep, writer)))
                }
                Watched::Socket => {
                    let (ours, mut theirs) = UnixStream::pair().expect("pair");
                    theirs.write_all(b"x").expect("write");
                    let keep = ours.try_clone().expect("dup");
                    (ours.into(), Box::new((keep, theirs)))
                }
                Watched::RegularFile => {
                    let file = std::fs::File::open("/proc/self/status").expect("open");
                    let keep = file.try_clone().expect("dup");
                    (file.into(), Box::new(keep))
                }
            };
            let calls = Arc::new(AtomicUsize::new(0));
            let c = calls.clone();
            let id = lp
                .handle()
                .add_watch(watched.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
                    c.fetch_add(1, Ordering::SeqCst);
                })
                .expect("watch");
            lp.run_once(Some(Duration::from_secs(5))).expect("run");
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{name}: ready once");

            // The number is closed; in the next iteration a timer (timers run first)
            // disables the watch before the loop gets to it.
            drop(watched);
            let handle = lp.handle();
            let _timer = lp
                .handle()
                .timer(Schedule::Once(Duration::ZERO), move |_| {
                    handle.update_watch(id, IoEvents::empty()).expect("disable");
                })
                .expect("timer");
            let iterations = run_window(&mut *lp, &name);
            assert_eq!(
                calls.load(Ordering::SeqCst),
                1,
                "{name}: a watch disabled earlier in the iteration was called"
            );
            assert!(iterations < SPIN, "{name}: spins: {iterations}");
            lp.handle().remove_watch(id).expect("remove");
            lp.run_once(Some(Duration::ZERO)).expect("run");
            drop(keeper);
        }
    }
}
