//! The vtable: the six operations a library needs from a main loop.

use std::os::fd::RawFd;
use std::time::Duration;

use crate::callback::{TimerCallback, WatchCallback};
use crate::error::{Rejected, Result};
use crate::events::IoEvents;
use crate::id::{TimerId, WatchId};

/// A timer interval (contract R27):
///
/// - `None`: disabled; the timer keeps its id but never fires until updated.
/// - `Some(Duration::ZERO)`: fires on every loop iteration while enabled, and keeps the loop
///   from blocking (libvirt's "0 ms" timer; the event registry flushes with it).
/// - `Some(d)`: fires periodically, never earlier than `d` after it was armed or last fired,
///   with no catch-up after a stall (R30, R31).
///
/// A one-shot timer is a periodic one that disables or removes itself from its callback.
pub type Interval = Option<Duration>;

/// The event-loop vtable: what a library calls, what a backend implements.
///
/// The same six operations as libvirt's `virEventRegisterImpl`, made safe: typed ids,
/// typed errors, and closures whose drop is the free callback.
///
/// # Contract for implementors
///
/// The full behaviour is `shared/design/contract.md` §2 and is checked by the
/// `anyloop-conformance` kit. In short:
///
/// - Every operation may be called from any thread, including from inside callbacks and
///   frees; an operation from a foreign thread wakes a blocked loop (R39–R41).
/// - Callbacks run only on the loop thread, during an iteration, with no backend lock held
///   (R42, R43). Delivery is level-triggered (R8).
/// - Dropping a callback (the free) never happens inside an operation nor while that callback
///   runs; it happens exactly once, on the loop thread (R21–R26).
/// - A removed registration is never started again once remove returned (R15); remove never
///   waits for a running callback (R44).
/// - A failed add hands the callback back inside [`Rejected`] and runs no free (R2).
pub trait Backend: Send + Sync {
    /// Watches `fd` for `events` and calls `callback` while any of them (or ERROR/HANGUP) holds.
    ///
    /// An empty `events` registers a disabled watch (R6, R10). Several watches may share one
    /// fd (R11).
    ///
    /// # Errors
    /// [`InvalidFd`](crate::Error::InvalidFd) for a negative or closed fd,
    /// [`UnknownEvents`](crate::Error::UnknownEvents) for undefined bits,
    /// [`LoopGone`](crate::Error::LoopGone), [`Os`](crate::Error::Os); the callback comes back
    /// in the [`Rejected`].
    fn add_watch(
        &self,
        fd: RawFd,
        events: IoEvents,
        callback: WatchCallback,
    ) -> Result<WatchId, Rejected<WatchCallback>>;

    /// Replaces the interest of a watch; the same set again is a no-op (R5).
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown or removed id (never re-arms, R4),
    /// [`UnknownEvents`](crate::Error::UnknownEvents), [`LoopGone`](crate::Error::LoopGone).
    fn update_watch(&self, id: WatchId, events: IoEvents) -> Result<()>;

    /// Removes a watch: its callback is never started again and its free runs later, on the
    /// loop thread (R15, R21).
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown id or a second remove (R3).
    fn remove_watch(&self, id: WatchId) -> Result<()>;

    /// Adds a timer with the given [`Interval`]; the countdown starts now.
    ///
    /// # Errors
    /// [`LoopGone`](crate::Error::LoopGone); the callback comes back in the [`Rejected`].
    fn add_timer(
        &self,
        interval: Interval,
        callback: TimerCallback,
    ) -> Result<TimerId, Rejected<TimerCallback>>;

    /// Changes a timer's interval and restarts its countdown from now, even when the interval
    /// is unchanged (R5, R29).
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown or removed id (R4).
    fn update_timer(&self, id: TimerId, interval: Interval) -> Result<()>;

    /// Removes a timer; it never fires again and its free runs later on the loop thread.
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown id or a second remove (R3).
    fn remove_timer(&self, id: TimerId) -> Result<()>;
}

/// Counts a loop reports for diagnosis and tests (contract R25, R57).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoopStats {
    /// Watches currently registered (enabled or not).
    pub watches: usize,
    /// Timers currently registered (enabled or not).
    pub timers: usize,
    /// Callbacks removed whose free (drop) has not run yet.
    pub pending_frees: usize,
    /// Loop iterations completed so far.
    pub iterations: u64,
}

impl LoopStats {
    /// True when no free is pending (libvirt-python's `is_idle`, R25).
    pub fn is_idle(&self) -> bool {
        self.pending_frees == 0
    }
}
