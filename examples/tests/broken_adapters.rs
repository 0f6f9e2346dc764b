//! The kit's own test: deliberately broken adapters must fail it, fast, and be told why.
//!
//! Each adapter below is the application-owned loop's adapter (`examples/src/own_loop/`) with
//! one mistake a custom-loop author makes, plus a backend written by hand (the kit's poll(2)
//! reference) without the identity check R52 needs. For each, the scenarios that catch it run
//! under a short watchdog: the kit must fail within 30 s (never hang), with a message that
//! names the rule. The correct adapter passes the same scenarios, so they fail for the mistake,
//! not by themselves.
//!
//! `cargo test -p anyloop-examples --test broken_adapters -- --ignored --nocapture survey` runs
//! the whole battery on every broken adapter and prints which scenarios catch each (slow: a
//! few minutes).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyloop::{Loop, Quitter, Result, Runner};
use anyloop_conformance::reference::PollLoop;
use anyloop_conformance::{check_scenario, run_battery, LoopFactory, Scenario};
use anyloop_engine::linux::EpollPoller;
use anyloop_engine::{HostWait, HostedEngine};
use anyloop_examples::own_loop::{AppLoop, PollHook, PollSet};
use rustix::event::PollFlags;

/// How long the kit may take to fail a broken adapter.
const FAIL_WITHIN: Duration = Duration::from_secs(30);
/// The watchdog of each scenario here: a hang must turn into a failure before `FAIL_WITHIN`.
const SCENARIO_LIMIT: Duration = Duration::from_secs(20);

/// One mistake in the adapter (or `None`: the adapter of the example, as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    /// Never calls `prepare`: no deadline, and other threads cannot wake the loop.
    NoPrepare,
    /// Calls `prepare` right after the previous poll instead of right before the next one:
    /// what the loop thread changes in between (a new timer) is not seen.
    PreparedTooEarly,
    /// Never ends the host wait after a quiet poll (no `check`/`end_wait`): the poll is not
    /// counted, and other threads keep writing wake-ups.
    NoEndOfWait,
    /// Adds the engine's fd but does not limit the poll by the engine's deadline.
    PollIgnoresDeadline,
    /// Runs the engine only when its fd is readable: due timers wait for an unrelated event.
    DispatchOnlyWhenReadable,
    /// Never closes the engine: the application's loop keeps it (and every callback) alive
    /// after the runner is gone.
    EngineNotDropped,
    /// `run_once` drops the outcome's error (a panicking callback goes unreported).
    ErrorsSwallowed,
    /// `run_once` counts the host's dispatch of the anyloop hook as a callback of its own.
    CountsItsOwnDispatch,
    /// The quitter sets a flag of the adapter's and wakes nothing.
    QuitWithoutWakeup,
}

struct Hook {
    host: HostedEngine<EpollPoller>,
    bug: Bug,
    /// `PreparedTooEarly`: the answer of a `prepare` made after the previous poll.
    early: Cell<Option<HostWait>>,
    /// The answer of this iteration's `prepare` (for the bugs that decide without `check`).
    wait: Cell<Option<HostWait>>,
    /// Polls after which the hook dispatched the engine.
    dispatches: Cell<usize>,
}

impl PollHook for Hook {
    fn before_poll<'a>(&'a self, set: &mut PollSet<'a>) {
        let wait = match self.bug {
            Bug::NoPrepare => None,
            Bug::PreparedTooEarly => self.early.take(),
            _ => Some(self.host.prepare()),
        };
        self.wait.set(wait);
        if wait.is_none_or(|wait| wait.poll_fd()) {
            set.add(self.host.fd(), PollFlags::IN);
        }
        if self.bug != Bug::PollIgnoresDeadline {
            set.limit_timeout(wait.and_then(|wait| wait.timeout(Instant::now())));
        }
    }

    fn after_poll(&self, set: &PollSet<'_>) {
        let readable = !set.revents_of(self.host.fd()).is_empty();
        let due = self.wait.get().is_some_and(|w| w.is_due(Instant::now()));
        let dispatch = match self.bug {
            Bug::NoEndOfWait | Bug::NoPrepare => readable || due,
            Bug::DispatchOnlyWhenReadable => readable,
            _ => self.host.check(readable),
        };
        if dispatch {
            self.host.dispatch(readable);
            self.dispatches.set(self.dispatches.get() + 1);
        } else if !matches!(self.bug, Bug::NoEndOfWait | Bug::NoPrepare) {
            self.host.end_wait();
        }
        if self.bug == Bug::PreparedTooEarly {
            self.early.set(Some(self.host.prepare()));
        }
    }
}

/// The adapter, with its bug.
struct Broken {
    app: AppLoop,
    hook: Rc<Hook>,
    /// `QuitWithoutWakeup`'s own flag.
    quit: Arc<AtomicBool>,
}

impl Broken {
    fn new(bug: Bug) -> Result<Broken> {
        let host = HostedEngine::epoll()?;
        let hook = Rc::new(Hook {
            host,
            bug,
            early: Cell::new(None),
            wait: Cell::new(None),
            dispatches: Cell::new(0),
        });
        if bug == Bug::PreparedTooEarly {
            hook.early.set(Some(hook.host.prepare()));
        }
        let app = AppLoop::new();
        app.add_hook(hook.clone());
        Ok(Broken {
            app,
            hook,
            quit: Arc::default(),
        })
    }
}

impl Runner for Broken {
    fn handle(&self) -> Loop {
        self.hook.host.handle()
    }

    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let dispatches = self.hook.dispatches.get();
        self.app.iterate(timeout);
        match self.hook.bug {
            Bug::ErrorsSwallowed => Ok(self.hook.host.take_outcome().unwrap_or(0)),
            Bug::CountsItsOwnDispatch => {
                let own = self.hook.dispatches.get() - dispatches;
                self.hook.host.take_outcome().map(|ran| ran + own)
            }
            _ => self.hook.host.take_outcome(),
        }
    }

    fn quitter(&self) -> Quitter {
        if self.hook.bug == Bug::QuitWithoutWakeup {
            let flag = self.quit.clone();
            return Quitter::new(move || flag.store(true, Ordering::SeqCst));
        }
        self.hook.host.quitter()
    }

    fn take_quit(&mut self) -> bool {
        self.quit.swap(false, Ordering::SeqCst) || self.hook.host.take_quit()
    }
}

impl Drop for Broken {
    fn drop(&mut self) {
        if self.hook.bug == Bug::EngineNotDropped {
            // The application's loop keeps its hooks for the life of the process.
            std::mem::forget(self.hook.clone());
            return;
        }
        self.app.remove_hook(&self.hook);
        self.hook.host.close();
    }
}

struct Adapter(Bug);

impl LoopFactory for Adapter {
    fn name(&self) -> String {
        format!("own-loop adapter with bug {:?}", self.0)
    }

    fn create(&self) -> Result<Box<dyn Runner>> {
        Ok(Box::new(Broken::new(self.0)?))
    }
}

/// The kit's poll(2) reference backend, written by hand, without R52's identity check.
struct NoIdentityCheck;

impl LoopFactory for NoIdentityCheck {
    fn name(&self) -> String {
        "hand-written backend without the identity check".into()
    }

    fn create(&self) -> Result<Box<dyn Runner>> {
        Ok(Box::new(PollLoop::checking_identity(false)?))
    }
}

fn scenario(name: &str) -> Scenario {
    anyloop_conformance::scenarios()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no kit scenario named {name}"))
}

/// The observed part of a failure message (after the kit's "(rules ...) failed: " prefix,
/// which names the scenario's rules whatever happened).
fn observed(message: &str) -> &str {
    message
        .split_once("failed: ")
        .map_or(message, |(_, rest)| rest)
}

/// Runs `catchers` (a scenario, and the rule its failure must name for this mistake) on
/// `broken` until one fails: one must, within [`FAIL_WITHIN`] (a hang bound: each catcher's
/// own waits are bounded at 5 to 10 s), saying what it observed with that rule; and the correct
/// loop (`control`) must pass them all.
fn caught(broken: Arc<dyn LoopFactory>, control: Arc<dyn LoopFactory>, catchers: &[(&str, &str)]) {
    let start = Instant::now();
    let mut failure = None;
    for &(name, rule) in catchers {
        if let Err(message) = check_scenario(broken.clone(), scenario(name), SCENARIO_LIMIT) {
            failure = Some((message, rule));
            break;
        }
    }
    let elapsed = start.elapsed();
    let (message, rule) = failure.unwrap_or_else(|| {
        panic!(
            "the kit did not catch the {}: {catchers:?} all passed",
            broken.name()
        )
    });
    println!("{} caught in {elapsed:?}:\n{message}", broken.name());
    assert!(
        elapsed <= FAIL_WITHIN,
        "the kit took {elapsed:?} to catch the {} (at most {FAIL_WITHIN:?})",
        broken.name()
    );
    let said = observed(&message);
    assert!(
        said.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == rule),
        "the failure does not say {rule} about what it observed: {said}"
    );
    for &(name, _) in catchers {
        if let Err(message) = check_scenario(control.clone(), scenario(name), SCENARIO_LIMIT) {
            panic!("the correct loop fails {name} too, so it proves nothing: {message}");
        }
    }
}

fn adapter_caught(bug: Bug, catchers: &[(&str, &str)]) {
    caught(
        Arc::new(Adapter(bug)),
        Arc::new(Adapter(Bug::None)),
        catchers,
    );
}

// The catchers of each mistake: the kit scenarios that fail on it first (see `survey`).

#[test]
fn no_prepare() {
    adapter_caught(
        Bug::NoPrepare,
        &[("r57_iterations_count_idle_waits_and_stand_still_r46", "R57")],
    );
}

#[test]
fn prepared_too_early() {
    adapter_caught(
        Bug::PreparedTooEarly,
        &[("s08_timer_removal_interrupts_poll_r40_r46", "R46")],
    );
}

#[test]
fn no_end_of_the_host_wait() {
    adapter_caught(
        Bug::NoEndOfWait,
        &[("r57_iterations_count_idle_waits_and_stand_still_r46", "R57")],
    );
}

#[test]
fn poll_not_limited_by_the_deadline() {
    adapter_caught(
        Bug::PollIgnoresDeadline,
        &[("r27_once_zero_next_iteration_once_no_spin_r35", "R27")],
    );
}

#[test]
fn engine_run_only_when_its_fd_is_readable() {
    adapter_caught(
        Bug::DispatchOnlyWhenReadable,
        &[("r27_once_fires_exactly_once_then_reads_disabled_r57", "R27")],
    );
}

#[test]
fn engine_never_dropped() {
    adapter_caught(
        Bug::EngineNotDropped,
        &[("s18_frees_at_loop_destruction_r23_r48", "R48")],
    );
}

#[test]
fn errors_swallowed() {
    adapter_caught(
        Bug::ErrorsSwallowed,
        &[("s57_panicking_callback_r54", "R54")],
    );
}

#[test]
fn the_hosts_dispatch_counted_as_a_callback() {
    adapter_caught(
        Bug::CountsItsOwnDispatch,
        &[("s03_interrupted_during_poll_r40_r46", "R46")],
    );
}

#[test]
fn quit_without_wake_up() {
    adapter_caught(
        Bug::QuitWithoutWakeup,
        &[("s47_quit_from_foreign_thread_r47", "R47")],
    );
}

/// The kit's reference backend checked against itself: with its identity check, it passes.
struct Reference;

impl LoopFactory for Reference {
    fn name(&self) -> String {
        "the kit's reference backend".into()
    }

    fn create(&self) -> Result<Box<dyn Runner>> {
        Ok(Box::new(PollLoop::new()?))
    }
}

#[test]
fn hand_written_backend_without_the_identity_check() {
    caught(
        Arc::new(NoIdentityCheck),
        Arc::new(Reference),
        &[(
            "r52_number_reused_by_a_pipe_never_reaches_the_old_watch_r19",
            "R52",
        )],
    );
}

/// Every broken adapter through the whole battery: which scenarios catch it, and how fast.
#[test]
#[ignore = "slow: the whole battery on every broken adapter"]
fn survey() {
    let mut all: Vec<Arc<dyn LoopFactory>> = [
        Bug::NoPrepare,
        Bug::PreparedTooEarly,
        Bug::NoEndOfWait,
        Bug::PollIgnoresDeadline,
        Bug::DispatchOnlyWhenReadable,
        Bug::EngineNotDropped,
        Bug::ErrorsSwallowed,
        Bug::CountsItsOwnDispatch,
        Bug::QuitWithoutWakeup,
    ]
    .into_iter()
    .map(|bug| Arc::new(Adapter(bug)) as Arc<dyn LoopFactory>)
    .collect();
    all.push(Arc::new(NoIdentityCheck));
    for broken in all {
        let report = run_battery(broken.clone(), 4);
        println!("== {}: {} failed", broken.name(), report.failures().len());
        for outcome in report.failures() {
            let message = outcome.failure.as_deref().unwrap_or_default();
            let first = message.lines().next().unwrap_or_default();
            println!(
                "  {:>6.1}s {}: {}",
                outcome.elapsed.as_secs_f64(),
                outcome.name,
                &first[..first.len().min(300)]
            );
        }
    }
}
