//! `Connection`: one libvirt connection (`virConnectPtr`), closed on drop.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::OnceLock;

use anyloop::Registry;

use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::ffi;
use crate::lifecycle::DomainEvent;
use crate::upstream;

/// A connection to a libvirt driver (`virConnectOpen`), closed when dropped.
///
/// libvirt connections are thread-safe: one `Connection` may be used from several threads
/// at once. Its domain events ([`domain_events`](Self::domain_events)) are delivered by the
/// event loop installed with [`register`](crate::register), which must therefore be running.
///
/// ```no_run
/// # fn main() -> Result<(), anyloop_libvirt::Error> {
/// let conn = anyloop_libvirt::Connection::open("test:///default")?;
/// let domain = conn.lookup_domain("test")?;
/// domain.suspend()?;
/// domain.resume()?;
/// conn.close()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Connection {
    raw: NonNull<ffi::virConnect>,
    /// Created on first use; closed and detached before the connection (see `shut_down`).
    events: OnceLock<(Registry<DomainEvent>, upstream::Upstream)>,
}

// SAFETY: libvirt's public API is thread-safe; a `virConnectPtr` is reference counted and
// locked internally and may be used from several threads at once (libvirt's threading
// documentation). This type hands out no interior references.
unsafe impl Send for Connection {}
// SAFETY: as above: every method goes through libvirt's own locking.
unsafe impl Sync for Connection {}

impl Connection {
    /// Opens a connection to `uri`, e.g. `"test:///default"` (libvirt's built-in test driver,
    /// no daemon needed) or `"qemu:///system"`.
    ///
    /// Install the event loop with [`register`](crate::register) *before* opening: remote
    /// connections register their socket watch and keep-alive timer at open time.
    ///
    /// # Errors
    /// [`Error::NulByte`] for a URI with a NUL byte; [`Error::Libvirt`] when libvirt refuses
    /// (unknown driver, no daemon, no permission), with libvirt's message.
    pub fn open(uri: &str) -> Result<Connection> {
        let uri = CString::new(uri).map_err(|_| Error::NulByte { what: "URI" })?;
        // SAFETY: `uri` is a valid NUL-terminated string for the duration of the call.
        let raw = unsafe { ffi::virConnectOpen(uri.as_ptr()) };
        NonNull::new(raw)
            .map(|raw| Connection {
                raw,
                events: OnceLock::new(),
            })
            .ok_or_else(|| Error::last("virConnectOpen"))
    }

    /// This connection's domain events, as a typed [`anyloop::Registry`] on the loop given to
    /// [`register`](crate::register).
    ///
    /// Register with `on::<DomainLifecycle>(...)`, or `listen::<DomainLifecycle>()
    /// .object(uuid)` for one domain; deregister with the returned id. Callbacks run on the
    /// loop's thread, in libvirt's order, from a clean stack (they may call libvirt, and
    /// deregister themselves). libvirt is subscribed only while at least one callback
    /// listens. Closing (or dropping) the connection closes the registry: every callback
    /// is dropped exactly once, on the loop thread.
    ///
    /// # Errors
    /// [`Error::NoEventLoop`] before [`register`](crate::register);
    /// [`Error::Loop`] if the registry cannot be created on that loop.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use anyloop_libvirt::{Connection, DomainLifecycle};
    /// let conn = Connection::open("test:///default")?;
    /// let events = conn.domain_events()?;
    /// let all = events.on::<DomainLifecycle>(|event| println!("{event}"))?;
    /// let uuid = conn.lookup_domain("test")?.uuid()?;
    /// events.listen::<DomainLifecycle>().object(uuid).call(|event| {
    ///     println!("the test domain: {:?}", event.event);
    /// })?;
    /// events.deregister(all)?;
    /// # Ok(()) }
    /// ```
    pub fn domain_events(&self) -> Result<&Registry<DomainEvent>> {
        if let Some((events, _)) = self.events.get() {
            return Ok(events);
        }
        let lp = crate::registered_loop().ok_or(Error::NoEventLoop)?;
        let created = upstream::registry_for(self.raw.as_ptr(), lp)?;
        // Two threads may race here; the loser's registry has no callbacks and is closed.
        if let Err((unused, upstream)) = self.events.set(created) {
            let _ = unused.close();
            upstream.detach();
        }
        let (events, _) = self.events.get().expect("set just above");
        Ok(events)
    }

    /// Defines (but does not start) a persistent domain from its XML description.
    ///
    /// # Errors
    /// [`Error::NulByte`], or [`Error::Libvirt`] for invalid XML or a name already in use.
    pub fn define_domain(&self, xml: &str) -> Result<Domain> {
        let xml = CString::new(xml).map_err(|_| Error::NulByte { what: "domain XML" })?;
        // SAFETY: the connection is open (it is closed only by drop/close, which take
        // `self`); `xml` outlives the call.
        let raw = unsafe { ffi::virDomainDefineXML(self.raw.as_ptr(), xml.as_ptr()) };
        // SAFETY: a non-NULL result is a new domain reference that we now own.
        unsafe { Domain::from_owned(raw) }.ok_or_else(|| Error::last("virDomainDefineXML"))
    }

    /// Looks a domain up by name.
    ///
    /// # Errors
    /// [`Error::NulByte`], or [`Error::Libvirt`] when there is no such domain.
    pub fn lookup_domain(&self, name: &str) -> Result<Domain> {
        let name = CString::new(name).map_err(|_| Error::NulByte {
            what: "domain name",
        })?;
        // SAFETY: as in `define_domain`.
        let raw = unsafe { ffi::virDomainLookupByName(self.raw.as_ptr(), name.as_ptr()) };
        // SAFETY: a non-NULL result is a new domain reference that we now own.
        unsafe { Domain::from_owned(raw) }.ok_or_else(|| Error::last("virDomainLookupByName"))
    }

    /// Closes the connection now and reports what drop cannot: failure, and how many
    /// references on the connection remain elsewhere. 0: libvirt released it. More: another
    /// thread is inside a call on it, other code took a reference, or libvirt was
    /// dispatching an event on the loop thread when its callback was deregistered; libvirt
    /// then drops that callback (and its reference) when the dispatch ends.
    ///
    /// Closes [`domain_events`](Self::domain_events) first, which deregisters libvirt's event
    /// callback (it holds a reference on the connection until then); the loop must keep
    /// running until libvirt's free callbacks have run (libvirt removes its event timer, and
    /// the loop frees it on a later iteration).
    ///
    /// # Errors
    /// [`Error::Libvirt`] when `virConnectClose` fails.
    pub fn close(mut self) -> Result<u32> {
        let closed = self.shut_down();
        std::mem::forget(self);
        closed
    }

    /// Closes the event registry first: that deregisters libvirt's callback, which holds a
    /// reference on the connection (without it, `virConnectClose` would leave the connection
    /// and its event timer alive). Then releases our reference.
    fn shut_down(&mut self) -> Result<u32> {
        if let Some((events, upstream)) = self.events.take() {
            // Never fails for a plain close (the `Result` is for `close_with`).
            let _ = events.close();
            upstream.detach();
        }
        // SAFETY: our reference, released exactly once: `close` forgets `self` afterwards,
        // and `drop` is the only other caller.
        let remaining = unsafe { ffi::virConnectClose(self.raw.as_ptr()) };
        u32::try_from(remaining).map_err(|_| Error::last("virConnectClose"))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            // A failure cannot be reported from drop; `close` returns it.
            tracing::debug!(%error, "closing a dropped libvirt connection failed");
        }
    }
}

/// Stops libvirt from printing every error to stderr (its default handler), for programs
/// that report the typed [`Error`]s themselves. Process-wide; libvirt still records each
/// error, so [`Error::Libvirt`] messages are unaffected.
pub fn silence_libvirt_stderr() {
    // SAFETY: installs a handler that ignores its arguments; NULL user data is allowed.
    unsafe { ffi::virSetErrorFunc(std::ptr::null_mut(), Some(ignore_error)) };
}

unsafe extern "C" fn ignore_error(
    _user_data: *mut std::ffi::c_void,
    _error: *mut std::ffi::c_void,
) {
}
