//! The kit's adapters for anyloop's own backends, written once: the battery binaries
//! (`select.rs`, `glib.rs`, `calloop.rs`) expand the battery on one of them each, and the
//! process-wide fault binaries (`emfile`, `id_exhaustion`, `soak`) run on all of them one after
//! the other, because those faults change the whole process. This is all a backend author
//! writes: a factory ([`LoopFactory`]) and a thin [`LoopUnderTest`] adapter, then
//! `anyloop_conformance::conformance_tests!(TheFactory)`. (The GLib default-context adapter
//! lives in `glib_default.rs`: it is the GLib backend on another context, and needs
//! turn-taking of its own.)

// Each test binary uses some of the adapters.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use anyloop::{Loop, LoopStats, Result};
use anyloop_calloop::CalloopSource;
use anyloop_conformance::reference::ReferenceBackend;
use anyloop_conformance::{LoopFactory, LoopUnderTest, Quitter};
use anyloop_glib::GlibLoop;
use anyloop_select::{PollerKind, SelectLoop};
use glib::MainContext;

/// Every backend, each as the kit's factory.
pub fn backends() -> Vec<Arc<dyn LoopFactory>> {
    vec![
        Arc::new(Select(PollerKind::Epoll)),
        Arc::new(Select(PollerKind::Mio)),
        Arc::new(ReferenceBackend),
        Arc::new(GlibPrivate),
        Arc::new(Calloop),
    ]
}

/// Makes a `SelectLoop` with the given poller (on the kit's loop thread).
pub struct Select(pub PollerKind);

impl LoopFactory for Select {
    fn name(&self) -> String {
        format!("select-{:?}", self.0).to_lowercase()
    }

    fn create(&self) -> Result<Box<dyn LoopUnderTest>> {
        Ok(Box::new(SelectDriven(SelectLoop::with_poller(self.0)?)))
    }
}

/// The adapter: forwards to `SelectLoop`'s own methods.
struct SelectDriven(SelectLoop);

impl LoopUnderTest for SelectDriven {
    fn handle(&self) -> Loop {
        self.0.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        self.0.run_once(timeout)
    }

    fn run(&mut self) -> Result<()> {
        self.0.run()
    }

    fn quitter(&self) -> Quitter {
        let quitter = self.0.quitter();
        Arc::new(move || quitter.quit())
    }

    fn stats(&self) -> LoopStats {
        self.0.stats()
    }
}

/// Makes a `GlibLoop` on a fresh private context (on the kit's loop thread), iterated with
/// that context pushed as the thread default, as a worker thread of a GLib application runs
/// its own context.
pub struct GlibPrivate;

impl LoopFactory for GlibPrivate {
    fn name(&self) -> String {
        "glib-private".into()
    }

    fn create(&self) -> Result<Box<dyn LoopUnderTest>> {
        let context = MainContext::new();
        let lp = GlibLoop::new(&context)?;
        Ok(Box::new(GlibDriven { context, lp }))
    }
}

/// The adapter: one `run_once` is one `MainContext::iteration`, bounded by the timeout.
struct GlibDriven {
    context: MainContext,
    lp: GlibLoop,
}

impl LoopUnderTest for GlibDriven {
    fn handle(&self) -> Loop {
        self.lp.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let GlibDriven { context, lp } = self;
        context
            .with_thread_default(|| lp.iterate(timeout))
            .expect("the loop thread owns its context")
    }

    fn run(&mut self) -> Result<()> {
        let GlibDriven { context, lp } = self;
        context
            .with_thread_default(|| lp.run())
            .expect("the loop thread owns its context")
    }

    fn quitter(&self) -> Quitter {
        let quitter = self.lp.quitter();
        Arc::new(move || quitter.quit())
    }

    fn stats(&self) -> LoopStats {
        self.lp.stats()
    }
}

/// Makes a calloop loop (shared data `()`) and the backend on it, on the kit's loop thread:
/// calloop's loop cannot move between threads.
pub struct Calloop;

impl LoopFactory for Calloop {
    fn name(&self) -> String {
        "calloop".into()
    }

    fn create(&self) -> Result<Box<dyn LoopUnderTest>> {
        let event_loop = calloop::EventLoop::try_new().map_err(|err| anyloop::Error::Os {
            op: "creating the calloop loop",
            fd: None,
            source: std::io::Error::other(err),
        })?;
        let backend = CalloopSource::new(&event_loop.handle())?;
        Ok(Box::new(CalloopDriven {
            backend,
            event_loop,
        }))
    }
}

/// The adapter: one `run_once` is one calloop `dispatch`.
struct CalloopDriven {
    // Dropped first: removes the source, which frees every remaining callback (R48).
    backend: CalloopSource<'static>,
    event_loop: calloop::EventLoop<'static, ()>,
}

impl LoopUnderTest for CalloopDriven {
    fn handle(&self) -> Loop {
        self.backend.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        self.backend
            .dispatch(&mut self.event_loop, timeout, &mut ())
    }

    fn run(&mut self) -> Result<()> {
        self.backend.run(&mut self.event_loop, &mut ())
    }

    fn quitter(&self) -> Quitter {
        let quitter = self.backend.quitter();
        Arc::new(move || quitter.quit())
    }

    fn stats(&self) -> LoopStats {
        self.backend.stats()
    }
}
