//! The battery on the calloop backend: a calloop `EventLoop` with the anyloop source
//! inserted, driven one calloop dispatch at a time (the adapter is in `support/mod.rs`).

mod support;

anyloop_conformance::conformance_tests!(support::Calloop);
