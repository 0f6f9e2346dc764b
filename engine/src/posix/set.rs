//! The registrations of the `poll(2)` layer: what a kernel poller would keep, kept here.
//!
//! Shared by the registrar (called from any thread, under the engine's lock) and the poller
//! (which waits without that lock). A version counter, bumped by every change, tells the
//! poller when its `pollfd` array is out of date, without taking the lock in a steady loop.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustc_hash::FxHashMap;

use anyloop::IoEvents;

use crate::{FileId, Token};

/// One registered fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Registration {
    /// Reported back with its readiness.
    pub(super) token: Token,
    /// What to poll for (never empty: the engine deregisters an fd with no enabled watch).
    pub(super) interest: IoEvents,
    /// The file the number named when it was registered ([R52](anyloop::contract#r52)).
    pub(super) file: FileId,
}

/// The registrations by fd number (the engine keeps at most one per number).
#[derive(Debug, Default)]
pub(super) struct RegistrationSet {
    table: Mutex<Table>,
    /// A copy of `Table::version`, written under the lock, read without it.
    version: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    by_fd: FxHashMap<RawFd, Registration>,
    version: u64,
}

/// The set, locked.
#[derive(Debug)]
pub(super) struct Locked<'a> {
    table: MutexGuard<'a, Table>,
    version: &'a AtomicU64,
}

impl RegistrationSet {
    /// Locks the set. Nothing runs user code under this lock, so poisoning cannot leave it
    /// inconsistent.
    pub(super) fn lock(&self) -> Locked<'_> {
        Locked {
            table: self.table.lock().unwrap_or_else(PoisonError::into_inner),
            version: &self.version,
        }
    }

    /// The version of the set now: different from an earlier answer if anything changed since.
    pub(super) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

impl Locked<'_> {
    /// Registers `fd`, replacing what was registered under that number.
    pub(super) fn insert(&mut self, fd: RawFd, registration: Registration) {
        if self.table.by_fd.insert(fd, registration) != Some(registration) {
            self.changed();
        }
    }

    /// Drops the registration of `fd`, if any.
    pub(super) fn remove(&mut self, fd: RawFd) {
        if self.table.by_fd.remove(&fd).is_some() {
            self.changed();
        }
    }

    /// Drops the registration of `fd` if it is the one under `token`.
    pub(super) fn remove_if(&mut self, fd: RawFd, token: Token) {
        if self
            .get(fd)
            .is_some_and(|registration| registration.token == token)
        {
            self.remove(fd);
        }
    }

    /// What is registered under `fd`.
    pub(super) fn get(&self, fd: RawFd) -> Option<&Registration> {
        self.table.by_fd.get(&fd)
    }

    /// Every registration, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (RawFd, &Registration)> {
        self.table.by_fd.iter().map(|(&fd, r)| (fd, r))
    }

    /// The version these registrations are (see [`RegistrationSet::version`]).
    pub(super) fn version(&self) -> u64 {
        self.table.version
    }

    fn changed(&mut self) {
        self.table.version = self.table.version.wrapping_add(1);
        self.version.store(self.table.version, Ordering::Release);
    }
}
