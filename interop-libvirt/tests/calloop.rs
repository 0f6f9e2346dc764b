//! libvirt's event machinery on the `anyloop-calloop` backend (one process: libvirt takes
//! one event implementation per process).

mod common;

libvirt_scenarios!(common::spawn_calloop);
