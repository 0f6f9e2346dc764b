//! The POSIX OS layer: `poll(2)` and a self-pipe, nothing Linux-only; and the fd helpers that
//! every Unix layer of this crate shares.
//!
//! - [`new_poll`] makes a [`PollPoller`] / [`PollRegistrar`] pair for the [`Engine`]:
//!   level-triggered `poll(2)` over every registered fd, one call per iteration, with a
//!   non-blocking, close-on-exec self-pipe ([`PipeWaker`]) as the wake-up. It is the layer a
//!   BSD or macOS port starts from; the built-in loop offers it as
//!   `anyloop_select::PollerKind::Poll` (`--loop select-poll`), and the conformance kit, the
//!   closed-fd matrix and the async battery run on it (on Linux: the project tests on Linux
//!   only; CI checks that this layer and the built-in loop compile for FreeBSD and macOS).
//! - [`Prober`]: one batched zero-timeout `poll(2)` over a list of fds (always-ready files,
//!   and level re-checks for edge-triggered substrates).
//! - [`check_open`] and [`file_identity`]: fd helpers for registrars.
//!
//! # What the `poll(2)` layer costs
//!
//! - **O(watches) per wait.** `poll(2)` takes the whole set every time: one `pollfd` per fd
//!   with an enabled watch (plus the waker) is copied to the kernel, which checks each one,
//!   and the layer scans the answers. An epoll wait costs O(ready). The array itself is
//!   rebuilt from the registration set only when the set changed (a version counter), so a
//!   steady loop copies nothing in user space; an iteration whose callbacks changed an
//!   interest rebuilds it once, O(watches), the order of the wait itself.
//! - **One `fstat` per ready fd per iteration**: the identity check below
//!   ([R52](anyloop::contract#r52)). A regular file is ready in every iteration, so it costs one
//!   `fstat` in each while it is watched (as the engine's check of an always-ready fd does on
//!   the epoll layer).
//! - **One pipe write per cross-thread wake-up** (the engine coalesces them: at most one is
//!   pending), and one `read` on the loop thread when it fired.
//! - Registration changes leave the kernel alone: `register` and `reregister` cost one `fstat`
//!   (the file's identity, and whether the number is open), `deregister` no system call.
//!
//! # Closed fds ([R52](anyloop::contract#r52))
//!
//! `poll(2)` polls fd *numbers*. A number closed under its watch is reported `POLLNVAL`; a
//! number closed and then reused by another file would be reported with the *new* file's
//! readiness under the old registration. So the layer records each registration's file
//! identity (`fstat`'s device and inode) and compares it for every fd it reports ready. A
//! mismatch or `POLLNVAL` is reported as [`Readiness::invalid`](crate::Readiness::invalid):
//! the engine tells the watches `ERROR` once, disables them and marks the fd gone, and tells
//! the OS layer nothing more, exactly as epoll forgets a closed file; so the layer drops that
//! registration from its own set itself (polling a `POLLNVAL` number again would make every
//! wait return at once, a spin). A later update of the watch registers whatever file the
//! number names then ([R53](anyloop::contract#r53)), as on epoll.
//!
//! The check runs in the wait, outside the engine's lock, so an op from another thread can
//! land between the report and the moment the engine takes it in: an update of that watch,
//! which the engine, still counting the fd as registered, passes on as a registration. Added
//! to the set, it would outlive the engine's "gone" and be polled for ever; so when the engine
//! marks the fd gone it tells the layer ([`Registrar::forget`](crate::Registrar::forget)),
//! which drops whatever it holds for that fd under that token.
//!
//! Unlike epoll, which keeps a registration for a closed number whose file lives on in a dup,
//! a child or a message in flight ([B62](anyloop::contract#b62)) and silently forgets a fully
//! closed one, this layer notices every closed number at the next wait that sees it, whatever
//! keeps its file open: the watch is told `ERROR` once in both cases. Nothing in the kernel
//! outlives a close, so [`Registrar::reset`](crate::Registrar::reset) keeps its default (no
//! B62 rebuild). [`Registrar::verify`](crate::Registrar::verify) compares the recorded identity
//! with the number's file: the engine asks before a new watch joins a registered number (its
//! own checks of reports are not needed here: every report is checked already).
//!
//! The identity is the file's device and inode: the same file opened again counts as the same
//! file, rightly. On Linux, files without an inode of their own (eventfd, timerfd, signalfd,
//! epoll: one anonymous inode for all) cannot be told apart, so one of them replaced by another
//! of the same kind under a watched number passes the check.
//!
//! # Regular files ([D4](anyloop::contract#d4))
//!
//! `poll(2)` reports regular files and `/dev/null` ready for whatever is asked, which is what D4
//! asks, so they are registered like any fd ([`Registered::Kernel`](crate::Registered::Kernel)):
//! the engine's always-ready set is not needed for them, and this layer never answers
//! [`Registered::AlwaysReady`](crate::Registered::AlwaysReady). (Were the engine to hand it
//! [`Probe`](crate::Probe)s all the same, they would be polled in the same `poll(2)` call, with
//! the wait's timeout.) (`rustix` documents that macOS's `poll(2)` does not work on
//! `/dev/null` and ttys: a macOS port must handle those devices another way.)
//!
//! # Hosting, and what a kqueue layer would change
//!
//! This layer cannot be hosted by another loop (GLib, calloop, tokio): no single fd becomes
//! readable when one of the registered fds is ready, so a host would have to poll every
//! registered fd itself. Hosting needs epoll or kqueue, whose own fd aggregates readiness.
//!
//! A kqueue layer would wait in O(ready) (`kevent` returns only what fired; registrations live
//! in the kernel and changes ride on the next `kevent` call), would wake with `EVFILT_USER`
//! (no fd) or a pipe in the set, and could be hosted through the kqueue fd. kqueue, like this
//! layer and unlike epoll, keys registrations by fd number and drops them when that number is
//! closed, even while a dup, a child or a message in flight keeps the file open. For
//! [R52](anyloop::contract#r52) this means that a reused number is not watched until the engine
//! registers it again, so the old watch cannot hear the new file through the kernel; the
//! identity check would be needed only where a report can outlive a close: events returned by
//! one `kevent` call and delivered after a callback of the same batch closed the number and
//! another file took it. For [B62](anyloop::contract#b62) it means that no registration
//! survives its number: no reset, nothing to verify. The difference a kqueue user would see:
//! a watch on a closed number is silent (the kernel forgot it), not told `ERROR`.
//!
//! [`Engine`]: crate::Engine

mod poll;
mod probe;
mod set;
#[cfg(test)]
mod tests;
mod waker;

use std::os::fd::{BorrowedFd, RawFd};

use rustix::event::PollFlags;
use rustix::io::Errno;

use anyloop::IoEvents;
use anyloop::{Error, Result};

use crate::FileId;

pub use poll::{new_poll, PollPoller, PollRegistrar};
pub use probe::Prober;
pub use waker::PipeWaker;

/// Borrows a caller's fd number for the duration of one system call.
///
/// The vtable deals in raw fd numbers (as libvirt does); the kernel validates them. Only
/// pass the result to calls that inspect an fd (`fcntl`, `fstat`, `epoll_ctl`, `poll`), never
/// to anything that closes it. Negative numbers are refused by the engine before they get
/// here; this returns `None` for them rather than build an invalid `BorrowedFd`.
/// Crate-private: a `BorrowedFd<'static>` made from any number would break I/O safety in a
/// caller's hands; the engine's OS layers only ever hand it to the kernel.
pub(crate) fn borrow_fd(fd: RawFd) -> Option<BorrowedFd<'static>> {
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is non-negative, so it is not the -1 sentinel that `borrow_raw` forbids.
    // The borrow is only handed to system calls that inspect the number and never take
    // ownership or close it; if it is not open they fail with EBADF (or report POLLNVAL),
    // which callers handle. No memory is accessed through it.
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Returns `Ok` if `fd` is an open descriptor (`fcntl(F_GETFD)`, the cheapest check).
///
/// # Errors
/// [`Error::InvalidFd`] for a negative or closed fd; [`Error::Os`] for anything unexpected.
pub fn check_open(fd: RawFd) -> Result<()> {
    let Some(borrowed) = borrow_fd(fd) else {
        return Err(Error::InvalidFd {
            fd,
            reason: "negative",
        });
    };
    match rustix::io::fcntl_getfd(borrowed) {
        Ok(_) => Ok(()),
        Err(Errno::BADF) => Err(Error::InvalidFd {
            fd,
            reason: "not open",
        }),
        Err(err) => Err(Error::Os {
            op: "fcntl(F_GETFD)",
            fd: Some(fd),
            source: err.into(),
        }),
    }
}

/// The identity of the file `fd` names now (`fstat`'s device and inode), `None` if it is not
/// open: what [`Registrar::identity`](crate::Registrar::identity) answers on Unix.
pub fn file_identity(fd: RawFd) -> Option<FileId> {
    let target = borrow_fd(fd)?;
    let stat = rustix::fs::fstat(target).ok()?;
    Some(identity_of(&stat))
}

/// The [`FileId`] in an `fstat` answer.
// `dev_t` and `ino_t` differ in width and sign between systems (`dev_t` is a signed 32-bit
// integer on macOS): the cast is a no-op on Linux and widens elsewhere. Only equality matters.
#[allow(clippy::unnecessary_cast)]
fn identity_of(stat: &rustix::fs::Stat) -> FileId {
    FileId {
        dev: stat.st_dev as u64,
        ino: stat.st_ino as u64,
    }
}

/// The `poll(2)` request for an interest (`ERROR` and `HANGUP` are always reported).
fn poll_flags(interest: IoEvents) -> PollFlags {
    let mut flags = PollFlags::empty();
    if interest.contains(IoEvents::READABLE) {
        flags |= PollFlags::IN;
    }
    if interest.contains(IoEvents::WRITABLE) {
        flags |= PollFlags::OUT;
    }
    flags
}

/// The events in a `poll(2)` answer, as the epoll layer maps its own (`POLLNVAL` is `ERROR`,
/// [R9](anyloop::contract#r9); `POLLPRI` is never asked).
fn io_events(revents: PollFlags) -> IoEvents {
    let mut events = IoEvents::empty();
    if revents.contains(PollFlags::IN) {
        events |= IoEvents::READABLE;
    }
    if revents.contains(PollFlags::OUT) {
        events |= IoEvents::WRITABLE;
    }
    if revents.intersects(PollFlags::ERR | PollFlags::NVAL) {
        events |= IoEvents::ERROR;
    }
    if revents.contains(PollFlags::HUP) {
        events |= IoEvents::HANGUP;
    }
    events
}
