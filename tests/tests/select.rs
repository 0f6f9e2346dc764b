//! The battery on the built-in loop, once per poller (the adapter is in `support/mod.rs`).

mod support;

mod epoll {
    anyloop_conformance::conformance_tests!(super::support::Select(
        anyloop_select::PollerKind::Epoll
    ));
}

mod mio {
    anyloop_conformance::conformance_tests!(super::support::Select(
        anyloop_select::PollerKind::Mio
    ));
}
