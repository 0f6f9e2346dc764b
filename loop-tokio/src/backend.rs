//! The vtable behind every [`Loop`](anyloop::Loop) handle of a tokio loop: the engine's table,
//! plus a nudge for operations made on the loop thread while the driver waits.
//!
//! An op from another thread while the driver waits writes the engine's eventfd (the engine
//! does that by itself once [`Engine::prepare_host_wait`](anyloop_engine::Engine) opened the
//! host-wait window), which makes the epoll fd that tokio watches readable
//! ([R40](anyloop::contract#r40)). An op made on the loop thread itself while the driver
//! waits comes from another tokio task on that thread (anyloop's own callbacks never run
//! while the driver waits): the engine writes no wake-up for it
//! ([R41](anyloop::contract#r41): the loop thread is not blocked), yet the driver must see it
//! before tokio parks the thread, or a timer added by that task would wait for an unrelated
//! wake-up.
//! [`Nudge`] wakes the driver's task directly for those (no system call): the driver then asks
//! the engine for its next deadline again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread::ThreadId;

use anyloop::{
    Backend, IoEvents, LoopStats, Rejected, Result, Schedule, TimerCallback, TimerId,
    WatchCallback, WatchId,
};
use anyloop_engine::Shared;

use anyloop_engine::linux::EpollRegistrar;

/// The current thread's id, cached (`thread::current()` is not free).
pub(crate) fn current_thread() -> ThreadId {
    thread_local! {
        static ID: ThreadId = std::thread::current().id();
    }
    ID.try_with(|id| *id)
        .unwrap_or_else(|_| std::thread::current().id())
}

/// Wakes the driver's task when an op is made on the loop thread while the driver waits.
#[derive(Debug)]
pub(crate) struct Nudge {
    /// The loop thread: the driver is not `Send`, so it never leaves the thread that made it.
    owner: ThreadId,
    /// The driver is waiting (between its prepare and the end of its wait).
    armed: AtomicBool,
    state: Mutex<NudgeState>,
}

#[derive(Debug, Default)]
struct NudgeState {
    /// The driver's task, registered by its last poll.
    waker: Option<Waker>,
    /// An op was made since the driver last looked.
    nudged: bool,
}

impl Nudge {
    pub(crate) fn new() -> Nudge {
        Nudge {
            owner: current_thread(),
            armed: AtomicBool::new(false),
            state: Mutex::new(NudgeState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NudgeState> {
        // Never held around user code; a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The driver starts waiting: from now on loop-thread ops wake its task.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// The driver's wait is over.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
        let mut st = self.lock();
        st.nudged = false;
    }

    /// From the driver's poll: remembers its task, and consumes a nudge (`true`: re-prepare).
    pub(crate) fn poll(&self, waker: &Waker) -> bool {
        let mut st = self.lock();
        if !st.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            st.waker = Some(waker.clone());
        }
        std::mem::take(&mut st.nudged)
    }

    /// After an op (or a quit request): wakes the waiting driver if the op was made on the
    /// loop thread. Ops from other threads wake it through the engine's eventfd instead.
    pub(crate) fn poke(&self) {
        if !self.armed.load(Ordering::SeqCst) || current_thread() != self.owner {
            return;
        }
        let waker = {
            let mut st = self.lock();
            st.nudged = true;
            st.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The [`Backend`] every [`Loop`](anyloop::Loop) handle of the loop points to: the engine's
/// table, and a [`Nudge`] after each change.
pub(crate) struct TokioBackend {
    pub(crate) shared: Arc<Shared<EpollRegistrar>>,
    pub(crate) nudge: Arc<Nudge>,
}

impl std::fmt::Debug for TokioBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokioBackend").finish_non_exhaustive()
    }
}

impl TokioBackend {
    /// Passes `outcome` through, nudging the driver if the op changed something.
    fn nudged<T, E>(&self, outcome: std::result::Result<T, E>) -> std::result::Result<T, E> {
        if outcome.is_ok() {
            self.nudge.poke();
        }
        outcome
    }
}

impl Backend for TokioBackend {
    fn add_watch(
        &self,
        fd: std::os::fd::RawFd,
        interest: IoEvents,
        callback: WatchCallback,
    ) -> std::result::Result<WatchId, Rejected<WatchCallback>> {
        self.nudged(self.shared.add_watch(fd, interest, callback))
    }

    fn update_watch(&self, id: WatchId, interest: IoEvents) -> Result<()> {
        self.nudged(self.shared.update_watch(id, interest))
    }

    fn remove_watch(&self, id: WatchId) -> Result<()> {
        self.nudged(self.shared.remove_watch(id))
    }

    fn add_timer(
        &self,
        schedule: Schedule,
        callback: TimerCallback,
    ) -> std::result::Result<TimerId, Rejected<TimerCallback>> {
        self.nudged(self.shared.add_timer(schedule, callback))
    }

    fn update_timer(&self, id: TimerId, schedule: Schedule) -> Result<()> {
        self.nudged(self.shared.update_timer(id, schedule))
    }

    fn remove_timer(&self, id: TimerId) -> Result<()> {
        self.nudged(self.shared.remove_timer(id))
    }

    fn timer_schedule(&self, id: TimerId) -> Result<Schedule> {
        self.shared.timer_schedule(id)
    }

    fn stats(&self) -> LoopStats {
        Backend::stats(&*self.shared)
    }

    fn wake(&self) {
        // The eventfd: the epoll fd becomes readable, from any thread.
        self.shared.wake();
    }

    fn loop_thread(&self) -> Option<ThreadId> {
        self.shared.loop_thread()
    }

    fn is_alive(&self) -> bool {
        self.shared.is_alive()
    }
}
