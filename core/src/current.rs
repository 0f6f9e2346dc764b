//! Which loop code on this thread uses: the thread's bound loop, else the process default.
//!
//! The model of libvirt (`virEventRegisterImpl`: one process-wide implementation, installed
//! once) combined with libguestfs's per-thread main loops: a thread that runs its own loop
//! binds it, and objects created on that thread attach to it (contract [R7](crate::contract#r7), [R50](crate::contract#r50)).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::handle::Loop;

static DEFAULT_LOOP: OnceLock<Loop> = OnceLock::new();

thread_local! {
    static THREAD_LOOP: RefCell<Option<Loop>> = const { RefCell::new(None) };
}

/// Installs the process-wide default loop. It can be installed once per process.
///
/// # Errors
/// [`Error::AlreadyRegistered`] when a default is already installed; the first one stays
/// active ([R7](crate::contract#r7)).
pub fn set_default_loop(lp: Loop) -> Result<()> {
    DEFAULT_LOOP.set(lp).map_err(|_| Error::AlreadyRegistered {
        what: "a process default loop is already installed",
    })
}

/// The process-wide default loop, if one was installed.
pub fn default_loop() -> Option<Loop> {
    DEFAULT_LOOP.get().cloned()
}

/// Binds `lp` as this thread's current loop until the returned binding is dropped.
///
/// A thread has at most one current loop ([R50](crate::contract#r50)).
///
/// # Errors
/// [`Error::AlreadyRegistered`] when this thread already has a bound loop.
///
/// ```
/// # use anyloop::{bind_thread_loop, thread_loop};
/// # fn demo(lp: anyloop::Loop) -> anyloop::Result<()> {
/// let binding = bind_thread_loop(lp)?;
/// assert!(thread_loop().is_some());
/// drop(binding);
/// assert!(thread_loop().is_none());
/// # Ok(()) }
/// ```
pub fn bind_thread_loop(lp: Loop) -> Result<ThreadLoopBinding> {
    THREAD_LOOP.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_some() {
            return Err(Error::AlreadyRegistered {
                what: "a loop is already bound to this thread",
            });
        }
        *slot = Some(lp);
        Ok(ThreadLoopBinding {
            _same_thread: PhantomData,
        })
    })
}

/// The loop bound to this thread, if any.
pub fn thread_loop() -> Option<Loop> {
    THREAD_LOOP
        .try_with(|slot| slot.borrow().clone())
        .ok()
        .flatten()
}

pub(crate) fn lookup() -> Result<Loop> {
    thread_loop().or_else(default_loop).ok_or(Error::NoLoop)
}

/// Keeps a loop bound to the current thread; dropping it unbinds the loop.
///
/// Not `Send`: the binding belongs to the thread that made it.
#[must_use = "dropping the binding unbinds the loop at once"]
#[derive(Debug)]
pub struct ThreadLoopBinding {
    _same_thread: PhantomData<*const ()>,
}

impl Drop for ThreadLoopBinding {
    fn drop(&mut self) {
        // During thread teardown the slot may already be gone; then there is nothing to clear.
        let released = THREAD_LOOP.try_with(|slot| slot.borrow_mut().take());
        // Drop the loop handle outside the RefCell borrow, in case its drop re-enters lookup.
        drop(released);
    }
}
