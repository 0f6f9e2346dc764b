//! The conformance kit (in progress).
