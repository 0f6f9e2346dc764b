//! The battery on the calloop backend: a calloop `EventLoop` owned by anyloop
//! (`anyloop_calloop::CalloopLoop`, the anyloop source inserted in it), driven one calloop
//! dispatch at a time (the factory is in `support/mod.rs`).

mod support;

anyloop_conformance::conformance_tests!(support::Chosen(anyloop_backends::LoopChoice::Calloop));
