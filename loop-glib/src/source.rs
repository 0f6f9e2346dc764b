//! The one `GSource` that hosts an anyloop engine on a GLib main context: from GLib's poll to
//! the user's callback.
//!
//! The engine is an [`anyloop_engine::HostedEngine`]: one fd (its epoll instance) and one
//! deadline, the same three calls every host makes (read its module docs first, then
//! `engine/src/dispatch.rs` for the engine iteration itself). GLib iterates a context in four
//! steps, and this source takes part in each:
//!
//! 1. **prepare** (on the thread iterating the context, before it polls):
//!    [`HostedEngine::prepare`] says when the engine next needs an iteration (under the
//!    engine's lock, the only one this step takes) and opens the host-wait window, in which an
//!    op from any *other* thread writes the engine's wake-up eventfd
//!    ([R40](anyloop::contract#r40)). "Now" means ready; a deadline becomes GLib's poll
//!    timeout, rounded *up* to whole milliseconds (a timer is never early,
//!    [R31](anyloop::contract#r31)). The bound of [`GlibLoop::run_once`](crate::GlibLoop) is
//!    folded in here too.
//! 2. **poll** (GLib's `poll(2)`): our only entry in GLib's poll set is the engine's epoll fd.
//!    It is readable when a watched fd is ready or the wake-up eventfd (inside the epoll set)
//!    was written, so GLib's cost per iteration does not grow with the number of watches.
//! 3. **check**: [`HostedEngine::check`]: ready if GLib saw the epoll fd readable (no lock, no
//!    clock read), or the deadline kept by *prepare* has come; when neither, the host-wait
//!    window closes there, so no stale wake-up ends a later poll early.
//! 4. **dispatch**: [`HostedEngine::dispatch`], one engine iteration that does not wait: one
//!    `epoll_wait` collects the ready fds (skipped when GLib's poll found the epoll fd quiet
//!    and the dispatch is for a deadline: that wait would find nothing, so a timer firing
//!    costs GLib's `poll` alone), the expired timers are collected, the callbacks run
//!    (level-triggered: an fd still readable keeps the epoll fd readable, so GLib dispatches
//!    again next iteration, [R8](anyloop::contract#r8)), then the frees. Callbacks and frees
//!    thus run on the thread that iterates the context, with no GLib or anyloop lock held
//!    ([R42](anyloop::contract#r42), [R43](anyloop::contract#r43)).
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
//! is handled by the hosted engine instead: while one of our callbacks runs a nested main
//! loop, *prepare* and *check* answer "not ready" and *dispatch* does nothing, and the epoll
//! fd is muted here (polled for no event) until that callback returns, so the nested loop
//! neither re-enters the engine nor spins on the level-triggered epoll fd; the other sources
//! of the context run as usual.
//!
//! No callback state is ever handed to GLib: the only thing GLib owns is a reference to
//! [`Core`], released in *finalize*, and the engine (with every callback) is closed by
//! [`GlibLoop`](crate::GlibLoop)'s `Drop` on the dropping thread ([R21](anyloop::contract#r21),
//! [R48](anyloop::contract#r48)).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyloop_engine::linux::EpollPoller;
use anyloop_engine::{HostedEngine, NextIteration};
use glib::ffi;
use glib::translate::{from_glib_full, ToGlibPtr};

/// No `iterate` bound is set.
const NO_BOUND: u64 = u64::MAX;

/// What the source and the [`GlibLoop`](crate::GlibLoop) share. `Send + Sync`: GLib may call
/// the source from whichever thread iterates the context.
pub(crate) struct Core {
    /// The engine, hosted: the source calls it from GLib's prepare, check and dispatch.
    pub(crate) host: HostedEngine<EpollPoller>,
    /// Base of `bound`.
    epoch: Instant,
    /// Deadline of the current [`GlibLoop::run_once`](crate::GlibLoop), in
    /// nanoseconds after `epoch`, or [`NO_BOUND`].
    bound: AtomicU64,
    /// The epoll fd was taken out of GLib's poll set (events 0) because a callback runs a
    /// nested main loop; restored when that dispatch returns.
    muted: AtomicBool,
}

impl Core {
    fn new(host: HostedEngine<EpollPoller>) -> Core {
        Core {
            host,
            epoch: Instant::now(),
            bound: AtomicU64::new(NO_BOUND),
            muted: AtomicBool::new(false),
        }
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

    /// The bound as an iteration deadline, if one is set.
    fn bound(&self) -> NextIteration {
        match self.bound.load(Ordering::SeqCst) {
            NO_BOUND => NextIteration::OnReadiness,
            bound => NextIteration::At(self.epoch + Duration::from_nanos(bound)),
        }
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
    let wait = core.host.prepare();
    if !wait.poll_fd() {
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
    let next = wait.next().earliest(core.bound());
    if next == NextIteration::Now {
        return ffi::GTRUE;
    }
    // Rounded up: never wake before a deadline only to find it not due (R31).
    let ms = next.timeout_ms(Instant::now());
    if !timeout.is_null() {
        // SAFETY: GLib passes a valid `gint *` for the poll timeout of this source.
        unsafe { *timeout = ms };
    }
    ffi::GFALSE
}

unsafe extern "C" fn check(source: *mut ffi::GSource) -> ffi::gboolean {
    // SAFETY: GLib calls `check` only on a live source of ours.
    let core = unsafe { core(source) };
    if core.host.is_dispatching() {
        return ffi::GFALSE; // nested, see `prepare`
    }
    // SAFETY: `tag` was returned by `g_source_add_unix_fd` on this very source and never
    // removed.
    let revents = unsafe { ffi::g_source_query_unix_fd(source, (*source.cast::<RawSource>()).tag) };
    // Readable or due: dispatch, whose engine iteration ends the host wait (no lock taken
    // when readable); otherwise the engine ends it here. The bound of `GlibLoop::run_once`
    // dispatches too (an engine iteration that finds nothing), which ends that `run_once`.
    if core.host.check(revents != 0) || core.bound().is_due(Instant::now()) {
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
    if core.host.is_dispatching() {
        return ffi::G_SOURCE_CONTINUE; // nested: never re-enter the engine
    }
    // What this iteration's poll saw on the epoll fd (defined in dispatch as in check, also
    // when *prepare* said "ready now" and GLib called no *check*): nothing there means the
    // dispatch is for a deadline, a free or a quit, and the engine skips its `epoll_wait`.
    // SAFETY: `tag` was returned by `g_source_add_unix_fd` on this very source and never
    // removed.
    let revents = unsafe { ffi::g_source_query_unix_fd(source, (*source.cast::<RawSource>()).tag) };
    core.host.dispatch(revents != 0);
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

/// Creates the source for `host` (not attached yet) and the `Core` it shares.
pub(crate) fn new_source(host: HostedEngine<EpollPoller>) -> (glib::Source, Arc<Core>) {
    let epoll_fd = host.raw_fd();
    let core = Arc::new(Core::new(host));
    let size = u32::try_from(std::mem::size_of::<RawSource>()).unwrap_or(u32::MAX);
    // SAFETY: `FUNCS` is a static table of valid callbacks that GLib only reads (the `*mut`
    // is an artefact of the C prototype). `g_source_new` returns a zeroed block of `size`
    // bytes starting with an initialised `GSource` header; we own its one reference.
    let source = unsafe { ffi::g_source_new(std::ptr::addr_of!(FUNCS).cast_mut(), size) };
    // SAFETY: `source` is the fresh, unattached block just allocated with room for a
    // `RawSource`; no callback can run before it is attached, so initialising our fields
    // here is race-free. The epoll fd stays open as long as the hosted engine, which the
    // source's `Core` holds until `finalize`.
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
