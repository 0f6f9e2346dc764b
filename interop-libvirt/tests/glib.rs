//! libvirt's event machinery on a private GLib main context (`anyloop-glib`), in a process of its own: libvirt takes one
//! event implementation per process.

mod common;

libvirt_scenarios!(anyloop_backends::LoopChoice::Glib);
