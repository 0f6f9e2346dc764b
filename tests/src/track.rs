//! The interposed vtable: wraps the backend under test to check every call and callback.
//!
//! Scenarios talk to the backend through [`Tracked`], which forwards each operation and, on the
//! way, marks the calling thread as "inside an operation" (so a free or callback that runs
//! synchronously inside add/update/remove is caught,
//! [R21](anyloop::contract#r21)/[R42](anyloop::contract#r42)), and wraps every callback so its
//! invocations and its drop are checked: loop thread only ([R24](anyloop::contract#r24),
//! [R42](anyloop::contract#r42)), never inside an operation, never re-entered. Violations are
//! collected in a [`Monitor`] that the harness checks after every scenario.
//!
//! A thread-bound callback (`WatchCallback::local`...) stays thread-bound through the
//! interposer: its wrapper is itself made with `local` on the adding thread (which
//! [`Loop`] has checked is the loop thread), so the backend sees a thread-bound callback and
//! must apply the same rules to it ([R42](anyloop::contract#r42)).

use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use anyloop::{
    Backend, IoEvents, Loop, LoopStats, Rejected, Result, Schedule, TimerCallback, TimerId,
    WatchCallback, WatchId,
};

use crate::probe::lock;

thread_local! {
    static INSIDE_OP: Cell<u32> = const { Cell::new(0) };
}

/// True while the current thread is inside a vtable operation made through [`Tracked`].
pub fn inside_op() -> bool {
    INSIDE_OP.with(|c| c.get() > 0)
}

struct OpScope;

impl OpScope {
    fn enter() -> OpScope {
        INSIDE_OP.with(|c| c.set(c.get() + 1));
        OpScope
    }
}

impl Drop for OpScope {
    fn drop(&mut self) {
        INSIDE_OP.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// Contract violations seen by the interposed loop of one driver.
#[derive(Debug)]
pub struct Monitor {
    loop_thread: ThreadId,
    violations: Mutex<Vec<String>>,
}

impl Monitor {
    /// A monitor for a loop whose thread is `loop_thread`.
    pub fn new(loop_thread: ThreadId) -> Monitor {
        Monitor {
            loop_thread,
            violations: Mutex::new(Vec::new()),
        }
    }

    /// The loop thread's id.
    pub fn loop_thread(&self) -> ThreadId {
        self.loop_thread
    }

    /// Records a violation.
    pub fn violation(&self, what: String) {
        lock(&self.violations).push(what);
    }

    /// Every violation so far.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    fn check_context(&self, what: &str) {
        let here = thread::current().id();
        if here != self.loop_thread {
            self.violation(format!(
                "{what} ran on {here:?}, not on the loop thread {:?} (R24/R42)",
                self.loop_thread
            ));
        }
        if inside_op() {
            self.violation(format!(
                "{what} ran synchronously inside a vtable operation (R21/R42)"
            ));
        }
    }
}

/// The interposed [`Backend`]: forwards to the backend and checks calls and callbacks.
pub struct Tracked {
    inner: Loop,
    monitor: Arc<Monitor>,
}

impl Tracked {
    /// Wraps `inner`; violations go to `monitor`.
    pub fn new(inner: Loop, monitor: Arc<Monitor>) -> Tracked {
        Tracked { inner, monitor }
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("inner", &self.inner)
            .finish()
    }
}

/// The wrapper state of one callback; its `Drop` is the checked free.
struct Checked<C> {
    inner: Option<C>,
    monitor: Arc<Monitor>,
    running: bool,
    what: &'static str,
    /// Set when the add failed: the callback went back to the caller, whose drop is free to
    /// run anywhere ([R2](anyloop::contract#r2)).
    rejected: Arc<AtomicBool>,
}

impl<C> Checked<C> {
    fn call(&mut self, f: impl FnOnce(&mut C)) {
        self.monitor.check_context(self.what);
        if self.running {
            self.monitor
                .violation(format!("{} re-entered while running", self.what));
        }
        self.running = true;
        // Reset `running` even if the callback panics (the backend catches the panic).
        struct Reset<'a>(&'a mut bool);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                *self.0 = false;
            }
        }
        let Checked { inner, running, .. } = self;
        let _reset = Reset(running);
        if let Some(cb) = inner.as_mut() {
            f(cb);
        }
    }
}

impl<C> Drop for Checked<C> {
    fn drop(&mut self) {
        if !self.rejected.load(Ordering::SeqCst) {
            self.monitor.check_context("a free (callback drop)");
        }
        // The user's callback (and what it captured) drops here, after the checks.
        drop(self.inner.take());
    }
}

/// How a wrapper is made: thread-bound when the user's callback is, so that the backend
/// checks the thread as it would for the user's own callback.
fn binding(thread: Option<ThreadId>) -> Option<bool> {
    match thread {
        None => Some(false),
        Some(thread) if thread == thread::current().id() => Some(true),
        // A thread-bound callback of another thread (only possible by calling `Backend`
        // directly, `Loop` refuses it): it goes to the backend unwrapped, whose answer stands.
        Some(_) => None,
    }
}

fn wrap_handle(
    cb: WatchCallback,
    monitor: &Arc<Monitor>,
    rejected: &Arc<AtomicBool>,
) -> WatchCallback {
    let Some(local) = binding(cb.thread()) else {
        return cb;
    };
    let name = cb.name().map(str::to_owned);
    let mut checked = Checked {
        inner: Some(cb),
        monitor: monitor.clone(),
        running: false,
        what: "a handle callback",
        rejected: rejected.clone(),
    };
    let call = move |id, fd, ev| checked.call(|cb: &mut WatchCallback| cb.call(id, fd, ev));
    let wrapped = if local {
        WatchCallback::local(call)
    } else {
        WatchCallback::new(call)
    };
    match name {
        Some(name) => wrapped.named(name),
        None => wrapped,
    }
}

fn wrap_timeout(
    cb: TimerCallback,
    monitor: &Arc<Monitor>,
    rejected: &Arc<AtomicBool>,
) -> TimerCallback {
    let Some(local) = binding(cb.thread()) else {
        return cb;
    };
    let name = cb.name().map(str::to_owned);
    let mut checked = Checked {
        inner: Some(cb),
        monitor: monitor.clone(),
        running: false,
        what: "a timeout callback",
        rejected: rejected.clone(),
    };
    let call = move |id| checked.call(|cb: &mut TimerCallback| cb.call(id));
    let wrapped = if local {
        TimerCallback::local(call)
    } else {
        TimerCallback::new(call)
    };
    match name {
        Some(name) => wrapped.named(name),
        None => wrapped,
    }
}

impl Backend for Tracked {
    fn add_watch(
        &self,
        fd: RawFd,
        events: IoEvents,
        callback: WatchCallback,
    ) -> Result<WatchId, Rejected<WatchCallback>> {
        let rejected = Arc::new(AtomicBool::new(false));
        let callback = wrap_handle(callback, &self.monitor, &rejected);
        let _scope = OpScope::enter();
        let result = self.inner.backend().add_watch(fd, events, callback);
        rejected.store(result.is_err(), Ordering::SeqCst);
        result
    }

    fn update_watch(&self, id: WatchId, events: IoEvents) -> Result<()> {
        let _scope = OpScope::enter();
        self.inner.update_watch(id, events)
    }

    fn remove_watch(&self, id: WatchId) -> Result<()> {
        let _scope = OpScope::enter();
        self.inner.remove_watch(id)
    }

    fn add_timer(
        &self,
        schedule: Schedule,
        callback: TimerCallback,
    ) -> Result<TimerId, Rejected<TimerCallback>> {
        let rejected = Arc::new(AtomicBool::new(false));
        let callback = wrap_timeout(callback, &self.monitor, &rejected);
        let _scope = OpScope::enter();
        let result = self.inner.backend().add_timer(schedule, callback);
        rejected.store(result.is_err(), Ordering::SeqCst);
        result
    }

    fn update_timer(&self, id: TimerId, schedule: Schedule) -> Result<()> {
        let _scope = OpScope::enter();
        self.inner.update_timer(id, schedule)
    }

    fn remove_timer(&self, id: TimerId) -> Result<()> {
        let _scope = OpScope::enter();
        self.inner.remove_timer(id)
    }

    fn timer_schedule(&self, id: TimerId) -> Result<Schedule> {
        let _scope = OpScope::enter();
        self.inner.timer_schedule(id)
    }

    fn stats(&self) -> LoopStats {
        let _scope = OpScope::enter();
        self.inner.stats()
    }

    fn wake(&self) {
        let _scope = OpScope::enter();
        self.inner.wake()
    }

    fn loop_thread(&self) -> Option<ThreadId> {
        self.inner.loop_thread()
    }

    fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }
}
