//! Time: [`sleep`], [`sleep_until`], [`Interval`] and [`timeout`], each on one timer of the
//! loop.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use anyloop::{Error, Loop, Result, Schedule, Timer};

use crate::sched;

/// What a timer callback of this crate shares with its future.
#[derive(Default)]
struct Fired {
    /// Firings so far.
    count: Cell<u64>,
    /// Who to wake at the next firing.
    waker: RefCell<Option<Waker>>,
    /// The callback was freed without the future removing it: the loop is gone.
    freed: Cell<bool>,
}

impl Fired {
    fn set_waker(&self, cx: &Context<'_>) {
        let mut slot = self.waker.borrow_mut();
        match &mut *slot {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
    }

    /// Forgets the waker without calling it (the future is going away).
    fn forget_waker(&self) {
        let waker = self.waker.borrow_mut().take();
        drop(waker);
    }
}

/// Owned by the timer callback: its drop is the callback's free.
struct OnFree(Rc<Fired>);

impl Drop for OnFree {
    fn drop(&mut self) {
        self.0.freed.set(true);
        let waker = self.0.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A thread-bound timer whose firings are counted in the returned [`Fired`].
fn counting_timer(lp: &Loop, schedule: Schedule) -> Result<(Timer, Rc<Fired>)> {
    let fired = Rc::new(Fired::default());
    let hold = OnFree(Rc::clone(&fired));
    let home = lp.clone();
    let timer = lp
        .timer_local(schedule, move |_id| {
            let fired = &hold.0;
            sched::dispatch(&home, || {
                fired.count.set(fired.count.get() + 1);
                let waker = fired.waker.borrow_mut().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            })
        })
        .map_err(|rejected| sched::refine(lp, rejected.into_parts().0))?;
    Ok((timer, fired))
}

/// True when a re-poll finds the loop destroyed although the free of our callback did not
/// tell us (a thread-bound callback of a loop dropped on another thread is freed only when
/// this thread ends, [R42](anyloop::contract#r42)).
fn timer_loop_gone(timer: &Timer) -> bool {
    matches!(timer.schedule(), Err(Error::LoopGone))
}

/// Waits until `duration` has passed: see [`Sleep`].
///
/// ```
/// use std::time::{Duration, Instant};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let lp = anyloop::Runner::handle(&event_loop);
/// let started = Instant::now();
/// anyloop_async::block_on(&mut event_loop, anyloop_async::sleep(&lp, Duration::from_millis(3)))??;
/// assert!(started.elapsed() >= Duration::from_millis(3)); // never early (R31)
/// # Ok(()) }
/// ```
pub fn sleep(lp: &Loop, duration: Duration) -> Sleep {
    Sleep::new(lp, Instant::now().checked_add(duration))
}

/// Waits until `deadline`: see [`Sleep`].
pub fn sleep_until(lp: &Loop, deadline: Instant) -> Sleep {
    Sleep::new(lp, Some(deadline))
}

/// A future that resolves to `Ok(())` once its deadline has passed, made by [`sleep`] and
/// [`sleep_until`].
///
/// The deadline is fixed when the `Sleep` is made; its one-shot timer
/// ([`Schedule::Once`]) is added at the first poll, for the time left then, and removed when
/// the sleep resolves or is dropped. It never resolves early ([R31](anyloop::contract#r31))
/// and always takes at least one loop iteration: `sleep(&lp, Duration::ZERO).await` is the
/// way for a task to let the loop run once. A sleep too long for the clock never fires
/// ([R38](anyloop::contract#r38)).
///
/// # Errors (its output)
/// At the first poll, as [`Loop::timer_local`]: [`WrongThread`](Error::WrongThread) off the
/// loop's thread, [`LoopGone`](Error::LoopGone) when the loop was destroyed. Later,
/// [`LoopGone`](Error::LoopGone) when the loop is destroyed while it waits (it is then woken).
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    lp: Loop,
    /// `None`: too far to represent, never.
    deadline: Option<Instant>,
    armed: Option<(Timer, Rc<Fired>)>,
    done: bool,
}

impl Sleep {
    fn new(lp: &Loop, deadline: Option<Instant>) -> Sleep {
        Sleep {
            lp: lp.clone(),
            deadline,
            armed: None,
            done: false,
        }
    }

    /// The deadline (`None` when too far in the future to represent).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True once it resolved.
    pub fn is_elapsed(&self) -> bool {
        self.done
    }

    /// Moves the deadline (earlier or later), also after the sleep resolved: it then waits
    /// again. One [`Loop::update_timer`] when the timer exists ([R29](anyloop::contract#r29)).
    ///
    /// # Errors
    /// As [`Loop::update_timer`] ([`LoopGone`](Error::LoopGone)).
    pub fn reset(&mut self, deadline: Instant) -> Result<()> {
        self.deadline = Some(deadline);
        self.done = false;
        if let Some((timer, fired)) = &self.armed {
            fired.count.set(0);
            timer.update(Schedule::Once(self.remaining()))?;
        }
        Ok(())
    }

    fn remaining(&self) -> Duration {
        match self.deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        }
    }
}

impl Future for Sleep {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        let Some((timer, fired)) = &self.armed else {
            let delay = self.remaining();
            return match counting_timer(&self.lp, Schedule::Once(delay)) {
                Ok((timer, fired)) => {
                    fired.set_waker(cx);
                    self.armed = Some((timer, fired));
                    Poll::Pending
                }
                Err(error) => Poll::Ready(Err(error)),
            };
        };
        if fired.count.get() > 0 {
            self.done = true;
            if let Some((_timer, fired)) = self.armed.take() {
                fired.forget_waker();
            } // the timer guard is dropped here: removed
            return Poll::Ready(Ok(()));
        }
        if fired.freed.get() || timer_loop_gone(timer) {
            return Poll::Ready(Err(Error::LoopGone));
        }
        fired.set_waker(cx);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((_timer, fired)) = &self.armed {
            // The timer's free comes later, on the loop thread: it must not wake anyone.
            fired.forget_waker();
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("timer", &self.armed.as_ref().map(|(timer, _)| timer.id()))
            .field("done", &self.done)
            .finish()
    }
}

/// A periodic tick: one [`Schedule::Every`] timer, added when the `Interval` is made.
///
/// [`tick`](Self::tick) resolves at the next firing and returns how many firings happened
/// since the previous tick resolved: 1 normally, more when the task was late (the loop itself
/// never replays missed periods, [R30](anyloop::contract#r30)). The first tick comes one
/// period after the interval was made (not at once). A zero period fires in every iteration
/// and keeps the loop from blocking ([`Schedule::EVERY_ITERATION`]).
///
/// ```
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let lp = anyloop::Runner::handle(&event_loop);
/// let ticks = anyloop_async::block_on(&mut event_loop, async {
///     let mut interval = anyloop_async::Interval::new(&lp, Duration::from_millis(1))?;
///     let mut ticks = 0;
///     while ticks < 3 {
///         ticks += interval.tick().await?;
///     }
///     Ok::<_, anyloop::Error>(ticks)
/// })??;
/// assert!(ticks >= 3);
/// # Ok(()) }
/// ```
pub struct Interval {
    timer: Timer,
    fired: Rc<Fired>,
    /// Firings already returned by `tick`.
    seen: u64,
    period: Duration,
}

impl Interval {
    /// An interval ticking every `period`, starting now.
    ///
    /// # Errors
    /// As [`Loop::timer_local`]: [`WrongThread`](Error::WrongThread) off the loop's thread,
    /// [`LoopGone`](Error::LoopGone).
    pub fn new(lp: &Loop, period: Duration) -> Result<Interval> {
        let (timer, fired) = counting_timer(lp, Schedule::Every(period))?;
        Ok(Interval {
            timer,
            fired,
            seen: 0,
            period,
        })
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Waits for the next firing; returns the firings since the previous tick (at least 1).
    ///
    /// # Errors
    /// [`LoopGone`](Error::LoopGone) once the loop is destroyed.
    pub async fn tick(&mut self) -> Result<u64> {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// [`tick`](Self::tick) as a poll function, for hand-written futures.
    ///
    /// # Errors
    /// As [`tick`](Self::tick).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        let count = self.fired.count.get();
        if count > self.seen {
            let ticks = count - self.seen;
            self.seen = count;
            return Poll::Ready(Ok(ticks));
        }
        if self.fired.freed.get() || timer_loop_gone(&self.timer) {
            return Poll::Ready(Err(Error::LoopGone));
        }
        self.fired.set_waker(cx);
        Poll::Pending
    }

    /// Restarts the countdown now ([R29](anyloop::contract#r29)) and forgets firings not
    /// returned yet.
    ///
    /// # Errors
    /// As [`Loop::update_timer`].
    pub fn reset(&mut self) -> Result<()> {
        self.timer.update(Schedule::Every(self.period))?;
        self.seen = self.fired.count.get();
        Ok(())
    }
}

impl Drop for Interval {
    fn drop(&mut self) {
        self.fired.forget_waker();
    }
}

impl fmt::Debug for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interval")
            .field("timer", &self.timer.id())
            .field("period", &self.period)
            .field("fired", &self.fired.count.get())
            .finish()
    }
}

/// Why a [`timeout`] gave no output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimeoutError {
    /// The time ran out first; the inner future was dropped.
    #[error("timed out after {after:?}")]
    Elapsed {
        /// The duration given to [`timeout`].
        after: Duration,
    },
    /// The timer could not be made or its loop is gone: the time limit cannot be kept.
    #[error(transparent)]
    Loop(#[from] Error),
}

/// Runs `future` with a time limit: its output, or [`TimeoutError::Elapsed`] once `duration`
/// passed (the future is then dropped, and with it whatever it had registered).
///
/// The clock starts now, when `timeout` is called; the future is polled first, so an output
/// ready at the same moment as the deadline wins.
///
/// ```
/// use anyloop_async::{timeout, TimeoutError};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let lp = anyloop::Runner::handle(&event_loop);
/// let never = std::future::pending::<()>();
/// let result = anyloop_async::block_on(&mut event_loop, timeout(&lp, Duration::from_millis(2), never))?;
/// assert!(matches!(result, Err(TimeoutError::Elapsed { .. })));
/// # Ok(()) }
/// ```
pub fn timeout<F: Future>(
    lp: &Loop,
    duration: Duration,
    future: F,
) -> impl Future<Output = std::result::Result<F::Output, TimeoutError>> {
    let mut limit = sleep(lp, duration);
    async move {
        let mut future = pin!(future);
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            match Pin::new(&mut limit).poll(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Err(TimeoutError::Elapsed { after: duration })),
                Poll::Ready(Err(error)) => Poll::Ready(Err(TimeoutError::Loop(error))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}
