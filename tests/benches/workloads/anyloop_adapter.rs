//! One adapter for every anyloop backend: the contender operations go through the vtable
//! (`anyloop::Loop`, an `Arc<dyn Backend>`), exactly as a library would call them, and the
//! loop is made by `anyloop_backends::LoopChoice` and driven through `anyloop::Runner`, as an
//! application would. A backend only names its choice ([`Choice`]).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::time::Duration;

use anyloop::{IoEvents, Loop, Runner, Schedule, TimerId};

use crate::backends::Choice;
use crate::contender::{oneshot_fired, xt_fired, Contender, Step};

thread_local! {
    /// The loop of the contender living on this thread. One-shots remove themselves through
    /// it, as a library callback would through the `Loop` it stored, without paying an `Arc`
    /// clone per timer in the harness.
    static CURRENT: RefCell<Option<Loop>> = const { RefCell::new(None) };
}

pub(crate) fn with_current(f: impl FnOnce(&Loop)) {
    CURRENT.with(|slot| {
        f(slot
            .borrow()
            .as_ref()
            .expect("no anyloop contender on this thread"))
    });
}

/// An anyloop backend seen as a [`Contender`].
pub struct Anyloop<C: Choice> {
    runner: Box<dyn Runner>,
    lp: Loop,
    choice: PhantomData<C>,
}

impl<C: Choice> Anyloop<C> {
    /// One iteration that does not block (W6: lets a backend apply lazy registrations).
    pub(crate) fn run_nonblocking(&mut self) {
        self.runner
            .run_once(Some(Duration::ZERO))
            .expect("run_once");
    }
}

impl<C: Choice> Drop for Anyloop<C> {
    fn drop(&mut self) {
        // Do not keep the backend alive (through its `Arc`) past its owner.
        CURRENT.with(|slot| slot.borrow_mut().take());
    }
}

impl<C: Choice> Contender for Anyloop<C> {
    type Timer = TimerId;

    const HAS_REGISTRY: bool = true;

    fn event_loop(&self) -> Option<Loop> {
        Some(self.lp.clone())
    }

    fn make() -> Self {
        let runner = C::CHOICE
            .create()
            .unwrap_or_else(|err| panic!("creating the {} loop: {err}", C::CHOICE));
        let lp = runner.handle();
        CURRENT.with(|slot| *slot.borrow_mut() = Some(lp.clone()));
        Anyloop {
            runner,
            lp,
            choice: PhantomData,
        }
    }

    fn watch_add(&mut self, fd: RawFd, mut cb: impl FnMut(RawFd) + Send + 'static) {
        self.lp
            .add_watch(fd, IoEvents::READABLE, move |_id, fd, _events| cb(fd))
            .map_err(anyloop::Error::from)
            .expect("add_watch");
    }

    fn io_watch_add(
        &mut self,
        fd: RawFd,
        interest: IoEvents,
        mut cb: impl FnMut(RawFd, IoEvents) -> Step + Send + 'static,
    ) {
        // A library keeps the interest it last asked for and calls `update_watch` when it
        // wants another (libcurl's socket callback, libdbus's toggled watch).
        let mut asked = interest;
        self.lp
            .add_watch(fd, interest, move |id, fd, events| {
                let step = cb(fd, events);
                if step.interest != asked {
                    asked = step.interest;
                    with_current(|lp| lp.update_watch(id, asked).expect("update_watch"));
                }
            })
            .map_err(anyloop::Error::from)
            .expect("add_watch");
    }

    fn run_once(&mut self) {
        self.runner.run_once(None).expect("run_once");
    }

    fn timer_add(&mut self, after: Duration, cb: fn()) -> TimerId {
        // The closure captures one pointer, like libvirt's opaque: its box is a real allocation.
        self.lp
            .add_timer(Schedule::Every(after), move |_id| cb())
            .map_err(anyloop::Error::from)
            .expect("add_timer")
    }

    fn timer_update(&mut self, timer: TimerId, after: Duration) {
        self.lp
            .update_timer(timer, Schedule::Every(after))
            .expect("update_timer");
    }

    fn timer_remove(&mut self, timer: TimerId) {
        self.lp.remove_timer(timer).expect("remove_timer");
    }

    fn timer_drain(&mut self) {
        // Frees are deferred to the loop (contract R21): iterate without blocking until none
        // is pending.
        while self.runner.stats().pending_frees > 0 {
            self.runner
                .run_once(Some(Duration::ZERO))
                .expect("run_once");
        }
    }

    fn oneshot0(&mut self) {
        // A one-shot fires once in the next iteration (R27) and removes itself, which frees it.
        let cb = oneshot_fired as fn();
        self.lp
            .add_timer(Schedule::Once(Duration::ZERO), move |id| {
                cb();
                with_current(|lp| lp.remove_timer(id).expect("one-shot removes itself"));
            })
            .map_err(anyloop::Error::from)
            .expect("add_timer(0)");
    }

    fn w6(kind: &str, n: usize) -> Option<f64> {
        Some(crate::w6::anyloop::<C>(kind, n))
    }

    fn w7c(p: &crate::measure::Params) -> Vec<crate::measure::Measure> {
        crate::w7c::anyloop::<C>(p)
    }

    fn xt_variants() -> &'static [&'static str] {
        &["add_timeout0", "update_timeout0"]
    }

    fn xt_setup(&mut self, variant: usize) -> Box<dyn FnMut() + Send> {
        let lp = self.lp.clone();
        match Self::xt_variants()[variant] {
            // libvirt's pattern from a foreign thread: a fresh 0 ms timeout that removes
            // itself once it ran (a one-shot: it fires once even before it is removed).
            "add_timeout0" => Box::new(move || {
                lp.add_timer(Schedule::Once(Duration::ZERO), |id| {
                    xt_fired();
                    with_current(|lp| lp.remove_timer(id).expect("remove"));
                })
                .map_err(anyloop::Error::from)
                .expect("add_timer(0) from the other thread");
            }),
            // libvirt's event-queue pattern: a disabled timer set to 0 ms by the other
            // thread, disabled again by its own callback.
            "update_timeout0" => {
                let id = lp
                    .add_timer(Schedule::Disabled, |id| {
                        // Disable first, then report: reporting first lets the sender's next
                        // arm land before the disable, which would then undo it.
                        with_current(|lp| {
                            lp.update_timer(id, Schedule::Disabled).expect("disable")
                        });
                        xt_fired();
                    })
                    .map_err(anyloop::Error::from)
                    .expect("add_timer(disabled)");
                Box::new(move || {
                    lp.update_timer(id, Schedule::EVERY_ITERATION)
                        .expect("update_timer(0) from the other thread")
                })
            }
            other => unreachable!("unknown W3 variant {other}"),
        }
    }
}
