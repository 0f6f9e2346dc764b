//! The battery on `anyloop-glib`, each loop on a private `glib::MainContext` of its own, made
//! and iterated by the kit's loop thread (the factory is in `support/mod.rs`). The battery on
//! the global default context is `glib_default.rs`.

mod support;

anyloop_conformance::conformance_tests!(support::Chosen(anyloop_backends::LoopChoice::Glib));
