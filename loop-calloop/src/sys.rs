//! The OS layer: anyloop's shared Linux epoll layer, with one addition for a hosted engine.
//!
//! The engine owns a level-triggered epoll instance (with its eventfd wake-up inside);
//! calloop watches that one epoll fd. When the engine meets a registration it can no longer
//! remove (a watched fd closed while a dup keeps its file open, contract [B62](anyloop::contract#b62)) it calls
//! [`Registrar::reset`], which swaps a fresh epoll instance in behind the *same fd number*
//! with `dup3`. That closes the old epoll file, and the kernel silently drops calloop's
//! registration of it: calloop would never hear of the engine again. [`HostedRegistrar`]
//! counts the resets so that the calloop source (see `source.rs`) registers the new instance
//! with calloop right after the iteration that reset it.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyloop::{IoEvents, Result};
use anyloop_engine::linux::{EpollPoller, EpollRegistrar};
use anyloop_engine::{FdCheck, FileId, Poller, Probe, Readiness, Registered, Registrar, Token};

/// The loop-thread half: [`EpollPoller`] as is.
#[derive(Debug)]
pub(crate) struct HostedPoller(pub(crate) EpollPoller);

/// The any-thread half: [`EpollRegistrar`] plus a count of the resets it performed.
#[derive(Debug)]
pub(crate) struct HostedRegistrar {
    inner: EpollRegistrar,
    resets: Arc<AtomicU64>,
}

impl HostedRegistrar {
    pub(crate) fn new(inner: EpollRegistrar, resets: Arc<AtomicU64>) -> Self {
        HostedRegistrar { inner, resets }
    }
}

impl Registrar for HostedRegistrar {
    fn check_fd(&self, fd: RawFd) -> Result<()> {
        self.inner.check_fd(fd)
    }

    fn register(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered> {
        self.inner.register(fd, token, interest)
    }

    fn reregister(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered> {
        self.inner.reregister(fd, token, interest)
    }

    fn deregister(&self, fd: RawFd) -> io::Result<()> {
        self.inner.deregister(fd)
    }

    fn verify(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<FdCheck> {
        self.inner.verify(fd, token, interest)
    }

    fn identity(&self, fd: RawFd) -> Option<FileId> {
        self.inner.identity(fd)
    }

    fn reset(&self) -> io::Result<bool> {
        let done = self.inner.reset()?;
        if done {
            // Read by the calloop source on the loop thread after this iteration.
            self.resets.fetch_add(1, Ordering::SeqCst);
        }
        Ok(done)
    }

    fn wake(&self) -> io::Result<()> {
        self.inner.wake()
    }
}

impl Poller for HostedPoller {
    type Registrar = HostedRegistrar;
    const EDGE_TRIGGERED: bool = false;

    fn wait(
        &mut self,
        probes: &[Probe],
        timeout: Option<Duration>,
        events: &mut Vec<Readiness>,
    ) -> Result<bool> {
        self.0.wait(probes, timeout, events)
    }
}
