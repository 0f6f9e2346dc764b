//! One adapter for every anyloop backend: the contender operations go through the vtable
//! (`anyloop::Loop`, an `Arc<dyn Backend>`), exactly as a library would call them. A backend
//! only supplies a [`Driver`]: how to make it, run one iteration, and count pending frees.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::time::Duration;

use anyloop::{IoEvents, Loop, TimerId};

use crate::contender::{oneshot_fired, xt_fired, Contender};

/// What the adapter needs from an anyloop backend beyond the vtable.
pub trait Driver {
    /// Creates the backend on the calling thread.
    fn make() -> Self;
    /// The vtable handle libraries would store.
    fn handle(&self) -> Loop;
    /// One iteration; `None` blocks until something is ready.
    fn run_once(&mut self, timeout: Option<Duration>);
    /// Removed callbacks whose free (drop) has not run yet.
    fn pending_frees(&self) -> usize;
}

thread_local! {
    /// The loop of the contender living on this thread. One-shots remove themselves through
    /// it, as a library callback would through the `Loop` it stored, without paying an `Arc`
    /// clone per timer in the harness.
    static CURRENT: RefCell<Option<Loop>> = const { RefCell::new(None) };
}

fn with_current(f: impl FnOnce(&Loop)) {
    CURRENT.with(|slot| {
        f(slot
            .borrow()
            .as_ref()
            .expect("no anyloop contender on this thread"))
    });
}

/// An anyloop backend seen as a [`Contender`].
pub struct Anyloop<D: Driver> {
    driver: D,
    lp: Loop,
}

impl<D: Driver> Drop for Anyloop<D> {
    fn drop(&mut self) {
        // Do not keep the backend alive (through its `Arc`) past its owner.
        CURRENT.with(|slot| slot.borrow_mut().take());
    }
}

impl<D: Driver> Contender for Anyloop<D> {
    type Timer = TimerId;

    const HAS_REGISTRY: bool = true;

    fn event_loop(&self) -> Option<Loop> {
        Some(self.lp.clone())
    }

    fn make() -> Self {
        let driver = D::make();
        let lp = driver.handle();
        CURRENT.with(|slot| *slot.borrow_mut() = Some(lp.clone()));
        Anyloop { driver, lp }
    }

    fn watch_add(&mut self, fd: RawFd, mut cb: impl FnMut(RawFd) + Send + 'static) {
        self.lp
            .add_watch(fd, IoEvents::READABLE, move |_id, fd, _events| cb(fd))
            .map_err(|rejected| rejected.error)
            .expect("add_watch");
    }

    fn run_once(&mut self) {
        self.driver.run_once(None);
    }

    fn timer_add(&mut self, after: Duration, cb: fn()) -> TimerId {
        // The closure captures one pointer, like libvirt's opaque: its box is a real allocation.
        self.lp
            .add_timer(Some(after), move |_id| cb())
            .map_err(|rejected| rejected.error)
            .expect("add_timer")
    }

    fn timer_update(&mut self, timer: TimerId, after: Duration) {
        self.lp
            .update_timer(timer, Some(after))
            .expect("update_timer");
    }

    fn timer_remove(&mut self, timer: TimerId) {
        self.lp.remove_timer(timer).expect("remove_timer");
    }

    fn timer_drain(&mut self) {
        // Frees are deferred to the loop (contract R21): iterate without blocking until none
        // is pending.
        while self.driver.pending_frees() > 0 {
            self.driver.run_once(Some(Duration::ZERO));
        }
    }

    fn oneshot0(&mut self) {
        // Zero-interval timers fire on every iteration (R27): a one-shot removes itself.
        let cb = oneshot_fired as fn();
        self.lp
            .add_timer(Some(Duration::ZERO), move |id| {
                cb();
                with_current(|lp| lp.remove_timer(id).expect("one-shot removes itself"));
            })
            .map_err(|rejected| rejected.error)
            .expect("add_timer(0)");
    }

    fn xt_variants() -> &'static [&'static str] {
        &["add_timeout0", "update_timeout0"]
    }

    fn xt_setup(&mut self, variant: usize) -> Box<dyn FnMut() + Send> {
        let lp = self.lp.clone();
        match Self::xt_variants()[variant] {
            // libvirt's pattern from a foreign thread: a fresh 0 ms timeout that removes
            // itself once it ran.
            "add_timeout0" => Box::new(move || {
                lp.add_timer(Some(Duration::ZERO), |id| {
                    xt_fired();
                    with_current(|lp| lp.remove_timer(id).expect("remove"));
                })
                .map_err(|rejected| rejected.error)
                .expect("add_timer(0) from the other thread");
            }),
            // libvirt's event-queue pattern: a disabled timer set to 0 ms by the other
            // thread, disabled again by its own callback.
            "update_timeout0" => {
                let id = lp
                    .add_timer(None, |id| {
                        // Disable first, then report: reporting first lets the sender's next
                        // arm land before the disable, which would then undo it.
                        with_current(|lp| lp.update_timer(id, None).expect("disable"));
                        xt_fired();
                    })
                    .map_err(|rejected| rejected.error)
                    .expect("add_timer(disabled)");
                Box::new(move || {
                    lp.update_timer(id, Some(Duration::ZERO))
                        .expect("update_timer(0) from the other thread")
                })
            }
            other => unreachable!("unknown W3 variant {other}"),
        }
    }
}
