//! The OS layer: anyloop's shared Linux epoll layer, with one addition for an engine hosted by
//! tokio.
//!
//! The engine owns a level-triggered epoll instance (with its eventfd wake-up inside); tokio
//! watches that one epoll fd through an `AsyncFd`. Two things about the engine's own waits
//! matter to the driver (see `driver.rs`):
//!
//! - **Resets** ([B62](anyloop::contract#b62)). When the engine meets a registration it can no
//!   longer remove (a watched fd closed while a dup keeps its file open) it calls
//!   [`Registrar::reset`], which swaps a fresh epoll instance in behind the *same fd number*
//!   with `dup3`. That closes the old epoll file, and the kernel silently drops tokio's
//!   registration of it: tokio would never hear of the engine again.
//!   [`EpollRegistrar::reset_counter`](anyloop_engine::linux::EpollRegistrar::reset_counter) counts the resets, so that the driver registers the new
//!   instance with tokio (a new `AsyncFd`) before it next waits.
//! - **What the last wait found.** tokio's readiness is edge-based: once it reported the epoll
//!   fd readable, it keeps saying so until the driver clears it. The driver clears it only
//!   after the fd was found *not* ready, and the engine's own zero-timeout `epoll_wait` is that
//!   re-check: [`HostedPoller::found`] says whether it reported anything.

use std::os::fd::RawFd;
use std::time::Duration;

use anyloop::Result;
use anyloop_engine::linux::{EpollPoller, EpollRegistrar};
use anyloop_engine::{Poller, Probe, Readiness};

/// The loop-thread half: [`EpollPoller`], remembering whether its last wait found anything.
#[derive(Debug)]
pub(crate) struct HostedPoller {
    inner: EpollPoller,
    found: bool,
}

impl HostedPoller {
    pub(crate) fn new(inner: EpollPoller) -> Self {
        HostedPoller {
            inner,
            found: false,
        }
    }

    /// The epoll instance's fd (the number stays the same across resets).
    pub(crate) fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.inner.fd().as_raw_fd()
    }

    /// Whether the last wait reported a ready fd (a wake-up alone does not count: the wait
    /// consumed it). `false` means the epoll fd was not ready when the engine looked, so a
    /// readiness report tokio held from before that look is stale.
    pub(crate) fn found(&self) -> bool {
        self.found
    }
}

impl Poller for HostedPoller {
    type Registrar = EpollRegistrar;
    const EDGE_TRIGGERED: bool = false;

    fn wait(
        &mut self,
        probes: &[Probe],
        timeout: Option<Duration>,
        events: &mut Vec<Readiness>,
    ) -> Result<bool> {
        let before = events.len();
        self.found = false;
        let woken = self.inner.wait(probes, timeout, events)?;
        self.found = events.len() > before;
        Ok(woken)
    }
}
