//! From an fd number to the slot of its [`FdSlot`](super::table::FdSlot).
//!
//! Fd numbers are small and dense (the kernel hands out the lowest free one), so below
//! [`DENSE_LIMIT`] the index is a plain array indexed by fd, 4 bytes per number up to the
//! highest one watched, as libev's and libevent's fd tables are: a lookup is two loads, and a
//! watch costs 4 bytes here instead of a hash entry's 16 plus the table's spare capacity
//! (about 28 bytes per watch at 10 000 watches, W6). The array is made of pages of
//! [`INDEX_PAGE`] numbers, allocated when a number in them is first indexed and never moved:
//! a vector grown by doubling would leave each outgrown copy resident (W6; see
//! [`paged`](super::paged)). Numbers at or above the limit (a process that raised its fd
//! limit far) go to a hash map, so a single huge number cannot make the index huge.

use std::os::fd::RawFd;

use rustc_hash::FxHashMap;

/// Fd numbers below this are indexed densely: at most 256 KiB of index.
const DENSE_LIMIT: usize = 1 << 16;

/// Fd numbers per page of the dense index (4 KiB).
const INDEX_PAGE: usize = 1024;

/// An fd-number-to-slot map.
#[derive(Default)]
pub(crate) struct FdIndex {
    /// `dense[fd / INDEX_PAGE][fd % INDEX_PAGE]` = slot + 1, or 0 for none; a page never
    /// written is `None`.
    dense: Vec<Option<Box<[u32]>>>,
    sparse: FxHashMap<RawFd, usize>,
}

impl FdIndex {
    /// The slot of `fd`, if one is indexed.
    pub(crate) fn get(&self, fd: RawFd) -> Option<usize> {
        if let Ok(n) = usize::try_from(fd) {
            if let Some(&entry) = self.dense_entry(n) {
                if entry != 0 {
                    return Some(entry as usize - 1);
                }
            }
        }
        // Numbers at or above the limit, and (never in practice) a slot too large for the
        // dense entry.
        if self.sparse.is_empty() {
            None
        } else {
            self.sparse.get(&fd).copied()
        }
    }

    /// Indexes `fd` at `slot`, replacing any previous entry.
    pub(crate) fn insert(&mut self, fd: RawFd, slot: usize) {
        self.remove(fd);
        let entry = u32::try_from(slot).ok().and_then(|s| s.checked_add(1));
        match (usize::try_from(fd), entry) {
            (Ok(n), Some(entry)) if n < DENSE_LIMIT => {
                let page = n / INDEX_PAGE;
                if self.dense.len() <= page {
                    self.dense.resize_with(page + 1, || None);
                }
                let page =
                    self.dense[page].get_or_insert_with(|| vec![0; INDEX_PAGE].into_boxed_slice());
                page[n % INDEX_PAGE] = entry;
            }
            _ => {
                self.sparse.insert(fd, slot);
            }
        }
    }

    #[inline]
    fn dense_entry(&self, n: usize) -> Option<&u32> {
        self.dense
            .get(n / INDEX_PAGE)?
            .as_ref()?
            .get(n % INDEX_PAGE)
    }

    fn dense_entry_mut(&mut self, n: usize) -> Option<&mut u32> {
        self.dense
            .get_mut(n / INDEX_PAGE)?
            .as_mut()?
            .get_mut(n % INDEX_PAGE)
    }

    /// Forgets `fd`.
    pub(crate) fn remove(&mut self, fd: RawFd) {
        if let Some(entry) = usize::try_from(fd)
            .ok()
            .and_then(|n| self.dense_entry_mut(n))
        {
            *entry = 0;
        }
        if !self.sparse.is_empty() {
            self.sparse.remove(&fd);
        }
    }

    /// Forgets every fd (and releases the memory).
    pub(crate) fn clear(&mut self) {
        self.dense = Vec::new();
        self.sparse = FxHashMap::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_numbers_map_both_ways() {
        let mut index = FdIndex::default();
        assert_eq!(index.get(3), None);
        index.insert(3, 0);
        index.insert(70_000, 5);
        index.insert(INDEX_PAGE as RawFd * 3 + 1, 6); // pages 1 and 2 stay unmade
        index.insert(-1, 9); // never inserted by the engine (it refuses negative fds); still safe
        assert_eq!(index.get(3), Some(0));
        assert_eq!(index.get(70_000), Some(5));
        assert_eq!(index.get(-1), Some(9));
        assert_eq!(index.get(4), None);
        assert_eq!(index.get(INDEX_PAGE as RawFd * 3 + 1), Some(6));
        assert_eq!(index.get(INDEX_PAGE as RawFd * 2), None);
        assert!(index.dense[1].is_none() && index.dense[2].is_none());
        assert_eq!(index.get(1_000_000), None);
        index.remove(3);
        index.remove(70_000);
        assert_eq!(index.get(3), None);
        assert_eq!(index.get(70_000), None);
        index.insert(3, 7);
        assert_eq!(index.get(3), Some(7));
        // A slot too large for a dense entry still maps (through the hash map).
        index.insert(5, u32::MAX as usize);
        assert_eq!(index.get(5), Some(u32::MAX as usize));
        index.remove(5);
        assert_eq!(index.get(5), None);
        index.clear();
        assert_eq!(index.get(3), None);
        assert_eq!(index.get(-1), None);
    }
}
