//! [`Multi`]: the library, written the way a C library is. It knows nothing of anyloop: it
//! tells its host what to watch and when to call back through three callbacks, and the host
//! drives it with [`Multi::socket_action`] and [`Multi::timeout_action`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Bytes read per [`Multi::socket_action`]: one bounded read, level-triggered hosts call again.
const READ_CHUNK: usize = 4096;

/// What the library asks its host to watch on a socket: libcurl's `CURL_POLL_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Poll {
    /// Tell me when it is readable (`CURL_POLL_IN`).
    In,
    /// Tell me when it is writable (`CURL_POLL_OUT`).
    Out,
    /// Both (`CURL_POLL_INOUT`).
    InOut,
    /// Stop watching it: the library closes it as soon as the callback returns
    /// (`CURL_POLL_REMOVE`).
    Remove,
}

/// What the host saw on a socket, for [`Multi::socket_action`]: libcurl's `CURL_CSELECT_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// The socket is readable.
    pub readable: bool,
    /// The socket is writable.
    pub writable: bool,
    /// An error or a hang-up; the library reads the socket to find out which.
    pub error: bool,
}

/// The library's handle as its callbacks receive it, like the `CURLM *` every libcurl
/// callback can be given: the address of the library's private block. Opaque, and a raw
/// pointer, so neither `Send` nor `Sync`: compare it, print it, never dereference it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawMulti(*mut c_void);

impl fmt::Debug for RawMulti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "multi@{:p}", self.0)
    }
}

/// One exchange over a socket, as [`Multi::add`] numbered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transfer {}", self.0)
    }
}

/// How a transfer ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// Every ping was answered.
    Answered,
    /// No answer to this ping within the transfer's reply timeout.
    TimedOut {
        /// The ping (1-based) that went unanswered.
        ping: u32,
    },
    /// The peer closed the socket before the last answer.
    PeerClosed,
    /// The peer answered something else than the expected `pong N`.
    BadReply(String),
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// The host's callback refused what the library asked (a watch or the timer).
    Host(String),
}

impl Outcome {
    /// True for [`Outcome::Answered`].
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Answered)
    }
}

/// A finished transfer, handed to the done callback (libcurl's `curl_multi_info_read`).
#[derive(Debug)]
pub struct Done {
    /// Which transfer.
    pub transfer: TransferId,
    /// Pings answered before it ended.
    pub answered: u32,
    /// How it ended.
    pub outcome: Outcome,
}

/// `CURLMOPT_SOCKETFUNCTION`: watch `fd` for what [`Poll`] says (or stop watching it).
type SocketFn = dyn FnMut(RawMulti, RawFd, Poll) -> Result<(), String>;
/// `CURLMOPT_TIMERFUNCTION`: call [`Multi::timeout_action`] once, this long from now (`None`:
/// cancel that call).
type TimerFn = dyn FnMut(RawMulti, Option<Duration>) -> Result<(), String>;
/// A transfer ended.
type DoneFn = dyn FnMut(Done);

/// A handle on the library: a ping-pong client that runs any number of transfers at once,
/// each over a stream socket, without blocking and without threads.
///
/// A transfer writes `ping 1\n`, waits for `pong 1\n`, writes `ping 2\n`... until `pings`
/// answers came back; an answer that takes longer than its reply timeout fails it. Like a C
/// library, it owns no loop: whenever what it needs changes, it calls the host's *socket
/// callback* (watch this fd for reading, for reading and writing, or not at all any more) and
/// its *timer callback* (call me back in this long, or never), and the host calls
/// [`socket_action`](Self::socket_action) and [`timeout_action`](Self::timeout_action) when
/// that happens. It calls them only from inside its own functions, after its own state is
/// updated and with none of it borrowed, and never from another thread.
///
/// The handle is a reference-counted pointer to state kept in `Rc<RefCell<..>>` plus a raw
/// pointer to a block it allocated, so it is neither `Send` nor `Sync`, as C library handles
/// are in practice; its callbacks need not be `Send` either. Cloning it is `Rc::clone`.
#[derive(Clone)]
pub struct Multi {
    state: Rc<RefCell<State>>,
    hooks: Rc<Hooks>,
}

/// A weak [`Multi`], for callbacks the library itself keeps (holding the handle strongly
/// there would keep it alive forever).
#[derive(Clone)]
pub struct WeakMulti {
    state: Weak<RefCell<State>>,
    hooks: Weak<Hooks>,
}

impl WeakMulti {
    /// The handle, while it is alive.
    pub fn upgrade(&self) -> Option<Multi> {
        Some(Multi {
            state: self.state.upgrade()?,
            hooks: self.hooks.upgrade()?,
        })
    }
}

impl fmt::Debug for WeakMulti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakMulti")
            .field("alive", &(self.state.strong_count() > 0))
            .finish()
    }
}

/// The callbacks the host set, each taken out of its slot while it runs.
#[derive(Default)]
struct Hooks {
    socket: Cell<Option<Box<SocketFn>>>,
    timer: Cell<Option<Box<TimerFn>>>,
    done: Cell<Option<Box<DoneFn>>>,
    /// Set while [`Multi::flush`] runs: a call made from a callback queues, the outer flush
    /// delivers.
    flushing: Cell<bool>,
}

/// The block a C library would `malloc`: here its read buffer. Owned by the `Box` in
/// [`State`]; its address is the [`RawMulti`] the callbacks receive.
struct Private {
    scratch: [u8; READ_CHUNK],
}

struct State {
    next_id: u64,
    transfers: HashMap<RawFd, Transfer>,
    /// What the host was last asked to watch, per fd.
    told: HashMap<RawFd, Poll>,
    /// The deadline the host's timer is armed for.
    timer_armed: Option<Instant>,
    /// Callbacks to make once the state is no longer borrowed, in order.
    calls: VecDeque<Call>,
    private: Box<Private>,
    /// `private`'s address, as C code would keep its handle: never dereferenced.
    raw: *mut Private,
}

enum Call {
    /// `closing` is the socket of a finished transfer: closed after the host stopped watching
    /// it.
    Socket {
        fd: RawFd,
        what: Poll,
        closing: Option<UnixStream>,
    },
    Timer(Option<Duration>),
    Done(Done),
}

struct Transfer {
    id: TransferId,
    stream: UnixStream,
    pings: u32,
    reply_timeout: Duration,
    sent: u32,
    answered: u32,
    /// Bytes still to write.
    out: Vec<u8>,
    /// Bytes read and not yet a whole line.
    partial: Vec<u8>,
    /// When the answer to the last ping is due.
    deadline: Instant,
}

impl Multi {
    /// A library handle with no transfer and no callback.
    pub fn new() -> Multi {
        let mut private = Box::new(Private {
            scratch: [0; READ_CHUNK],
        });
        let raw: *mut Private = &mut *private;
        Multi {
            state: Rc::new(RefCell::new(State {
                next_id: 1,
                transfers: HashMap::new(),
                told: HashMap::new(),
                timer_armed: None,
                calls: VecDeque::new(),
                private,
                raw,
            })),
            hooks: Rc::default(),
        }
    }

    /// The handle the callbacks receive.
    pub fn as_raw(&self) -> RawMulti {
        RawMulti(self.state.borrow().raw.cast())
    }

    /// A weak handle.
    pub fn downgrade(&self) -> WeakMulti {
        WeakMulti {
            state: Rc::downgrade(&self.state),
            hooks: Rc::downgrade(&self.hooks),
        }
    }

    /// Sets the socket callback (libcurl's `CURLMOPT_SOCKETFUNCTION`): called with an fd and
    /// what to watch it for, or [`Poll::Remove`] before the library closes it. An `Err` fails
    /// the transfer of that fd with [`Outcome::Host`].
    pub fn set_socket_function(
        &self,
        callback: impl FnMut(RawMulti, RawFd, Poll) -> Result<(), String> + 'static,
    ) {
        self.hooks.socket.set(Some(Box::new(callback)));
    }

    /// Sets the timer callback (libcurl's `CURLMOPT_TIMERFUNCTION`): called with how long
    /// from now to call [`timeout_action`](Self::timeout_action), once, or `None` to cancel
    /// that call. A new delay replaces the previous one. An `Err` fails every transfer with
    /// [`Outcome::Host`].
    pub fn set_timer_function(
        &self,
        callback: impl FnMut(RawMulti, Option<Duration>) -> Result<(), String> + 'static,
    ) {
        self.hooks.timer.set(Some(Box::new(callback)));
    }

    /// Sets the callback told about every finished transfer. It may call
    /// [`add`](Self::add).
    pub fn set_done_function(&self, callback: impl FnMut(Done) + 'static) {
        self.hooks.done.set(Some(Box::new(callback)));
    }

    /// Starts a transfer of `pings` pings over `socket` (made non-blocking), each to be
    /// answered within `reply_timeout`.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] for zero pings; the socket's error if it cannot be
    /// made non-blocking.
    pub fn add(
        &self,
        socket: UnixStream,
        pings: u32,
        reply_timeout: Duration,
    ) -> io::Result<TransferId> {
        if pings == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a transfer needs at least one ping",
            ));
        }
        socket.set_nonblocking(true)?;
        let now = Instant::now();
        let id = {
            let mut state = self.state.borrow_mut();
            let id = TransferId(state.next_id);
            state.next_id += 1;
            let fd = socket.as_raw_fd();
            state.transfers.insert(
                fd,
                Transfer {
                    id,
                    stream: socket,
                    pings,
                    reply_timeout,
                    sent: 1,
                    answered: 0,
                    out: b"ping 1\n".to_vec(),
                    partial: Vec::new(),
                    deadline: now + reply_timeout,
                },
            );
            state.sync_socket(fd);
            state.sync_timer(now);
            id
        };
        self.flush();
        Ok(id)
    }

    /// Tells the library what happened on `fd` (the host's watch fired): it writes what is
    /// pending, reads one chunk, answers with the next ping, finishes transfers.
    pub fn socket_action(&self, fd: RawFd, ready: Ready) {
        self.state.borrow_mut().on_socket(fd, ready, Instant::now());
        self.flush();
    }

    /// Tells the library that the delay of its last timer request elapsed: it fails the
    /// transfers whose answer is overdue.
    pub fn timeout_action(&self) {
        {
            let mut state = self.state.borrow_mut();
            // The host's call-back is spent: a new one is requested below if needed.
            state.timer_armed = None;
            let now = Instant::now();
            let overdue: Vec<RawFd> = state
                .transfers
                .iter()
                .filter(|(_, transfer)| transfer.deadline <= now)
                .map(|(fd, _)| *fd)
                .collect();
            for fd in overdue {
                let ping = state.transfers[&fd].sent;
                state.finish(fd, Outcome::TimedOut { ping });
            }
            state.sync_timer(now);
        }
        self.flush();
    }

    /// Transfers still running.
    pub fn running(&self) -> usize {
        self.state.borrow().transfers.len()
    }

    /// Makes the queued callbacks, with no state borrowed. Not re-entered: a callback that
    /// calls into the library only queues more, which this loop then delivers.
    fn flush(&self) {
        if self.hooks.flushing.replace(true) {
            return;
        }
        let _reset = ResetOnDrop(&self.hooks.flushing);
        let raw = self.as_raw();
        loop {
            let Some(call) = self.state.borrow_mut().calls.pop_front() else {
                break;
            };
            match call {
                Call::Socket { fd, what, closing } => {
                    let result = with_hook(&self.hooks.socket, |f| f(raw, fd, what));
                    // Closed only now that the host no longer watches it.
                    drop(closing);
                    if let (Some(Err(reason)), false) = (result, what == Poll::Remove) {
                        self.state.borrow_mut().finish(fd, Outcome::Host(reason));
                    }
                }
                Call::Timer(delay) => {
                    if let Some(Err(reason)) = with_hook(&self.hooks.timer, |f| f(raw, delay)) {
                        let mut state = self.state.borrow_mut();
                        let fds: Vec<RawFd> = state.transfers.keys().copied().collect();
                        for fd in fds {
                            state.finish(fd, Outcome::Host(reason.clone()));
                        }
                    }
                }
                Call::Done(done) => {
                    with_hook(&self.hooks.done, |f| f(done));
                }
            }
        }
    }
}

impl Default for Multi {
    fn default() -> Self {
        Multi::new()
    }
}

impl fmt::Debug for Multi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multi")
            .field("handle", &self.as_raw())
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

/// Runs the callback in `slot`, taken out meanwhile (so that it may replace itself); `None`
/// when none is set.
fn with_hook<F: ?Sized, R>(
    slot: &Cell<Option<Box<F>>>,
    call: impl FnOnce(&mut F) -> R,
) -> Option<R> {
    let mut hook = slot.take()?;
    let result = call(&mut *hook);
    // Put back unless the callback installed another one.
    let replaced = slot.take();
    slot.set(Some(replaced.unwrap_or(hook)));
    Some(result)
}

struct ResetOnDrop<'a>(&'a Cell<bool>);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl State {
    fn on_socket(&mut self, fd: RawFd, ready: Ready, now: Instant) {
        let State {
            transfers, private, ..
        } = self;
        let Some(transfer) = transfers.get_mut(&fd) else {
            return; // finished meanwhile
        };
        if ready.writable && !transfer.out.is_empty() {
            match transfer.stream.write(&transfer.out) {
                Ok(n) => {
                    transfer.out.drain(..n);
                }
                Err(err) if is_transient(&err) => {}
                Err(err) => return self.finish(fd, Outcome::Io(err)),
            }
        }
        let mut ended = None;
        if ready.readable || ready.error {
            match transfer.stream.read(&mut private.scratch) {
                Ok(0) => ended = Some(Outcome::PeerClosed),
                Ok(n) => {
                    transfer.partial.extend_from_slice(&private.scratch[..n]);
                    ended = transfer.take_answers(now);
                }
                Err(err) if is_transient(&err) => {}
                Err(err) => ended = Some(Outcome::Io(err)),
            }
        }
        match ended {
            Some(outcome) => self.finish(fd, outcome),
            None => {
                self.sync_socket(fd);
                self.sync_timer(now);
            }
        }
    }

    /// Removes a transfer: asks the host to stop watching its socket (closed after that),
    /// then reports it done.
    fn finish(&mut self, fd: RawFd, outcome: Outcome) {
        let Some(transfer) = self.transfers.remove(&fd) else {
            return;
        };
        let closing = Some(transfer.stream);
        if self.told.remove(&fd).is_some() {
            self.calls.push_back(Call::Socket {
                fd,
                what: Poll::Remove,
                closing,
            });
        }
        self.calls.push_back(Call::Done(Done {
            transfer: transfer.id,
            answered: transfer.answered,
            outcome,
        }));
        self.sync_timer(Instant::now());
    }

    /// Queues a socket callback if what `fd` needs changed.
    fn sync_socket(&mut self, fd: RawFd) {
        let Some(transfer) = self.transfers.get(&fd) else {
            return;
        };
        let wanted = if transfer.out.is_empty() {
            Poll::In
        } else {
            Poll::InOut
        };
        if self.told.insert(fd, wanted) != Some(wanted) {
            self.calls.push_back(Call::Socket {
                fd,
                what: wanted,
                closing: None,
            });
        }
    }

    /// Queues a timer callback if the earliest deadline changed.
    fn sync_timer(&mut self, now: Instant) {
        let earliest = self.transfers.values().map(|t| t.deadline).min();
        if earliest != self.timer_armed {
            self.timer_armed = earliest;
            let delay = earliest.map(|deadline| deadline.saturating_duration_since(now));
            self.calls.push_back(Call::Timer(delay));
        }
    }
}

impl Transfer {
    /// Consumes the complete answer lines; queues the next ping after each good one. Returns
    /// how the transfer ended, if it did.
    fn take_answers(&mut self, now: Instant) -> Option<Outcome> {
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            if line != format!("pong {}", self.answered + 1) || self.answered == self.sent {
                return Some(Outcome::BadReply(line));
            }
            self.answered += 1;
            if self.answered == self.pings {
                return Some(Outcome::Answered);
            }
            self.sent += 1;
            self.out
                .extend_from_slice(format!("ping {}\n", self.sent).as_bytes());
            self.deadline = now + self.reply_timeout;
        }
        None
    }
}

fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
