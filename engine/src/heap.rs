//! An index-tracked 4-ary min-heap of timer deadlines.
//!
//! `std::collections::BinaryHeap` cannot update or remove an arbitrary entry without a linear
//! scan (calloop's timer cancel is a `retain`, libvirt's timer update is a walk: about 100 µs
//! each at 100 000 timers). Here every entry is keyed by the *slot* of its timer in the
//! backend's table and the heap remembers where each slot sits, so insert, update and remove
//! are all O(log n).
//!
//! Order: earliest deadline first; equal deadlines by creation sequence (contract [R33](anyloop::contract#r33)).
//!
//! Why it is shaped like this: with 100 000 timers every level of the heap is a cache miss,
//! so the heap is 4-ary (half the depth of a binary heap; the four children share a cache
//! line or two), entries are 16 bytes (a 64-bit nanosecond key instead of a 16-byte `Instant`,
//! and the sequence number and slot packed in one word: four entries to a cache line, and 16
//! bytes per armed timer, W6), and sifting moves a hole instead of swapping, writing each
//! position once.

use std::time::{Duration, Instant};

/// Marks a slot that is not in the heap.
const ABSENT: u32 = u32::MAX;

/// Children per node.
const ARITY: usize = 4;

/// Bits of [`Entry::order`] that hold the slot; the sequence number sits above them. The
/// same split as a [`TimerId`](anyloop::TimerId): a 24-bit tag (the engine's slot + 1) under a
/// 40-bit serial number.
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Nanoseconds from the heap's base instant (deadlines before it count as 0).
    key: u64,
    /// `seq << SLOT_BITS | slot`: comparing it compares sequence numbers (slots only break
    /// ties between equal sequence numbers, which the engine never passes).
    order: u64,
}

impl Entry {
    /// Strict "fires before": deadline first, then creation sequence.
    #[inline]
    fn before(&self, other: &Entry) -> bool {
        (self.key, self.order) < (other.key, other.order)
    }

    #[inline]
    fn slot(&self) -> usize {
        (self.order & SLOT_MASK) as usize
    }
}

/// A min-heap of `(deadline, seq)` keyed by slot number.
///
/// Slots are small integers chosen by the caller (typically table keys, below
/// [`SLOT_LIMIT`](Self::SLOT_LIMIT) = 2^24); a slot is in the heap at most once. `seq` breaks
/// ties between equal deadlines: pass the timer's creation sequence so that equal deadlines
/// fire in creation order ([R33](anyloop::contract#r33)). Deadlines are kept with nanosecond
/// precision relative to the moment the heap was created; earlier deadlines are all "due" and
/// keep their sequence order.
///
/// ```
/// use anyloop_engine::TimerHeap;
/// use std::time::{Duration, Instant};
/// let now = Instant::now();
/// let mut heap = TimerHeap::new();
/// heap.schedule(7, now + Duration::from_millis(30), 0);
/// heap.schedule(3, now + Duration::from_millis(10), 1);
/// heap.schedule(5, now + Duration::from_millis(20), 2);
/// heap.schedule(7, now + Duration::from_millis(5), 0); // update: moves slot 7 to the front
/// heap.cancel(5);
/// assert_eq!(heap.pop_expired(now + Duration::from_secs(1)), Some(7));
/// assert_eq!(heap.pop_expired(now + Duration::from_secs(1)), Some(3));
/// assert_eq!(heap.pop_expired(now + Duration::from_secs(1)), None);
/// ```
#[derive(Debug, Clone)]
pub struct TimerHeap {
    base: Instant,
    entries: Vec<Entry>,
    /// `positions[slot]` = index of the slot's entry in `entries`, or `ABSENT`.
    positions: Vec<u32>,
}

impl Default for TimerHeap {
    fn default() -> Self {
        TimerHeap::new()
    }
}

impl TimerHeap {
    /// Slots the heap can hold: `0..SLOT_LIMIT` (2^24).
    pub const SLOT_LIMIT: usize = 1 << SLOT_BITS;
    /// Sequence numbers the heap can hold: `0..SEQ_LIMIT` (2^40).
    pub const SEQ_LIMIT: u64 = 1 << (64 - SLOT_BITS);

    /// An empty heap.
    pub fn new() -> Self {
        TimerHeap {
            base: Instant::now(),
            entries: Vec::new(),
            positions: Vec::new(),
        }
    }

    /// Number of scheduled slots.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `slot` is scheduled.
    pub fn contains(&self, slot: usize) -> bool {
        self.position(slot).is_some()
    }

    /// The deadline of `slot`, if scheduled (to the nanosecond; a deadline before the heap was
    /// created reads as that moment).
    pub fn deadline(&self, slot: usize) -> Option<Instant> {
        self.position(slot)
            .map(|pos| self.instant(self.entries[pos].key))
    }

    /// The earliest deadline and its slot.
    #[inline]
    pub fn peek(&self) -> Option<(Instant, usize)> {
        self.entries
            .first()
            .map(|e| (self.instant(e.key), e.slot()))
    }

    /// Schedules `slot` at `deadline`, or moves it there if it was already scheduled
    /// (the sequence number is replaced too). O(log n). Returns false, and changes nothing,
    /// for a slot of [`SLOT_LIMIT`](Self::SLOT_LIMIT) or more or a sequence number of
    /// [`SEQ_LIMIT`](Self::SEQ_LIMIT) or more (the limits of a [`TimerId`](anyloop::TimerId)'s
    /// tag and serial number, which is what the engine passes).
    pub fn schedule(&mut self, slot: usize, deadline: Instant, seq: u64) -> bool {
        if slot >= Self::SLOT_LIMIT || seq >= Self::SEQ_LIMIT {
            return false;
        }
        let entry = Entry {
            key: self.key(deadline),
            order: seq << SLOT_BITS | slot as u64,
        };
        match self.position(slot) {
            Some(pos) => {
                if entry.before(&self.entries[pos]) {
                    self.sift_up(pos, entry);
                } else {
                    self.sift_down(pos, entry);
                }
            }
            None => {
                if slot >= self.positions.len() {
                    self.positions.resize(slot + 1, ABSENT);
                }
                let pos = self.entries.len();
                self.entries.push(entry);
                self.sift_up(pos, entry);
            }
        }
        true
    }

    /// Removes `slot` from the heap; returns whether it was scheduled. O(log n).
    pub fn cancel(&mut self, slot: usize) -> bool {
        let Some(pos) = self.position(slot) else {
            return false;
        };
        self.remove_at(pos);
        true
    }

    /// Removes and returns the earliest slot if its deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        let first = self.entries.first()?;
        if first.key > self.key(now) {
            return None;
        }
        let slot = first.slot();
        self.remove_at(0);
        Some(slot)
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.positions.clear();
    }

    fn key(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.base);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, key: u64) -> Instant {
        let after = Duration::from_nanos(key);
        self.base.checked_add(after).unwrap_or(self.base)
    }

    fn position(&self, slot: usize) -> Option<usize> {
        match self.positions.get(slot) {
            Some(&pos) if pos != ABSENT => Some(pos as usize),
            _ => None,
        }
    }

    fn remove_at(&mut self, pos: usize) {
        let removed = self.entries[pos].slot();
        self.positions[removed] = ABSENT;
        let Some(last) = self.entries.pop() else {
            return;
        };
        if pos < self.entries.len() {
            // The last entry fills the hole; it may belong above or below it.
            if pos > 0 && last.before(&self.entries[(pos - 1) / ARITY]) {
                self.sift_up(pos, last);
            } else {
                self.sift_down(pos, last);
            }
        }
    }

    /// Writes `entry` at `pos` and records where it sits.
    #[inline]
    fn place(&mut self, pos: usize, entry: Entry) {
        self.positions[entry.slot()] = pos as u32;
        self.entries[pos] = entry;
    }

    /// Moves the hole at `pos` up until `entry` fits, then puts `entry` there.
    fn sift_up(&mut self, mut pos: usize, entry: Entry) {
        while pos > 0 {
            let parent = (pos - 1) / ARITY;
            let above = self.entries[parent];
            if !entry.before(&above) {
                break;
            }
            self.place(pos, above);
            pos = parent;
        }
        self.place(pos, entry);
    }

    /// Moves the hole at `pos` down until `entry` fits, then puts `entry` there.
    fn sift_down(&mut self, mut pos: usize, entry: Entry) {
        let len = self.entries.len();
        loop {
            let first = ARITY * pos + 1;
            if first >= len {
                break;
            }
            let end = (first + ARITY).min(len);
            let mut child = first;
            for candidate in first + 1..end {
                if self.entries[candidate].before(&self.entries[child]) {
                    child = candidate;
                }
            }
            let below = self.entries[child];
            if !below.before(&entry) {
                break;
            }
            self.place(pos, below);
            pos = child;
        }
        self.place(pos, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A tiny deterministic generator so the test needs no dependency.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn ties_fire_in_sequence_order() {
        let now = Instant::now();
        let mut heap = TimerHeap::new();
        for slot in [4, 2, 9, 0] {
            heap.schedule(slot, now, 10 - slot as u64);
        }
        let order: Vec<_> = std::iter::from_fn(|| heap.pop_expired(now)).collect();
        assert_eq!(order, vec![9, 4, 2, 0]);
    }

    /// An armed timer pays one entry (W6).
    #[test]
    fn entries_are_16_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    /// Sequence numbers up to the limit keep their order; beyond the limits nothing changes.
    #[test]
    fn limits_are_refused_whole() {
        let now = Instant::now();
        let mut heap = TimerHeap::new();
        let top = TimerHeap::SLOT_LIMIT - 1;
        assert!(heap.schedule(top, now, TimerHeap::SEQ_LIMIT - 1));
        assert!(heap.schedule(0, now, TimerHeap::SEQ_LIMIT - 2));
        assert!(!heap.schedule(TimerHeap::SLOT_LIMIT, now, 0));
        assert!(!heap.schedule(1, now, TimerHeap::SEQ_LIMIT));
        assert_eq!(heap.len(), 2);
        assert_eq!(heap.pop_expired(now), Some(0));
        assert_eq!(heap.pop_expired(now), Some(top));
        assert_eq!(heap.pop_expired(now), None);
    }

    #[test]
    fn not_expired_stays() {
        let now = Instant::now();
        let mut heap = TimerHeap::new();
        heap.schedule(1, now + Duration::from_millis(1), 0);
        assert_eq!(heap.pop_expired(now), None);
        assert_eq!(heap.len(), 1);
        assert!(heap.contains(1));
        assert!(!heap.contains(0));
        assert!(!heap.contains(1000));
        assert!(!heap.cancel(1000));
    }

    /// Random schedule/reschedule/cancel against a sorted reference model.
    #[test]
    fn matches_reference_model() {
        let base = Instant::now();
        let mut heap = TimerHeap::new();
        let mut model: Vec<Option<(Duration, u64)>> = vec![None; 64];
        let mut rng = 42u64;
        for step in 0..20_000u64 {
            let slot = (lcg(&mut rng) % 64) as usize;
            match lcg(&mut rng) % 4 {
                0 | 1 => {
                    let d = Duration::from_millis(lcg(&mut rng) % 50);
                    heap.schedule(slot, base + d, step);
                    model[slot] = Some((d, step));
                }
                2 => {
                    assert_eq!(heap.cancel(slot), model[slot].is_some());
                    model[slot] = None;
                }
                _ => {
                    let now = base + Duration::from_millis(lcg(&mut rng) % 50);
                    let mut expected: Vec<_> = model
                        .iter()
                        .enumerate()
                        .filter_map(|(s, e)| e.map(|(d, q)| (d, q, s)))
                        .filter(|(d, _, _)| base + *d <= now)
                        .collect();
                    expected.sort();
                    for (_, _, s) in expected {
                        assert_eq!(heap.pop_expired(now), Some(s));
                        model[s] = None;
                    }
                    assert_eq!(heap.pop_expired(now), None);
                }
            }
            assert_eq!(heap.len(), model.iter().flatten().count());
        }
    }
}
