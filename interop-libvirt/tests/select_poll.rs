//! libvirt's event machinery on the built-in loop (`anyloop-select`) on `poll(2)`, in a process
//! of its own: libvirt takes one event implementation per process.

mod common;

libvirt_scenarios!(anyloop_backends::LoopChoice::SelectPoll);
