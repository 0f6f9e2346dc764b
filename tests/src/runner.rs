//! Running scenarios: the per-scenario environment, the post-checks, the watchdog, the lock
//! on descriptor numbers, and the battery report.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyloop::Runner;

use crate::bounded::panic_message;
use crate::driver::{Driver, DriverChecks, TIMEOUT};
use crate::harness::LoopFactory;
use crate::probe::{lock, FreeProbe, Token};

/// What a scenario gets: the backend, a way to start loops, and a free probe.
///
/// After the scenario returns (its drivers dropped, so its loops destroyed), the harness checks
/// that every [`Token`] made here was freed exactly once ([R23](anyloop::contract#r23)), that the
/// interposer saw no violation (frees and callbacks on the loop thread, never inside an operation:
/// [R21](anyloop::contract#r21), [R24](anyloop::contract#r24), [R42](anyloop::contract#r42)), and
/// that no loop returned an error the scenario did not take.
pub struct Env {
    backend: Arc<dyn LoopFactory>,
    probe: FreeProbe,
    /// Shared with the watchdog of [`run_scenario`], which reports what the loops of a hung
    /// scenario are doing.
    checks: Arc<Mutex<Vec<DriverChecks>>>,
    /// The scenario's last [`step`](Env::step), for the watchdog's message.
    step: Arc<Mutex<Option<(String, Instant)>>>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("backend", &self.backend.name())
            .finish()
    }
}

impl Env {
    /// An environment for one scenario on `backend`.
    pub fn new(backend: Arc<dyn LoopFactory>) -> Env {
        Env {
            backend,
            probe: FreeProbe::new(),
            checks: Arc::new(Mutex::new(Vec::new())),
            step: Arc::new(Mutex::new(None)),
        }
    }

    /// Records what the scenario is doing now (`"round 17: run_once(None) until the remote
    /// waker fires (R40)"`): if the scenario hangs, the watchdog's message says it. For
    /// scenarios whose own thread drives a loop ([`create_here`](Self::create_here)); the
    /// loops of [`Driver`]s report what they do themselves.
    pub fn step(&self, what: impl Into<String>) {
        *lock(&self.step) = Some((what.into(), Instant::now()));
    }

    /// The backend under test.
    pub fn backend(&self) -> &Arc<dyn LoopFactory> {
        &self.backend
    }

    /// Starts a loop on its own thread (not pumping yet).
    pub fn start(&self) -> Driver {
        let driver = Driver::start(&self.backend);
        lock(&self.checks).push(driver.checks());
        driver
    }

    /// Creates a loop of the backend on the *calling* thread, for scenarios that drive a
    /// loop themselves, as an application does (the futures layer's, which run `block_on`
    /// on it). Such a loop has no driver: no interposer, no pump; the scenario's own thread
    /// is its loop thread. Panics (failing the scenario) if the backend cannot make one.
    pub fn create_here(&self) -> Box<dyn Runner> {
        self.backend.create().unwrap_or_else(|err| {
            panic!(
                "{}: creating a loop on the scenario's thread failed: {err}",
                self.backend.name()
            )
        })
    }

    /// Starts a loop and its pump.
    pub fn start_pumped(&self) -> Driver {
        let driver = self.start();
        driver.pump();
        driver
    }

    /// A free token (see [`FreeProbe::token`]).
    pub fn token(&self, label: impl Into<String>) -> Token {
        self.probe.token(label)
    }

    /// The scenario's free probe.
    pub fn probe(&self) -> &FreeProbe {
        &self.probe
    }

    /// The post-scenario checks; panics with every problem found.
    pub fn finish(&self) {
        let mut problems: Vec<String> = lock(&self.checks)
            .iter()
            .flat_map(DriverChecks::problems)
            .collect();
        // Frees of destroyed loops have run by now; allow stragglers a moment anyway.
        let deadline = Instant::now() + TIMEOUT;
        while !self.probe.not_freed_exactly_once().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for (label, n) in self.probe.not_freed_exactly_once() {
            problems.push(format!(
                "callback state {label:?} was freed {n} times, not exactly once (R23)"
            ));
        }
        assert!(
            problems.is_empty(),
            "{} after the scenario:\n  {}",
            self.backend.name(),
            problems.join("\n  ")
        );
    }
}

/// How a scenario uses descriptor numbers, which decides whether it runs alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdUse {
    /// Opens and closes descriptors at numbers the kernel picks (or at high numbers out of
    /// the way): it runs beside other scenarios.
    Shared,
    /// Closes a number and checks which file takes it next (another file of the scenario's,
    /// or none, or one the backend opened itself): it runs alone among the kit's scenarios
    /// of this process, so that no other scenario's thread takes the number meanwhile.
    /// Such a scenario still checks that the number went where it expected, rather than
    /// assuming it (a test of the same binary outside the kit may open files too).
    Exclusive,
}

/// Held shared by every scenario, exclusively by [`FdUse::Exclusive`] ones.
static FD_NUMBERS: RwLock<()> = RwLock::new(());

/// A hold on [`FD_NUMBERS`], in the mode the scenario asked for (held, never read).
#[allow(dead_code)]
enum FdHold {
    Shared(RwLockReadGuard<'static, ()>),
    Exclusive(RwLockWriteGuard<'static, ()>),
}

/// The default of [`watchdog`].
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// How long one scenario may run before [`run_scenario`] calls it hung: [`WATCHDOG`], or
/// the number of seconds in the environment variable `ANYLOOP_KIT_WATCHDOG_SECS` (for runs
/// under valgrind, which are 20 to 50 times slower).
pub fn watchdog() -> Duration {
    static LIMIT: OnceLock<Duration> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("ANYLOOP_KIT_WATCHDOG_SECS")
            .ok()
            .and_then(|secs| secs.trim().parse::<u64>().ok())
            .filter(|secs| *secs > 0)
            .map_or(WATCHDOG, Duration::from_secs)
    })
}

/// Runs one scenario on `backend` with the harness's post-checks; panics on failure, with a
/// message that names the backend, the scenario and the rules it pins
/// ([`Scenario::failure`]).
///
/// This is what each test generated by [`conformance_tests!`](crate::conformance_tests)
/// calls. The scenario runs on a thread of its own under a watchdog ([`watchdog`], 60 s):
/// one that does not finish by then fails the test, saying what its loops were doing,
/// instead of hanging the test binary. Its loops are then asked to quit and woken, and if
/// its thread still does not end it is left behind, detached (a thread blocked inside a
/// backend cannot be stopped; a detached thread does not keep the process from exiting).
/// A [`FdUse::Exclusive`] scenario waits until no other scenario of the kit runs.
pub fn run_scenario(backend: Arc<dyn LoopFactory>, scenario: Scenario) {
    run_scenario_within(backend, scenario, watchdog());
}

/// [`run_scenario`] without the panic, under a watchdog of `limit`: `Err` with the failure
/// message (backend, scenario, rules, what was observed) when the scenario fails or hangs.
/// For a `main` of your own, or a test that expects a backend to fail (the kit's own test of
/// deliberately broken adapters does).
///
/// # Errors
/// The scenario's failure message.
pub fn check_scenario(
    backend: Arc<dyn LoopFactory>,
    scenario: Scenario,
    limit: Duration,
) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        run_scenario_within(backend, scenario, limit)
    }))
    .map_err(|payload| panic_message(&*payload))
}

/// [`run_scenario`] with the watchdog's limit given.
fn run_scenario_within(backend: Arc<dyn LoopFactory>, scenario: Scenario, limit: Duration) {
    // Held by the caller's thread, so that a hung scenario's thread (left behind) does not
    // keep it; poisoning only means that an earlier scenario failed.
    let _fd_numbers = match scenario.fds {
        FdUse::Shared => FdHold::Shared(FD_NUMBERS.read().unwrap_or_else(PoisonError::into_inner)),
        FdUse::Exclusive => {
            FdHold::Exclusive(FD_NUMBERS.write().unwrap_or_else(PoisonError::into_inner))
        }
    };
    let backend_name = backend.name();
    let env = Env::new(backend);
    let loops = env.checks.clone();
    let step = env.step.clone();
    let (done_tx, done) = mpsc::channel();
    let thread = thread::Builder::new()
        .name(format!("kit-{}", scenario.name))
        .spawn(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                (scenario.run)(&env);
                env.finish();
            }));
            let _ = done_tx.send(result.map_err(|payload| panic_message(&*payload)));
        })
        .unwrap_or_else(|err| {
            panic!(
                "{}",
                scenario.failure(&backend_name, &format!("spawning its thread failed: {err}"))
            )
        });
    let message = match done.recv_timeout(limit) {
        Ok(result) => {
            let _ = thread.join();
            match result {
                Ok(()) => return,
                Err(message) => message,
            }
        }
        Err(RecvTimeoutError::Disconnected) => {
            let _ = thread.join();
            "the scenario's thread ended without a result".to_owned()
        }
        Err(RecvTimeoutError::Timeout) => {
            let doing: Vec<String> = lock(&loops).iter().map(DriverChecks::describe).collect();
            for lp in lock(&loops).iter() {
                lp.unblock();
            }
            // Unblocked, the scenario may still end with a message of its own: give it a
            // moment.
            let after = match done.recv_timeout(TIMEOUT) {
                Ok(Err(message)) => {
                    format!("; once its loops were asked to quit and woken, it failed: {message}")
                }
                Ok(Ok(())) => "; once its loops were asked to quit and woken, it passed".to_owned(),
                Err(_) => "; its thread is left behind, detached".to_owned(),
            };
            let mut doing = if doing.is_empty() {
                "it had no loop driven by the kit (its own thread drives its loops)".to_owned()
            } else {
                doing.join("; ")
            };
            if let Some((what, since)) = lock(&step).as_ref() {
                doing.push_str(&format!(
                    "; its last step, {:?} before: {what}",
                    since.elapsed()
                ));
            }
            format!(
                "did not finish within {limit:?} (the kit's watchdog): it hangs. When it was \
                 stopped, {doing}{after}"
            )
        }
    };
    panic!("{}", scenario.failure(&backend_name, &message));
}

/// One scenario of the battery.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The test name: scenario number, what it checks, the rules it pins.
    pub name: &'static str,
    /// The scenario module (`"libvirt"`, `"frees"`...).
    pub group: &'static str,
    /// The scenario itself.
    pub run: fn(&Env),
    /// Whether it must run alone among the kit's scenarios ([`FdUse`]).
    pub fds: FdUse,
}

impl Scenario {
    /// The failure message of this scenario on `backend`: the backend, the scenario, the
    /// rules it pins, and `message` (what was observed, against what was expected).
    pub fn failure(&self, backend: &str, message: &str) -> String {
        format!(
            "{backend}: scenario {}::{} (rules {}) failed: {message}",
            self.group,
            self.name,
            self.rules().join(", ")
        )
    }

    /// The contract rules this scenario pins, read from its name (`..._r15_r22`; registry
    /// rules as `e09`), in order of appearance, without repeats.
    pub fn rules(&self) -> Vec<String> {
        let mut rules: Vec<String> = Vec::new();
        for part in self.name.split('_') {
            let is_rule = part.len() > 1
                && (part.starts_with('r') || part.starts_with('e'))
                && part[1..].chars().all(|c| c.is_ascii_digit());
            if is_rule {
                let rule = format!(
                    "{}{}",
                    part[..1].to_ascii_uppercase(),
                    part[1..].trim_start_matches('0')
                );
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
        rules
    }
}

/// The outcome of one scenario in a [`Report`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario's name.
    pub name: &'static str,
    /// `None` when it passed, else the failure message.
    pub failure: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// The result of [`run_battery`].
#[derive(Debug, Clone)]
pub struct Report {
    /// The backend's name.
    pub backend: String,
    /// One outcome per scenario, in battery order.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// True when every scenario passed.
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.failure.is_none())
    }

    /// The failed outcomes.
    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.failure.is_some())
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failures().len();
        writeln!(
            f,
            "conformance of {}: {} passed, {} failed",
            self.backend,
            self.outcomes.len() - failed,
            failed
        )?;
        for o in &self.outcomes {
            match &o.failure {
                None => writeln!(f, "  ok    {} ({:?})", o.name, o.elapsed)?,
                Some(msg) => {
                    writeln!(f, "  FAIL  {}: {}", o.name, msg.replace('\n', "\n        "))?
                }
            }
        }
        Ok(())
    }
}

/// Runs the whole battery on `backend`, `parallel` scenarios at a time, and reports.
///
/// For users who do not use [`conformance_tests!`](crate::conformance_tests): for example a
/// `main` that prints the report. Panics of failed scenarios are caught (their messages are
/// still printed by the panic hook).
pub fn run_battery(backend: Arc<dyn LoopFactory>, parallel: usize) -> Report {
    let scenarios = crate::scenarios();
    let next = Mutex::new(0usize);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; scenarios.len()]);
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            scope.spawn(|| loop {
                let index = {
                    let mut next = lock(&next);
                    let index = *next;
                    *next += 1;
                    index
                };
                let Some(scenario) = scenarios.get(index) else {
                    return;
                };
                let start = Instant::now();
                let backend = backend.clone();
                let result =
                    panic::catch_unwind(AssertUnwindSafe(|| run_scenario(backend, *scenario)));
                let failure = result.err().map(|payload| panic_message(&*payload));
                lock(&outcomes)[index] = Some(Outcome {
                    name: scenario.name,
                    failure,
                    elapsed: start.elapsed(),
                });
            });
        }
    });
    Report {
        backend: backend.name(),
        outcomes: outcomes
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .flatten()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::Latch;
    use crate::reference::ReferenceBackend;

    /// Released at the end of the test that hangs on it, so its abandoned thread ends.
    static HANG: Latch = Latch::new();

    fn hangs(env: &Env) {
        let d = env.start();
        d.on_loop(|ctx| ctx.turns(1));
        HANG.wait_for(Duration::from_secs(30));
    }

    fn fails(_: &Env) {
        panic!("observed 2, expected 1");
    }

    fn scenario(name: &'static str, run: fn(&Env)) -> Scenario {
        Scenario {
            name,
            group: "kit",
            run,
            fds: FdUse::Shared,
        }
    }

    fn failure_of(run: impl FnOnce()) -> String {
        let payload = panic::catch_unwind(AssertUnwindSafe(run)).expect_err("the scenario passed");
        panic_message(&*payload)
    }

    #[test]
    fn a_hung_scenario_fails_with_its_name_instead_of_hanging() {
        let start = Instant::now();
        let message = failure_of(|| {
            run_scenario_within(
                Arc::new(ReferenceBackend),
                scenario("s99_hangs_r40", hangs),
                Duration::from_millis(300),
            )
        });
        HANG.open();
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the watchdog did not end the hung scenario: {:?}",
            start.elapsed()
        );
        for part in [
            "reference-poll",
            "kit::s99_hangs_r40",
            "R40",
            "did not finish within 300ms",
        ] {
            assert!(
                message.contains(part),
                "the message lacks {part:?}: {message}"
            );
        }
    }

    #[test]
    fn a_failure_names_backend_scenario_and_rules() {
        let message = failure_of(|| {
            run_scenario(
                Arc::new(ReferenceBackend),
                scenario("r46_counts_r57", fails),
            )
        });
        assert_eq!(
            message,
            "reference-poll: scenario kit::r46_counts_r57 (rules R46, R57) failed: observed 2, \
             expected 1"
        );
    }

    #[test]
    fn every_scenario_names_a_rule_and_a_unique_test() {
        let all = crate::scenarios();
        let mut names = std::collections::HashSet::new();
        for scenario in &all {
            assert!(
                !scenario.rules().is_empty(),
                "{}::{} names no rule (rNN or eNN)",
                scenario.group,
                scenario.name
            );
            assert!(names.insert(scenario.name), "{} twice", scenario.name);
        }
        for group in ["closed_fd", "async_layer"] {
            assert!(
                all.iter().any(|s| s.group == group),
                "the group {group} is not in the battery"
            );
        }
    }
}
