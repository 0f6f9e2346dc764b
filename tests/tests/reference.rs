//! The battery on the kit's own poll(2) reference backend: the kit's self-check.

anyloop_conformance::conformance_tests!(anyloop_conformance::reference::ReferenceBackend);
