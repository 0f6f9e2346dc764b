//! [`LoopBinding`]: the library's socket and timer callbacks implemented with anyloop.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::time::Duration;

use anyloop::{IoEvents, Loop, Schedule, Timer, Watch, WatchCallback};

use super::multi::{Multi, Poll, RawMulti, Ready, WeakMulti};

/// Runs a [`Multi`] on an anyloop [`Loop`]: one fd watch per socket the library asks for and
/// one timer for its timeout, all thread-bound.
///
/// The glue is what a C binding's would be (libcurl's `multi-uv.c` and `ghiper.c` examples,
/// libdbus's GLib integration): the library's socket callback adds, toggles and removes
/// watches; its timer callback arms, re-arms and disarms a [`Schedule::Once`] timer; the
/// watches call [`Multi::socket_action`] and the timer [`Multi::timeout_action`]. What is not
/// C-like is that nothing here is `unsafe`: the watch and timer callbacks capture the library
/// handle, which is not `Send`, and anyloop takes them as *thread-bound* callbacks
/// ([`WatchCallback::local`], [`Loop::timer_local`]): they only ever run, and are only ever
/// dropped, on the loop's thread ([R42](anyloop::contract#r42)). So the binding must be made
/// on that thread; elsewhere [`new`](Self::new) fails with
/// [`WrongThread`](anyloop::Error::WrongThread).
///
/// Each watch and the timer hold a strong handle on the library: it lives until the last of
/// them is freed, which happens on the loop's thread after their removal, so a socket is
/// never closed while it is watched ([R53](anyloop::contract#r53)). Dropping the binding
/// removes every watch and the timer; transfers still running then fail with
/// [`Outcome::Host`](super::Outcome::Host) at their next step.
pub struct LoopBinding {
    shared: Rc<Shared>,
}

/// What the library's callbacks reach, weakly (the library holds its callbacks).
struct Shared {
    lp: Loop,
    multi: WeakMulti,
    /// The library's one timeout.
    timer: Timer,
    /// One watch per socket the library asked for; dropping a guard removes its watch.
    watches: RefCell<HashMap<RawFd, Watch>>,
}

impl LoopBinding {
    /// Binds `multi` to `lp`: sets the library's socket and timer callbacks.
    ///
    /// # Errors
    /// [`WrongThread`](anyloop::Error::WrongThread) when this is not `lp`'s loop thread (or
    /// the backend cannot name it); [`LoopGone`](anyloop::Error::LoopGone) when the loop was
    /// destroyed. The library is left untouched then.
    pub fn new(lp: &Loop, multi: &Multi) -> anyloop::Result<LoopBinding> {
        // Thread-bound (it holds the library): this add is what fails off the loop's thread,
        // handing the callback back in `Rejected`, which `?` turns into the error.
        let timer = {
            let multi = multi.clone();
            lp.timer_local(Schedule::Disabled, move |_id| multi.timeout_action())?
        };
        let shared = Rc::new(Shared {
            lp: lp.clone(),
            multi: multi.downgrade(),
            timer,
            watches: RefCell::default(),
        });
        let weak = Rc::downgrade(&shared);
        multi.set_socket_function(move |raw, fd, what| on_binding(&weak)?.on_socket(raw, fd, what));
        let weak = Rc::downgrade(&shared);
        multi.set_timer_function(move |_raw, delay| on_binding(&weak)?.on_timer(delay));
        Ok(LoopBinding { shared })
    }

    /// The loop the library runs on.
    pub fn event_loop(&self) -> &Loop {
        &self.shared.lp
    }

    /// Sockets watched for the library now.
    pub fn watches(&self) -> usize {
        self.shared.watches.borrow().len()
    }
}

impl fmt::Debug for LoopBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopBinding")
            .field("watches", &self.watches())
            .field("timer", &self.shared.timer.schedule().ok())
            .finish_non_exhaustive()
    }
}

fn on_binding(weak: &Weak<Shared>) -> Result<Rc<Shared>, String> {
    weak.upgrade()
        .ok_or_else(|| "the anyloop binding was dropped".to_owned())
}

impl Shared {
    /// The library's socket callback.
    fn on_socket(&self, raw: RawMulti, fd: RawFd, what: Poll) -> Result<(), String> {
        let interest = match what {
            Poll::In => IoEvents::READABLE,
            Poll::Out => IoEvents::WRITABLE,
            Poll::InOut => IoEvents::READABLE | IoEvents::WRITABLE,
            Poll::Remove => {
                // Dropping the guard removes the watch now; its callback is freed later, on
                // this thread, by the loop. The library closes the fd after we return.
                self.watches.borrow_mut().remove(&fd);
                return Ok(());
            }
        };
        let mut watches = self.watches.borrow_mut();
        if let Some(watch) = watches.get(&fd) {
            return watch.update(interest).map_err(|err| err.to_string());
        }
        let multi = self.multi.upgrade().ok_or("the library is gone")?;
        // Captures the library handle (not `Send`): a thread-bound callback. The name shows up
        // in anyloop's traces and errors.
        let callback = WatchCallback::local(move |_id, fd, events: IoEvents| {
            multi.socket_action(fd, ready(events));
        })
        .named(format!("cstyle {raw:?} fd {fd}"));
        let watch = self
            .lp
            .watch(fd, interest, callback)
            .map_err(|rejected| rejected.error().to_string())?;
        watches.insert(fd, watch);
        Ok(())
    }

    /// The library's timer callback: a delay arms the timer once (an update restarts the
    /// countdown, [R29](anyloop::contract#r29)); `None` disarms it.
    fn on_timer(&self, delay: Option<Duration>) -> Result<(), String> {
        let schedule = delay.map_or(Schedule::Disabled, Schedule::Once);
        self.timer.update(schedule).map_err(|err| err.to_string())
    }
}

/// anyloop's events as the library's [`Ready`].
fn ready(events: IoEvents) -> Ready {
    Ready {
        readable: events.contains(IoEvents::READABLE),
        writable: events.contains(IoEvents::WRITABLE),
        error: events.intersects(IoEvents::ERROR | IoEvents::HANGUP),
    }
}
