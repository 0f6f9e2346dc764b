//! The whole conformance kit on anyloop hosted in an application's own `poll(2)` loop
//! ([`anyloop_examples::own_loop`]): the adapter a custom-loop author writes passes what every
//! backend of the project passes.

use anyloop_conformance::LoopFactory;
use anyloop_examples::own_loop::{adapter::Hosted, AppLoop};

/// A fresh application loop with anyloop hosted in it, on the kit's loop thread.
struct OwnLoop;

impl LoopFactory for OwnLoop {
    fn name(&self) -> String {
        "own-loop".into()
    }

    fn create(&self) -> anyloop::Result<Box<dyn anyloop::Runner>> {
        Ok(Box::new(Hosted::new(&AppLoop::new())?))
    }
}

anyloop_conformance::conformance_tests!(OwnLoop);

/// The `own_loop` program as a whole process: both libraries finish on the application's
/// loop, and the application's own timer and fd keep working beside them (their events
/// interleave with the libraries').
#[test]
fn the_own_loop_program_runs_two_libraries_beside_the_applications_own_events() {
    use std::process::Command;
    use std::time::Duration;
    let mut child = Command::new(env!("CARGO_BIN_EXE_own_loop"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start own_loop");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("own_loop hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    for expected in [
        "chat: PING -> PONG",
        "chat: UPPER any loop will do -> ANY LOOP WILL DO",
        "child: step 3 of 3",
        "child: exited with status 0",
        "app: read \"line 3 from another thread\"",
        "app: heartbeat 1",
        "both libraries finished: true",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}
