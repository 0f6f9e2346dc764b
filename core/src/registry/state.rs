//! The registry's bookkeeping under its one lock: callbacks in registration order, per-kind
//! counts and transitions, the event queue, and the flush timer's id. Pure logic: it makes no
//! loop call and runs no user code.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::mem;
use std::sync::Arc;
use std::thread::ThreadId;

use super::event::EventSet;
use super::kind::EventKind;
use super::slot::{Handler, Slot};
use crate::callback::TimerCallback;
use crate::id::{CallbackId, TimerId};

/// The callbacks of each kind, in registration order, as they were when a flush started.
pub(crate) struct Snapshot<S: EventSet> {
    by_kind: Vec<Vec<Arc<Slot<S>>>>,
}

impl<S: EventSet> Snapshot<S> {
    /// The callbacks registered for `kind` when the snapshot was taken.
    pub(crate) fn slots(&self, kind: S::Kind) -> &[Arc<Slot<S>>] {
        self.by_kind
            .get(kind.index())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Everything the registry lock protects.
pub(crate) struct State<S: EventSet> {
    slots: Vec<Arc<Slot<S>>>,
    /// Live callbacks per kind index.
    counts: Vec<usize>,
    /// Rebuilt lazily after a register or deregister.
    snapshot: Option<Arc<Snapshot<S>>>,
    queue: Vec<S>,
    /// The previous flush's buffer, kept for its capacity (no allocation per flush).
    spare: Vec<S>,
    /// Sequence number of the next emitted event.
    next_seq: u64,
    /// Kinds the fallback sink covers ([E30](crate::contract#e30)): they count as listened to.
    fallback_bits: u64,
    /// The flush timer, while it exists.
    pub(crate) timer: Option<TimerId>,
    /// True while the flush timer is set to fire.
    pub(crate) armed: bool,
    pub(crate) closed: bool,
    /// Set when arming the flush timer found the loop destroyed: events are dropped from then
    /// on instead of piling up for nobody.
    pub(crate) loop_gone: bool,
    /// The thread running a flush, while one runs.
    pub(crate) flushing: Option<ThreadId>,
    /// Per-kind 0→1 (`true`) and 1→0 (`false`) transitions not reported yet ([E15](crate::contract#e15)).
    transitions: VecDeque<(S::Kind, bool)>,
    /// True while some thread reports transitions (they are reported one at a time, in order).
    pub(crate) hooks_running: bool,
    /// Free batches the loop refused (it was gone): dropped at close, on the closing thread.
    pub(crate) orphans: Vec<TimerCallback>,
}

impl<S: EventSet> State<S> {
    pub(crate) fn new(fallback_bits: u64) -> Self {
        State {
            slots: Vec::new(),
            counts: vec![0; S::Kind::ALL.len()],
            snapshot: None,
            queue: Vec::new(),
            spare: Vec::new(),
            next_seq: 0,
            fallback_bits,
            timer: None,
            armed: false,
            closed: false,
            loop_gone: false,
            flushing: None,
            transitions: VecDeque::new(),
            hooks_running: false,
            orphans: Vec::new(),
        }
    }

    /// Live callbacks.
    pub(crate) fn callbacks(&self) -> usize {
        self.slots.len()
    }

    /// Live callbacks listening to `kind`.
    pub(crate) fn count(&self, kind: S::Kind) -> usize {
        self.counts.get(kind.index()).copied().unwrap_or(0)
    }

    /// Events queued and not flushed yet.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// True when an event of `kind` could be delivered to someone (a callback or the fallback).
    pub(crate) fn listens(&self, kind: S::Kind) -> bool {
        self.count(kind) > 0 || self.fallback_bits & super::kind::bit(kind) != 0
    }

    /// True when the registry needs its flush timer: some callback or a fallback exists.
    pub(crate) fn needs_timer(&self) -> bool {
        !self.slots.is_empty() || self.fallback_bits != 0
    }

    /// True when a live keyed registration has the same key, kinds and object filter ([E4](crate::contract#e4)).
    pub(crate) fn has_keyed(&self, kinds: u64, keyed: &str, object: Option<&S::Key>) -> bool {
        self.slots.iter().any(|slot| {
            slot.kinds == kinds
                && slot.keyed.as_deref() == Some(keyed)
                && slot.object.as_ref() == object
        })
    }

    /// Adds a callback after the others; it sees only events emitted from now on ([E9](crate::contract#e9)).
    pub(crate) fn insert(
        &mut self,
        id: CallbackId,
        kinds: u64,
        object: Option<S::Key>,
        keyed: Option<Cow<'static, str>>,
        handler: Handler<S>,
    ) {
        let slot = Slot::new(id, kinds, object, keyed, self.next_seq, handler);
        for index in bits(kinds) {
            if let Some(count) = self.counts.get_mut(index) {
                *count += 1;
                if *count == 1 {
                    self.transitions.push_back((S::Kind::ALL[index], true));
                }
            }
        }
        self.slots.push(Arc::new(slot));
        self.snapshot = None;
    }

    /// Removes a callback; returns it and how many callbacks still listen to one of its kinds
    /// ([E28](crate::contract#e28): for a one-kind registration, the count for that kind).
    pub(crate) fn remove(&mut self, id: CallbackId) -> Option<(Arc<Slot<S>>, usize)> {
        let position = self.slots.iter().position(|slot| slot.id == id)?;
        let slot = self.slots.remove(position);
        self.uncount(slot.kinds);
        self.snapshot = None;
        let remaining = self
            .slots
            .iter()
            .filter(|other| other.kinds & slot.kinds != 0)
            .count();
        Some((slot, remaining))
    }

    /// Removes every callback (close), reporting the 1→0 transitions.
    pub(crate) fn take_all(&mut self) -> Vec<Arc<Slot<S>>> {
        let slots = mem::take(&mut self.slots);
        for slot in &slots {
            self.uncount(slot.kinds);
        }
        self.snapshot = None;
        slots
    }

    fn uncount(&mut self, kinds: u64) {
        for index in bits(kinds) {
            if let Some(count) = self.counts.get_mut(index) {
                *count -= 1;
                if *count == 0 {
                    self.transitions.push_back((S::Kind::ALL[index], false));
                }
            }
        }
    }

    /// The next transition to report, if any.
    pub(crate) fn next_transition(&mut self) -> Option<(S::Kind, bool)> {
        self.transitions.pop_front()
    }

    /// Appends an event ([E5](crate::contract#e5), [E7](crate::contract#e7)); true when the queue was empty before.
    pub(crate) fn push(&mut self, event: S) -> bool {
        self.queue.push(event);
        self.next_seq += 1;
        self.queue.len() == 1
    }

    /// Takes the whole queue for a flush ([E13](crate::contract#e13): later events go to a new queue), with the
    /// sequence number of its first event.
    pub(crate) fn take_batch(&mut self) -> (Vec<S>, u64) {
        let batch = mem::replace(&mut self.queue, mem::take(&mut self.spare));
        let first = self.next_seq - batch.len() as u64;
        (batch, first)
    }

    /// Gives back a flushed (emptied) buffer for reuse.
    pub(crate) fn recycle(&mut self, buffer: Vec<S>) {
        debug_assert!(buffer.is_empty());
        if buffer.capacity() > self.spare.capacity() {
            self.spare = buffer;
        }
    }

    /// Takes the queue and the spare buffer (discarded by the caller, outside the lock: [E14](crate::contract#e14)).
    pub(crate) fn discard_queue(&mut self) -> (Vec<S>, Vec<S>) {
        (mem::take(&mut self.queue), mem::take(&mut self.spare))
    }

    /// The callbacks per kind, as of now (shared until the next register or deregister).
    pub(crate) fn snapshot(&mut self) -> Arc<Snapshot<S>> {
        if let Some(snapshot) = &self.snapshot {
            return snapshot.clone();
        }
        let mut by_kind: Vec<Vec<Arc<Slot<S>>>> = vec![Vec::new(); self.counts.len()];
        for slot in &self.slots {
            for index in bits(slot.kinds) {
                if let Some(list) = by_kind.get_mut(index) {
                    list.push(slot.clone());
                }
            }
        }
        let snapshot = Arc::new(Snapshot { by_kind });
        self.snapshot = Some(snapshot.clone());
        snapshot
    }
}

/// The indexes of the set bits of `mask`, in order.
fn bits(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |i| mask & (1u64 << i) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::kind::EventKind;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        A,
        B,
    }

    impl EventKind for Kind {
        const ALL: &'static [Kind] = &[Kind::A, Kind::B];
        fn index(self) -> usize {
            self as usize
        }
    }

    struct Ev(Kind);

    impl EventSet for Ev {
        type Kind = Kind;
        type Key = u32;
        fn kind(&self) -> Kind {
            self.0
        }
        fn key(&self) -> Option<&u32> {
            None
        }
    }

    fn handler() -> Handler<Ev> {
        Box::new(|_, _| true)
    }

    #[test]
    fn counts_transitions_and_remaining() {
        let mut st = State::<Ev>::new(0);
        let (a, b, c) = (
            CallbackId::allocate(),
            CallbackId::allocate(),
            CallbackId::allocate(),
        );
        st.insert(a, 0b01, None, None, handler());
        st.insert(b, 0b01, None, None, handler());
        st.insert(c, 0b11, None, None, handler());
        assert_eq!((st.count(Kind::A), st.count(Kind::B)), (3, 1));
        assert_eq!(st.next_transition(), Some((Kind::A, true)));
        assert_eq!(st.next_transition(), Some((Kind::B, true)));
        assert_eq!(st.next_transition(), None);
        assert_eq!(st.remove(a).map(|(_, n)| n), Some(2));
        assert!(st.remove(a).is_none(), "double remove");
        assert_eq!(st.remove(c).map(|(_, n)| n), Some(1));
        assert_eq!(st.next_transition(), Some((Kind::B, false)));
        assert_eq!(st.take_all().len(), 1);
        assert_eq!(st.next_transition(), Some((Kind::A, false)));
        assert!(!st.needs_timer());
    }

    #[test]
    fn snapshot_in_registration_order_per_kind() {
        let mut st = State::<Ev>::new(0);
        let ids: Vec<CallbackId> = (0..3).map(|_| CallbackId::allocate()).collect();
        st.insert(ids[0], 0b10, None, None, handler());
        st.insert(ids[1], 0b11, None, None, handler());
        st.insert(ids[2], 0b01, None, None, handler());
        let snap = st.snapshot();
        let a: Vec<_> = snap.slots(Kind::A).iter().map(|s| s.id).collect();
        let b: Vec<_> = snap.slots(Kind::B).iter().map(|s| s.id).collect();
        assert_eq!(a, vec![ids[1], ids[2]]);
        assert_eq!(b, vec![ids[0], ids[1]]);
        assert!(Arc::ptr_eq(&snap, &st.snapshot()), "cached until a change");
    }

    #[test]
    fn batches_carry_sequence_numbers() {
        let mut st = State::<Ev>::new(0);
        assert!(st.push(Ev(Kind::A)));
        assert!(!st.push(Ev(Kind::B)));
        st.insert(CallbackId::allocate(), 0b11, None, None, handler());
        let (mut batch, first) = st.take_batch();
        assert_eq!((batch.len(), first), (2, 0));
        // The callback registered after both emits must not see them (E5, E9).
        assert!(st.slots[0].since >= first + batch.len() as u64);
        batch.clear();
        st.recycle(batch);
        assert!(st.push(Ev(Kind::A)), "a new queue after the steal (E13)");
        let (batch, first) = st.take_batch();
        assert_eq!((batch.len(), first), (1, 2));
    }

    #[test]
    fn keyed_duplicates_compare_kinds_key_and_object() {
        let mut st = State::<Ev>::new(0);
        st.insert(
            CallbackId::allocate(),
            0b01,
            Some(7),
            Some("k".into()),
            handler(),
        );
        assert!(st.has_keyed(0b01, "k", Some(&7)));
        assert!(!st.has_keyed(0b01, "k", Some(&8)));
        assert!(!st.has_keyed(0b01, "k", None));
        assert!(!st.has_keyed(0b10, "k", Some(&7)));
        assert!(!st.has_keyed(0b01, "other", Some(&7)));
    }
}
