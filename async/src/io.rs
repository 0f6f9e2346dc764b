//! Readiness futures: [`Async`] keeps one watch on an fd and toggles its interest;
//! [`readable`] and [`writable`] are one-off waits with a watch of their own.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use anyloop::{Error, IoEvents, Loop, Result, Watch};

use crate::sched;

/// A direction of readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

impl Dir {
    fn interest(self) -> IoEvents {
        match self {
            Dir::Read => IoEvents::READABLE,
            Dir::Write => IoEvents::WRITABLE,
        }
    }
}

/// The key of the poll API's one waiting slot per direction ([`Async::poll_readable`]).
const POLL_SLOT: u64 = u64::MAX;

/// One future (or the poll API's slot) waiting for a direction.
struct Waiter {
    key: u64,
    /// What the reports made while it waited said; empty until one came.
    ready: IoEvents,
    waker: Option<Waker>,
}

/// The state a watch callback shares with the futures waiting on its fd.
struct IoState {
    lp: Loop,
    watch: Cell<Option<anyloop::WatchId>>,
    /// The interest last set through the vtable; `None` when unknown (after an `ERROR`, which
    /// the loop may answer by emptying the interest itself, [R52](anyloop::contract#r52)).
    interest: Cell<Option<IoEvents>>,
    readers: RefCell<Vec<Waiter>>,
    writers: RefCell<Vec<Waiter>>,
    next_key: Cell<u64>,
    /// The callback was freed without us removing the watch: the loop is gone.
    freed: Cell<bool>,
}

impl IoState {
    fn new(lp: &Loop) -> Rc<IoState> {
        Rc::new(IoState {
            lp: lp.clone(),
            watch: Cell::new(None),
            interest: Cell::new(Some(IoEvents::empty())),
            readers: RefCell::new(Vec::new()),
            writers: RefCell::new(Vec::new()),
            next_key: Cell::new(1),
            freed: Cell::new(false),
        })
    }

    fn waiters(&self, dir: Dir) -> &RefCell<Vec<Waiter>> {
        match dir {
            Dir::Read => &self.readers,
            Dir::Write => &self.writers,
        }
    }

    /// Adds `fd`'s watch (disabled until a future waits) with a callback that feeds `state`.
    fn register(state: &Rc<IoState>, fd: BorrowedFd<'_>) -> Result<Watch> {
        let feed = FreeNotice(Rc::clone(state));
        let watch = state
            .lp
            .watch_local(
                fd.as_raw_fd(),
                IoEvents::empty(),
                move |_id, _fd, events| {
                    let state = &feed.0;
                    sched::dispatch(&state.lp, || state.report(events));
                },
            )
            .map_err(|rejected| sched::refine(&state.lp, rejected.into_parts().0))?;
        state.watch.set(Some(watch.id()));
        Ok(watch)
    }

    /// The loop reported `events`: hand them to the waiters of each direction they concern,
    /// and stop asking for a direction nobody waits for (level-triggered: if the fd is still
    /// ready when someone waits again, the loop reports it again).
    fn report(&self, events: IoEvents) {
        let always = events & IoEvents::ALWAYS_REPORTED;
        // Usually one waiter: no allocation for it.
        let mut wakers = Wakers::default();
        let mut idle = IoEvents::empty();
        for dir in [Dir::Read, Dir::Write] {
            let hit = events & (dir.interest() | always);
            if hit.is_empty() {
                continue;
            }
            let mut waiters = self.waiters(dir).borrow_mut();
            if waiters.is_empty() {
                idle |= dir.interest();
                continue;
            }
            for waiter in waiters.iter_mut() {
                waiter.ready |= hit;
                wakers.push(waiter.waker.take());
            }
        }
        let interest = match self.interest.get() {
            Some(interest) if !events.contains(IoEvents::ERROR) => interest - idle,
            // After an ERROR the loop may have emptied the interest (R52): set it again from
            // scratch, to what the waiters want.
            _ => self.wanted(),
        };
        if self.interest.get() != Some(interest) {
            // A failure leaves the interest unknown, so the next wait sets it again.
            let _ = self.set_interest(interest);
        }
        // Wake with no borrow held: a waker may run anything.
        wakers.wake_all();
    }

    /// The directions someone waits for.
    fn wanted(&self) -> IoEvents {
        let mut interest = IoEvents::empty();
        if !self.readers.borrow().is_empty() {
            interest |= IoEvents::READABLE;
        }
        if !self.writers.borrow().is_empty() {
            interest |= IoEvents::WRITABLE;
        }
        interest
    }

    fn set_interest(&self, interest: IoEvents) -> Result<()> {
        let Some(id) = self.watch.get() else {
            return Err(Error::LoopGone);
        };
        match self.lp.update_watch(id, interest) {
            Ok(()) => {
                self.interest.set(Some(interest));
                Ok(())
            }
            Err(error) => {
                self.interest.set(None);
                Err(error)
            }
        }
    }

    /// The poll of a wait for `dir` by the waiter `key`: 0 when not filed yet (it gets a
    /// fresh key), [`POLL_SLOT`] for the poll API's one slot.
    fn poll_ready(&self, dir: Dir, key: &mut u64, cx: &Context<'_>) -> Poll<Result<IoEvents>> {
        if self.freed.get() {
            return Poll::Ready(Err(Error::LoopGone));
        }
        let mut waiters = self.waiters(dir).borrow_mut();
        let filed = match *key {
            0 => None,
            key => waiters.iter().position(|w| w.key == key),
        };
        if let Some(at) = filed {
            let waiter = &mut waiters[at];
            if !waiter.ready.is_empty() {
                let ready = waiter.ready;
                waiters.swap_remove(at);
                if *key != POLL_SLOT {
                    *key = 0;
                }
                return Poll::Ready(Ok(ready));
            }
            match &mut waiter.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                other => *other = Some(cx.waker().clone()),
            }
            drop(waiters);
            // Polled again with no report: is the loop still there? (A loop destroyed on
            // another thread cannot free this thread-bound callback, R42.)
            if self.lp.loop_thread().is_none() {
                return Poll::Ready(Err(Error::LoopGone));
            }
            return Poll::Pending;
        }
        if *key == 0 {
            *key = self.next_key.get();
            self.next_key.set(*key + 1);
        }
        waiters.push(Waiter {
            key: *key,
            ready: IoEvents::empty(),
            waker: Some(cx.waker().clone()),
        });
        drop(waiters);
        let interest = self.interest.get();
        if interest.is_none_or(|interest| !interest.contains(dir.interest())) {
            let wanted = interest.unwrap_or_else(|| self.wanted()) | dir.interest();
            if let Err(error) = self.set_interest(wanted) {
                self.forget(dir, key);
                return Poll::Ready(Err(error));
            }
        }
        Poll::Pending
    }

    /// [`poll_ready`](Self::poll_ready) for the poll API's slot.
    fn poll_slot(&self, dir: Dir, cx: &Context<'_>) -> Poll<Result<IoEvents>> {
        let mut key = POLL_SLOT;
        self.poll_ready(dir, &mut key, cx)
    }

    /// Removes the waiter `key` (its waker is dropped, never called).
    fn forget(&self, dir: Dir, key: &mut u64) {
        if *key == 0 {
            return;
        }
        let removed = {
            let mut waiters = self.waiters(dir).borrow_mut();
            waiters
                .iter()
                .position(|w| w.key == *key)
                .map(|at| waiters.swap_remove(at))
        };
        if *key != POLL_SLOT {
            *key = 0;
        }
        drop(removed);
    }

    /// Drops every waiter's waker without calling it (the watch is going away).
    fn forget_all(&self) {
        let readers = std::mem::take(&mut *self.readers.borrow_mut());
        let writers = std::mem::take(&mut *self.writers.borrow_mut());
        drop((readers, writers));
    }
}

/// The wakers of one report: the first inline, more in a vector.
#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Wakers {
    fn push(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else { return };
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.more.push(waker);
        }
    }

    fn wake_all(self) {
        if let Some(first) = self.first {
            first.wake();
        }
        for waker in self.more {
            waker.wake();
        }
    }
}

/// Owned by the watch callback: its drop is the callback's free, which, unless the watch was
/// removed by us first (then nobody waits any more), means the loop was destroyed.
struct FreeNotice(Rc<IoState>);

impl Drop for FreeNotice {
    fn drop(&mut self) {
        let state = &self.0;
        state.freed.set(true);
        let mut wakers = Vec::new();
        for dir in [Dir::Read, Dir::Write] {
            for waiter in state.waiters(dir).borrow_mut().iter_mut() {
                wakers.extend(waiter.waker.take());
            }
        }
        for waker in wakers {
            waker.wake();
        }
    }
}

/// An fd (a socket, a pipe, anything [`AsFd`]) with one watch on the loop, for
/// `readable().await` and `writable().await`.
///
/// The watch is added (disabled) by [`Async::new`] and removed when the `Async` is dropped,
/// before the fd is closed ([R53](anyloop::contract#r53)). Its interest follows the waiting
/// futures: a direction is asked for when a future starts waiting for it, and dropped again
/// when the loop reports it while nobody waits, so an fd that nobody waits for costs the loop
/// nothing, and one that a task keeps waiting for costs no vtable call per wait.
///
/// The fd should be in non-blocking mode (`UnixStream::set_nonblocking(true)`...), so that a
/// read or write that cannot proceed fails with [`io::ErrorKind::WouldBlock`] instead of
/// blocking the loop.
///
/// # What a readiness future tells you (level-triggered, and only a hint)
///
/// - [`readable`](Self::readable) resolves with the events of the first report of the loop,
///   made **while the future is waiting**, that concerns reading: `READABLE`, or `HANGUP` /
///   `ERROR`, which every waiter is told whatever it asked for
///   ([R9](anyloop::contract#r9)). [`writable`](Self::writable) likewise for `WRITABLE`. A
///   report made before the future first waited is not remembered; the loop is
///   level-triggered ([R8](anyloop::contract#r8)), so an fd that is still readable is reported
///   again in the next iteration: waiting costs at most one iteration more, and no readiness
///   is ever lost.
/// - A resolution is **not a promise that the next read will not block**: readiness is a hint
///   ([R14](anyloop::contract#r14)). Another reader may have taken the data, or the readiness
///   may be stale. Read until [`WouldBlock`](io::ErrorKind::WouldBlock), then await again:
///   the next `readable()` waits for a new report. [`read_with`](Self::read_with) and
///   [`write_with`](Self::write_with) do exactly that loop.
/// - Several futures waiting in the same direction all resolve on the same report.
/// - A dropped future removes itself: its waker is never called afterwards.
/// - `ERROR` alone, with no data, is how the loop tells a watch that its fd number was closed
///   under it ([R52](anyloop::contract#r52)): a library bug (drop the `Async` before closing
///   the fd). A read or write then reports the real error.
///
/// ```
/// use anyloop_async::Async;
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let lp = anyloop::Runner::handle(&event_loop);
/// let (a, mut b) = UnixStream::pair()?;
/// a.set_nonblocking(true)?;
/// let a = Async::new(&lp, a)?;
/// b.write_all(b"ping")?;
/// let got = anyloop_async::block_on(&mut event_loop, async {
///     let mut buf = [0u8; 16];
///     let n = a.read_with(|mut s| s.read(&mut buf)).await?;
///     std::io::Result::Ok(buf[..n].to_vec())
/// })??;
/// assert_eq!(got, b"ping");
/// # Ok(()) }
/// ```
pub struct Async<T: AsFd> {
    // Declared before `io`: the watch goes away before the fd is closed (R53).
    watch: Option<Watch>,
    state: Rc<IoState>,
    io: Option<T>,
}

impl<T: AsFd> Async<T> {
    /// Wraps `io` and adds its watch on `lp` (disabled until a future waits).
    ///
    /// # Errors
    /// As [`Loop::watch_local`]: [`WrongThread`](Error::WrongThread) off the loop's thread,
    /// [`InvalidFd`](Error::InvalidFd), [`LoopGone`](Error::LoopGone)...
    pub fn new(lp: &Loop, io: T) -> Result<Async<T>> {
        let state = IoState::new(lp);
        let watch = IoState::register(&state, io.as_fd())?;
        Ok(Async {
            watch: Some(watch),
            state,
            io: Some(io),
        })
    }

    /// The wrapped I/O object.
    pub fn get_ref(&self) -> &T {
        self.io.as_ref().expect("present until into_inner")
    }

    /// Removes the watch and returns the I/O object.
    pub fn into_inner(mut self) -> T {
        self.close_watch();
        self.io.take().expect("present until into_inner")
    }

    /// The loop the watch is on.
    pub fn event_loop(&self) -> &Loop {
        &self.state.lp
    }

    /// Waits until the loop reports the fd readable (or hung up, or in error): see the type's
    /// documentation for exactly what that means.
    ///
    /// # Errors (its output)
    /// [`LoopGone`](Error::LoopGone) when the loop is gone (a waiting future is woken to
    /// say so), or what [`Loop::update_watch`] returns.
    pub fn readable(&self) -> Readiness<'_> {
        Readiness {
            state: &self.state,
            dir: Dir::Read,
            key: 0,
        }
    }

    /// Waits until the loop reports the fd writable (or hung up, or in error); as
    /// [`readable`](Self::readable).
    pub fn writable(&self) -> Readiness<'_> {
        Readiness {
            state: &self.state,
            dir: Dir::Write,
            key: 0,
        }
    }

    /// [`readable`](Self::readable) as a poll function, for `AsyncRead`-style code. It has
    /// one waiting slot: the last waker given is the one woken.
    ///
    /// # Errors
    /// As [`readable`](Self::readable).
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<Result<IoEvents>> {
        self.state.poll_slot(Dir::Read, cx)
    }

    /// [`writable`](Self::writable) as a poll function; see
    /// [`poll_readable`](Self::poll_readable).
    ///
    /// # Errors
    /// As [`writable`](Self::writable).
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<Result<IoEvents>> {
        self.state.poll_slot(Dir::Write, cx)
    }

    /// Runs `op` until it does not fail with [`WouldBlock`](io::ErrorKind::WouldBlock),
    /// awaiting [`readable`](Self::readable) in between: the non-blocking read loop.
    ///
    /// # Errors
    /// What `op` returns, or the loop's error (as [`io::Error::other`]).
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            match op(self.get_ref()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            self.readable().await.map_err(io::Error::other)?;
        }
    }

    /// Runs `op` until it does not fail with [`WouldBlock`](io::ErrorKind::WouldBlock),
    /// awaiting [`writable`](Self::writable) in between.
    ///
    /// # Errors
    /// What `op` returns, or the loop's error (as [`io::Error::other`]).
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            match op(self.get_ref()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            self.writable().await.map_err(io::Error::other)?;
        }
    }

    fn close_watch(&mut self) {
        self.state.forget_all();
        if let Some(watch) = self.watch.take() {
            self.state.watch.set(None);
            drop(watch);
        }
    }

    /// Non-blocking I/O through `op`, as an `AsyncRead`/`AsyncWrite` poll.
    fn poll_io<R>(
        &self,
        dir: Dir,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        poll_until_ready(&self.state, dir, cx, || op(self.get_ref()))
    }

    /// [`poll_io`](Self::poll_io) for an operation that needs `&mut T`.
    fn poll_io_mut<R>(
        &mut self,
        dir: Dir,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let io = self.io.as_mut().expect("present until into_inner");
        poll_until_ready(&self.state, dir, cx, || op(io))
    }
}

/// Tries `attempt` until it does not fail with [`WouldBlock`](io::ErrorKind::WouldBlock),
/// polling `dir`'s readiness in between; forgets the poll API's waiter once it succeeded.
fn poll_until_ready<R>(
    state: &IoState,
    dir: Dir,
    cx: &mut Context<'_>,
    mut attempt: impl FnMut() -> io::Result<R>,
) -> Poll<io::Result<R>> {
    loop {
        match attempt() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            other => {
                let mut key = POLL_SLOT;
                state.forget(dir, &mut key);
                return Poll::Ready(other);
            }
        }
        match state.poll_slot(dir, cx) {
            Poll::Ready(Ok(_)) => continue,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// `Async` never pins its I/O object: it is only reached through `&T` / `&mut T`.
impl<T: AsFd> Unpin for Async<T> {}

impl<T: AsFd> Drop for Async<T> {
    fn drop(&mut self) {
        self.close_watch();
    }
}

impl<T: AsFd + fmt::Debug> fmt::Debug for Async<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async")
            .field("io", &self.io)
            .field("watch", &self.state.watch.get())
            .field("interest", &self.state.interest.get())
            .finish()
    }
}

/// The future of [`Async::readable`] and [`Async::writable`]: resolves to the events of the
/// loop's report (see [`Async`] for what they mean).
#[must_use = "futures do nothing unless polled"]
pub struct Readiness<'a> {
    state: &'a IoState,
    dir: Dir,
    key: u64,
}

impl Future for Readiness<'_> {
    type Output = Result<IoEvents>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<IoEvents>> {
        let this = &mut *self;
        this.state.poll_ready(this.dir, &mut this.key, cx)
    }
}

impl Drop for Readiness<'_> {
    fn drop(&mut self) {
        self.state.forget(self.dir, &mut self.key);
    }
}

impl fmt::Debug for Readiness<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("direction", &self.dir)
            .field("waiting", &(self.key != 0))
            .finish()
    }
}

/// Waits once until `fd` is readable (or hung up, or in error), with a watch of its own that
/// is added at the first poll and removed when the future resolves or is dropped; the same
/// meaning as [`Async::readable`]. For repeated waits on one fd, [`Async`] is cheaper (one
/// watch, interest toggled).
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsFd;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let lp = anyloop::Runner::handle(&event_loop);
/// let (reader, mut writer) = std::io::pipe()?;
/// writer.write_all(b"x")?;
/// let events = anyloop_async::block_on(&mut event_loop, anyloop_async::readable(&lp, reader.as_fd()))??;
/// assert!(events.contains(anyloop::IoEvents::READABLE));
/// # Ok(()) }
/// ```
pub fn readable<'a>(lp: &Loop, fd: BorrowedFd<'a>) -> FdReady<'a> {
    FdReady::new(lp, fd, Dir::Read)
}

/// Waits once until `fd` is writable (or hung up, or in error); see [`readable`].
pub fn writable<'a>(lp: &Loop, fd: BorrowedFd<'a>) -> FdReady<'a> {
    FdReady::new(lp, fd, Dir::Write)
}

/// The future of [`readable`] and [`writable`].
///
/// # Errors (its output)
/// At the first poll, as [`Loop::watch_local`] ([`WrongThread`](Error::WrongThread) off the
/// loop's thread, [`InvalidFd`](Error::InvalidFd), [`LoopGone`](Error::LoopGone)); later,
/// [`LoopGone`](Error::LoopGone).
#[must_use = "futures do nothing unless polled"]
pub struct FdReady<'a> {
    lp: Loop,
    fd: BorrowedFd<'a>,
    dir: Dir,
    key: u64,
    watch: Option<(Watch, Rc<IoState>)>,
}

impl<'a> FdReady<'a> {
    fn new(lp: &Loop, fd: BorrowedFd<'a>, dir: Dir) -> FdReady<'a> {
        FdReady {
            lp: lp.clone(),
            fd,
            dir,
            key: 0,
            watch: None,
        }
    }

    fn close(&mut self) {
        if let Some((watch, state)) = self.watch.take() {
            state.forget_all();
            state.watch.set(None);
            drop(watch);
        }
    }
}

impl Future for FdReady<'_> {
    type Output = Result<IoEvents>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<IoEvents>> {
        let this = &mut *self;
        if this.watch.is_none() {
            let state = IoState::new(&this.lp);
            match IoState::register(&state, this.fd) {
                Ok(watch) => this.watch = Some((watch, state)),
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        let Some((_, state)) = &this.watch else {
            unreachable!("registered above")
        };
        let result = state.poll_ready(this.dir, &mut this.key, cx);
        if result.is_ready() {
            this.close();
        }
        result
    }
}

impl Drop for FdReady<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for FdReady<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdReady")
            .field("fd", &self.fd)
            .field("direction", &self.dir)
            .field("watch", &self.watch.as_ref().map(|(watch, _)| watch.id()))
            .finish()
    }
}

impl<T: AsFd + Read> futures_io::AsyncRead for Async<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io_mut(Dir::Read, cx, |io| io.read(buf))
    }
}

impl<T: AsFd + Write> futures_io::AsyncWrite for Async<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io_mut(Dir::Write, cx, |io| io.write(buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_io_mut(Dir::Write, cx, |io| io.flush())
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl<T: AsFd> futures_io::AsyncRead for &Async<T>
where
    for<'b> &'b T: Read,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(Dir::Read, cx, |mut io| io.read(buf))
    }
}

impl<T: AsFd> futures_io::AsyncWrite for &Async<T>
where
    for<'b> &'b T: Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(Dir::Write, cx, |mut io| io.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_io(Dir::Write, cx, |mut io| io.flush())
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
