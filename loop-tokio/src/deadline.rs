//! The engine's next deadline in tokio's reactor: one `timerfd`.
//!
//! Why not a `tokio::time::Sleep`: tokio's timer wheel ticks in whole milliseconds, rounds a
//! deadline *up* to the next tick, and parks its thread with a millisecond timeout, so a
//! `Sleep` ends 0 to 2 ms after its deadline. Measured on the project's 2-vCPU VM
//! (release build, 200 to 400 samples each): a 100 µs `sleep` ended 979 µs late at the median
//! (p99 1,997 µs), a 1 ms one 1,097 µs late (p99 1,206 µs), while a `timerfd` registered with
//! the same reactor ended 23 to 39 µs late (p99 36 to 745 µs). Through anyloop, an
//! `Every(1 ms)` timer then fired every 2,177 µs on average (every 1,036 to 1,103 µs on the
//! select, GLib and calloop backends) and an `Every(5 ms)` one every 6,125 µs (5,038 to
//! 5,239 µs elsewhere). The `timerfd` costs a system call when the deadline moves
//! (`timerfd_settime`: 503 ns there, against 74 ns for `Sleep::reset` plus a poll) and one
//! file descriptor; a deadline that does not move (within [`REARM_SLACK`]) costs nothing, and
//! an iteration without timers never touches it. anyloop's timers keep their precision, so the
//! choice is the `timerfd`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// An armed deadline within this distance of the wanted one is kept as is: the deadline is
/// recomputed from `now` before every wait and jitters by nanoseconds, and moving it costs a
/// system call.
pub(crate) const REARM_SLACK: Duration = Duration::from_micros(20);

/// A monotonic `timerfd` in tokio's reactor, armed (one-shot) for the engine's next deadline.
#[derive(Debug)]
pub(crate) struct Deadline {
    fd: TimerFd,
    /// What the timer is armed for (`None`: disarmed, or fired and consumed).
    armed: Option<Instant>,
}

/// The timer's fd, made with the driver and registered with tokio's reactor at its first turn.
#[derive(Debug)]
enum TimerFd {
    Made(OwnedFd),
    Registered(AsyncFd<OwnedFd>),
    /// Only while the fd moves into the reactor (and after a failed registration).
    Moving,
}

impl Deadline {
    /// A disarmed timer, not registered with any reactor yet (no runtime is needed).
    pub(crate) fn new() -> std::io::Result<Deadline> {
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Deadline {
            fd: TimerFd::Made(timer),
            armed: None,
        })
    }

    /// Whether the timer is in a reactor.
    pub(crate) fn is_registered(&self) -> bool {
        matches!(self.fd, TimerFd::Registered(_))
    }

    /// Registers the timer with the current runtime's reactor (the caller checked that there
    /// is one, with I/O enabled); nothing if it is registered already.
    pub(crate) fn register(&mut self) -> std::io::Result<()> {
        if !matches!(self.fd, TimerFd::Made(_)) {
            return Ok(());
        }
        let TimerFd::Made(timer) = std::mem::replace(&mut self.fd, TimerFd::Moving) else {
            return Ok(());
        };
        // SAFETY: `timer` is an `OwnedFd` that the `AsyncFd` takes ownership of: its number
        // stays open and names the same timer for the whole life of the `AsyncFd`, and
        // `OwnedFd::as_raw_fd` always returns that number.
        match unsafe { AsyncFd::register_with_interest(timer, Interest::READABLE) } {
            Ok(registered) => {
                self.fd = TimerFd::Registered(registered);
                Ok(())
            }
            Err(err) => {
                let (timer, source) = err.into_parts();
                self.fd = TimerFd::Made(timer);
                Err(source)
            }
        }
    }

    /// Arms the timer for `wanted` (`None`: disarms it), unless it is armed for that already.
    pub(crate) fn set(&mut self, wanted: Option<Instant>) -> std::io::Result<()> {
        let keep = match (self.armed, wanted) {
            (None, None) => true,
            (Some(armed), Some(wanted)) => {
                let gap = if armed > wanted {
                    armed - wanted
                } else {
                    wanted - armed
                };
                gap <= REARM_SLACK
            }
            _ => false,
        };
        if keep {
            return Ok(());
        }
        // Relative to a clock reading taken now, before the call: the timer cannot expire
        // before `wanted` (R31). A zero value would disarm it: one nanosecond instead.
        let value = match wanted {
            Some(wanted) => timespec(
                wanted
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1)),
            ),
            None => timespec(Duration::ZERO),
        };
        let spec = Itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: value,
        };
        // A report tokio holds from an earlier expiry is taken *before* the timer is set, with
        // its readiness tick: once the call reset the expiration count (the fd is not
        // readable), that report is stale and is cleared. The new expiry may come right away,
        // and on a multi-thread runtime tokio's reactor may record it on another thread before
        // the clear: it then has a newer tick, and tokio ignores a clear made with the older
        // one, so the expiry is not lost.
        let TimerFd::Registered(fd) = &self.fd else {
            return Err(std::io::Error::other(
                "the anyloop timerfd is not in a reactor",
            ));
        };
        let mut cx = Context::from_waker(Waker::noop());
        let stale = match fd.poll_read_ready(&mut cx) {
            Poll::Ready(Ok(guard)) => Some(guard),
            _ => None,
        };
        timerfd_settime(fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        if let Some(mut guard) = stale {
            guard.clear_ready();
        }
        self.armed = wanted;
        tracing::trace!(fd = fd.as_raw_fd(), ?wanted, "deadline armed");
        Ok(())
    }

    /// Whether the armed deadline has expired (tokio reports the timer readable). The
    /// expiry is consumed: the next [`set`](Self::set) re-arms the timer.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let TimerFd::Registered(fd) = &self.fd else {
            return Poll::Pending;
        };
        if self.armed.is_none() {
            return Poll::Pending;
        }
        match fd.poll_read_ready(cx) {
            Poll::Ready(Ok(mut guard)) => {
                guard.clear_ready();
                self.armed = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timespec(duration: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}
