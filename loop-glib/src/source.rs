//! The one `GSource` that hosts an anyloop engine on a GLib main context: from GLib's poll to
//! the user's callback.
//!
//! GLib iterates a context in four steps, and this source takes part in each (read top to
//! bottom, then `engine/src/dispatch.rs` for what [`Engine::run_hosted`] does):
//!
//! 1. **prepare** (on the thread iterating the context, before it polls): asks the engine when
//!    it next needs an iteration (the engine's `host_sleeps`, as
//!    [`Engine::prepare_host_wait`] does: the earliest timer deadline; now when a free is
//!    pending or an always-ready fd such as a regular file is enabled), under the engine's
//!    lock, the only one this step takes. That call also records this thread as the host
//!    thread, so that from now on an op from any *other* thread writes the engine's wake-up
//!    eventfd ([R40](anyloop::contract#r40)). "Now" means ready; a deadline becomes GLib's poll
//!    timeout, rounded *up* to whole milliseconds (a timer is never early,
//!    [R31](anyloop::contract#r31)), and is kept for *check*. The bound of
//!    [`GlibLoop::run_once`](crate::GlibLoop) is folded in here too.
//! 2. **poll** (GLib's `poll(2)`): our only entry in GLib's poll set is the engine's epoll fd.
//!    It is readable when a watched fd is ready or the wake-up eventfd (inside the epoll set)
//!    was written, so GLib's cost per iteration does not grow with the number of watches.
//! 3. **check**: ready if GLib saw the epoll fd readable (no lock, no clock read), or the
//!    deadline kept by *prepare* has come (the deadline is computed once per iteration). When
//!    neither, no dispatch follows and [`Engine::end_host_wait`] stops ops from other threads
//!    writing wake-ups until the next prepare (which reads the state afresh), so no stale
//!    wake-up ends a later poll early; when dispatching, the engine iteration ends that
//!    window itself.
//! 4. **dispatch**: one engine iteration that does not wait ([`Engine::run_hosted`]): one
//!    `epoll_wait` collects the ready fds (skipped when GLib's poll found the epoll fd quiet
//!    and the dispatch is for a deadline: that wait would find nothing, so a timer firing
//!    costs GLib's `poll` alone), the expired timers are collected, the callbacks run (level-triggered: an fd still
//!    readable keeps the epoll fd readable, so GLib dispatches again next iteration, [R8](anyloop::contract#r8)),
//!    then the frees. Callbacks and frees thus run on the thread that iterates the context,
//!    with no GLib or anyloop lock held ([R42](anyloop::contract#r42), [R43](anyloop::contract#r43)).
//!
//! The source never sets a ready time (`g_source_set_ready_time` writes the context's
//! wake-up eventfd on every change, which a periodic timer would pay every iteration); the
//! timeout of *prepare* does the same job for free. It is an ordinary source: its priority
//! decides where anyloop callbacks run among the context's other sources.
//!
//! It is marked *can recurse*, because GLib blocks a non-recursive source around each of its
//! dispatches by taking its fds out of the poll set and putting them back, which writes the
//! context's wake-up eventfd twice and costs a spurious `poll` + `read` in the next
//! iteration: five syscalls per dispatch instead of two (`poll` + `epoll_wait`). Recursion
//! is handled here instead: while one of our callbacks runs a nested main loop, *prepare*
//! and *check* answer "not ready" and the epoll fd is muted (polled for no event) until that
//! callback returns, so the nested loop neither re-enters the engine nor spins on the
//! level-triggered epoll fd; the other sources of the context run as usual.
//!
//! No callback state is ever handed to GLib: the only thing GLib owns is a reference to
//! [`Core`], released in *finalize*, and the engine (with every callback) is normally taken
//! out and dropped by [`GlibLoop`](crate::GlibLoop)'s `Drop` on the dropping thread ([R21](anyloop::contract#r21),
//! [R48](anyloop::contract#r48)).

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyloop::Error;
use anyloop_engine::linux::{EpollPoller, EpollRegistrar};
use anyloop_engine::{Engine, NextIteration, Poller, Shared};
use glib::ffi;
use glib::translate::{from_glib_full, ToGlibPtr};

/// No `iterate` bound is set (and, for `wake_at`, no deadline).
const NO_BOUND: u64 = u64::MAX;

// `Core::prepare` bypasses `Engine::prepare_host_wait`, which differs only for an
// edge-triggered OS layer.
const _: () = assert!(!<EpollPoller as Poller>::EDGE_TRIGGERED);

/// What the source and the [`GlibLoop`](crate::GlibLoop) share. `Send + Sync`: GLib may call
/// the source from whichever thread iterates the context.
pub(crate) struct Core {
    /// `None` once the loop was dropped (or while the engine is torn down).
    engine: Mutex<Option<Engine<EpollPoller>>>,
    /// The engine's shared table: *prepare* asks it directly, so a GLib iteration takes the
    /// engine's mutex only to dispatch. (The epoll layer is level-triggered: the engine keeps
    /// no re-check list that only `Engine::prepare_host_wait` could see.)
    shared: Arc<Shared<EpollRegistrar>>,
    /// Base of `bound` and `wake_at`.
    epoch: Instant,
    /// When the engine (or the `iterate` bound) needs the next dispatch, as *prepare* computed
    /// it for this GLib iteration, in nanoseconds after `epoch`; [`NO_BOUND`] for "only on
    /// readiness". *check* compares it with the clock instead of asking the engine again.
    wake_at: AtomicU64,
    /// Deadline of the current [`GlibLoop::run_once`](crate::GlibLoop), in
    /// nanoseconds after `epoch`, or [`NO_BOUND`].
    bound: AtomicU64,
    /// Callbacks run by this source's dispatches (reset by `iterate`).
    ran: AtomicUsize,
    /// The first error of a dispatch not yet reported by `iterate`/`run`.
    error: Mutex<Option<Error>>,
    /// The loop was dropped from inside one of its own callbacks: drop the engine as soon as
    /// that dispatch returns.
    dispose: AtomicBool,
    /// The epoll fd was taken out of GLib's poll set (events 0) because a callback runs a
    /// nested main loop; restored when that dispatch returns.
    muted: AtomicBool,
    /// Asked by the loop's [`Quitter`](anyloop::Quitter); consumed by `run`.
    pub(crate) quit: Arc<AtomicBool>,
}

thread_local! {
    /// The `Core` whose dispatch is running on this thread (innermost), if any.
    static DISPATCHING: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Our locks are never held around user code except the engine's, and a user panic is
    // caught inside the engine; a poisoned lock still holds consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    fn new(engine: Engine<EpollPoller>) -> Core {
        Core {
            shared: engine.shared().clone(),
            engine: Mutex::new(Some(engine)),
            epoch: Instant::now(),
            wake_at: AtomicU64::new(NO_BOUND),
            bound: AtomicU64::new(NO_BOUND),
            ran: AtomicUsize::new(0),
            error: Mutex::new(None),
            dispose: AtomicBool::new(false),
            muted: AtomicBool::new(false),
            quit: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True while one of this loop's callbacks (or frees) runs on the calling thread.
    fn dispatching_here(&self) -> bool {
        std::ptr::eq(DISPATCHING.with(Cell::get), self)
    }

    /// Sets (or clears) the bound of the next iteration.
    pub(crate) fn set_bound(&self, limit: Option<Duration>) {
        let value = match limit {
            None => NO_BOUND,
            Some(limit) => {
                let now = Instant::now().saturating_duration_since(self.epoch);
                now.checked_add(limit)
                    .and_then(|at| u64::try_from(at.as_nanos()).ok())
                    .map_or(NO_BOUND - 1, |at| at.min(NO_BOUND - 1))
            }
        };
        self.bound.store(value, Ordering::SeqCst);
    }

    /// The bound as an instant, if one is set.
    fn bound(&self) -> NextIteration {
        match self.bound.load(Ordering::SeqCst) {
            NO_BOUND => NextIteration::OnReadiness,
            bound => NextIteration::At(self.epoch + Duration::from_nanos(bound)),
        }
    }

    pub(crate) fn take_ran(&self) -> usize {
        self.ran.swap(0, Ordering::SeqCst)
    }

    pub(crate) fn take_error(&self) -> Option<Error> {
        lock(&self.error).take()
    }

    /// Runs pending frees now (see `Engine::drain`); 0 from inside a callback (the engine is
    /// busy: the frees run at the end of the current iteration anyway).
    pub(crate) fn drain(&self) -> anyloop::Result<usize> {
        if self.dispatching_here() {
            return Ok(0);
        }
        match lock(&self.engine).as_mut() {
            Some(engine) => engine.drain(),
            None => Ok(0),
        }
    }

    /// Takes the engine out, to drop it on the calling thread ([R48](anyloop::contract#r48)). From inside one of its
    /// own callbacks, the engine is busy: it is dropped right after that dispatch instead.
    pub(crate) fn take_engine(&self) -> Option<Engine<EpollPoller>> {
        if self.dispatching_here() {
            self.dispose.store(true, Ordering::SeqCst);
            return None;
        }
        lock(&self.engine).take()
    }

    /// Prepare: `Some(ZERO)` = ready now; `Some(d)` = may sleep `d`; `None` = no deadline.
    /// One lock (the engine's table, which also opens the host-wait window) and one clock
    /// read; the answer is kept in `wake_at` for *check*. (Never called from inside our own
    /// dispatch: the callbacks check that first.)
    fn prepare(&self) -> Option<Duration> {
        let next = self.shared.host_sleeps().earliest(self.bound());
        let wake_at = match next {
            NextIteration::Now => 0,
            NextIteration::At(at) => {
                u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
                    .unwrap_or(NO_BOUND - 1)
            }
            NextIteration::OnReadiness => NO_BOUND,
        };
        self.wake_at.store(wake_at, Ordering::Relaxed);
        match next {
            NextIteration::Now => Some(Duration::ZERO),
            NextIteration::At(_) => next.timeout(Instant::now()),
            NextIteration::OnReadiness => None,
        }
    }

    /// Check, after GLib's poll, when the epoll fd is not readable: has the deadline that
    /// *prepare* computed come? If not, no dispatch follows: the host wait ends here, so that
    /// ops from other threads stop writing wake-ups until the next prepare.
    fn due(&self) -> bool {
        let wake_at = self.wake_at.load(Ordering::Relaxed);
        let due = wake_at != NO_BOUND
            && (wake_at == 0
                || Instant::now()
                    .saturating_duration_since(self.epoch)
                    .as_nanos()
                    >= u128::from(wake_at));
        if !due {
            self.shared.host_awake();
        }
        due
    }

    /// Dispatch: one engine iteration that does not wait, and does not poll the engine's
    /// epoll at all unless GLib's poll found its fd readable (`poller_ready`).
    fn dispatch(&self, poller_ready: bool) {
        let previous = DISPATCHING.with(|d| d.replace(self));
        let mut guard = lock(&self.engine);
        if let Some(engine) = guard.as_mut() {
            match engine.run_hosted(poller_ready) {
                Ok(count) => {
                    self.ran.fetch_add(count, Ordering::SeqCst);
                }
                Err(err) => {
                    // The engine traced it; keep the first for `iterate`/`run` (R54).
                    let mut slot = lock(&self.error);
                    if slot.is_none() {
                        *slot = Some(err);
                    }
                }
            }
        }
        let disposed = if self.dispose.swap(false, Ordering::SeqCst) {
            guard.take()
        } else {
            None
        };
        drop(guard);
        DISPATCHING.with(|d| d.set(previous));
        // The loop was dropped by one of its callbacks: free everything now, on this thread,
        // with no lock held (R24, R48).
        drop(disposed);
    }
}

/// The GSource: GLib's header, then ours.
#[repr(C)]
struct RawSource {
    base: ffi::GSource,
    /// An `Arc<Core>` turned into a raw pointer; released by `finalize`.
    core: *const Core,
    /// The tag of the epoll fd in GLib's poll set.
    tag: ffi::gpointer,
}

/// The source's callbacks. GLib only reads this table.
static FUNCS: ffi::GSourceFuncs = ffi::GSourceFuncs {
    prepare: Some(prepare),
    check: Some(check),
    dispatch: Some(dispatch),
    finalize: Some(finalize),
    closure_callback: None,
    closure_marshal: None,
};

/// Borrows the `Core` of a source of ours.
///
/// # Safety
/// `source` must be a live source created by [`new_source`] whose `core` was not released
/// yet, i.e. any source GLib passes to `prepare`, `check` or `dispatch` (`finalize` runs
/// last).
unsafe fn core<'a>(source: *mut ffi::GSource) -> &'a Core {
    // SAFETY: per this function's contract, `source` points to a `RawSource` (GLib allocated
    // `size_of::<RawSource>()` bytes and `new_source` initialised our fields before anyone
    // could call back), and `core` is the pointer of an `Arc<Core>` that stays alive until
    // `finalize`, which GLib calls after every other callback.
    unsafe { &*(*source.cast::<RawSource>()).core }
}

unsafe extern "C" fn prepare(source: *mut ffi::GSource, timeout: *mut i32) -> ffi::gboolean {
    // SAFETY: GLib calls `prepare` only on a live source of ours (see `core`).
    let core = unsafe { core(source) };
    if core.dispatching_here() {
        // A callback of ours runs a nested main loop (the source can recurse, see
        // `new_source`): not ready, and the epoll fd leaves GLib's poll set until that
        // callback returns, or the nested loop would spin on it (level-triggered).
        if !core.muted.swap(true, Ordering::SeqCst) {
            // SAFETY: live source of ours; `tag` belongs to it (see `check`).
            unsafe { ffi::g_source_modify_unix_fd(source, (*source.cast::<RawSource>()).tag, 0) };
        }
        if !timeout.is_null() {
            // SAFETY: GLib passes a valid `gint *`.
            unsafe { *timeout = -1 };
        }
        return ffi::GFALSE;
    }
    let wait = core.prepare();
    let ms = match wait {
        Some(Duration::ZERO) => return ffi::GTRUE,
        // Rounded up: never wake before a deadline only to find it not due (R31).
        Some(wait) => i32::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        None => -1,
    };
    if !timeout.is_null() {
        // SAFETY: GLib passes a valid `gint *` for the poll timeout of this source.
        unsafe { *timeout = ms };
    }
    ffi::GFALSE
}

unsafe extern "C" fn check(source: *mut ffi::GSource) -> ffi::gboolean {
    // SAFETY: GLib calls `check` only on a live source of ours.
    let core = unsafe { core(source) };
    if core.dispatching_here() {
        return ffi::GFALSE; // nested, see `prepare`
    }
    // SAFETY: `tag` was returned by `g_source_add_unix_fd` on this very source and never
    // removed.
    let revents = unsafe { ffi::g_source_query_unix_fd(source, (*source.cast::<RawSource>()).tag) };
    // Readable: dispatch, whose engine iteration ends the host wait (no lock taken here).
    if revents != 0 || core.due() {
        ffi::GTRUE
    } else {
        ffi::GFALSE
    }
}

unsafe extern "C" fn dispatch(
    source: *mut ffi::GSource,
    _callback: ffi::GSourceFunc,
    _data: ffi::gpointer,
) -> ffi::gboolean {
    // SAFETY: GLib calls `dispatch` only on a live source of ours, and holds a reference to
    // it for the whole call.
    let core = unsafe { core(source) };
    if core.dispatching_here() {
        return ffi::G_SOURCE_CONTINUE; // nested: never re-enter the engine
    }
    // What this iteration's poll saw on the epoll fd (defined in dispatch as in check, also
    // when *prepare* said "ready now" and GLib called no *check*): nothing there means the
    // dispatch is for a deadline, a free or a quit, and the engine skips its `epoll_wait`.
    // SAFETY: `tag` was returned by `g_source_add_unix_fd` on this very source and never
    // removed.
    let revents = unsafe { ffi::g_source_query_unix_fd(source, (*source.cast::<RawSource>()).tag) };
    core.dispatch(revents != 0);
    // SAFETY: `source` is alive for the whole call (see above).
    let destroyed = unsafe { ffi::g_source_is_destroyed(source) } != ffi::GFALSE;
    if core.muted.swap(false, Ordering::SeqCst) && !destroyed {
        // SAFETY: live source of ours; `tag` belongs to it.
        unsafe {
            ffi::g_source_modify_unix_fd(source, (*source.cast::<RawSource>()).tag, ffi::G_IO_IN)
        };
    }
    ffi::G_SOURCE_CONTINUE
}

unsafe extern "C" fn finalize(source: *mut ffi::GSource) {
    // SAFETY: GLib calls `finalize` once, when the last reference goes; `core` came from
    // `Arc::into_raw` in `new_source` and is released exactly here.
    let raw = unsafe { &mut *source.cast::<RawSource>() };
    let core = std::mem::replace(&mut raw.core, std::ptr::null());
    if !core.is_null() {
        // SAFETY: see above.
        drop(unsafe { Arc::from_raw(core) });
    }
}

/// Creates the source for `engine` (not attached yet) and the `Core` it shares.
pub(crate) fn new_source(engine: Engine<EpollPoller>) -> (glib::Source, Arc<Core>) {
    let epoll_fd = engine.poller().fd().as_raw_fd();
    let core = Arc::new(Core::new(engine));
    let size = u32::try_from(std::mem::size_of::<RawSource>()).unwrap_or(u32::MAX);
    // SAFETY: `FUNCS` is a static table of valid callbacks that GLib only reads (the `*mut`
    // is an artefact of the C prototype). `g_source_new` returns a zeroed block of `size`
    // bytes starting with an initialised `GSource` header; we own its one reference.
    let source = unsafe { ffi::g_source_new(std::ptr::addr_of!(FUNCS).cast_mut(), size) };
    // SAFETY: `source` is the fresh, unattached block just allocated with room for a
    // `RawSource`; no callback can run before it is attached, so initialising our fields
    // here is race-free. The epoll fd stays open as long as the engine, which outlives the
    // source's attachment (the loop destroys the source before dropping the engine).
    unsafe {
        let raw = source.cast::<RawSource>();
        (*raw).core = Arc::into_raw(core.clone());
        (*raw).tag = ffi::g_source_add_unix_fd(source, epoll_fd, ffi::G_IO_IN);
        ffi::g_source_set_name(source, c"anyloop".as_ptr());
        // Not blocked while it dispatches: GLib would take the epoll fd out of its poll set
        // and put it back around every dispatch, writing the context's wake-up eventfd
        // twice and costing a spurious poll + read next iteration. Recursion is handled in
        // the callbacks instead (a nested iteration never re-enters the engine).
        ffi::g_source_set_can_recurse(source, ffi::GTRUE);
    }
    // SAFETY: we hand our one reference to the `glib::Source` wrapper.
    let source: glib::Source = unsafe { from_glib_full(source) };
    (source, core)
}

/// Sets the priority of a source.
pub(crate) fn set_priority(source: &glib::Source, priority: glib::Priority) {
    use glib::translate::IntoGlib;
    // SAFETY: `source` is a live `GSource` (the wrapper holds a reference);
    // `g_source_set_priority` is thread-safe and valid on attached sources.
    unsafe { ffi::g_source_set_priority(source.to_glib_none().0, priority.into_glib()) }
}
