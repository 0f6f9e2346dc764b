//! Linux level-triggered epoll, through `rustix`: the default poller.
//!
//! One kernel registration per fd (the engine fans events out to the watches), registered
//! level-triggered with `EPOLLIN`/`EPOLLOUT` (`EPOLLERR`/`EPOLLHUP` are always reported), so
//! an iteration costs exactly one `epoll_wait` and nothing per dispatched event ([R8](anyloop::contract#r8)). The
//! wake-up eventfd is registered under [`Token::RESERVED`] and read back only when it fired.
//!
//! Kernel answers that are not errors for us:
//! - `EPERM` on add: regular files and `/dev/null` cannot be epolled; they are always ready,
//!   so the engine probes them with `poll(2)` instead ([D4](anyloop::contract#d4)).
//! - `EBADF` on add/modify: the fd is closed; `ENOENT`/`EBADF` on delete: the kernel already
//!   dropped it ([R52](anyloop::contract#r52)).
//! - `ENOENT` on modify: the fd number now names another file (closed and reused): register
//!   the new one.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::{FdCheck, FileId, Poller, Probe, Readiness, Registered, Registrar, Token};
use anyloop::IoEvents;
use anyloop::{Error, Result};
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::Timespec;
use rustix::io::{DupFlags, Errno};

use super::waker::EventFdWaker;
use super::{borrow_fd, check_open, Prober};

/// How many readiness reports one `epoll_wait` can return; more are picked up by the next
/// iteration (level-triggered epoll keeps them and rotates fairly).
const EVENT_CAPACITY: usize = 1024;

/// The loop-thread half: `epoll_wait`.
#[derive(Debug)]
pub struct EpollPoller {
    epoll: Arc<OwnedFd>,
    waker: Arc<EventFdWaker>,
    buffer: EventBuffer,
    prober: Prober,
}

/// The reusable `epoll_wait` output array.
struct EventBuffer(Vec<Event>);

// SAFETY: `Event` is `!Send` only because its data field is a union that *may* hold a raw
// pointer. This buffer only ever holds `u64` tokens written by `EventData::new_u64` (ours)
// and by the kernel copying them back; no pointer is ever stored or dereferenced, so moving
// the buffer to another thread moves plain integers.
unsafe impl Send for EventBuffer {}

impl std::fmt::Debug for EventBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBuffer")
            .field("capacity", &self.0.len())
            .finish()
    }
}

/// The any-thread half: `epoll_ctl` and the wake-up.
#[derive(Debug)]
pub struct EpollRegistrar {
    epoll: Arc<OwnedFd>,
    waker: Arc<EventFdWaker>,
}

/// Creates both halves, sharing one epoll fd and one eventfd.
///
/// # Errors
/// The OS error if the epoll instance or the eventfd cannot be created.
pub fn new_epoll() -> io::Result<(EpollPoller, EpollRegistrar)> {
    let epoll = Arc::new(epoll::create(CreateFlags::CLOEXEC)?);
    let waker = Arc::new(EventFdWaker::new()?);
    epoll::add(
        &*epoll,
        &*waker,
        EventData::new_u64(Token::RESERVED.0),
        EventFlags::IN,
    )?;
    let empty = Event {
        flags: EventFlags::empty(),
        data: EventData::new_u64(0),
    };
    let poller = EpollPoller {
        epoll: epoll.clone(),
        waker: waker.clone(),
        buffer: EventBuffer(vec![empty; EVENT_CAPACITY]),
        prober: Prober::default(),
    };
    Ok((poller, EpollRegistrar { epoll, waker }))
}

fn flags(interest: IoEvents) -> EventFlags {
    let mut flags = EventFlags::empty();
    if interest.contains(IoEvents::READABLE) {
        flags |= EventFlags::IN;
    }
    if interest.contains(IoEvents::WRITABLE) {
        flags |= EventFlags::OUT;
    }
    flags
}

fn events(flags: EventFlags) -> IoEvents {
    let mut events = IoEvents::empty();
    if flags.contains(EventFlags::IN) {
        events |= IoEvents::READABLE;
    }
    if flags.contains(EventFlags::OUT) {
        events |= IoEvents::WRITABLE;
    }
    if flags.contains(EventFlags::ERR) {
        events |= IoEvents::ERROR;
    }
    if flags.contains(EventFlags::HUP) {
        events |= IoEvents::HANGUP;
    }
    events
}

impl Registrar for EpollRegistrar {
    fn check_fd(&self, fd: RawFd) -> Result<()> {
        check_open(fd)
    }

    fn register(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered> {
        let Some(target) = borrow_fd(fd) else {
            return Ok(Registered::Gone);
        };
        let data = EventData::new_u64(token.0);
        match epoll::add(&*self.epoll, target, data, flags(interest)) {
            Ok(()) => Ok(Registered::Kernel),
            Err(Errno::PERM) => Ok(Registered::AlwaysReady),
            Err(Errno::BADF) => Ok(Registered::Gone),
            // The same open file is still registered under this number (its earlier removal
            // found it closed while a dup kept it alive): take the registration over.
            Err(Errno::EXIST) => match epoll::modify(&*self.epoll, target, data, flags(interest)) {
                Ok(()) => Ok(Registered::Kernel),
                Err(err) => Err(err.into()),
            },
            Err(err) => Err(err.into()),
        }
    }

    fn reregister(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered> {
        let Some(target) = borrow_fd(fd) else {
            return Ok(Registered::Gone);
        };
        let data = EventData::new_u64(token.0);
        match epoll::modify(&*self.epoll, target, data, flags(interest)) {
            Ok(()) => Ok(Registered::Kernel),
            // Another file under the number (epoll keys registrations by file and number).
            Err(Errno::NOENT) => match self.register(fd, token, interest)? {
                Registered::Kernel => Ok(Registered::Replaced),
                other => Ok(other),
            },
            Err(Errno::BADF) => Ok(Registered::Gone),
            Err(Errno::PERM) => Ok(Registered::AlwaysReady),
            Err(err) => Err(err.into()),
        }
    }

    fn deregister(&self, fd: RawFd) -> io::Result<()> {
        let Some(target) = borrow_fd(fd) else {
            return Ok(());
        };
        match epoll::delete(&*self.epoll, target) {
            Ok(()) | Err(Errno::NOENT) | Err(Errno::BADF) | Err(Errno::PERM) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Replaces the epoll instance behind our epoll fd number with a fresh one (holding only
    /// the waker), atomically, so both halves keep using the same number.
    fn reset(&self) -> io::Result<bool> {
        let fresh = epoll::create(CreateFlags::CLOEXEC)?;
        epoll::add(
            &fresh,
            &*self.waker,
            EventData::new_u64(Token::RESERVED.0),
            EventFlags::IN,
        )?;
        // SAFETY: this `OwnedFd` aliases the number owned by `self.epoll` only to name the
        // target of dup3; it is wrapped in `ManuallyDrop` and never dropped, so the number is
        // closed exactly once (by the `Arc`'s owner). dup3 atomically makes the number refer
        // to the fresh instance and closes the old one. No wait runs concurrently (the engine
        // calls this on the loop thread between waits) and no epoll_ctl either (it holds its
        // lock, which every registrar call runs under).
        let mut target = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(self.epoll.as_raw_fd()) });
        rustix::io::dup3(&fresh, &mut target, DupFlags::CLOEXEC)?;
        Ok(true)
    }

    fn verify(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<FdCheck> {
        verify_epoll(&*self.epoll, fd, token, interest)
    }

    fn identity(&self, fd: RawFd) -> Option<FileId> {
        super::file_identity(fd)
    }

    fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }
}

/// [`Registrar::verify`] for an epoll registration: `EPOLL_CTL_MOD` with the registration's
/// own token and interest changes nothing when the number still names the registered file,
/// and fails with `ENOENT` when it names another file (epoll keys registrations by file and
/// number), `EBADF` when it names none. (mio registrations are epoll registrations too.)
///
/// # Errors
/// Other OS failures.
pub fn verify_epoll(
    epoll: &impl AsFd,
    fd: RawFd,
    token: Token,
    interest: IoEvents,
) -> io::Result<FdCheck> {
    let Some(target) = borrow_fd(fd) else {
        return Ok(FdCheck::Closed);
    };
    let data = EventData::new_u64(token.0);
    match epoll::modify(epoll, target, data, flags(interest)) {
        Ok(()) => Ok(FdCheck::Same),
        Err(Errno::BADF) => Ok(FdCheck::Closed),
        // Another file: not registered (ENOENT), or one epoll refuses (a regular file: EPERM).
        Err(Errno::NOENT | Errno::PERM) => Ok(FdCheck::Replaced),
        Err(err) => Err(err.into()),
    }
}

impl EpollPoller {
    /// The epoll fd: readable whenever a watched fd is ready or a wake-up is pending. A host
    /// loop gets it through [`HostedEngine::fd`](crate::HostedEngine::fd).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

impl crate::HostPoller for EpollPoller {
    fn host_fd(&self) -> Arc<OwnedFd> {
        self.epoll.clone()
    }
}

impl Poller for EpollPoller {
    type Registrar = EpollRegistrar;
    const EDGE_TRIGGERED: bool = false;

    fn wait(
        &mut self,
        probes: &[Probe],
        timeout: Option<Duration>,
        out: &mut Vec<Readiness>,
    ) -> Result<bool> {
        // Always-ready fds first: if any is ready, the kernel wait must not block.
        let timeout = self.prober.probe_before_wait(probes, out, timeout)?;
        let timespec = timeout.map(|t| Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let count = match epoll::wait(&*self.epoll, &mut self.buffer.0, timespec.as_ref()) {
            Ok(count) => count,
            // A signal: return what we have; the caller iterates again (R55).
            Err(Errno::INTR) => 0,
            Err(err) => {
                return Err(Error::Os {
                    op: "epoll_wait",
                    fd: None,
                    source: err.into(),
                })
            }
        };
        let mut woken = false;
        for event in &self.buffer.0[..count] {
            let token = Token(event.data.u64());
            if token == Token::RESERVED {
                woken = true;
                continue;
            }
            out.push(Readiness {
                token,
                events: events(event.flags),
                invalid: false,
            });
        }
        if woken {
            // Consume the wake-up before the engine looks at its state (R40).
            self.waker.drain();
        }
        Ok(woken)
    }
}
