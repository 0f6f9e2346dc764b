//! The battery on the tokio backend, four ways: a current-thread tokio runtime owned by
//! anyloop (`anyloop_tokio::TokioLoop`, as the chooser makes it, the factory is in
//! `support/mod.rs`); the same loop on a multi-thread runtime (`LoopChoice::TokioMulti`: `TokioLoop::with_runtime`),
//! where anyloop's callbacks stay on the thread that runs the loop while tokio's I/O and timer
//! drivers may be turned by the worker threads; and `anyloop_tokio::LocalDriver` as an
//! application drives it, made outside any runtime and polled on a `LocalSet` of the
//! application's runtime, current-thread and multi-thread.

mod support;

mod current_thread {
    anyloop_conformance::conformance_tests!(super::support::Chosen(
        anyloop_backends::LoopChoice::Tokio
    ));
}

/// A tokio runtime of either flavour, with I/O and time enabled.
fn runtime(multi_thread: bool) -> anyloop::Result<anyloop_tokio::tokio::runtime::Runtime> {
    let mut builder = if multi_thread {
        let mut builder = anyloop_tokio::tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    } else {
        anyloop_tokio::tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|source| anyloop::Error::Os {
            op: "creating a tokio runtime",
            fd: None,
            source,
        })
}

mod multi_thread {
    anyloop_conformance::conformance_tests!(super::support::Chosen(
        anyloop_backends::LoopChoice::TokioMulti
    ));
}

/// `LocalDriver` as an application uses it: made on the loop thread outside any runtime, then
/// polled on a `LocalSet` of the application's runtime (here one `LocalSet::block_on` per
/// `run_once`, as `TokioLoop` does, but with nothing registered with tokio before the
/// driver's first turn).
mod local_driver {
    use std::time::Duration;

    use anyloop::{Loop, Quitter, Runner};
    use anyloop_conformance::LoopFactory;
    use anyloop_tokio::tokio::runtime::Runtime;
    use anyloop_tokio::tokio::task::LocalSet;
    use anyloop_tokio::LocalDriver;

    /// The driver, its `LocalSet` and the runtime that polls them (dropped in that order).
    pub struct OnLocalSet {
        local: LocalSet,
        driver: LocalDriver,
        runtime: Runtime,
    }

    impl Runner for OnLocalSet {
        fn handle(&self) -> Loop {
            self.driver.handle()
        }

        fn run_once(&mut self, timeout: Option<Duration>) -> anyloop::Result<usize> {
            let OnLocalSet {
                local,
                driver,
                runtime,
            } = self;
            local.block_on(runtime, driver.run_once(timeout))
        }

        fn quitter(&self) -> Quitter {
            self.driver.quitter()
        }

        fn take_quit(&mut self) -> bool {
            self.driver.take_quit()
        }
    }

    /// A `LocalDriver` on a runtime of the given flavour.
    #[derive(Debug)]
    pub struct Driven {
        pub multi_thread: bool,
    }

    impl LoopFactory for Driven {
        fn name(&self) -> String {
            if self.multi_thread {
                "tokio-local-driver-multi-thread".into()
            } else {
                "tokio-local-driver".into()
            }
        }

        fn create(&self) -> anyloop::Result<Box<dyn Runner>> {
            // The runtime first, as an application's `#[tokio::main]` makes it; the driver
            // registers with it at its first turn.
            let runtime = super::runtime(self.multi_thread)?;
            Ok(Box::new(OnLocalSet {
                local: LocalSet::new(),
                driver: LocalDriver::new()?,
                runtime,
            }))
        }
    }

    mod current_thread {
        anyloop_conformance::conformance_tests!(super::Driven {
            multi_thread: false
        });
    }

    mod multi_thread {
        anyloop_conformance::conformance_tests!(super::Driven { multi_thread: true });
    }
}
