//! libvirt's event machinery on the `anyloop-select` backend (the built-in loop) (one process: libvirt takes
//! one event implementation per process).

mod common;

libvirt_scenarios!(common::spawn_select);
