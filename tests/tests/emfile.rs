//! EMFILE: the process runs out of file descriptors. Lowering `RLIMIT_NOFILE` and filling the
//! table is process-wide, so this is a test binary of its own with a single test, which
//! restores the limit at the end.
//!
//! Checked on each backend, while the table is full: making a new loop fails with a typed
//! `Error::Os` carrying EMFILE (no panic, no abort, [R60](anyloop::contract#r60)); a loop made
//! before keeps working: its watches fire, timers added from another thread fire (the wake-up needs
//! no new fd, [R40](anyloop::contract#r40)), update and remove work, frees run once
//! ([R23](anyloop::contract#r23)); once descriptors are free again, new loops can be made.

mod support;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread;

use anyloop::{Error, IoEvents, Schedule};
use anyloop_conformance::fds::{read_one, Pipe};
use anyloop_conformance::probe::Log;
use anyloop_conformance::{Env, LoopFactory, TIMEOUT};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Lowers the soft descriptor limit to a little above the highest open descriptor and opens
/// `/dev/null` until the kernel says EMFILE. Returns the fillers and the old limit.
fn fill_descriptor_table() -> (Vec<OwnedFd>, Rlimit) {
    let old = getrlimit(Resource::Nofile);
    let highest = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(64);
    let low = Rlimit {
        current: Some(highest + 32),
        maximum: old.maximum,
    };
    setrlimit(Resource::Nofile, low).expect("lowering RLIMIT_NOFILE");
    let mut fillers = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => fillers.push(OwnedFd::from(file)),
            Err(err) if err.raw_os_error() == Some(libc::EMFILE) => break,
            Err(err) => panic!("opening /dev/null: {err}"),
        }
    }
    (fillers, old)
}

/// Makes a loop of `backend` *under EMFILE* with the backend's own factory, on a thread of
/// its own (loops are made on their own thread). For GLib this is the chooser's check: GLib
/// itself aborts the process when a new context cannot get its wake-up fd, so
/// `LoopChoice::Glib` refuses before making one.
fn try_create(backend: &Arc<dyn LoopFactory>) -> anyloop::Result<()> {
    let backend = backend.clone();
    thread::spawn(move || backend.create().map(drop))
        .join()
        .expect("constructor panicked")
}

fn assert_emfile(name: &str, result: anyloop::Result<()>) {
    match result {
        Err(Error::Os { ref source, .. }) if source.raw_os_error() == Some(libc::EMFILE) => {
            eprintln!("{name}: under EMFILE: {}", result.unwrap_err());
        }
        Err(other) => panic!("{name}: making a loop under EMFILE gave {other:?}, want Os(EMFILE)"),
        Ok(()) => panic!("{name}: making a loop succeeded with the descriptor table full"),
    }
}

#[test]
fn emfile_is_a_typed_error_and_running_loops_keep_working_r40_r60() {
    for backend in support::backends() {
        let name = backend.name();
        let env = Env::new(backend.clone());
        let d = env.start_pumped();
        let (pipe, spare) = (Pipe::new(), Pipe::new());
        let calls = Arc::new(Log::new());
        let (c, token) = (calls.clone(), env.token("watch"));
        let watch = d
            .lp()
            .add_watch(pipe.fd(), IoEvents::READABLE, move |_, fd, _| {
                let _ = &token;
                read_one(fd);
                c.push("watch");
            })
            .expect("add watch");
        // GLib makes its global default context lazily, and aborts if it cannot make its
        // wake-up fd then; a GLib program has it from the start, so make it here too.
        let _ = glib::MainContext::default();

        let (fillers, old_limit) = fill_descriptor_table();
        assert_emfile(&name, try_create(&backend));
        // The running loop: its watch, a timer added from another thread, a new watch on a
        // descriptor opened before, update and remove.
        pipe.write(1);
        assert!(
            calls.wait_until(TIMEOUT, |c| c.contains(&"watch")),
            "{name}: the watch stopped firing under EMFILE"
        );
        let (lp, c, token) = (d.lp().clone(), calls.clone(), env.token("timer"));
        thread::spawn(move || {
            let lp2 = lp.clone();
            lp.add_timer(Schedule::EVERY_ITERATION, move |id| {
                let _ = &token;
                c.push("timer");
                let _ = lp2.remove_timer(id);
            })
            .expect("add timer under EMFILE")
        })
        .join()
        .expect("timer thread");
        assert!(
            calls.wait_until(TIMEOUT, |c| c.contains(&"timer")),
            "{name}: a timer added from another thread did not fire under EMFILE (R40)"
        );
        let (c, token) = (calls.clone(), env.token("spare"));
        let second = d
            .lp()
            .add_watch(spare.fd(), IoEvents::empty(), move |_, fd, _| {
                let _ = &token;
                read_one(fd);
                c.push("spare");
            })
            .expect("add a watch under EMFILE");
        d.lp()
            .update_watch(second, IoEvents::READABLE)
            .expect("update under EMFILE");
        spare.write(1);
        assert!(
            calls.wait_until(TIMEOUT, |c| c.contains(&"spare")),
            "{name}: a watch added under EMFILE did not fire"
        );
        d.lp().remove_watch(second).expect("remove under EMFILE");
        d.lp().remove_watch(watch).expect("remove under EMFILE");
        assert!(
            env.probe().wait_total(3, TIMEOUT),
            "{name}: frees did not run under EMFILE"
        );

        drop(fillers);
        setrlimit(Resource::Nofile, old_limit).expect("restoring RLIMIT_NOFILE");
        try_create(&backend)
            .unwrap_or_else(|err| panic!("{name}: no loop after descriptors were freed: {err}"));
        drop(d);
        env.finish();
        eprintln!("{name}: the running loop kept working under EMFILE");
    }
}
