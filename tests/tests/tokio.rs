//! The battery on the tokio backend, twice: a current-thread tokio runtime owned by anyloop
//! (`anyloop_tokio::TokioLoop`, as the chooser makes it, the factory is in `support/mod.rs`),
//! and the same loop on a multi-thread runtime (`LoopChoice::TokioMulti`:
//! `TokioLoop::with_runtime`), where anyloop's callbacks stay on the thread that runs the loop
//! while tokio's I/O and timer drivers may be turned by the worker threads.

mod support;

mod current_thread {
    anyloop_conformance::conformance_tests!(super::support::Chosen(
        anyloop_backends::LoopChoice::Tokio
    ));
}

mod multi_thread {
    anyloop_conformance::conformance_tests!(super::support::Chosen(
        anyloop_backends::LoopChoice::TokioMulti
    ));
}
