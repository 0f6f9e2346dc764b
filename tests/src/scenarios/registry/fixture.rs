//! The test library of the registry scenarios: its events, and the helpers that observe
//! deliveries and frees.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, ThreadId};

use anyloop::{Event, EventKind, EventSet, Registry};

use crate::driver::Driver;
use crate::probe::Log;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Lifecycle,
    Reboot,
    Library,
    Warning,
    Progress,
    Close,
}

impl EventKind for Kind {
    const ALL: &'static [Kind] = &[
        Kind::Lifecycle,
        Kind::Reboot,
        Kind::Library,
        Kind::Warning,
        Kind::Progress,
        Kind::Close,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// A stable object identity (libvirt's UUID), compared by value ([E29](anyloop::contract#e29)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Obj(pub(crate) u64);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lifecycle {
    pub(crate) obj: Obj,
    pub(crate) n: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reboot {
    pub(crate) obj: Obj,
    pub(crate) n: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Library(pub(crate) Vec<u8>);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Warning(pub(crate) Vec<u8>);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Progress(pub(crate) Vec<u64>);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Close;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ev {
    Lifecycle(Lifecycle),
    Reboot(Reboot),
    Library(Library),
    Warning(Warning),
    Progress(Progress),
    Close(Close),
}

impl EventSet for Ev {
    type Kind = Kind;
    type Key = Obj;
    fn kind(&self) -> Kind {
        match self {
            Ev::Lifecycle(_) => Kind::Lifecycle,
            Ev::Reboot(_) => Kind::Reboot,
            Ev::Library(_) => Kind::Library,
            Ev::Warning(_) => Kind::Warning,
            Ev::Progress(_) => Kind::Progress,
            Ev::Close(_) => Kind::Close,
        }
    }
    fn key(&self) -> Option<&Obj> {
        match self {
            Ev::Lifecycle(e) => Some(&e.obj),
            Ev::Reboot(e) => Some(&e.obj),
            _ => None,
        }
    }
}

macro_rules! payloads {
    ($($ty:ident),*) => {$(
        impl Event<Ev> for $ty {
            const KIND: Kind = Kind::$ty;
            fn view(event: &Ev) -> Option<&$ty> {
                match event {
                    Ev::$ty(e) => Some(e),
                    _ => None,
                }
            }
        }
        impl From<$ty> for Ev {
            fn from(e: $ty) -> Ev {
                Ev::$ty(e)
            }
        }
    )*};
}
payloads!(Lifecycle, Reboot, Library, Warning, Progress, Close);

pub(crate) fn k(obj: u64, n: u64) -> Lifecycle {
    Lifecycle { obj: Obj(obj), n }
}

pub(crate) fn l(obj: u64, n: u64) -> Reboot {
    Reboot { obj: Obj(obj), n }
}

// ---- Helpers ----

/// A registry on the driver's (interposed) loop.
pub(crate) fn registry(d: &Driver) -> Registry<Ev> {
    Registry::with_loop(d.lp().clone()).expect("registry")
}

/// A few non-blocking iterations on the loop thread: queued events are flushed, pending
/// frees run.
pub(crate) fn flush(d: &Driver) {
    d.on_loop(|ctx| {
        ctx.turns(3);
    });
}

thread_local! {
    /// Set around registry calls made by the scenarios (emit, deregister), to catch a callback or
    /// free that runs synchronously inside them ([E6](anyloop::contract#e6),
    /// [E11](anyloop::contract#e11)).
    static IN_REGISTRY_CALL: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn inside<R>(f: impl FnOnce() -> R) -> R {
    IN_REGISTRY_CALL.with(|c| c.set(true));
    let result = f();
    IN_REGISTRY_CALL.with(|c| c.set(false));
    result
}

pub(crate) fn in_registry_call() -> bool {
    IN_REGISTRY_CALL.with(Cell::get)
}

/// What a free observed when it ran.
#[derive(Debug, Clone)]
pub(crate) struct FreeSeen {
    pub(crate) label: &'static str,
    pub(crate) thread: ThreadId,
    /// The free ran inside a scenario's emit/deregister/close call.
    pub(crate) inside_call: bool,
    /// The callback it belongs to was running.
    pub(crate) callback_running: bool,
}

/// Moved into a callback: its drop (the free) records what it saw.
pub(crate) struct FreeSpy {
    pub(crate) label: &'static str,
    pub(crate) running: Arc<AtomicBool>,
    pub(crate) log: Arc<Log<FreeSeen>>,
}

impl Drop for FreeSpy {
    fn drop(&mut self) {
        self.log.push(FreeSeen {
            label: self.label,
            thread: thread::current().id(),
            inside_call: in_registry_call(),
            callback_running: self.running.load(Ordering::SeqCst),
        });
    }
}

/// One delivery: which callback, what event, on which thread, at which kit iteration.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub(crate) who: &'static str,
    pub(crate) event: Ev,
    pub(crate) thread: ThreadId,
    pub(crate) iteration: u64,
}

/// A logging kind-set callback for `who`.
pub(crate) fn logger(
    d: &Driver,
    log: &Arc<Log<Got>>,
    who: &'static str,
) -> impl FnMut(Kind, &Ev) + Send + 'static {
    let (log, iterations) = (log.clone(), d.iteration_counter());
    move |kind, event| {
        assert_eq!(kind, event.kind(), "E21: the kind delivered is the event's");
        assert!(
            !in_registry_call(),
            "E6: a callback ran inside a registry call"
        );
        log.push(Got {
            who,
            event: event.clone(),
            thread: thread::current().id(),
            iteration: iterations.load(Ordering::SeqCst),
        });
    }
}

pub(crate) fn events_of(log: &Log<Got>, who: &str) -> Vec<Ev> {
    log.snapshot()
        .into_iter()
        .filter(|g| g.who == who)
        .map(|g| g.event)
        .collect()
}

pub(crate) fn all_on_thread(log: &Log<Got>, thread: ThreadId) -> bool {
    log.snapshot().iter().all(|g| g.thread == thread)
}
