//! One registered callback and the batch that frees callbacks on the loop thread.

use std::any::Any;
use std::borrow::Cow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use super::event::EventSet;
use crate::id::CallbackId;

/// What a registration runs for one event: the predicate and the callback in one closure,
/// answering whether the callback ran (the event "matched", for the fallback, [E30](crate::contract#e30)).
pub(crate) type Handler<S> = Box<dyn FnMut(<S as EventSet>::Kind, &S) -> bool + Send>;

/// A caught panic payload.
pub(crate) type Panic = Box<dyn Any + Send>;

/// One registered callback. Shared (`Arc`) between the registry's list and the snapshots of
/// running flushes; its handler is taken out exactly once, by the free ([E11](crate::contract#e11), [E16](crate::contract#e16)).
pub(crate) struct Slot<S: EventSet> {
    pub(crate) id: CallbackId,
    /// The kinds it listens to (one bit per kind).
    pub(crate) kinds: u64,
    pub(crate) object: Option<S::Key>,
    pub(crate) keyed: Option<Cow<'static, str>>,
    /// Sequence number of the first event it may see: the events emitted before its register
    /// returned have smaller numbers ([E5](crate::contract#e5), [E9](crate::contract#e9)).
    pub(crate) since: u64,
    /// Set by deregister and close: no delivery from then on ([E10](crate::contract#e10)).
    dead: AtomicBool,
    /// Locked while the handler runs, so the free waits for a running callback ([E11](crate::contract#e11)).
    handler: Mutex<Option<Handler<S>>>,
}

/// Who calls [`Slot::call`], which decides what to do with a dead or busy slot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A flush: skip dead slots; wait for one running elsewhere (a closing event).
    Flush,
    /// Close, delivering the closing event to the slots it just killed: wait for a slot
    /// running on another thread.
    CloseWait,
    /// Close from inside a callback: also skip a busy slot (it runs further up this stack).
    CloseSkipBusy,
}

impl<S: EventSet> Slot<S> {
    pub(crate) fn new(
        id: CallbackId,
        kinds: u64,
        object: Option<S::Key>,
        keyed: Option<Cow<'static, str>>,
        since: u64,
        handler: Handler<S>,
    ) -> Self {
        Slot {
            id,
            kinds,
            object,
            keyed,
            since,
            dead: AtomicBool::new(false),
            handler: Mutex::new(Some(handler)),
        }
    }

    /// Marks the callback deregistered: it gets no further event ([E10](crate::contract#e10)).
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::Release);
    }

    /// True once deregistered or closed.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// True when the object filter lets an event about `key` through ([E8](crate::contract#e8), [E29](crate::contract#e29)).
    pub(crate) fn wants_object(&self, key: Option<&S::Key>) -> bool {
        match &self.object {
            None => true,
            Some(object) => key == Some(object),
        }
    }

    /// Runs the handler for one event. `Ok(true)` when the callback ran, `Ok(false)` when it
    /// did not (dead, filtered, busy and skipped), `Err` with a panic of the callback or
    /// predicate (caught: [E23](crate::contract#e23)).
    pub(crate) fn call(&self, kind: S::Kind, event: &S, caller: Caller) -> Result<bool, Panic> {
        let mut guard = match self.lock(caller) {
            Some(guard) => guard,
            None => return Ok(false),
        };
        // Checked under the handler lock: a deregister or close that marked the slot before
        // this point is honoured (E10), and close marks every slot before it delivers the
        // closing event, so nothing reaches a callback after it (E17).
        if caller == Caller::Flush && self.is_dead() {
            return Ok(false);
        }
        let Some(handler) = guard.as_mut() else {
            return Ok(false);
        };
        catch_unwind(AssertUnwindSafe(|| handler(kind, event)))
    }

    fn lock(&self, caller: Caller) -> Option<MutexGuard<'_, Option<Handler<S>>>> {
        match caller {
            Caller::Flush | Caller::CloseWait => {
                Some(self.handler.lock().unwrap_or_else(|p| p.into_inner()))
            }
            Caller::CloseSkipBusy => match self.handler.try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            },
        }
    }

    /// Takes the handler out (waiting for a running call to return), for the free.
    fn take_handler(&self) -> Option<Handler<S>> {
        self.handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Callbacks (and any other library closures) to drop together. Dropping the batch takes
/// every handler out of its slot and drops it, each exactly once; a panicking drop does not
/// stop the others and is re-raised afterwards, for the loop to report ([R54](crate::contract#r54)).
///
/// The registry hands a batch to the loop as the state of a disabled timer that it removes at
/// once, so the loop's own deferred-free machinery drops it on the loop thread, after the
/// running dispatch, never inside a registry call ([E11](crate::contract#e11)).
pub(crate) struct FreeBatch<S: EventSet> {
    pub(crate) slots: Vec<std::sync::Arc<Slot<S>>>,
    pub(crate) extras: Vec<Box<dyn Send>>,
}

impl<S: EventSet> Drop for FreeBatch<S> {
    fn drop(&mut self) {
        let mut first: Option<Panic> = None;
        for slot in self.slots.drain(..) {
            let handler = slot.take_handler();
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(handler))) {
                first.get_or_insert(payload);
            }
        }
        for extra in self.extras.drain(..) {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(extra))) {
                first.get_or_insert(payload);
            }
        }
        if let Some(payload) = first {
            if !std::thread::panicking() {
                resume_unwind(payload);
            }
        }
    }
}
