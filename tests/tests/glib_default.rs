//! The battery on `anyloop-glib` on the **global default** `glib::MainContext` (the one a GTK
//! application's main thread iterates), driven by its owner thread.
//!
//! The kit creates every loop on a fresh thread of its own, and one process has one default
//! context, which only one thread can own at a time. So, in this binary:
//!
//! - scenarios take turns ([`DefaultContext::exclusive`] waits until the previous scenario's
//!   loops are all gone), so the default context is never shared between scenarios;
//! - the first loop a scenario creates is attached to the default context, and its loop
//!   thread *acquires* the context (`g_main_context_acquire`) for the loop's whole life, as a
//!   GTK main thread does: no other thread can iterate it meanwhile, so every callback and
//!   free runs on that thread;
//! - a second loop in the same scenario (the per-thread-loop scenarios,
//!   [R50](anyloop::contract#r50)) gets a private context of its own, as a worker thread of a GTK
//!   application would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyloop::{Error, Loop, Quitter, Result, Runner};
use anyloop_conformance::LoopFactory;
use anyloop_glib::GlibLoop;
use glib::translate::ToGlibPtr;
use glib::MainContext;

/// Whether a scenario is running in this process (its turn on the default context).
static BUSY: Mutex<bool> = Mutex::new(false);
static FREED: Condvar = Condvar::new();

/// A scenario's turn; released when the scenario's backend (and so all its loops) is gone.
struct Turn;

impl Drop for Turn {
    fn drop(&mut self) {
        *BUSY.lock().unwrap_or_else(PoisonError::into_inner) = false;
        FREED.notify_one();
    }
}

/// The backend of one scenario: its first loop on the default context, later ones private.
struct DefaultContext {
    claimed: AtomicBool,
    _turn: Turn,
}

impl DefaultContext {
    /// Waits for this scenario's turn: at most the kit's watchdog and a little more (a
    /// scenario that hung was failed by the watchdog and left behind with its loops, and
    /// never gives its turn back: the scenarios after it fail, saying so, instead of waiting
    /// for ever).
    fn exclusive() -> DefaultContext {
        let limit = anyloop_conformance::watchdog() + 2 * anyloop_conformance::TIMEOUT;
        let deadline = Instant::now() + limit;
        let mut busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "glib-default: the default main context was not given back within {limit:?}: \
                     an earlier scenario hung (its own failure says which) and still holds it"
                );
            }
            busy = FREED
                .wait_timeout(busy, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *busy = true;
        DefaultContext {
            claimed: AtomicBool::new(false),
            _turn: Turn,
        }
    }
}

impl LoopFactory for DefaultContext {
    fn name(&self) -> String {
        "glib-default".into()
    }

    fn create(&self) -> Result<Box<dyn Runner>> {
        if self.claimed.swap(true, Ordering::SeqCst) {
            // A worker thread's own context: `GlibLoop`'s `Runner` as it is.
            return Ok(Box::new(GlibLoop::new(&MainContext::new())?));
        }
        let context = MainContext::default();
        // SAFETY: `context` is a live GMainContext (the wrapper holds a reference). Acquiring
        // it makes this thread its owner until the matching release in `Drop`, which the kit
        // runs on this same thread (it destroys every loop on the thread that created it).
        let acquired = unsafe { glib::ffi::g_main_context_acquire(context.to_glib_none().0) };
        if acquired == glib::ffi::GFALSE {
            return Err(Error::AlreadyRegistered {
                what: "the default main context is owned by another thread",
            });
        }
        let lp = GlibLoop::new(&context)?;
        Ok(Box::new(Owned {
            lp: Some(lp),
            context,
        }))
    }
}

/// The loop on the default context, which this thread owns (acquired) for the loop's whole
/// life, as a GTK main thread does; everything else is `GlibLoop`'s own `Runner` (its
/// `run_once` is one iteration of the context).
struct Owned {
    lp: Option<GlibLoop>,
    context: MainContext,
}

impl Owned {
    fn lp(&self) -> &GlibLoop {
        self.lp.as_ref().expect("alive until drop")
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // Frees of the survivors run here, while this thread still owns the context.
        drop(self.lp.take());
        // SAFETY: releases the acquisition made in `create`, on the same thread.
        unsafe { glib::ffi::g_main_context_release(self.context.to_glib_none().0) };
    }
}

impl Runner for Owned {
    fn handle(&self) -> Loop {
        self.lp().handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        self.lp
            .as_mut()
            .expect("alive until drop")
            .run_once(timeout)
    }

    fn quitter(&self) -> Quitter {
        self.lp().quitter()
    }

    fn take_quit(&mut self) -> bool {
        self.lp.as_mut().expect("alive until drop").take_quit()
    }
}

anyloop_conformance::conformance_tests!(DefaultContext::exclusive());
