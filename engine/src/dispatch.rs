//! The loop iteration: from the kernel's readiness report to the user's callback.
//!
//! One [`Engine::run_once`] is, top to bottom:
//!
//! 1. **Frees.** Callbacks removed since the last iteration are dropped ([R25](anyloop::contract#r25)), with no lock
//!    held ([R24](anyloop::contract#r24)), in removal order ([R26](anyloop::contract#r26)).
//! 2. **Prepare.** Under the lock: the probe list (always-ready fds, [D4](anyloop::contract#d4); for an edge-triggered
//!    substrate also the fds dispatched last iteration, [R8](anyloop::contract#r8)) and the wait timeout from the
//!    earliest timer deadline (zero when a timer is already due, e.g. a 0-interval timer,
//!    [R27](anyloop::contract#r27); zero when quit is pending).
//! 3. **Wait.** [`Poller::wait`] without the lock (with it when the timeout is zero: a
//!    hosted engine's iteration, a due timer; nothing to wait for, so no acquisition is spent
//!    on it). It consumes the wake-up before returning, so any op that lands after this point
//!    leaves a new wake-up behind ([R40](anyloop::contract#r40)).
//! 4. **Collect.** Under the lock: expired timers in deadline order, ties in creation order
//!    ([R33](anyloop::contract#r33)), each re-armed from *now* (no catch-up, [R30](anyloop::contract#r30)); then each ready fd is fanned out to
//!    its watches in registration order, one batch entry per watch whose *current* interest
//!    matches ([R11](anyloop::contract#r11), [R12](anyloop::contract#r12)). Duplicate reports for one fd are merged first. An fd reported
//!    invalid (`POLLNVAL`) gets `ERROR` once per enabled watch, which is then disabled ([R52](anyloop::contract#r52)).
//!    Only what exists now is collected: anything added by a callback waits for the next
//!    iteration ([R17](anyloop::contract#r17), [R37](anyloop::contract#r37)).
//! 5. **Dispatch.** For each batch entry, under the lock: is the registration still there
//!    (same id in the slot, [R15](anyloop::contract#r15), [R19](anyloop::contract#r19)), still enabled, and for a timer not updated since
//!    collection ([R34](anyloop::contract#r34))? Then the events are re-filtered by the current interest ([R18](anyloop::contract#r18)), the
//!    closure is taken out of its slot, and the lock is released while it runs ([R43](anyloop::contract#r43)), inside
//!    a panic catcher ([R54](anyloop::contract#r54)). Afterwards it goes back to its slot, or — if it was removed
//!    while it ran — to its reserved place in the free list ([R16](anyloop::contract#r16), [R22](anyloop::contract#r22)).
//! 6. **Frees** again, so that everything removed during this iteration is dropped before
//!    `run_once` returns ([R25](anyloop::contract#r25)).
//!
//! Order within an iteration ([R58](anyloop::contract#r58)): timers first (by deadline, then creation), then fd
//! watches (by fd in the order the substrate reported them, watches on one fd in
//! registration order). Tests must only rely on [R33](anyloop::contract#r33).

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use super::clock::{deadline_after, poll_timeout, MAX_WAIT};
use super::panic::catch_user_panic;
use super::poller::{FdCheck, Poller, Probe, Readiness, Registered, Registrar, Token};
use super::table::{current_thread, Freed, Kernel, Running, Shared, State};
use anyloop::IoEvents;
use anyloop::Loop;
use anyloop::LoopStats;
use anyloop::{Error, Result};
use anyloop::{Quitter, RegistrationId, Schedule, TimerId, WatchId};

/// One callback to run in this iteration, as collected.
#[derive(Debug, Clone, Copy)]
enum Item {
    Timer {
        slot: usize,
        id: TimerId,
        epoch: u32,
        /// A one-shot firing: the timer is already disabled.
        once: bool,
    },
    Handle {
        slot: usize,
        id: WatchId,
        fd: std::os::fd::RawFd,
        /// Fd-level readiness; each watch gets its own intersection at dispatch time.
        ready: IoEvents,
        /// `ERROR` for an fd found invalid: delivered as is if the watch is still enabled at
        /// dispatch, which then disables it.
        forced: bool,
    },
}

/// A complete backend core, generic over the OS layer: the registration table, the timer
/// heap, the deferred frees and the dispatch cycle. A backend supplies a [`Poller`] (and its
/// [`Registrar`](super::Registrar)) and wraps this in its own loop type.
///
/// Dropping the engine frees every remaining callback exactly once, on the dropping thread
/// ([R48](anyloop::contract#r48)); [`Loop`] handles that outlive it answer [`Error::LoopGone`].
pub struct Engine<P: Poller> {
    shared: Arc<Shared<P::Registrar>>,
    poller: P,
    work: Work,
}

/// The loop thread's reusable buffers, kept apart from the shared table so that an
/// iteration borrows both at once (no `Arc` clone per iteration).
#[derive(Default)]
struct Work {
    events: Vec<Readiness>,
    probes: Vec<Probe>,
    /// Fd slots dispatched in the last iteration (edge-triggered substrates only).
    recheck: Vec<Token>,
    touched: Vec<usize>,
    /// Reports for torn-down registrations, this iteration and the previous one ([B62](anyloop::contract#b62)).
    stale: Vec<Token>,
    stale_before: Vec<Token>,
    batch: Vec<Item>,
    freeing: Vec<Freed>,
    /// The last wait reported readiness (see `Engine::last_wait_found`).
    found: bool,
    /// Counts collections, to recognise an fd reported ready in consecutive iterations
    /// (wrapping, skipping 0; 32 bits because every fd slot keeps one, W6: after 2^32
    /// iterations an aliased round costs at most one needless identity check).
    round: u32,
}

impl<P: Poller> std::fmt::Debug for Engine<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Clears the loop-thread mark if `run_once` leaves early (an error from the wait); the
/// normal path clears it itself under a lock it holds anyway, and disarms this.
struct LoopThread<'a, R: super::Registrar> {
    shared: &'a Shared<R>,
    armed: bool,
}

impl<R: super::Registrar> Drop for LoopThread<'_, R> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lock().loop_thread = None;
        }
    }
}

impl<P: Poller> Engine<P> {
    /// Builds an engine from the two halves of an OS layer.
    pub fn new(poller: P, registrar: P::Registrar) -> Self {
        Engine {
            shared: Arc::new(Shared::new(registrar)),
            poller,
            work: Work {
                events: Vec::with_capacity(256),
                ..Work::default()
            },
        }
    }

    /// The vtable handle libraries use; any number, from any thread.
    pub fn handle(&self) -> Loop {
        Loop::from_arc(self.shared.clone())
    }

    /// The table shared with the [`Loop`] handles (it implements [`anyloop::Backend`]): for a
    /// backend that wraps the vtable in its own [`Backend`](anyloop::Backend) (to add a
    /// side effect to every op, as the tokio backend does) while the engine itself is owned
    /// elsewhere.
    pub fn shared(&self) -> &Arc<Shared<P::Registrar>> {
        &self.shared
    }

    /// The handle that stops [`run`](Self::run) from any thread ([R47](anyloop::contract#r47)).
    pub fn quitter(&self) -> Quitter {
        let shared = self.shared.clone();
        Quitter::new(move || shared.request_quit())
    }

    /// Consumes a pending quit request ([R47](anyloop::contract#r47)): `true` once per request.
    pub fn take_quit(&self) -> bool {
        self.shared.take_quit()
    }

    /// Asks the loop to stop after the current iteration ([R47](anyloop::contract#r47)).
    pub fn quit(&self) {
        self.shared.request_quit();
    }

    /// Counts for diagnosis ([R57](anyloop::contract#r57)).
    pub fn stats(&self) -> LoopStats {
        self.shared.lock().stats()
    }

    /// The OS layer, for backend-specific diagnostics.
    pub fn poller(&self) -> &P {
        &self.poller
    }

    /// Whether the last iteration's wait on the poller reported anything ready (a wake-up alone
    /// does not count: the wait consumed it). `false` also when the wait was skipped.
    pub(crate) fn last_wait_found(&self) -> bool {
        self.work.found
    }

    /// Iterates until [`quit`](Self::quit) is called. A quit issued before `run` is not lost:
    /// `run` then returns without iterating. `run` consumes the quit request.
    ///
    /// # Errors
    /// The first error of an iteration (see [`run_once`](Self::run_once)); the loop stays
    /// usable and `run` can be called again.
    pub fn run(&mut self) -> Result<()> {
        loop {
            if self.shared.quit.swap(false, Ordering::SeqCst) {
                return Ok(());
            }
            self.run_once(None)?;
        }
    }

    /// Runs frees that are pending (e.g. removals made while the loop was not running) without
    /// polling. Returns how many ran.
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] if a free panicked (the others still ran).
    pub fn drain(&mut self) -> Result<usize> {
        let mut first_error = None;
        let count = self.work.run_frees(&self.shared, &mut first_error);
        first_error.map_or(Ok(count), Err)
    }

    /// One iteration: wait up to `limit` (`None`: until something happens) and dispatch.
    /// Returns the number of callbacks run.
    ///
    /// # Errors
    /// [`Error::CallbackPanicked`] naming the first registration whose callback or free
    /// panicked (the rest of the iteration still ran, later panics are traced; the loop
    /// stays usable, [R54](anyloop::contract#r54)); [`Error::Os`] if the wait itself failed.
    pub fn run_once(&mut self, limit: Option<Duration>) -> Result<usize> {
        self.iterate(limit, false)
    }

    /// A hosted engine's iteration (GLib, calloop, tokio, a custom loop), after the host's
    /// poll ([`HostedEngine::dispatch`](crate::HostedEngine::dispatch)): as
    /// [`run_once`](Self::run_once) with `Some(Duration::ZERO)`, except that when the host
    /// found the poller's fd *not* readable (`poller_ready` false: the host dispatches for a
    /// due timer, a pending free or a quit) and no fd needs a probe, the engine does not ask
    /// its own poller: the host's poll just showed that nothing is ready there, so that wait
    /// would be a kernel call that finds nothing. A timer firing then costs the host's poll
    /// alone, as it does on the host's own timers. Readiness that arrives after the host's
    /// poll is not lost: the poller's fd is level-triggered in the host, whose next poll
    /// returns at once.
    ///
    /// # Errors
    /// As [`run_once`](Self::run_once).
    pub(crate) fn run_hosted(&mut self, poller_ready: bool) -> Result<usize> {
        self.iterate(Some(Duration::ZERO), !poller_ready)
    }

    /// [`run_once`](Self::run_once), skipping the wait when `skip_wait` and nothing needs a
    /// probe (see [`run_hosted`](Self::run_hosted)).
    fn iterate(&mut self, limit: Option<Duration>, skip_wait: bool) -> Result<usize> {
        let Engine {
            shared,
            poller,
            work,
        } = self;
        let shared: &Shared<P::Registrar> = shared;
        let mut first_error = None;
        // The lock is taken three times in an iteration that runs one callback (prepare;
        // collect and dispatch; after the callback, which also closes the iteration), twice
        // when the wait cannot sleep (prepare through dispatch share one): every acquisition
        // costs atomics on the hot path, so phases share them where they can.
        let mut st = shared.lock();
        let here = current_thread();
        st.loop_thread = Some(here);
        // The loop's thread is the one running it (thread-bound callbacks of another thread
        // are not called, below).
        st.home = here;
        // A hosted engine's host poll is over: from here on `loop_thread` decides.
        st.host_waiting = None;
        let mut loop_thread = LoopThread {
            shared,
            armed: true,
        };

        // 1. Frees left over from ops made while the loop was not running. They are user code
        // (a drop may change what the caller waits for), so this iteration then does not block.
        let mut freed_early = false;
        if !st.frees.is_empty() {
            drop(st);
            freed_early = work.run_frees(shared, &mut first_error) > 0;
            st = shared.lock();
        }

        // 2. Prepare.
        // (The common case, no always-ready fd and no re-check, without a call.)
        if st.always_ready.is_empty() && (!P::EDGE_TRIGGERED || work.recheck.is_empty()) {
            work.probes.clear();
        } else {
            work.build_probes(&st, P::EDGE_TRIGGERED);
        }
        let quitting = shared.quit.load(Ordering::SeqCst);
        let timeout = match (st.heap.peek(), limit) {
            _ if quitting || freed_early => Some(Duration::ZERO),
            // A hosted engine's iteration (its host polled already): no clock read here.
            (_, Some(Duration::ZERO)) => Some(Duration::ZERO),
            // No clock read on the pure-fd path.
            (None, None) => None,
            (None, Some(limit)) => Some(limit.min(MAX_WAIT)),
            (Some((deadline, _)), limit) => poll_timeout(Instant::now(), Some(deadline), limit),
        };

        // 3. Wait. Without the lock, so that ops from other threads go on while the loop
        // sleeps; a wait that cannot sleep keeps it: the collection below then needs no
        // second acquisition (the hosted backends' every iteration, a due timer's here).
        work.events.clear();
        let (waited, mut st) = if timeout == Some(Duration::ZERO) {
            if skip_wait && work.probes.is_empty() {
                (Ok(false), st)
            } else {
                (poller.wait(&work.probes, timeout, &mut work.events), st)
            }
        } else {
            drop(st);
            let waited = poller.wait(&work.probes, timeout, &mut work.events);
            (waited, shared.lock())
        };
        work.found = !work.events.is_empty();
        let woken = match waited {
            Ok(woken) => woken,
            Err(err) => {
                drop(st); // before `loop_thread`'s drop takes the lock
                return Err(err);
            }
        };

        // 4. Collect, and 5. dispatch, starting under the same lock.
        if woken {
            st.wake_pending = false;
        }
        if !std::mem::take(&mut st.poll_counted) {
            st.iterations += 1;
        }
        work.collect(&mut st, P::EDGE_TRIGGERED, &shared.registrar);
        if !work.stale.is_empty() || !work.stale_before.is_empty() {
            work.purge_stale(&mut st, &shared.registrar);
        }
        let (count, mut st) = work.dispatch(shared, st, &mut first_error);

        // 6. Frees of everything removed during this iteration.
        if !st.frees.is_empty() {
            drop(st);
            work.run_frees(shared, &mut first_error);
            st = shared.lock();
        }
        // 7. Interest changes made by this iteration's callbacks reach the kernel, coalesced,
        // before anyone waits again.
        if !st.dirty.is_empty() {
            st.flush_dirty(&shared.registrar);
        }
        st.loop_thread = None;
        loop_thread.armed = false;
        drop(st);
        first_error.map_or(Ok(count), Err)
    }
}

impl Work {
    fn build_probes(&mut self, st: &State, edge_triggered: bool) {
        self.probes.clear();
        for &key in &st.always_ready {
            if let Some(slot) = st.fds.get(key) {
                self.probes.push(Probe {
                    token: slot.token(key),
                    fd: slot.fd,
                    interest: slot.interest(),
                });
            }
        }
        if edge_triggered {
            for token in self.recheck.drain(..) {
                match st.fds.get(token.key()) {
                    Some(slot)
                        if slot.generation == token.generation()
                            && slot.kernel == Kernel::Registered
                            && !slot.interest().is_empty() =>
                    {
                        self.probes.push(Probe {
                            token,
                            fd: slot.fd,
                            interest: slot.interest(),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    fn collect<R: Registrar>(&mut self, st: &mut State, edge_triggered: bool, registrar: &R) {
        self.batch.clear();
        self.round = self.round.wrapping_add(1).max(1);
        let round = self.round;

        // Timers first: everything due now, earliest first (R33).
        if !st.heap.is_empty() {
            let now = Instant::now();
            while let Some(slot) = st.heap.pop_expired(now) {
                let Some(timer) = st.timers.get_mut(slot) else {
                    continue;
                };
                let once = timer.is_one_shot();
                if once {
                    // A one-shot timer fires once and is disabled from now on (R27). Its
                    // epoch moves on with the change, so the batch entry below is the one
                    // firing; an update by an earlier callback moves it again and cancels it.
                    timer.set_schedule(Schedule::Disabled);
                    timer.epoch = timer.epoch.wrapping_add(1);
                }
                self.batch.push(Item::Timer {
                    slot,
                    id: timer.id,
                    epoch: timer.epoch,
                    once,
                });
            }
            // Re-arm only after the pop loop: a 0-interval timer re-armed at `now` would
            // otherwise be popped again at once. Next deadline counted from this firing:
            // no catch-up (R30).
            for item in &self.batch {
                if let Item::Timer { slot, .. } = *item {
                    if let Some(timer) = st.timers.get(slot) {
                        if let Some(period) = timer.period() {
                            let seq = timer.seq();
                            st.heap.schedule(slot, deadline_after(now, period), seq);
                        }
                    }
                }
            }
        }

        // Merge the reports per fd (a probe and a kernel event may both name one fd), after
        // the slots found dead outside a report since the last iteration (retired, or at a
        // rebuild): their watches are told ERROR (R52).
        self.touched.clear();
        for (key, generation) in st.error_due.drain(..) {
            if let Some(slot) = st.fds.get_mut(key) {
                if slot.generation == generation && slot.add_report(IoEvents::ERROR, true) {
                    self.touched.push(key);
                }
            }
        }
        for report in &self.events {
            let key = report.token.key();
            let Some(slot) = st.fds.get_mut(key) else {
                self.stale.push(report.token);
                continue;
            };
            if slot.generation != report.token.generation() {
                // A report for a registration torn down since (R19).
                self.stale.push(report.token);
                continue;
            }
            if slot.add_report(report.events, report.invalid) {
                self.touched.push(key);
            }
        }

        // Fan out to the watches, in registration order.
        for &key in &self.touched {
            let State {
                fds,
                watches,
                always_ready,
                identities,
                crowds,
                next_generation,
                ..
            } = &mut *st;
            let Some(slot) = fds.get_mut(key) else {
                continue;
            };
            let (ready, mut invalid) = slot.take_report();
            // As reported (the identity check below may move the generation on).
            let token = slot.token(key);
            // (Round 0 is "never reported".)
            let consecutive = slot.last_round != 0 && slot.last_round.wrapping_add(1) == round;
            slot.last_round = round;
            let due =
                slot.kernel == Kernel::Registered && slot.identity_check_due(consecutive, round);
            if !invalid && !slot.interest().is_empty() {
                invalid = match check_fd_identity(slot, identities, key, due, registrar) {
                    FdCheck::Same => {
                        if due {
                            slot.identity_confirmed();
                        }
                        false
                    }
                    FdCheck::Closed | FdCheck::Replaced => {
                        if slot.kernel == Kernel::Registered {
                            // The kernel may still hold the old file under this token and
                            // cannot drop it by number: a new generation makes its reports
                            // stale, and stale reports in consecutive iterations rebuild the
                            // kernel state (see `purge_stale`, B62).
                            *next_generation = next_generation.wrapping_add(1);
                            slot.generation = *next_generation;
                        }
                        true
                    }
                };
            }
            let mut dispatched = false;
            for w in slot.watch_keys(key, crowds) {
                let Some(handle) = watches.get_mut(w) else {
                    continue;
                };
                if invalid {
                    // POLLNVAL: ERROR once, then the watch is disabled so it cannot spin
                    // (R52). The disable happens at dispatch, where the interest in force
                    // then decides whether the ERROR is delivered at all (R10, R18): an
                    // earlier callback of this iteration may have disabled the watch.
                    if !handle.interest.is_empty() {
                        self.batch.push(Item::Handle {
                            slot: w,
                            id: handle.id,
                            fd: slot.fd,
                            ready: IoEvents::ERROR,
                            forced: true,
                        });
                    }
                } else if !handle.interest.deliverable(ready).is_empty() {
                    dispatched = true;
                    self.batch.push(Item::Handle {
                        slot: w,
                        id: handle.id,
                        fd: slot.fd,
                        ready,
                        forced: false,
                    });
                }
            }
            if invalid {
                tracing::debug!(fd = slot.fd, "fd is not open any more: watches disabled");
                if slot.kernel == Kernel::AlwaysReady {
                    always_ready.retain(|&k| k != key);
                }
                if slot.kernel == Kernel::Registered {
                    registrar.forget(slot.fd, token);
                }
                // Nothing to tell the kernel: it already forgot the fd. (A retired slot stays
                // retired: its number belongs to another slot.)
                if slot.kernel != Kernel::Retired {
                    slot.kernel = Kernel::Gone;
                }
                slot.set_interest(IoEvents::empty());
            } else if edge_triggered && dispatched && slot.kernel == Kernel::Registered {
                self.recheck.push(slot.token(key));
            }
        }
    }

    /// A torn-down registration reported in two consecutive iterations is one the kernel
    /// kept although we removed it: its fd was closed while the file stays open elsewhere,
    /// so it cannot be removed by number ([B62](anyloop::contract#b62)). Level-triggered, it would make every wait
    /// return at once. Rebuild the kernel state from the live registrations instead.
    /// (A single stale report is normal: a removal that raced with the wait.)
    fn purge_stale<R: Registrar>(&mut self, st: &mut State, registrar: &R) {
        let repeated = self
            .stale
            .iter()
            .any(|token| self.stale_before.contains(token));
        std::mem::swap(&mut self.stale, &mut self.stale_before);
        self.stale.clear();
        if !repeated {
            return;
        }
        self.stale_before.clear();
        // The rebuild registers every live fd again *by number*: a number closed and reused
        // by another file since would bring that file in under the old watches (R52). So each
        // is checked against the old kernel state first (one kernel call per fd, in this rare
        // path); the dead ones are not registered again, and their watches are told ERROR.
        let dead: Vec<usize> = st
            .fds
            .iter()
            .filter(|(key, slot)| {
                slot.kernel == Kernel::Registered
                    && !matches!(
                        registrar.verify(slot.fd, slot.token(*key), slot.interest()),
                        Ok(FdCheck::Same) | Err(_)
                    )
            })
            .map(|(key, _)| key)
            .collect();
        match registrar.reset() {
            Ok(true) => st.resets = st.resets.wrapping_add(1),
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(%err, "resetting the kernel poller failed");
                return;
            }
        }
        tracing::debug!("kernel poller rebuilt to drop a registration of a closed fd");
        let State {
            fds,
            always_ready,
            identities,
            error_due,
            ..
        } = st;
        for (key, slot) in fds.iter_mut() {
            if slot.kernel != Kernel::Registered {
                continue;
            }
            if dead.contains(&key) {
                slot.kernel = Kernel::Gone;
                error_due.push((key, slot.generation));
                continue;
            }
            slot.kernel = match registrar.register(slot.fd, slot.token(key), slot.interest()) {
                Ok(Registered::Kernel | Registered::Replaced) => Kernel::Registered,
                Ok(Registered::AlwaysReady) => {
                    always_ready.push(key);
                    identities.remember(key, registrar.identity(slot.fd));
                    Kernel::AlwaysReady
                }
                Ok(Registered::Gone) => Kernel::Gone,
                Err(err) => {
                    tracing::warn!(fd = slot.fd, %err, "re-registering after a reset failed");
                    Kernel::Gone
                }
            };
        }
    }

    /// Runs the collected batch. Takes the lock held since collection and hands it back, so
    /// that the iteration's end needs no extra acquisition.
    fn dispatch<'s, R: Registrar>(
        &mut self,
        shared: &'s Shared<R>,
        mut st: MutexGuard<'s, State>,
        first_error: &mut Option<Error>,
    ) -> (usize, MutexGuard<'s, State>) {
        let batch = std::mem::take(&mut self.batch);
        let mut count = 0;
        for item in &batch {
            match *item {
                Item::Timer {
                    slot,
                    id,
                    epoch,
                    once,
                } => {
                    let Some(timer) = st.timers.get_mut(slot) else {
                        continue;
                    };
                    // Removed, disabled or restarted by an earlier callback: not now (R34).
                    if timer.id != id || timer.epoch != epoch || (!once && !timer.is_enabled()) {
                        continue;
                    }
                    if !timer.callback.as_ref().is_some_and(|cb| cb.runs_here()) {
                        record(first_error, off_thread(id.into(), &timer.callback));
                        continue;
                    }
                    let Some(mut callback) = timer.callback.take() else {
                        continue;
                    };
                    st.running = Some(Running {
                        id: id.into(),
                        removed: None,
                    });
                    drop(st);
                    tracing::trace!(%id, name = callback.name(), "dispatch timeout");
                    let outcome = catch_user_panic(id.into(), || callback.call(id))
                        .map_err(|err| named(err, callback.name()));
                    count += 1;
                    st = shared.lock();
                    let running = st.running.take();
                    match (running.and_then(|r| r.removed), st.timers.get_mut(slot)) {
                        (Some(ticket), _) => st.frees.fill(ticket, Freed::Timeout(id, callback)),
                        (None, Some(timer)) if timer.id == id => timer.callback = Some(callback),
                        (None, _) => st.frees.push(Freed::Timeout(id, callback)),
                    }
                    record(first_error, outcome);
                }
                Item::Handle {
                    slot,
                    id,
                    fd,
                    ready,
                    forced,
                } => {
                    let Some(handle) = st.watches.get_mut(slot) else {
                        continue;
                    };
                    if handle.id != id {
                        continue; // Removed (slot reused or not): never started again (R15).
                    }
                    // Filter by the interest as it is *now* (R18): a watch disabled by an
                    // earlier callback of this iteration is silent, even for a forced ERROR.
                    let events = if handle.interest.is_empty() {
                        IoEvents::empty()
                    } else if forced {
                        // The fd is not open any more: this ERROR is the last event (R52).
                        handle.interest = IoEvents::empty();
                        ready
                    } else {
                        handle.interest.deliverable(ready)
                    };
                    if events.is_empty() {
                        continue;
                    }
                    if !handle.callback.as_ref().is_some_and(|cb| cb.runs_here()) {
                        record(first_error, off_thread(id.into(), &handle.callback));
                        continue;
                    }
                    let Some(mut callback) = handle.callback.take() else {
                        continue;
                    };
                    st.running = Some(Running {
                        id: id.into(),
                        removed: None,
                    });
                    drop(st);
                    tracing::trace!(%id, fd, ?events, name = callback.name(), "dispatch handle");
                    let outcome = catch_user_panic(id.into(), || callback.call(id, fd, events))
                        .map_err(|err| named(err, callback.name()));
                    count += 1;
                    st = shared.lock();
                    let running = st.running.take();
                    match (running.and_then(|r| r.removed), st.watches.get_mut(slot)) {
                        (Some(ticket), _) => st.frees.fill(ticket, Freed::Handle(id, callback)),
                        (None, Some(handle)) if handle.id == id => handle.callback = Some(callback),
                        (None, _) => st.frees.push(Freed::Handle(id, callback)),
                    }
                    record(first_error, outcome);
                }
            }
        }
        self.batch = batch;
        self.batch.clear();
        (count, st)
    }

    /// Drops every pending free, outside the lock, until none is left (a free may remove
    /// more registrations). Returns how many ran.
    fn run_frees<R: Registrar>(
        &mut self,
        shared: &Shared<R>,
        first_error: &mut Option<Error>,
    ) -> usize {
        let mut count = 0;
        loop {
            let mut freeing = std::mem::take(&mut self.freeing);
            shared.lock().frees.take_ready(&mut freeing);
            if freeing.is_empty() {
                self.freeing = freeing;
                return count;
            }
            for freed in freeing.drain(..) {
                let id = freed.id();
                tracing::trace!(%id, name = freed.name(), "free");
                record(first_error, catch_user_panic(id, move || drop(freed)));
                count += 1;
            }
            self.freeing = freeing;
        }
    }
}

impl<P: Poller> Drop for Engine<P> {
    fn drop(&mut self) {
        let mut freeing = Vec::new();
        self.shared
            .lock()
            .tear_down(&self.shared.registrar, &mut freeing);
        // Lock released: a free may call the vtable (it gets LoopGone).
        for freed in freeing {
            let id = freed.id();
            if let Err(err) = catch_user_panic(id, move || drop(freed)) {
                tracing::error!(%err, "a free panicked during loop destruction");
            }
        }
    }
}

/// The error for a due thread-bound callback of another thread (it is not called, [R42](anyloop::contract#r42));
/// `Ok` when there is no callback to call (it runs right now, further up the stack).
fn off_thread<C>(id: RegistrationId, callback: &Option<C>) -> Result<()> {
    match callback {
        None => Ok(()),
        Some(_) => Err(Error::WrongThread {
            id: Some(id),
            what:
                "a thread-bound callback was due, but the loop runs on another thread: not called",
        }),
    }
}

/// Adds the registration's debug name ([R56](anyloop::contract#r56)) to a panic report.
fn named(err: Error, name: Option<&str>) -> Error {
    match (err, name) {
        (Error::CallbackPanicked { id, message }, Some(name)) => Error::CallbackPanicked {
            id,
            message: format!("{message} (in callback {name:?})"),
        },
        (err, _) => err,
    }
}

/// Keeps the first error of an iteration; traces the others ([R54](anyloop::contract#r54)).
#[inline]
fn record(first_error: &mut Option<Error>, outcome: Result<()>) {
    if let Err(err) = outcome {
        record_error(first_error, err);
    }
}

/// [`record`]'s cold half.
#[cold]
fn record_error(first_error: &mut Option<Error>, err: Error) {
    tracing::error!(%err, "callback failed");
    if first_error.is_none() {
        *first_error = Some(err);
    }
}

/// Whether a reported fd still names the file its watches were registered for
/// ([R52](anyloop::contract#r52)). Costs a syscall, so it runs only when it can matter: for an
/// fd probed by number (always ready, e.g. a regular file), on every report, since a number
/// reused by another file would otherwise be probed as if it were the old one; for an fd the
/// kernel tracks, when `due` (see `FdSlot::identity_check_due`): reported ready in consecutive
/// iterations, which is how a closed number whose file stays open elsewhere (a dup, a forked
/// child, an fd passed over a socket) shows up, level-triggered, on every wait, and then ever
/// more rarely while it stays ready (at least once every 128 iterations), unless a kernel call
/// since the last report checked it already. Reports in between are of the registered file
/// (the kernel keys its registrations by file), never of a file that reused the number.
fn check_fd_identity<R: Registrar>(
    slot: &super::table::FdSlot,
    identities: &super::table::Identities,
    key: usize,
    due: bool,
    registrar: &R,
) -> FdCheck {
    match slot.kernel {
        Kernel::AlwaysReady => match (identities.get(key), registrar.identity(slot.fd)) {
            (None, _) => FdCheck::Same,
            (Some(was), Some(now)) if *was == now => FdCheck::Same,
            (Some(_), Some(_)) => FdCheck::Replaced,
            (Some(_), None) => FdCheck::Closed,
        },
        Kernel::Registered if due => registrar
            .verify(slot.fd, slot.token(key), slot.interest())
            .unwrap_or_else(|err| {
                tracing::warn!(fd = slot.fd, %err, "verifying a ready fd failed");
                FdCheck::Same
            }),
        _ => FdCheck::Same,
    }
}
