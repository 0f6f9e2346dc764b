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
//! - a second loop in the same scenario (the per-thread-loop scenarios, R50) gets a private
//!   context of its own, as a worker thread of a GTK application would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use anyloop::{Error, Loop, LoopStats, Result};
use anyloop_conformance::{LoopFactory, LoopUnderTest, Quitter};
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
    /// Waits for this scenario's turn.
    fn exclusive() -> DefaultContext {
        let mut busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy {
            busy = FREED.wait(busy).unwrap_or_else(PoisonError::into_inner);
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

    fn create(&self) -> Result<Box<dyn LoopUnderTest>> {
        if self.claimed.swap(true, Ordering::SeqCst) {
            let context = MainContext::new();
            let lp = GlibLoop::new(&context)?;
            return Ok(Box::new(Driven {
                lp: Some(lp),
                context,
                owned: false,
            }));
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
        Ok(Box::new(Driven {
            lp: Some(lp),
            context,
            owned: true,
        }))
    }
}

/// The adapter: one `run_once` is one `GlibLoop::iterate` of the loop's context.
struct Driven {
    lp: Option<GlibLoop>,
    context: MainContext,
    owned: bool,
}

impl Driven {
    fn lp(&mut self) -> &mut GlibLoop {
        self.lp.as_mut().expect("alive until drop")
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        // Frees of the survivors run here, while this thread still owns the context.
        drop(self.lp.take());
        if self.owned {
            // SAFETY: releases the acquisition made in `create`, on the same thread.
            unsafe { glib::ffi::g_main_context_release(self.context.to_glib_none().0) };
        }
    }
}

impl LoopUnderTest for Driven {
    fn handle(&self) -> Loop {
        self.lp.as_ref().expect("alive until drop").handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        if self.owned {
            return self.lp().iterate(timeout);
        }
        let context = self.context.clone();
        let lp = self.lp();
        context
            .with_thread_default(|| lp.iterate(timeout))
            .expect("the loop thread owns its private context")
    }

    fn run(&mut self) -> Result<()> {
        if self.owned {
            return self.lp().run();
        }
        let context = self.context.clone();
        let lp = self.lp();
        context
            .with_thread_default(|| lp.run())
            .expect("the loop thread owns its private context")
    }

    fn quitter(&self) -> Quitter {
        let quitter = self.lp.as_ref().expect("alive until drop").quitter();
        Arc::new(move || quitter.quit())
    }

    fn stats(&self) -> LoopStats {
        self.lp.as_ref().expect("alive until drop").stats()
    }
}

anyloop_conformance::conformance_tests!(DefaultContext::exclusive());
