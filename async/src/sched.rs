//! The per-thread bookkeeping behind task wake-ups: which tasks live on this thread, and the
//! *dispatch scope* that lets a task woken by one of this crate's own loop callbacks run at the
//! end of that callback instead of one loop iteration later.
//!
//! A task is normally polled from its own timer ([`Schedule::Once`]`(ZERO)`, armed by its
//! waker through [`Loop::update_timer`], which any thread may call and which wakes a blocked
//! loop, [R28](anyloop::contract#r28)). A timer armed during dispatch fires in the next
//! iteration at the earliest ([R17](anyloop::contract#r17), [R36](anyloop::contract#r36)), so
//! a task woken by a watch callback would see its fd one iteration later, by which time the
//! loop has already collected that fd as ready again (level-triggered,
//! [R8](anyloop::contract#r8)) and reports it once more for nothing. The scope avoids both:
//! while one of this crate's callbacks runs (an fd report, a sleep or interval timer, a
//! registry event), a task of the same loop woken on the loop thread is queued, and polled
//! once the callback has released its own state, still inside that callback: on the loop
//! thread, from the loop's dispatch, with no lock held. Wakes made while those tasks run go
//! through their timers again, so a task that wakes itself cannot starve the loop
//! ([R35](anyloop::contract#r35)).

use std::cell::{Cell, RefCell};
use std::rc::Weak;
use std::sync::Arc;
use std::thread::ThreadId;

use anyloop::Loop;

use crate::executor::{Runnable, TaskWaker};

/// The calling thread's id, cached (`thread::current()` clones an `Arc`).
pub(crate) fn current_thread() -> ThreadId {
    thread_local! {
        static ID: ThreadId = std::thread::current().id();
    }
    ID.try_with(|id| *id)
        .unwrap_or_else(|_| std::thread::current().id())
}

/// One live task of this thread: its slot's generation and the task.
struct Slot {
    generation: u32,
    task: Option<Weak<dyn Runnable>>,
}

/// The tasks spawned on this thread, by key (slot index and generation, so a stale key never
/// reaches a newer task).
#[derive(Default)]
struct Tasks {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// The tasks woken during the running dispatch scope.
struct Scope {
    lp: Loop,
    woken: Woken,
}

/// Tasks woken in one scope: usually one, kept inline.
#[derive(Default)]
pub(crate) struct Woken {
    first: Option<Arc<TaskWaker>>,
    more: Vec<Arc<TaskWaker>>,
}

impl Woken {
    fn push(&mut self, waker: Arc<TaskWaker>) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.more.push(waker);
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

impl IntoIterator for Woken {
    type Item = Arc<TaskWaker>;
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<Arc<TaskWaker>>, std::vec::IntoIter<Arc<TaskWaker>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.more)
    }
}

thread_local! {
    static TASKS: RefCell<Tasks> = RefCell::new(Tasks::default());
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
    /// Set while a scope drains its woken tasks (wakes then go through timers).
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

/// Files a task of this thread; returns its key.
pub(crate) fn insert_task(task: Weak<dyn Runnable>) -> u64 {
    TASKS.with(|tasks| {
        let mut tasks = tasks.borrow_mut();
        let index = match tasks.free.pop() {
            Some(index) => index,
            None => {
                tasks.slots.push(Slot {
                    generation: 0,
                    task: None,
                });
                (tasks.slots.len() - 1) as u32
            }
        };
        let slot = &mut tasks.slots[index as usize];
        slot.task = Some(task);
        (u64::from(slot.generation) << 32) | u64::from(index)
    })
}

/// Forgets a finished task (tolerates thread-local teardown at thread exit).
pub(crate) fn remove_task(key: u64) {
    let _ = TASKS.try_with(|tasks| {
        let mut tasks = tasks.borrow_mut();
        let index = (key & u64::from(u32::MAX)) as u32;
        if let Some(slot) = tasks.slots.get_mut(index as usize) {
            if u64::from(slot.generation) == key >> 32 && slot.task.is_some() {
                slot.task = None;
                slot.generation = slot.generation.wrapping_add(1);
                tasks.free.push(index);
            }
        }
    });
}

/// The task filed under `key` on this thread, if it is still alive.
fn find_task(key: u64) -> Option<std::rc::Rc<dyn Runnable>> {
    TASKS
        .try_with(|tasks| {
            let tasks = tasks.borrow();
            let slot = tasks.slots.get((key & u64::from(u32::MAX)) as usize)?;
            if u64::from(slot.generation) != key >> 32 {
                return None;
            }
            slot.task.as_ref()?.upgrade()
        })
        .ok()
        .flatten()
}

/// Queues `waker`'s task to run at the end of the running dispatch scope, when there is one
/// for the task's loop on this thread. False: the caller arms the task's timer instead.
pub(crate) fn queue_in_scope(waker: &Arc<TaskWaker>) -> bool {
    if DRAINING.with(Cell::get) {
        return false;
    }
    SCOPE
        .try_with(|scope| match &mut *scope.borrow_mut() {
            Some(scope) if scope.lp.same_loop(waker.event_loop()) => {
                scope.woken.push(Arc::clone(waker));
                true
            }
            _ => false,
        })
        .unwrap_or(false)
}

/// Runs `f` (one of this crate's loop callbacks) as a dispatch scope of `lp`, then polls the
/// tasks it woke.
pub(crate) fn dispatch<R>(lp: &Loop, f: impl FnOnce() -> R) -> R {
    let outer = SCOPE.with(|scope| {
        scope.replace(Some(Scope {
            lp: lp.clone(),
            woken: Woken::default(),
        }))
    });
    let mut restore = Restore { outer: Some(outer) };
    let result = f();
    let woken = restore.restore();
    run_woken(woken);
    result
}

/// Puts the enclosing scope back, also when `f` unwinds (its woken tasks then get their
/// timers armed, so no wake-up is lost).
struct Restore {
    outer: Option<Option<Scope>>,
}

impl Restore {
    fn restore(&mut self) -> Woken {
        let Some(outer) = self.outer.take() else {
            return Woken::default();
        };
        SCOPE
            .try_with(|scope| scope.replace(outer))
            .ok()
            .flatten()
            .map(|scope| scope.woken)
            .unwrap_or_default()
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        for waker in self.restore() {
            waker.arm();
        }
    }
}

/// Polls each woken task; if one panics (a detached task, whose panic goes to the loop), the
/// rest get their timers armed.
fn run_woken(woken: Woken) {
    if woken.is_empty() {
        return;
    }
    struct Leftover {
        rest: <Woken as IntoIterator>::IntoIter,
        was_draining: bool,
    }
    impl Drop for Leftover {
        fn drop(&mut self) {
            let _ = DRAINING.try_with(|d| d.set(self.was_draining));
            for waker in self.rest.by_ref() {
                waker.arm();
            }
        }
    }
    let was_draining = DRAINING.with(|d| d.replace(true));
    let mut leftover = Leftover {
        rest: woken.into_iter(),
        was_draining,
    };
    for waker in leftover.rest.by_ref() {
        // None: finished or cancelled meanwhile, nothing to poll.
        if let Some(task) = find_task(waker.key()) {
            task.run();
        }
    }
}

/// The error of a thread-bound registration, made precise: a registration refused because
/// the loop is gone says [`LoopGone`](anyloop::Error::LoopGone), whatever thread asked.
pub(crate) fn refine(lp: &Loop, error: anyloop::Error) -> anyloop::Error {
    if lp.is_alive() {
        error
    } else {
        anyloop::Error::LoopGone
    }
}
