//! RAII guards: a watch or timer that removes itself when dropped.

use std::fmt;
use std::os::fd::RawFd;

use crate::error::Result;
use crate::events::IoEvents;
use crate::handle::Loop;
use crate::id::{HandleId, TimeoutId};
use crate::vtable::Interval;

/// An fd watch that is removed when this guard is dropped. Made by [`Loop::watch`].
///
/// Drop the guard *before* closing the fd (contract R53). The removal follows the vtable's
/// rules: the callback is not started again, and its free runs later on the loop thread.
#[must_use = "dropping the guard removes the watch at once"]
pub struct Watch {
    lp: Loop,
    id: HandleId,
    fd: RawFd,
    /// False once `remove` or `into_id` took over, so `Drop` leaves the id alone.
    armed: bool,
}

impl Watch {
    pub(crate) fn from_parts(lp: Loop, id: HandleId, fd: RawFd) -> Self {
        Watch {
            lp,
            id,
            fd,
            armed: true,
        }
    }

    /// The watch's id.
    pub fn id(&self) -> HandleId {
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

    /// Changes the interest; an empty set pauses the watch (R6).
    ///
    /// # Errors
    /// As [`EventLoop::update_handle`](crate::EventLoop::update_handle).
    pub fn set_interest(&self, events: IoEvents) -> Result<()> {
        self.lp.update_handle(self.id, events)
    }

    /// Removes the watch now and reports the outcome (dropping the guard ignores it).
    ///
    /// # Errors
    /// As [`EventLoop::remove_handle`](crate::EventLoop::remove_handle).
    pub fn remove(mut self) -> Result<()> {
        self.armed = false;
        self.lp.remove_handle(self.id)
    }

    /// Gives up the guard and returns the id; the watch then stays until removed by id.
    pub fn into_id(mut self) -> HandleId {
        self.armed = false;
        self.id
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.armed {
            // Already removed by id, or the loop is gone: nothing left to undo.
            let _ = self.lp.remove_handle(self.id);
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
    id: TimeoutId,
    /// False once `remove` or `into_id` took over, so `Drop` leaves the id alone.
    armed: bool,
}

impl Timer {
    pub(crate) fn from_parts(lp: Loop, id: TimeoutId) -> Self {
        Timer {
            lp,
            id,
            armed: true,
        }
    }

    /// The timer's id.
    pub fn id(&self) -> TimeoutId {
        self.id
    }

    /// The loop the timer lives on.
    pub fn event_loop(&self) -> &Loop {
        &self.lp
    }

    /// Sets a new interval and restarts the countdown (R29); `None` disables the timer.
    ///
    /// # Errors
    /// As [`EventLoop::update_timeout`](crate::EventLoop::update_timeout).
    pub fn set_interval(&self, interval: Interval) -> Result<()> {
        self.lp.update_timeout(self.id, interval)
    }

    /// Removes the timer now and reports the outcome (dropping the guard ignores it).
    ///
    /// # Errors
    /// As [`EventLoop::remove_timeout`](crate::EventLoop::remove_timeout).
    pub fn remove(mut self) -> Result<()> {
        self.armed = false;
        self.lp.remove_timeout(self.id)
    }

    /// Gives up the guard and returns the id; the timer then stays until removed by id.
    pub fn into_id(mut self) -> TimeoutId {
        self.armed = false;
        self.id
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.lp.remove_timeout(self.id);
        }
    }
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer").field("id", &self.id).finish()
    }
}
