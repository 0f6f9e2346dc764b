//! # anyloop-backends: every anyloop backend behind one run-time choice
//!
//! A program with a `--loop` option, a test that runs the same library code on every backend,
//! a benchmark: each needs to turn a name into a running loop. [`LoopChoice`] is that name and
//! [`LoopChoice::create`] makes the loop, as a `Box<dyn` [`Runner`]`>`, the owner-side API that
//! every backend implements. Nothing else is needed to drive it: [`Runner::run`],
//! [`Runner::run_once`], [`Runner::run_until`], [`Runner::quitter`] and [`Runner::stats`]
//! mean the same on each.
//!
//! ```
//! use anyloop::{Runner, Schedule, Stopped};
//! use anyloop_backends::LoopChoice;
//! use std::time::Duration;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     for choice in LoopChoice::built() {
//!         let mut lp = choice.create()?;
//!         let quitter = lp.quitter();
//!         let _timer = lp
//!             .handle()
//!             .timer(Schedule::Once(Duration::from_millis(1)), move |_id| quitter.quit())?;
//!         assert_eq!(lp.run_until(None, &mut || false)?, Stopped::Quit, "{choice}");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Which backends a build includes is decided by cargo features: `glib` (a private GLib main
//! context, needs `libglib2.0-dev`), `calloop` (a calloop event loop) and `tokio` (a
//! current-thread tokio runtime), all on by default; the built-in loop is always there.
//! Asking for a backend left out of the build is a clear error ([`ChooseError::NotBuilt`]),
//! never a panic.
//!
//! An application that embeds anyloop in a loop it already runs (a GTK application's default
//! context, a compositor's calloop loop, a tokio application's `LocalSet`) does not need this
//! crate: it uses that backend's crate directly (`anyloop_glib::install_default`,
//! `anyloop_calloop::CalloopSource`, `anyloop_tokio::LocalDriver`).
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

use std::fmt;
use std::str::FromStr;

pub use anyloop::Runner;
use anyloop_select::{PollerKind, SelectLoop};

/// Which backend runs the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoopChoice {
    /// The built-in loop, `anyloop-select`, on level-triggered epoll (its default poller).
    Select,
    /// The built-in loop on mio's edge-triggered epoll, with level-triggered delivery
    /// emulated (`anyloop_select::PollerKind::Mio`).
    SelectMio,
    /// The built-in loop on `poll(2)`, portable POSIX, with a self-pipe wake-up
    /// (`anyloop_select::PollerKind::Poll`).
    SelectPoll,
    /// `anyloop-glib` on a private GLib main context (cargo feature `glib`).
    Glib,
    /// `anyloop-calloop`'s [`CalloopLoop`](https://docs.rs/anyloop-calloop): a calloop event
    /// loop that anyloop owns (cargo feature `calloop`).
    Calloop,
    /// `anyloop-tokio`'s [`TokioLoop`](https://docs.rs/anyloop-tokio): a current-thread tokio
    /// runtime that anyloop owns (cargo feature `tokio`).
    Tokio,
    /// `anyloop-tokio`'s `TokioLoop` on a multi-thread tokio runtime with two workers (cargo
    /// feature `tokio`): anyloop's callbacks run on the thread that runs the loop, the
    /// runtime's I/O and timers may be turned by the workers, as in a `#[tokio::main]`
    /// application.
    TokioMulti,
}

impl LoopChoice {
    /// Every backend, built into this binary or not, in the order `--help` lists them.
    pub const ALL: [LoopChoice; 7] = [
        LoopChoice::Select,
        LoopChoice::SelectMio,
        LoopChoice::SelectPoll,
        LoopChoice::Glib,
        LoopChoice::Calloop,
        LoopChoice::Tokio,
        LoopChoice::TokioMulti,
    ];

    /// The name a `--loop` option takes: `select`, `select-mio`, `select-poll`, `glib`,
    /// `calloop`, `tokio` or `tokio-multi`.
    pub fn name(self) -> &'static str {
        match self {
            LoopChoice::Select => "select",
            LoopChoice::SelectMio => "select-mio",
            LoopChoice::SelectPoll => "select-poll",
            LoopChoice::Glib => "glib",
            LoopChoice::Calloop => "calloop",
            LoopChoice::Tokio => "tokio",
            LoopChoice::TokioMulti => "tokio-multi",
        }
    }

    /// The cargo feature of this crate that builds the backend (`None`: always built).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            LoopChoice::Select | LoopChoice::SelectMio | LoopChoice::SelectPoll => None,
            LoopChoice::Glib => Some("glib"),
            LoopChoice::Calloop => Some("calloop"),
            LoopChoice::Tokio | LoopChoice::TokioMulti => Some("tokio"),
        }
    }

    /// Whether this build includes the backend.
    pub fn is_built(self) -> bool {
        match self {
            LoopChoice::Select | LoopChoice::SelectMio | LoopChoice::SelectPoll => true,
            LoopChoice::Glib => cfg!(feature = "glib"),
            LoopChoice::Calloop => cfg!(feature = "calloop"),
            LoopChoice::Tokio | LoopChoice::TokioMulti => cfg!(feature = "tokio"),
        }
    }

    /// The backends this build includes.
    pub fn built() -> impl Iterator<Item = LoopChoice> {
        LoopChoice::ALL
            .into_iter()
            .filter(|choice| choice.is_built())
    }

    /// Creates the chosen loop, owned by the calling thread (which becomes its loop thread:
    /// run it there; thread-bound callbacks are added there).
    ///
    /// # Errors
    /// [`ChooseError::NotBuilt`] when this build lacks the backend; [`ChooseError::Create`]
    /// when the backend cannot start (no fds left, no epoll...).
    pub fn create(self) -> Result<Box<dyn Runner>, ChooseError> {
        let create = |source| ChooseError::Create {
            choice: self,
            source,
        };
        match self {
            LoopChoice::Select => Ok(Box::new(
                SelectLoop::with_poller(PollerKind::Epoll).map_err(create)?,
            )),
            LoopChoice::SelectMio => Ok(Box::new(
                SelectLoop::with_poller(PollerKind::Mio).map_err(create)?,
            )),
            LoopChoice::SelectPoll => Ok(Box::new(
                SelectLoop::with_poller(PollerKind::Poll).map_err(create)?,
            )),
            LoopChoice::Glib => {
                #[cfg(feature = "glib")]
                {
                    // GLib aborts the process when a new context cannot get its wake-up fd;
                    // refuse with a typed error instead when the fd table is full (R60).
                    fd_headroom(2).map_err(|source| {
                        create(anyloop::Error::Os {
                            op: "reserving descriptors for a new GLib main context",
                            fd: None,
                            source,
                        })
                    })?;
                    let context = anyloop_glib::glib::MainContext::new();
                    Ok(Box::new(
                        anyloop_glib::GlibLoop::new(&context).map_err(create)?,
                    ))
                }
                #[cfg(not(feature = "glib"))]
                {
                    let _ = create;
                    Err(self.not_built())
                }
            }
            LoopChoice::Calloop => {
                #[cfg(feature = "calloop")]
                {
                    Ok(Box::new(
                        anyloop_calloop::CalloopLoop::new().map_err(create)?,
                    ))
                }
                #[cfg(not(feature = "calloop"))]
                {
                    let _ = create;
                    Err(self.not_built())
                }
            }
            LoopChoice::Tokio => {
                #[cfg(feature = "tokio")]
                {
                    Ok(Box::new(anyloop_tokio::TokioLoop::new().map_err(create)?))
                }
                #[cfg(not(feature = "tokio"))]
                {
                    let _ = create;
                    Err(self.not_built())
                }
            }
            LoopChoice::TokioMulti => {
                #[cfg(feature = "tokio")]
                {
                    let runtime = anyloop_tokio::tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .map_err(|source| {
                            create(anyloop::Error::Os {
                                op: "creating a multi-thread tokio runtime",
                                fd: None,
                                source,
                            })
                        })?;
                    Ok(Box::new(
                        anyloop_tokio::TokioLoop::with_runtime(runtime).map_err(create)?,
                    ))
                }
                #[cfg(not(feature = "tokio"))]
                {
                    let _ = create;
                    Err(self.not_built())
                }
            }
        }
    }

    /// The error for a backend this build left out.
    #[allow(dead_code)] // unused when every feature is on
    fn not_built(self) -> ChooseError {
        ChooseError::NotBuilt {
            choice: self,
            feature: self.feature().unwrap_or_default(),
        }
    }
}

/// Whether `count` more descriptors can be opened now (opened and closed again).
#[cfg(feature = "glib")]
fn fd_headroom(count: usize) -> std::io::Result<()> {
    let probes = (0..count)
        .map(|_| std::fs::File::open("/dev/null"))
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(probes);
    Ok(())
}

impl fmt::Display for LoopChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LoopChoice {
    type Err = ChooseError;

    /// Parses a [`name`](LoopChoice::name); works as a clap `value_parser` as it is.
    fn from_str(name: &str) -> Result<Self, ChooseError> {
        LoopChoice::ALL
            .into_iter()
            .find(|choice| choice.name() == name)
            .ok_or_else(|| ChooseError::Unknown(name.to_owned()))
    }
}

/// Why a loop could not be chosen or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChooseError {
    /// No backend has this name.
    #[error(
        "unknown loop `{0}` (expected select, select-mio, select-poll, glib, calloop, tokio or tokio-multi)"
    )]
    Unknown(String),
    /// The backend exists but this build left it out.
    #[error(
        "the {choice} loop is not built into this binary: rebuild with the `{feature}` feature \
         of anyloop-backends"
    )]
    NotBuilt {
        /// The backend asked for.
        choice: LoopChoice,
        /// The cargo feature of `anyloop-backends` that builds it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for choice in LoopChoice::ALL {
            assert_eq!(choice.name().parse::<LoopChoice>().unwrap(), choice);
            assert_eq!(choice.to_string(), choice.name());
        }
        let err = "qt".parse::<LoopChoice>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown loop `qt` (expected select, select-mio, select-poll, glib, calloop, tokio or tokio-multi)"
        );
    }

    #[test]
    fn every_choice_is_made_or_says_which_feature_builds_it() {
        for choice in LoopChoice::ALL {
            match choice.create() {
                Ok(lp) => {
                    assert!(choice.is_built(), "{choice}");
                    assert_eq!(lp.stats().watches, 0);
                }
                Err(ChooseError::NotBuilt { feature, .. }) => {
                    assert!(!choice.is_built(), "{choice}");
                    assert_eq!(Some(feature), choice.feature());
                }
                Err(other) => panic!("{choice}: {other}"),
            }
        }
    }
}
