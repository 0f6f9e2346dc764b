//! The local executor: `!Send` futures run as tasks on a loop's thread, polled from a loop
//! callback; [`JoinHandle`]s, cancellation, and [`block_on`].

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use anyloop::{Error, Loop, Result, Runner, Schedule, TimerCallback, TimerId};

use crate::sched::{self, current_thread};

/// Why a task gave no output ([`JoinHandle`]'s error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The task was cancelled ([`JoinHandle::abort`], or its [`LocalExecutor`] was dropped)
    /// before it finished.
    #[error("the task was cancelled")]
    Cancelled,
    /// The task's future panicked; the panic was caught where the task was polled.
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The task's loop was destroyed before the task finished; its future was dropped
    /// ([R48](anyloop::contract#r48)).
    #[error("the task's event loop is gone (it was dropped)")]
    LoopGone,
}

/// The waker of a task: `Send + Sync`, callable from any thread. Waking arms the task's
/// zero-delay one-shot timer, which any thread may do and which wakes a blocked loop
/// ([R28](anyloop::contract#r28), [R40](anyloop::contract#r40)); on the loop thread inside
/// one of this crate's callbacks it queues the task for the end of that callback instead.
pub(crate) struct TaskWaker {
    lp: Loop,
    home: ThreadId,
    key: u64,
    timer: OnceLock<TimerId>,
    /// True from a wake until the poll it asked for starts: wakes in between are merged.
    scheduled: AtomicBool,
}

impl TaskWaker {
    pub(crate) fn event_loop(&self) -> &Loop {
        &self.lp
    }

    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Schedules the task's next poll through its timer (one vtable call).
    pub(crate) fn arm(&self) {
        if let Some(id) = self.timer.get() {
            // NotFound: the task ended and its timer is gone; LoopGone: so is the loop. In
            // both cases there is nothing left to poll.
            let _ = self.lp.update_timer(*id, Schedule::Once(Duration::ZERO));
        }
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return; // a poll is already on its way
        }
        if self.home == current_thread() && sched::queue_in_scope(self) {
            return;
        }
        self.arm();
    }
}

impl fmt::Debug for TaskWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskWaker")
            .field("timer", &self.timer.get())
            .field("scheduled", &self.scheduled.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What the loop side (timer, scope, executor) does with a task, whatever its output type.
pub(crate) trait Runnable {
    /// Polls the task once, on the loop thread.
    fn run(&self);
    /// Cancels it: the future is dropped now (or right after the poll it is in).
    fn cancel(&self);
    /// The loop freed the task's timer while the task was still running: the loop is gone.
    fn freed(&self);
    /// True until the task finished, was cancelled or lost its loop.
    fn is_running(&self) -> bool;
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Running,
    Finished,
    Cancelled,
    LoopGone,
}

struct Task<F: Future> {
    waker: Arc<TaskWaker>,
    /// `waker` as a `std::task::Waker`, made once.
    std_waker: Waker,
    stage: Cell<Stage>,
    future: RefCell<Option<Pin<Box<F>>>>,
    output: RefCell<Option<std::result::Result<F::Output, JoinError>>>,
    join_waker: RefCell<Option<Waker>>,
    detached: Cell<bool>,
}

impl<F: Future> Task<F> {
    /// Ends the task: drops the future, removes the timer, hands `output` to the handle.
    fn end(&self, stage: Stage, output: std::result::Result<F::Output, JoinError>) {
        self.stage.set(stage);
        sched::remove_task(self.waker.key);
        if let Some(id) = self.waker.timer.get() {
            // From the timer's own callback this is a self-removal (R16); the free of the
            // callback follows on the loop thread and finds the task ended.
            let _ = self.waker.lp.remove_timer(*id);
        }
        // Drop the future outside its `RefCell` borrow (its drop may touch this task, e.g.
        // by dropping its own handle). When the future is being polled further up the stack
        // (a task cancelling itself), the poller drops it on return.
        let future = self
            .future
            .try_borrow_mut()
            .ok()
            .and_then(|mut slot| slot.take());
        drop(future);
        if !self.detached.get() {
            *self.output.borrow_mut() = Some(output);
            let waker = self.join_waker.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl<F: Future> Runnable for Task<F> {
    fn run(&self) {
        if self.stage.get() != Stage::Running {
            return;
        }
        let mut cx = Context::from_waker(&self.std_waker);
        let polled = {
            let Ok(mut slot) = self.future.try_borrow_mut() else {
                // Being polled further up this stack (its poll made a callback of this crate
                // run synchronously, a registry's `close_with` say): poll again from the
                // timer, so that this wake is not lost.
                self.waker.arm();
                return;
            };
            let Some(future) = slot.as_mut() else {
                return;
            };
            // An RMW, so that it reads (and synchronises with) the latest wake's
            // `swap(true)`: whatever the waker's thread published before waking is visible
            // to this poll.
            self.scheduled_clear();
            panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)))
        };
        match polled {
            Ok(Poll::Pending) => {
                if self.stage.get() != Stage::Running {
                    // Cancelled from inside its own poll: drop the future now.
                    let future = self.future.borrow_mut().take();
                    drop(future);
                }
            }
            Ok(Poll::Ready(value)) => {
                if self.stage.get() == Stage::Running {
                    self.end(Stage::Finished, Ok(value));
                } else {
                    let future = self.future.borrow_mut().take();
                    drop(future);
                }
            }
            Err(payload) => {
                let message = panic_message(&*payload);
                let detached = self.detached.get();
                if self.stage.get() == Stage::Running {
                    self.end(Stage::Finished, Err(JoinError::Panicked { message }));
                } else {
                    let future = self.future.borrow_mut().take();
                    drop(future);
                }
                if detached {
                    // Nobody will look at the output: let the loop report the panic
                    // (`CallbackPanicked`, R54) rather than swallow it.
                    panic::resume_unwind(payload);
                }
            }
        }
    }

    fn cancel(&self) {
        if self.stage.get() == Stage::Running {
            self.end(Stage::Cancelled, Err(JoinError::Cancelled));
        }
    }

    fn freed(&self) {
        if self.stage.get() == Stage::Running {
            self.end(Stage::LoopGone, Err(JoinError::LoopGone));
        }
    }

    fn is_running(&self) -> bool {
        self.stage.get() == Stage::Running
    }
}

impl<F: Future> Task<F> {
    fn scheduled_clear(&self) {
        self.waker.scheduled.swap(false, Ordering::AcqRel);
    }
}

/// The message of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Owned by the task's timer callback; its drop is the callback's free. A free the task did
/// not ask for (by ending) means the loop was destroyed ([R48](anyloop::contract#r48)).
struct TimerHold(Rc<dyn Runnable>);

impl Drop for TimerHold {
    fn drop(&mut self) {
        self.0.freed();
    }
}

/// What a [`JoinHandle`] needs from its task, whatever the future type.
trait Join<T> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<std::result::Result<T, JoinError>>;
    fn cancel(&self);
    fn detach(&self);
    fn is_finished(&self) -> bool;
}

impl<F: Future> Join<F::Output> for Task<F> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<std::result::Result<F::Output, JoinError>> {
        if let Some(output) = self.output.borrow_mut().take() {
            return Poll::Ready(output);
        }
        if self.stage.get() == Stage::Running {
            // A loop destroyed on another thread cannot free this thread-bound timer (its
            // drop waits for this thread, R42): ask the loop directly.
            if let Some(id) = self.waker.timer.get() {
                if let Err(Error::LoopGone) = self.waker.lp.timer_schedule(*id) {
                    self.freed();
                    if let Some(output) = self.output.borrow_mut().take() {
                        return Poll::Ready(output);
                    }
                }
            }
            let mut slot = self.join_waker.borrow_mut();
            match &mut *slot {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                other => *other = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        panic!("JoinHandle polled after it returned its output")
    }

    fn cancel(&self) {
        Runnable::cancel(self);
    }

    fn detach(&self) {
        self.detached.set(true);
        self.output.borrow_mut().take();
    }

    fn is_finished(&self) -> bool {
        self.stage.get() != Stage::Running
    }
}

/// Spawns `future` as a task on `lp`, polled on the loop's thread from the loop's own
/// dispatch, and returns its [`JoinHandle`].
///
/// The future need not be `Send`: it may hold an `Rc`, a GTK widget, a `RefCell` borrowed
/// across no await. It is first polled in the next iteration of the loop (never inside this
/// call), then each time its waker is woken, which any thread may do. A task is one
/// thread-bound zero-delay one-shot timer on the loop ([`Schedule::Once`]), counted in
/// [`LoopStats::timers`](anyloop::LoopStats::timers) until the task ends.
///
/// Dropping the handle cancels the task (its future is dropped at once, with whatever
/// registrations it held); [`JoinHandle::detach`] lets it run to completion unobserved.
///
/// ```
/// use anyloop::Runner;
/// use std::{rc::Rc, time::Duration};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let lp = event_loop.handle();
/// let shared = Rc::new("not Send"); // fine in a local task
/// let task = anyloop_async::spawn_local(&lp, {
///     let (lp, shared) = (lp.clone(), shared.clone());
///     async move {
///         anyloop_async::sleep(&lp, Duration::from_millis(1)).await?;
///         Ok::<_, anyloop::Error>(shared.len())
///     }
/// })?;
/// assert_eq!(anyloop_async::block_on(&mut event_loop, task)???, 8);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`WrongThread`](Error::WrongThread) off the loop's thread (a task is bound to it),
/// [`LoopGone`](Error::LoopGone) when the loop was destroyed, or another error of
/// [`Loop::add_timer`].
pub fn spawn_local<F>(lp: &Loop, future: F) -> Result<JoinHandle<F::Output>>
where
    F: Future + 'static,
    F::Output: 'static,
{
    spawn_inner(lp, future).map(|(handle, _)| handle)
}

/// A new task's handle, and the weak reference a [`LocalExecutor`] keeps.
type Spawned<T> = (JoinHandle<T>, Weak<dyn Runnable>);

fn spawn_inner<F>(lp: &Loop, future: F) -> Result<Spawned<F::Output>>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let task = Rc::new_cyclic(|me: &Weak<Task<F>>| {
        let me: Weak<dyn Runnable> = me.clone();
        let waker = Arc::new(TaskWaker {
            lp: lp.clone(),
            home: current_thread(),
            key: sched::insert_task(me),
            timer: OnceLock::new(),
            // The first poll is already scheduled by the timer's initial schedule.
            scheduled: AtomicBool::new(true),
        });
        Task {
            std_waker: Waker::from(Arc::clone(&waker)),
            waker,
            stage: Cell::new(Stage::Running),
            future: RefCell::new(Some(Box::pin(future))),
            output: RefCell::new(None),
            join_waker: RefCell::new(None),
            detached: Cell::new(false),
        }
    });
    let hold = TimerHold(task.clone());
    let callback = TimerCallback::local(move |_id| hold.0.run()).named("anyloop-async task");
    match lp.add_timer(Schedule::Once(Duration::ZERO), callback) {
        Ok(id) => {
            let _ = task.waker.timer.set(id);
            let runnable: Rc<dyn Runnable> = task.clone();
            let weak = Rc::downgrade(&runnable);
            Ok((JoinHandle { task: Some(task) }, weak))
        }
        Err(rejected) => {
            // Not a loop-gone free: the task never started.
            task.stage.set(Stage::Cancelled);
            sched::remove_task(task.waker.key);
            let (error, callback) = rejected.into_parts();
            drop(callback);
            Err(sched::refine(lp, error))
        }
    }
}

/// A task's handle: a future of its output, and the task's owner.
///
/// - Awaiting it gives `Ok(output)`, or a [`JoinError`]: [`Cancelled`](JoinError::Cancelled),
///   [`Panicked`](JoinError::Panicked) (the task's panic was caught), or
///   [`LoopGone`](JoinError::LoopGone) (the loop was destroyed first). Any executor may await
///   it, on the loop's thread (it is not `Send`).
/// - **Dropping it cancels the task**: the task's future is dropped at once (or, when the
///   handle is dropped by the task itself, as soon as its current poll returns), and with it
///   every watch and timer it held; the task is never polled again.
/// - [`detach`](Self::detach) gives the handle up and lets the task run to its end; a
///   detached task's panic is not swallowed but reported by the loop's iteration
///   ([`CallbackPanicked`](anyloop::Error::CallbackPanicked), [R54](anyloop::contract#r54)).
///
/// Polling a handle again after it returned its output panics, as for most futures.
#[must_use = "dropping a JoinHandle cancels its task; call `detach()` to let it run"]
pub struct JoinHandle<T> {
    task: Option<Rc<dyn Join<T>>>,
}

impl<T> JoinHandle<T> {
    /// Cancels the task now, as dropping the handle would; awaiting the handle afterwards
    /// gives [`JoinError::Cancelled`] (or the output, if the task had already finished).
    pub fn abort(&self) {
        if let Some(task) = &self.task {
            task.cancel();
        }
    }

    /// Lets the task run to its end without a handle; its output is dropped.
    pub fn detach(mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }

    /// True once the task finished, was cancelled or lost its loop.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|task| task.is_finished())
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = std::result::Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &self.task {
            Some(task) => task.poll_join(cx),
            None => panic!("JoinHandle polled after it was detached"),
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.cancel();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// A group of tasks on one loop that ends with it: dropping the executor cancels every task it
/// spawned and that is still running, detached ones included.
///
/// A library object that runs background tasks keeps one, so that its tasks (and their
/// watches and timers) go away with the object.
///
/// ```
/// use anyloop::Runner;
/// use std::{cell::Cell, rc::Rc, time::Duration};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let lp = event_loop.handle();
/// let ticks = Rc::new(Cell::new(0));
/// let executor = anyloop_async::LocalExecutor::new(&lp);
/// executor.spawn({
///     let (lp, ticks) = (lp.clone(), ticks.clone());
///     async move {
///         let Ok(mut interval) = anyloop_async::Interval::new(&lp, Duration::from_millis(1)) else {
///             return;
///         };
///         while interval.tick().await.is_ok() {
///             ticks.set(ticks.get() + 1);
///         }
///     }
/// })?
/// .detach();
/// let deadline = std::time::Instant::now() + Duration::from_secs(10);
/// event_loop.run_until(Some(deadline), &mut || ticks.get() >= 3)?;
/// assert_eq!(executor.len(), 1);
/// drop(executor); // cancels the ticking task, removing its interval timer
/// assert_eq!(event_loop.stats().timers, 0);
/// # Ok(()) }
/// ```
pub struct LocalExecutor {
    lp: Loop,
    tasks: RefCell<Vec<Weak<dyn Runnable>>>,
}

impl LocalExecutor {
    /// An executor whose tasks run on `lp`.
    pub fn new(lp: &Loop) -> LocalExecutor {
        LocalExecutor {
            lp: lp.clone(),
            tasks: RefCell::new(Vec::new()),
        }
    }

    /// Spawns a task, as [`spawn_local`], owned by this executor as well as by the handle.
    ///
    /// # Errors
    /// As [`spawn_local`].
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let (handle, weak) = spawn_inner(&self.lp, future)?;
        let mut tasks = self.tasks.borrow_mut();
        tasks.retain(|task| task.upgrade().is_some_and(|task| task.is_running()));
        tasks.push(weak);
        Ok(handle)
    }

    /// Tasks of this executor that are still running.
    pub fn len(&self) -> usize {
        self.tasks
            .borrow()
            .iter()
            .filter(|task| task.upgrade().is_some_and(|task| task.is_running()))
            .count()
    }

    /// True when none of its tasks is still running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The loop its tasks run on.
    pub fn event_loop(&self) -> &Loop {
        &self.lp
    }
}

impl Drop for LocalExecutor {
    fn drop(&mut self) {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        for task in tasks.iter().filter_map(Weak::upgrade) {
            task.cancel();
        }
    }
}

impl fmt::Debug for LocalExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalExecutor")
            .field("loop", &self.lp)
            .field("tasks", &self.len())
            .finish()
    }
}

/// The waker of [`block_on`]'s future: a flag, plus [`Loop::wake`] from other threads.
struct RootWaker {
    woken: AtomicBool,
    lp: Loop,
    home: ThreadId,
}

impl Wake for RootWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) && current_thread() != self.home {
            // On the loop thread the wake comes from a callback of the running iteration
            // (after which `run_once` returns) or from the future's own poll (checked before
            // blocking); from any other thread, end the loop's wait (R46).
            self.lp.wake();
        }
    }
}

/// Runs `runner`'s loop until `future` completes, and returns its output: the blocking
/// "perform until done" call a library can offer on top of its `async fn`s, whatever the
/// backend, and the way tests drive futures.
///
/// The future is polled on the calling thread (the loop's), between iterations, each time its
/// waker was woken; tasks spawned on the same loop ([`spawn_local`]) run meanwhile, as does
/// everything else registered on it. Iterations block while nothing is due; a wake from
/// another thread ends the wait at once ([`Loop::wake`]). A quit request
/// ([`Quitter::quit`](anyloop::Quitter::quit)) does not stop it: bound the wait with
/// [`timeout`](crate::timeout) instead.
///
/// ```
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let lp = anyloop::Runner::handle(&event_loop);
/// let answer = anyloop_async::block_on(&mut event_loop, async {
///     anyloop_async::sleep(&lp, Duration::from_millis(2)).await?;
///     Ok::<_, anyloop::Error>(42)
/// })??;
/// assert_eq!(answer, 42);
/// # Ok(()) }
/// ```
///
/// # Errors
/// The first error of an iteration ([`Runner::run_once`]: a callback that panicked, a
/// thread-bound callback due on another thread, a failed wait); the future is then dropped.
pub fn block_on<F: Future>(runner: &mut dyn Runner, future: F) -> Result<F::Output> {
    let signal = Arc::new(RootWaker {
        woken: AtomicBool::new(true),
        lp: runner.handle(),
        home: current_thread(),
    });
    let waker = Waker::from(Arc::clone(&signal));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if signal.woken.swap(false, Ordering::AcqRel) {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Ok(output);
            }
        }
        // Woken during its own poll: iterate without blocking, then poll again. Pending
        // frees too: an iteration runs them before it waits (R25), and a free may wake the
        // future (a watch of the future's own that a registry close freed, say) with no
        // vtable operation that would keep that wait short.
        let wait = if signal.woken.load(Ordering::Acquire) || runner.stats().pending_frees > 0 {
            Some(Duration::ZERO)
        } else {
            None
        };
        runner.run_once(wait)?;
    }
}
