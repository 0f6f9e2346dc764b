//! The one libvirt callback per connection that feeds its [`DomainEvent`] registry.
//!
//! libvirt refuses a second registration of the same C function for the same event on the
//! same connection ("event callback already tracked"), whatever the opaque pointer, and every
//! registration holds a reference on the connection until it is deregistered. So each
//! connection registers one C callback, only while at least one Rust callback listens
//! (the registry's transition hook), and the registry fans events out to any number of typed
//! callbacks with object filters. Closing the registry (done by closing the connection)
//! deregisters the C callback, which releases the connection's reference.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyloop::registry::WeakRegistry;
use anyloop::{Loop, Registry};

use crate::domain::{name_of, uuid_of};
use crate::error::{Error, Result};
use crate::ffi;
use crate::lifecycle::{DomainEvent, DomainEventKind, DomainLifecycle, LifecycleEvent};

/// Counts of libvirt-level callback registrations in this process, for tests and diagnosis:
/// after every connection closed, `freed == registered` (libvirt ran each free callback
/// exactly once) and `close_released == close_registered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpstreamStats {
    /// Successful `virConnectDomainEventRegisterAny` calls.
    pub registered: u64,
    /// Lifecycle registrations ended: successful `virConnectDomainEventDeregisterAny`
    /// calls, and failed ones on a connection that is already dead (libvirt then drops the
    /// registration locally and only fails to tell the daemon).
    pub deregistered: u64,
    /// Free callbacks libvirt ran for them.
    pub freed: u64,
    /// Successful `virConnectRegisterCloseCallback` calls (see
    /// [`Connection::connection_events`](crate::Connection::connection_events)).
    pub close_registered: u64,
    /// Close-callback states released since: by libvirt's free callback (after an
    /// unregister, or right after libvirt called the callback), or by this crate after an
    /// unregister when the driver keeps no close callback (`test:///default`).
    pub close_released: u64,
}

static REGISTERED: AtomicU64 = AtomicU64::new(0);
static DEREGISTERED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

/// The current [`UpstreamStats`].
pub fn upstream_stats() -> UpstreamStats {
    let (close_registered, close_released) = crate::close::close_counts();
    UpstreamStats {
        registered: REGISTERED.load(Ordering::Relaxed),
        deregistered: DEREGISTERED.load(Ordering::Relaxed),
        freed: FREED.load(Ordering::Relaxed),
        close_registered,
        close_released,
    }
}

/// A registry hook's own reference on the connection, so the connection it uses is alive
/// whatever thread runs the hook; released by [`Upstream::detach`] (and
/// `CloseUpstream::detach`) when the connection closes.
pub(crate) struct ConnRef(ffi::virConnectPtr);

impl ConnRef {
    /// Takes a new reference on `conn`.
    pub(crate) fn new(conn: ffi::virConnectPtr) -> Result<ConnRef> {
        // SAFETY: `conn` is an open connection owned by the caller.
        if unsafe { ffi::virConnectRef(conn) } < 0 {
            return Err(Error::last("virConnectRef"));
        }
        Ok(ConnRef(conn))
    }

    /// The connection, alive while `self` is.
    pub(crate) fn as_ptr(&self) -> ffi::virConnectPtr {
        self.0
    }

    /// Whether libvirt still considers the connection open (`virConnectIsAlive`); false
    /// once its daemon went away.
    pub(crate) fn is_alive(&self) -> bool {
        // SAFETY: `self.0` holds a reference.
        unsafe { ffi::virConnectIsAlive(self.0) == 1 }
    }
}

impl Drop for ConnRef {
    fn drop(&mut self) {
        // SAFETY: releases the reference taken in `new`, once.
        unsafe { ffi::virConnectClose(self.0) };
    }
}

// SAFETY: libvirt connections may be used and released from any thread (its API locks
// internally).
unsafe impl Send for ConnRef {}

/// The libvirt side of one connection's registry: the hook's reference on the connection
/// and the id of the C callback while subscribed. Shared by the hook and the connection, which
/// [`detach`](Self::detach)es it when it closes.
pub(crate) struct Upstream {
    state: Arc<Mutex<UpstreamState>>,
}

struct UpstreamState {
    /// `None` once detached: later transitions (a registration racing with close on another
    /// thread) do nothing.
    conn: Option<ConnRef>,
    /// libvirt's callback id while subscribed.
    callback_id: Option<c_int>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Upstream")
            .field("attached", &state.conn.is_some())
            .field("callback_id", &state.callback_id)
            .finish()
    }
}

impl Upstream {
    /// Deregisters the C callback if the registry's close left it subscribed (its last
    /// transition can be reported late by another thread), and releases the hook's reference
    /// on the connection, so that closing the connection leaves nothing of ours behind.
    pub(crate) fn detach(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(conn), Some(id)) = (&state.conn, state.callback_id) {
            match unsubscribe(conn, id) {
                Ok(()) => state.callback_id = None,
                Err(error) => tracing::error!(%error, "libvirt lifecycle deregistration failed"),
            }
        }
        state.conn = None;
    }
}

/// Builds the registry of one connection. The hook registers the C callback when the first
/// lifecycle callback arrives and deregisters it when the last one leaves (or at close).
pub(crate) fn registry_for(
    conn: ffi::virConnectPtr,
    lp: Loop,
) -> Result<(Registry<DomainEvent>, Upstream)> {
    let state = Arc::new(Mutex::new(UpstreamState {
        conn: Some(ConnRef::new(conn)?),
        callback_id: None,
    }));
    // The hook needs a weak handle to the registry it belongs to, which exists only after
    // `build`; it is filled in right after.
    let this: Arc<OnceLock<WeakRegistry<DomainEvent>>> = Arc::new(OnceLock::new());
    let (hook_this, hook_state) = (Arc::clone(&this), Arc::clone(&state));
    let registry = Registry::<DomainEvent>::builder()
        .event_loop(lp)
        .on_transition(move |kind, listened| {
            let DomainEventKind::Lifecycle = kind;
            let mut state = hook_state.lock().unwrap_or_else(PoisonError::into_inner);
            let UpstreamState { conn, callback_id } = &mut *state;
            let Some(conn) = conn else {
                return; // detached: the connection is closing or closed
            };
            let outcome = match (listened, *callback_id, hook_this.get()) {
                (true, None, Some(weak)) => {
                    subscribe(conn, weak.clone()).map(|id| *callback_id = Some(id))
                }
                (false, Some(id), _) => unsubscribe(conn, id).map(|()| *callback_id = None),
                _ => Ok(()),
            };
            if let Err(error) = outcome {
                // The registry's hook cannot fail the registration; the error is logged and
                // the application sees no events.
                tracing::error!(%error, listened, "libvirt lifecycle (de)registration failed");
            }
        })
        .build()
        .map_err(Error::Loop)?;
    // Cannot be set already: `this` was created above and nothing else fills it.
    let _ = this.set(registry.downgrade());
    Ok((registry, Upstream { state }))
}

/// Registers the C callback; libvirt owns the boxed weak registry until its free callback.
fn subscribe(conn: &ConnRef, registry: WeakRegistry<DomainEvent>) -> Result<c_int> {
    let opaque = Box::into_raw(Box::new(registry));
    let trampoline: ffi::virConnectDomainEventCallback = deliver;
    // SAFETY: libvirt calls the lifecycle callback with `virConnectDomainEventCallback`'s
    // signature although registration takes the generic type: the `VIR_DOMAIN_EVENT_CALLBACK()`
    // cast every C caller makes. Both are `extern "C"` function pointers.
    let generic = unsafe {
        std::mem::transmute::<
            ffi::virConnectDomainEventCallback,
            unsafe extern "C" fn(ffi::virConnectPtr, ffi::virDomainPtr, *mut c_void),
        >(trampoline)
    };
    // SAFETY: `conn` holds a reference; a NULL domain means every domain;
    // `opaque` is a valid heap pointer handed back to `deliver` and `free_opaque`.
    let id = unsafe {
        ffi::virConnectDomainEventRegisterAny(
            conn.0,
            std::ptr::null_mut(),
            ffi::VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            Some(generic),
            opaque.cast(),
            Some(free_opaque),
        )
    };
    if id < 0 {
        let error = Error::last("virConnectDomainEventRegisterAny");
        // SAFETY: libvirt does not keep the opaque of a failed registration nor free it,
        // so it is still ours.
        drop(unsafe { Box::from_raw(opaque) });
        return Err(error);
    }
    REGISTERED.fetch_add(1, Ordering::Relaxed);
    Ok(id)
}

/// Deregisters the C callback. On a dead connection (the daemon went away) libvirt drops the
/// registration locally, runs its free callback, and only then fails to tell the daemon: that
/// failure ends the registration all the same.
fn unsubscribe(conn: &ConnRef, id: c_int) -> Result<()> {
    // SAFETY: `conn` holds a reference; `id` came from a successful register.
    if unsafe { ffi::virConnectDomainEventDeregisterAny(conn.0, id) } < 0 {
        let error = Error::last("virConnectDomainEventDeregisterAny");
        if conn.is_alive() {
            return Err(error);
        }
        tracing::debug!(%error, "lifecycle callback dropped on a dead connection");
    }
    DEREGISTERED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// libvirt's lifecycle callback (on the loop thread, inside libvirt's event dispatch): turns
/// the event into a [`DomainLifecycle`] and queues it; the registry delivers it to the
/// application's callbacks from a clean stack, so they may call libvirt freely.
unsafe extern "C" fn deliver(
    _conn: ffi::virConnectPtr,
    dom: ffi::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `opaque` is the boxed weak registry registered with this callback; libvirt
        // keeps it until `free_opaque`, which it never runs during a delivery.
        let registry = unsafe { &*opaque.cast::<WeakRegistry<DomainEvent>>() };
        let Some(registry) = registry.upgrade() else {
            return;
        };
        // SAFETY: libvirt lends a live domain for the duration of the callback.
        let (name, uuid) = unsafe { (name_of(dom), uuid_of(dom)) };
        registry.emit(DomainLifecycle {
            name: name.unwrap_or_default(),
            uuid: uuid.unwrap_or_default(),
            event: LifecycleEvent::from_raw(event),
            detail,
        });
    }));
    if outcome.is_err() {
        tracing::error!("panic while queueing a libvirt lifecycle event; contained");
    }
    // libvirt ignores the return value of event callbacks.
    0
}

/// libvirt's free callback for the lifecycle registration.
unsafe extern "C" fn free_opaque(opaque: *mut c_void) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `opaque` came from `Box::into_raw` in `subscribe`; libvirt calls its free
        // callback once.
        drop(unsafe { Box::from_raw(opaque.cast::<WeakRegistry<DomainEvent>>()) });
        FREED.fetch_add(1, Ordering::Relaxed);
    }));
    if outcome.is_err() {
        tracing::error!("panic while freeing a libvirt lifecycle registration; contained");
    }
}
