//! libvirt's event machinery on a tokio runtime (`anyloop-tokio`), in a process of its own: libvirt takes one
//! event implementation per process.

mod common;

libvirt_scenarios!(anyloop_backends::LoopChoice::Tokio);
