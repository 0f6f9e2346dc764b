//! One of anyloop's backends, chosen at run time: for programs with a `--loop` option and for
//! tests that run the same library code on every backend.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyloop::Loop;
use anyloop_calloop::CalloopSource;
use anyloop_select::SelectLoop;

/// Which backend runs the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoopChoice {
    /// The built-in loop, `anyloop-select`.
    Select,
    /// A private GLib main context, `anyloop-glib` (cargo feature `glib`).
    Glib,
    /// A calloop `EventLoop`, `anyloop-calloop`.
    Calloop,
}

impl LoopChoice {
    /// Every backend, built or not.
    pub const ALL: [LoopChoice; 3] = [LoopChoice::Select, LoopChoice::Glib, LoopChoice::Calloop];

    /// The name `--loop` takes.
    pub fn name(self) -> &'static str {
        match self {
            LoopChoice::Select => "select",
            LoopChoice::Glib => "glib",
            LoopChoice::Calloop => "calloop",
        }
    }

    /// Whether this build of the examples includes the backend.
    pub fn is_built(self) -> bool {
        match self {
            LoopChoice::Glib => cfg!(feature = "glib"),
            LoopChoice::Select | LoopChoice::Calloop => true,
        }
    }

    /// The backends this build includes.
    pub fn built() -> impl Iterator<Item = LoopChoice> {
        LoopChoice::ALL
            .into_iter()
            .filter(|choice| choice.is_built())
    }
}

impl fmt::Display for LoopChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LoopChoice {
    type Err = LoopError;

    fn from_str(name: &str) -> Result<Self, LoopError> {
        LoopChoice::ALL
            .into_iter()
            .find(|choice| choice.name() == name)
            .ok_or_else(|| LoopError::Unknown(name.to_owned()))
    }
}

/// Why a loop could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoopError {
    /// No backend has this name.
    #[error("unknown loop `{0}` (expected select, glib or calloop)")]
    Unknown(String),
    /// The backend exists but this binary was built without it.
    #[error(
        "the {choice} loop is not built into this binary: rebuild with `--features {feature}`"
    )]
    NotBuilt {
        /// The backend asked for.
        choice: LoopChoice,
        /// The cargo feature that builds it.
        feature: &'static str,
    },
    /// The backend failed to start.
    #[error("cannot create the {choice} loop: {source}")]
    Create {
        /// The backend asked for.
        choice: LoopChoice,
        /// What went wrong.
        #[source]
        source: anyloop::Error,
    },
}

/// A running backend: the application side of one loop, owned by the thread that drives it.
pub struct LoopRunner {
    backend: Backend,
}

enum Backend {
    Select(SelectLoop),
    #[cfg(feature = "glib")]
    Glib {
        context: anyloop_glib::glib::MainContext,
        lp: anyloop_glib::GlibLoop,
    },
    Calloop {
        // Dropped first: removing its source frees every remaining callback.
        backend: CalloopSource<'static>,
        event_loop: calloop::EventLoop<'static, ()>,
    },
}

/// Stops [`LoopRunner::run`] from any thread or callback.
#[derive(Clone)]
pub struct LoopQuitter {
    quit: std::sync::Arc<dyn Fn() + Send + Sync>,
}

impl LoopQuitter {
    /// Asks the loop's `run` to return after the current iteration.
    pub fn quit(&self) {
        (self.quit)();
    }
}

impl fmt::Debug for LoopQuitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopQuitter").finish_non_exhaustive()
    }
}

impl LoopRunner {
    /// Creates the chosen backend on this thread.
    ///
    /// # Errors
    /// [`LoopError::NotBuilt`] when this binary lacks the backend; [`LoopError::Create`] when
    /// the OS refuses (no epoll, no fds left...).
    pub fn new(choice: LoopChoice) -> Result<LoopRunner, LoopError> {
        let create = |source| LoopError::Create { choice, source };
        let backend = match choice {
            LoopChoice::Select => Backend::Select(SelectLoop::new().map_err(create)?),
            #[cfg(feature = "glib")]
            LoopChoice::Glib => {
                let context = anyloop_glib::glib::MainContext::new();
                let lp = anyloop_glib::GlibLoop::new(&context).map_err(create)?;
                Backend::Glib { context, lp }
            }
            #[cfg(not(feature = "glib"))]
            LoopChoice::Glib => {
                return Err(LoopError::NotBuilt {
                    choice,
                    feature: "glib",
                })
            }
            LoopChoice::Calloop => {
                let event_loop = calloop::EventLoop::try_new().map_err(|err| {
                    create(anyloop::Error::Os {
                        op: "creating the calloop loop",
                        fd: None,
                        source: std::io::Error::other(err),
                    })
                })?;
                let backend = CalloopSource::new(&event_loop.handle()).map_err(create)?;
                Backend::Calloop {
                    backend,
                    event_loop,
                }
            }
        };
        Ok(LoopRunner { backend })
    }

    /// Which backend this is.
    pub fn choice(&self) -> LoopChoice {
        match self.backend {
            Backend::Select(_) => LoopChoice::Select,
            #[cfg(feature = "glib")]
            Backend::Glib { .. } => LoopChoice::Glib,
            Backend::Calloop { .. } => LoopChoice::Calloop,
        }
    }

    /// The vtable handle libraries use.
    pub fn handle(&self) -> Loop {
        match &self.backend {
            Backend::Select(lp) => lp.handle(),
            #[cfg(feature = "glib")]
            Backend::Glib { lp, .. } => lp.handle(),
            Backend::Calloop { backend, .. } => backend.handle(),
        }
    }

    /// Live watches and timers, pending frees and iterations so far.
    pub fn stats(&self) -> anyloop::LoopStats {
        match &self.backend {
            Backend::Select(lp) => lp.stats(),
            #[cfg(feature = "glib")]
            Backend::Glib { lp, .. } => lp.stats(),
            Backend::Calloop { backend, .. } => backend.stats(),
        }
    }

    /// A handle that stops [`run`](Self::run).
    pub fn quitter(&self) -> LoopQuitter {
        let quit: std::sync::Arc<dyn Fn() + Send + Sync> = match &self.backend {
            Backend::Select(lp) => {
                let quitter = lp.quitter();
                std::sync::Arc::new(move || quitter.quit())
            }
            #[cfg(feature = "glib")]
            Backend::Glib { lp, .. } => {
                let quitter = lp.quitter();
                std::sync::Arc::new(move || quitter.quit())
            }
            Backend::Calloop { backend, .. } => {
                let quitter = backend.quitter();
                std::sync::Arc::new(move || quitter.quit())
            }
        };
        LoopQuitter { quit }
    }

    /// One iteration, waiting at most `timeout` (`None`: until something happens). Returns
    /// how many callbacks ran.
    ///
    /// # Errors
    /// A callback or free panicked ([`anyloop::Error::CallbackPanicked`]; the loop stays
    /// usable), or the OS wait failed.
    pub fn turn(&mut self, timeout: Option<Duration>) -> anyloop::Result<usize> {
        match &mut self.backend {
            Backend::Select(lp) => lp.run_once(timeout),
            #[cfg(feature = "glib")]
            Backend::Glib { context, lp } => context
                .with_thread_default(|| lp.iterate(timeout))
                .map_err(context_busy)?,
            Backend::Calloop {
                backend,
                event_loop,
            } => backend.dispatch(event_loop, timeout, &mut ()),
        }
    }

    /// Runs until a [`LoopQuitter`] (or the backend's own quit) is called.
    ///
    /// # Errors
    /// As [`turn`](Self::turn); `run` can be called again after an error.
    pub fn run(&mut self) -> anyloop::Result<()> {
        match &mut self.backend {
            Backend::Select(lp) => lp.run(),
            #[cfg(feature = "glib")]
            Backend::Glib { context, lp } => context
                .with_thread_default(|| lp.run())
                .map_err(context_busy)?,
            Backend::Calloop {
                backend,
                event_loop,
            } => backend.run(event_loop, &mut ()),
        }
    }

    /// Iterates until `done()` holds or `deadline` passes; returns whether `done()` held.
    ///
    /// # Errors
    /// As [`turn`](Self::turn).
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut() -> bool,
    ) -> anyloop::Result<bool> {
        loop {
            if done() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // Bounded waits: `done` may become true through another thread without a
            // callback of this loop running.
            self.turn(Some((deadline - now).min(Duration::from_millis(100))))?;
        }
    }
}

#[cfg(feature = "glib")]
fn context_busy(_: anyloop_glib::glib::BoolError) -> anyloop::Error {
    anyloop::Error::Os {
        op: "acquiring the GLib main context (another thread owns it)",
        fd: None,
        source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
    }
}

impl fmt::Debug for LoopRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopRunner")
            .field("choice", &self.choice())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for choice in LoopChoice::ALL {
            assert_eq!(choice.name().parse::<LoopChoice>().unwrap(), choice);
        }
        let err = "qt".parse::<LoopChoice>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown loop `qt` (expected select, glib or calloop)"
        );
    }

    #[test]
    fn a_backend_left_out_of_the_build_is_a_clear_error() {
        for choice in LoopChoice::ALL {
            match LoopRunner::new(choice) {
                Ok(runner) => {
                    assert!(choice.is_built());
                    assert_eq!(runner.choice(), choice);
                }
                Err(LoopError::NotBuilt { feature, .. }) => {
                    assert!(!choice.is_built());
                    assert_eq!(feature, "glib");
                }
                Err(other) => panic!("{choice}: {other}"),
            }
        }
    }
}
