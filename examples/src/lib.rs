//! Example code for anyloop.
//!
//! - [`relay`]: a small library written against the anyloop vtable only (a line relay with an
//!   idle timeout). The `relay` program (`src/bin/relay.rs`) plugs it into the built-in loop.
//! - [`supervisor`]: a child-process supervisor written against anyloop only (fd watches,
//!   timers and the typed event registry); the `supervise` program runs a command under it on
//!   the loop of your choice.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod loops;
pub mod relay;
pub mod supervisor;

/// The README's code blocks, compiled and run as doc tests so the README cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
