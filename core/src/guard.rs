//! RAII guards: a watch or timer that removes itself when dropped.

use std::fmt;
use std::os::fd::RawFd;

use crate::error::Result;
use crate::events::IoEvents;
use crate::handle::Loop;
use crate::id::{TimerId, WatchId};
use crate::vtable::Schedule;

/// An fd watch that is removed when this guard is dropped. Made by [`Loop::watch`].
///
/// Drop the guard *before* closing the fd (contract [R53](crate::contract#r53)). The removal follows the vtable's
/// rules: the callback is not started again, and its free runs later on the loop thread.
#[must_use = "dropping the guard removes the watch at once"]
pub struct Watch {
    lp: Loop,
    id: WatchId,
    fd: RawFd,
    /// False once `remove` or `into_id` took over, so `Drop` leaves the id alone.
    armed: bool,
}

impl Watch {
    pub(crate) fn from_parts(lp: Loop, id: WatchId, fd: RawFd) -> Self {
        Watch {
            lp,
            id,
            fd,
            armed: true,
        }
    }

    /// The watch's id.
    pub fn id(&self) -> WatchId {
        self.id
    }

    /// The watched fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The loop the watch lives on.
    pub fn event_loop(&self) -> &Loop {
        &self.lp
    }

    /// Changes the interest; an empty set pauses the watch ([R6](crate::contract#r6)).
    ///
    /// # Errors
    /// As [`Backend::update_watch`](crate::Backend::update_watch).
    pub fn update(&self, events: IoEvents) -> Result<()> {
        self.lp.update_watch(self.id, events)
    }

    /// Removes the watch now and reports the outcome (dropping the guard ignores it).
    ///
    /// # Errors
    /// As [`Backend::remove_watch`](crate::Backend::remove_watch).
    pub fn remove(mut self) -> Result<()> {
        self.armed = false;
        self.lp.remove_watch(self.id)
    }

    /// Gives up the guard and returns the id; the watch then stays until removed by id.
    pub fn into_id(mut self) -> WatchId {
        self.armed = false;
        self.id
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.armed {
            // Already removed by id, or the loop is gone: nothing left to undo.
            let _ = self.lp.remove_watch(self.id);
        }
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("id", &self.id)
            .field("fd", &self.fd)
            .finish()
    }
}

/// A timer that is removed when this guard is dropped. Made by [`Loop::timer`].
#[must_use = "dropping the guard removes the timer at once"]
pub struct Timer {
    lp: Loop,
    id: TimerId,
    /// False once `remove` or `into_id` took over, so `Drop` leaves the id alone.
    armed: bool,
}

impl Timer {
    pub(crate) fn from_parts(lp: Loop, id: TimerId) -> Self {
        Timer {
            lp,
            id,
            armed: true,
        }
    }

    /// The timer's id.
    pub fn id(&self) -> TimerId {
        self.id
    }

    /// The loop the timer lives on.
    pub fn event_loop(&self) -> &Loop {
        &self.lp
    }

    /// Sets a new schedule and restarts the countdown ([R29](crate::contract#r29));
    /// [`Schedule::Disabled`] disables the timer.
    ///
    /// # Errors
    /// As [`Backend::update_timer`](crate::Backend::update_timer).
    pub fn update(&self, schedule: Schedule) -> Result<()> {
        self.lp.update_timer(self.id, schedule)
    }

    /// The timer's schedule now: [`Schedule::Disabled`] once a [`Schedule::Once`] timer fired.
    ///
    /// # Errors
    /// As [`Backend::timer_schedule`](crate::Backend::timer_schedule).
    pub fn schedule(&self) -> Result<Schedule> {
        self.lp.timer_schedule(self.id)
    }

    /// Whether the timer will fire again without an update (false once a
    /// [`Schedule::Once`] timer fired, and for a removed timer or a gone loop).
    pub fn is_enabled(&self) -> bool {
        self.schedule().is_ok_and(Schedule::is_enabled)
    }

    /// Removes the timer now and reports the outcome (dropping the guard ignores it).
    ///
    /// # Errors
    /// As [`Backend::remove_timer`](crate::Backend::remove_timer).
    pub fn remove(mut self) -> Result<()> {
        self.armed = false;
        self.lp.remove_timer(self.id)
    }

    /// Gives up the guard and returns the id; the timer then stays until removed by id.
    pub fn into_id(mut self) -> TimerId {
        self.armed = false;
        self.id
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.lp.remove_timer(self.id);
        }
    }
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer").field("id", &self.id).finish()
    }
}
