//! The anyloop backends measured here. Each is made by the workspace's one backend chooser,
//! [`anyloop_backends::LoopChoice`], and driven through [`anyloop::Runner`] like any
//! application would: one iteration is one [`Runner::run_once`](anyloop::Runner::run_once)
//! (for GLib, one iteration of the private context; for calloop, one calloop dispatch of the
//! loop anyloop owns). A backend here is one marker type naming its choice.

use anyloop_backends::LoopChoice;

/// Names the [`LoopChoice`] an [`Anyloop`](crate::anyloop_adapter::Anyloop) contender makes.
pub trait Choice {
    /// The backend.
    const CHOICE: LoopChoice;
}

/// `anyloop-select` with its Linux level-triggered epoll poller (the default).
pub struct Select;

impl Choice for Select {
    const CHOICE: LoopChoice = LoopChoice::Select;
}

/// `anyloop-select` with mio's edge-triggered epoll plus the batched `poll(2)` re-check.
pub struct SelectMio;

impl Choice for SelectMio {
    const CHOICE: LoopChoice = LoopChoice::SelectMio;
}

/// `anyloop-glib` on a private GLib main context of the loop thread.
pub struct Glib;

impl Choice for Glib {
    const CHOICE: LoopChoice = LoopChoice::Glib;
}

/// `anyloop-calloop`: the engine as one source of a calloop loop that anyloop owns
/// (`anyloop_calloop::CalloopLoop`).
pub struct Calloop;

impl Choice for Calloop {
    const CHOICE: LoopChoice = LoopChoice::Calloop;
}

/// `anyloop-tokio`: the engine's epoll fd as one `AsyncFd` of a current-thread tokio runtime
/// that anyloop owns (`anyloop_tokio::TokioLoop`).
pub struct Tokio;

impl Choice for Tokio {
    const CHOICE: LoopChoice = LoopChoice::Tokio;
}
