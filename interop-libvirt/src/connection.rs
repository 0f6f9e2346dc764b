//! `Connection`: one libvirt connection (`virConnectPtr`), closed on drop.

use std::ffi::{c_int, c_uint, CString};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::Duration;

use anyloop::Registry;

use crate::close::{self, ConnectionEvent};
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
    /// The same for the connection's own events (its close callback).
    connection_events: OnceLock<(Registry<ConnectionEvent>, close::CloseUpstream)>,
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
                connection_events: OnceLock::new(),
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

    /// This connection's own events, as a typed [`anyloop::Registry`] on the loop given to
    /// [`register`](crate::register): today one kind, [`ConnectionClosed`](crate::ConnectionClosed),
    /// libvirt's close callback (`virConnectRegisterCloseCallback`).
    ///
    /// libvirt reports a close it did not cause itself: the daemon of a remote connection
    /// exited or was killed ([`CloseReason::Eof`](crate::CloseReason::Eof)), stopped answering
    /// keep-alive messages ([`CloseReason::KeepAlive`](crate::CloseReason::KeepAlive), see
    /// [`set_keep_alive`](Self::set_keep_alive)), or the socket failed. It reports it once;
    /// every later call on the connection fails with [`Error::Libvirt`] (libvirt's "client
    /// socket is closed"), and the application opens a new connection to go on. Connections
    /// without a socket (`test:///default`) never close this way. A callback registered after
    /// the close is not told about it; [`is_alive`](Self::is_alive) says so.
    ///
    /// As with [`domain_events`](Self::domain_events): callbacks run on the loop's thread from
    /// a clean stack, whichever thread libvirt noticed the close on
    /// ([E24](anyloop::contract#e24)), so [`on_local`](anyloop::Registry::on_local) callbacks
    /// may capture an `Rc`; libvirt's callback is registered only while at least one Rust
    /// callback listens (libvirt keeps one per connection and holds a reference on the
    /// connection meanwhile); closing the connection closes the registry first.
    ///
    /// # Errors
    /// [`Error::NoEventLoop`] before [`register`](crate::register);
    /// [`Error::Loop`] if the registry cannot be created on that loop.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use anyloop_libvirt::{CloseReason, Connection, ConnectionClosed};
    /// let conn = Connection::open("qemu:///system")?;
    /// conn.set_keep_alive(std::time::Duration::from_secs(5), 3)?;
    /// conn.connection_events()?.on::<ConnectionClosed>(|closed| {
    ///     if closed.reason == CloseReason::KeepAlive {
    ///         eprintln!("libvirtd stopped answering");
    ///     }
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn connection_events(&self) -> Result<&Registry<ConnectionEvent>> {
        if let Some((events, _)) = self.connection_events.get() {
            return Ok(events);
        }
        let lp = crate::registered_loop().ok_or(Error::NoEventLoop)?;
        let created = close::registry_for(self.raw.as_ptr(), lp)?;
        // As in `domain_events`: the loser of a race closes its unused registry.
        if let Err((unused, upstream)) = self.connection_events.set(created) {
            let _ = unused.close();
            upstream.detach();
        }
        let (events, _) = self.connection_events.get().expect("set just above");
        Ok(events)
    }

    /// Starts (or, with `Duration::ZERO`, stops) libvirt's keep-alive messages on a remote
    /// connection (`virConnectSetKeepAlive`): after `interval` without any message from the
    /// daemon, libvirt sends a keep-alive request, and after `count` such requests in a row
    /// without an answer it closes the connection, reported as
    /// [`CloseReason::KeepAlive`](crate::CloseReason::KeepAlive) through
    /// [`connection_events`](Self::connection_events). With `count` 0 it closes after
    /// `interval` of silence without asking.
    ///
    /// The keep-alive timer and the socket it listens on are registrations on the loop given
    /// to [`register`](crate::register), which must keep running: libvirt re-arms the timer on
    /// every message received, relying on an update restarting the countdown
    /// ([R29](anyloop::contract#r29)).
    ///
    /// # Errors
    /// [`Error::KeepAliveInterval`] for an interval that is not a whole number of seconds (libvirt
    /// counts seconds); [`Error::KeepAliveUnsupported`] when the daemon does not support
    /// keep-alive; [`Error::Libvirt`] when the driver has no keep-alive at all (connections
    /// without a socket, such as `test:///default`) or libvirt fails.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), anyloop_libvirt::Error> {
    /// let conn = anyloop_libvirt::Connection::open("qemu:///system")?;
    /// // virsh's default: a request after 5 s of silence, closed after 6 unanswered ones.
    /// conn.set_keep_alive(std::time::Duration::from_secs(5), 6)?;
    /// # Ok(()) }
    /// ```
    pub fn set_keep_alive(&self, interval: Duration, count: u32) -> Result<()> {
        let seconds = if interval.is_zero() {
            -1 // libvirt: "when interval is <= 0, no keep-alive messages will be sent"
        } else if interval.subsec_nanos() == 0 {
            c_int::try_from(interval.as_secs()).map_err(|_| Error::KeepAliveInterval(interval))?
        } else {
            return Err(Error::KeepAliveInterval(interval));
        };
        // SAFETY: the connection is open (closed only by drop/close, which take `self`).
        let outcome =
            unsafe { ffi::virConnectSetKeepAlive(self.raw.as_ptr(), seconds, c_uint::from(count)) };
        match outcome {
            0 => Ok(()),
            1 => Err(Error::KeepAliveUnsupported),
            _ => Err(Error::last("virConnectSetKeepAlive")),
        }
    }

    /// Whether the connection is still usable (`virConnectIsAlive`): false once libvirt
    /// closed it (see [`connection_events`](Self::connection_events)). Always true for
    /// connections without a socket.
    ///
    /// # Errors
    /// [`Error::Libvirt`] when libvirt cannot tell.
    pub fn is_alive(&self) -> Result<bool> {
        // SAFETY: as in `set_keep_alive`.
        match unsafe { ffi::virConnectIsAlive(self.raw.as_ptr()) } {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(Error::last("virConnectIsAlive")),
        }
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
    /// Closes [`domain_events`](Self::domain_events) and
    /// [`connection_events`](Self::connection_events) first, which deregisters libvirt's
    /// callbacks (each holds a reference on the connection until then); the loop must keep
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
        // The close callback too holds a reference on the connection while registered.
        if let Some((events, upstream)) = self.connection_events.take() {
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
