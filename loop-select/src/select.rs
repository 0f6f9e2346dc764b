//! [`SelectLoop`] and the choice of [`PollerKind`].

use std::fmt;
use std::time::Duration;

use anyloop::{Error, Loop, LoopStats, Quitter, Result, Runner};
#[cfg(target_os = "linux")]
use anyloop_engine::linux::{new_epoll, EpollPoller};
use anyloop_engine::posix::{new_poll, PollPoller};
use anyloop_engine::Engine;

#[cfg(target_os = "linux")]
use crate::sys;

/// Which OS mechanism a [`SelectLoop`] waits with.
///
/// All give the same behaviour (the conformance kit, the closed-fd matrix and the async
/// battery run against each); they differ in cost per iteration. `Epoll` and `Mio` exist on
/// Linux only: elsewhere [`SelectLoop::with_poller`] refuses them and the default is `Poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PollerKind {
    /// Linux level-triggered epoll (via `rustix`): one `epoll_wait` per iteration and no
    /// syscall per dispatched event. The default on Linux.
    Epoll,
    /// mio's edge-triggered epoll, with level-triggered delivery emulated by one batched
    /// zero-timeout `poll(2)` over the fds dispatched in the previous iteration (so an
    /// iteration that dispatched fds costs two syscalls). Linux only.
    Mio,
    /// `poll(2)`, portable POSIX ([`anyloop_engine::posix`]): level-triggered, a self-pipe
    /// wake-up, nothing Linux-only; the layer a port to another Unix starts from. Each wait
    /// hands the kernel every watched fd (O(watches)), and every fd reported ready costs an
    /// `fstat`: the check that its number still names the registered file
    /// ([R52](anyloop::contract#r52)). The default on other Unix systems, where it is
    /// compile-checked but not yet run by the project's tests.
    Poll,
}

impl Default for PollerKind {
    fn default() -> Self {
        if cfg!(target_os = "linux") {
            PollerKind::Epoll
        } else {
            PollerKind::Poll
        }
    }
}

enum Inner {
    #[cfg(target_os = "linux")]
    Epoll(Engine<EpollPoller>),
    #[cfg(target_os = "linux")]
    Mio(Engine<sys::mio::MioPoller>),
    Poll(Engine<PollPoller>),
}

/// Runs `$body` with `$engine` bound to whichever engine is inside (monomorphised per
/// poller, so the hot path has no dynamic dispatch).
macro_rules! with_engine {
    ($inner:expr, $engine:ident => $body:expr) => {
        match $inner {
            #[cfg(target_os = "linux")]
            Inner::Epoll($engine) => $body,
            #[cfg(target_os = "linux")]
            Inner::Mio($engine) => $body,
            Inner::Poll($engine) => $body,
        }
    };
}

/// The built-in event loop.
///
/// Owns the loop: run it with [`run`](Runner::run) or [`run_once`](Runner::run_once) on one
/// thread at a time (it is `Send`: it may be created on one thread and run on another; the
/// loop thread is whichever thread runs it). Libraries reach it through the [`Loop`] handle
/// from [`handle`](Self::handle), usable from any thread.
///
/// Dropping the `SelectLoop` frees every callback still registered, exactly once, on the
/// dropping thread ([R48](anyloop::contract#r48)); operations through surviving [`Loop`] handles then return
/// [`Error::LoopGone`].
///
/// ```
/// use anyloop::{Runner, Schedule};
/// use anyloop_select::SelectLoop;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let mut lp = SelectLoop::new()?;
/// let fired = Arc::new(AtomicUsize::new(0));
/// let counter = fired.clone();
/// let id = lp.handle().add_timer(Schedule::EVERY_ITERATION, move |_id| {
///     counter.fetch_add(1, Ordering::SeqCst);
/// })?;
/// // A timer due every iteration fires on every iteration and keeps the loop from blocking.
/// assert_eq!(lp.run_once(None)?, 1);
/// assert_eq!(lp.run_once(None)?, 1);
/// lp.handle().remove_timer(id)?;
/// assert_eq!(lp.run_once(Some(Duration::from_millis(1)))?, 0);
/// assert_eq!(fired.load(Ordering::SeqCst), 2);
/// # Ok::<(), anyloop::Error>(())
/// ```
pub struct SelectLoop {
    inner: Inner,
    poller: PollerKind,
}

impl SelectLoop {
    /// A loop on the default [`PollerKind`] (level-triggered epoll on Linux, `poll(2)`
    /// elsewhere).
    ///
    /// # Errors
    /// [`Error::Os`] if the poller or its wake-up cannot be created.
    pub fn new() -> Result<SelectLoop> {
        SelectLoop::with_poller(PollerKind::default())
    }

    /// A loop on the given [`PollerKind`].
    ///
    /// # Errors
    /// [`Error::Os`] if the OS resources cannot be created; [`Error::InvalidArgument`] for
    /// `Epoll` or `Mio` on a system other than Linux.
    ///
    /// ```
    /// use anyloop_select::{PollerKind, SelectLoop};
    /// let lp = SelectLoop::with_poller(PollerKind::Mio)?;
    /// assert_eq!(lp.poller(), PollerKind::Mio);
    /// # Ok::<(), anyloop::Error>(())
    /// ```
    pub fn with_poller(poller: PollerKind) -> Result<SelectLoop> {
        let os = |source| Error::Os {
            op: "creating the poller",
            fd: None,
            source,
        };
        let inner = match poller {
            #[cfg(target_os = "linux")]
            PollerKind::Epoll => {
                let (poller, registrar) = new_epoll().map_err(os)?;
                Inner::Epoll(Engine::new(poller, registrar))
            }
            #[cfg(target_os = "linux")]
            PollerKind::Mio => {
                let (poller, registrar) = sys::mio::new().map_err(os)?;
                Inner::Mio(Engine::new(poller, registrar))
            }
            #[cfg(not(target_os = "linux"))]
            PollerKind::Epoll | PollerKind::Mio => {
                return Err(Error::InvalidArgument {
                    what: "PollerKind::Epoll and PollerKind::Mio need Linux (epoll); use PollerKind::Poll",
                });
            }
            PollerKind::Poll => {
                let (poller, registrar) = new_poll().map_err(os)?;
                Inner::Poll(Engine::new(poller, registrar))
            }
        };
        Ok(SelectLoop { inner, poller })
    }

    /// Which [`PollerKind`] this loop uses.
    pub fn poller(&self) -> PollerKind {
        self.poller
    }
}

/// The owner side: [`run_once`](Runner::run_once) is one kernel wait plus the dispatch of what
/// it found and the pending frees; [`run`](Runner::run) iterates until quit. The loop's thread
/// is whichever thread runs it (it was created on, or last ran, it): thread-bound callbacks
/// are added and run there.
impl Runner for SelectLoop {
    /// Runs the pending frees now, without polling (libvirt-python's `drain`,
    /// [R25](anyloop::contract#r25)).
    fn drain(&mut self) -> Result<usize> {
        with_engine!(&mut self.inner, engine => engine.drain())
    }

    fn handle(&self) -> Loop {
        with_engine!(&self.inner, engine => engine.handle())
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        with_engine!(&mut self.inner, engine => engine.run_once(timeout))
    }

    fn quitter(&self) -> Quitter {
        with_engine!(&self.inner, engine => engine.quitter())
    }

    fn take_quit(&mut self) -> bool {
        with_engine!(&self.inner, engine => engine.take_quit())
    }

    fn stats(&self) -> LoopStats {
        with_engine!(&self.inner, engine => engine.stats())
    }
}

impl fmt::Debug for SelectLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectLoop")
            .field("poller", &self.poller)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default is the cheapest layer the system has; off Linux only `Poll` exists.
    #[test]
    fn the_default_poller_is_epoll_on_linux() {
        let lp = SelectLoop::new().expect("a loop");
        assert_eq!(lp.poller(), PollerKind::default());
        #[cfg(target_os = "linux")]
        assert_eq!(PollerKind::default(), PollerKind::Epoll);
        #[cfg(not(target_os = "linux"))]
        {
            assert_eq!(PollerKind::default(), PollerKind::Poll);
            assert!(matches!(
                SelectLoop::with_poller(PollerKind::Epoll),
                Err(Error::InvalidArgument { .. })
            ));
        }
    }
}
