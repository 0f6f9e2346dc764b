//! A slab whose storage grows by fixed-size pages that never move.
//!
//! The registration tables used to be `slab::Slab`s: one vector that grows by doubling. Below
//! the allocator's mmap threshold (glibc: 128 KiB, raised further by every large block freed)
//! each doubling copies the table into a new block and leaves the old one resident in the
//! heap, so 10 000 watches paid about 14 bytes each of such residue on top of their 60 bytes
//! of structures (W6, BENCHMARKS.md). Here a table is a list of fixed-size pages of [`PAGE`]
//! entries, each allocated once: growing adds a page and copies nothing but the (small) list
//! of page pointers. A lookup costs one more load than a flat vector (the page pointer, hot in
//! cache) and a shift; the offset in a page needs no bounds check, since a page is an array.
//!
//! Keys, the free list and its order are those of `slab::Slab` (the most recently freed key is
//! reused first), so ids that carry a slot tag behave as before.

use std::ops::{Index, IndexMut};

/// Entries per page: a power of two, so that a key splits into page and offset by a shift
/// and a mask. 64 entries are 1.5–2.5 KiB for the engine's slots: what a loop with a single
/// registration of each kind pays, written once when the page is made.
const PAGE: usize = 64;
const PAGE_SHIFT: u32 = PAGE.trailing_zeros();

enum Entry<T> {
    /// A free slot: the next free key (or the table's high-water mark when it is the last).
    Vacant(usize),
    Occupied(T),
}

/// A slab of `T` in pages that never move (see the module doc).
pub(crate) struct PagedSlab<T> {
    /// The entries, [`PAGE`] to a page; those at and beyond `made` are vacant and unused.
    pages: Vec<Box<[Entry<T>; PAGE]>>,
    /// Occupied entries.
    len: usize,
    /// The next key [`insert`](Self::insert) uses: the head of the free list, or the number
    /// of entries ever made when the list is empty.
    next: usize,
    /// Entries ever made (occupied or vacant): the high-water mark.
    made: usize,
}

impl<T> Default for PagedSlab<T> {
    fn default() -> Self {
        PagedSlab {
            pages: Vec::new(),
            len: 0,
            next: 0,
            made: 0,
        }
    }
}

impl<T> PagedSlab<T> {
    /// An empty slab (no allocation).
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A page of vacant entries, made in place on the heap (a page can be larger than a
    /// thread's comfortable stack frame).
    fn page() -> Box<[Entry<T>; PAGE]> {
        let entries: Box<[Entry<T>]> = (0..PAGE).map(|_| Entry::Vacant(0)).collect();
        match entries.try_into() {
            Ok(page) => page,
            Err(_) => unreachable!("{PAGE} entries were made"),
        }
    }

    /// Occupied entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The key the next [`insert`](Self::insert) will return.
    pub(crate) fn vacant_key(&self) -> usize {
        self.next
    }

    #[inline]
    fn entry(&self, key: usize) -> Option<&Entry<T>> {
        let page = self.pages.get(key >> PAGE_SHIFT)?;
        Some(&page[key & (PAGE - 1)])
    }

    #[inline]
    fn entry_mut(&mut self, key: usize) -> Option<&mut Entry<T>> {
        let page = self.pages.get_mut(key >> PAGE_SHIFT)?;
        Some(&mut page[key & (PAGE - 1)])
    }

    /// The value at `key`, if occupied.
    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.entry(key) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    /// The value at `key`, if occupied.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entry_mut(key) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    /// Stores `value` and returns its key ([`vacant_key`](Self::vacant_key) before the call).
    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.next;
        if key == self.made {
            if key == self.pages.len() * PAGE {
                self.pages.push(Self::page());
            }
            self.made += 1;
            self.next = self.made;
            let Some(entry) = self.entry_mut(key) else {
                unreachable!("key {key} is in the page just made");
            };
            *entry = Entry::Occupied(value);
        } else {
            let Some(entry) = self.entry_mut(key) else {
                unreachable!("the free list names key {key}, below {} made", self.made);
            };
            match std::mem::replace(entry, Entry::Occupied(value)) {
                Entry::Vacant(next) => self.next = next,
                Entry::Occupied(_) => unreachable!("the free list names occupied key {key}"),
            }
        }
        self.len += 1;
        key
    }

    /// Takes the value at `key` out, if occupied; the key is the next one reused.
    pub(crate) fn try_remove(&mut self, key: usize) -> Option<T> {
        let next = self.next;
        let entry = self.entry_mut(key)?;
        if matches!(entry, Entry::Vacant(_)) {
            return None;
        }
        let Entry::Occupied(value) = std::mem::replace(entry, Entry::Vacant(next)) else {
            unreachable!("checked occupied above");
        };
        self.next = key;
        self.len -= 1;
        Some(value)
    }

    /// Takes the value at `key` out. Panics if `key` is vacant (a bookkeeping bug, as with
    /// `slab::Slab::remove`).
    #[track_caller]
    pub(crate) fn remove(&mut self, key: usize) -> T {
        match self.try_remove(key) {
            Some(value) => value,
            None => panic!("no entry at key {key} of the table"),
        }
    }

    /// The occupied entries with their keys, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.pages
            .iter()
            .flat_map(|page| page.iter())
            .take(self.made)
            .enumerate()
            .filter_map(|(key, entry)| match entry {
                Entry::Occupied(value) => Some((key, value)),
                Entry::Vacant(_) => None,
            })
    }

    /// The occupied entries with their keys, in key order, for changing them.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        let made = self.made;
        self.pages
            .iter_mut()
            .flat_map(|page| page.iter_mut())
            .take(made)
            .enumerate()
            .filter_map(|(key, entry)| match entry {
                Entry::Occupied(value) => Some((key, value)),
                Entry::Vacant(_) => None,
            })
    }

    /// The occupied values, in key order, consuming the slab.
    pub(crate) fn into_values(self) -> impl Iterator<Item = T> {
        let made = self.made;
        self.pages
            .into_iter()
            .flat_map(|page| (page as Box<[Entry<T>]>).into_vec())
            .take(made)
            .filter_map(|entry| match entry {
                Entry::Occupied(value) => Some(value),
                Entry::Vacant(_) => None,
            })
    }

    /// Empties the slab and releases its pages.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

impl<T> Index<usize> for PagedSlab<T> {
    type Output = T;

    #[track_caller]
    #[inline]
    fn index(&self, key: usize) -> &T {
        match self.get(key) {
            Some(value) => value,
            None => panic!("no entry at key {key} of the table"),
        }
    }
}

impl<T> IndexMut<usize> for PagedSlab<T> {
    #[track_caller]
    #[inline]
    fn index_mut(&mut self, key: usize) -> &mut T {
        match self.get_mut(key) {
            Some(value) => value,
            None => panic!("no entry at key {key} of the table"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_dense_and_the_last_freed_is_reused_first() {
        let mut slab = PagedSlab::new();
        let keys: Vec<usize> = (0..3 * PAGE + 5).map(|i| slab.insert(i)).collect();
        assert_eq!(keys, (0..3 * PAGE + 5).collect::<Vec<_>>());
        assert_eq!(slab.len(), 3 * PAGE + 5);
        assert_eq!(slab[PAGE + 1], PAGE + 1);
        assert_eq!(slab.remove(7), 7);
        assert_eq!(slab.remove(2 * PAGE), 2 * PAGE);
        assert_eq!(slab.try_remove(7), None);
        assert_eq!(slab.get(7), None);
        assert_eq!(slab.len(), 3 * PAGE + 3);
        // LIFO, as slab::Slab: the last freed key first.
        assert_eq!(slab.vacant_key(), 2 * PAGE);
        assert_eq!(slab.insert(1000), 2 * PAGE);
        assert_eq!(slab.insert(1001), 7);
        assert_eq!(slab.vacant_key(), 3 * PAGE + 5);
        assert_eq!(slab.insert(1002), 3 * PAGE + 5);
        *slab.get_mut(7).expect("occupied") += 1;
        assert_eq!(slab[7], 1002);
        assert_eq!(slab.get(10 * PAGE), None);
        assert_eq!(slab.try_remove(10 * PAGE), None);
    }

    #[test]
    fn iteration_skips_vacant_entries_in_key_order() {
        let mut slab = PagedSlab::new();
        for i in 0..PAGE + 2 {
            slab.insert(i);
        }
        for key in (0..PAGE + 2).filter(|k| k % 3 != 0) {
            slab.remove(key);
        }
        let seen: Vec<(usize, usize)> = slab.iter().map(|(k, v)| (k, *v)).collect();
        let expected: Vec<(usize, usize)> = (0..PAGE + 2)
            .filter(|k| k % 3 == 0)
            .map(|k| (k, k))
            .collect();
        assert_eq!(seen, expected);
        let values: Vec<usize> = slab.into_values().collect();
        assert_eq!(values, expected.iter().map(|&(_, v)| v).collect::<Vec<_>>());
    }

    #[test]
    fn pages_never_move_once_made() {
        let mut slab = PagedSlab::new();
        slab.insert(0u64);
        let first: *const u64 = &slab[0];
        for i in 1..20 * PAGE as u64 {
            slab.insert(i);
        }
        assert!(std::ptr::eq(first, &slab[0]));
        slab.clear();
        assert_eq!(slab.len(), 0);
        assert_eq!(slab.vacant_key(), 0);
        assert_eq!(slab.get(0), None);
    }
}
