//! glib-rs used directly, the substrate of the `glib` backend: one `glib_unix::fd_source_new`
//! per watch, one `timeout_source_new` per timer (kept and destroyed, as the peers' C GLib
//! bench does), `g_source_set_ready_time` as the native re-arm, `MainContext::invoke` for the
//! cross-thread wake-up, and `iteration(true)` as one loop iteration. Every source lives on a
//! private context of the loop thread (the `glib` backend is measured on one too).
//!
//! A W7/W8 watch, whose interest can change, is one fd source per direction of its interest,
//! created when the interest gains that direction and destroyed when it loses it: how
//! dbus-glib maps libdbus's read and write watches onto GLib (`g_io_add_watch` when a watch is
//! enabled, `g_source_remove` when it is disabled). A source cannot change its condition
//! through glib-rs; a custom `GSource` with `g_source_modify_unix_fd` would need FFI.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyloop::IoEvents;
use glib::translate::ToGlibPtr;
use glib::{ControlFlow, IOCondition, MainContext, Priority, Source};

use crate::contender::{oneshot_fired, xt_fired, Contender, Step};

/// Raw glib-rs on a private main context.
pub struct GlibRaw {
    context: MainContext,
    watches: Vec<Source>,
    /// W7/W8 watches (their sources are destroyed with the contender).
    io_watches: Vec<Arc<Mutex<IoWatch>>>,
    /// Timer sources by index; `None` once removed (indices are not reused in a run).
    timers: Vec<Option<Source>>,
}

impl Drop for GlibRaw {
    fn drop(&mut self) {
        for source in self.watches.iter().chain(self.timers.iter().flatten()) {
            source.destroy();
        }
        for io in &self.io_watches {
            // Destroying a source drops its closure, and with it the closure's reference to
            // the watch.
            let mut io = io.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for source in io.sources.iter_mut().filter_map(Option::take) {
                source.destroy();
            }
        }
    }
}

/// A W7/W8 watch: its callback, the interest in force and one source per direction of it.
/// Shared by its sources' closures (which glib-rs wants `Send`: hence the mutex, uncontended,
/// taken once per callback).
struct IoWatch {
    context: MainContext,
    interest: IoEvents,
    /// The sources of [`DIRECTIONS`], present while the interest holds that direction.
    sources: [Option<Source>; 2],
    cb: Box<dyn FnMut(RawFd, IoEvents) -> Step + Send>,
}

/// The directions of an interest and their GLib conditions.
const DIRECTIONS: [(IoEvents, IOCondition); 2] = [
    (IoEvents::READABLE, IOCondition::IN),
    (IoEvents::WRITABLE, IOCondition::OUT),
];

/// What a GLib condition tells a watch with `interest`.
fn told(condition: IOCondition, interest: IoEvents) -> IoEvents {
    let mut events = IoEvents::empty();
    if condition.contains(IOCondition::IN) {
        events |= IoEvents::READABLE;
    }
    if condition.contains(IOCondition::OUT) {
        events |= IoEvents::WRITABLE;
    }
    if condition.intersects(IOCondition::ERR | IOCondition::NVAL) {
        events |= IoEvents::ERROR;
    }
    if condition.contains(IOCondition::HUP) {
        events |= IoEvents::HANGUP;
    }
    events & (interest | IoEvents::ALWAYS_REPORTED)
}

/// Creates and attaches the source of direction `dir` of the watch `shared` (`io` is its
/// locked state).
fn attach_io(shared: &Arc<Mutex<IoWatch>>, io: &mut IoWatch, fd: RawFd, dir: usize) {
    let watch = shared.clone();
    let source = glib_unix::fd_source_new(
        fd,
        DIRECTIONS[dir].1,
        None,
        Priority::DEFAULT,
        move |fd, condition| {
            let mut guard = watch.lock().expect("a W7/W8 callback panicked");
            let io = &mut *guard;
            let step = (io.cb)(fd, told(condition, io.interest));
            if step.interest == io.interest {
                return ControlFlow::Continue;
            }
            io.interest = step.interest;
            let mut this_one = ControlFlow::Continue;
            for (d, (direction, _)) in DIRECTIONS.iter().enumerate() {
                match (step.interest.contains(*direction), io.sources[d].is_some()) {
                    (true, false) => attach_io(&watch, io, fd, d),
                    (false, true) => {
                        let source = io.sources[d].take().expect("present");
                        if d == dir {
                            // The running source: GLib destroys it when told to stop.
                            this_one = ControlFlow::Break;
                        } else {
                            source.destroy();
                        }
                    }
                    _ => {}
                }
            }
            this_one
        },
    );
    source.attach(Some(&io.context));
    io.sources[dir] = Some(source);
}

impl Contender for GlibRaw {
    type Timer = usize;

    fn make() -> Self {
        GlibRaw {
            context: MainContext::new(),
            watches: Vec::new(),
            io_watches: Vec::new(),
            timers: Vec::new(),
        }
    }

    fn watch_add(&mut self, fd: RawFd, mut cb: impl FnMut(RawFd) + Send + 'static) {
        let source = glib_unix::fd_source_new(
            fd,
            IOCondition::IN,
            None,
            Priority::DEFAULT,
            move |fd, _condition| {
                cb(fd);
                ControlFlow::Continue
            },
        );
        source.attach(Some(&self.context));
        self.watches.push(source);
    }

    fn io_watch_add(
        &mut self,
        fd: RawFd,
        interest: IoEvents,
        cb: impl FnMut(RawFd, IoEvents) -> Step + Send + 'static,
    ) {
        let shared = Arc::new(Mutex::new(IoWatch {
            context: self.context.clone(),
            interest,
            sources: [None, None],
            cb: Box::new(cb),
        }));
        {
            let mut io = shared.lock().expect("a fresh watch");
            for (dir, (direction, _)) in DIRECTIONS.iter().enumerate() {
                if interest.contains(*direction) {
                    attach_io(&shared, &mut io, fd, dir);
                }
            }
        }
        self.io_watches.push(shared);
    }

    fn run_once(&mut self) {
        self.context.iteration(true);
    }

    fn timer_add(&mut self, after: Duration, cb: fn()) -> usize {
        let source = glib::timeout_source_new(after, None, Priority::DEFAULT, move || {
            cb();
            ControlFlow::Continue
        });
        source.attach(Some(&self.context));
        self.timers.push(Some(source));
        self.timers.len() - 1
    }

    fn timer_update(&mut self, timer: usize, after: Duration) {
        if let Some(source) = &self.timers[timer] {
            let at = glib::monotonic_time() + after.as_micros() as i64;
            // SAFETY: `source` is a live GSource (the wrapper holds a reference);
            // `g_source_set_ready_time` is GLib's native re-arm and is valid on an attached
            // source from its context's thread.
            unsafe { glib::ffi::g_source_set_ready_time(source.to_glib_none().0, at) };
        }
    }

    fn timer_remove(&mut self, timer: usize) {
        if let Some(source) = self.timers[timer].take() {
            source.destroy();
        }
    }

    fn oneshot0(&mut self) {
        let source = glib::timeout_source_new(Duration::ZERO, None, Priority::DEFAULT, || {
            oneshot_fired();
            ControlFlow::Break
        });
        source.attach(Some(&self.context));
    }

    fn xt_variants() -> &'static [&'static str] {
        &["invoke"]
    }

    fn xt_setup(&mut self, _variant: usize) -> Box<dyn FnMut() + Send> {
        let context = self.context.clone();
        Box::new(move || context.invoke(xt_fired))
    }
}
