//! Event kinds and kind sets: what a registration listens to (libguestfs's event bitmask).

use std::fmt;
use std::marker::PhantomData;
use std::ops::BitOr;

/// The kinds of events a library reports: a field-less enum of at most 64 variants.
///
/// [`ALL`](Self::ALL) lists every kind and [`index`](Self::index) is the kind's position in
/// it (its bit in a [`KindSet`]). For a field-less enum, `self as usize` is the index when
/// `ALL` lists the variants in declaration order; the registry checks the two agree when it is
/// built.
///
/// ```
/// use anyloop::EventKind;
///
/// #[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// enum Kind { Library, Warning, Progress }
///
/// impl EventKind for Kind {
///     const ALL: &'static [Kind] = &[Kind::Library, Kind::Warning, Kind::Progress];
///     fn index(self) -> usize { self as usize }
/// }
/// assert_eq!(Kind::Progress.index(), 2);
/// ```
pub trait EventKind: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// Every kind, in index order (at most 64).
    const ALL: &'static [Self];

    /// The kind's position in [`ALL`](Self::ALL).
    fn index(self) -> usize;
}

/// The bit of `kind`, or 0 for an index that does not fit (refused when the registry is built).
pub(crate) fn bit<K: EventKind>(kind: K) -> u64 {
    1u64.checked_shl(kind.index() as u32).unwrap_or(0)
}

/// A set of event kinds: the bitmask of a multi-kind registration (libguestfs's
/// `event_bitmask`, contract [E21](crate::contract#e21)).
///
/// ```
/// use anyloop::{EventKind, KindSet};
/// # #[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// # enum Kind { Library, Warning, Progress }
/// # impl EventKind for Kind {
/// #     const ALL: &'static [Kind] = &[Kind::Library, Kind::Warning, Kind::Progress];
/// #     fn index(self) -> usize { self as usize }
/// # }
/// let messages = KindSet::from(Kind::Library) | Kind::Warning;
/// assert!(messages.contains(Kind::Warning) && !messages.contains(Kind::Progress));
/// assert_eq!(KindSet::<Kind>::all().len(), 3);
/// assert!(KindSet::<Kind>::empty().is_empty());
/// assert_eq!(messages.iter().collect::<Vec<_>>(), [Kind::Library, Kind::Warning]);
/// ```
pub struct KindSet<K> {
    bits: u64,
    _kind: PhantomData<fn() -> K>,
}

impl<K: EventKind> KindSet<K> {
    /// No kind at all (refused by registration: it could never fire).
    pub const fn empty() -> Self {
        KindSet {
            bits: 0,
            _kind: PhantomData,
        }
    }

    /// Every kind of `K` (libguestfs's `GUESTFS_EVENT_ALL`).
    pub fn all() -> Self {
        K::ALL.iter().copied().collect()
    }

    /// The set of the given kinds.
    pub fn of(kinds: impl IntoIterator<Item = K>) -> Self {
        kinds.into_iter().collect()
    }

    /// This set plus `kind`.
    #[must_use]
    pub fn with(mut self, kind: K) -> Self {
        self.bits |= bit(kind);
        self
    }

    /// True when `kind` is in the set.
    pub fn contains(self, kind: K) -> bool {
        self.bits & bit(kind) != 0
    }

    /// True when the set holds no kind.
    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// How many kinds the set holds.
    pub fn len(self) -> usize {
        self.bits.count_ones() as usize
    }

    /// The kinds of the set, in index order.
    pub fn iter(self) -> impl Iterator<Item = K> {
        K::ALL.iter().copied().filter(move |k| self.contains(*k))
    }

    /// The raw bitmask (bit `k.index()` for each kind `k`).
    pub fn bits(self) -> u64 {
        self.bits
    }
}

impl<K> Clone for KindSet<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for KindSet<K> {}

impl<K> PartialEq for KindSet<K> {
    fn eq(&self, other: &Self) -> bool {
        self.bits == other.bits
    }
}

impl<K> Eq for KindSet<K> {}

impl<K: EventKind> Default for KindSet<K> {
    fn default() -> Self {
        KindSet::empty()
    }
}

impl<K: EventKind> From<K> for KindSet<K> {
    fn from(kind: K) -> Self {
        KindSet::empty().with(kind)
    }
}

impl<K: EventKind> FromIterator<K> for KindSet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(kinds: I) -> Self {
        kinds.into_iter().fold(KindSet::empty(), KindSet::with)
    }
}

impl<K: EventKind> BitOr for KindSet<K> {
    type Output = KindSet<K>;
    fn bitor(self, other: KindSet<K>) -> KindSet<K> {
        KindSet {
            bits: self.bits | other.bits,
            _kind: PhantomData,
        }
    }
}

impl<K: EventKind> BitOr<K> for KindSet<K> {
    type Output = KindSet<K>;
    fn bitor(self, kind: K) -> KindSet<K> {
        self.with(kind)
    }
}

impl<K: EventKind> fmt::Debug for KindSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Checks that `K` fits a 64-bit set and that `index` agrees with `ALL`.
pub(crate) fn check_kinds<K: EventKind>() -> Result<(), &'static str> {
    if K::ALL.len() > 64 {
        return Err("an event kind enum has more than 64 kinds");
    }
    if K::ALL.iter().enumerate().any(|(i, k)| k.index() != i) {
        return Err("EventKind::index disagrees with the position in EventKind::ALL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Good {
        A,
        B,
    }

    impl EventKind for Good {
        const ALL: &'static [Good] = &[Good::A, Good::B];
        fn index(self) -> usize {
            self as usize
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Swapped {
        A,
        B,
    }

    impl EventKind for Swapped {
        const ALL: &'static [Swapped] = &[Swapped::B, Swapped::A];
        fn index(self) -> usize {
            self as usize
        }
    }

    #[test]
    fn sets_and_checks() {
        assert_eq!(KindSet::<Good>::all().bits(), 0b11);
        assert_eq!(KindSet::of([Good::B]).bits(), 0b10);
        assert_eq!(format!("{:?}", KindSet::<Good>::all()), "{A, B}");
        assert!(check_kinds::<Good>().is_ok());
        assert!(check_kinds::<Swapped>().is_err(), "index must match ALL");
    }
}
