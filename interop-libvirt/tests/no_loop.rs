//! A process that never installs an event loop: events are a typed error, not silence.

use anyloop_libvirt::{Connection, Error};

#[test]
fn domain_events_without_a_registered_loop_is_a_typed_error() {
    assert!(anyloop_libvirt::registered_loop().is_none());
    let conn = Connection::open("test:///default").expect("open");
    assert!(matches!(conn.domain_events(), Err(Error::NoEventLoop)));
    // Domain calls do not need the loop.
    let domain = conn.lookup_domain("test").expect("lookup");
    assert_eq!(domain.name().expect("name"), "test");
    drop(domain);
    assert_eq!(
        conn.close().expect("close"),
        0,
        "no events, no other reference"
    );
}
