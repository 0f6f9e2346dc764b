//! The registration table shared by the loop thread and every [`Loop`](anyloop::Loop) handle,
//! and the six vtable operations on it.
//!
//! Everything lives behind one mutex, held only for bookkeeping and kernel registration calls,
//! never around user code (contract [R43](anyloop::contract#r43)). An id carries its slot as
//! a tag (no hash lookup); the tables are [`PagedSlab`]s, whose storage never moves as they
//! grow (W6). Slots are reused, ids never are ([R1](anyloop::contract#r1)), and every later check compares the id stored in the slot, so a
//! reused slot can never be mistaken for the registration that used to live there ([B40](anyloop::contract#b40), [B44](anyloop::contract#b44)).
//!
//! Kernel registrations are per fd, not per watch: an [`FdSlot`] holds the watches on one fd
//! (in registration order) and the union of their interests, which is what the kernel is told
//! ([R11](anyloop::contract#r11)). Changes are made eagerly, inside the operation, so that a library that removes its
//! watch before closing the fd ([R53](anyloop::contract#r53)) never leaves a kernel registration behind, even when the
//! fd's file lives on elsewhere (epoll keeps reporting such a file, [B62](anyloop::contract#b62)).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::clock::{deadline_after, NextIteration};

use super::fd_index::FdIndex;
pub(crate) use super::fd_slot::{Crowds, FdSlot, Identities, Kernel};
use super::frees::{DeferredFrees, FreeTicket};
use super::heap::TimerHeap;
use super::paged::PagedSlab;
use super::poller::{FdCheck, Registered, Registrar};
use anyloop::IoEvents;
use anyloop::{Backend, LoopStats, Schedule};
use anyloop::{Error, Rejected, Result};
use anyloop::{RegistrationId, TimerId, WatchId};
use anyloop::{TimerCallback, WatchCallback};

/// A removed callback waiting to be dropped, with the id it was registered under (for traces
/// and for [`Error::CallbackPanicked`] if its drop panics).
pub(crate) enum Freed {
    Handle(WatchId, WatchCallback),
    Timeout(TimerId, TimerCallback),
}

impl Freed {
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Freed::Handle(_, cb) => cb.name(),
            Freed::Timeout(_, cb) => cb.name(),
        }
    }

    pub(crate) fn id(&self) -> RegistrationId {
        match self {
            Freed::Handle(id, _) => (*id).into(),
            Freed::Timeout(id, _) => (*id).into(),
        }
    }
}

impl HandleSlot {
    /// The slot of the watch's fd in [`State::fds`].
    pub(crate) fn fd_key(&self) -> usize {
        self.fd_key as usize
    }
}

pub(crate) struct HandleSlot {
    pub(crate) id: WatchId,
    /// The slot of the watch's fd in [`State::fds`] (which holds the fd number). 32 bits: the
    /// table holds fewer registrations than ids have tag bits for, and a watch slot is paid per
    /// watch (W6).
    fd_key: u32,
    pub(crate) interest: IoEvents,
    /// `None` while the callback runs (the loop holds it, [R20](anyloop::contract#r20), [R43](anyloop::contract#r43)).
    pub(crate) callback: Option<WatchCallback>,
}

/// A timer's [`Schedule`] kind, kept in the two high bits of [`TimerSlot`]'s nanoseconds
/// field (a nanosecond count below one second needs 30 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Disabled = 0,
    Every = 1,
    Once = 2,
}

/// Where [`Kind`] sits in `TimerSlot::nanos_kind`.
const KIND_SHIFT: u32 = 30;
const NANOS_MASK: u32 = (1 << KIND_SHIFT) - 1;

pub(crate) struct TimerSlot {
    pub(crate) id: TimerId,
    /// The schedule's delay, whole seconds (zero when disabled); see [`TimerSlot::schedule`].
    /// Kept as seconds here plus nanoseconds and the kind packed in `nanos_kind`, rather than
    /// a `Schedule` (24 bytes) or a `Duration` (16 with its padding): a slot per timer, W6.
    delay_secs: u64,
    /// Bits 0..30: the delay's nanoseconds; bits 30..32: the [`Kind`].
    nanos_kind: u32,
    /// Bumped by every update, so a firing collected before an update is dropped
    /// ([R29](anyloop::contract#r29), [R34](anyloop::contract#r34)). Compared for equality
    /// only, so wrapping is harmless.
    pub(crate) epoch: u32,
    pub(crate) callback: Option<TimerCallback>,
}

impl TimerSlot {
    pub(crate) fn new(id: TimerId, schedule: Schedule, callback: TimerCallback) -> Self {
        let mut slot = TimerSlot {
            id,
            delay_secs: 0,
            nanos_kind: 0,
            epoch: 0,
            callback: Some(callback),
        };
        slot.set_schedule(schedule);
        slot
    }

    fn kind(&self) -> Kind {
        match self.nanos_kind >> KIND_SHIFT {
            1 => Kind::Every,
            2 => Kind::Once,
            _ => Kind::Disabled,
        }
    }

    fn delay(&self) -> Duration {
        Duration::new(self.delay_secs, self.nanos_kind & NANOS_MASK)
    }

    /// The schedule in force.
    pub(crate) fn schedule(&self) -> Schedule {
        match self.kind() {
            Kind::Disabled => Schedule::Disabled,
            Kind::Every => Schedule::Every(self.delay()),
            Kind::Once => Schedule::Once(self.delay()),
        }
    }

    pub(crate) fn set_schedule(&mut self, schedule: Schedule) {
        let (kind, delay) = match schedule {
            Schedule::Every(delay) => (Kind::Every, delay),
            Schedule::Once(delay) => (Kind::Once, delay),
            Schedule::Disabled => (Kind::Disabled, Duration::ZERO),
        };
        self.delay_secs = delay.as_secs();
        // `subsec_nanos` is below 10^9 < 2^30: it never reaches the kind's bits.
        self.nanos_kind = (delay.subsec_nanos() & NANOS_MASK) | ((kind as u32) << KIND_SHIFT);
    }

    /// Creation sequence: ties between equal deadlines fire in creation order
    /// ([R33](anyloop::contract#r33)). The id's serial number is it: it comes from a
    /// process-wide counter, and a loop takes a timer's id under its lock as it adds the
    /// timer, so within one loop a later timer always has a larger serial (and the slot needs
    /// no counter of its own, W6). Below 2^40 and with the slot below 2^24 (the id's tag),
    /// it always fits the heap's packed entry.
    pub(crate) fn seq(&self) -> u64 {
        self.id.serial()
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.kind() != Kind::Disabled
    }

    pub(crate) fn is_one_shot(&self) -> bool {
        self.kind() == Kind::Once
    }

    /// The period of a periodic timer.
    pub(crate) fn period(&self) -> Option<Duration> {
        (self.kind() == Kind::Every).then(|| self.delay())
    }
}

/// The callback the loop is running right now, if any.
pub(crate) struct Running {
    pub(crate) id: RegistrationId,
    /// Set when the registration was removed while its callback ran: the free's place in
    /// removal order ([R22](anyloop::contract#r22), [R26](anyloop::contract#r26)).
    pub(crate) removed: Option<FreeTicket>,
}

pub(crate) struct State {
    /// The loop was destroyed: every op answers `LoopGone` ([R48](anyloop::contract#r48)).
    pub(crate) gone: bool,
    /// The thread inside `run_once`, if any; ops from other threads wake it ([R40](anyloop::contract#r40), [R41](anyloop::contract#r41)).
    pub(crate) loop_thread: Option<ThreadId>,
    /// Fd slots whose interest a callback changed during the current iteration; their kernel
    /// registration is brought in line once, before the next wait (`flush_dirty`), so that
    /// changes which cancel out within an iteration cost no syscall.
    pub(crate) dirty: Vec<usize>,
    /// The thread of the host loop (GLib, calloop) of a hosted engine while it may block in
    /// the host's poll, i.e. *outside* `run_once`: from the host's prepare step
    /// ([`Engine::prepare_host_wait`](super::Engine::prepare_host_wait)) until its poll is
    /// over ([`Engine::end_host_wait`](super::Engine::end_host_wait) or `run_once`). Ops
    /// from other threads wake it too ([R40](anyloop::contract#r40)).
    pub(crate) host_waiting: Option<ThreadId>,
    /// A wake-up was sent and not yet consumed: later ones are coalesced ([R40](anyloop::contract#r40)).
    pub(crate) wake_pending: bool,
    pub(crate) iterations: u64,
    /// The host's poll was counted in `iterations` by [`Shared::host_awake`]: the engine
    /// iteration that dispatches what that poll found does not count it again.
    pub(crate) poll_counted: bool,
    /// The loop's thread: the one that created the engine, or the last one that ran an
    /// iteration. Thread-bound callbacks may be added there, and only there are they run.
    pub(crate) home: ThreadId,
    pub(crate) watches: PagedSlab<HandleSlot>,
    pub(crate) fds: PagedSlab<FdSlot>,
    pub(crate) fd_index: FdIndex,
    /// Fd slots in state `AlwaysReady` with a non-empty interest.
    pub(crate) always_ready: Vec<usize>,
    /// The files that always-ready fds named when registered.
    pub(crate) identities: Identities,
    /// The watches beyond the second on an fd.
    pub(crate) crowds: Crowds,
    pub(crate) timers: PagedSlab<TimerSlot>,
    pub(crate) heap: TimerHeap,
    pub(crate) frees: DeferredFrees<Freed>,
    pub(crate) running: Option<Running>,
    pub(crate) next_generation: u32,
    /// Times the OS layer rebuilt its kernel state ([`Registrar::reset`], [B62](anyloop::contract#b62)).
    pub(crate) resets: u64,
    /// Fd slots found to name another file (retired) or none (at a rebuild of the kernel
    /// state) outside a report, with their generation: their enabled watches are told `ERROR`
    /// once by the next iteration ([R52](anyloop::contract#r52)).
    pub(crate) error_due: Vec<(usize, u32)>,
}

/// The shared half of an [`Engine`](super::Engine): the table, the registrar and the quit
/// flag. This is what [`Loop`](anyloop::Loop) handles point to.
pub struct Shared<R: Registrar> {
    pub(crate) state: Mutex<State>,
    pub(crate) registrar: R,
    pub(crate) quit: AtomicBool,
}

impl<R: Registrar> std::fmt::Debug for Shared<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The tag an id carries for `slot`: `slot + 1`, so that no tag is 0 (ids allocated without
/// a tag); `None` when the table is too large for the tag bits (16 million registrations).
fn slot_tag(slot: usize) -> Option<u32> {
    u32::try_from(slot).ok()?.checked_add(1)
}

/// The current thread's id, cached (`thread::current()` is not free).
#[inline]
pub(crate) fn current_thread() -> ThreadId {
    thread_local! {
        static ID: ThreadId = std::thread::current().id();
    }
    ID.try_with(|id| *id)
        .unwrap_or_else(|_| std::thread::current().id())
}

impl State {
    fn new() -> State {
        State {
            gone: false,
            loop_thread: None,
            dirty: Vec::new(),
            host_waiting: None,
            wake_pending: false,
            iterations: 0,
            poll_counted: false,
            home: current_thread(),
            watches: PagedSlab::new(),
            fds: PagedSlab::new(),
            fd_index: FdIndex::default(),
            always_ready: Vec::new(),
            identities: Identities::default(),
            crowds: Crowds::default(),
            timers: PagedSlab::new(),
            heap: TimerHeap::new(),
            frees: DeferredFrees::new(),
            running: None,
            next_generation: 0,
            resets: 0,
            error_due: Vec::new(),
        }
    }

    /// The slot of a live watch, from the tag its id carries (no hash lookup).
    fn handle_slot(&self, id: WatchId) -> Result<usize> {
        let slot = (id.tag() as usize).wrapping_sub(1);
        match self.watches.get(slot) {
            Some(handle) if handle.id == id => Ok(slot),
            _ => Err(Error::not_found(id)),
        }
    }

    /// The slot of a live timer, from the tag its id carries (no hash lookup).
    fn timer_slot(&self, id: TimerId) -> Result<usize> {
        let slot = (id.tag() as usize).wrapping_sub(1);
        match self.timers.get(slot) {
            Some(timer) if timer.id == id => Ok(slot),
            _ => Err(Error::not_found(id)),
        }
    }

    /// Whether an op by the calling thread must wake the loop: only when another thread is
    /// inside `run_once`, or is a host thread that may be blocked in its host's poll (the
    /// loop thread itself is not blocked, [R41](anyloop::contract#r41); a loop that is not running reads the state
    /// afresh when it starts), and no wake-up is pending yet.
    pub(crate) fn claim_wake(&mut self) -> bool {
        match self.loop_thread.or(self.host_waiting) {
            Some(thread) if !self.wake_pending && thread != current_thread() => {
                self.wake_pending = true;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn stats(&self) -> LoopStats {
        LoopStats {
            watches: self.watches.len(),
            timers: self.timers.len(),
            pending_frees: self.frees.len(),
            iterations: self.iterations,
        }
    }

    /// Queues the free of a removed callback, or reserves its place if it is running now.
    fn defer_free(&mut self, id: RegistrationId, freed: Option<Freed>) {
        match freed {
            Some(freed) => self.frees.push(freed),
            None => {
                // The callback is out of its slot only while it runs (on the loop thread);
                // its free is queued when it returns, at this place in removal order.
                let ticket = self.frees.reserve();
                match self.running.as_mut() {
                    Some(running) if running.id == id => running.removed = Some(ticket),
                    // Unreachable by construction; a filled ticket is never left dangling.
                    _ => tracing::warn!(%id, "removed callback was neither stored nor running"),
                }
            }
        }
    }

    /// Brings the kernel registrations of the fd slots that callbacks changed during this
    /// iteration in line with their interests: one kernel call per slot whose interest in force
    /// differs from the kernel's, none for changes that cancelled out. Called by the loop
    /// before it waits again.
    pub(crate) fn flush_dirty<R: Registrar>(&mut self, registrar: &R) {
        if self.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            // A slot removed since (and maybe reused by another fd) has nothing pending.
            let Some(slot) = self.fds.get_mut(key) else {
                continue;
            };
            let Some(verify) = slot.take_dirty() else {
                continue;
            };
            let fd = slot.fd;
            if let Err(err) = self.sync_kernel(registrar, key, verify) {
                tracing::warn!(fd, %err, "applying an interest change to the kernel failed");
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// The fd slot a new watch on `fd` joins: the number's slot, unless the number no longer
    /// names the file that slot's watches were registered for (closed under its watches and
    /// reused by another file, R53 broken), in which case that slot is retired and a fresh one
    /// made; also when the number has none. Returns the slot and whether it existed (and was
    /// checked). One kernel call (or `fstat`) when the slot's file is known to the kernel.
    pub(crate) fn join_slot<R: Registrar>(&mut self, registrar: &R, fd: RawFd) -> (usize, bool) {
        if let Some(key) = self.fd_index.get(fd) {
            if !self.retire_if_replaced(registrar, key) {
                return (key, true);
            }
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        let key = self.fds.insert(FdSlot::new(fd, self.next_generation));
        self.fd_index.insert(fd, key);
        (key, false)
    }

    /// Whether fd slot `key`'s number names another file than the one its registration was
    /// made for; if so the slot is retired ([`Kernel::Retired`]): out of the fd index, its
    /// kernel registration orphaned (a new generation makes the old file's reports stale, and
    /// stale reports in consecutive iterations rebuild the kernel state, B62), its enabled
    /// watches told `ERROR` by the next iteration ([R52](anyloop::contract#r52): they never
    /// hear the new file). A slot the kernel does not know cannot be checked and is kept: its
    /// watches are disabled, and an update addresses whatever file the number names then
    /// ([R53](anyloop::contract#r53)).
    fn retire_if_replaced<R: Registrar>(&mut self, registrar: &R, key: usize) -> bool {
        let Some(slot) = self.fds.get(key) else {
            return false;
        };
        let check = match slot.kernel {
            Kernel::Registered => registrar
                .verify(slot.fd, slot.token(key), slot.interest())
                .unwrap_or_else(|err| {
                    tracing::warn!(fd = slot.fd, %err, "verifying an fd a watch joins failed");
                    FdCheck::Same
                }),
            Kernel::AlwaysReady => match (self.identities.get(key), registrar.identity(slot.fd)) {
                (Some(was), Some(now)) if *was != now => FdCheck::Replaced,
                _ => FdCheck::Same,
            },
            Kernel::Unregistered | Kernel::Gone | Kernel::Retired => FdCheck::Same,
        };
        if check == FdCheck::Same {
            return false;
        }
        let fd = slot.fd;
        tracing::debug!(
            fd,
            "a new watch joins a reused number: the old watches' slot retires"
        );
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let slot = &mut self.fds[key];
        if slot.kernel == Kernel::AlwaysReady {
            self.always_ready.retain(|&k| k != key);
        }
        slot.kernel = Kernel::Retired;
        slot.generation = generation;
        self.fd_index.remove(fd);
        self.error_due.push((key, generation));
        true
    }

    /// Moves watch slot `handle` out of a retired fd slot into the slot its number has now
    /// (see [`join_slot`](Self::join_slot)), when an update re-enables it: the library
    /// addresses whatever file the number names then ([R53](anyloop::contract#r53)). Returns the
    /// new fd slot.
    pub(crate) fn rejoin<R: Registrar>(&mut self, registrar: &R, handle: usize) -> usize {
        let old_key = self.watches[handle].fd_key();
        let fd = self.fds[old_key].fd;
        if self.fds[old_key].remove_watch(old_key, handle, &mut self.crowds) {
            self.fds.remove(old_key);
            self.identities.forget(old_key);
        }
        let (key, _) = self.join_slot(registrar, fd);
        self.fds[key].push_watch(key, handle, &mut self.crowds);
        // Below 2^32: fd slots are no more than watch slots, whose number the id tags bound.
        self.watches[handle].fd_key = key as u32;
        key
    }

    /// Brings the kernel registration of fd slot `key` in line with its watches' interests.
    ///
    /// `verify` forces a kernel call even when the union is unchanged: used when a watch
    /// joins an existing fd, in case the fd number was closed and reused since ([R52](anyloop::contract#r52)), in which
    /// case the registrar registers the new file.
    pub(crate) fn sync_kernel<R: Registrar>(
        &mut self,
        registrar: &R,
        key: usize,
        verify: bool,
    ) -> Result<()> {
        let State {
            fds,
            watches,
            always_ready,
            identities,
            crowds,
            next_generation,
            ..
        } = self;
        let Some(slot) = fds.get_mut(key) else {
            return Ok(());
        };
        let want = slot
            .watch_keys(key, crowds)
            .filter_map(|w| watches.get(w))
            .fold(IoEvents::empty(), |acc, h| acc | h.interest);
        let token = slot.token(key);
        let fd = slot.fd;
        let os = |op: &'static str| {
            move |source| Error::Os {
                op,
                fd: Some(fd),
                source,
            }
        };
        let kernel = match (slot.kernel, want.is_empty()) {
            // The number belongs to another slot now: nothing to tell the kernel, ever.
            (Kernel::Retired, _) => Kernel::Retired,
            (Kernel::Unregistered | Kernel::Gone, true) => slot.kernel,
            (Kernel::Registered, true) => {
                if let Err(err) = registrar.deregister(fd) {
                    tracing::warn!(fd, %err, "deregistering a disabled fd failed");
                }
                Kernel::Unregistered
            }
            (Kernel::AlwaysReady, true) => Kernel::Unregistered,
            (Kernel::Unregistered | Kernel::Gone, false) => {
                match registrar
                    .register(fd, token, want)
                    .map_err(os("register"))?
                {
                    Registered::Kernel => {
                        slot.mark_synced();
                        Kernel::Registered
                    }
                    // (Only a reregister answers Replaced; the file registered is the one
                    // the number names now either way.)
                    Registered::Replaced => Kernel::Registered,
                    Registered::AlwaysReady => Kernel::AlwaysReady,
                    Registered::Gone => Kernel::Gone,
                }
            }
            (Kernel::Registered, false) if want != slot.interest() || verify => match registrar
                .reregister(fd, token, want)
                .map_err(os("reregister"))?
            {
                // The kernel found the number naming the registered file (or registered the
                // file it names now): as good as an identity check (R52).
                Registered::Kernel => {
                    slot.mark_synced();
                    Kernel::Registered
                }
                Registered::Replaced => {
                    // The number names another file now (R53): the old file's registration, if
                    // the kernel keeps it, goes stale with a new generation; the new file is
                    // registered under the new token. Not an identity check of the old file.
                    *next_generation = next_generation.wrapping_add(1);
                    slot.generation = *next_generation;
                    match registrar
                        .reregister(fd, slot.token(key), want)
                        .map_err(os("reregister"))?
                    {
                        Registered::Kernel | Registered::Replaced => Kernel::Registered,
                        Registered::AlwaysReady => Kernel::AlwaysReady,
                        Registered::Gone => Kernel::Gone,
                    }
                }
                Registered::AlwaysReady => Kernel::AlwaysReady,
                Registered::Gone => Kernel::Gone,
            },
            (Kernel::Registered | Kernel::AlwaysReady, false) => slot.kernel,
        };
        if kernel == Kernel::AlwaysReady && slot.kernel != Kernel::AlwaysReady {
            // Probed by number from now on: remember which file it is (R52).
            identities.remember(key, registrar.identity(fd));
        }
        let was_listed = slot.kernel == Kernel::AlwaysReady && !slot.interest().is_empty();
        let listed = kernel == Kernel::AlwaysReady && !want.is_empty();
        slot.kernel = kernel;
        slot.set_interest(want);
        if was_listed && !listed {
            always_ready.retain(|&k| k != key);
        } else if listed && !was_listed {
            always_ready.push(key);
        }
        Ok(())
    }

    /// Takes a handle out of the table (the id is already unmapped) and tidies its fd slot.
    fn unlink_handle<R: Registrar>(&mut self, registrar: &R, slot: usize) -> HandleSlot {
        let handle = self.watches.remove(slot);
        let key = handle.fd_key();
        let now_empty = match self.fds.get_mut(key) {
            Some(fd_slot) => fd_slot.remove_watch(key, slot, &mut self.crowds),
            None => false,
        };
        if now_empty {
            let fd_slot = self.fds.remove(key);
            if fd_slot.kernel == Kernel::Registered {
                // EBADF/ENOENT (closed fd) are success for the registrar (R52).
                if let Err(err) = registrar.deregister(fd_slot.fd) {
                    tracing::warn!(fd = fd_slot.fd, %err, "deregistering a removed fd failed");
                }
            }
            if fd_slot.kernel == Kernel::AlwaysReady {
                self.always_ready.retain(|&k| k != key);
            }
            self.identities.forget(key);
            if self.fd_index.get(fd_slot.fd) == Some(key) {
                self.fd_index.remove(fd_slot.fd);
            }
        } else if let Err(err) = self.sync_kernel(registrar, key, false) {
            let fd = self.fds.get(key).map(|fd_slot| fd_slot.fd);
            tracing::warn!(?fd, %err, "narrowing an fd's interest failed");
        }
        handle
    }

    /// Empties the table for loop destruction: every callback still held, pending frees
    /// first (in removal order), then live registrations. Kernel registrations are dropped.
    pub(crate) fn tear_down<R: Registrar>(&mut self, registrar: &R, out: &mut Vec<Freed>) {
        self.gone = true;
        self.loop_thread = None;
        // Nobody waits on the poller any more: no op may write it a wake-up (a host that
        // still polls its fd would find it readable for good).
        self.host_waiting = None;
        self.frees.take_all(out);
        for (_, fd_slot) in self.fds.iter() {
            if fd_slot.kernel == Kernel::Registered {
                let _ = registrar.deregister(fd_slot.fd);
            }
        }
        self.fds.clear();
        self.fd_index.clear();
        self.always_ready.clear();
        self.identities = Identities::default();
        self.crowds = Crowds::default();
        self.heap.clear();
        let mut watches: Vec<_> = std::mem::take(&mut self.watches)
            .into_values()
            .filter_map(|h| h.callback.map(|cb| Freed::Handle(h.id, cb)))
            .collect();
        let mut timers: Vec<_> = std::mem::take(&mut self.timers)
            .into_values()
            .filter_map(|t| t.callback.map(|cb| Freed::Timeout(t.id, cb)))
            .collect();
        // Oldest registration first: ids are allocated in increasing order.
        watches.sort_by_key(|f| match f {
            Freed::Handle(id, _) => id.get(),
            Freed::Timeout(id, _) => id.get(),
        });
        timers.sort_by_key(|f| match f {
            Freed::Handle(id, _) => id.get(),
            Freed::Timeout(id, _) => id.get(),
        });
        out.append(&mut watches);
        out.append(&mut timers);
    }
}

impl<R: Registrar> Shared<R> {
    pub(crate) fn new(registrar: R) -> Shared<R> {
        Shared {
            state: Mutex::new(State::new()),
            registrar,
            quit: AtomicBool::new(false),
        }
    }

    /// Locks the table. The lock is never held around user code, so poisoning can only come
    /// from a bug in the engine itself; the table is still consistent enough to carry on.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Live watches, live timers, pending frees and iterations so far ([R57](anyloop::contract#r57)): what
    /// [`Engine::stats`](super::Engine::stats) reports, readable by a backend that does not
    /// hold the engine (a hosted backend whose host owns it).
    pub fn stats(&self) -> LoopStats {
        self.lock().stats()
    }

    /// Consumes a pending quit request ([R47](anyloop::contract#r47)): `true` once per request. For a hosted backend,
    /// whose host runs the loop and must stop when asked; [`Engine::run`](super::Engine::run)
    /// does the same for the built-in loop.
    pub fn take_quit(&self) -> bool {
        // A plain load first: no read-modify-write on the hot path when no quit is pending.
        self.quit.load(Ordering::SeqCst) && self.quit.swap(false, Ordering::SeqCst)
    }

    /// [`Engine::next_iteration`](super::Engine::next_iteration) for a level-triggered OS
    /// layer (which has no re-check list): when the engine next needs an iteration, if the
    /// poller's fd stays quiet. [`NextIteration::Now`] when a free or a quit is pending or an
    /// always-ready fd is enabled; the earliest timer deadline otherwise (no clock read: the
    /// host compares it with its own reading of the clock).
    pub(crate) fn next_iteration(&self) -> NextIteration {
        if self.quit.load(Ordering::SeqCst) {
            return NextIteration::Now;
        }
        let st = self.lock();
        self.next_iteration_locked(&st)
    }

    fn next_iteration_locked(&self, st: &State) -> NextIteration {
        if self.quit.load(Ordering::SeqCst)
            || !st.frees.is_empty()
            || st.always_ready.iter().any(|&key| {
                st.fds
                    .get(key)
                    .is_some_and(|slot| !slot.interest().is_empty())
            })
        {
            return NextIteration::Now;
        }
        match st.heap.peek() {
            Some((deadline, _)) => NextIteration::At(deadline),
            None => NextIteration::OnReadiness,
        }
    }

    /// For a backend hosted by another loop (GLib, calloop, tokio) that polls the poller's
    /// fd, right before the host sleeps in its own poll, on the host's thread: from now on ops
    /// from other threads write the wake-up (coalesced), exactly as while
    /// [`Engine::run_once`](super::Engine::run_once) waits, so they wake the host through the
    /// poller's fd ([R40](anyloop::contract#r40)). Returns
    /// [`next_iteration`](Self::next_iteration), read under the same lock: an op is either
    /// seen by this answer or wakes the host. This is the one lock and the one deadline
    /// computation of a host iteration before its poll; the host keeps the answer for its
    /// check step.
    ///
    /// Ops made while the host does not sleep write nothing ([R41](anyloop::contract#r41)), so the backend must act on
    /// the answer before the host sleeps (a new timer, a pending free or a quit changes it;
    /// new fd readiness shows on the poller's fd by itself), e.g. with
    /// [`wake_host`](Self::wake_host). When the host's poll returned, the window is closed by
    /// the engine iteration that dispatches what it found
    /// ([`run_once`](super::Engine::run_once)) or, when there is none, by
    /// [`host_awake`](Self::host_awake).
    pub(crate) fn host_sleeps(&self) -> NextIteration {
        let mut st = self.lock();
        st.host_waiting = Some(current_thread());
        // A new host iteration: whether it is counted is decided afresh (by `host_awake`, or
        // by the engine iteration that dispatches it when the host skips its check step).
        st.poll_counted = false;
        self.next_iteration_locked(&st)
    }

    /// The host's poll returned and no engine iteration follows (see
    /// [`host_sleeps`](Self::host_sleeps)): ops need no wake-up until it sleeps again, so no
    /// stale wake-up is left to end a later poll early.
    /// ([`Engine::run_once`](super::Engine::run_once) ends the window too, so a host that goes
    /// on to dispatch the engine need not call this.)
    ///
    /// A host poll that ends here counts as an iteration in [`LoopStats::iterations`] (the
    /// engine iteration that may follow to dispatch what it found does not count again).
    pub(crate) fn host_awake(&self) {
        let mut st = self.lock();
        if st.host_waiting.take().is_some() {
            st.iterations += 1;
            st.poll_counted = true;
        }
    }

    /// How many times the OS layer rebuilt its kernel state so far ([`Registrar::reset`]): a
    /// hosted engine's host that registered the poller's fd by file must register it again.
    pub(crate) fn resets(&self) -> u64 {
        self.lock().resets
    }

    /// Makes the poller's fd readable (the wake-up, unless one is pending already), so that a
    /// host about to poll it returns at once and runs the engine: for a backend that sees,
    /// right before its host sleeps, that the engine needs an iteration sooner than the host
    /// would otherwise wake.
    pub(crate) fn wake_host(&self) {
        let claimed = {
            let mut st = self.lock();
            !st.gone && !std::mem::replace(&mut st.wake_pending, true)
        };
        if claimed {
            self.send_wake();
        }
    }

    /// Sends the wake-up claimed by [`State::claim_wake`] (after the lock was released).
    pub(crate) fn send_wake(&self) {
        if let Err(err) = self.registrar.wake() {
            tracing::warn!(%err, "waking the loop failed");
        }
    }

    /// Asks the loop to stop after the iteration it is in ([R47](anyloop::contract#r47)); from any thread.
    pub(crate) fn request_quit(&self) {
        self.quit.store(true, Ordering::SeqCst);
        // Taking the lock orders the store before any later look at the flag by the loop:
        // either the loop reads the flag when it prepares its wait, or it is already inside
        // run_once and gets woken here.
        self.finish(self.lock());
    }

    /// Runs one update or removal from any thread: refused once the loop is gone ([R48](anyloop::contract#r48)); the
    /// loop is woken afterwards if needed.
    fn change(&self, op: impl FnOnce(&mut State, &R) -> Result<()>) -> Result<()> {
        let mut st = self.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        op(&mut st, &self.registrar)?;
        self.finish(st);
        Ok(())
    }

    /// Ends an op that changed the table: releases the lock, then wakes the loop if another
    /// thread is blocked in it and no wake-up is pending yet ([R40](anyloop::contract#r40), [R41](anyloop::contract#r41)).
    fn finish(&self, mut st: MutexGuard<'_, State>) {
        let wake = st.claim_wake();
        drop(st);
        if wake {
            self.send_wake();
        }
    }
}

impl<R: Registrar> Backend for Shared<R> {
    fn add_watch(
        &self,
        fd: RawFd,
        events: IoEvents,
        callback: WatchCallback,
    ) -> Result<WatchId, Rejected<WatchCallback>> {
        if fd < 0 {
            let error = Error::InvalidFd {
                fd,
                reason: "negative",
            };
            return Err(Rejected::new(error, callback));
        }
        let bits = events.unknown_bits();
        if bits != 0 {
            return Err(Rejected::new(Error::UnknownEvents { fd, bits }, callback));
        }
        if let Err(error) = self.registrar.check_fd(fd) {
            return Err(Rejected::new(error, callback));
        }
        let mut st = self.lock();
        if st.gone {
            return Err(Rejected::new(Error::LoopGone, callback));
        }
        // The id is taken first: nothing to undo if none can be had.
        let Some(id) = slot_tag(st.watches.vacant_key()).and_then(WatchId::try_allocate_tagged)
        else {
            return Err(Rejected::new(
                Error::Exhausted { what: "handle ids" },
                callback,
            ));
        };
        let (key, joined) = st.join_slot(&self.registrar, fd);
        let Ok(fd_key) = u32::try_from(key) else {
            // Unreachable: fd slots are no more than watch slots, whose number the id tags
            // bound far below this.
            return Err(Rejected::new(
                Error::Exhausted { what: "fd slots" },
                callback,
            ));
        };
        let slot = st.watches.insert(HandleSlot {
            id,
            fd_key,
            interest: events,
            callback: None,
        });
        let state = &mut *st;
        state.fds[key].push_watch(key, slot, &mut state.crowds);
        let verify = joined && !events.is_empty();
        let outcome = match st.sync_kernel(&self.registrar, key, verify) {
            Ok(()) if !events.is_empty() && st.fds[key].kernel == Kernel::Gone => {
                Err(Error::InvalidFd {
                    fd,
                    reason: "not open",
                })
            }
            other => other,
        };
        if let Err(error) = outcome {
            // Roll back: no side effect, and the callback goes back to the caller (R2).
            st.unlink_handle(&self.registrar, slot);
            return Err(Rejected::new(error, callback));
        }
        tracing::trace!(%id, fd, ?events, name = callback.name(), "add watch");
        st.watches[slot].callback = Some(callback);
        self.finish(st);
        Ok(id)
    }

    fn update_watch(&self, id: WatchId, events: IoEvents) -> Result<()> {
        self.change(|st, registrar| {
            let slot = st.handle_slot(id)?;
            let key = st.watches[slot].fd_key();
            let fd = st.fds.get(key).map_or(-1, |fd_slot| fd_slot.fd);
            let handle = &mut st.watches[slot];
            let bits = events.unknown_bits();
            if bits != 0 {
                return Err(Error::UnknownEvents { fd, bits });
            }
            if handle.interest == events {
                return Ok(()); // R5: same interest, nothing to do.
            }
            let old = std::mem::replace(&mut handle.interest, events);
            // Enabling a watch checks the kernel registration as an add does: the number may
            // have been closed and reused under another watch of this slot, and the kernel
            // forgot the closed file, so an unchanged combined interest proves nothing (R19).
            let verify = old.is_empty() && !events.is_empty();
            // A watch of a retired slot (its number now another watch's file) joins the
            // number's current slot to be enabled (R53).
            let key = if !events.is_empty() && st.fds[key].kernel == Kernel::Retired {
                st.rejoin(registrar, slot)
            } else {
                key
            };
            if st.loop_thread == Some(current_thread()) {
                // Made by a callback (or a free) of the running iteration: dispatch already
                // filters by the new interest (R18), and the kernel only needs it by the next
                // wait, so the change is coalesced with the iteration's others (a toggle
                // READABLE -> READABLE|WRITABLE -> READABLE then costs no syscall).
                if st.fds[key].mark_dirty(verify) {
                    st.dirty.push(key);
                }
                tracing::trace!(%id, fd, ?events, "update watch (kernel at the next wait)");
                return Ok(());
            }
            if let Err(err) = st.sync_kernel(registrar, key, verify) {
                st.watches[slot].interest = old;
                return Err(err);
            }
            tracing::trace!(%id, fd, ?events, "update watch");
            Ok(())
        })
    }

    fn remove_watch(&self, id: WatchId) -> Result<()> {
        self.change(|st, registrar| {
            let slot = st.handle_slot(id)?;
            let handle = st.unlink_handle(registrar, slot);
            tracing::trace!(%id, "remove watch");
            let freed = handle.callback.map(|cb| Freed::Handle(id, cb));
            st.defer_free(id.into(), freed);
            Ok(())
        })
    }

    fn add_timer(
        &self,
        schedule: Schedule,
        callback: TimerCallback,
    ) -> Result<TimerId, Rejected<TimerCallback>> {
        let mut st = self.lock();
        if st.gone {
            return Err(Rejected::new(Error::LoopGone, callback));
        }
        let slot = st.timers.vacant_key();
        let Some(id) = slot_tag(slot).and_then(TimerId::try_allocate_tagged) else {
            return Err(Rejected::new(
                Error::Exhausted {
                    what: "timeout ids",
                },
                callback,
            ));
        };
        tracing::trace!(%id, ?schedule, name = callback.name(), "add timer");
        let slot = st.timers.insert(TimerSlot::new(id, schedule, callback));
        let seq = st.timers[slot].seq();
        if let Some(delay) = schedule.delay() {
            // Read the clock now, not from a cached loop time (B55).
            let scheduled = st
                .heap
                .schedule(slot, deadline_after(Instant::now(), delay), seq);
            debug_assert!(scheduled, "a timer's slot and serial fit the heap");
        }
        self.finish(st);
        Ok(id)
    }

    fn update_timer(&self, id: TimerId, schedule: Schedule) -> Result<()> {
        self.change(|st, _| {
            let slot = st.timer_slot(id)?;
            let timer = &mut st.timers[slot];
            timer.set_schedule(schedule);
            timer.epoch = timer.epoch.wrapping_add(1);
            let seq = timer.seq();
            match schedule.delay() {
                // Always a restart from now, even with the same schedule (R5, R29).
                Some(delay) => {
                    let scheduled =
                        st.heap
                            .schedule(slot, deadline_after(Instant::now(), delay), seq);
                    debug_assert!(scheduled, "a timer's slot and serial fit the heap");
                }
                None => {
                    st.heap.cancel(slot);
                }
            }
            tracing::trace!(%id, ?schedule, "update timer");
            Ok(())
        })
    }

    fn remove_timer(&self, id: TimerId) -> Result<()> {
        self.change(|st, _| {
            let slot = st.timer_slot(id)?;
            st.heap.cancel(slot);
            let timer = st.timers.remove(slot);
            tracing::trace!(%id, "remove timer");
            let freed = timer.callback.map(|cb| Freed::Timeout(id, cb));
            st.defer_free(id.into(), freed);
            Ok(())
        })
    }

    fn timer_schedule(&self, id: TimerId) -> Result<Schedule> {
        let st = self.lock();
        if st.gone {
            return Err(Error::LoopGone);
        }
        let slot = st.timer_slot(id)?;
        Ok(st.timers[slot].schedule())
    }

    fn stats(&self) -> LoopStats {
        self.lock().stats()
    }

    fn wake(&self) {
        self.wake_host();
    }

    fn loop_thread(&self) -> Option<ThreadId> {
        let st = self.lock();
        (!st.gone).then_some(st.home)
    }

    fn is_alive(&self) -> bool {
        !self.lock().gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_slot_keeps_every_schedule_exactly() {
        let mut slot = TimerSlot::new(
            TimerId::from_raw(1).expect("nonzero"),
            Schedule::Disabled,
            TimerCallback::new(|_| {}),
        );
        for schedule in [
            Schedule::Disabled,
            Schedule::Every(Duration::ZERO),
            Schedule::Every(Duration::new(1, 999_999_999)),
            Schedule::Every(Duration::MAX),
            Schedule::Once(Duration::from_nanos(1)),
            Schedule::Once(Duration::MAX),
            Schedule::Once(Duration::from_secs(u64::MAX)),
        ] {
            slot.set_schedule(schedule);
            assert_eq!(slot.schedule(), schedule);
            assert_eq!(slot.is_enabled(), schedule != Schedule::Disabled);
            assert_eq!(slot.is_one_shot(), matches!(schedule, Schedule::Once(_)));
        }
        // What W6 counts per timer: 40 bytes (it was 64 with a `Duration`, a kind byte, a
        // sequence number of its own and a callback of three words).
        assert!(std::mem::size_of::<TimerSlot>() <= 40);
    }

    #[test]
    fn a_watch_costs_a_watch_slot_and_at_most_one_fd_slot() {
        // What W6 counts per watch besides the fd index: 32 + 24 bytes (they were 48 + 72,
        // then 40 + 48).
        assert!(std::mem::size_of::<HandleSlot>() <= 32);
        assert!(std::mem::size_of::<FdSlot>() <= 24);
    }
}
