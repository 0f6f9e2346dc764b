//! Registration ids: opaque, positive, unique in the process, never reused (contract [R1](crate::contract#r1)).

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter for the whole process, shared by every backend and both id kinds, so that a
/// stale id can never address a newer registration on any loop (contract [R1](crate::contract#r1), bugs [B40](crate::contract#b40)/B44).
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// Low bits of an id that a backend may use to find its registration without a hash lookup
/// (the engine stores `slot + 1` there); the high bits are a process-wide serial number, so
/// an id is unique in the process whatever its tag.
const TAG_BITS: u32 = 24;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Serial numbers that fit above the tag: 2^40, a trillion ids. Past that, allocation fails
/// rather than reuse an id ([R1](crate::contract#r1)); at a million adds a second that takes 12 days of nothing else.
const SERIAL_LIMIT: u64 = 1 << (64 - TAG_BITS);

fn next_raw_id(tag: u64) -> Option<NonZeroU64> {
    let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
    if serial >= SERIAL_LIMIT {
        // Keep the counter pinned so it can never wrap back to small (reused) serials.
        NEXT_SERIAL.store(SERIAL_LIMIT, Ordering::Relaxed);
        return None;
    }
    NonZeroU64::new((serial << TAG_BITS) | (tag & TAG_MASK))
}

/// Test hook: moves the process-wide id counter forward so that only `remaining` more ids can
/// be allocated, as if nearly 2^40 had been handed out already. It pins the
/// [`Error::Exhausted`](crate::Error::Exhausted) paths without allocating a trillion ids.
/// Ids stay unique (the counter only ever moves forward), but the effect is process-wide and
/// permanent: call it only in a test process of its own (the conformance kit's
/// `id_exhaustion` test binary).
#[doc(hidden)]
pub fn __exhaust_ids_leaving(remaining: u64) {
    NEXT_SERIAL.fetch_max(SERIAL_LIMIT.saturating_sub(remaining), Ordering::Relaxed);
}

macro_rules! registration_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(NonZeroU64);

        impl $name {
            /// Allocates a fresh id, never returned before in this process.
            ///
            /// For backend implementations: call it once per successful add.
            ///
            /// # Panics
            /// Only after 2^40 ids were allocated in the process (see [`Self::try_allocate`]).
            pub fn allocate() -> Self {
                Self::try_allocate().expect("anyloop ids exhausted (2^40 allocated)")
            }

            /// A fresh id, unique in the process, or `None` once 2^40 ids were allocated
            /// (ids are never reused, [R1](crate::contract#r1)).
            pub fn try_allocate() -> Option<Self> {
                next_raw_id(0).map(Self)
            }

            /// A fresh id carrying `tag` (below 2^24) in its low bits, for a backend that
            /// finds its registration from the id ([`tag`](Self::tag)). `None` if the tag does
            /// not fit or the ids are exhausted.
            pub fn try_allocate_tagged(tag: u32) -> Option<Self> {
                if u64::from(tag) > TAG_MASK {
                    return None;
                }
                next_raw_id(u64::from(tag)).map(Self)
            }

            /// The tag given to [`try_allocate_tagged`](Self::try_allocate_tagged) (0 for
            /// other ids, and for ids made by [`from_raw`](Self::from_raw) any value).
            pub const fn tag(self) -> u32 {
                (self.0.get() & TAG_MASK) as u32
            }

            /// The process-wide serial number: the id without its tag, below 2^40. Ids
            /// allocated later have larger serial numbers, so it orders registrations by
            /// creation (what a backend needs for [R33](crate::contract#r33)).
            pub const fn serial(self) -> u64 {
                self.0.get() >> TAG_BITS
            }

            /// The id as a positive number, for logs and C bindings.
            pub const fn get(self) -> u64 {
                self.0.get()
            }

            /// Rebuilds an id from [`get`](Self::get)'s number, for C bindings that carry
            /// ids as integers. Zero is not an id.
            pub const fn from_raw(raw: u64) -> Option<Self> {
                match NonZeroU64::new(raw) {
                    Some(id) => Some(Self(id)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "#{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, " #{}"), self.0)
            }
        }
    };
}

registration_id!(
    /// Identifies one fd watch ("handle" in libvirt's words) on one loop.
    ///
    /// ```
    /// use anyloop::WatchId;
    /// let (a, b) = (WatchId::allocate(), WatchId::allocate());
    /// assert_ne!(a, b);
    /// assert!(a.get() > 0);
    /// ```
    WatchId,
    "watch"
);

registration_id!(
    /// Identifies one timer ("timeout" in libvirt's words) on one loop.
    ///
    /// A distinct type from [`WatchId`]: passing a timer id to a handle operation does not
    /// compile.
    TimerId,
    "timer"
);

registration_id!(
    /// Identifies one callback of an event [`Registry`](crate::Registry) (contract [E2](crate::contract#e2)).
    ///
    /// Positive, unique in the process, never reused: a stale id can never deregister a newer
    /// callback, on this registry or another.
    ///
    /// ```
    /// use anyloop::CallbackId;
    /// let (a, b) = (CallbackId::allocate(), CallbackId::allocate());
    /// assert_ne!(a, b);
    /// assert!(a.get() > 0);
    /// ```
    CallbackId,
    "callback"
);

/// Any registration id, for errors and diagnostics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RegistrationId {
    /// An fd watch.
    Watch(WatchId),
    /// A timer.
    Timer(TimerId),
    /// A callback of an event registry.
    Callback(CallbackId),
}

impl fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrationId::Watch(id) => id.fmt(f),
            RegistrationId::Timer(id) => id.fmt(f),
            RegistrationId::Callback(id) => id.fmt(f),
        }
    }
}

impl From<WatchId> for RegistrationId {
    fn from(id: WatchId) -> Self {
        RegistrationId::Watch(id)
    }
}

impl From<TimerId> for RegistrationId {
    fn from(id: TimerId) -> Self {
        RegistrationId::Timer(id)
    }
}

impl From<CallbackId> for RegistrationId {
    fn from(id: CallbackId) -> Self {
        RegistrationId::Callback(id)
    }
}
