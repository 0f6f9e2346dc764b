//! What a backend's OS layer provides to the [`Engine`](super::Engine): a thread-safe
//! [`Registrar`] (kernel registration changes and the wake-up) and a loop-thread
//! [`Poller`] (the blocking wait).
//!
//! The engine keeps exactly one kernel registration per fd, whatever the number of watches on
//! it (epoll refuses a second one with `EEXIST`), and identifies it by a [`Token`] that carries
//! a generation, so a stale event for a registration that was torn down (and whose slot was
//! reused) is recognised and ignored.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use anyloop::IoEvents;
use anyloop::Result;

/// Identifies one kernel registration (one fd) in the events a [`Poller`] reports.
///
/// Opaque to the OS layer: it stores the value at registration time (epoll's `data.u64`,
/// mio's `Token`) and reports it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

impl Token {
    /// A token no registration ever uses; OS layers may use it for their waker.
    pub const RESERVED: Token = Token(u64::MAX);

    pub(crate) fn new(key: usize, generation: u32) -> Token {
        Token((u64::from(generation) << 32) | (key as u64 & 0xffff_ffff))
    }

    pub(crate) fn key(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// One readiness report from the OS layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The registration it is for.
    pub token: Token,
    /// What the fd is ready for (`ERROR`/`HANGUP` included as the kernel reports them).
    pub events: IoEvents,
    /// The fd is not open any more (`POLLNVAL`), or its number names another file than the
    /// one registered: the engine delivers `ERROR` once to each enabled watch and then
    /// disables them (contract [R52](anyloop::contract#r52)).
    pub invalid: bool,
}

/// An fd the OS layer must check with a zero-timeout probe (`poll(2)`) before waiting.
///
/// The engine hands over two kinds: fds the kernel refused to watch because they are always
/// ready (regular files, `/dev/null`: [`Registered::AlwaysReady`], contract [D4](anyloop::contract#d4)), and — for an
/// edge-triggered substrate only ([`Poller::EDGE_TRIGGERED`]) — the fds it dispatched in the
/// previous iteration, which is how level-triggered delivery is emulated ([R8](anyloop::contract#r8)) with one batched
/// syscall instead of one per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Reported back in the [`Readiness`].
    pub token: Token,
    /// The fd to probe.
    pub fd: RawFd,
    /// Its current interest (union of its enabled watches; never empty).
    pub interest: IoEvents,
}

/// Outcome of a kernel registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The kernel watches the fd.
    Kernel,
    /// The kernel refused the fd because it is always ready (epoll's `EPERM` for regular files
    /// and `/dev/null`); the engine probes it every iteration instead and never sleeps while
    /// it is enabled ([D4](anyloop::contract#d4)).
    AlwaysReady,
    /// The fd is not open (`EBADF`): treated as already gone, never as an error on update
    /// (contract [R52](anyloop::contract#r52)).
    Gone,
    /// Answered by [`Registrar::reregister`] only: the number no longer named the file
    /// registered under it (it was closed and reused, R53 broken), and the file it names now
    /// is registered, under the same token. The kernel may keep the old file's registration
    /// (while another descriptor holds that file), whose reports carry the same token: the
    /// engine moves the fd to a new generation, so they are stale ([B62](anyloop::contract#b62)
    /// drops them), and registers the new file again under the new token.
    Replaced,
}

/// What an fd number names now, compared with the file a registration was made for
/// ([`Registrar::verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdCheck {
    /// The same open file: nothing happened.
    Same,
    /// The number is not open any more.
    Closed,
    /// The number was closed and now names another file.
    Replaced,
}

/// The identity of an open file (device and inode numbers): the same file behind an fd
/// number has the same identity, a file that reused the number has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The device the file lives on.
    pub dev: u64,
    /// Its inode number on that device.
    pub ino: u64,
}

/// The thread-safe half of an OS layer: kernel registration changes and the wake-up.
///
/// Called from any thread, always under the engine's lock (so calls never race with each
/// other), never while user code runs.
pub trait Registrar: Send + Sync + 'static {
    /// Checks that `fd` (non-negative) is open; returns
    /// [`Error::InvalidFd`](anyloop::Error::InvalidFd) if not.
    fn check_fd(&self, fd: RawFd) -> Result<()>;

    /// Registers `fd` with a non-empty interest.
    ///
    /// # Errors
    /// Only for failures other than the ones [`Registered`] describes.
    fn register(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered>;

    /// Changes the interest of a registered `fd`. If the kernel no longer knows it (the fd was
    /// closed and its number reused), registers it afresh.
    ///
    /// # Errors
    /// Only for failures other than the ones [`Registered`] describes.
    fn reregister(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered>;

    /// Removes the registration of `fd`; an fd the kernel no longer knows is not an error.
    ///
    /// # Errors
    /// Unexpected OS failures (the engine logs them and carries on).
    fn deregister(&self, fd: RawFd) -> io::Result<()>;

    /// Drops every kernel registration at once, so that a registration the engine can no
    /// longer remove goes away; returns `true` if it did. The engine then registers every
    /// live fd again.
    ///
    /// Needed by level-triggered substrates: an fd closed while its file stays open elsewhere
    /// (a dup, a forked child) cannot be removed from epoll by number any more and would be
    /// reported on every wait, a spin ([B62](anyloop::contract#b62)). The engine calls this when a report for a
    /// registration it tore down comes back in two consecutive iterations. The default does
    /// nothing (an edge-triggered substrate reports such a file only on new edges).
    ///
    /// # Errors
    /// OS failures; the engine logs them and carries on.
    fn reset(&self) -> io::Result<bool> {
        Ok(false)
    }

    /// Whether `fd` still names the open file that was registered under `token` with
    /// `interest` (a registration the kernel tracks), without changing what the kernel
    /// watches. Costs a syscall, so the engine asks only when it can matter: for a
    /// registration reported ready in consecutive iterations, which is what a closed fd whose
    /// file stays open elsewhere looks like ([R52](anyloop::contract#r52)). The default answers
    /// [`FdCheck::Same`] (no check).
    ///
    /// # Errors
    /// Unexpected OS failures (the engine logs them and assumes [`FdCheck::Same`]).
    fn verify(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<FdCheck> {
        let _ = (fd, token, interest);
        Ok(FdCheck::Same)
    }

    /// The identity of the file `fd` names now (`None`: not open). The engine takes it when
    /// the kernel refuses an fd as always ready ([`Registered::AlwaysReady`]: it is then probed
    /// by number, so nothing else would notice that the number was closed and reused), and
    /// compares it on every report. The default answers `None` (no check).
    fn identity(&self, fd: RawFd) -> Option<FileId> {
        let _ = fd;
        None
    }

    /// The engine has taken in a report that `fd` is closed or names another file
    /// ([`Readiness::invalid`]) and marked its registration under `token` gone: from now on it
    /// tells the OS layer nothing about it (as a kernel poller forgets a closed file by itself).
    /// Called under the engine's lock. An OS layer that keeps registrations of its own (the
    /// `poll(2)` layer) drops what it holds for `fd` under `token`: an op from another thread may
    /// have registered it again between the wait that reported it and now, while the engine
    /// still counted it as registered, and nothing else would ever remove it. The default does
    /// nothing.
    fn forget(&self, fd: RawFd, token: Token) {
        let _ = (fd, token);
    }

    /// Wakes the loop thread out of [`Poller::wait`]. Must not block; a wake-up that is
    /// already pending counts as success (contract [R45](anyloop::contract#r45)).
    ///
    /// # Errors
    /// Unexpected OS failures (logged).
    fn wake(&self) -> io::Result<()>;
}

/// The loop-thread half of an OS layer: the blocking wait.
pub trait Poller: Send + 'static {
    /// The thread-safe half of the same OS layer.
    type Registrar: Registrar;

    /// True when the substrate reports readiness only on changes (mio): the engine then
    /// passes the fds it dispatched in the previous iteration as [`Probe`]s so that data
    /// left unread is reported again ([R8](anyloop::contract#r8)).
    const EDGE_TRIGGERED: bool;

    /// Probes `probes` without blocking, then waits up to `timeout` (`None`: until something
    /// happens; zero if a probe was ready) and appends what is ready to `events`.
    ///
    /// Returns whether the wake-up was signalled; the OS layer must have *consumed* the
    /// wake-up before returning (contract [R40](anyloop::contract#r40): drain before the engine looks at its state).
    /// An interrupted wait (`EINTR`) returns normally with whatever it has ([R55](anyloop::contract#r55)).
    ///
    /// # Errors
    /// [`Error::Os`](anyloop::Error::Os) for unexpected failures.
    fn wait(
        &mut self,
        probes: &[Probe],
        timeout: Option<Duration>,
        events: &mut Vec<Readiness>,
    ) -> Result<bool>;
}
