//! mio's edge-triggered epoll, with level-triggered delivery emulated.
//!
//! mio registers every fd edge-triggered (`EPOLLET`): an fd whose callback left data unread
//! would never be reported again. Level semantics ([R8](anyloop::contract#r8)) are restored without a syscall per
//! event: the engine hands the fds it dispatched in the previous iteration back as probes,
//! and this poller checks them all with one zero-timeout `poll(2)` before waiting; those
//! still ready are reported again (and the kernel wait then does not block).
//!
//! Cross-thread wake-ups use `mio::Waker` (an eventfd under [`Token::RESERVED`]); with
//! edge-triggered epoll every write produces a new event, so there is nothing to drain.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use anyloop::{Error, IoEvents, Result};
use anyloop_engine::{FdCheck, FileId, Poller, Probe, Readiness, Registered, Registrar, Token};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Waker};
use rustix::io::Errno;

use anyloop_engine::linux::{check_open, Prober};

const EVENT_CAPACITY: usize = 1024;

/// The loop-thread half: `mio::Poll`.
#[derive(Debug)]
pub(crate) struct MioPoller {
    poll: Poll,
    events: Events,
    prober: Prober,
}

/// The any-thread half: a clone of the `mio::Registry` and the `mio::Waker`.
#[derive(Debug)]
pub(crate) struct MioRegistrar {
    registry: Registry,
    waker: Waker,
}

/// Creates both halves.
pub(crate) fn new() -> io::Result<(MioPoller, MioRegistrar)> {
    let poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    let waker = Waker::new(poll.registry(), mio_token(Token::RESERVED))?;
    let poller = MioPoller {
        poll,
        events: Events::with_capacity(EVENT_CAPACITY),
        prober: Prober::default(),
    };
    Ok((poller, MioRegistrar { registry, waker }))
}

fn mio_token(token: Token) -> mio::Token {
    // Tokens are 64-bit; this module only builds for 64-bit Linux (see lib.rs, select.rs).
    mio::Token(token.0 as usize)
}

fn interest(events: IoEvents) -> Interest {
    match (
        events.contains(IoEvents::READABLE),
        events.contains(IoEvents::WRITABLE),
    ) {
        (true, true) => Interest::READABLE | Interest::WRITABLE,
        (false, true) => Interest::WRITABLE,
        // Never asked with neither: an empty interest has no kernel registration.
        _ => Interest::READABLE,
    }
}

fn errno(err: &io::Error) -> Option<Errno> {
    Errno::from_io_error(err)
}

impl Registrar for MioRegistrar {
    fn check_fd(&self, fd: RawFd) -> Result<()> {
        check_open(fd)
    }

    fn register(&self, fd: RawFd, token: Token, events: IoEvents) -> io::Result<Registered> {
        let source = &mut SourceFd(&fd);
        match self
            .registry
            .register(source, mio_token(token), interest(events))
        {
            Ok(()) => Ok(Registered::Kernel),
            Err(err) => match errno(&err) {
                Some(Errno::PERM) => Ok(Registered::AlwaysReady),
                Some(Errno::BADF) => Ok(Registered::Gone),
                Some(Errno::EXIST) => {
                    self.registry
                        .reregister(source, mio_token(token), interest(events))?;
                    Ok(Registered::Kernel)
                }
                _ => Err(err),
            },
        }
    }

    fn reregister(&self, fd: RawFd, token: Token, events: IoEvents) -> io::Result<Registered> {
        let source = &mut SourceFd(&fd);
        match self
            .registry
            .reregister(source, mio_token(token), interest(events))
        {
            Ok(()) => Ok(Registered::Kernel),
            Err(err) => match errno(&err) {
                // Another file under the number (epoll keys registrations by file and number).
                Some(Errno::NOENT) => match self.register(fd, token, events)? {
                    Registered::Kernel => Ok(Registered::Replaced),
                    other => Ok(other),
                },
                Some(Errno::BADF) => Ok(Registered::Gone),
                Some(Errno::PERM) => Ok(Registered::AlwaysReady),
                _ => Err(err),
            },
        }
    }

    /// mio's registration is an epoll one: re-registering it unchanged succeeds for the same
    /// file, and fails with `ENOENT` for another file behind the number, `EBADF` for none.
    fn verify(&self, fd: RawFd, token: Token, events: IoEvents) -> io::Result<FdCheck> {
        match self
            .registry
            .reregister(&mut SourceFd(&fd), mio_token(token), interest(events))
        {
            Ok(()) => Ok(FdCheck::Same),
            Err(err) => match errno(&err) {
                Some(Errno::BADF) => Ok(FdCheck::Closed),
                Some(Errno::NOENT | Errno::PERM) => Ok(FdCheck::Replaced),
                _ => Err(err),
            },
        }
    }

    fn identity(&self, fd: RawFd) -> Option<FileId> {
        anyloop_engine::linux::file_identity(fd)
    }

    fn deregister(&self, fd: RawFd) -> io::Result<()> {
        match self.registry.deregister(&mut SourceFd(&fd)) {
            Ok(()) => Ok(()),
            Err(err) => match errno(&err) {
                Some(Errno::NOENT | Errno::BADF | Errno::PERM) => Ok(()),
                _ => Err(err),
            },
        }
    }

    fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }
}

impl Poller for MioPoller {
    type Registrar = MioRegistrar;
    const EDGE_TRIGGERED: bool = true;

    fn wait(
        &mut self,
        probes: &[Probe],
        timeout: Option<Duration>,
        out: &mut Vec<Readiness>,
    ) -> Result<bool> {
        // The level-triggered re-check (and always-ready fds): one poll(2) for all of them.
        let timeout = self.prober.probe_before_wait(probes, out, timeout)?;
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(source) => {
                return Err(Error::Os {
                    op: "epoll_wait (mio)",
                    fd: None,
                    source,
                })
            }
        }
        let mut woken = false;
        for event in self.events.iter() {
            let token = Token(event.token().0 as u64);
            if token == Token::RESERVED {
                woken = true;
                continue;
            }
            let mut events = IoEvents::empty();
            if event.is_readable() {
                events |= IoEvents::READABLE;
            }
            if event.is_writable() {
                events |= IoEvents::WRITABLE;
            }
            if event.is_error() {
                events |= IoEvents::ERROR;
            }
            // EPOLLHUP shows as both halves closed; a half-close (EPOLLRDHUP) is only
            // "readable until EOF", as poll(2) reports it.
            if event.is_read_closed() && event.is_write_closed() {
                events |= IoEvents::HANGUP;
            }
            if events.is_empty() {
                continue;
            }
            out.push(Readiness {
                token,
                events,
                invalid: false,
            });
        }
        Ok(woken)
    }
}
