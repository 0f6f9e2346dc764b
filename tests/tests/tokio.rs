//! The battery on the tokio backend, twice: a current-thread tokio runtime owned by anyloop
//! (`anyloop_tokio::TokioLoop`, as the chooser makes it, the factory is in `support/mod.rs`),
//! and the same loop on a multi-thread runtime (`TokioLoop::with_runtime`), where anyloop's
//! callbacks stay on the thread that runs the loop while tokio's I/O and timer drivers may be
//! turned by the worker threads.

mod support;

mod current_thread {
    anyloop_conformance::conformance_tests!(super::support::Chosen(
        anyloop_backends::LoopChoice::Tokio
    ));
}

mod multi_thread {
    use anyloop::Runner;
    use anyloop_conformance::LoopFactory;

    /// `TokioLoop::with_runtime` on a two-worker multi-thread runtime.
    #[derive(Debug)]
    pub struct MultiThread;

    impl LoopFactory for MultiThread {
        fn name(&self) -> String {
            "tokio-multi-thread".into()
        }

        fn create(&self) -> anyloop::Result<Box<dyn Runner>> {
            let runtime = anyloop_tokio::tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|source| anyloop::Error::Os {
                    op: "creating a multi-thread tokio runtime",
                    fd: None,
                    source,
                })?;
            Ok(Box::new(anyloop_tokio::TokioLoop::with_runtime(runtime)?))
        }
    }

    anyloop_conformance::conformance_tests!(MultiThread);
}
