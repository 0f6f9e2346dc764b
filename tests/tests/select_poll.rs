//! The battery on the built-in loop with the engine's POSIX `poll(2)` layer
//! (`anyloop_select::PollerKind::Poll`; the factory is in `support/mod.rs`).

mod support;

anyloop_conformance::conformance_tests!(support::Chosen(anyloop_backends::LoopChoice::SelectPoll));
