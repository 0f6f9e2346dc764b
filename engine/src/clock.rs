//! Deadline and poll-timeout arithmetic that never overflows nor underflows (contract [R38](anyloop::contract#r38)).

use std::time::{Duration, Instant};

/// The longest single wait a backend asks of the OS: just under `i32::MAX` milliseconds
/// (about 24.8 days), the limit of `poll(2)`/`epoll_wait(2)`. Longer waits are split into
/// several iterations, which is harmless: nothing fires early ([R31](anyloop::contract#r31)).
pub const MAX_WAIT: Duration = Duration::from_millis(i32::MAX as u64 - 1);

/// How far in the future a deadline can be pushed when `now + interval` does not fit in an
/// `Instant`: about 100 years, which no process outlives.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + interval`, clamped to a far-future deadline instead of overflowing.
///
/// ```
/// use anyloop_engine::deadline_after;
/// use std::time::{Duration, Instant};
/// let now = Instant::now();
/// assert!(deadline_after(now, Duration::MAX) > now + Duration::from_secs(1_000_000));
/// assert_eq!(deadline_after(now, Duration::ZERO), now);
/// ```
pub fn deadline_after(now: Instant, interval: Duration) -> Instant {
    now.checked_add(interval)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .or_else(|| now.checked_add(MAX_WAIT))
        .unwrap_or(now + Duration::from_secs(1))
}

/// How long a poll may sleep: until `deadline` (if any), capped by the caller's own `limit`
/// (if any) and by [`MAX_WAIT`]. `None` means "block until something happens".
///
/// A deadline in the past gives zero, never an underflow (PulseAudio [B24](anyloop::contract#b24)); "no deadline" is
/// never compared as a number (D-Bus [B30](anyloop::contract#b30)).
///
/// ```
/// use anyloop_engine::poll_timeout;
/// use std::time::{Duration, Instant};
/// let now = Instant::now();
/// assert_eq!(poll_timeout(now, None, None), None);
/// assert_eq!(poll_timeout(now, Some(now - Duration::from_secs(1)), None), Some(Duration::ZERO));
/// assert_eq!(poll_timeout(now, None, Some(Duration::from_millis(5))), Some(Duration::from_millis(5)));
/// assert_eq!(
///     poll_timeout(now, Some(now + Duration::from_millis(9)), Some(Duration::from_secs(1))),
///     Some(Duration::from_millis(9)),
/// );
/// ```
pub fn poll_timeout(
    now: Instant,
    deadline: Option<Instant>,
    limit: Option<Duration>,
) -> Option<Duration> {
    let until_deadline = deadline.map(|d| d.saturating_duration_since(now));
    let wait = match (until_deadline, limit) {
        (None, None) => return None,
        (Some(a), None) | (None, Some(a)) => a,
        (Some(a), Some(b)) => a.min(b),
    };
    Some(wait.min(MAX_WAIT))
}

/// When an engine next needs an iteration: what a host loop (GLib, calloop, tokio) asks before
/// it sleeps. The engine answers without reading the clock; the host reads it once, when it
/// turns the answer into its own poll timeout ([`timeout`](Self::timeout)) or checks whether
/// the deadline has come ([`is_due`](Self::is_due)).
///
/// ```
/// use anyloop_engine::NextIteration;
/// use std::time::{Duration, Instant};
/// let now = Instant::now();
/// assert_eq!(NextIteration::Now.timeout(now), Some(Duration::ZERO));
/// assert_eq!(NextIteration::OnReadiness.timeout(now), None);
/// let at = NextIteration::At(now + Duration::from_millis(5));
/// assert_eq!(at.timeout(now), Some(Duration::from_millis(5)));
/// assert!(!at.is_due(now) && at.is_due(now + Duration::from_millis(5)));
/// assert!(NextIteration::Now.earliest(at) == NextIteration::Now);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextIteration {
    /// At once: a free or a quit is pending, an always-ready fd (a regular file) is enabled,
    /// or an edge-triggered re-check is pending. (A due timer is [`At`](Self::At) a deadline
    /// that has passed.)
    Now,
    /// At this instant, the earliest timer deadline (it may have passed already), or sooner
    /// if the poller's fd becomes readable.
    At(Instant),
    /// Only when the poller's fd becomes readable.
    OnReadiness,
}

impl NextIteration {
    /// How long a host may sleep from `now`: `Some(ZERO)` when the iteration is due, `None`
    /// for no limit, never more than [`MAX_WAIT`].
    pub fn timeout(self, now: Instant) -> Option<Duration> {
        match self {
            NextIteration::Now => Some(Duration::ZERO),
            NextIteration::At(deadline) => poll_timeout(now, Some(deadline), None),
            NextIteration::OnReadiness => None,
        }
    }

    /// [`timeout`](Self::timeout) in `poll(2)`'s terms: milliseconds rounded *up* (a timer is
    /// never early, [R31](anyloop::contract#r31)), `-1` for no limit.
    ///
    /// ```
    /// use anyloop_engine::NextIteration;
    /// use std::time::{Duration, Instant};
    /// let now = Instant::now();
    /// assert_eq!(NextIteration::At(now + Duration::from_micros(1)).timeout_ms(now), 1);
    /// assert_eq!(NextIteration::OnReadiness.timeout_ms(now), -1);
    /// ```
    pub fn timeout_ms(self, now: Instant) -> i32 {
        match self.timeout(now) {
            None => -1,
            Some(wait) => i32::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        }
    }

    /// Whether the iteration is due at `now` (readiness of the poller's fd aside).
    pub fn is_due(self, now: Instant) -> bool {
        match self {
            NextIteration::Now => true,
            NextIteration::At(deadline) => deadline <= now,
            NextIteration::OnReadiness => false,
        }
    }

    /// The earlier of two answers (e.g. the engine's and a host's own bound).
    pub fn earliest(self, other: NextIteration) -> NextIteration {
        match (self, other) {
            (NextIteration::Now, _) | (_, NextIteration::Now) => NextIteration::Now,
            (NextIteration::At(a), NextIteration::At(b)) => NextIteration::At(a.min(b)),
            (NextIteration::At(a), NextIteration::OnReadiness)
            | (NextIteration::OnReadiness, NextIteration::At(a)) => NextIteration::At(a),
            (NextIteration::OnReadiness, NextIteration::OnReadiness) => NextIteration::OnReadiness,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_limits_are_capped() {
        let now = Instant::now();
        assert_eq!(poll_timeout(now, None, Some(Duration::MAX)), Some(MAX_WAIT));
        let far = deadline_after(now, Duration::from_millis(u32::MAX as u64));
        assert_eq!(poll_timeout(now, Some(far), None), Some(MAX_WAIT));
        assert!(deadline_after(now, Duration::MAX) > now);
    }
}
