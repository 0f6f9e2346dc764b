//! The battery on the calloop backend: a calloop `EventLoop` (shared data `()`) with the
//! anyloop source inserted, driven one calloop dispatch at a time.

use std::sync::Arc;
use std::time::Duration;

use anyloop::{Loop, LoopStats, Result};
use anyloop_calloop::CalloopBackend;
use anyloop_conformance::{Backend, LoopUnderTest, Quitter};

/// Makes a calloop loop and the backend on it (on the kit's loop thread: calloop's loop
/// cannot move between threads).
struct Calloop;

impl Backend for Calloop {
    fn name(&self) -> String {
        "calloop".into()
    }

    fn create(&self) -> Result<Box<dyn LoopUnderTest>> {
        let event_loop = calloop::EventLoop::try_new().map_err(|err| anyloop::Error::Os {
            op: "creating the calloop loop",
            fd: None,
            source: std::io::Error::other(err),
        })?;
        let backend = CalloopBackend::new(&event_loop.handle())?;
        Ok(Box::new(Driven {
            backend,
            event_loop,
        }))
    }
}

/// The adapter: one `run_once` is one calloop `dispatch`.
struct Driven {
    // Dropped first: removes the source, which frees every remaining callback (R48).
    backend: CalloopBackend<'static>,
    event_loop: calloop::EventLoop<'static, ()>,
}

impl LoopUnderTest for Driven {
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

anyloop_conformance::conformance_tests!(Calloop);
