//! Registration ids: opaque, positive, unique in the process, never reused (contract R1).

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter for the whole process, shared by every backend and both id kinds, so that a
/// stale id can never address a newer registration on any loop (contract R1, bugs B40/B44).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_raw_id() -> NonZeroU64 {
    // 2^64 allocations would take centuries at a billion per second; wrapping to zero is
    // therefore impossible in practice, but stay panic-free and skip zero anyway.
    loop {
        let raw = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = NonZeroU64::new(raw) {
            return id;
        }
    }
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
            pub fn allocate() -> Self {
                Self(next_raw_id())
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
    /// use anyloop::HandleId;
    /// let (a, b) = (HandleId::allocate(), HandleId::allocate());
    /// assert_ne!(a, b);
    /// assert!(a.get() > 0);
    /// ```
    HandleId,
    "handle"
);

registration_id!(
    /// Identifies one timer ("timeout" in libvirt's words) on one loop.
    ///
    /// A distinct type from [`HandleId`]: passing a timer id to a handle operation does not
    /// compile.
    TimeoutId,
    "timeout"
);

/// Either kind of registration id, for errors and diagnostics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RegistrationId {
    /// An fd watch.
    Handle(HandleId),
    /// A timer.
    Timeout(TimeoutId),
}

impl fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrationId::Handle(id) => id.fmt(f),
            RegistrationId::Timeout(id) => id.fmt(f),
        }
    }
}

impl From<HandleId> for RegistrationId {
    fn from(id: HandleId) -> Self {
        RegistrationId::Handle(id)
    }
}

impl From<TimeoutId> for RegistrationId {
    fn from(id: TimeoutId) -> Self {
        RegistrationId::Timeout(id)
    }
}
