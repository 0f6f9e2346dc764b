//! The anyloop backends measured here, as adapter [`Driver`]s: one small impl each.

use std::time::Duration;

use anyloop::Loop;
use anyloop_glib::GlibLoop;
use anyloop_select::{Poller, SelectLoop};

use crate::anyloop_adapter::Driver;

/// `anyloop-select` with its Linux level-triggered epoll poller (`MIO = false`, the default)
/// or with mio's edge-triggered epoll plus the batched `poll(2)` re-check (`MIO = true`).
pub struct Select<const MIO: bool>(SelectLoop);

impl<const MIO: bool> Driver for Select<MIO> {
    fn make() -> Self {
        let poller = if MIO { Poller::Mio } else { Poller::Epoll };
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
