//! The vtable: the operations a library needs from a main loop, and what a loop reports.

use std::os::fd::RawFd;
use std::thread::ThreadId;
use std::time::Duration;

use crate::callback::{TimerCallback, WatchCallback};
use crate::error::{Rejected, Result};
use crate::events::IoEvents;
use crate::id::{TimerId, WatchId};

/// When a timer fires ([contract R27](crate::contract#r27)).
///
/// ```
/// use anyloop::Schedule;
/// use std::time::Duration;
///
/// let heartbeat = Schedule::Every(Duration::from_secs(1)); // periodic
/// let deadline = Schedule::Once(Duration::from_secs(30));  // fires once, then Disabled
/// let idle = Schedule::Once(Duration::ZERO);                // the next iteration, once
/// assert!(heartbeat.is_enabled() && deadline.is_enabled() && idle.is_enabled());
/// assert!(!Schedule::Disabled.is_enabled());
/// assert_eq!(Schedule::EVERY_ITERATION, Schedule::Every(Duration::ZERO));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Schedule {
    /// Never fires; the timer keeps its id and can be re-armed with an update.
    #[default]
    Disabled,
    /// Fires periodically, never earlier than the duration after it was armed or last fired,
    /// with no catch-up after a stall ([R30](crate::contract#r30),
    /// [R31](crate::contract#r31)). `Every(Duration::ZERO)` fires on every iteration and keeps
    /// the loop from blocking while it is enabled (libvirt's "0 ms" timer).
    Every(Duration),
    /// Fires once, never earlier than the duration after it was armed, then becomes
    /// [`Disabled`](Self::Disabled): the timer stays registered (its id stays valid) until it
    /// is re-armed by an update or removed. `Once(Duration::ZERO)` runs the callback once, in
    /// the next iteration: unlike `Every(ZERO)`, a forgotten disable is not a busy loop.
    ///
    /// A trap for bindings of C libraries that drive one timer through a callback ("call me
    /// in N ms", "-1: delete it", as libcurl's `CURLMOPT_TIMERFUNCTION`): a fired `Once` timer
    /// is still registered and counted in [`LoopStats::timers`]
    /// ([R27](crate::contract#r27)), and some libraries never say "delete" after their last
    /// timeout (libcurl 7.88 does not). A binding that wants nothing left registered when the
    /// C library is idle removes the timer itself, from its callback or when the library's
    /// work is done.
    Once(Duration),
}

impl Schedule {
    /// Fires on every iteration while enabled: `Every(Duration::ZERO)`.
    pub const EVERY_ITERATION: Schedule = Schedule::Every(Duration::ZERO);

    /// True unless [`Disabled`](Self::Disabled).
    pub const fn is_enabled(self) -> bool {
        !matches!(self, Schedule::Disabled)
    }

    /// The duration until the (next) firing once armed; `None` when disabled.
    pub const fn delay(self) -> Option<Duration> {
        match self {
            Schedule::Disabled => None,
            Schedule::Every(delay) | Schedule::Once(delay) => Some(delay),
        }
    }

    /// True for [`Once`](Self::Once).
    pub const fn is_one_shot(self) -> bool {
        matches!(self, Schedule::Once(_))
    }
}

/// The event-loop vtable: what a library calls (through [`Loop`](crate::Loop)), what a
/// backend implements.
///
/// The six operations of libvirt's `virEventRegisterImpl` (add, update and remove a watch,
/// libvirt's "handle", and a timer, libvirt's "timeout"), made safe: typed ids, typed errors,
/// and closures whose drop is the free callback; plus what every loop reports about itself.
///
/// # Contract for implementors
///
/// The full behaviour is the [contract](crate::contract) (rules [R1](crate::contract#r1)–[R60](crate::contract#r60)), checked by the
/// `anyloop-conformance` kit. In short:
///
/// - Every operation may be called from any thread, including from inside callbacks and
///   frees; an operation from a foreign thread wakes a blocked loop
///   ([R39–R41](crate::contract#r39)).
/// - Callbacks run only on the loop thread, during an iteration, with no backend lock held
///   ([R42](crate::contract#r42), [R43](crate::contract#r43)). Delivery is level-triggered
///   ([R8](crate::contract#r8)).
/// - Dropping a callback (the free) never happens inside an operation nor while that callback
///   runs; it happens exactly once, on the loop thread ([R21–R26](crate::contract#r21)).
/// - A removed registration is never started again once remove returned
///   ([R15](crate::contract#r15)); remove never waits for a running callback
///   ([R44](crate::contract#r44)).
/// - A failed add hands the callback back inside [`Rejected`] and runs no free
///   ([R2](crate::contract#r2)).
/// - A thread-bound callback ([`WatchCallback::local`]) is never called on another thread
///   than its own ([R42](crate::contract#r42)); a backend whose loop thread cannot be named
///   returns `None` from [`loop_thread`](Self::loop_thread), and [`Loop`](crate::Loop) then
///   refuses thread-bound callbacks.
pub trait Backend: Send + Sync {
    /// Watches `fd` for `interest` and calls `callback` while any of it (or ERROR/HANGUP) holds.
    ///
    /// An empty `interest` registers a disabled watch ([R6](crate::contract#r6),
    /// [R10](crate::contract#r10)). Several watches may share one fd
    /// ([R11](crate::contract#r11)).
    ///
    /// # Errors
    /// [`InvalidFd`](crate::Error::InvalidFd) for a negative or closed fd,
    /// [`UnknownEvents`](crate::Error::UnknownEvents) for undefined bits,
    /// [`LoopGone`](crate::Error::LoopGone), [`Os`](crate::Error::Os); the callback comes back
    /// in the [`Rejected`].
    fn add_watch(
        &self,
        fd: RawFd,
        interest: IoEvents,
        callback: WatchCallback,
    ) -> Result<WatchId, Rejected<WatchCallback>>;

    /// Replaces the interest of a watch; the same set again is a no-op
    /// ([R5](crate::contract#r5)).
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown or removed id (never re-arms,
    /// [R4](crate::contract#r4)), [`UnknownEvents`](crate::Error::UnknownEvents),
    /// [`LoopGone`](crate::Error::LoopGone).
    fn update_watch(&self, id: WatchId, interest: IoEvents) -> Result<()>;

    /// Removes a watch: its callback is never started again and its free runs later, on the
    /// loop thread ([R15](crate::contract#r15), [R21](crate::contract#r21)).
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown id or a second remove
    /// ([R3](crate::contract#r3)).
    fn remove_watch(&self, id: WatchId) -> Result<()>;

    /// Adds a timer with the given [`Schedule`]; the countdown starts now.
    ///
    /// # Errors
    /// [`LoopGone`](crate::Error::LoopGone); the callback comes back in the [`Rejected`].
    fn add_timer(
        &self,
        schedule: Schedule,
        callback: TimerCallback,
    ) -> Result<TimerId, Rejected<TimerCallback>>;

    /// Changes a timer's schedule and restarts its countdown from now, even when the schedule
    /// is unchanged ([R5](crate::contract#r5), [R29](crate::contract#r29)).
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown or removed id
    /// ([R4](crate::contract#r4)).
    fn update_timer(&self, id: TimerId, schedule: Schedule) -> Result<()>;

    /// Removes a timer; it never fires again and its free runs later on the loop thread.
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown id or a second remove
    /// ([R3](crate::contract#r3)).
    fn remove_timer(&self, id: TimerId) -> Result<()>;

    /// The timer's schedule as it is now: [`Schedule::Disabled`] once a
    /// [`Once`](Schedule::Once) timer has fired ([R27](crate::contract#r27)).
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound) for an unknown or removed id,
    /// [`LoopGone`](crate::Error::LoopGone).
    fn timer_schedule(&self, id: TimerId) -> Result<Schedule>;

    /// Live counts, from any thread, with the same meaning on every backend
    /// ([R57](crate::contract#r57)); all zero once the loop is gone.
    fn stats(&self) -> LoopStats;

    /// Makes a loop that is blocked waiting return from its wait (an iteration that may run
    /// no callback, [R46](crate::contract#r46)), so that its owner re-checks a condition
    /// (see [`Runner::run_until`](crate::Runner::run_until)). From any thread; coalesced; does
    /// nothing once the loop is gone.
    fn wake(&self);

    /// The thread the loop runs its callbacks on, if the backend can name it: where
    /// thread-bound callbacks may be registered ([R50](crate::contract#r50)). The default,
    /// `None`, makes [`Loop`](crate::Loop) refuse thread-bound callbacks with
    /// [`WrongThread`](crate::Error::WrongThread).
    fn loop_thread(&self) -> Option<ThreadId> {
        None
    }

    /// Whether the loop still exists: `false` once it was destroyed, after which every
    /// operation fails with [`LoopGone`](crate::Error::LoopGone) ([R48](crate::contract#r48)).
    /// The default, `true`, suits a backend that lives as long as its handles.
    fn is_alive(&self) -> bool {
        true
    }
}

/// Counts a loop reports for diagnosis and tests ([R25](crate::contract#r25),
/// [R57](crate::contract#r57)). Every field means the same on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoopStats {
    /// Watches currently registered, enabled or not (a watch stays counted until removed,
    /// also after its fd was closed under it, [R52](crate::contract#r52)).
    pub watches: usize,
    /// Timers currently registered, enabled or not (a fired [`Schedule::Once`] timer stays
    /// counted until removed).
    pub timers: usize,
    /// Callbacks removed whose free (drop) has not run yet.
    pub pending_frees: usize,
    /// How many times the loop has waited for readiness and then dispatched what it found,
    /// including waits that found nothing: the built-in loop's kernel wait, or the host's poll
    /// for a loop hosted by GLib or calloop (counted whether or not anyloop had anything to
    /// dispatch in it).
    pub iterations: u64,
}

impl LoopStats {
    /// True when no free is pending (libvirt-python's `is_idle`, [R25](crate::contract#r25)).
    pub fn is_idle(&self) -> bool {
        self.pending_frees == 0
    }
}
