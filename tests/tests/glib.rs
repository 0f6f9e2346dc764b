//! The battery on `anyloop-glib`, each loop on a private `glib::MainContext` of its own,
//! iterated by the kit's loop thread with that context pushed as the thread default (as a
//! worker thread of a GLib application runs its own context). The battery on the global
//! default context is `glib_default.rs`.

use std::sync::Arc;
use std::time::Duration;

use anyloop::{Loop, LoopStats, Result};
use anyloop_conformance::{Backend, LoopUnderTest, Quitter};
use anyloop_glib::GlibLoop;
use glib::MainContext;

/// Makes a `GlibLoop` on a fresh private context (on the kit's loop thread).
struct PrivateContext;

impl Backend for PrivateContext {
    fn name(&self) -> String {
        "glib-private".into()
    }

    fn create(&self) -> Result<Box<dyn LoopUnderTest>> {
        let context = MainContext::new();
        let lp = GlibLoop::new(&context)?;
        Ok(Box::new(Driven { context, lp }))
    }
}

/// The adapter: one `run_once` is one `MainContext::iteration`, bounded by the timeout.
struct Driven {
    context: MainContext,
    lp: GlibLoop,
}

impl LoopUnderTest for Driven {
    fn handle(&self) -> Loop {
        self.lp.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let Driven { context, lp } = self;
        context
            .with_thread_default(|| lp.iterate(timeout))
            .expect("the loop thread owns its context")
    }

    fn run(&mut self) -> Result<()> {
        let Driven { context, lp } = self;
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

anyloop_conformance::conformance_tests!(PrivateContext);
