//! Model-based property tests: random sequences of operations run against the backend and
//! against a small executable model of the contract; the observable traces must agree.
//!
//! A case is a sequence of [`Step`]s: add/update/remove watches and timers (on the loop thread or
//! from a foreign thread), writes and reads on the watched descriptors, closing a pipe's write end
//! (HANGUP), closing a *watched* descriptor and reopening it (its number is usually reused at once:
//! the fault of [R52](anyloop::contract#r52)/[R19](anyloop::contract#r19)), one loop iteration, and
//! quit + run.
//!
//! Everything that decides what a step may observe is deterministic:
//!
//! - the descriptors are pipes (read end watched) and socketpair ends whose readiness the
//!   model computes from the bytes it wrote and read: a pipe is READABLE while it holds data
//!   and reports HANGUP once its writer is closed; a socket end is always WRITABLE (the test
//!   never fills its buffer) and READABLE while it holds data;
//! - timers are `Every(ZERO)` (fire on every iteration while enabled,
//!   [R27](anyloop::contract#r27)), `Once(ZERO)` (fire in the next iteration, once, then read
//!   `Disabled`, [R27](anyloop::contract#r27)), disabled (never), or `Every` one hour (never within
//!   a case);
//! - iterations are `run_once(Some(0))` between steps, so every change made by a step is in effect
//!   for the next poll ([R40](anyloop::contract#r40), [R41](anyloop::contract#r41)); callbacks only
//!   act on their own registration (remove or disable themselves), so the outcome does not depend
//!   on the dispatch order, which the contract leaves open ([D11](anyloop::contract#d11)).
//!
//! What is compared after every step: which callbacks ran in each iteration, with which
//! registration, id, fd and bits ([R8–R13](anyloop::contract#r8), [R15](anyloop::contract#r15),
//! [R18](anyloop::contract#r18), [R27](anyloop::contract#r27), [R34](anyloop::contract#r34)); the
//! result of every operation (NotFound after remove,
//! [R3](anyloop::contract#r3)/[R4](anyloop::contract#r4)); every live timer's schedule as
//! `timer_schedule` reports it ([R27](anyloop::contract#r27)); when each free ran: never before its
//! remove returned or while its callback ran, and by the end of the iteration after the remove
//! ([R16](anyloop::contract#r16), [R21](anyloop::contract#r21), [R25](anyloop::contract#r25)); and
//! at the end, after the loop is destroyed, that every free ran exactly once
//! ([R23](anyloop::contract#r23), [R48](anyloop::contract#r48)). Watches whose descriptor was
//! closed under them are out of contract for delivery ([R52](anyloop::contract#r52): the substrates
//! differ); they must still never fire after their remove, and their remove must work and free them
//! once. Watches added on the reopened descriptor are held to the full contract
//! ([R19](anyloop::contract#r19)).
//!
//! Case count: `PROPTEST_CASES` (default [`DEFAULT_CASES`] per backend); the seed is random
//! unless `PROPTEST_RNG_SEED` is set. A failing case is shrunk and printed; shrunk failures
//! are kept as named regression cases in [`regressions`].

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyloop::{Error, IoEvents, Loop, Schedule, TimerId, WatchId};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use crate::driver::{Driver, LoopCtx};
use crate::fds::{drain, write_bytes, Pipe, SocketPair};
use crate::harness::LoopFactory;
use crate::probe::lock;
use crate::runner::Env;

/// Cases per backend when `PROPTEST_CASES` is not set: sized for CI.
pub const DEFAULT_CASES: u32 = 300;

/// Pipes in a case (descriptor slots `0..PIPES`); the socketpair ends follow.
const PIPES: usize = 2;
/// Socketpair ends in a case (slots `PIPES..SLOTS`).
const SOCKETS: usize = 1;
/// Descriptor slots in a case.
const SLOTS: usize = PIPES + SOCKETS;
/// Longest generated case.
const MAX_STEPS: usize = 40;

/// A watch's interest, as generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Disabled ([R10](anyloop::contract#r10)).
    Empty,
    /// READABLE.
    Read,
    /// WRITABLE.
    Write,
    /// READABLE | WRITABLE.
    Both,
}

impl Interest {
    fn events(self) -> IoEvents {
        match self {
            Interest::Empty => IoEvents::empty(),
            Interest::Read => IoEvents::READABLE,
            Interest::Write => IoEvents::WRITABLE,
            Interest::Both => IoEvents::READABLE | IoEvents::WRITABLE,
        }
    }
}

/// A timer's schedule, as generated: only values whose firing is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// `Every(ZERO)`: fires on every iteration while enabled ([R27](anyloop::contract#r27)).
    Zero,
    /// `Once(ZERO)`: fires in the next iteration, once, and is `Disabled` from then on
    /// ([R27](anyloop::contract#r27)).
    Once,
    /// Disabled: never fires.
    Off,
    /// `Every` one hour: never fires within a case.
    Hour,
}

impl Period {
    fn schedule(self) -> Schedule {
        match self {
            Period::Zero => Schedule::EVERY_ITERATION,
            Period::Once => Schedule::Once(Duration::ZERO),
            Period::Off => Schedule::Disabled,
            Period::Hour => Schedule::Every(Duration::from_secs(3600)),
        }
    }

    /// Fires in the next iteration.
    fn due(self) -> bool {
        matches!(self, Period::Zero | Period::Once)
    }
}

/// What a callback does to its own registration when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFire {
    /// Nothing.
    Nothing,
    /// Removes itself ([R16](anyloop::contract#r16)).
    RemoveSelf,
    /// Disables itself: empty interest or `Schedule::Disabled` ([R18](anyloop::contract#r18),
    /// [R34](anyloop::contract#r34)).
    DisableSelf,
}

/// One operation of a case. Indices of watches and timers are taken modulo the number added
/// so far (removed ones included, so removes and updates of dead ids are exercised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Adds a watch on descriptor slot `slot`.
    AddWatch {
        /// Descriptor slot.
        slot: usize,
        /// Interest at add.
        interest: Interest,
        /// Its callback's action.
        on_fire: OnFire,
    },
    /// Updates a watch's interest.
    UpdateWatch {
        /// Watch index.
        watch: usize,
        /// New interest.
        interest: Interest,
    },
    /// Removes a watch.
    RemoveWatch {
        /// Watch index.
        watch: usize,
    },
    /// Adds a timer.
    AddTimer {
        /// Schedule at add.
        period: Period,
        /// Its callback's action.
        on_fire: OnFire,
    },
    /// Updates a timer's schedule.
    UpdateTimer {
        /// Timer index.
        timer: usize,
        /// New schedule.
        period: Period,
    },
    /// Removes a timer.
    RemoveTimer {
        /// Timer index.
        timer: usize,
    },
    /// Writes bytes towards slot `slot` (pipe writer or socket peer); no-op once closed.
    Write {
        /// Descriptor slot.
        slot: usize,
        /// Byte count.
        bytes: usize,
    },
    /// Reads everything pending on slot `slot`.
    Drain {
        /// Descriptor slot.
        slot: usize,
    },
    /// Closes a pipe's write end: its read end reports HANGUP from then on.
    CloseWriter {
        /// Descriptor slot (pipes only; socket slots ignore it).
        slot: usize,
    },
    /// Fault: closes the watched descriptor of slot `slot` without removing its watches, then
    /// opens a fresh one in its place (usually with the same number).
    CloseWatched {
        /// Descriptor slot.
        slot: usize,
    },
    /// One non-blocking iteration.
    RunOnce,
    /// Quit, then `run`: it must return after at most one iteration ([R47](anyloop::contract#r47)).
    QuitThenRun,
}

/// An operation and whether a foreign thread performs it (for vtable ops and quit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The operation.
    pub op: Op,
    /// Performed on a foreign thread (joined before the next step).
    pub foreign: bool,
}

fn on_loop(op: Op) -> Step {
    Step { op, foreign: false }
}

fn foreign(op: Op) -> Step {
    Step { op, foreign: true }
}

/// The generator of cases.
pub fn steps() -> impl Strategy<Value = Vec<Step>> {
    let interest = prop_oneof![
        Just(Interest::Empty),
        Just(Interest::Read),
        Just(Interest::Write),
        Just(Interest::Both)
    ];
    let period = prop_oneof![
        Just(Period::Zero),
        Just(Period::Once),
        Just(Period::Off),
        Just(Period::Hour)
    ];
    let on_fire = prop_oneof![
        3 => Just(OnFire::Nothing),
        1 => Just(OnFire::RemoveSelf),
        1 => Just(OnFire::DisableSelf)
    ];
    let index = 0..16usize;
    let op = prop_oneof![
        4 => (0..SLOTS, interest.clone(), on_fire.clone())
            .prop_map(|(slot, interest, on_fire)| Op::AddWatch { slot, interest, on_fire }),
        2 => (index.clone(), interest).prop_map(|(watch, interest)| Op::UpdateWatch { watch, interest }),
        2 => index.clone().prop_map(|watch| Op::RemoveWatch { watch }),
        3 => (period.clone(), on_fire).prop_map(|(period, on_fire)| Op::AddTimer { period, on_fire }),
        2 => (index.clone(), period).prop_map(|(timer, period)| Op::UpdateTimer { timer, period }),
        2 => index.prop_map(|timer| Op::RemoveTimer { timer }),
        3 => (0..SLOTS, 1..4usize).prop_map(|(slot, bytes)| Op::Write { slot, bytes }),
        2 => (0..SLOTS).prop_map(|slot| Op::Drain { slot }),
        1 => (0..SLOTS).prop_map(|slot| Op::CloseWriter { slot }),
        1 => (0..SLOTS).prop_map(|slot| Op::CloseWatched { slot }),
        8 => Just(Op::RunOnce),
        1 => Just(Op::QuitThenRun),
    ];
    let step = (op, prop::bool::weighted(0.25)).prop_map(|(op, foreign)| Step { op, foreign });
    prop::collection::vec(step, 1..MAX_STEPS)
}

/// Shrunk failures found by the random runs, kept as named cases (run before the random
/// ones, on every backend), plus hand-written cases for the paths that matter most. The
/// first two random failures (both fixed) are the reused-number case and the calloop one.
pub fn regressions() -> Vec<(&'static str, Vec<Step>)> {
    use Op::*;
    vec![
        (
            "self-removal, then remove and update of the dead id from a foreign thread",
            vec![
                on_loop(AddTimer {
                    period: Period::Zero,
                    on_fire: OnFire::RemoveSelf,
                }),
                on_loop(RunOnce),
                foreign(RemoveTimer { timer: 0 }),
                foreign(UpdateTimer {
                    timer: 0,
                    period: Period::Zero,
                }),
                on_loop(RunOnce),
                on_loop(RunOnce),
            ],
        ),
        (
            "watched fd closed and its number reused by the new watch's descriptor",
            vec![
                on_loop(AddWatch {
                    slot: 0,
                    interest: Interest::Read,
                    on_fire: OnFire::Nothing,
                }),
                on_loop(CloseWatched { slot: 0 }),
                on_loop(AddWatch {
                    slot: 0,
                    interest: Interest::Read,
                    on_fire: OnFire::Nothing,
                }),
                on_loop(Write { slot: 0, bytes: 1 }),
                on_loop(RunOnce),
                on_loop(RemoveWatch { watch: 0 }),
                on_loop(RunOnce),
                on_loop(Write { slot: 0, bytes: 1 }),
                on_loop(RunOnce),
            ],
        ),
        (
            "new watch on a reused fd number, enabled later by update",
            vec![
                on_loop(AddWatch {
                    slot: 0,
                    interest: Interest::Read,
                    on_fire: OnFire::Nothing,
                }),
                on_loop(CloseWatched { slot: 0 }),
                on_loop(AddWatch {
                    slot: 0,
                    interest: Interest::Empty,
                    on_fire: OnFire::Nothing,
                }),
                on_loop(Write { slot: 0, bytes: 1 }),
                foreign(UpdateWatch {
                    watch: 1,
                    interest: Interest::Read,
                }),
                on_loop(RunOnce),
                on_loop(RunOnce),
            ],
        ),
        (
            "calloop ran two engine iterations in one dispatch (shrunk)",
            vec![
                on_loop(AddWatch {
                    slot: 2,
                    interest: Interest::Write,
                    on_fire: OnFire::Nothing,
                }),
                on_loop(AddTimer {
                    period: Period::Zero,
                    on_fire: OnFire::Nothing,
                }),
                on_loop(RunOnce),
                on_loop(RunOnce),
                on_loop(RunOnce),
            ],
        ),
        (
            "hangup with data, self-disable, quit before run",
            vec![
                on_loop(AddWatch {
                    slot: 1,
                    interest: Interest::Write,
                    on_fire: OnFire::DisableSelf,
                }),
                on_loop(AddWatch {
                    slot: 1,
                    interest: Interest::Read,
                    on_fire: OnFire::Nothing,
                }),
                on_loop(Write { slot: 1, bytes: 2 }),
                on_loop(CloseWriter { slot: 1 }),
                on_loop(RunOnce),
                foreign(QuitThenRun),
                on_loop(Drain { slot: 1 }),
                on_loop(RunOnce),
            ],
        ),
        (
            "one-shots: fire once, re-armed by update from a foreign thread, self-disabled",
            vec![
                on_loop(AddTimer {
                    period: Period::Once,
                    on_fire: OnFire::Nothing,
                }),
                foreign(AddTimer {
                    period: Period::Once,
                    on_fire: OnFire::DisableSelf,
                }),
                on_loop(RunOnce),
                on_loop(RunOnce),
                foreign(UpdateTimer {
                    timer: 0,
                    period: Period::Once,
                }),
                on_loop(RunOnce),
                on_loop(RunOnce),
                on_loop(UpdateTimer {
                    timer: 1,
                    period: Period::Once,
                }),
                on_loop(RemoveTimer { timer: 0 }),
                on_loop(RunOnce),
                on_loop(RunOnce),
            ],
        ),
    ]
}

/// Runs the named regression cases, then `PROPTEST_CASES` random cases, on `backend`;
/// panics with the shrunk failing case.
pub fn check_backend(backend: &Arc<dyn LoopFactory>) {
    for (name, steps) in regressions() {
        if let Err(failure) = run_case(backend, &steps) {
            panic!(
                "{}: regression case {name:?} failed: {failure}\n{steps:#?}",
                backend.name()
            );
        }
    }
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let totals = Mutex::new(CaseStats::default());
    let result = runner.run(&steps(), |steps| {
        let stats = run_case(backend, &steps).map_err(TestCaseError::fail)?;
        lock(&totals).add(&stats);
        Ok(())
    });
    match result {
        Ok(()) => {
            let t = lock(&totals);
            // The figures RELIABILITY.md reports (visible with `--nocapture`).
            eprintln!(
                "model {}: {} cases, {} steps, {} iterations, {} callbacks, {} frees: all agree",
                backend.name(),
                t.cases,
                t.steps,
                t.iterations,
                t.callbacks,
                t.frees
            );
        }
        Err(TestError::Fail(reason, steps)) => panic!(
            "{}: model-based case failed: {reason}\nminimal failing case ({} steps):\n{steps:#?}",
            backend.name(),
            steps.len()
        ),
        Err(TestError::Abort(reason)) => panic!("{}: proptest aborted: {reason}", backend.name()),
    }
}

/// What a passing case did (summed over a run for the report).
#[derive(Debug, Clone, Copy, Default)]
pub struct CaseStats {
    /// Cases run.
    pub cases: u64,
    /// Steps executed.
    pub steps: u64,
    /// Loop iterations.
    pub iterations: u64,
    /// Callbacks observed (all matched the model).
    pub callbacks: u64,
    /// Frees observed (all exactly once, in time).
    pub frees: u64,
}

impl CaseStats {
    fn add(&mut self, other: &CaseStats) {
        self.cases += other.cases;
        self.steps += other.steps;
        self.iterations += other.iterations;
        self.callbacks += other.callbacks;
        self.frees += other.frees;
    }
}

/// Which registration an observation is about: watch or timer index in the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reg {
    Watch(usize),
    Timer(usize),
}

/// What the callbacks and frees write into the case's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A watch callback: index, its id and fd as received, the bits.
    Watch(usize, WatchId, RawFd, IoEvents),
    /// A timer callback: index, the id received.
    Timer(usize, TimerId),
    /// A free (drop of the callback state).
    Free(Reg),
}

type Trace = Arc<Mutex<Vec<Seen>>>;

/// Dropped with the callback state: records the free.
struct FreeMark {
    reg: Reg,
    trace: Trace,
}

impl Drop for FreeMark {
    fn drop(&mut self) {
        lock(&self.trace).push(Seen::Free(self.reg));
    }
}

/// A descriptor slot: the real descriptors and what the model knows about them.
struct Slot {
    socket: bool,
    watched: OwnedFd,
    /// The pipe's write end or the socket's peer; `None` once closed.
    other: Option<OwnedFd>,
    /// Bytes pending on the watched end.
    bytes: usize,
    /// Bumped on every reopen; watches added before it are "closed under"
    /// ([R52](anyloop::contract#r52)).
    generation: usize,
}

impl Slot {
    fn open(index: usize, generation: usize) -> Slot {
        if index < PIPES {
            let pipe = Pipe::new();
            Slot {
                socket: false,
                watched: pipe.rd,
                other: pipe.wr,
                bytes: 0,
                generation,
            }
        } else {
            let pair = SocketPair::new();
            Slot {
                socket: true,
                watched: pair.a,
                other: pair.b,
                bytes: 0,
                generation,
            }
        }
    }

    fn fd(&self) -> RawFd {
        self.watched.as_raw_fd()
    }

    /// What poll(2) reports for the watched end, from the model's knowledge.
    fn ready(&self) -> IoEvents {
        let mut ready = IoEvents::empty();
        if self.bytes > 0 {
            ready |= IoEvents::READABLE;
        }
        if self.socket {
            ready |= IoEvents::WRITABLE;
        } else if self.other.is_none() {
            ready |= IoEvents::HANGUP;
        }
        ready
    }
}

struct ModelWatch {
    id: WatchId,
    slot: usize,
    fd: RawFd,
    generation: usize,
    interest: IoEvents,
    on_fire: OnFire,
    /// Completed iterations when its remove returned, or the iteration its callback removed
    /// itself in.
    removed: Option<u64>,
}

struct ModelTimer {
    id: TimerId,
    period: Period,
    on_fire: OnFire,
    removed: Option<u64>,
}

/// One case: the loop (driven from its own thread), the descriptors and the model.
struct Case<'a> {
    ctx: &'a mut LoopCtx,
    lp: Loop,
    quit: anyloop::Quitter,
    trace: Trace,
    slots: Vec<Slot>,
    watches: Vec<ModelWatch>,
    timers: Vec<ModelTimer>,
    /// Iterations completed (the model's count).
    iterations: u64,
    /// How far into `trace` the checks have read.
    read: usize,
    /// Frees seen per registration.
    freed: BTreeMap<Reg, usize>,
}

/// Runs one case on a fresh loop of `backend`; `Err` describes the first disagreement.
pub fn run_case(backend: &Arc<dyn LoopFactory>, steps: &[Step]) -> Result<CaseStats, String> {
    let driver = Driver::start(backend);
    let lp = driver.lp().clone();
    let quit = driver.quitter();
    let steps = steps.to_vec();
    let outcome = driver
        .spawn(move |ctx| {
            let trace: Trace = Arc::default();
            let mut case = Case {
                ctx,
                lp,
                quit,
                trace,
                slots: (0..SLOTS).map(|i| Slot::open(i, 0)).collect(),
                watches: Vec::new(),
                timers: Vec::new(),
                iterations: 0,
                read: 0,
                freed: BTreeMap::new(),
            };
            for (n, step) in steps.iter().enumerate() {
                case.step(*step)
                    .map_err(|e| format!("step {n} {step:?}: {e}"))?;
            }
            case.finish(steps.len())
        })
        .wait_for(crate::driver::TIMEOUT * 4);
    let outcome = outcome.unwrap_or_else(|| Err("the case hung (deadlock or lost wake-up)".into()));
    let violations = driver.monitor().violations();
    drop(driver);
    let stats = outcome?;
    if violations.is_empty() {
        Ok(stats)
    } else {
        Err(format!("contract violations: {violations:?}"))
    }
}

/// Runs `f` on a foreign thread (joined) when `foreign`, else here.
fn perform<R: Send>(foreign: bool, f: impl FnOnce() -> R + Send) -> R {
    if foreign {
        thread::scope(|s| s.spawn(f).join().expect("foreign op panicked"))
    } else {
        f()
    }
}

fn expect_result(what: &str, got: anyloop::Result<()>, live: bool) -> Result<(), String> {
    match (got, live) {
        (Ok(()), true) | (Err(Error::NotFound { .. }), false) => Ok(()),
        (got, true) => Err(format!("{what} of a live registration: {got:?}, want Ok")),
        (got, false) => Err(format!(
            "{what} of a removed registration: {got:?}, want NotFound (R3, R4)"
        )),
    }
}

impl Case<'_> {
    fn step(&mut self, step: Step) -> Result<(), String> {
        let foreign = step.foreign;
        match step.op {
            Op::AddWatch {
                slot,
                interest,
                on_fire,
            } => self.add_watch(foreign, slot, interest, on_fire)?,
            Op::UpdateWatch { watch, interest } => {
                let Some(w) = self.pick_watch(watch) else {
                    return Ok(());
                };
                let (id, live) = (self.watches[w].id, self.watches[w].removed.is_none());
                let lp = self.lp.clone();
                let got = perform(foreign, move || lp.update_watch(id, interest.events()));
                if live && self.closed_under(w) {
                    // R52: the substrate may refuse the dead descriptor; either way, no panic.
                    if got.is_ok() {
                        self.watches[w].interest = interest.events();
                    }
                } else {
                    expect_result("update_watch", got, live)?;
                    if live {
                        self.watches[w].interest = interest.events();
                    }
                }
            }
            Op::RemoveWatch { watch } => {
                let Some(w) = self.pick_watch(watch) else {
                    return Ok(());
                };
                let (id, live) = (self.watches[w].id, self.watches[w].removed.is_none());
                let lp = self.lp.clone();
                let got = perform(foreign, move || lp.remove_watch(id));
                expect_result("remove_watch", got, live)?;
                if live {
                    self.watches[w].removed = Some(self.iterations);
                }
            }
            Op::AddTimer { period, on_fire } => self.add_timer(foreign, period, on_fire)?,
            Op::UpdateTimer { timer, period } => {
                let Some(t) = pick(timer, self.timers.len()) else {
                    return Ok(());
                };
                let (id, live) = (self.timers[t].id, self.timers[t].removed.is_none());
                let lp = self.lp.clone();
                let got = perform(foreign, move || lp.update_timer(id, period.schedule()));
                expect_result("update_timer", got, live)?;
                if live {
                    self.timers[t].period = period;
                }
            }
            Op::RemoveTimer { timer } => {
                let Some(t) = pick(timer, self.timers.len()) else {
                    return Ok(());
                };
                let (id, live) = (self.timers[t].id, self.timers[t].removed.is_none());
                let lp = self.lp.clone();
                let got = perform(foreign, move || lp.remove_timer(id));
                expect_result("remove_timer", got, live)?;
                if live {
                    self.timers[t].removed = Some(self.iterations);
                }
            }
            Op::Write { slot, bytes } => {
                let s = &mut self.slots[slot];
                if let Some(other) = &s.other {
                    write_bytes(other, bytes);
                    s.bytes += bytes;
                }
            }
            Op::Drain { slot } => {
                let s = &mut self.slots[slot];
                let got = drain(s.fd());
                if got != s.bytes {
                    return Err(format!("drained {got} bytes, the model wrote {}", s.bytes));
                }
                s.bytes = 0;
            }
            Op::CloseWriter { slot } => {
                if !self.slots[slot].socket {
                    self.slots[slot].other = None;
                }
            }
            Op::CloseWatched { slot } => {
                // Close first, then open: the new descriptor usually takes the old number.
                let old = self.slots.remove(slot);
                let generation = old.generation + 1;
                drop(old);
                self.slots.insert(slot, Slot::open(slot, generation));
            }
            Op::RunOnce => {
                let got = self.ctx.run_once(Some(Duration::ZERO));
                if let Err(err) = got {
                    return Err(format!("run_once failed: {err}"));
                }
                self.iterate()?;
            }
            Op::QuitThenRun => {
                let quit = self.quit.clone();
                perform(foreign, move || quit.quit());
                let before = self.ctx.stats().iterations;
                self.ctx.run().map_err(|e| format!("run failed: {e}"))?;
                let ran = self.ctx.stats().iterations - before;
                if ran > 1 {
                    return Err(format!(
                        "run after quit made {ran} iterations, want at most one (R47)"
                    ));
                }
                if ran == 1 {
                    self.iterate()?;
                } else {
                    self.check_trace_quiet()?;
                }
            }
        }
        self.check_frees()?;
        self.check_schedules()
    }

    /// [R27](anyloop::contract#r27): every timer's schedule as the loop reports it: the model's,
    /// with a fired `Once` reading `Disabled`; `NotFound` once removed
    /// ([R3](anyloop::contract#r3)).
    fn check_schedules(&self) -> Result<(), String> {
        for (t, timer) in self.timers.iter().enumerate() {
            let got = self.lp.timer_schedule(timer.id);
            match (timer.removed, got) {
                (None, Ok(schedule)) if schedule == timer.period.schedule() => {}
                (Some(_), Err(Error::NotFound { .. })) => {}
                (None, got) => {
                    return Err(format!(
                        "timer {t}: timer_schedule gave {got:?}, the model wants {:?} (R27)",
                        timer.period.schedule()
                    ))
                }
                (Some(_), got) => {
                    return Err(format!(
                        "removed timer {t}: timer_schedule gave {got:?}, want NotFound (R3)"
                    ))
                }
            }
        }
        Ok(())
    }

    fn pick_watch(&self, index: usize) -> Option<usize> {
        pick(index, self.watches.len())
    }

    /// True when the watch's descriptor was closed (and reopened) under it.
    fn closed_under(&self, w: usize) -> bool {
        let watch = &self.watches[w];
        self.slots[watch.slot].generation != watch.generation
    }

    fn add_watch(
        &mut self,
        foreign: bool,
        slot: usize,
        interest: Interest,
        on_fire: OnFire,
    ) -> Result<(), String> {
        let index = self.watches.len();
        let fd = self.slots[slot].fd();
        let mark = FreeMark {
            reg: Reg::Watch(index),
            trace: self.trace.clone(),
        };
        let (trace, lp) = (self.trace.clone(), self.lp.clone());
        let callback = move |id: WatchId, fd: RawFd, events: IoEvents| {
            let _ = &mark;
            lock(&trace).push(Seen::Watch(index, id, fd, events));
            match on_fire {
                OnFire::Nothing => {}
                OnFire::RemoveSelf => lp.remove_watch(id).expect("self-removal failed"),
                OnFire::DisableSelf => lp
                    .update_watch(id, IoEvents::empty())
                    .expect("self-disable failed"),
            }
        };
        let lp = self.lp.clone();
        let id = perform(foreign, move || {
            lp.add_watch(fd, interest.events(), callback)
                .map_err(|rejected| rejected.to_string())
        })
        .map_err(|e| format!("add_watch failed: {e}"))?;
        if self.watches.iter().any(|w| w.id == id) {
            return Err(format!("R1: id {id} handed out twice"));
        }
        self.watches.push(ModelWatch {
            id,
            slot,
            fd,
            generation: self.slots[slot].generation,
            interest: interest.events(),
            on_fire,
            removed: None,
        });
        Ok(())
    }

    fn add_timer(&mut self, foreign: bool, period: Period, on_fire: OnFire) -> Result<(), String> {
        let index = self.timers.len();
        let mark = FreeMark {
            reg: Reg::Timer(index),
            trace: self.trace.clone(),
        };
        let (trace, lp) = (self.trace.clone(), self.lp.clone());
        let callback = move |id: TimerId| {
            let _ = &mark;
            lock(&trace).push(Seen::Timer(index, id));
            match on_fire {
                OnFire::Nothing => {}
                OnFire::RemoveSelf => lp.remove_timer(id).expect("self-removal failed"),
                OnFire::DisableSelf => lp
                    .update_timer(id, Schedule::Disabled)
                    .expect("self-disable failed"),
            }
        };
        let lp = self.lp.clone();
        let id = perform(foreign, move || {
            lp.add_timer(period.schedule(), callback)
                .map_err(|rejected| rejected.to_string())
        })
        .map_err(|e| format!("add_timer failed: {e}"))?;
        if self.timers.iter().any(|t| t.id == id) {
            return Err(format!("R1: id {id} handed out twice"));
        }
        self.timers.push(ModelTimer {
            id,
            period,
            on_fire,
            removed: None,
        });
        Ok(())
    }

    /// New trace entries since the last read.
    fn unread(&mut self) -> Vec<Seen> {
        let trace = lock(&self.trace);
        let new = trace[self.read..].to_vec();
        self.read = trace.len();
        new
    }

    /// Counts frees in `seen` and returns the callback entries.
    fn count_frees(&mut self, seen: Vec<Seen>) -> Result<Vec<Seen>, String> {
        let mut calls = Vec::new();
        for entry in seen {
            match entry {
                Seen::Free(reg) => {
                    let removed = match reg {
                        Reg::Watch(w) => self.watches[w].removed,
                        Reg::Timer(t) => self.timers[t].removed,
                    };
                    if removed.is_none() {
                        return Err(format!("{reg:?} freed while still registered (R21)"));
                    }
                    let n = self.freed.entry(reg).or_default();
                    *n += 1;
                    if *n > 1 {
                        return Err(format!("{reg:?} freed twice (R23)"));
                    }
                }
                call => {
                    let reg = match call {
                        Seen::Watch(w, ..) => Reg::Watch(w),
                        Seen::Timer(t, _) => Reg::Timer(t),
                        Seen::Free(_) => unreachable!(),
                    };
                    if self.freed.contains_key(&reg) {
                        return Err(format!("{reg:?} called after its free ran (R16, R22)"));
                    }
                    calls.push(call);
                }
            }
        }
        Ok(calls)
    }

    /// Outside an iteration no callback may run ([R42](anyloop::contract#r42)).
    fn check_trace_quiet(&mut self) -> Result<(), String> {
        let seen = self.unread();
        let calls = self.count_frees(seen)?;
        if calls.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "callbacks ran outside an iteration (R42): {calls:?}"
            ))
        }
    }

    /// One iteration of the model, compared with what the loop did.
    fn iterate(&mut self) -> Result<(), String> {
        self.iterations += 1;
        let this = self.iterations;
        let mut want: Vec<(Reg, IoEvents)> = Vec::new();
        let mut lax: Vec<usize> = Vec::new();
        for (w, watch) in self.watches.iter().enumerate() {
            if watch.removed.is_some() || watch.interest.is_empty() {
                continue; // R10, R15: silent, even on a closed descriptor
            }
            if self.slots[watch.slot].generation != watch.generation {
                lax.push(w); // R52: its descriptor was closed under it: delivery is open
                continue;
            }
            let ready = self.slots[watch.slot].ready();
            let bits = (ready & watch.interest) | (ready & IoEvents::ALWAYS_REPORTED);
            if !bits.is_empty() {
                want.push((Reg::Watch(w), bits));
            }
        }
        for (t, timer) in self.timers.iter().enumerate() {
            if timer.removed.is_none() && timer.period.due() {
                want.push((Reg::Timer(t), IoEvents::empty()));
            }
        }
        // What ran, checked against the model. Self-removals happened inside the callbacks,
        // before their frees: mark them first, so the frees that follow are in order.
        let seen = self.unread();
        for entry in &seen {
            match *entry {
                Seen::Watch(w, ..) if self.watches[w].on_fire == OnFire::RemoveSelf => {
                    self.watches[w].removed.get_or_insert(this);
                }
                Seen::Timer(t, _) if self.timers[t].on_fire == OnFire::RemoveSelf => {
                    self.timers[t].removed.get_or_insert(this);
                }
                _ => {}
            }
        }
        let calls = self.count_frees(seen)?;
        let mut got: Vec<(Reg, IoEvents)> = Vec::new();
        let mut lax_called: Vec<usize> = Vec::new();
        for call in calls {
            match call {
                Seen::Watch(w, id, fd, events) => {
                    let watch = &self.watches[w];
                    if id != watch.id || fd != watch.fd {
                        return Err(format!(
                            "watch {w} called with id {id} fd {fd}, want {} fd {} (R13)",
                            watch.id, watch.fd
                        ));
                    }
                    if watch.removed.is_some_and(|at| at < this) {
                        return Err(format!("removed watch {w} called (R15)"));
                    }
                    if lax.contains(&w) {
                        let allowed = watch.interest | IoEvents::ALWAYS_REPORTED;
                        if events.is_empty() || !allowed.contains(events) {
                            return Err(format!(
                                "watch {w} on a closed fd got {events:?} (R9, R52)"
                            ));
                        }
                        lax_called.push(w);
                        continue;
                    }
                    got.push((Reg::Watch(w), events));
                }
                Seen::Timer(t, id) => {
                    if id != self.timers[t].id {
                        return Err(format!("timer {t} called with id {id} (R13)"));
                    }
                    got.push((Reg::Timer(t), IoEvents::empty()));
                }
                Seen::Free(_) => unreachable!(),
            }
        }
        got.sort_by_key(|(reg, bits)| (*reg, bits.bits()));
        want.sort_by_key(|(reg, bits)| (*reg, bits.bits()));
        if got != want {
            return Err(format!(
                "iteration {this}: callbacks {got:?}, the model wants {want:?}"
            ));
        }
        // The callbacks' own actions, as the model applies them.
        for (reg, _) in want {
            match reg {
                Reg::Watch(w) => match self.watches[w].on_fire {
                    OnFire::Nothing => {}
                    OnFire::RemoveSelf => self.watches[w].removed = Some(this),
                    OnFire::DisableSelf => self.watches[w].interest = IoEvents::empty(),
                },
                Reg::Timer(t) => {
                    // R27: a one-shot is disabled as it fires, before its callback acts.
                    if self.timers[t].period == Period::Once {
                        self.timers[t].period = Period::Off;
                    }
                    match self.timers[t].on_fire {
                        OnFire::Nothing => {}
                        OnFire::RemoveSelf => self.timers[t].removed = Some(this),
                        OnFire::DisableSelf => self.timers[t].period = Period::Off,
                    }
                }
            }
        }
        // Closed-under watches that did run act on themselves too.
        for w in lax_called {
            match self.watches[w].on_fire {
                OnFire::Nothing => {}
                OnFire::RemoveSelf => self.watches[w].removed = Some(this),
                OnFire::DisableSelf => self.watches[w].interest = IoEvents::empty(),
            }
        }
        Ok(())
    }

    /// [R25](anyloop::contract#r25): the free of a registration removed before iteration `k` ended
    /// (or during it) has run by the end of iteration `k + 1`.
    fn check_frees(&mut self) -> Result<(), String> {
        let seen = self.unread();
        let calls = self.count_frees(seen)?;
        if !calls.is_empty() {
            return Err(format!(
                "callbacks ran outside an iteration (R42): {calls:?}"
            ));
        }
        let removed = self
            .watches
            .iter()
            .enumerate()
            .filter_map(|(w, x)| x.removed.map(|at| (Reg::Watch(w), at)))
            .chain(
                self.timers
                    .iter()
                    .enumerate()
                    .filter_map(|(t, x)| x.removed.map(|at| (Reg::Timer(t), at))),
            );
        for (reg, at) in removed {
            if self.iterations > at && !self.freed.contains_key(&reg) {
                return Err(format!(
                    "{reg:?} removed by iteration {at} is not freed after iteration {} (R25)",
                    self.iterations
                ));
            }
        }
        Ok(())
    }

    /// Destroys the loop: every registration is freed exactly once ([R23](anyloop::contract#r23),
    /// [R48](anyloop::contract#r48)).
    fn finish(mut self, steps: usize) -> Result<CaseStats, String> {
        self.ctx.destroy();
        for watch in &mut self.watches {
            watch.removed.get_or_insert(u64::MAX);
        }
        for timer in &mut self.timers {
            timer.removed.get_or_insert(u64::MAX);
        }
        let seen = self.unread();
        let calls = self.count_frees(seen)?;
        if !calls.is_empty() {
            return Err(format!("callbacks ran during destruction: {calls:?}"));
        }
        let all = (0..self.watches.len())
            .map(Reg::Watch)
            .chain((0..self.timers.len()).map(Reg::Timer));
        for reg in all {
            if self.freed.get(&reg) != Some(&1) {
                return Err(format!(
                    "{reg:?} freed {:?} times after destruction, want once (R23, R48)",
                    self.freed.get(&reg)
                ));
            }
        }
        let trace = lock(&self.trace);
        Ok(CaseStats {
            cases: 1,
            steps: steps as u64,
            iterations: self.iterations,
            callbacks: trace.iter().filter(|s| !matches!(s, Seen::Free(_))).count() as u64,
            frees: trace.iter().filter(|s| matches!(s, Seen::Free(_))).count() as u64,
        })
    }
}

fn pick(index: usize, len: usize) -> Option<usize> {
    (len > 0).then(|| index % len)
}

/// The model-based property test (named regressions, then `PROPTEST_CASES` random cases).
pub fn m01_random_op_sequences_match_the_model_r03_r08_r15_r21_r25_r27_r52(env: &Env) {
    check_backend(env.backend());
}
