//! glib-rs used directly, the substrate of the `glib` backend: one `glib_unix::fd_source_new`
//! per watch, one `timeout_source_new` per timer (kept and destroyed, as the peers' C GLib
//! bench does), `g_source_set_ready_time` as the native re-arm, `MainContext::invoke` for the
//! cross-thread wake-up, and `iteration(true)` as one loop iteration. Every source lives on a
//! private context of the loop thread (the `glib` backend is measured on one too).

use std::os::fd::RawFd;
use std::time::Duration;

use glib::translate::ToGlibPtr;
use glib::{ControlFlow, IOCondition, MainContext, Priority, Source};

use crate::contender::{oneshot_fired, xt_fired, Contender};

/// Raw glib-rs on a private main context.
pub struct GlibRaw {
    context: MainContext,
    watches: Vec<Source>,
    /// Timer sources by index; `None` once removed (indices are not reused in a run).
    timers: Vec<Option<Source>>,
}

impl Drop for GlibRaw {
    fn drop(&mut self) {
        for source in self.watches.iter().chain(self.timers.iter().flatten()) {
            source.destroy();
        }
    }
}

impl Contender for GlibRaw {
    type Timer = usize;

    fn make() -> Self {
        GlibRaw {
            context: MainContext::new(),
            watches: Vec::new(),
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
