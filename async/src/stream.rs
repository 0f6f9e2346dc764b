//! A registry's events as a [`Stream`](futures_core::Stream).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use anyloop::registry::Listen;
use anyloop::{CallbackId, Event, EventSet, Loop, Registry, Result};

use crate::sched;

/// What the registry callback shares with the stream.
struct Queue<T> {
    items: RefCell<VecDeque<T>>,
    waker: RefCell<Option<Waker>>,
    /// The callback was freed: the registry closed (or dropped it).
    ended: Cell<bool>,
}

impl<T> Queue<T> {
    fn wake(&self) {
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Owned by the registry callback: its drop is the callback's free.
struct OnFree<T>(Rc<Queue<T>>);

impl<T> Drop for OnFree<T> {
    fn drop(&mut self) {
        self.0.ended.set(true);
        self.0.wake();
    }
}

/// Every event of type `E` of `registry`, cloned, as a [`Stream`](futures_core::Stream):
/// see [`EventStream`].
///
/// # Errors
/// As [`Registry::on_local`]: [`WrongThread`](anyloop::Error::WrongThread) off the registry's loop
/// thread, [`Closed`](anyloop::Error::Closed) after close, [`LoopGone`](anyloop::Error::LoopGone).
pub fn events<E, S>(registry: &Registry<S>) -> Result<EventStream<E>>
where
    S: EventSet,
    E: Event<S> + Clone,
{
    events_with(registry, |listen| listen, E::clone)
}

/// The events of type `E` of `registry` that a [`Listen`] registration selects (`listen`
/// configures it: an object filter, a predicate), turned into items by `map` (which runs on
/// the loop thread, with the event borrowed), as a [`Stream`](futures_core::Stream): see
/// [`EventStream`].
///
/// ```
/// use anyloop::Runner;
///
/// #[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// pub struct Job(pub u32);
/// pub struct Progress { pub job: Job, pub percent: u8 }
/// pub struct Closing;
///
/// anyloop::event_set! {
///     /// What a job runner reports.
///     pub enum JobEvent {
///         kind: JobKind,
///         key: Job,
///         /// A job advanced.
///         Progress(Progress) => job,
///         /// The runner closes.
///         Closing(Closing),
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut event_loop = anyloop_select::SelectLoop::new()?;
/// let registry: anyloop::Registry<JobEvent> = anyloop::Registry::with_loop(event_loop.handle())?;
/// let mut job2 = anyloop_async::events_with(
///     &registry,
///     |listen| listen.object(Job(2)),
///     |p: &Progress| p.percent,
/// )?;
/// for percent in [10, 50, 100] {
///     registry.emit(Progress { job: Job(1), percent: 1 }); // another job: filtered out
///     registry.emit(Progress { job: Job(2), percent });     // emit may run on any thread
/// }
/// let seen = anyloop_async::block_on(&mut event_loop, async {
///     let mut seen = Vec::new();
///     while let Some(percent) = job2.next().await {
///         seen.push(percent);
///         if percent == 100 {
///             registry.close()?; // the stream ends once the registry closed
///         }
///     }
///     Ok::<_, anyloop::Error>(seen)
/// })??;
/// assert_eq!(seen, [10, 50, 100]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`events`].
pub fn events_with<S, E, T>(
    registry: &Registry<S>,
    listen: impl for<'r> FnOnce(Listen<'r, S, E>) -> Listen<'r, S, E>,
    mut map: impl FnMut(&E) -> T + 'static,
) -> Result<EventStream<T>>
where
    S: EventSet,
    E: Event<S>,
    T: 'static,
{
    let lp = registry.event_loop().clone();
    let weak = registry.downgrade();
    let queue = Rc::new(Queue {
        items: RefCell::new(VecDeque::new()),
        waker: RefCell::new(None),
        ended: Cell::new(false),
    });
    let hold = OnFree(Rc::clone(&queue));
    let home = lp.clone();
    let id = listen(registry.listen::<E>())
        .call_local(move |event: &E| {
            let queue = &hold.0;
            sched::dispatch(&home, || {
                queue.items.borrow_mut().push_back(map(event));
                queue.wake();
            })
        })
        .map_err(|rejected| sched::refine(&lp, rejected.into_parts().0))?;
    Ok(EventStream {
        queue,
        lp,
        deregister: Some(Box::new(move || {
            if let Some(registry) = weak.upgrade() {
                // NotFound: already closed, which dropped the callback.
                let _ = registry.deregister(id);
            }
        })),
        id,
    })
}

/// A registry's events as a [`Stream`](futures_core::Stream), made by [`events`] or
/// [`events_with`].
///
/// It is one thread-bound registry callback ([`Listen::call_local`]) that queues each
/// delivered event and wakes the stream's task:
///
/// - items come in emit order, exactly the events the registry delivers to that callback
///   ([E5](anyloop::contract#e5)–[E9](anyloop::contract#e9)): those emitted after the stream
///   was made, on the loop thread;
/// - the stream **ends** (`None`) once the registry is closed ([`Registry::close`], or every
///   handle dropped), after the items queued before, or once its loop is destroyed;
/// - dropping it deregisters the callback; the queue is unbounded (the registry's is too), so
///   a stream nobody polls keeps what it was given.
///
/// Without `futures-util`, [`next`](Self::next) awaits the next item.
pub struct EventStream<T> {
    queue: Rc<Queue<T>>,
    lp: Loop,
    deregister: Option<Box<dyn FnOnce()>>,
    id: CallbackId,
}

impl<T> EventStream<T> {
    /// The next item, or `None` once the stream ended.
    pub async fn next(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The registry callback's id.
    pub fn id(&self) -> CallbackId {
        self.id
    }

    /// Items delivered and not taken yet.
    pub fn queued(&self) -> usize {
        self.queue.items.borrow().len()
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(item) = self.queue.items.borrow_mut().pop_front() {
            return Poll::Ready(Some(item));
        }
        if self.queue.ended.get() {
            return Poll::Ready(None);
        }
        let mut slot = self.queue.waker.borrow_mut();
        let repoll = match &mut *slot {
            Some(waker) if waker.will_wake(cx.waker()) => true,
            other => {
                *other = Some(cx.waker().clone());
                false
            }
        };
        drop(slot);
        // Polled again with nothing new: is the loop still there? (Its flush timer, and so
        // every delivery, went with it.)
        if repoll && !self.lp.is_alive() {
            self.queue.ended.set(true);
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl<T> futures_core::Stream for EventStream<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_item(cx)
    }
}

impl<T> Drop for EventStream<T> {
    fn drop(&mut self) {
        let waker = self.queue.waker.borrow_mut().take();
        drop(waker); // never called after the stream is gone
        if let Some(deregister) = self.deregister.take() {
            deregister();
        }
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("id", &self.id)
            .field("queued", &self.queued())
            .field("ended", &self.queue.ended.get())
            .finish()
    }
}
