//! A process where other code installed libvirt's event implementation first: libvirt
//! silently keeps that one, so `register` must say so instead of pretending to work.

use anyloop::Runner;
use anyloop_libvirt::Error;

#[link(name = "virt")]
extern "C" {
    fn virEventRegisterDefaultImpl() -> std::ffi::c_int;
}

#[test]
fn a_foreign_implementation_is_reported() {
    // SAFETY: no arguments; installs libvirt's own (GLib-based) default implementation.
    assert_eq!(unsafe { virEventRegisterDefaultImpl() }, 0);
    let select = anyloop_select::SelectLoop::new().expect("loop");
    // libvirt logs "Ignoring attempt to replace registered event loop" to stderr: expected.
    let outcome = anyloop_libvirt::register(&select.handle());
    assert!(
        matches!(outcome, Err(Error::ForeignImplementation)),
        "{outcome:?}"
    );
    assert!(anyloop_libvirt::registered_loop().is_none());
}
