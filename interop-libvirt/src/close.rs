//! The connection's own events: libvirt's close callback (`virConnectRegisterCloseCallback`)
//! as a typed [`ConnectionClosed`] event in an [`anyloop::Registry`].
//!
//! libvirt keeps one close callback per connection, holds a reference on the connection while
//! it is registered, and calls it on whichever thread noticed the close (the loop thread when
//! its socket watch saw the hang-up or its keep-alive timer gave up, or a thread inside a
//! call). As for lifecycle events ([`crate::upstream`]), each connection registers one C
//! callback while at least one Rust callback listens; the C callback only queues the event,
//! and the registry delivers it on the loop thread from a clean stack.
//!
//! libvirt forgets the registration by itself once it has called it (it runs the free
//! callback and releases its reference right after), and drivers without a persistent
//! connection (`test:///default`) accept the registration and keep nothing. So the state
//! libvirt is given records whether libvirt released it; whatever libvirt did not release
//! after a successful unregister is released here.

use std::ffi::{c_int, c_void};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyloop::registry::WeakRegistry;
use anyloop::{Loop, Registry};

use crate::error::{Error, Result};
use crate::ffi;
use crate::upstream::ConnRef;

/// Why libvirt closed a connection (`virConnectCloseReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// An I/O error on the connection's socket.
    Error,
    /// The other end closed it: the daemon exited or was killed.
    Eof,
    /// The other end stopped answering keep-alive messages (see
    /// [`Connection::set_keep_alive`](crate::Connection::set_keep_alive)).
    KeepAlive,
    /// Closed on the client's request.
    Client,
    /// A value this crate does not know (a newer libvirt).
    Other(i32),
}

impl CloseReason {
    /// From libvirt's `virConnectCloseReason` value.
    pub fn from_raw(raw: i32) -> Self {
        match raw {
            ffi::VIR_CONNECT_CLOSE_REASON_ERROR => Self::Error,
            ffi::VIR_CONNECT_CLOSE_REASON_EOF => Self::Eof,
            ffi::VIR_CONNECT_CLOSE_REASON_KEEPALIVE => Self::KeepAlive,
            ffi::VIR_CONNECT_CLOSE_REASON_CLIENT => Self::Client,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error => f.write_str("I/O error"),
            Self::Eof => f.write_str("end of file"),
            Self::KeepAlive => f.write_str("keep-alive timeout"),
            Self::Client => f.write_str("client request"),
            Self::Other(raw) => write!(f, "unknown reason {raw}"),
        }
    }
}

/// libvirt closed the connection: its daemon went away, stopped answering keep-alive
/// messages, or the socket failed. Every later call on the connection fails with
/// [`Error::Libvirt`]; open a new [`Connection`](crate::Connection) to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionClosed {
    /// Why.
    pub reason: CloseReason,
}

impl fmt::Display for ConnectionClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection closed: {}", self.reason)
    }
}

anyloop::event_set! {
    /// The events of a [`Connection`](crate::Connection) itself (not of its domains); about no
    /// object.
    #[derive(Debug, Clone)]
    pub enum ConnectionEvent {
        kind: ConnectionEventKind,
        /// libvirt closed the connection (its close callback).
        Closed(ConnectionClosed),
    }
}

static REGISTERED: AtomicU64 = AtomicU64::new(0);
static RELEASED: AtomicU64 = AtomicU64::new(0);

/// `(registered, released)`: successful close-callback registrations, and the states given
/// to them that were released since (by libvirt's free callback, or here).
pub(crate) fn close_counts() -> (u64, u64) {
    (
        REGISTERED.load(Ordering::Relaxed),
        RELEASED.load(Ordering::Relaxed),
    )
}

/// What libvirt gets as the close callback's `opaque`: an `Arc` turned into a raw pointer
/// (libvirt's strong reference), released exactly once by whoever flips `released` first:
/// libvirt's free callback or [`Slot::release`] after an unregister libvirt freed nothing for.
struct Slot {
    registry: WeakRegistry<ConnectionEvent>,
    released: AtomicBool,
}

impl Slot {
    /// Drops libvirt's reference, once.
    ///
    /// # Safety
    /// `ptr` must come from `Arc::into_raw` in [`register`] and the allocation must still be
    /// alive (the caller holds another reference, or `released` is still false so libvirt's
    /// reference is alive).
    unsafe fn release(ptr: *const Slot) {
        // SAFETY: alive per the caller's guarantee.
        let slot = unsafe { &*ptr };
        if !slot.released.swap(true, Ordering::AcqRel) {
            // SAFETY: the one strong reference handed to libvirt, given back once (the flag).
            drop(unsafe { Arc::from_raw(ptr) });
            RELEASED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The libvirt side of one connection's [`ConnectionEvent`] registry: the hook's reference
/// on the connection and the slot libvirt holds while subscribed.
pub(crate) struct CloseUpstream {
    state: Arc<Mutex<CloseState>>,
}

struct CloseState {
    /// `None` once detached: later transitions do nothing.
    conn: Option<ConnRef>,
    /// Our reference on the slot registered with libvirt, while subscribed.
    slot: Option<Arc<Slot>>,
}

impl fmt::Debug for CloseUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("CloseUpstream")
            .field("attached", &state.conn.is_some())
            .field("subscribed", &state.slot.is_some())
            .finish()
    }
}

impl CloseUpstream {
    /// Unregisters the close callback if the registry's close left it registered, and
    /// releases the hook's reference on the connection.
    pub(crate) fn detach(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let CloseState { conn, slot } = &mut *state;
        if let (Some(conn), Some(slot)) = (conn.as_ref(), slot.take()) {
            unregister(conn, slot);
        }
        *conn = None;
    }
}

/// Builds the connection-event registry of one connection; its hook registers the C close
/// callback when the first callback arrives and unregisters it when the last one leaves.
pub(crate) fn registry_for(
    conn: ffi::virConnectPtr,
    lp: Loop,
) -> Result<(Registry<ConnectionEvent>, CloseUpstream)> {
    let state = Arc::new(Mutex::new(CloseState {
        conn: Some(ConnRef::new(conn)?),
        slot: None,
    }));
    let this: Arc<OnceLock<WeakRegistry<ConnectionEvent>>> = Arc::new(OnceLock::new());
    let (hook_this, hook_state) = (Arc::clone(&this), Arc::clone(&state));
    let registry = Registry::<ConnectionEvent>::builder()
        .event_loop(lp)
        .on_transition(move |kind, listened| {
            let ConnectionEventKind::Closed = kind;
            let mut state = hook_state.lock().unwrap_or_else(PoisonError::into_inner);
            let CloseState { conn, slot } = &mut *state;
            let Some(conn) = conn else {
                return; // detached: the connection is closing or closed
            };
            match (listened, slot.take(), hook_this.get()) {
                (true, None, Some(weak)) => match register(conn, weak.clone()) {
                    Ok(registered) => *slot = Some(registered),
                    // The hook cannot fail the registration: logged, and no close event.
                    Err(error) => {
                        tracing::error!(%error, "libvirt close callback registration failed")
                    }
                },
                (false, Some(registered), _) => unregister(conn, registered),
                (_, unchanged, _) => *slot = unchanged,
            }
        })
        .build()
        .map_err(Error::Loop)?;
    // Cannot be set already: `this` was created above and nothing else fills it.
    let _ = this.set(registry.downgrade());
    Ok((registry, CloseUpstream { state }))
}

/// Registers [`closed`] with a new slot; libvirt holds one reference on the slot until its
/// free callback, and the returned `Arc` is ours.
fn register(conn: &ConnRef, registry: WeakRegistry<ConnectionEvent>) -> Result<Arc<Slot>> {
    let slot = Arc::new(Slot {
        registry,
        released: AtomicBool::new(false),
    });
    let opaque = Arc::into_raw(Arc::clone(&slot));
    // SAFETY: `conn` holds a reference; `closed` and `release_slot` match libvirt's
    // `virConnectCloseFunc` and `virFreeCallback`; `opaque` stays valid until released.
    let outcome = unsafe {
        ffi::virConnectRegisterCloseCallback(
            conn.as_ptr(),
            Some(closed),
            opaque.cast_mut().cast(),
            Some(release_slot),
        )
    };
    if outcome < 0 {
        let error = Error::last("virConnectRegisterCloseCallback");
        // SAFETY: libvirt keeps nothing of a failed registration; `slot` keeps the
        // allocation alive.
        unsafe { Slot::release(opaque) };
        return Err(error);
    }
    REGISTERED.fetch_add(1, Ordering::Relaxed);
    Ok(slot)
}

/// Unregisters the close callback. When libvirt already forgot it (it called it, or the
/// connection is dead and the unregister cannot reach the daemon), the slot was released by
/// libvirt's free callback; when the driver keeps no close callback at all, it is released
/// here.
fn unregister(conn: &ConnRef, slot: Arc<Slot>) {
    // SAFETY: `conn` holds a reference; `closed` is the function registered.
    let outcome = unsafe { ffi::virConnectUnregisterCloseCallback(conn.as_ptr(), Some(closed)) };
    if outcome < 0 {
        let error = Error::last("virConnectUnregisterCloseCallback");
        if slot.released.load(Ordering::Acquire) {
            // libvirt called it and let it go already; the daemon is gone.
            tracing::debug!(%error, "close callback already released by libvirt");
        } else {
            // libvirt still holds the slot (and its reference on the connection): leaked
            // rather than freed under libvirt's feet.
            tracing::error!(%error, "libvirt close callback unregistration failed");
        }
        return;
    }
    // SAFETY: `slot` keeps the allocation alive; after a successful unregister libvirt
    // either ran the free callback (`released` is set) or never kept the pointer.
    unsafe { Slot::release(Arc::as_ptr(&slot)) };
}

/// libvirt's close callback: queues a [`ConnectionClosed`]; the registry delivers it on the
/// loop thread.
unsafe extern "C" fn closed(_conn: ffi::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `opaque` is the slot registered with this callback; libvirt releases its
        // reference only after this call returns.
        let slot = unsafe { &*opaque.cast::<Slot>() };
        if let Some(registry) = slot.registry.upgrade() {
            registry.emit(ConnectionClosed {
                reason: CloseReason::from_raw(reason),
            });
        }
    }));
    if outcome.is_err() {
        tracing::error!("panic while queueing a libvirt close event; contained");
    }
}

/// libvirt's free callback for the close registration.
unsafe extern "C" fn release_slot(opaque: *mut c_void) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `opaque` came from `Arc::into_raw` in `register`; libvirt's reference is
        // alive until this call, whose `released` check makes it the only release.
        unsafe { Slot::release(opaque.cast::<Slot>().cast_const()) };
    }));
    if outcome.is_err() {
        tracing::error!("panic while freeing a libvirt close registration; contained");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_by_libvirt_value() {
        assert_eq!(CloseReason::from_raw(0), CloseReason::Error);
        assert_eq!(CloseReason::from_raw(1), CloseReason::Eof);
        assert_eq!(CloseReason::from_raw(2), CloseReason::KeepAlive);
        assert_eq!(CloseReason::from_raw(3), CloseReason::Client);
        assert_eq!(CloseReason::from_raw(9), CloseReason::Other(9));
        assert_eq!(
            ConnectionClosed {
                reason: CloseReason::KeepAlive
            }
            .to_string(),
            "connection closed: keep-alive timeout"
        );
    }
}
