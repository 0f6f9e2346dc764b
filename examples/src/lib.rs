//! Example code for anyloop.
//!
//! - [`relay`]: a small library written against the anyloop vtable only (a line relay with an
//!   idle timeout). The `relay` program (`src/bin/relay.rs`) runs it on the loop chosen with
//!   `--loop`, `calloop_relay` inside a compositor-shaped calloop program, `gtk_relay` (cargo
//!   feature `gtk`) in a GTK 4 window.
//! - [`supervisor`]: a child-process supervisor written against anyloop only (fd watches,
//!   timers and the typed event registry); the `supervise` program runs a command under it on
//!   the loop of your choice.
//! - [`cstyle`]: a library written the way C libraries are (libcurl's multi-socket API,
//!   libdbus's watch functions): its state is not `Send`, and it asks its host, through
//!   callbacks, to watch fds and arm one timeout. Bound to anyloop with thread-bound
//!   callbacks, no `unsafe`; the `cstyle` program runs it on the loop chosen with `--loop`.
//! - [`linechat`]: an `async fn` library (a line-protocol client over a Unix socket with a
//!   time limit per request, and its server) written with `anyloop-async` only; the
//!   `async_client` program runs it on the loop chosen with `--loop`.
//! - [`download`]: what the `fetch` downloader (libcurl's transfers on the loop chosen with
//!   `--loop`, through `anyloop-curl`) and `gtk_fetch` (the same in a GTK 4 window) share.
//! - [`cli`]: the `--loop` option the programs share.
//!
//! Every program with a `--loop` option takes anyloop's one backend chooser,
//! [`anyloop_backends::LoopChoice`], and drives the loop through [`anyloop::Runner`] only.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod cli;
pub mod cstyle;
pub mod download;
#[cfg(feature = "gtk")]
pub mod gtk_self_test;
pub mod linechat;
pub mod own_loop;
pub mod relay;
pub mod supervisor;

/// The README's code blocks, compiled and run as doc tests so the README cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
