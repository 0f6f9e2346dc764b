//! The battery on the built-in loop, once per poller (the factory is in `support/mod.rs`).

mod support;

mod epoll {
    anyloop_conformance::conformance_tests!(super::support::Chosen(
        anyloop_backends::LoopChoice::Select
    ));
}

mod mio {
    anyloop_conformance::conformance_tests!(super::support::Chosen(
        anyloop_backends::LoopChoice::SelectMio
    ));
}
