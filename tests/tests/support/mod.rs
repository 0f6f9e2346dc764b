//! The kit's factory for anyloop's own backends, written once: the battery binaries
//! (`select.rs`, `select_poll.rs`, `glib.rs`, `calloop.rs`, `tokio.rs`) expand the battery on
//! one backend each, and the process-wide fault binaries (`emfile`, `id_exhaustion`, `soak`)
//! run on all of them one after the other, because those faults change the whole process.
//!
//! Every backend's loop type implements `anyloop::Runner`, and `anyloop_backends::LoopChoice`
//! makes any of them, so one factory covers them all: this is all a backend author writes,
//! a [`LoopFactory`] (name + create), then `anyloop_conformance::conformance_tests!(TheFactory)`.
//! (The GLib default-context factory lives in `glib_default.rs`: it is the GLib backend on
//! another context, and needs turn-taking of its own.)

// Each test binary uses some of this.
#![allow(dead_code)]

use std::sync::Arc;

use anyloop::Runner;
use anyloop_backends::{ChooseError, LoopChoice};
use anyloop_conformance::reference::ReferenceBackend;
use anyloop_conformance::LoopFactory;

/// Every backend of this build, each as the kit's factory, and the kit's reference backend.
pub fn backends() -> Vec<Arc<dyn LoopFactory>> {
    let mut all: Vec<Arc<dyn LoopFactory>> = vec![
        Arc::new(Chosen(LoopChoice::Select)),
        Arc::new(Chosen(LoopChoice::SelectMio)),
        Arc::new(Chosen(LoopChoice::SelectPoll)),
        Arc::new(ReferenceBackend),
    ];
    all.extend(
        LoopChoice::built()
            .filter(|choice| {
                !matches!(
                    choice,
                    LoopChoice::Select | LoopChoice::SelectMio | LoopChoice::SelectPoll
                )
            })
            .map(|choice| Arc::new(Chosen(choice)) as Arc<dyn LoopFactory>),
    );
    all
}

/// One of anyloop's backends, made by the workspace's one backend chooser (on the kit's loop
/// thread: calloop's loop cannot move between threads, and GLib's private context is
/// iterated by the thread that made it).
#[derive(Debug, Clone, Copy)]
pub struct Chosen(pub LoopChoice);

impl LoopFactory for Chosen {
    fn name(&self) -> String {
        self.0.name().to_owned()
    }

    fn create(&self) -> anyloop::Result<Box<dyn Runner>> {
        self.0.create().map_err(|err| match err {
            ChooseError::Create { source, .. } => source,
            // Cannot happen: every choice used here is built into this binary (the
            // dev-dependency enables every feature) and none is parsed from a name. Reported
            // as an error all the same, so that the scenario fails saying why.
            other => anyloop::Error::Os {
                op: "choosing the backend",
                fd: None,
                source: std::io::Error::other(other.to_string()),
            },
        })
    }
}
