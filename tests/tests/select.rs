//! The battery on the built-in loop, once per poller. This is all a backend author writes:
//! a factory ([`Backend`]) and a thin [`LoopUnderTest`] adapter, then the macro.

use std::sync::Arc;
use std::time::Duration;

use anyloop::{Loop, LoopStats, Result};
use anyloop_conformance::{Backend, LoopUnderTest, Quitter};
use anyloop_select::{Poller, SelectLoop};

/// Makes a `SelectLoop` with the given poller (on the kit's loop thread).
struct Select(Poller);

impl Backend for Select {
    fn name(&self) -> String {
        format!("select-{:?}", self.0).to_lowercase()
    }

    fn create(&self) -> Result<Box<dyn LoopUnderTest>> {
        Ok(Box::new(Driven(SelectLoop::with_poller(self.0)?)))
    }
}

/// The adapter: forwards to `SelectLoop`'s own methods.
struct Driven(SelectLoop);

impl LoopUnderTest for Driven {
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

mod epoll {
    anyloop_conformance::conformance_tests!(super::Select(anyloop_select::Poller::Epoll));
}

mod mio {
    anyloop_conformance::conformance_tests!(super::Select(anyloop_select::Poller::Mio));
}
