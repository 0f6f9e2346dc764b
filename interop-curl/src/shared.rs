//! The client's state on the loop thread, and the binding of libcurl's multi-socket API to
//! the anyloop vtable: one fd watch per socket libcurl asks for, one timer for its timeout.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyloop::{IoEvents, Loop, Registry, Schedule, ThreadBound, Timer, Watch, WatchCallback};
use curl::easy::{Easy2, Handler};
use curl::multi::{Events, Multi, Socket, SocketEvents};

use crate::client::Config;
use crate::error::{Error, Failed};
use crate::events::{Progress, TransferEvent, TransferId, TransferProgress, TransferStarted};
use crate::ffi;
use crate::slot::{Done, Ended, Entry, Typed};

/// libcurl's code for a multi call made from inside one of its callbacks (`curl-sys` does not
/// name it).
const CURLM_RECURSIVE_API_CALL: curl_sys::CURLMcode = 8;

/// Whether the client still takes transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Open,
    Closed,
    LoopGone,
}

/// A watch or timer of ours, and the flag its callback's free reads: still `true` when the
/// loop frees the callback means the loop freed it without being asked, i.e. it was
/// destroyed ([R48](anyloop::contract#r48)).
struct Registered<G> {
    guard: G,
    live: Rc<Cell<bool>>,
}

impl<G> Registered<G> {
    /// Removes the registration (the guard's drop) after telling its free to expect it.
    fn retire(self) {
        self.live.set(false);
        drop(self.guard);
    }
}

/// Owned by each of our loop callbacks; its drop is the callback's free.
struct Hold {
    shared: Weak<Shared>,
    live: Rc<Cell<bool>>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.live.replace(false) {
            if let Some(shared) = self.shared.upgrade() {
                shared.loop_gone();
            }
        }
    }
}

/// Counters a client reports ([`ClientStats`](crate::ClientStats)).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) started: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
}

pub(crate) struct Shared {
    pub(crate) lp: Loop,
    multi: Multi,
    pub(crate) events: Registry<TransferEvent>,
    /// Whether a callback listens to [`TransferProgress`] (kept by the registry's hook).
    progress_listened: Arc<AtomicBool>,
    config: Config,
    state: Cell<State>,
    next_id: Cell<u64>,
    transfers: RefCell<HashMap<u64, Entry>>,
    /// Transfers in the table, readable while the table is borrowed.
    in_flight: Cell<usize>,
    sockets: RefCell<HashMap<Socket, Registered<Watch>>>,
    /// libcurl's one timeout, registered while it is armed or a transfer is in flight.
    timer: RefCell<Option<Registered<Timer>>>,
    timer_armed: Cell<bool>,
    /// Depth of our calls into libcurl that may run its callbacks: libcurl refuses its multi
    /// functions from inside them (`CURLM_RECURSIVE_API_CALL`).
    in_libcurl: Cell<u32>,
    /// `close` was called from inside a libcurl callback (a handler closing its client):
    /// libcurl refuses the removals there, so the client shuts down right after it returns.
    close_pending: Cell<bool>,
    /// Transfers dropped from inside a libcurl callback: removed once libcurl returns.
    deferred_cancels: RefCell<Vec<u64>>,
    /// The first error of the loop while libcurl's callbacks asked for a watch or the timer.
    loop_error: RefCell<Option<anyloop::Error>>,
    pub(crate) counters: Cell<Counters>,
}

/// The loop's readiness as libcurl's `CURL_CSELECT_*` bits. An error or hang-up is passed as
/// both directions, so that libcurl's own read, write or `SO_ERROR` check finds out what
/// happened (libcurl's `CURL_CSELECT_ERR` would hide a refused connection behind a generic
/// error).
fn curl_events(events: IoEvents) -> Events {
    let broken = events.intersects(IoEvents::ERROR | IoEvents::HANGUP);
    let mut bits = Events::new();
    bits.input(broken || events.contains(IoEvents::READABLE));
    bits.output(broken || events.contains(IoEvents::WRITABLE));
    bits
}

/// What libcurl asks a socket to be watched for.
fn interest(what: &SocketEvents) -> IoEvents {
    let mut interest = IoEvents::empty();
    if what.input() {
        interest |= IoEvents::READABLE;
    }
    if what.output() {
        interest |= IoEvents::WRITABLE;
    }
    interest
}

impl Shared {
    /// A new client's state, with libcurl's socket and timer callbacks pointing to it.
    pub(crate) fn new(
        lp: &Loop,
        events: Registry<TransferEvent>,
        progress_listened: Arc<AtomicBool>,
        config: Config,
    ) -> Result<Rc<Shared>, Error> {
        let mut failure = None;
        let shared = Rc::new_cyclic(|weak: &Weak<Shared>| {
            let multi = match multi_for(weak, &config) {
                Ok(multi) => multi,
                Err(error) => {
                    failure = Some(error);
                    Multi::new()
                }
            };
            Shared {
                lp: lp.clone(),
                multi,
                events,
                progress_listened,
                config,
                state: Cell::new(State::Open),
                next_id: Cell::new(1),
                transfers: RefCell::default(),
                in_flight: Cell::new(0),
                sockets: RefCell::default(),
                timer: RefCell::new(None),
                timer_armed: Cell::new(false),
                in_libcurl: Cell::new(0),
                close_pending: Cell::new(false),
                deferred_cancels: RefCell::default(),
                loop_error: RefCell::new(None),
                counters: Cell::default(),
            }
        });
        match failure {
            Some(error) => Err(error),
            None => Ok(shared),
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    pub(crate) fn sockets(&self) -> usize {
        self.sockets.borrow().len()
    }

    pub(crate) fn timer_registered(&self) -> bool {
        self.timer.borrow().is_some()
    }

    pub(crate) fn timer_armed(&self) -> bool {
        self.timer_armed.get()
    }

    fn count(&self, update: impl FnOnce(&mut Counters)) {
        let mut counters = self.counters.get();
        update(&mut counters);
        self.counters.set(counters);
    }

    /// Runs a libcurl multi call that may call back into us (socket, timer and transfer
    /// callbacks), marked so that what must not happen inside is deferred or refused.
    fn in_libcurl<R>(&self, call: impl FnOnce(&Multi) -> R) -> R {
        struct Depth<'a>(&'a Cell<u32>);
        impl Drop for Depth<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        self.in_libcurl.set(self.in_libcurl.get() + 1);
        let _depth = Depth(&self.in_libcurl);
        call(&self.multi)
    }

    // ---- Transfers ----

    /// Hands `easy` to libcurl; `done` is called once with the outcome unless the transfer
    /// is cancelled.
    pub(crate) fn start<H: Handler + 'static>(
        self: &Rc<Self>,
        mut easy: Easy2<H>,
        done: Done<H>,
    ) -> Result<TransferId, Failed<H>> {
        match self.state.get() {
            State::Open => {}
            State::Closed => return Err(Failed::new(Error::Closed, Some(easy))),
            State::LoopGone => return Err(Failed::new(Error::LoopGone, Some(easy))),
        }
        if !self.lp.is_alive() {
            self.loop_gone();
            return Err(Failed::new(Error::LoopGone, Some(easy)));
        }
        if self.in_libcurl.get() > 0 {
            let source = curl::MultiError::new(CURLM_RECURSIVE_API_CALL);
            let error = Error::Multi {
                op: "adding a transfer from inside one of libcurl's callbacks",
                source,
            };
            return Err(Failed::new(error, Some(easy)));
        }
        if let Err(failed) = self.config.apply(&mut easy) {
            let (what, source) = failed;
            return Err(Failed::new(Error::Easy { what, source }, Some(easy)));
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let transfer = TransferId(id);
        let added = self.in_libcurl(|multi| multi.add2(easy));
        let mut handle = match added {
            Ok(handle) => handle,
            Err(source) => {
                let op = "adding a transfer";
                return Err(Failed::new(Error::Multi { op, source }, None));
            }
        };
        if let Err(source) = handle.set_token(id as usize) {
            let easy = self.in_libcurl(|multi| multi.remove2(handle)).ok();
            let what = "CURLOPT_PRIVATE";
            return Err(Failed::new(Error::Easy { what, source }, easy));
        }
        // libcurl asked for its timer inside `add2`: if the loop refused, this transfer would
        // never run.
        if let Some(error) = self.loop_error.borrow_mut().take() {
            let easy = self.in_libcurl(|multi| multi.remove2(handle)).ok();
            let error = Error::from_loop("arming libcurl's timer", error);
            if matches!(error, Error::LoopGone) {
                self.loop_gone();
            }
            self.settle_timer();
            return Err(Failed::new(error, easy));
        }
        let entry = Entry {
            slot: Box::new(Typed { handle, done }),
            paused: false,
            reported: Progress::default(),
            reported_at: None,
        };
        self.transfers.borrow_mut().insert(id, entry);
        self.in_flight.set(self.in_flight.get() + 1);
        self.count(|c| c.started += 1);
        self.settle_timer();
        self.events.emit(TransferStarted { transfer });
        Ok(transfer)
    }

    /// Removes a transfer without telling its owner; the easy handle as a `Box<Easy2<H>>`.
    pub(crate) fn cancel(self: &Rc<Self>, id: TransferId) -> Option<Box<dyn Any>> {
        if self.in_libcurl.get() > 0 {
            // From a libcurl callback (a handler dropping a transfer's handle): libcurl
            // refuses the removal there; done right after it returns.
            if self.transfers.borrow().contains_key(&id.0) {
                self.deferred_cancels.borrow_mut().push(id.0);
            }
            return None;
        }
        let entry = self.transfers.borrow_mut().remove(&id.0)?;
        self.in_flight.set(self.in_flight.get() - 1);
        self.count(|c| c.cancelled += 1);
        let easy = self.in_libcurl(|multi| entry.slot.take_easy(multi));
        self.settle_timer();
        easy
    }

    pub(crate) fn is_in_flight(&self, id: TransferId) -> bool {
        self.transfers.borrow().contains_key(&id.0)
    }

    pub(crate) fn is_paused(&self, id: TransferId) -> bool {
        self.transfers
            .borrow()
            .get(&id.0)
            .is_some_and(|entry| entry.paused)
    }

    pub(crate) fn progress(&self, id: TransferId) -> Option<Progress> {
        self.transfers
            .borrow()
            .get(&id.0)
            .map(|entry| entry.slot.progress())
    }

    /// Pauses (`curl_easy_pause(CURLPAUSE_ALL)`) or resumes a transfer.
    ///
    /// On resume libcurl must run the transfer again although no socket event may ever come
    /// for it (what it received before the pause may already sit in its buffers): the
    /// binding arms libcurl's timer for the next iteration itself, whose timeout action runs
    /// every transfer due, the resumed one included. libcurl 7.88 asks for that timer itself
    /// (`Curl_update_timer` in `curl_easy_pause`), but only when the deadline differs from
    /// the last one it reported, so the kick is not left to it.
    pub(crate) fn set_paused(self: &Rc<Self>, id: TransferId, pause: bool) -> Result<(), Error> {
        let raw = {
            let mut transfers = self.transfers.borrow_mut();
            let entry = transfers
                .get_mut(&id.0)
                .ok_or(Error::NotInFlight { transfer: id })?;
            // A resume always reaches libcurl: the handler may have paused the transfer
            // itself (`WriteError::Pause`), which the table does not see.
            if pause && entry.paused {
                return Ok(());
            }
            entry.paused = pause;
            entry.slot.raw()
        };
        // SAFETY: `raw` is the easy handle of a transfer in the table, owned by its slot, which
        // only `end`, `cancel` and `shut_down` take out; none can run during this call (a
        // libcurl callback reaching them defers them, see `cancel` and `after_libcurl`).
        let paused = self.in_libcurl(|_multi| unsafe { ffi::set_paused(raw, pause) });
        if let Err(source) = paused {
            if let Some(entry) = self.transfers.borrow_mut().get_mut(&id.0) {
                entry.paused = false;
            }
            let what = if pause { "pausing" } else { "resuming" };
            return Err(Error::Easy { what, source });
        }
        if !pause {
            self.arm_timer(Duration::ZERO);
        }
        self.after_libcurl(Ok(0));
        Ok(())
    }

    // ---- libcurl's callbacks ----

    /// libcurl's socket callback: watch, re-watch or forget one socket.
    fn on_socket(self: &Rc<Self>, socket: Socket, what: SocketEvents) {
        if what.remove() {
            // Dropping the guard removes the watch now; libcurl closes the socket after this
            // returns, so the watch never outlives its fd (R53).
            let registered = self.sockets.borrow_mut().remove(&socket);
            if let Some(registered) = registered {
                registered.retire();
            }
            return;
        }
        if self.state.get() != State::Open {
            return;
        }
        let interest = interest(&what);
        if let Some(registered) = self.sockets.borrow().get(&socket) {
            // The same interest again is a no-op for the loop (R5).
            if let Err(error) = registered.guard.update(interest) {
                self.note_loop_error(error);
            }
            return;
        }
        let live = Rc::new(Cell::new(true));
        let hold = Hold {
            shared: Rc::downgrade(self),
            live: live.clone(),
        };
        // Thread-bound: it holds the client's `Rc` state (R42).
        let callback = WatchCallback::local(move |_id, fd, events| {
            if let Some(shared) = hold.shared.upgrade() {
                shared.on_ready(fd, events);
            }
        });
        match self.lp.watch(socket, interest, callback) {
            Ok(watch) => {
                let registered = Registered { guard: watch, live };
                self.sockets.borrow_mut().insert(socket, registered);
            }
            Err(rejected) => {
                live.set(false);
                let (error, callback) = rejected.into_parts();
                drop(callback);
                self.note_loop_error(error);
            }
        }
    }

    /// libcurl's timer callback: `None` deletes the timer, a delay (zero too) arms it once.
    fn on_timer_request(self: &Rc<Self>, delay: Option<Duration>) -> bool {
        if self.state.get() != State::Open {
            return true;
        }
        match delay {
            Some(delay) => self.arm_timer(delay),
            None => {
                self.timer_armed.set(false);
                let timer = self.timer.borrow();
                if let Some(registered) = timer.as_ref() {
                    if let Err(error) = registered.guard.update(Schedule::Disabled) {
                        drop(timer);
                        self.note_loop_error(error);
                        return true;
                    }
                }
                drop(timer);
                self.settle_timer();
            }
        }
        // Failures are handled here (`loop_error`), not by libcurl: on `false` libcurl 7.88
        // gives up on every transfer with a generic error.
        true
    }

    /// Arms libcurl's timer to fire once after `delay` (an update restarts the countdown,
    /// [R29](anyloop::contract#r29)), registering it if needed.
    fn arm_timer(self: &Rc<Self>, delay: Duration) {
        self.timer_armed.set(true);
        if let Some(registered) = self.timer.borrow().as_ref() {
            if let Err(error) = registered.guard.update(Schedule::Once(delay)) {
                self.note_loop_error(error);
            }
            return;
        }
        self.register_timer(Schedule::Once(delay));
    }

    fn register_timer(self: &Rc<Self>, schedule: Schedule) {
        let live = Rc::new(Cell::new(true));
        let hold = Hold {
            shared: Rc::downgrade(self),
            live: live.clone(),
        };
        let added = self.lp.timer_local(schedule, move |_id| {
            if let Some(shared) = hold.shared.upgrade() {
                shared.on_timeout();
            }
        });
        match added {
            Ok(timer) => *self.timer.borrow_mut() = Some(Registered { guard: timer, live }),
            Err(rejected) => {
                live.set(false);
                let (error, callback) = rejected.into_parts();
                drop(callback);
                self.note_loop_error(error);
            }
        }
    }

    /// The timer's registration follows what it is needed for: while libcurl's timeout is
    /// armed, and while a transfer is in flight (disabled then: its free is how the client
    /// learns that the loop was destroyed, even while every transfer is paused and no socket
    /// is watched). Otherwise it is removed, also after it fired once: libcurl 7.88 does not
    /// say "delete" (-1) after its last timeout, and a fired [`Schedule::Once`] timer stays
    /// registered until removed ([R27](anyloop::contract#r27)), so without this an idle
    /// client would keep a timer on the loop for good.
    fn settle_timer(self: &Rc<Self>) {
        if self.state.get() != State::Open {
            return;
        }
        let registered = self.timer.borrow().is_some();
        if self.timer_armed.get() || self.in_flight.get() > 0 {
            if !registered {
                self.register_timer(Schedule::Disabled);
            }
        } else if registered {
            let timer = self.timer.borrow_mut().take();
            if let Some(timer) = timer {
                timer.retire();
            }
        }
    }

    fn note_loop_error(&self, error: anyloop::Error) {
        tracing::warn!(%error, "the loop refused a registration libcurl asked for");
        self.loop_error.borrow_mut().get_or_insert(error);
    }

    // ---- The loop's callbacks ----

    /// A socket is ready: tell libcurl.
    fn on_ready(self: &Rc<Self>, fd: Socket, events: IoEvents) {
        let events = curl_events(events);
        let acted = self.in_libcurl(|multi| multi.action(fd, &events));
        self.after_libcurl(acted);
    }

    /// libcurl's timeout passed.
    fn on_timeout(self: &Rc<Self>) {
        // A fired `Once` timer is disabled (R27); libcurl re-arms it from the action if it
        // needs it again, else `settle_timer` removes it.
        self.timer_armed.set(false);
        let acted = self.in_libcurl(Multi::timeout);
        self.after_libcurl(acted);
    }

    /// After libcurl ran: deferred cancels, finished transfers, the loop's refusals,
    /// progress, the timer's registration; then the owners' calls, with no borrow held.
    ///
    /// Called from inside a libcurl callback (a handler pausing or resuming a transfer), it
    /// does nothing: libcurl refuses removals there, and the call that entered libcurl runs
    /// this when libcurl returns.
    fn after_libcurl(self: &Rc<Self>, acted: Result<u32, curl::MultiError>) {
        if self.in_libcurl.get() > 0 {
            return;
        }
        if let Err(error) = acted {
            // CURLM_BAD_SOCKET: libcurl had already let go of the socket (its watch was
            // removed in the same iteration). Nothing to do.
            tracing::debug!(%error, "libcurl's socket action");
        }
        let cancels = std::mem::take(&mut *self.deferred_cancels.borrow_mut());
        for id in cancels {
            let _ = self.cancel(TransferId(id));
        }
        let mut finished = Vec::new();
        self.multi.messages(|message| {
            if let (Ok(token), Some(result)) = (message.token(), message.result()) {
                finished.push((token as u64, result));
            }
        });
        let mut ended = Vec::with_capacity(finished.len());
        for (id, result) in finished {
            let transfer = TransferId(id);
            let result = result.map_err(|source| Error::Curl { transfer, source });
            if let Some(end) = self.end(transfer, result) {
                ended.push(end);
            }
        }
        let loop_error = self.loop_error.borrow_mut().take();
        if let Some(error) = loop_error {
            match Error::from_loop("watching libcurl's sockets", error) {
                Error::LoopGone => {
                    self.deliver(ended);
                    self.loop_gone();
                    return;
                }
                // Without its watch or timer a transfer would hang until its own timeout:
                // which one needed it is unknown, so every transfer in flight is failed.
                error => ended.extend(self.end_all(&error)),
            }
        }
        if self.progress_listened.load(Ordering::Relaxed) {
            self.report_progress();
        }
        self.settle_timer();
        self.deliver(ended);
        if self.close_pending.replace(false) {
            self.shut_down(&Error::Closed);
        }
    }

    /// Takes a transfer out of the table and out of libcurl.
    fn end(&self, id: TransferId, result: Result<(), Error>) -> Option<Ended> {
        let entry = self.transfers.borrow_mut().remove(&id.0)?;
        self.in_flight.set(self.in_flight.get() - 1);
        self.count(|c| {
            if result.is_ok() {
                c.completed += 1;
            } else {
                c.failed += 1;
            }
        });
        Some(self.in_libcurl(|multi| entry.slot.end(multi, id, result)))
    }

    /// Ends every transfer in flight with `error`.
    fn end_all(&self, error: &Error) -> Vec<Ended> {
        let ids: Vec<u64> = self.transfers.borrow().keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| self.end(TransferId(id), Err(error.clone())))
            .collect()
    }

    /// Reports the transfers whose byte counts changed, each at most once per interval.
    fn report_progress(&self) {
        let now = Instant::now();
        let interval = self.config.progress_interval;
        let mut reports = Vec::new();
        for (id, entry) in self.transfers.borrow_mut().iter_mut() {
            if entry
                .reported_at
                .is_some_and(|at| now.duration_since(at) < interval)
            {
                continue;
            }
            let progress = entry.slot.progress();
            // Bytes moved, not totals learnt: a total comes with the first bytes anyway.
            let moved = (progress.downloaded, progress.uploaded)
                != (entry.reported.downloaded, entry.reported.uploaded);
            if moved {
                entry.reported = progress;
                entry.reported_at = Some(now);
                reports.push(TransferProgress {
                    transfer: TransferId(*id),
                    progress,
                });
            }
        }
        for report in reports {
            self.events.emit(report);
        }
    }

    /// Reports ended transfers and makes their owners' calls; a panic in one of them does
    /// not lose the others (it is resumed after them, for the loop to report, R54).
    fn deliver(&self, ended: Vec<Ended>) {
        let mut first_panic = None;
        for end in ended {
            self.events.emit(end.event);
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(end.deliver)) {
                first_panic.get_or_insert(payload);
            }
        }
        if let Some(payload) = first_panic {
            panic::resume_unwind(payload);
        }
    }

    // ---- Closing ----

    /// Closes the client: every transfer in flight ends with [`Error::Closed`], nothing of it
    /// stays on the loop.
    pub(crate) fn close(&self) {
        if self.state.replace(State::Closed) != State::Open {
            return;
        }
        if self.in_libcurl.get() > 0 {
            // From a libcurl callback: libcurl would refuse to let go of the easy handles,
            // one of which it is using; right after it returns instead (`after_libcurl`).
            self.close_pending.set(true);
            return;
        }
        self.shut_down(&Error::Closed);
    }

    /// The loop was destroyed (a free we did not ask for): every transfer ends with
    /// [`Error::LoopGone`].
    pub(crate) fn loop_gone(&self) {
        if self.state.get() != State::Open {
            return;
        }
        self.state.set(State::LoopGone);
        tracing::debug!("the loop under a curl client was destroyed");
        self.shut_down(&Error::LoopGone);
    }

    fn shut_down(&self, error: &Error) {
        // Watches first: libcurl closes the sockets of the transfers it drops.
        let sockets = std::mem::take(&mut *self.sockets.borrow_mut());
        for (_, registered) in sockets {
            registered.retire();
        }
        let timer = self.timer.borrow_mut().take();
        if let Some(timer) = timer {
            timer.retire();
        }
        self.timer_armed.set(false);
        self.deferred_cancels.borrow_mut().clear();
        let ended = self.end_all(error);
        self.deliver(ended);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last `Client` went: the same as `close`, then the registry's callbacks are
        // freed. The owners' calls cannot reach the client any more (its `Weak`s are dead).
        self.close();
        let _ = self.events.close();
    }
}

/// A multi handle whose socket and timer callbacks reach `shared` on the loop's thread.
///
/// The `curl` crate takes `Send` closures for both, although libcurl only calls them from
/// inside the multi calls the client makes, on the loop's thread. They hold the client's
/// state, which is not `Send` (an `Rc`), inside an [`anyloop::ThreadBound`]: `Send` whatever
/// it holds, reachable and dropped only on the thread that made it, and no `unsafe impl
/// Send` is needed.
fn multi_for(shared: &Weak<Shared>, config: &Config) -> Result<Multi, Error> {
    let mut multi = Multi::new();
    let setup = |what: &'static str| move |source| Error::Multi { op: what, source };
    let mut on_socket = ThreadBound::new(shared.clone());
    multi
        .socket_function(move |socket, what, _token| {
            on_socket.with_mut(|shared| {
                if let Some(shared) = shared.upgrade() {
                    shared.on_socket(socket, what);
                }
            });
        })
        .map_err(setup("setting CURLMOPT_SOCKETFUNCTION"))?;
    let mut on_timer = ThreadBound::new(shared.clone());
    multi
        .timer_function(move |delay| {
            on_timer
                .with_mut(|shared| {
                    shared
                        .upgrade()
                        .is_none_or(|shared| shared.on_timer_request(delay))
                })
                .unwrap_or(false)
        })
        .map_err(setup("setting CURLMOPT_TIMERFUNCTION"))?;
    if let Some(limit) = config.max_total_connections {
        multi
            .set_max_total_connections(limit)
            .map_err(setup("setting CURLMOPT_MAX_TOTAL_CONNECTIONS"))?;
    }
    if let Some(limit) = config.max_host_connections {
        multi
            .set_max_host_connections(limit)
            .map_err(setup("setting CURLMOPT_MAX_HOST_CONNECTIONS"))?;
    }
    if let Some(limit) = config.max_connects {
        multi
            .set_max_connects(limit)
            .map_err(setup("setting CURLMOPT_MAXCONNECTS"))?;
    }
    Ok(multi)
}
