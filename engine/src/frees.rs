//! The deferred-free list: callbacks removed but not dropped yet.
//!
//! Remove never drops a callback in place (contract [R21](anyloop::contract#r21)): it moves it here, and the loop
//! thread drops the list's contents after dispatch, with no lock held ([R24](anyloop::contract#r24)), in removal order
//! ([R26](anyloop::contract#r26)). A callback removed *while it runs* cannot be moved yet (the loop holds it); its place
//! in the order is reserved at removal time and filled when the callback returns ([R22](anyloop::contract#r22)), so the
//! order stays the removal order.

use std::collections::VecDeque;

/// A reserved place in a [`DeferredFrees`] list, filled later with [`DeferredFrees::fill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeTicket(u64);

/// A FIFO of values to drop later, with reservable places.
///
/// ```
/// use anyloop_engine::DeferredFrees;
/// let mut frees = DeferredFrees::new();
/// frees.push("a");
/// let ticket = frees.reserve();
/// frees.push("c");
/// let mut out = Vec::new();
/// frees.take_ready(&mut out);
/// assert_eq!(out, vec!["a"]); // "c" waits behind the reserved place
/// frees.fill(ticket, "b");
/// frees.take_ready(&mut out);
/// assert_eq!(out, vec!["a", "b", "c"]);
/// assert!(frees.is_empty());
/// ```
#[derive(Debug)]
pub struct DeferredFrees<T> {
    queue: VecDeque<Option<T>>,
    /// Absolute position of `queue[0]` since creation, so tickets stay valid across drains.
    base: u64,
}

impl<T> Default for DeferredFrees<T> {
    fn default() -> Self {
        DeferredFrees {
            queue: VecDeque::new(),
            base: 0,
        }
    }
}

impl<T> DeferredFrees<T> {
    /// An empty list.
    pub fn new() -> Self {
        DeferredFrees::default()
    }

    /// Number of pending frees, reserved places included.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a value to drop later.
    pub fn push(&mut self, value: T) {
        self.queue.push_back(Some(value));
    }

    /// Reserves the next place in removal order for a value that is not available yet.
    pub fn reserve(&mut self) -> FreeTicket {
        let ticket = FreeTicket(self.base + self.queue.len() as u64);
        self.queue.push_back(None);
        ticket
    }

    /// Fills a reserved place. A ticket that is no longer pending (or was never issued by
    /// this list) cannot be honoured: the value is queued at the end instead, so it is still
    /// dropped exactly once.
    pub fn fill(&mut self, ticket: FreeTicket, value: T) {
        let index = ticket.0.checked_sub(self.base).map(|i| i as usize);
        match index.and_then(|i| self.queue.get_mut(i)) {
            Some(place @ None) => *place = Some(value),
            _ => self.queue.push_back(Some(value)),
        }
    }

    /// Moves every value up to the first still-reserved place into `out`, in order.
    pub fn take_ready(&mut self, out: &mut Vec<T>) {
        while let Some(Some(_)) = self.queue.front() {
            if let Some(Some(value)) = self.queue.pop_front() {
                out.push(value);
            }
            self.base += 1;
        }
    }

    /// Moves everything into `out`, in order, skipping reserved places that were never
    /// filled (used at loop destruction, when nothing can be running any more).
    pub fn take_all(&mut self, out: &mut Vec<T>) {
        self.base += self.queue.len() as u64;
        out.extend(self.queue.drain(..).flatten());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_survive_drains() {
        let mut frees = DeferredFrees::new();
        let mut out = Vec::new();
        frees.push(1);
        frees.take_ready(&mut out);
        let ticket = frees.reserve();
        frees.push(3);
        frees.take_ready(&mut out);
        assert_eq!(out, vec![1]);
        assert_eq!(frees.len(), 2);
        frees.fill(ticket, 2);
        frees.take_ready(&mut out);
        assert_eq!(out, vec![1, 2, 3]);
        // A stale ticket still gets its value dropped, at the end.
        frees.fill(ticket, 4);
        frees.take_all(&mut out);
        assert_eq!(out, vec![1, 2, 3, 4]);
    }
}
