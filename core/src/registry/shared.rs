//! The registry's shared state and its operations: register, deregister, emit, flush, close.
//!
//! The flush timer (a disabled 0-interval timeout, armed by the first queued event, disarmed
//! by the flush that leaves the queue empty) owns an `Arc` of this state ([E18](crate::contract#e18)).
//!
//! Locks: the state lock is never held while user code runs, nor by an emit while it arms the
//! timer; a callback's own lock is held only while that callback runs (so its free waits).

use crate::vtable::Schedule;
use std::borrow::Cow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use super::event::EventSet;
use super::kind::bit;
use super::slot::{Caller, FreeBatch, Handler, Panic};
use super::state::State;
use crate::callback::TimerCallback;
use crate::error::{Error, Rejected, Result};
use crate::handle::Loop;
use crate::id::CallbackId;

pub(crate) type KeyCheck<S> = Box<dyn Fn(&<S as EventSet>::Key) -> bool + Send + Sync>;
pub(crate) type TransitionHook<S> = Box<dyn FnMut(<S as EventSet>::Kind, bool) + Send>;
pub(crate) type Fallback<S> = Box<dyn FnMut(<S as EventSet>::Kind, &S) + Send>;

/// What a registration asks for, besides its callback.
pub(crate) struct Spec<S: EventSet> {
    pub(crate) kinds: u64,
    pub(crate) object: Option<S::Key>,
    pub(crate) keyed: Option<Cow<'static, str>>,
}

pub(crate) struct Shared<S: EventSet> {
    lp: Loop,
    state: Mutex<State<S>>,
    /// Mirrors `State::closed` for the flush's lock-free checks ([E17](crate::contract#e17)).
    closed: AtomicBool,
    all_bits: u64,
    fallback_bits: u64,
    key_check: Option<KeyCheck<S>>,
    hook: Mutex<Option<TransitionHook<S>>>,
    fallback: Mutex<Option<Fallback<S>>>,
}

impl<S: EventSet> Shared<S> {
    pub(crate) fn new(
        lp: Loop,
        all_bits: u64,
        key_check: Option<KeyCheck<S>>,
        hook: Option<TransitionHook<S>>,
        fallback: Option<(u64, Fallback<S>)>,
    ) -> Result<Arc<Self>> {
        let fallback_bits = fallback.as_ref().map_or(0, |(bits, _)| *bits);
        let shared = Arc::new(Shared {
            lp,
            state: Mutex::new(State::new(fallback_bits)),
            closed: AtomicBool::new(false),
            all_bits,
            fallback_bits,
            key_check,
            hook: Mutex::new(hook),
            fallback: Mutex::new(fallback.map(|(_, f)| f)),
        });
        if fallback_bits != 0 {
            // A fallback listens from the start: the flush timer lives as long as the registry.
            let mut st = shared.lock();
            shared.ensure_timer(&mut st)?;
        }
        Ok(shared)
    }

    pub(crate) fn event_loop(&self) -> &Loop {
        &self.lp
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the (disabled) flush timer if there is none.
    fn ensure_timer(self: &Arc<Self>, st: &mut State<S>) -> Result<()> {
        if st.timer.is_some() {
            return Ok(());
        }
        let shared = Arc::clone(self);
        let flush = TimerCallback::new(move |_| shared.flush()).named("anyloop registry flush");
        st.timer = Some(self.lp.add_timer(Schedule::Disabled, flush)?);
        st.armed = false;
        Ok(())
    }

    /// Registers a callback ([E1](crate::contract#e1)–[E4](crate::contract#e4)). `wrap` turns the user's callback into a handler only once
    /// the registration cannot fail any more, so a refusal hands it back untouched ([E3](crate::contract#e3)).
    pub(crate) fn register<F>(
        self: &Arc<Self>,
        spec: Spec<S>,
        callback: F,
        wrap: impl FnOnce(F) -> Handler<S>,
    ) -> Result<CallbackId, Rejected<F>> {
        let refuse = |what| Error::InvalidArgument { what };
        if spec.kinds == 0 {
            return Err(Rejected::new(
                refuse("an empty kind set never fires (E21)"),
                callback,
            ));
        }
        if spec.kinds & !self.all_bits != 0 {
            return Err(Rejected::new(
                refuse("a kind outside the event set"),
                callback,
            ));
        }
        if let (Some(check), Some(object)) = (&self.key_check, &spec.object) {
            // The library's check is its own code: run it before taking the lock.
            let owned = catch_unwind(AssertUnwindSafe(|| check(object))).unwrap_or(false);
            if !owned {
                return Err(Rejected::new(
                    refuse("the object filter names an object of another registry"),
                    callback,
                ));
            }
        }
        let id = {
            let mut st = self.lock();
            if st.closed {
                return Err(Rejected::new(Error::Closed, callback));
            }
            if st.loop_gone {
                return Err(Rejected::new(Error::LoopGone, callback));
            }
            if let Some(keyed) = &spec.keyed {
                if st.has_keyed(spec.kinds, keyed, spec.object.as_ref()) {
                    let what = "a keyed callback with the same kinds and object filter";
                    return Err(Rejected::new(Error::AlreadyRegistered { what }, callback));
                }
            }
            let Some(id) = CallbackId::try_allocate() else {
                let what = "event callback ids";
                return Err(Rejected::new(Error::Exhausted { what }, callback));
            };
            if let Err(error) = self.ensure_timer(&mut st) {
                return Err(Rejected::new(error, callback));
            }
            st.insert(id, spec.kinds, spec.object, spec.keyed, wrap(callback));
            id
        };
        tracing::trace!(%id, kinds = spec.kinds, "event callback registered");
        self.report_transitions();
        Ok(id)
    }

    /// Deregisters a callback ([E10](crate::contract#e10)–[E12](crate::contract#e12), [E14](crate::contract#e14), [E28](crate::contract#e28)).
    pub(crate) fn deregister(&self, id: CallbackId) -> Result<usize> {
        let (slot, remaining, discarded) = {
            let mut st = self.lock();
            if st.closed {
                return Err(Error::not_found(id));
            }
            let (slot, remaining) = st.remove(id).ok_or_else(|| Error::not_found(id))?;
            slot.kill();
            let mut discarded = None;
            if !st.needs_timer() {
                // The last callback is gone: drop the queue and the timer (E14).
                discarded = Some(st.discard_queue());
                if let Some(timer) = st.timer.take() {
                    let _ = self.lp.remove_timer(timer);
                }
                st.armed = false;
            }
            (slot, remaining, discarded)
        };
        tracing::trace!(%id, remaining, "event callback deregistered");
        self.free_later(FreeBatch {
            slots: vec![slot],
            extras: Vec::new(),
        });
        self.report_transitions();
        drop(discarded);
        Ok(remaining)
    }

    /// Queues an event ([E5](crate::contract#e5)–[E7](crate::contract#e7), [E27](crate::contract#e27)); false when it was dropped (nobody listens, or closed).
    ///
    /// Arming protocol: `armed` is set under the lock by the emit that finds it clear, and
    /// that emit arms the timer *after* unlocking (so the loop thread, woken by the arm, never
    /// waits for the emitter's lock). Only the flush clears `armed`, under the lock and
    /// together with the disarm, when it finds the queue empty; an emit that comes later sees
    /// `armed` clear and arms again, so an event can never be stranded.
    pub(crate) fn emit(&self, event: S) -> bool {
        let kind = event.kind();
        let mut st = self.lock();
        if st.closed || st.loop_gone || !st.listens(kind) {
            drop(st);
            drop(event);
            return false;
        }
        st.push(event);
        let arm = if st.armed { None } else { st.timer };
        st.armed = true;
        drop(st);
        if let Some(timer) = arm {
            if self
                .lp
                .update_timer(timer, Schedule::EVERY_ITERATION)
                .is_err()
            {
                // The timer went with the last callback or with close (and the queue with
                // it, E14, E16) — or the loop is gone and will never flush: then drop the
                // queue and every later event instead of piling them up for nobody.
                let mut st = self.lock();
                if st.timer == Some(timer) {
                    st.loop_gone = true;
                    let discarded = st.discard_queue();
                    drop(st);
                    drop(discarded);
                    return false;
                }
            }
        }
        true
    }

    /// Disarms the flush timer when nothing is queued; called by the flush with the lock held.
    /// Unconditional (not only when `armed`): a late arm from an emit whose event an earlier
    /// flush already delivered must not leave the timer firing forever.
    fn disarm_if_idle(&self, st: &mut State<S>) {
        if st.queued() == 0 {
            if let Some(timer) = st.timer {
                let _ = self.lp.update_timer(timer, Schedule::Disabled);
            }
            st.armed = false;
        }
    }

    /// The flush timer's callback, on the loop thread: delivers the stolen queue.
    fn flush(&self) {
        let (mut batch, first_seq, snapshot) = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            if st.queued() == 0 {
                self.disarm_if_idle(&mut st);
                return;
            }
            let (batch, first_seq) = st.take_batch();
            st.flushing = Some(thread::current().id());
            (batch, first_seq, st.snapshot())
        };
        let mut first_panic: Option<String> = None;
        for (seq, event) in (first_seq..).zip(batch.iter()) {
            if self.closed.load(Ordering::Acquire) {
                break; // E17: nothing after the closing event
            }
            let kind = event.kind();
            let key = event.key();
            let mut matched = false;
            for slot in snapshot.slots(kind) {
                if slot.since > seq || slot.is_dead() || !slot.wants_object(key) {
                    continue;
                }
                match slot.call(kind, event, Caller::Flush) {
                    Ok(ran) => matched |= ran,
                    Err(payload) => note_panic(
                        &mut first_panic,
                        Error::panicked(slot.id, &*payload).to_string(),
                    ),
                }
                if self.closed.load(Ordering::Acquire) {
                    break;
                }
            }
            if !matched {
                if let Err(payload) = self.fall_back(kind, event) {
                    let report = format!("the fallback sink panicked: {}", panic_text(&payload));
                    note_panic(&mut first_panic, report);
                }
            }
        }
        drop(snapshot);
        // Event payloads are dropped here, outside the lock; the buffer is kept for reuse.
        batch.clear();
        {
            let mut st = self.lock();
            st.flushing = None;
            st.recycle(batch);
            // Events emitted during this flush keep the timer armed: a later flush (E13).
            self.disarm_if_idle(&mut st);
        }
        if let Some(report) = first_panic {
            // Re-raised for the loop to report as `CallbackPanicked` of the flush timer,
            // naming the event callback (E23, R54); the flush itself is complete.
            resume_unwind(Box::new(report));
        }
    }

    /// Runs the fallback sink for an event no callback took ([E30](crate::contract#e30)). The sink is taken out of
    /// its slot while it runs, so it may call anything on the registry, close included.
    fn fall_back(&self, kind: S::Kind, event: &S) -> std::result::Result<(), Panic> {
        if self.fallback_bits & bit(kind) == 0 {
            return Ok(());
        }
        let sink = self
            .fallback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut sink) = sink else {
            return Ok(()); // closed, or running further up this stack
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| sink(kind, event)));
        if !self.is_closed() {
            *self.fallback.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
        }
        outcome
    }

    /// Closes the registry ([E16](crate::contract#e16), [E17](crate::contract#e17)): delivers the closing event synchronously, drops the
    /// queue, removes the timer, frees every callback once through the loop.
    pub(crate) fn close(&self, closing: Option<S>) -> Result<()> {
        let here = thread::current().id();
        let (slots, queue, timer, flushing, orphans) = {
            let mut st = self.lock();
            if st.closed {
                return Ok(());
            }
            st.closed = true;
            self.closed.store(true, Ordering::Release);
            let slots = st.take_all();
            for slot in &slots {
                slot.kill(); // before the closing event: nothing may follow it (E17)
            }
            let queue = st.discard_queue();
            st.armed = false;
            let orphans = std::mem::take(&mut st.orphans);
            (slots, queue, st.timer.take(), st.flushing, orphans)
        };
        drop(queue);
        let mut outcome = Ok(());
        if let Some(event) = closing {
            // A callback running further up this thread's stack (close from inside a
            // callback) is skipped; one running on the loop thread is waited for.
            let caller = if flushing == Some(here) {
                Caller::CloseSkipBusy
            } else {
                Caller::CloseWait
            };
            let kind = event.kind();
            let mut matched = false;
            for slot in &slots {
                if slot.kinds & bit(kind) == 0 || !slot.wants_object(event.key()) {
                    continue;
                }
                match slot.call(kind, &event, caller) {
                    Ok(ran) => matched |= ran,
                    Err(payload) => {
                        if outcome.is_ok() {
                            outcome = Err(Error::panicked(slot.id, &*payload));
                        }
                    }
                }
            }
            if !matched {
                if let Err(payload) = self.fall_back(kind, &event) {
                    let text = panic_text(&payload);
                    tracing::error!("the fallback sink panicked on the closing event: {text}");
                }
            }
        }
        if let Some(timer) = timer {
            let _ = self.lp.remove_timer(timer);
        }
        self.report_transitions();
        let mut extras: Vec<Box<dyn Send>> = Vec::new();
        if let Some(sink) = self
            .fallback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            extras.push(Box::new(sink));
        }
        if let Some(hook) = self.hook.lock().unwrap_or_else(|p| p.into_inner()).take() {
            extras.push(Box::new(hook));
        }
        tracing::trace!(callbacks = slots.len(), "event registry closed");
        self.free_later(FreeBatch { slots, extras });
        // Batches the loop refused earlier (it was gone) and, now, any refused one: here.
        let late = std::mem::take(&mut self.lock().orphans);
        for orphan in orphans.into_iter().chain(late) {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(orphan))) {
                tracing::error!("a callback's drop panicked: {}", panic_text(&payload));
            }
        }
        outcome
    }

    /// Hands callbacks to the loop's deferred-free machinery: the state of a disabled timer
    /// removed at once, dropped by the loop on its thread after the running dispatch ([E11](crate::contract#e11)).
    fn free_later(&self, batch: FreeBatch<S>) {
        if batch.slots.is_empty() && batch.extras.is_empty() {
            return;
        }
        let carrier = TimerCallback::new(move |_| {
            let _ = &batch;
        })
        .named("anyloop registry frees");
        match self.lp.add_timer(Schedule::Disabled, carrier) {
            Ok(id) => {
                let _ = self.lp.remove_timer(id);
            }
            // The loop is gone: keep them for close, which drops them on its thread (E16).
            Err(rejected) => self.lock().orphans.push(rejected.into_callback()),
        }
    }

    /// Reports per-kind transitions to the library's hook, in order, one at a time, with no
    /// lock held ([E15](crate::contract#e15)). A hook that registers or deregisters has its transitions reported
    /// after it returns, by the same loop.
    fn report_transitions(&self) {
        loop {
            let next = {
                let mut st = self.lock();
                if st.hooks_running {
                    // Another frame or thread is reporting; it will report ours too.
                    return;
                }
                match st.next_transition() {
                    Some(transition) => {
                        st.hooks_running = true;
                        transition
                    }
                    None => return,
                }
            };
            let hook = self.hook.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(mut hook) = hook {
                let (kind, listened) = next;
                if catch_unwind(AssertUnwindSafe(|| hook(kind, listened))).is_err() {
                    tracing::error!(?kind, listened, "the registry's transition hook panicked");
                }
                let mut slot = self.hook.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() && !self.closed.load(Ordering::Acquire) {
                    *slot = Some(hook);
                }
            }
            self.lock().hooks_running = false;
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Keeps the first caught panic's report, traces the others.
fn note_panic(first: &mut Option<String>, report: String) {
    if first.is_none() {
        *first = Some(report);
    } else {
        tracing::error!("{report}");
    }
}

/// The text of a panic payload.
fn panic_text(payload: &Panic) -> String {
    match Error::panicked(CallbackId::allocate(), &**payload) {
        Error::CallbackPanicked { message, .. } => message,
        _ => String::new(),
    }
}
