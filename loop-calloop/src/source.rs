//! The calloop event source that drives the engine: from calloop's report to the user's
//! callback.
//!
//! One event, top to bottom:
//!
//! 1. A watched fd becomes ready (or another thread makes an op, which writes the engine's
//!    eventfd): the engine's **epoll fd** becomes readable. calloop polls that fd as one
//!    level-triggered `Generic` entry, whatever the number of watches (O(ready), not
//!    O(registered)).
//! 2. Or the engine's earliest timer is due: calloop's own timer wheel holds **one** calloop
//!    `Timer` for that deadline (our timers stay in the engine's O(log n) heap).
//! 3. calloop calls [`AnyloopSource::process_events`], which runs one engine iteration that
//!    does not wait ([`HostedEngine::dispatch`]; read its module docs, then
//!    `engine/src/dispatch.rs` for the rest of the path): frees, `epoll_wait(0)` on the
//!    engine's epoll (not when only the timer was reported: calloop's poll just found that fd
//!    quiet), timers then watches, each callback with the table unlocked, frees again.
//!    ERROR/HANGUP are exact, as the engine's own epoll reports them (calloop's `Readiness` is
//!    not used).
//! 4. Afterwards the source asks [`HostedEngine::next_iteration`] when the engine needs the
//!    next iteration and, if that moved, returns [`PostAction::Reregister`], and calloop
//!    re-arms the one timer through [`AnyloopSource::reregister`] (no syscall: calloop's
//!    timers live in its own heap). A zero timeout (a zero-interval timer, an always-ready
//!    file, a pending free, a quit) arms it at *now*, so calloop polls without sleeping.
//!
//! **Wake-ups.** calloop's `LoopHandle` is not `Send`, and no other thread ever touches
//! calloop: vtable ops from any thread go straight into the engine's table (ids are returned
//! synchronously) and the engine's eventfd, inside the epoll set calloop watches, wakes
//! calloop when needed. A second, fd-less source, [`SleepHook`], brackets calloop's poll:
//!
//! - right before calloop sleeps it calls [`HostedEngine::prepare`], so that from then on an
//!   op from another thread writes the eventfd (as while the built-in loop waits,
//!   [R40](anyloop::contract#r40)); and it looks at the answer: if an op made meanwhile (by
//!   another thread, or on the loop thread by another calloop source's callback,
//!   [R41](anyloop::contract#r41)) needs an iteration sooner than the armed timer, it makes
//!   the epoll fd readable itself ([`HostedEngine::wake`]), so calloop does not sleep and the
//!   source re-arms (step 4);
//! - right after the poll it calls [`HostedEngine::end_wait`]: ops need no wake-up until the
//!   next look.
//!
//! An op is thus either seen by that look or made while calloop sleeps (and wakes it): no
//! wake-up can be lost (calloop [B51](anyloop::contract#b51)/B52 were lost wake-ups through a coalescing flag; the
//! engine's `wake_pending` flag is cleared only by the iteration that drained the eventfd).
//!
//! The sources insert nothing into calloop after they were inserted themselves and never
//! touch the loop from a hook, so callbacks can never hit calloop's double borrow ([B50](anyloop::contract#b50)).

use std::cell::{Cell, RefCell};
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyloop_engine::linux::EpollPoller;
use anyloop_engine::{HostedEngine, NextIteration};
use calloop::generic::Generic;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{
    EventIterator, EventSource, LoopSignal, Poll, PostAction, Readiness, Token, TokenFactory,
};

/// The engine as calloop hosts it: shared by the source, its sleep hook and the
/// [`CalloopSource`](crate::CalloopSource) on the loop thread.
pub(crate) type Host = Rc<HostedEngine<EpollPoller>>;

/// An armed calloop timer within this distance of the wanted deadline is kept as is: the
/// deadline is recomputed from `now` after every iteration and jitters by nanoseconds.
const REARM_SLACK: Duration = Duration::from_micros(20);

/// The deadline for the source's calloop timer matching a
/// [`next_iteration`](HostedEngine::next_iteration) answer (the clock is read only for "now").
pub(crate) fn wanted(next: NextIteration) -> Option<Instant> {
    match next {
        NextIteration::Now => Some(Instant::now()),
        NextIteration::At(deadline) => Some(deadline),
        NextIteration::OnReadiness => None,
    }
}

/// Whether a calloop timer armed for `armed` must be re-registered for `wanted`. It is kept
/// within [`REARM_SLACK`] either way: the wanted deadline is recomputed from `now` after every
/// iteration and jitters by nanoseconds.
pub(crate) fn needs_rearm(armed: Option<Instant>, wanted: Option<Instant>) -> bool {
    match (armed, wanted) {
        (None, None) => false,
        (Some(armed), Some(wanted)) => {
            let gap = if armed > wanted {
                armed - wanted
            } else {
                wanted - armed
            };
            gap > REARM_SLACK
        }
        _ => true,
    }
}

/// What the backend and its sources share on the loop thread, besides the engine.
#[derive(Debug, Default)]
pub(crate) struct Status {
    /// Stopped when a quit request arrives, so calloop's own `EventLoop::run` returns too.
    pub(crate) signal: RefCell<Option<LoopSignal>>,
    /// The deadline the source's calloop timer is registered for in calloop's wheel, if any.
    pub(crate) armed: Cell<Option<Instant>>,
    /// An engine iteration already ran in the current calloop dispatch. calloop may report
    /// both the epoll fd and the timer from one poll; a second iteration would run every
    /// ready callback (and a 0-interval timer) twice in one dispatch ([R27](anyloop::contract#r27), [R30](anyloop::contract#r30)).
    pub(crate) iterated: Cell<bool>,
}

/// A second, fd-less calloop source that only takes calloop's lifecycle hooks around its
/// poll. Kept apart from [`AnyloopSource`] because calloop 0.14 adds a source with
/// lifecycle hooks to its hook list again on every re-registration (never removing the old
/// entry), and `AnyloopSource` re-registers whenever its timer moves.
pub(crate) struct SleepHook {
    pub(crate) host: Host,
    pub(crate) status: Rc<Status>,
}

impl std::fmt::Debug for SleepHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SleepHook").finish_non_exhaustive()
    }
}

impl EventSource for SleepHook {
    type Event = ();
    type Metadata = ();
    type Ret = ();
    type Error = std::io::Error;

    fn process_events<F>(
        &mut self,
        _readiness: Readiness,
        _token: Token,
        _callback: F,
    ) -> Result<PostAction, Self::Error>
    where
        F: FnMut(Self::Event, &mut Self::Metadata) -> Self::Ret,
    {
        Ok(PostAction::Continue)
    }

    fn register(&mut self, _poll: &mut Poll, _tokens: &mut TokenFactory) -> calloop::Result<()> {
        Ok(())
    }

    fn reregister(&mut self, _poll: &mut Poll, _tokens: &mut TokenFactory) -> calloop::Result<()> {
        Ok(())
    }

    fn unregister(&mut self, _poll: &mut Poll) -> calloop::Result<()> {
        self.host.end_wait();
        Ok(())
    }

    const NEEDS_EXTRA_LIFECYCLE_EVENTS: bool = true;

    /// Right before calloop polls: from now on ops from other threads wake calloop (through
    /// the engine's eventfd); anything that happened before is seen here. If the engine needs
    /// an iteration sooner than the armed timer says (an op made outside the source's
    /// dispatch: a new earliest timer, a pending free, a quit), make the engine's epoll fd
    /// readable so that calloop polls without sleeping and dispatches the source, which then
    /// re-arms. (This hook cannot re-arm the timer itself: calloop lends no `Poll` here, and
    /// touching the loop from a hook is calloop's double-borrow trap, [B50](anyloop::contract#b50).)
    fn before_sleep(&mut self) -> calloop::Result<Option<(Readiness, Token)>> {
        let wanted = wanted(self.host.prepare().next());
        let sooner = match (wanted, self.status.armed.get()) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(wanted), Some(armed)) => wanted + REARM_SLACK < armed,
        };
        if sooner {
            self.host.wake();
        }
        Ok(None)
    }

    /// calloop's poll returned: ops need no wake-up until the next `before_sleep`.
    fn before_handle_events(&mut self, _events: EventIterator<'_>) {
        self.host.end_wait();
        self.status.iterated.set(false);
    }
}

/// The single calloop source of an anyloop engine.
pub(crate) struct AnyloopSource {
    /// The engine's epoll fd, level-triggered. Declared first: dropped (and removed from
    /// calloop's poller) before the engine closes the fd.
    epoll: Generic<BorrowedFd<'static>>,
    /// One calloop timer for the engine's next deadline.
    timer: Timer,
    /// The deadline the engine wants next (set after every iteration).
    wanted: Option<Instant>,
    /// `wanted` was computed by the dispatch that asked calloop for this re-registration: it
    /// need not be asked again (one lock and one deadline per iteration).
    wanted_fresh: bool,
    /// Alternates the token of successive timer registrations, so that a report for the
    /// previous one, still queued in the same calloop dispatch, is not taken for the new one.
    flip: bool,
    /// The engine replaced its epoll instance behind the fd ([B62](anyloop::contract#b62)):
    /// calloop must register it again.
    fd_stale: bool,
    status: Rc<Status>,
    host: Host,
}

impl std::fmt::Debug for AnyloopSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyloopSource")
            .field("armed", &self.status.armed.get())
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl AnyloopSource {
    pub(crate) fn new(host: Host, status: Rc<Status>) -> Self {
        // SAFETY: the number is the hosted engine's fd, which stays open as long as the
        // `HostedEngine` lives; this source holds it (`host`, declared after `epoll`, so the
        // calloop registration is dropped first). The borrow is only handed to calloop's
        // poller, which registers and deregisters it by number and never closes it.
        let epoll = unsafe { BorrowedFd::borrow_raw(host.raw_fd()) };
        AnyloopSource {
            epoll: Generic::new(epoll, calloop::Interest::READ, calloop::Mode::Level),
            timer: Timer::from_deadline(Instant::now()),
            wanted: None,
            wanted_fresh: false,
            flip: false,
            fd_stale: false,
            status,
            host,
        }
    }

    /// One engine iteration that does not wait (nor polls the engine's epoll unless
    /// `poller_ready`, [`HostedEngine::dispatch`]); a quit request stops calloop's own `run`
    /// too (it is consumed by [`CalloopSource::take_quit`](crate::CalloopSource)).
    fn iterate(&mut self, poller_ready: bool) {
        self.host.dispatch(poller_ready);
        if self.host.quit_requested() {
            if let Some(signal) = self.status.signal.borrow().as_ref() {
                signal.stop();
            }
        }
    }

    /// Asks the engine when it next needs an iteration (`None`: only on readiness).
    fn compute_wanted(&mut self) {
        self.wanted = wanted(self.host.next_iteration());
    }

    /// Whether the calloop timer must be re-registered for `wanted`.
    fn needs_rearm(&self) -> bool {
        needs_rearm(self.status.armed.get(), self.wanted)
    }

    /// Registers the calloop timer for `wanted` (the fd's token was taken already).
    fn arm(&mut self, poll: &mut Poll, tokens: &mut TokenFactory) -> calloop::Result<()> {
        if self.status.armed.take().is_some() {
            // Cancels our entry in calloop's wheel (a no-op if it fired already).
            self.timer.unregister(poll)?;
        }
        if let Some(deadline) = self.wanted {
            self.flip = !self.flip;
            if self.flip {
                let _ = tokens.token();
            }
            self.timer.set_deadline(deadline);
            self.timer.register(poll, tokens)?;
            self.status.armed.set(Some(deadline));
        }
        Ok(())
    }
}

/// The calloop loop dropped its source (the loop itself was dropped, or the source was
/// removed): the engine goes with it, so every remaining free runs now, on this thread
/// ([R48](anyloop::contract#r48)), whichever of the two the application drops first.
impl Drop for AnyloopSource {
    fn drop(&mut self) {
        self.host.close();
    }
}

impl EventSource for AnyloopSource {
    type Event = ();
    type Metadata = ();
    type Ret = ();
    type Error = std::io::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        _callback: F,
    ) -> Result<PostAction, Self::Error>
    where
        F: FnMut(Self::Event, &mut Self::Metadata) -> Self::Ret,
    {
        let mut ours = false;
        // The epoll fd is readable: some watched fd is ready or a wake-up is pending.
        // (Generic only checks the token; its readiness bits are not used.)
        let _ = self.epoll.process_events(readiness, token, |_, _| {
            ours = true;
            Ok::<_, std::io::Error>(PostAction::Continue)
        });
        let poller_ready = ours;
        if !ours {
            // Our timer: calloop already took it out of its wheel.
            let _ = self.timer.process_events(readiness, token, |_, _| {
                ours = true;
                TimeoutAction::Drop
            });
            if !ours {
                return Ok(PostAction::Continue);
            }
            // Spent: `arm` has nothing to cancel.
            self.status.armed.set(None);
        }
        // One engine iteration per calloop dispatch; what the second report stood for is
        // still there at the next poll (the epoll fd is level-triggered, the timer re-armed).
        //
        // An iteration for the timer alone skips the engine's `epoll_wait`: calloop lists a
        // poll's fd reports before its timers, so had the epoll fd been readable, its report
        // would have run this dispatch's iteration already. (Were that order ever different,
        // nothing would be lost, only delayed to the next poll, which the level-triggered
        // epoll fd makes return at once.)
        if !self.status.iterated.replace(true) {
            self.iterate(poller_ready);
        }
        self.compute_wanted();
        if self.host.fd_replaced() {
            self.fd_stale = true;
        }
        if self.fd_stale || self.needs_rearm() {
            self.wanted_fresh = true;
            Ok(PostAction::Reregister)
        } else {
            Ok(PostAction::Continue)
        }
    }

    fn register(&mut self, poll: &mut Poll, tokens: &mut TokenFactory) -> calloop::Result<()> {
        self.fd_stale = false;
        self.epoll.register(poll, tokens)?;
        self.compute_wanted();
        self.status.armed.set(None);
        self.arm(poll, tokens)
    }

    fn reregister(&mut self, poll: &mut Poll, tokens: &mut TokenFactory) -> calloop::Result<()> {
        let fresh = std::mem::take(&mut self.wanted_fresh);
        if std::mem::take(&mut self.fd_stale) {
            // The engine swapped a fresh epoll instance in behind the same fd number (B62):
            // the kernel dropped calloop's registration of the old one with it. Register the
            // new one (the delete fails with ENOENT: nothing is registered under the number).
            tracing::debug!("anyloop epoll instance was reset: registering it with calloop again");
            let _ = self.epoll.unregister(poll);
            self.epoll.register(poll, tokens)?;
        } else {
            if !fresh {
                self.compute_wanted();
            }
            if !self.needs_rearm() {
                return Ok(()); // Nothing moved (e.g. `CalloopSource::dispatch`'s check).
            }
            // Keep the fd's registration (no epoll_ctl); its token is the first one.
            let _ = tokens.token();
        }
        self.arm(poll, tokens)
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        if self.status.armed.take().is_some() {
            self.timer.unregister(poll)?;
        }
        self.epoll.unregister(poll)
    }
}
