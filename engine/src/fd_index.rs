//! From an fd number to the slot of its [`FdSlot`](super::table::FdSlot).
//!
//! Fd numbers are small and dense (the kernel hands out the lowest free one), so below
//! [`DENSE_LIMIT`] the index is a plain vector indexed by fd, 4 bytes per number up to the
//! highest one watched, as libev's and libevent's fd tables are: a lookup is one load, and a
//! watch costs 4 bytes here instead of a hash entry's 16 plus the table's spare capacity
//! (about 28 bytes per watch at 10 000 watches, W6). Numbers at or above the limit (a process
//! that raised its fd limit far) go to a hash map, so a single huge number cannot make the
//! vector huge.

use std::os::fd::RawFd;

use rustc_hash::FxHashMap;

/// Fd numbers below this are indexed densely: at most 256 KiB of index.
const DENSE_LIMIT: usize = 1 << 16;

/// An fd-number-to-slot map.
#[derive(Default)]
pub(crate) struct FdIndex {
    /// `dense[fd]` = slot + 1, or 0 for none.
    dense: Vec<u32>,
    sparse: FxHashMap<RawFd, usize>,
}

impl FdIndex {
    /// The slot of `fd`, if one is indexed.
    pub(crate) fn get(&self, fd: RawFd) -> Option<usize> {
        if let Ok(n) = usize::try_from(fd) {
            if let Some(&entry) = self.dense.get(n) {
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
                if self.dense.len() <= n {
                    self.dense.resize(n + 1, 0);
                }
                self.dense[n] = entry;
            }
            _ => {
                self.sparse.insert(fd, slot);
            }
        }
    }

    /// Forgets `fd`.
    pub(crate) fn remove(&mut self, fd: RawFd) {
        if let Some(entry) = usize::try_from(fd).ok().and_then(|n| self.dense.get_mut(n)) {
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
        index.insert(-1, 9); // never inserted by the engine (it refuses negative fds); still safe
        assert_eq!(index.get(3), Some(0));
        assert_eq!(index.get(70_000), Some(5));
        assert_eq!(index.get(-1), Some(9));
        assert_eq!(index.get(4), None);
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
