//! Shared by the per-backend test binaries: a loop thread per backend, and the scenarios.
//!
//! libvirt takes one event implementation per process, so each backend has its own test
//! binary (its own process): `select.rs`, `glib.rs`, `calloop.rs`. In each, the loop runs on
//! one dedicated thread for the whole process, and a lock runs the scenarios one at a time
//! because libvirt's `test:///default` driver state and the vtable counters are
//! process-wide.

#![allow(dead_code)] // each binary uses one spawn function

pub mod raw_vtable;
pub mod scenarios;

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, ThreadId};

use anyloop::Loop;

/// A loop running forever on its own thread, installed as libvirt's event implementation.
pub struct LoopThread {
    /// The loop, as libvirt's shims see it.
    pub lp: Loop,
    /// The thread every libvirt callback must run on.
    pub thread: ThreadId,
}

/// One scenario at a time, with the process's loop (started and registered on first use).
pub fn setup(
    cell: &'static OnceLock<LoopThread>,
    spawn: fn() -> LoopThread,
) -> (MutexGuard<'static, ()>, &'static LoopThread) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let loop_thread = cell.get_or_init(|| {
        let loop_thread = spawn();
        anyloop_libvirt::silence_libvirt_stderr();
        anyloop_libvirt::register(&loop_thread.lp).expect("install the loop in libvirt");
        loop_thread
    });
    (guard, loop_thread)
}

/// A way to run one backend's loop on the thread that created it, until the process ends.
type Runner = Box<dyn FnMut() -> anyloop::Result<()>>;

/// Starts `make` on a new thread (loops that are not `Send` are created where they run),
/// then runs the loop forever there; a run that returns an error (a panicking callback,
/// R54) is restarted, since the loop stays usable.
fn spawn_loop_thread(
    name: &str,
    make: impl FnOnce() -> (Loop, Runner) + Send + 'static,
) -> LoopThread {
    let (sender, receiver) = mpsc::channel();
    let thread = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let (lp, mut run) = make();
            sender.send(lp).expect("the test thread waits for the loop");
            loop {
                match run() {
                    Ok(()) => return,
                    Err(error) => eprintln!("loop run returned {error}; running again"),
                }
            }
        })
        .expect("spawn the loop thread");
    let lp = receiver.recv().expect("the loop thread sends its loop");
    LoopThread {
        lp,
        thread: thread.thread().id(),
    }
}

/// The built-in loop (`anyloop-select`).
pub fn spawn_select() -> LoopThread {
    spawn_loop_thread("select-loop", || {
        let mut event_loop = anyloop_select::SelectLoop::new().expect("create the select loop");
        let lp = event_loop.handle();
        (lp, Box::new(move || event_loop.run()))
    })
}

/// A private GLib main context, iterated with itself as the thread default (as a GLib
/// application's worker thread runs its own context).
pub fn spawn_glib() -> LoopThread {
    spawn_loop_thread("glib-loop", || {
        let context = glib::MainContext::new();
        let mut glib_loop = anyloop_glib::GlibLoop::new(&context).expect("create the glib loop");
        let lp = glib_loop.handle();
        let run = move || {
            context
                .with_thread_default(|| glib_loop.run())
                .expect("the loop thread owns its context")
        };
        (lp, Box::new(run))
    })
}

/// A calloop `EventLoop` with the anyloop source inserted.
pub fn spawn_calloop() -> LoopThread {
    spawn_loop_thread("calloop-loop", || {
        let mut event_loop: calloop::EventLoop<'static, ()> =
            calloop::EventLoop::try_new().expect("create the calloop loop");
        let backend = anyloop_calloop::CalloopSource::new(&event_loop.handle())
            .expect("insert the anyloop source");
        let lp = backend.handle();
        (lp, Box::new(move || backend.run(&mut event_loop, &mut ())))
    })
}

/// Expands every scenario into a `#[test]` for one backend.
#[macro_export]
macro_rules! libvirt_scenarios {
    ($spawn:path) => {
        static LOOP: std::sync::OnceLock<common::LoopThread> = std::sync::OnceLock::new();

        $crate::libvirt_scenarios!(@tests $spawn;
            lifecycle_events_arrive_on_the_loop_thread,
            burst_of_1000_suspend_resume_pairs_arrives_in_order,
            callback_deregisters_itself,
            closing_the_connection_frees_everything_once,
            several_connections_and_callbacks,
            panicking_callback_is_contained,
            object_filter_selects_one_domain,
            operations_from_several_threads_keep_per_domain_order,
            errors_are_typed,
        );
        $crate::libvirt_scenarios!(@raw $spawn;
            handles_through_libvirt_entry_points,
            timeouts_through_libvirt_entry_points,
        );
    };
    (@raw $spawn:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_one_at_a_time, loop_thread) = common::setup(&LOOP, $spawn);
                common::raw_vtable::$name(loop_thread);
            }
        )*
    };
    (@tests $spawn:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_one_at_a_time, loop_thread) = common::setup(&LOOP, $spawn);
                common::scenarios::$name(loop_thread);
            }
        )*
    };
}
