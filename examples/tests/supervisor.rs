//! The supervisor with real child processes, on every backend this build includes: the same
//! library code on the built-in loop, a GLib context and a calloop loop.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{KindSet, Runner, Stopped};
use anyloop_backends::LoopChoice;
use anyloop_examples::supervisor::{
    ChildId, Close, ExitDetection, ExitReason, LogLine, Progress, ProgressSource, SignalSent,
    SpawnOptions, Stream, SubprocessQuit, Supervisor, SupervisorError, SupervisorEvent,
};

/// Far above what any scenario needs: only a hang guard.
const DEADLINE: Duration = Duration::from_secs(20);

/// Every event with the thread it was delivered on.
type Log = Arc<Mutex<Vec<(SupervisorEvent, ThreadId)>>>;

struct Fixture {
    // Dropped first, while its loop still exists: the usual order in an application.
    supervisor: Supervisor,
    runner: Box<dyn Runner>,
    choice: LoopChoice,
    log: Log,
}

impl Fixture {
    fn new(choice: LoopChoice) -> Fixture {
        let runner = choice.create().expect("backend");
        let supervisor = Supervisor::new(&runner.handle()).expect("supervisor");
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        supervisor
            .events()
            .on_kinds(KindSet::all(), move |_, event| {
                sink.lock()
                    .unwrap()
                    .push((event.clone(), thread::current().id()))
            })
            .expect("register");
        Fixture {
            runner,
            choice,
            supervisor,
            log,
        }
    }

    fn spawn(&self, script: &str) -> ChildId {
        self.spawn_with(script, &SpawnOptions::default())
    }

    fn spawn_with(&self, script: &str, options: &SpawnOptions) -> ChildId {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        self.supervisor.spawn(command, options).expect("spawn sh")
    }

    /// Runs the loop until `children` have quit; returns the log.
    fn run_until_quit(&mut self, children: usize) -> Vec<SupervisorEvent> {
        let log = Arc::clone(&self.log);
        let quits = move || {
            log.lock()
                .unwrap()
                .iter()
                .filter(|(event, _)| matches!(event, SupervisorEvent::SubprocessQuit(_)))
                .count()
        };
        let stopped = self
            .runner
            .run_until(Some(Instant::now() + DEADLINE), &mut || quits() >= children)
            .expect("loop");
        let log = self.events();
        assert_eq!(
            stopped,
            Stopped::Done,
            "{}: not all children quit: {log:#?}",
            self.choice
        );
        log
    }

    fn run_until(&mut self, mut done: impl FnMut(&[SupervisorEvent]) -> bool) {
        let log = Arc::clone(&self.log);
        let stopped = self
            .runner
            .run_until(Some(Instant::now() + DEADLINE), &mut || {
                let events: Vec<_> = log.lock().unwrap().iter().map(|e| e.0.clone()).collect();
                done(&events)
            })
            .expect("loop");
        assert_eq!(
            stopped,
            Stopped::Done,
            "{}: {:#?}",
            self.choice,
            self.events()
        );
    }

    fn events(&self) -> Vec<SupervisorEvent> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.0.clone())
            .collect()
    }

    fn delivered_on_this_thread(&self) -> bool {
        let me = thread::current().id();
        self.log.lock().unwrap().iter().all(|(_, on)| *on == me)
    }
}

fn lines(events: &[SupervisorEvent], child: ChildId, stream: Stream) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|event| match event {
            SupervisorEvent::LogLine(line) if line.child == child && line.stream == stream => {
                Some(line.bytes.clone())
            }
            _ => None,
        })
        .collect()
}

fn quit_of(events: &[SupervisorEvent], child: ChildId) -> SubprocessQuit {
    let quits: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            SupervisorEvent::SubprocessQuit(quit) if quit.child == child => Some(*quit),
            _ => None,
        })
        .collect();
    assert_eq!(quits.len(), 1, "one quit for {child}: {events:#?}");
    quits[0]
}

fn signals_sent(events: &[SupervisorEvent], child: ChildId) -> Vec<SignalSent> {
    events
        .iter()
        .filter_map(|event| match event {
            SupervisorEvent::SignalSent(kill) if kill.child == child => Some(*kill),
            _ => None,
        })
        .collect()
}

fn position_of(events: &[SupervisorEvent], wanted: impl Fn(&SupervisorEvent) -> bool) -> usize {
    events
        .iter()
        .position(wanted)
        .expect("the event is in the log")
}

fn each_backend(scenario: impl Fn(LoopChoice)) {
    let built: Vec<_> = LoopChoice::built().collect();
    assert!(
        built.contains(&LoopChoice::Select)
            && built.contains(&LoopChoice::Calloop)
            && built.contains(&LoopChoice::Tokio)
    );
    for choice in built {
        scenario(choice);
    }
}

#[test]
fn both_streams_line_by_line_then_quit_on_the_loop_thread() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let child = fx
            .spawn(r#"echo out1; echo err1 >&2; printf 'a\000b\n'; echo err2 >&2; printf 'tail'"#);
        // Two pipes and the pidfd, no helper thread.
        assert_eq!(fx.runner.stats().watches, 3, "{choice}");
        let events = fx.run_until_quit(1);
        assert!(matches!(&events[0], SupervisorEvent::Launched(l) if l.child == child));
        assert_eq!(
            lines(&events, child, Stream::Stdout),
            vec![b"out1".to_vec(), b"a\0b".to_vec(), b"tail".to_vec()],
            "{choice}"
        );
        assert_eq!(
            lines(&events, child, Stream::Stderr),
            vec![b"err1".to_vec(), b"err2".to_vec()],
            "{choice}"
        );
        let quit = quit_of(&events, child);
        assert_eq!(quit.reason, ExitReason::Exited(0), "{choice}");
        assert!(!quit.killed);
        assert!(
            matches!(events.last(), Some(SupervisorEvent::SubprocessQuit(_))),
            "{choice}: every line comes before the quit: {events:#?}"
        );
        assert!(fx.delivered_on_this_thread(), "{choice}");
        assert_eq!(fx.supervisor.running(), 0);
    });
}

#[test]
fn exit_status_and_death_by_signal() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let exits = fx.spawn("echo bye; exit 7");
        let signalled = fx.spawn("kill -SEGV $$");
        let events = fx.run_until_quit(2);
        let quit = quit_of(&events, exits);
        assert_eq!(quit.reason, ExitReason::Exited(7), "{choice}");
        assert_eq!(quit.reason.shell_status(), 7);
        assert_eq!(lines(&events, exits, Stream::Stdout), vec![b"bye".to_vec()]);
        let quit = quit_of(&events, signalled);
        assert_eq!(quit.reason, ExitReason::Signaled(11), "{choice}");
        assert_eq!(quit.reason.shell_status(), 139);
        assert!(!quit.killed, "{choice}: nobody called kill");
        assert!(signals_sent(&events, signalled).is_empty());
    });
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_when_the_grace_period_ends() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let grace = Duration::from_millis(300);
        let child = fx.spawn(r#"trap '' TERM; echo ready; while :; do sleep 0.05; done"#);
        fx.run_until(|events| !lines(events, child, Stream::Stdout).is_empty());
        let asked = Instant::now();
        assert!(fx.supervisor.kill(child, grace).expect("kill"), "{choice}");
        let events = fx.run_until_quit(1);
        let waited = asked.elapsed();
        let quit = quit_of(&events, child);
        assert_eq!(quit.reason, ExitReason::Signaled(9), "{choice}");
        assert!(quit.killed);
        let sent: Vec<_> = signals_sent(&events, child)
            .iter()
            .map(|k| (k.signal, k.escalated))
            .collect();
        assert_eq!(sent, vec![(15, false), (9, true)], "{choice}");
        assert!(
            waited >= grace,
            "{choice}: SIGKILL came before the grace period ended"
        );
    });
}

#[test]
fn a_child_that_honours_sigterm_is_not_escalated() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let child = fx.spawn("exec sleep 30");
        fx.run_until(|events| {
            events
                .iter()
                .any(|e| matches!(e, SupervisorEvent::Launched(_)))
        });
        assert!(fx.supervisor.kill(child, DEADLINE).expect("kill"));
        let events = fx.run_until_quit(1);
        assert_eq!(quit_of(&events, child).reason, ExitReason::Signaled(15));
        assert_eq!(
            signals_sent(&events, child).len(),
            1,
            "{choice}: {events:#?}"
        );
        // The child is gone: its id is no longer valid.
        assert!(matches!(
            fx.supervisor.kill(child, Duration::ZERO),
            Err(SupervisorError::UnknownChild(id)) if id == child
        ));
    });
}

#[test]
fn the_whole_process_group_is_signalled() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        // The shell waits for a grandchild that holds both pipes: if only the shell were
        // killed, the pipes would stay open until the grandchild's sleep ends.
        // The supervisor waits for the pipes' end of file for longer than the test's
        // deadline: the quit comes in time only if the grandchild died too.
        let options = SpawnOptions {
            drain_after_exit: DEADLINE * 2,
            ..SpawnOptions::default()
        };
        let child = fx.spawn_with("sleep 30 & echo started; wait", &options);
        fx.run_until(|events| !lines(events, child, Stream::Stdout).is_empty());
        fx.supervisor.kill(child, Duration::ZERO).expect("kill");
        let events = fx.run_until_quit(1);
        assert_eq!(
            quit_of(&events, child).reason,
            ExitReason::Signaled(9),
            "{choice}"
        );
    });
}

#[test]
fn several_children_on_one_loop_with_object_filters() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let children: Vec<ChildId> = (0..5)
            .map(|n| fx.spawn(&format!("for i in 1 2 3 4 5 6 7 8; do echo c{n}-$i; done")))
            .collect();
        let second = children[1];
        let filtered: Arc<Mutex<Vec<LogLine>>> = Arc::default();
        let sink = Arc::clone(&filtered);
        fx.supervisor
            .events()
            .listen::<LogLine>()
            .object(second)
            .call(move |line| sink.lock().unwrap().push(line.clone()))
            .expect("listen");
        let events = fx.run_until_quit(children.len());
        for (n, child) in children.iter().enumerate() {
            let expected: Vec<Vec<u8>> =
                (1..=8).map(|i| format!("c{n}-{i}").into_bytes()).collect();
            assert_eq!(lines(&events, *child, Stream::Stdout), expected, "{choice}");
            assert_eq!(quit_of(&events, *child).reason, ExitReason::Exited(0));
        }
        let filtered: Vec<Vec<u8>> = filtered
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.bytes.clone())
            .collect();
        assert_eq!(filtered, lines(&events, second, Stream::Stdout), "{choice}");
    });
}

#[test]
fn progress_from_output_lines_and_from_a_timer() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let printed = fx.spawn("echo 'progress: 1/4'; echo 'progress: 50%'; echo 'progress: 4/4'");
        let estimated = fx.spawn_with(
            "sleep 0.6",
            &SpawnOptions {
                expected_duration: Some(Duration::from_secs(1)),
                progress_interval: Duration::from_millis(50),
                ..SpawnOptions::default()
            },
        );
        let events = fx.run_until_quit(2);
        let progress = |child: ChildId| -> Vec<Progress> {
            events
                .iter()
                .filter_map(|e| match e {
                    SupervisorEvent::Progress(p) if p.child == child => Some(*p),
                    _ => None,
                })
                .collect()
        };
        let figures: Vec<_> = progress(printed)
            .iter()
            .map(|p| (p.position, p.total, p.source))
            .collect();
        assert_eq!(
            figures,
            vec![
                (1, 4, ProgressSource::Output),
                (50, 100, ProgressSource::Output),
                (4, 4, ProgressSource::Output)
            ],
            "{choice}"
        );
        // The progress lines are log lines too.
        assert_eq!(lines(&events, printed, Stream::Stdout).len(), 3);
        let ticks = progress(estimated);
        assert!(ticks.len() >= 2, "{choice}: {ticks:?}");
        assert!(ticks
            .iter()
            .all(|p| p.source == ProgressSource::Timer && p.total == 1000 && p.position < p.total));
        assert!(ticks.windows(2).all(|w| w[0].position <= w[1].position));
        // No tick after the quit.
        let quit = position_of(
            &events,
            |e| matches!(e, SupervisorEvent::SubprocessQuit(q) if q.child == estimated),
        );
        assert!(!events[quit..]
            .iter()
            .any(|e| matches!(e, SupervisorEvent::Progress(p) if p.child == estimated)));
    });
}

#[test]
fn long_lines_are_cut_and_nothing_is_lost() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let options = SpawnOptions {
            max_line: 4096,
            ..SpawnOptions::default()
        };
        let child = fx.spawn_with(
            "head -c 300000 /dev/zero | tr '\\0' a; echo; echo end",
            &options,
        );
        let events = fx.run_until_quit(1);
        let pieces: Vec<&LogLine> = events
            .iter()
            .filter_map(|e| match e {
                SupervisorEvent::LogLine(l) if l.child == child => Some(l),
                _ => None,
            })
            .collect();
        let total: usize = pieces.iter().map(|l| l.bytes.len()).sum();
        assert_eq!(total, 300_000 + 3, "{choice}");
        assert!(pieces.iter().all(|l| l.bytes.len() <= 4096));
        assert_eq!(
            pieces.iter().filter(|l| !l.truncated).count(),
            2,
            "{choice}"
        );
        assert_eq!(pieces.last().unwrap().bytes, b"end");
    });
}

#[test]
fn a_descendant_holding_the_pipes_does_not_hold_up_the_quit() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let options = SpawnOptions {
            drain_after_exit: Duration::from_millis(200),
            ..SpawnOptions::default()
        };
        let started = Instant::now();
        let child = fx.spawn_with("sleep 3 & echo bye", &options);
        let events = fx.run_until_quit(1);
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{choice}: waited for the grandchild"
        );
        assert_eq!(quit_of(&events, child).reason, ExitReason::Exited(0));
        assert_eq!(lines(&events, child, Stream::Stdout), vec![b"bye".to_vec()]);

        // Without any grace for the pipes, what the child wrote before exiting still
        // arrives: the abandoned streams are read one last time.
        let mut fx = Fixture::new(choice);
        let options = SpawnOptions {
            drain_after_exit: Duration::ZERO,
            ..SpawnOptions::default()
        };
        let child = fx.spawn_with("sleep 3 & seq 1 2000; printf tail", &options);
        let events = fx.run_until_quit(1);
        let mut expected: Vec<Vec<u8>> = (1..=2000).map(|i| i.to_string().into_bytes()).collect();
        expected.push(b"tail".to_vec());
        assert_eq!(lines(&events, child, Stream::Stdout), expected, "{choice}");
    });
}

#[test]
fn exit_detection_by_polling() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let options = SpawnOptions {
            exit_detection: ExitDetection::Poll(Duration::from_millis(20)),
            ..SpawnOptions::default()
        };
        let child = fx.spawn_with("echo polled; exit 3", &options);
        // The two pipes only: the exit is found by the timer, not by a pidfd watch.
        assert_eq!(fx.runner.stats().watches, 2, "{choice}");
        let events = fx.run_until_quit(1);
        assert_eq!(
            quit_of(&events, child).reason,
            ExitReason::Exited(3),
            "{choice}"
        );
    });
}

#[test]
fn a_run_time_limit_kills_the_child() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let child = fx.spawn("exec sleep 30");
        fx.supervisor
            .kill_after(child, Duration::from_millis(100), Duration::from_secs(5))
            .expect("limit");
        let events = fx.run_until_quit(1);
        let quit = quit_of(&events, child);
        assert_eq!(quit.reason, ExitReason::Signaled(15), "{choice}");
        assert!(quit.killed);
    });
}

#[test]
fn a_missing_program_is_a_clear_error() {
    each_backend(|choice| {
        let fx = Fixture::new(choice);
        let err = fx
            .supervisor
            .spawn(
                Command::new("/nonexistent/anyloop-no-such-program"),
                &SpawnOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, SupervisorError::Spawn { .. }));
        let message = err.to_string();
        assert!(
            message.contains("/nonexistent/anyloop-no-such-program")
                && message.contains("No such file"),
            "{message}"
        );
        assert_eq!(fx.supervisor.running(), 0);
    });
}

#[test]
fn close_kills_reaps_and_tells_close_listeners_synchronously() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let closes: Arc<Mutex<Vec<Close>>> = Arc::default();
        let sink = Arc::clone(&closes);
        fx.supervisor
            .events()
            .on::<Close>(move |close| sink.lock().unwrap().push(*close))
            .expect("register");
        let child = fx.spawn("exec sleep 30");
        fx.spawn("exit 0");
        fx.run_until(|events| {
            events
                .iter()
                .any(|e| matches!(e, SupervisorEvent::SubprocessQuit(_)))
        });
        fx.supervisor.close().expect("close");
        assert_eq!(
            *closes.lock().unwrap(),
            vec![Close { killed_children: 1 }],
            "{choice}"
        );
        assert_eq!(fx.supervisor.running(), 0);
        assert!(matches!(
            fx.supervisor.kill(child, Duration::ZERO),
            Err(SupervisorError::UnknownChild(_))
        ));
        let mut command = Command::new("true");
        command.arg("x");
        assert!(matches!(
            fx.supervisor.spawn(command, &SpawnOptions::default()),
            Err(SupervisorError::Closed)
        ));
        // Nothing else is delivered after the close, and the loop is left with no
        // registrations once the frees have run.
        let before = fx.events().len();
        fx.runner
            .run_once(Some(Duration::from_millis(50)))
            .expect("loop");
        assert_eq!(fx.events().len(), before);
        assert_eq!(fx.supervisor.events().callbacks(), 0);
    });
}

#[test]
fn spawn_and_kill_from_another_thread_while_the_loop_runs() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let handle = fx.supervisor.handle();
        let (line_seen, seen) = std::sync::mpsc::channel();
        fx.supervisor
            .events()
            .on::<LogLine>(move |_| {
                let _ = line_seen.send(());
            })
            .expect("register");
        let worker = thread::spawn(move || {
            let mut command = Command::new("sh");
            command.args(["-c", "echo from-thread; exec sleep 30"]);
            let child = handle.spawn(command, &SpawnOptions::default()).unwrap();
            // Kill only once the line was delivered (on the loop thread), however slow the
            // machine: the kill must not race the child's output.
            seen.recv_timeout(DEADLINE).expect("the line arrives");
            handle.kill(child, Duration::ZERO).unwrap();
            child
        });
        let events = fx.run_until_quit(1);
        let child = worker.join().unwrap();
        assert_eq!(
            lines(&events, child, Stream::Stdout),
            vec![b"from-thread".to_vec()]
        );
        assert_eq!(
            quit_of(&events, child).reason,
            ExitReason::Signaled(9),
            "{choice}"
        );
        assert!(fx.delivered_on_this_thread(), "{choice}");
    });
}

#[test]
fn a_callback_may_kill_through_a_handle() {
    each_backend(|choice| {
        let mut fx = Fixture::new(choice);
        let handle = fx.supervisor.handle();
        fx.supervisor
            .events()
            .listen::<LogLine>()
            .filter(|line| line.bytes == b"stop me")
            .call(move |line| {
                handle.kill(line.child, Duration::from_secs(5)).unwrap();
            })
            .expect("listen");
        let child = fx.spawn("echo 'stop me'; exec sleep 30");
        let events = fx.run_until_quit(1);
        let quit = quit_of(&events, child);
        assert_eq!(quit.reason, ExitReason::Signaled(15), "{choice}");
        assert!(quit.killed);
    });
}
