//! Drives the vtable through libvirt's own public entry points (`virEventAddHandle`,
//! `virEventUpdateTimeout`...), which forward to the registered implementation exactly as
//! libvirt's remote driver and keep-alive code do. `test:///default` itself only uses one
//! timeout, and no libvirt daemon runs here, so this is how the handle path is exercised
//! with libvirt in the middle.

use std::ffi::{c_int, c_void};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop_libvirt::vtable_stats;

use super::LoopThread;

type FreeCallback = Option<unsafe extern "C" fn(opaque: *mut c_void)>;
type WatchCallback = Option<unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void)>;
type TimerCallback = Option<unsafe extern "C" fn(c_int, *mut c_void)>;

#[link(name = "virt")]
extern "C" {
    fn virEventAddHandle(
        fd: c_int,
        events: c_int,
        cb: WatchCallback,
        opaque: *mut c_void,
        ff: FreeCallback,
    ) -> c_int;
    fn virEventUpdateHandle(watch: c_int, events: c_int);
    fn virEventRemoveHandle(watch: c_int) -> c_int;
    fn virEventAddTimeout(
        timeout: c_int,
        cb: TimerCallback,
        opaque: *mut c_void,
        ff: FreeCallback,
    ) -> c_int;
    fn virEventUpdateTimeout(timer: c_int, timeout: c_int);
    fn virEventRemoveTimeout(timer: c_int) -> c_int;
}

const READABLE: c_int = 1;
const WRITABLE: c_int = 2;
const DEADLINE: Duration = Duration::from_secs(20);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(150);

/// One callback invocation: id, fd (-1 for timers), events, thread.
type Call = (c_int, c_int, c_int, ThreadId);

/// What the C callbacks get as `opaque`: where to report, and what to do from dispatch.
struct Probe {
    calls: Mutex<Sender<Call>>,
    /// Applied with `virEventUpdate*` from inside the callback (re-entering the vtable from
    /// dispatch, as libvirt does): the new events (handles) or interval (timers).
    rearm_to: c_int,
    frees: Arc<FreeLog>,
}

#[derive(Default)]
struct FreeLog {
    count: AtomicUsize,
    threads: Mutex<Vec<ThreadId>>,
}

fn probe(rearm_to: c_int, frees: &Arc<FreeLog>) -> (*mut c_void, Receiver<Call>) {
    let (sender, receiver) = mpsc::channel();
    let probe = Box::new(Probe {
        calls: Mutex::new(sender),
        rearm_to,
        frees: Arc::clone(frees),
    });
    (Box::into_raw(probe).cast(), receiver)
}

unsafe extern "C" fn on_handle(watch: c_int, fd: c_int, events: c_int, opaque: *mut c_void) {
    // SAFETY: `opaque` is a live `Probe` until `free_probe`, which libvirt's contract (and
    // anyloop's R22) never runs while this callback runs.
    let probe = unsafe { &*opaque.cast::<Probe>() };
    // SAFETY: re-entering the vtable from dispatch with our own live id.
    unsafe { virEventUpdateHandle(watch, probe.rearm_to) };
    let _ = probe
        .calls
        .lock()
        .unwrap()
        .send((watch, fd, events, thread::current().id()));
}

unsafe extern "C" fn on_timeout(timer: c_int, opaque: *mut c_void) {
    // SAFETY: as in `on_handle`.
    let probe = unsafe { &*opaque.cast::<Probe>() };
    // SAFETY: as in `on_handle`.
    unsafe { virEventUpdateTimeout(timer, probe.rearm_to) };
    let _ = probe
        .calls
        .lock()
        .unwrap()
        .send((timer, -1, 0, thread::current().id()));
}

unsafe extern "C" fn free_probe(opaque: *mut c_void) {
    // SAFETY: `opaque` came from `Box::into_raw` in `probe`; the free runs once (checked by
    // the counts below, not assumed).
    let probe = unsafe { Box::from_raw(opaque.cast::<Probe>()) };
    probe
        .frees
        .threads
        .lock()
        .unwrap()
        .push(thread::current().id());
    probe.frees.count.fetch_add(1, Ordering::SeqCst);
}

fn expect_call(calls: &Receiver<Call>, what: &str) -> Call {
    calls
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|err| panic!("{what}: no callback within {DEADLINE:?}: {err}"))
}

fn expect_quiet(calls: &Receiver<Call>, what: &str) {
    if let Ok(call) = calls.recv_timeout(QUIET) {
        panic!("{what}: unexpected callback {call:?}");
    }
}

/// Lets a firing that may or may not come (from a round that is retried) arrive, so it is
/// not taken for the next round's.
fn expect_call_or_none(calls: &Receiver<Call>, within: Duration) {
    let _ = calls.recv_timeout(within + QUIET);
}

fn wait_for_frees(frees: &FreeLog, expected: usize) {
    let deadline = Instant::now() + DEADLINE;
    while frees.count.load(Ordering::SeqCst) < expected {
        assert!(Instant::now() < deadline, "free callbacks did not run");
        thread::sleep(Duration::from_millis(1));
    }
}

pub fn handles_through_libvirt_entry_points(loop_thread: &LoopThread) {
    let before = vtable_stats();
    let frees = Arc::new(FreeLog::default());
    let (reader, mut writer) = std::io::pipe().expect("pipe");
    let fd = reader.as_raw_fd();

    // A readable watch that pauses itself (events 0) from inside its callback.
    let (opaque, calls) = probe(0, &frees);
    // SAFETY: valid fd, callbacks and a boxed opaque that `free_probe` releases.
    let watch =
        unsafe { virEventAddHandle(fd, READABLE, Some(on_handle), opaque, Some(free_probe)) };
    assert!(watch > 0, "add returned {watch}");
    expect_quiet(&calls, "nothing to read yet");

    writer.write_all(b"x").expect("write");
    let (id, seen_fd, events, thread) = expect_call(&calls, "readable");
    assert_eq!((id, seen_fd, events), (watch, fd, READABLE));
    assert_eq!(thread, loop_thread.thread, "callback on the loop thread");
    expect_quiet(
        &calls,
        "paused from its callback, though data is still there",
    );

    // Level-triggered: resuming (from this thread) reports the unread byte again.
    // SAFETY: our live watch id.
    unsafe { virEventUpdateHandle(watch, READABLE) };
    assert_eq!(expect_call(&calls, "resumed").2, READABLE);
    expect_quiet(&calls, "paused again");

    // A second watch on the other end: writable.
    let (write_opaque, write_calls) = probe(0, &frees);
    // SAFETY: as above.
    let write_watch = unsafe {
        virEventAddHandle(
            writer.as_raw_fd(),
            WRITABLE,
            Some(on_handle),
            write_opaque,
            Some(free_probe),
        )
    };
    assert!(write_watch > watch, "ids grow, never reused");
    assert_eq!(expect_call(&write_calls, "writable").2, WRITABLE);
    assert_eq!(vtable_stats().handles, before.handles + 2);

    // Remove: the free runs later, once, on the loop thread (never inside the remove).
    // SAFETY: our live ids.
    assert_eq!(unsafe { virEventRemoveHandle(watch) }, 0);
    // SAFETY: a second remove of the same id is an error, not a crash.
    assert_eq!(unsafe { virEventRemoveHandle(watch) }, -1);
    let stale_before = vtable_stats().stale_ops;
    // SAFETY: update after remove must be a no-op (no resurrection), whatever the id.
    unsafe { virEventUpdateHandle(watch, READABLE) };
    assert_eq!(vtable_stats().stale_ops, stale_before + 1);
    expect_quiet(
        &calls,
        "removed, and the update after remove did not re-arm it",
    );
    // SAFETY: our live id.
    assert_eq!(unsafe { virEventRemoveHandle(write_watch) }, 0);
    wait_for_frees(&frees, 2);
    assert!(frees
        .threads
        .lock()
        .unwrap()
        .iter()
        .all(|t| *t == loop_thread.thread));
    thread::sleep(QUIET);
    assert_eq!(
        frees.count.load(Ordering::SeqCst),
        2,
        "each free exactly once"
    );
    assert_eq!(vtable_stats().handles, before.handles);
}

pub fn timeouts_through_libvirt_entry_points(loop_thread: &LoopThread) {
    let before = vtable_stats();
    let frees = Arc::new(FreeLog::default());
    // A timer that disables itself (-1) from its callback: libvirt's one-shot idiom.
    let (opaque, calls) = probe(-1, &frees);
    // SAFETY: valid callbacks and a boxed opaque released by `free_probe`.
    let timer = unsafe { virEventAddTimeout(-1, Some(on_timeout), opaque, Some(free_probe)) };
    assert!(timer > 0, "add returned {timer}");
    expect_quiet(&calls, "a disabled timer never fires");

    // 0 = fire on the next iteration; armed from a foreign thread, it wakes the loop.
    // SAFETY: our live id.
    unsafe { virEventUpdateTimeout(timer, 0) };
    let (id, _, _, thread) = expect_call(&calls, "0 ms timer");
    assert_eq!((id, thread), (timer, loop_thread.thread));
    expect_quiet(&calls, "disabled itself from its callback");

    // An update with an unchanged interval restarts the countdown (libvirt's keep-alive
    // relies on it): arm, wait a third of the interval, arm again, and the timer fires a full
    // interval after the second update. On a loaded machine the wait can overshoot so far
    // that the first countdown ends before the second update; that round proves nothing
    // and is retried.
    const INTERVAL_MS: c_int = 600;
    let interval = Duration::from_millis(INTERVAL_MS as u64);
    let mut proved = false;
    for _round in 0..5 {
        let armed = Instant::now();
        // SAFETY: our live id.
        unsafe { virEventUpdateTimeout(timer, INTERVAL_MS) };
        thread::sleep(interval / 3);
        let restarted = Instant::now();
        if restarted - armed > interval * 3 / 4 || calls.try_recv().is_ok() {
            expect_call_or_none(&calls, interval);
            continue;
        }
        // SAFETY: our live id.
        unsafe { virEventUpdateTimeout(timer, INTERVAL_MS) };
        expect_call(&calls, "restarted timer");
        // Received after it fired, so this can only overstate the wait, never understate it.
        let waited = restarted.elapsed();
        assert!(waited >= interval, "fired {waited:?} after the restart");
        proved = true;
        break;
    }
    assert!(
        proved,
        "the machine was too loaded to check a restart in 5 rounds"
    );

    // SAFETY: our live id, then the same id again.
    assert_eq!(unsafe { virEventRemoveTimeout(timer) }, 0);
    assert_eq!(unsafe { virEventRemoveTimeout(timer) }, -1);
    // SAFETY: a stale id: must not re-arm anything.
    unsafe { virEventUpdateTimeout(timer, 0) };
    expect_quiet(&calls, "removed timer stays removed");
    wait_for_frees(&frees, 1);
    assert_eq!(frees.threads.lock().unwrap()[..], [loop_thread.thread]);
    assert_eq!(vtable_stats().timeouts, before.timeouts);
}
