//! The anyloop backends measured here, as adapter [`Driver`]s: one small impl each.

use std::time::Duration;

use anyloop::Loop;
use anyloop_calloop::CalloopSource;
use anyloop_glib::GlibLoop;
use anyloop_select::{PollerKind, SelectLoop};

use crate::anyloop_adapter::Driver;

/// `anyloop-select` with its Linux level-triggered epoll poller (`MIO = false`, the default)
/// or with mio's edge-triggered epoll plus the batched `poll(2)` re-check (`MIO = true`).
pub struct Select<const MIO: bool>(SelectLoop);

impl<const MIO: bool> Driver for Select<MIO> {
    fn make() -> Self {
        let poller = if MIO {
            PollerKind::Mio
        } else {
            PollerKind::Epoll
        };
        Select(SelectLoop::with_poller(poller).expect("SelectLoop::with_poller"))
    }

    fn handle(&self) -> Loop {
        self.0.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) {
        self.0.run_once(timeout).expect("SelectLoop::run_once");
    }

    fn pending_frees(&self) -> usize {
        self.0.stats().pending_frees
    }
}

/// `anyloop-glib` on a private GLib main context of the loop thread; one iteration is one
/// `GlibLoop::iterate` (a `MainContext::iteration`).
pub struct Glib(GlibLoop);

impl Driver for Glib {
    fn make() -> Self {
        Glib(GlibLoop::new(&glib::MainContext::new()).expect("GlibLoop::new"))
    }

    fn handle(&self) -> Loop {
        self.0.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) {
        self.0.iterate(timeout).expect("GlibLoop::iterate");
    }

    fn pending_frees(&self) -> usize {
        self.0.stats().pending_frees
    }
}

/// `anyloop-calloop`: the engine as one source of a calloop loop (shared data `()`), one
/// iteration being one calloop `dispatch` through [`CalloopSource::dispatch`].
pub struct Calloop {
    // Dropped first: removes the source (and frees every callback) before the loop goes.
    backend: CalloopSource<'static>,
    event_loop: calloop::EventLoop<'static, ()>,
}

impl Driver for Calloop {
    fn make() -> Self {
        let event_loop = calloop::EventLoop::try_new().expect("calloop::EventLoop::try_new");
        let backend = CalloopSource::new(&event_loop.handle()).expect("CalloopSource::new");
        Calloop {
            backend,
            event_loop,
        }
    }

    fn handle(&self) -> Loop {
        self.backend.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) {
        self.backend
            .dispatch(&mut self.event_loop, timeout, &mut ())
            .expect("CalloopSource::dispatch");
    }

    fn pending_frees(&self) -> usize {
        self.backend.stats().pending_frees
    }
}
