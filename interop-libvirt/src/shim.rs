//! The six `extern "C"` functions handed to `virEventRegisterImpl`, forwarding libvirt's
//! handle and timeout operations to one anyloop [`Loop`].
//!
//! libvirt identifies registrations by positive `int`s, anyloop by 64-bit ids, so a
//! process-wide table maps one to the other. libvirt's ids come from one counter that starts
//! at 1 and is never reused (as anyloop's own, [R1](anyloop::contract#r1)), so a stale id from
//! libvirt can never address a newer registration.
//!
//! libvirt calls these functions from any thread, from inside its own callbacks (dispatch
//! re-enters them) and from its free callbacks. Every function:
//! - catches panics, so none crosses into C: an add then returns -1, an update does nothing;
//! - holds the table lock around the anyloop operation it forwards. That is what makes an
//!   update from the loop thread, racing with the `add` that created the id, wait for the id
//!   to be in the table instead of being dropped. It cannot deadlock: anyloop never runs a
//!   callback or a free inside an operation ([R21](anyloop::contract#r21),
//!   [R42](anyloop::contract#r42)) and holds no lock of its own around callbacks
//!   ([R43](anyloop::contract#r43)), so the order is always "table lock, then backend lock".
//!
//! libvirt's timeout intervals become [`anyloop::Schedule`]s: -1 is `Disabled`, 0 is
//! `EVERY_ITERATION`, n > 0 is `Every(n ms)` ([R27](anyloop::contract#r27)).
//!
//! libvirt's `ff(opaque)` runs when anyloop drops the callback state: after the remove, on the
//! loop thread, never inside the remove ([R21](anyloop::contract#r21)), exactly once
//! ([R23](anyloop::contract#r23)).
//!
//! The callbacks are `Send` ([`WatchCallback::new`]): libvirt's C callbacks may run on
//! whichever thread runs the loop, so nothing here needs a thread-bound callback.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use anyloop::{Loop, Schedule, TimerCallback, TimerId, WatchCallback, WatchId};

use crate::bits::{events_to_libvirt, interest_from_libvirt, schedule_from_libvirt};
use crate::error::{Error, Result};
use crate::ffi;

/// Installs `lp` as libvirt's event implementation, for the whole process.
///
/// libvirt keeps one event implementation per process and ignores later
/// `virEventRegisterImpl` calls (it only logs a warning), so this is meant to be called once, before the first
/// connection is opened, by the application (the owner of the loop), not by a library.
/// Calling it again with the same loop is a no-op; with another loop it is an error, because
/// the handles and timeouts libvirt already holds live on the first loop and would be split
/// across two loops. Keep the loop running for as long as libvirt connections exist: their
/// events, keep-alives and free callbacks all run on it.
///
/// To test one process per backend, give each backend its own test binary (this crate's
/// `tests/select.rs`, `tests/glib.rs`, `tests/calloop.rs` do).
///
/// # Errors
/// [`Error::AlreadyRegistered`] for a second, different loop; [`Error::Loop`] when the
/// loop refuses a timer (it was destroyed); [`Error::ForeignImplementation`] when other code
/// (for instance `virEventRegisterDefaultImpl`) registered with libvirt first, so libvirt
/// would never call this loop.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # fn some_loop() -> anyloop::Loop { unimplemented!() }
/// let lp: anyloop::Loop = some_loop(); // e.g. SelectLoop::handle(), GlibLoop::handle()
/// anyloop_libvirt::register(&lp)?;
/// let conn = anyloop_libvirt::Connection::open("test:///default")?;
/// # drop(conn); Ok(()) }
/// ```
pub fn register(lp: &Loop) -> Result<()> {
    static REGISTERING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = REGISTERING.lock().unwrap_or_else(PoisonError::into_inner);
    {
        let mut table = table();
        match &table.target {
            Some(current) if current.same_loop(lp) => return Ok(()),
            Some(_) => return Err(Error::AlreadyRegistered),
            None => {}
        }
        // A loop that refuses timers (destroyed already) would make every libvirt add fail;
        // say so now rather than misreport it below as a foreign implementation.
        drop(
            lp.timer(Schedule::Disabled, |_id| {})
                .map_err(|rejected| Error::Loop(rejected.into()))?,
        );
        table.target = Some(lp.clone());
    }
    // SAFETY: the six functions match libvirt's typedefs (ffi.rs mirrors libvirt-event.h),
    // are `extern "C"`, never unwind (every body is inside `shielded`) and live for the
    // whole process, as libvirt requires.
    unsafe {
        ffi::virEventRegisterImpl(
            Some(add_handle),
            Some(update_handle),
            Some(remove_handle),
            Some(add_timeout),
            Some(update_timeout),
            Some(remove_timeout),
        );
    }
    if probe_reaches_us() {
        Ok(())
    } else {
        table().target = None;
        Err(Error::ForeignImplementation)
    }
}

/// The loop [`register`] installed, if any.
pub fn registered_loop() -> Option<Loop> {
    table().target.clone()
}

/// Whether libvirt's public `virEventAddTimeout` lands in our table: false when another
/// implementation was registered first (libvirt then ignored ours with a warning).
fn probe_reaches_us() -> bool {
    // SAFETY: a disabled timer with a callback that does nothing and no opaque/free; it is
    // removed right away, whichever implementation created it.
    let timer =
        unsafe { ffi::virEventAddTimeout(-1, Some(probe_callback), std::ptr::null_mut(), None) };
    if timer < 0 {
        return false;
    }
    let ours = table().timeouts.contains_key(&timer);
    // SAFETY: `timer` was just returned by virEventAddTimeout.
    unsafe { ffi::virEventRemoveTimeout(timer) };
    ours
}

unsafe extern "C" fn probe_callback(_timer: c_int, _opaque: *mut c_void) {}

/// Counts of what libvirt did through the vtable in this process, for tests and diagnosis.
///
/// Every registration libvirt added is freed exactly once, so once libvirt removed them all
/// and the loop ran its pending frees, `handles_added == handle_frees`,
/// `timeouts_added == timeout_frees` and `ff_calls == ff_owed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VtableStats {
    /// Handles (fd watches) libvirt currently holds.
    pub handles: usize,
    /// Timeouts libvirt currently holds.
    pub timeouts: usize,
    /// Successful handle adds so far.
    pub handles_added: u64,
    /// Successful timeout adds so far, including the one disabled probe timer [`register`]
    /// adds and removes to check that libvirt really calls this crate.
    pub timeouts_added: u64,
    /// Calls of libvirt's handle callbacks so far: an fd libvirt watches (a remote
    /// connection's socket) was ready and the loop dispatched it.
    pub handle_calls: u64,
    /// Calls of libvirt's timeout callbacks so far (its event queue, keep-alive timers...).
    pub timeout_calls: u64,
    /// Handle states dropped so far (each runs libvirt's `ff`, if it gave one).
    pub handle_frees: u64,
    /// Timeout states dropped so far.
    pub timeout_frees: u64,
    /// Successful adds that carried a non-NULL `ff`.
    pub ff_owed: u64,
    /// `ff(opaque)` calls made so far.
    pub ff_calls: u64,
    /// Frees that ran while libvirt still held the registration: only when the loop is
    /// destroyed before libvirt removed everything ([R48](anyloop::contract#r48)). Zero in a
    /// healthy program.
    pub frees_before_remove: u64,
    /// Updates and removes of ids that are not registered (libvirt updating a removed
    /// timer, for instance): ignored, never re-armed ([R4](anyloop::contract#r4)).
    pub stale_ops: u64,
    /// Panics caught at the FFI boundary (should stay zero).
    pub panics: u64,
}

impl VtableStats {
    /// Registrations removed (or left at loop destruction) whose free has not run yet.
    pub fn pending_frees(&self) -> u64 {
        (self.handles_added + self.timeouts_added)
            .saturating_sub(self.handle_frees + self.timeout_frees)
            .saturating_sub((self.handles + self.timeouts) as u64)
    }
}

/// The current [`VtableStats`].
pub fn vtable_stats() -> VtableStats {
    let table = table();
    VtableStats {
        handles: table.handles.len(),
        timeouts: table.timeouts.len(),
        handles_added: COUNTERS.handles_added.load(Ordering::Relaxed),
        timeouts_added: COUNTERS.timeouts_added.load(Ordering::Relaxed),
        handle_calls: COUNTERS.handle_calls.load(Ordering::Relaxed),
        timeout_calls: COUNTERS.timeout_calls.load(Ordering::Relaxed),
        handle_frees: COUNTERS.handle_frees.load(Ordering::Relaxed),
        timeout_frees: COUNTERS.timeout_frees.load(Ordering::Relaxed),
        ff_owed: COUNTERS.ff_owed.load(Ordering::Relaxed),
        ff_calls: COUNTERS.ff_calls.load(Ordering::Relaxed),
        frees_before_remove: COUNTERS.frees_before_remove.load(Ordering::Relaxed),
        stale_ops: COUNTERS.stale_ops.load(Ordering::Relaxed),
        panics: COUNTERS.panics.load(Ordering::Relaxed),
    }
}

#[derive(Default)]
struct Counters {
    handles_added: AtomicU64,
    timeouts_added: AtomicU64,
    handle_calls: AtomicU64,
    timeout_calls: AtomicU64,
    handle_frees: AtomicU64,
    timeout_frees: AtomicU64,
    ff_owed: AtomicU64,
    ff_calls: AtomicU64,
    frees_before_remove: AtomicU64,
    stale_ops: AtomicU64,
    panics: AtomicU64,
}

static COUNTERS: LazyLock<Counters> = LazyLock::new(Counters::default);

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The process-wide map from libvirt's ids to anyloop's, and the loop they live on.
struct Table {
    target: Option<Loop>,
    /// The last libvirt id handed out; handles and timeouts share the counter.
    last_id: c_int,
    handles: HashMap<c_int, Entry<WatchId>>,
    timeouts: HashMap<c_int, Entry<TimerId>>,
}

struct Entry<Id> {
    id: Id,
    free: Arc<FreeState>,
}

impl Table {
    /// A fresh positive libvirt id, never reused; `None` once `c_int` is exhausted (libvirt
    /// then gets -1 from add, its "failure" value).
    fn next_id(&mut self) -> Option<c_int> {
        let next = self.last_id.checked_add(1)?;
        self.last_id = next;
        Some(next)
    }
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        target: None,
        last_id: 0,
        handles: HashMap::new(),
        timeouts: HashMap::new(),
    })
});

/// The table, even after a panic elsewhere poisoned the lock: every update to it is a single
/// insert or remove, so it is never left half-changed.
fn table() -> MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs one shim body; a panic becomes `fallback` instead of unwinding into C (which would
/// be undefined behaviour).
fn shielded<T>(op: &'static str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            bump(&COUNTERS.panics);
            tracing::error!(op, "panic caught at the libvirt FFI boundary");
            fallback
        }
    }
}

/// libvirt's `opaque` and `ff` for one registration; `ff(opaque)` runs when the anyloop
/// callback holding a [`FreeOnDrop`] is dropped, unless the add failed (`armed` false then,
/// because on a failed add libvirt keeps ownership of `opaque`).
struct FreeState {
    opaque: *mut c_void,
    ff: ffi::virFreeCallback,
    is_handle: bool,
    armed: AtomicBool,
    removed: AtomicBool,
}

// SAFETY: libvirt's vtable contract lets the implementation call `cb(opaque)` and
// `ff(opaque)` on whichever thread runs the loop, not only the thread that added the
// registration (libvirt's own loops do exactly that), so the pointer may move between
// threads. This type never dereferences it; it only passes it back to libvirt.
unsafe impl Send for FreeState {}
// SAFETY: shared access only reads the pointer value and the atomics.
unsafe impl Sync for FreeState {}

/// Owned by the anyloop callback closure: its drop is the deferred free.
struct FreeOnDrop(Arc<FreeState>);

impl FreeOnDrop {
    fn opaque(&self) -> *mut c_void {
        self.0.opaque
    }
}

impl Drop for FreeOnDrop {
    fn drop(&mut self) {
        let state = &self.0;
        if !state.armed.swap(false, Ordering::AcqRel) {
            return;
        }
        bump(if state.is_handle {
            &COUNTERS.handle_frees
        } else {
            &COUNTERS.timeout_frees
        });
        if !state.removed.load(Ordering::Acquire) {
            bump(&COUNTERS.frees_before_remove);
        }
        if let Some(ff) = state.ff {
            bump(&COUNTERS.ff_calls);
            // SAFETY: `ff` and `opaque` come together from one successful add; `armed`
            // makes this the only call. anyloop runs this drop on the loop thread with no
            // lock held and never inside a vtable operation (contract R21, R24), which is the
            // "clean stack" libvirt asks for.
            unsafe { ff(state.opaque) };
        }
    }
}

unsafe extern "C" fn add_handle(
    fd: c_int,
    event: c_int,
    cb: ffi::virEventHandleCallback,
    opaque: *mut c_void,
    ff: ffi::virFreeCallback,
) -> c_int {
    shielded("add_handle", -1, || {
        let Some(cb) = cb else { return -1 };
        let free = new_free_state(opaque, ff, true);
        let mut table = table();
        let Some(lp) = table.target.clone() else {
            return -1;
        };
        let Some(watch) = table.next_id() else {
            return -1;
        };
        let owner = FreeOnDrop(Arc::clone(&free));
        let callback = WatchCallback::new(move |_id, fd, events| {
            bump(&COUNTERS.handle_calls);
            // SAFETY: `cb` and `opaque` were registered together by libvirt for `watch`;
            // `owner` keeps the registration (and so `opaque`) alive while the closure runs.
            unsafe { cb(watch, fd, events_to_libvirt(events), owner.opaque()) }
        })
        .named(format!("libvirt handle {watch}"));
        match lp.add_watch(fd, interest_from_libvirt(event), callback) {
            Ok(id) => {
                table.handles.insert(watch, Entry { id, free });
                count_add(true, ff);
                watch
            }
            Err(rejected) => {
                tracing::debug!(fd, error = %rejected.error(), "libvirt handle add refused");
                free.armed.store(false, Ordering::Release);
                -1
            }
        }
    })
}

unsafe extern "C" fn update_handle(watch: c_int, event: c_int) {
    shielded("update_handle", (), || {
        let table = table();
        let (Some(lp), Some(entry)) = (&table.target, table.handles.get(&watch)) else {
            bump(&COUNTERS.stale_ops);
            return;
        };
        if let Err(error) = lp.update_watch(entry.id, interest_from_libvirt(event)) {
            tracing::debug!(watch, %error, "libvirt handle update refused");
        }
    })
}

unsafe extern "C" fn remove_handle(watch: c_int) -> c_int {
    shielded("remove_handle", -1, || {
        let mut table = table();
        let Some(entry) = table.handles.remove(&watch) else {
            bump(&COUNTERS.stale_ops);
            return -1;
        };
        entry.free.removed.store(true, Ordering::Release);
        let removed = table.target.as_ref().map(|lp| lp.remove_watch(entry.id));
        finish_remove(watch, removed)
    })
}

unsafe extern "C" fn add_timeout(
    timeout: c_int,
    cb: ffi::virEventTimeoutCallback,
    opaque: *mut c_void,
    ff: ffi::virFreeCallback,
) -> c_int {
    shielded("add_timeout", -1, || {
        let Some(cb) = cb else { return -1 };
        let free = new_free_state(opaque, ff, false);
        let mut table = table();
        let Some(lp) = table.target.clone() else {
            return -1;
        };
        let Some(timer) = table.next_id() else {
            return -1;
        };
        let owner = FreeOnDrop(Arc::clone(&free));
        let callback = TimerCallback::new(move |_id| {
            bump(&COUNTERS.timeout_calls);
            // SAFETY: as for handles: `cb` and `opaque` belong to `timer`, kept alive by
            // `owner`.
            unsafe { cb(timer, owner.opaque()) }
        })
        .named(format!("libvirt timeout {timer}"));
        match lp.add_timer(schedule_from_libvirt(timeout), callback) {
            Ok(id) => {
                table.timeouts.insert(timer, Entry { id, free });
                count_add(false, ff);
                timer
            }
            Err(rejected) => {
                tracing::debug!(error = %rejected.error(), "libvirt timeout add refused");
                free.armed.store(false, Ordering::Release);
                -1
            }
        }
    })
}

unsafe extern "C" fn update_timeout(timer: c_int, timeout: c_int) {
    shielded("update_timeout", (), || {
        let table = table();
        let (Some(lp), Some(entry)) = (&table.target, table.timeouts.get(&timer)) else {
            bump(&COUNTERS.stale_ops);
            return;
        };
        // An unchanged interval still restarts the countdown (contract R29): libvirt's
        // keep-alive re-arms its timer this way on every message.
        if let Err(error) = lp.update_timer(entry.id, schedule_from_libvirt(timeout)) {
            tracing::debug!(timer, %error, "libvirt timeout update refused");
        }
    })
}

unsafe extern "C" fn remove_timeout(timer: c_int) -> c_int {
    shielded("remove_timeout", -1, || {
        let mut table = table();
        let Some(entry) = table.timeouts.remove(&timer) else {
            bump(&COUNTERS.stale_ops);
            return -1;
        };
        entry.free.removed.store(true, Ordering::Release);
        let removed = table.target.as_ref().map(|lp| lp.remove_timer(entry.id));
        finish_remove(timer, removed)
    })
}

fn new_free_state(
    opaque: *mut c_void,
    ff: ffi::virFreeCallback,
    is_handle: bool,
) -> Arc<FreeState> {
    Arc::new(FreeState {
        opaque,
        ff,
        is_handle,
        armed: AtomicBool::new(true),
        removed: AtomicBool::new(false),
    })
}

fn count_add(is_handle: bool, ff: ffi::virFreeCallback) {
    bump(if is_handle {
        &COUNTERS.handles_added
    } else {
        &COUNTERS.timeouts_added
    });
    if ff.is_some() {
        bump(&COUNTERS.ff_owed);
    }
}

/// libvirt's return value for a remove: 0 when anyloop removed it. anyloop refuses only
/// when its loop is gone, which already ran every free ([R48](anyloop::contract#r48)), so -1
/// then is just a report.
fn finish_remove(libvirt_id: c_int, removed: Option<anyloop::Result<()>>) -> c_int {
    match removed {
        Some(Ok(())) => 0,
        Some(Err(error)) => {
            tracing::debug!(libvirt_id, %error, "libvirt remove refused by the loop");
            -1
        }
        None => -1,
    }
}
