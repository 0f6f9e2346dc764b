//! Shared by the per-backend test binaries: a loop thread per backend, and the scenarios.
//!
//! libvirt takes one event implementation per process, so each backend has its own test
//! binary (its own process): `select.rs`, `select_mio.rs`, `glib.rs`, `calloop.rs`,
//! `tokio.rs`, each naming its backend with anyloop's one chooser, [`LoopChoice`]. In each, the loop runs on
//! one dedicated thread for the whole process, and a lock runs the scenarios one at a time
//! because libvirt's `test:///default` driver state and the vtable counters are
//! process-wide.
//!
//! The `remote_*` scenarios each start a private `libvirtd` ([`daemon::Daemon`]) and talk to
//! it over `test+unix://`; without libvirtd installed they are skipped with a message, or
//! fail when `ANYLOOP_REQUIRE_LIBVIRTD=1`.

pub mod daemon;
pub mod raw_vtable;
pub mod remote;
pub mod scenarios;

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, ThreadId};

use anyloop::{Loop, Runner};
use anyloop_backends::LoopChoice;

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
    choice: LoopChoice,
) -> (MutexGuard<'static, ()>, &'static LoopThread) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let loop_thread = cell.get_or_init(|| {
        let loop_thread = spawn_loop_thread(choice);
        anyloop_libvirt::silence_libvirt_stderr();
        anyloop_libvirt::register(&loop_thread.lp).expect("install the loop in libvirt");
        loop_thread
    });
    (guard, loop_thread)
}

/// Creates `choice`'s loop on a new thread (loops that are not `Send` are created where they
/// run; the creating thread is the loop thread), then runs it there until the process ends,
/// through [`anyloop::Runner`] like every backend; a run that returns an error (a panicking
/// callback, [R54](anyloop::contract#r54)) is restarted, since the loop stays usable.
pub fn spawn_loop_thread(choice: LoopChoice) -> LoopThread {
    let (sender, receiver) = mpsc::channel();
    let thread = thread::Builder::new()
        .name(format!("{choice}-loop"))
        .spawn(move || {
            let mut runner = choice.create().expect("create the loop");
            sender
                .send(runner.handle())
                .expect("the test thread waits for the loop");
            loop {
                match runner.run() {
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

/// Expands every scenario into a `#[test]` for one backend (a [`LoopChoice`]).
#[macro_export]
macro_rules! libvirt_scenarios {
    ($choice:expr) => {
        static LOOP: std::sync::OnceLock<common::LoopThread> = std::sync::OnceLock::new();

        $crate::libvirt_scenarios!(@tests $choice;
            lifecycle_events_arrive_on_the_loop_thread,
            burst_of_1000_suspend_resume_pairs_arrives_in_order,
            callback_deregisters_itself,
            closing_the_connection_frees_everything_once,
            several_connections_and_callbacks,
            panicking_callback_is_contained,
            object_filter_selects_one_domain,
            operations_from_several_threads_keep_per_domain_order,
            errors_are_typed,
            close_callback_on_a_local_connection,
        );
        $crate::libvirt_scenarios!(@remote $choice;
            remote_lifecycle_events_arrive_through_the_socket_watch,
            remote_keep_alive_holds_an_idle_connection,
            remote_keep_alive_notices_a_stopped_daemon,
            remote_daemon_killed_then_restarted,
        );
        $crate::libvirt_scenarios!(@raw $choice;
            handles_through_libvirt_entry_points,
            timeouts_through_libvirt_entry_points,
        );
    };
    (@raw $choice:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_one_at_a_time, loop_thread) = common::setup(&LOOP, $choice);
                common::raw_vtable::$name(loop_thread);
            }
        )*
    };
    (@remote $choice:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_one_at_a_time, loop_thread) = common::setup(&LOOP, $choice);
                let Some(mut daemon) = common::daemon::Daemon::start(stringify!($name)) else {
                    return; // no libvirtd: skipped, and said so
                };
                common::remote::$name(loop_thread, &mut daemon);
            }
        )*
    };
    (@tests $choice:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_one_at_a_time, loop_thread) = common::setup(&LOOP, $choice);
                common::scenarios::$name(loop_thread);
            }
        )*
    };
}
