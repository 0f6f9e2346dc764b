//! libvirt's event machinery on the `anyloop-glib` backend (one process: libvirt takes
//! one event implementation per process).

mod common;

libvirt_scenarios!(common::spawn_glib);
