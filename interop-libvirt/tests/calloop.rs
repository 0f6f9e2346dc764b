//! libvirt's event machinery on a calloop event loop (`anyloop-calloop`), in a process of its own: libvirt takes one
//! event implementation per process.

mod common;

libvirt_scenarios!(anyloop_backends::LoopChoice::Calloop);
