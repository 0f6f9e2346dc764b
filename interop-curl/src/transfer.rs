//! A transfer's handle ([`Transfer`]) and its future ([`Fetch`]).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use curl::easy::{Easy2, Handler};

use crate::client::Client;
use crate::error::{Error, Failed, Result};
use crate::events::{Progress, TransferId};
use crate::shared::{Shared, State};
use crate::slot::Outcome;

/// A transfer in flight, owned: dropping it cancels the transfer.
///
/// Cancelling removes the easy handle from libcurl's multi handle at once (libcurl closes
/// the connection if the transfer was under way), drops the owner's `done` callback without
/// calling it, and leaves nothing of the transfer on the loop. [`detach`](Self::detach) gives
/// the handle up and lets the transfer run to its end. Made by [`Client::start`]; a
/// [`Fetch`] holds one.
#[must_use = "dropping a Transfer cancels it; call `detach()` to let it run"]
pub struct Transfer<H> {
    shared: Weak<Shared>,
    id: TransferId,
    /// False once detached or cancelled: `Drop` leaves the transfer alone.
    owned: bool,
    _handler: PhantomData<fn() -> H>,
}

impl<H: 'static> Transfer<H> {
    pub(crate) fn new(shared: &Rc<Shared>, id: TransferId) -> Self {
        Transfer {
            shared: Rc::downgrade(shared),
            id,
            owned: true,
            _handler: PhantomData,
        }
    }

    /// The transfer's id, as its events name it.
    pub fn id(&self) -> TransferId {
        self.id
    }

    fn shared(&self) -> Result<Rc<Shared>> {
        let shared = self.shared.upgrade().ok_or(Error::Closed)?;
        match shared.state() {
            State::Open => Ok(shared),
            State::Closed => Err(Error::Closed),
            State::LoopGone => Err(Error::LoopGone),
        }
    }

    /// Pauses the transfer in both directions (`curl_easy_pause(CURLPAUSE_ALL)`): libcurl
    /// stops reading and writing its socket (so the loop stops watching it) until
    /// [`resume`](Self::resume). Its timeouts still run. Pausing a paused transfer does
    /// nothing.
    ///
    /// # Errors
    /// [`Error::NotInFlight`] once it ended, [`Error::Closed`], [`Error::LoopGone`],
    /// [`Error::Easy`] when libcurl refuses.
    pub fn pause(&self) -> Result<()> {
        self.shared()?.set_paused(self.id, true)
    }

    /// Resumes a paused transfer (`curl_easy_pause(CURLPAUSE_CONT)`), paused by
    /// [`pause`](Self::pause) or by its own handler (a `write` that returned
    /// `WriteError::Pause`), and makes sure libcurl runs it in the next loop iteration even
    /// if its socket has nothing new (what it held back while paused may be all there is).
    ///
    /// # Errors
    /// As [`pause`](Self::pause).
    pub fn resume(&self) -> Result<()> {
        self.shared()?.set_paused(self.id, false)
    }

    /// Whether the transfer is paused by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.shared().is_ok_and(|shared| shared.is_paused(self.id))
    }

    /// Bytes moved so far and the totals when known; `None` once the transfer ended.
    pub fn progress(&self) -> Option<Progress> {
        self.shared().ok()?.progress(self.id)
    }

    /// True once the transfer ended (its `done` call was made or is being made) or was
    /// cancelled, or its client closed.
    pub fn is_finished(&self) -> bool {
        self.shared()
            .map_or(true, |shared| !shared.is_in_flight(self.id))
    }

    /// Cancels the transfer now and returns its easy handle (`None` when it had already
    /// ended, or libcurl did not let go of it). A transfer cancelled from inside one of
    /// libcurl's callbacks (its handler's `write`, say) is removed right after libcurl
    /// returns, and its handle is dropped then.
    pub fn cancel(mut self) -> Option<Easy2<H>> {
        self.owned = false;
        let shared = self.shared.upgrade()?;
        let easy = shared.cancel(self.id)?;
        easy.downcast::<Easy2<H>>().ok().map(|easy| *easy)
    }

    /// Lets the transfer run to its end without this handle; its `done` call is still made.
    pub fn detach(mut self) {
        self.owned = false;
    }
}

impl<H> Drop for Transfer<H> {
    fn drop(&mut self) {
        if self.owned {
            if let Some(shared) = self.shared.upgrade() {
                drop(shared.cancel(self.id));
            }
        }
    }
}

impl<H> fmt::Debug for Transfer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transfer")
            .field("id", &self.id)
            .field("owned", &self.owned)
            .finish()
    }
}

/// Where a transfer's outcome waits for its [`Fetch`].
struct Mailbox<H> {
    outcome: RefCell<Option<Outcome<H>>>,
    waker: RefCell<Option<Waker>>,
}

/// A transfer as a future ([`Client::fetch`]): its easy handle once libcurl completed it, or
/// [`Failed`] with the error and the handle.
///
/// The transfer starts when `fetch` is called, not at the first poll. Dropping the future
/// cancels it (as dropping a [`Transfer`]). When the loop is destroyed or the client closed,
/// the future resolves to [`Error::LoopGone`] or [`Error::Closed`]: polled by any executor
/// after that, it is ready at once.
#[must_use = "a Fetch does nothing useful unless awaited; dropping it cancels the transfer"]
pub struct Fetch<H> {
    transfer: Option<Transfer<H>>,
    refused: Option<Failed<H>>,
    mailbox: Rc<Mailbox<H>>,
}

impl<H: Handler + 'static> Fetch<H> {
    pub(crate) fn start(client: &Client, easy: Easy2<H>) -> Self {
        let mailbox = Rc::new(Mailbox {
            outcome: RefCell::new(None),
            waker: RefCell::new(None),
        });
        let post = mailbox.clone();
        let started = client.start(easy, move |outcome| {
            *post.outcome.borrow_mut() = Some(outcome);
            let waker = post.waker.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        });
        let (transfer, refused) = match started {
            Ok(transfer) => (Some(transfer), None),
            Err(failed) => (None, Some(failed)),
        };
        Fetch {
            transfer,
            refused,
            mailbox,
        }
    }
}

impl<H: 'static> Fetch<H> {
    /// The transfer's handle (pause, resume, progress, id); `None` when the client refused
    /// to start it (the future then resolves to that error).
    pub fn transfer(&self) -> Option<&Transfer<H>> {
        self.transfer.as_ref()
    }
}

impl<H: 'static> Future for Fetch<H> {
    type Output = std::result::Result<Easy2<H>, Failed<H>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(failed) = self.refused.take() {
            return Poll::Ready(Err(failed));
        }
        let outcome = self.mailbox.outcome.borrow_mut().take();
        match outcome {
            Some(outcome) => {
                if let Some(transfer) = self.transfer.take() {
                    transfer.detach(); // it ended: nothing to cancel
                }
                Poll::Ready(outcome)
            }
            None => {
                if self.transfer.is_none() {
                    panic!("Fetch polled after it returned its output");
                }
                *self.mailbox.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<H> fmt::Debug for Fetch<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetch")
            .field("transfer", &self.transfer.as_ref().map(|t| t.id))
            .field("refused", &self.refused.as_ref().map(Failed::error))
            .field("ready", &self.mailbox.outcome.borrow().is_some())
            .finish()
    }
}
