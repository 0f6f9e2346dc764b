//! An index-tracked binary min-heap of timer deadlines.
//!
//! `std::collections::BinaryHeap` cannot update or remove an arbitrary entry without a linear
//! scan (calloop's timer cancel is a `retain`, libvirt's timer update is a walk: about 100 µs
//! each at 100 000 timers). Here every entry is keyed by the *slot* of its timer in the
//! backend's table and the heap remembers where each slot sits, so insert, update and remove
//! are all O(log n).
//!
//! Order: earliest deadline first; equal deadlines by creation sequence (contract R33).

use std::time::Instant;

/// Marks a slot that is not in the heap.
const ABSENT: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline: Instant,
    seq: u64,
    slot: usize,
}

impl Entry {
    /// Strict "fires before": deadline first, then creation sequence.
    fn before(&self, other: &Entry) -> bool {
        (self.deadline, self.seq) < (other.deadline, other.seq)
    }
}

/// A min-heap of `(deadline, seq)` keyed by slot number.
///
/// Slots are small integers chosen by the caller (typically `slab` keys); a slot is in the
/// heap at most once. `seq` breaks ties between equal deadlines: pass the timer's creation
/// sequence so that equal deadlines fire in creation order (R33).
///
/// ```
/// use anyloop::backend::TimerHeap;
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
#[derive(Debug, Default, Clone)]
pub struct TimerHeap {
    entries: Vec<Entry>,
    /// `positions[slot]` = index of the slot's entry in `entries`, or `ABSENT`.
    positions: Vec<usize>,
}

impl TimerHeap {
    /// An empty heap.
    pub fn new() -> Self {
        TimerHeap::default()
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

    /// The deadline of `slot`, if scheduled.
    pub fn deadline(&self, slot: usize) -> Option<Instant> {
        self.position(slot).map(|pos| self.entries[pos].deadline)
    }

    /// The earliest deadline and its slot.
    pub fn peek(&self) -> Option<(Instant, usize)> {
        self.entries.first().map(|e| (e.deadline, e.slot))
    }

    /// Schedules `slot` at `deadline`, or moves it there if it was already scheduled
    /// (the sequence number is replaced too). O(log n).
    pub fn schedule(&mut self, slot: usize, deadline: Instant, seq: u64) {
        let entry = Entry {
            deadline,
            seq,
            slot,
        };
        match self.position(slot) {
            Some(pos) => {
                let old = self.entries[pos];
                self.entries[pos] = entry;
                if entry.before(&old) {
                    self.sift_up(pos);
                } else {
                    self.sift_down(pos);
                }
            }
            None => {
                if slot >= self.positions.len() {
                    self.positions.resize(slot + 1, ABSENT);
                }
                let pos = self.entries.len();
                self.entries.push(entry);
                self.positions[slot] = pos;
                self.sift_up(pos);
            }
        }
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
        if first.deadline > now {
            return None;
        }
        let slot = first.slot;
        self.remove_at(0);
        Some(slot)
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.positions.clear();
    }

    fn position(&self, slot: usize) -> Option<usize> {
        match self.positions.get(slot) {
            Some(&pos) if pos != ABSENT => Some(pos),
            _ => None,
        }
    }

    fn remove_at(&mut self, pos: usize) {
        let last = self.entries.len() - 1;
        let removed = self.entries[pos].slot;
        self.entries.swap(pos, last);
        self.entries.pop();
        self.positions[removed] = ABSENT;
        if pos < self.entries.len() {
            self.positions[self.entries[pos].slot] = pos;
            // The moved entry may belong above or below its new place.
            let moved = self.sift_up(pos);
            if moved == pos {
                self.sift_down(pos);
            }
        }
    }

    fn sift_up(&mut self, mut pos: usize) -> usize {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.entries[pos].before(&self.entries[parent]) {
                self.swap(pos, parent);
                pos = parent;
            } else {
                break;
            }
        }
        pos
    }

    fn sift_down(&mut self, mut pos: usize) {
        let len = self.entries.len();
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.entries[right].before(&self.entries[left]) {
                right
            } else {
                left
            };
            if self.entries[child].before(&self.entries[pos]) {
                self.swap(pos, child);
                pos = child;
            } else {
                break;
            }
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.entries.swap(a, b);
        self.positions[self.entries[a].slot] = a;
        self.positions[self.entries[b].slot] = b;
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
