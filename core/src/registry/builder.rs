//! `RegistryBuilder`: the library-side options of a registry.

use std::fmt;

use super::event::EventSet;
use super::handle::Registry;
use super::kind::{check_kinds, EventKind, KindSet};
use super::shared::{Fallback, KeyCheck, Shared, TransitionHook};
use crate::error::{Error, Result};
use crate::handle::Loop;

/// Builds a [`Registry`]: which loop, and the library's hooks.
///
/// ```
/// # use anyloop::{EventKind, EventSet, KindSet, Registry};
/// # #[derive(Debug, Clone, Copy, PartialEq, Eq)] enum Kind { Log }
/// # impl EventKind for Kind { const ALL: &'static [Kind] = &[Kind::Log]; fn index(self) -> usize { 0 } }
/// # struct Log(String);
/// # impl EventSet for Log { type Kind = Kind; type Key = u32;
/// #   fn kind(&self) -> Kind { Kind::Log } fn key(&self) -> Option<&u32> { None } }
/// # fn demo(lp: anyloop::Loop) -> anyloop::Result<()> {
/// let registry = Registry::<Log>::builder()
///     .event_loop(lp)
///     .object_check(|vm: &u32| *vm < 1000)             // keys this library hands out
///     .on_transition(|kind, listened| {
///         // subscribe upstream when the first callback for `kind` arrives, unsubscribe
///         // when the last one goes (libvirt's remote driver, E15)
///         println!("{kind:?} listened: {listened}");
///     })
///     .fallback(KindSet::all(), |_kind, Log(line)| eprintln!("{line}")) // E30
///     .build()?;
/// # drop(registry); Ok(()) }
/// ```
#[must_use = "build the registry with `build`"]
pub struct RegistryBuilder<S: EventSet> {
    lp: Option<Loop>,
    key_check: Option<KeyCheck<S>>,
    hook: Option<TransitionHook<S>>,
    fallback: Option<(u64, Fallback<S>)>,
}

impl<S: EventSet> RegistryBuilder<S> {
    pub(crate) fn new() -> Self {
        RegistryBuilder {
            lp: None,
            key_check: None,
            hook: None,
            fallback: None,
        }
    }

    /// The loop the registry belongs to; by default the thread's current loop at
    /// [`build`](Self::build) ([`Loop::current`]).
    pub fn event_loop(mut self, lp: Loop) -> Self {
        self.lp = Some(lp);
        self
    }

    /// Checks object filters at registration: a key refused by `owned` (an object of another
    /// connection or handle) fails the registration with
    /// [`InvalidArgument`](crate::Error::InvalidArgument) ([E1](crate::contract#e1)).
    pub fn object_check(mut self, owned: impl Fn(&S::Key) -> bool + Send + Sync + 'static) -> Self {
        self.key_check = Some(Box::new(owned));
        self
    }

    /// Called when a kind gains its first callback (`true`) or loses its last one (`false`),
    /// including at close ([E15](crate::contract#e15)). Calls come in transition order, one at a time, with no lock
    /// held, on a thread that registered or deregistered; a hook may register and deregister
    /// itself.
    pub fn on_transition(mut self, hook: impl FnMut(S::Kind, bool) + Send + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// A default action for events of `kinds` that no callback took (libguestfs logs unheard
    /// messages to stderr, [E30](crate::contract#e30)). It runs on the loop thread during the flush. While a fallback
    /// exists its kinds count as listened to: their events are queued even with no callback,
    /// and the flush timer lives as long as the registry.
    pub fn fallback(
        mut self,
        kinds: KindSet<S::Kind>,
        sink: impl FnMut(S::Kind, &S) + Send + 'static,
    ) -> Self {
        self.fallback = if kinds.is_empty() {
            None
        } else {
            Some((kinds.bits(), Box::new(sink)))
        };
        self
    }

    /// Builds the registry.
    ///
    /// # Errors
    /// [`NoLoop`](crate::Error::NoLoop) without a loop;
    /// [`InvalidArgument`](crate::Error::InvalidArgument) when `S::Kind` has more than 64
    /// kinds or its `index` disagrees with `ALL`; a loop error creating the flush timer of a
    /// fallback.
    pub fn build(self) -> Result<Registry<S>> {
        check_kinds::<S::Kind>().map_err(|what| Error::InvalidArgument { what })?;
        let lp = match self.lp {
            Some(lp) => lp,
            None => Loop::current()?,
        };
        let all_bits = KindSet::<S::Kind>::all().bits();
        debug_assert_eq!(all_bits.count_ones() as usize, S::Kind::ALL.len());
        let shared = Shared::new(lp, all_bits, self.key_check, self.hook, self.fallback)?;
        Ok(Registry::from_shared(shared))
    }
}

impl<S: EventSet> fmt::Debug for RegistryBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("event_loop", &self.lp)
            .field("object_check", &self.key_check.is_some())
            .field("on_transition", &self.hook.is_some())
            .field("fallback", &self.fallback.as_ref().map(|(bits, _)| bits))
            .finish()
    }
}
