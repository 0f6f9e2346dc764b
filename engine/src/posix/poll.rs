//! Level-triggered `poll(2)` with a self-pipe wake-up: the POSIX OS layer (see the module
//! doc of [`posix`](super) for what it costs and how it handles closed fds).
//!
//! The registrar keeps the registrations in a [`RegistrationSet`]; before each wait the poller
//! copies them into its `pollfd` array if the set changed since its last copy (ops from other
//! threads during the wait wake it, so a copy taken before the wait is never stale for long:
//! [R40](anyloop::contract#r40)). After the wait, every fd reported ready is checked against
//! the registration in force now: the same token, and the same file behind the number
//! ([R52](anyloop::contract#r52)).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use anyloop::IoEvents;
use anyloop::{Error, Result};

use super::set::{Registration, RegistrationSet};
use super::waker::PipeWaker;
use super::{borrow_fd, check_open, file_identity, identity_of, io_events, poll_flags};
use crate::{FdCheck, FileId, Poller, Probe, Readiness, Registered, Registrar, Token, MAX_WAIT};

/// The loop-thread half: `poll(2)` over the registration set and the waker.
pub struct PollPoller {
    set: Arc<RegistrationSet>,
    waker: Arc<PipeWaker>,
    /// The waker's read end, then one entry per registration (`watched` of them), then the
    /// probes of the current wait.
    fds: Vec<PollFd<'static>>,
    /// The fd number and token of each registration entry of `fds` (`fds[i + 1]`).
    watched: Vec<(RawFd, Token)>,
    /// The token of each probe entry of `fds`.
    probed: Vec<Token>,
    /// The set's version that `fds` was copied from.
    copied: u64,
    /// How many times `fds` was rebuilt from the set.
    rebuilds: u64,
    /// Registration entries found ready by the last wait, with the identity of the file their
    /// number names now (`None`: not open).
    ready: Vec<(RawFd, Token, PollFlags, Option<FileId>)>,
}

impl std::fmt::Debug for PollPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollPoller")
            .field("watched", &self.watched.len())
            .field("rebuilds", &self.rebuilds)
            .finish_non_exhaustive()
    }
}

/// The any-thread half: changes to the registration set, and the wake-up.
#[derive(Debug)]
pub struct PollRegistrar {
    set: Arc<RegistrationSet>,
    waker: Arc<PipeWaker>,
}

/// Creates both halves, sharing one registration set and one self-pipe.
///
/// ```
/// use anyloop::IoEvents;
/// use anyloop_engine::{posix, Engine};
/// use std::io::Write;
/// use std::os::fd::AsRawFd;
/// use std::time::Duration;
///
/// let (poller, registrar) = posix::new_poll()?;
/// let mut engine = Engine::new(poller, registrar);
/// let (reader, mut writer) = std::io::pipe()?;
/// let ready = |_, _, events: IoEvents| assert!(events.contains(IoEvents::READABLE));
/// let _watch = engine.handle().watch(reader.as_raw_fd(), IoEvents::READABLE, ready)?;
/// writer.write_all(b"x")?;
/// assert_eq!(engine.run_once(Some(Duration::from_secs(5)))?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// The OS error if the pipe cannot be made.
pub fn new_poll() -> io::Result<(PollPoller, PollRegistrar)> {
    let set = Arc::new(RegistrationSet::default());
    let waker = Arc::new(PipeWaker::new()?);
    let poller = PollPoller {
        set: set.clone(),
        waker: waker.clone(),
        fds: Vec::new(),
        watched: Vec::new(),
        probed: Vec::new(),
        // Not a version the set has yet: the first wait copies it.
        copied: u64::MAX,
        rebuilds: 0,
        ready: Vec::new(),
    };
    Ok((poller, PollRegistrar { set, waker }))
}

impl PollRegistrar {
    /// Registers whatever file `fd` names now (`fstat`: its identity, and whether it is open).
    fn watch(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered> {
        let Some(target) = borrow_fd(fd) else {
            return Ok(Registered::Gone);
        };
        match rustix::fs::fstat(target) {
            Ok(stat) => {
                let file = identity_of(&stat);
                self.set.lock().insert(
                    fd,
                    Registration {
                        token,
                        interest,
                        file,
                    },
                );
                Ok(Registered::Kernel)
            }
            Err(Errno::BADF) => {
                self.set.lock().remove(fd);
                Ok(Registered::Gone)
            }
            Err(err) => Err(err.into()),
        }
    }
}

impl Registrar for PollRegistrar {
    fn check_fd(&self, fd: RawFd) -> Result<()> {
        check_open(fd)
    }

    /// [`Registered::Kernel`] for regular files too: `poll(2)` reports them ready by itself
    /// ([D4](anyloop::contract#d4)).
    fn register(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered> {
        self.watch(fd, token, interest)
    }

    /// Registers the file the number names now, whether or not it is the one registered
    /// before (a number closed and reused, [R53](anyloop::contract#r53)), as epoll does.
    fn reregister(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered> {
        self.watch(fd, token, interest)
    }

    fn deregister(&self, fd: RawFd) -> io::Result<()> {
        self.set.lock().remove(fd);
        Ok(())
    }

    fn identity(&self, fd: RawFd) -> Option<FileId> {
        file_identity(fd)
    }

    /// Whether `fd` still names the file registered under `token` (`fstat`, compared with
    /// the identity recorded at registration): asked by the engine before a new watch joins a
    /// registered number, which may have been closed and reused since.
    fn verify(&self, fd: RawFd, token: Token, _interest: IoEvents) -> io::Result<FdCheck> {
        let registered = match self.set.lock().get(fd) {
            Some(registration) if registration.token == token => registration.file,
            _ => return Ok(FdCheck::Same),
        };
        Ok(match file_identity(fd) {
            None => FdCheck::Closed,
            Some(now) if now == registered => FdCheck::Same,
            Some(_) => FdCheck::Replaced,
        })
    }

    /// Drops `fd`'s registration under `token` if an op registered it again after the wait
    /// that reported it invalid (and dropped it): the engine marked it gone and will never
    /// remove it, so it would be polled for ever.
    fn forget(&self, fd: RawFd, token: Token) {
        self.set.lock().remove_if(fd, token);
    }

    fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }
}

impl PollPoller {
    /// How many times the `pollfd` array was rebuilt from the registration set: once per wait
    /// that followed a change, never in a steady loop (diagnostics).
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// Copies the registration set into `fds` (the waker's entry first).
    fn rebuild(&mut self) {
        let PollPoller {
            set,
            waker,
            fds,
            watched,
            copied,
            rebuilds,
            ..
        } = self;
        fds.clear();
        watched.clear();
        // SAFETY: the read end is owned by `waker`, which this poller holds for as long as
        // `fds` exists; the borrow is only polled, never closed.
        let read_end = unsafe { BorrowedFd::borrow_raw(waker.as_fd().as_raw_fd()) };
        fds.push(PollFd::from_borrowed_fd(read_end, PollFlags::IN));
        let set = set.lock();
        for (fd, registration) in set.iter() {
            if let Some(target) = borrow_fd(fd) {
                fds.push(PollFd::from_borrowed_fd(
                    target,
                    poll_flags(registration.interest),
                ));
                watched.push((fd, registration.token));
            }
        }
        *copied = set.version();
        *rebuilds += 1;
    }

    /// Reports the ready registration entries that still are what was polled: the same token
    /// under the number, and the same file behind it. A report for a number closed
    /// (`POLLNVAL`) or now naming another file is `invalid`, and its registration is dropped:
    /// the engine tells the OS layer nothing more about a gone fd, and a `POLLNVAL` number
    /// polled again would end every wait at once.
    fn settle(&mut self, out: &mut Vec<Readiness>) {
        let mut set = self.set.lock();
        for &(fd, token, revents, now) in &self.ready {
            let registered = match set.get(fd) {
                Some(registration) if registration.token == token => registration.file,
                // Changed during the wait (which woke the loop): the next wait polls what is
                // registered now.
                _ => continue,
            };
            if now == Some(registered) {
                out.push(Readiness {
                    token,
                    events: io_events(revents),
                    invalid: false,
                });
            } else {
                tracing::debug!(fd, "a polled number is closed or names another file");
                set.remove(fd);
                out.push(Readiness {
                    token,
                    events: IoEvents::ERROR,
                    invalid: true,
                });
            }
        }
    }
}

impl Poller for PollPoller {
    type Registrar = PollRegistrar;
    const EDGE_TRIGGERED: bool = false;

    fn wait(
        &mut self,
        probes: &[Probe],
        timeout: Option<Duration>,
        out: &mut Vec<Readiness>,
    ) -> Result<bool> {
        if self.set.version() != self.copied {
            self.rebuild();
        }
        // The engine hands probes only for fds refused as always ready, which this layer never
        // does; any it gets are polled in the same call.
        let registered = 1 + self.watched.len();
        self.fds.truncate(registered);
        self.probed.clear();
        for probe in probes {
            if let Some(target) = borrow_fd(probe.fd) {
                self.fds
                    .push(PollFd::from_borrowed_fd(target, poll_flags(probe.interest)));
                self.probed.push(probe.token);
            }
        }
        let timespec = timeout.map(|t| {
            let t = t.min(MAX_WAIT);
            Timespec {
                tv_sec: t.as_secs() as _,
                tv_nsec: t.subsec_nanos() as _,
            }
        });
        match poll(&mut self.fds, timespec.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            // A signal: a wait that found nothing; the caller iterates again (R55).
            Err(Errno::INTR | Errno::AGAIN) => return Ok(false),
            Err(err) => {
                return Err(Error::Os {
                    op: "poll",
                    fd: None,
                    source: err.into(),
                })
            }
        }
        let woken = !self.fds[0].revents().is_empty();
        if woken {
            // Consume the wake-up before the engine looks at its state (R40).
            self.waker.drain();
        }
        self.ready.clear();
        for (pollfd, &(fd, token)) in self.fds[1..registered].iter().zip(&self.watched) {
            let revents = pollfd.revents();
            if revents.is_empty() {
                continue;
            }
            // The identity check, one fstat per ready fd (R52).
            let now = if revents.contains(PollFlags::NVAL) {
                None
            } else {
                file_identity(fd)
            };
            self.ready.push((fd, token, revents, now));
        }
        if !self.ready.is_empty() {
            self.settle(out);
        }
        for (pollfd, &token) in self.fds[registered..].iter().zip(&self.probed) {
            let revents = pollfd.revents();
            if !revents.is_empty() {
                out.push(Readiness {
                    token,
                    events: io_events(revents),
                    invalid: revents.contains(PollFlags::NVAL),
                });
            }
        }
        Ok(woken)
    }
}
