//! Thread stress: several threads add, update and remove watches and timers on one loop
//! while it dispatches, with signals interrupting its poll, and invariants checked throughout
//! and at the end.
//!
//! The loop thread blocks in `run_once(None)` (no tick): only wake-ups move it, so a lost wake-up
//! shows as a hang, which the hang guards turn into a failure ([R40](anyloop::contract#r40)).
//! Workers check every operation's result; callbacks check that they never start in an iteration
//! after their remove returned ([R15](anyloop::contract#r15): one dispatch already claimed when a
//! foreign remove lands may still start, nothing later); "pings" (a 0-interval timer added from a
//! worker, which must fire) check that the loop keeps answering; the harness checks that every
//! callback state was freed exactly once, on the loop thread, never inside an operation
//! ([R21–R24](anyloop::contract#r21)).
//!
//! Size: `ANYLOOP_STRESS_OPS` operations per worker (default [`DEFAULT_OPS`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{Error, IoEvents, Loop, Schedule, TimerId, WatchId};

use crate::driver::TIMEOUT;
use crate::fds::{drain, Pipe};
use crate::probe::Log;
use crate::runner::Env;
use crate::scenarios::bad_input::install_noop_sigusr2;

/// Operations per worker thread when `ANYLOOP_STRESS_OPS` is not set: sized for CI.
pub const DEFAULT_OPS: usize = 5000;

const WORKERS: usize = 4;
const PIPES: usize = 4;
const NOT_REMOVED: u64 = u64::MAX;
/// Registrations one worker keeps alive at most.
const MAX_LIVE: usize = 48;

/// A small deterministic generator (xorshift64*), seeded per worker so a failure names its
/// seed; no dependency needed for this.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What a registration's callback and its owner share.
struct RegState {
    /// The kit's iteration count read right after the remove returned (`NOT_REMOVED` before).
    removed_at: AtomicU64,
    /// The callback removed itself: the owner's later remove/update get NotFound.
    self_removed: AtomicBool,
}

impl RegState {
    fn new() -> Arc<RegState> {
        Arc::new(RegState {
            removed_at: AtomicU64::new(NOT_REMOVED),
            self_removed: AtomicBool::new(false),
        })
    }
}

#[derive(Clone, Copy)]
enum Id {
    Watch(WatchId),
    Timer(TimerId),
}

/// Shared by the workers, the callbacks and the scenario.
#[derive(Clone)]
struct Ctx {
    lp: Loop,
    iterations: Arc<AtomicU64>,
    violations: Arc<Log<String>>,
    callbacks: Arc<AtomicUsize>,
    pipes: Arc<Vec<Pipe>>,
}

impl Ctx {
    /// Called first by every callback: [R15](anyloop::contract#r15) against the owner's remove.
    fn check_not_removed(&self, what: &str, state: &RegState) {
        let now = self.iterations.load(Ordering::SeqCst);
        let removed_at = state.removed_at.load(Ordering::SeqCst);
        if removed_at != NOT_REMOVED && now > removed_at {
            self.violations.push(format!(
                "R15: {what} started in iteration {now}, its remove returned during {removed_at}"
            ));
        }
        self.callbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// A 0-interval timer that removes itself and reports; it must fire while the loop is blocked
    /// ([R40](anyloop::contract#r40)). Returns false on timeout (a lost wake-up or a deadlock).
    fn ping(&self) -> bool {
        let (tx, rx) = mpsc::channel();
        let lp = self.lp.clone();
        let added = self.lp.add_timer(Schedule::EVERY_ITERATION, move |id| {
            let _ = lp.remove_timer(id);
            let _ = tx.send(());
        });
        added.is_ok() && rx.recv_timeout(TIMEOUT).is_ok()
    }
}

/// What one worker did.
#[derive(Debug, Default, Clone, Copy)]
struct WorkerReport {
    ops: usize,
    pings: usize,
}

fn expect_ok_or_self_removed(ctx: &Ctx, what: &str, got: anyloop::Result<()>, state: &RegState) {
    match got {
        Ok(()) => {}
        Err(Error::NotFound { .. }) if state.self_removed.load(Ordering::SeqCst) => {}
        Err(err) => ctx.violations.push(format!("{what}: {err}")),
    }
}

fn worker(ctx: Ctx, env_tokens: Vec<crate::probe::Token>, seed: u64, ops: usize) -> WorkerReport {
    let mut rng = Rng(seed | 1);
    let mut live: Vec<(Id, Arc<RegState>)> = Vec::new();
    let mut tokens = env_tokens.into_iter();
    let mut report = WorkerReport::default();
    for _ in 0..ops {
        report.ops += 1;
        // A bounded live set keeps long runs linear: past it, adds become removes.
        let mut pick = rng.below(20);
        if live.len() >= MAX_LIVE && pick <= 8 {
            pick = 12;
        }
        match pick {
            // Add a watch (a token per registration: the harness checks its free).
            0..=4 => {
                let Some(token) = tokens.next() else { continue };
                let state = RegState::new();
                let pipe = rng.below(PIPES);
                let fd = ctx.pipes[pipe].fd();
                let interest = [
                    IoEvents::READABLE,
                    IoEvents::empty(),
                    IoEvents::READABLE | IoEvents::WRITABLE,
                ][rng.below(3)];
                let remove_self = rng.below(6) == 0;
                let (c, s, lp) = (ctx.clone(), state.clone(), ctx.lp.clone());
                let added = ctx.lp.add_watch(fd, interest, move |id, fd, _| {
                    let _ = &token;
                    c.check_not_removed("a watch", &s);
                    drain(fd); // EAGAIN tolerated: another watch may have drained it (R14)
                    if remove_self {
                        // Flagged first: the owner may see NotFound as soon as it returns.
                        s.self_removed.store(true, Ordering::SeqCst);
                        if lp.remove_watch(id).is_ok() {
                            // Strict at once on the loop thread (R15).
                            let now = c.iterations.load(Ordering::SeqCst);
                            s.removed_at.store(now, Ordering::SeqCst);
                        }
                    }
                });
                match added {
                    Ok(id) => live.push((Id::Watch(id), state)),
                    Err(err) => ctx.violations.push(format!("add_watch: {err}")),
                }
            }
            // Add a timer: every iteration, every 1 ms, disabled, every hour, or once.
            5..=8 => {
                let Some(token) = tokens.next() else { continue };
                let state = RegState::new();
                let interval = [
                    Schedule::EVERY_ITERATION,
                    Schedule::Every(Duration::from_millis(1)),
                    Schedule::Disabled,
                    Schedule::Every(Duration::from_secs(3600)),
                    Schedule::Once(Duration::from_millis(1)),
                ][rng.below(5)];
                let action = rng.below(4); // 0: remove itself, 1: disable itself, else nothing
                let (c, s, lp) = (ctx.clone(), state.clone(), ctx.lp.clone());
                let added = ctx.lp.add_timer(interval, move |id| {
                    let _ = &token;
                    c.check_not_removed("a timer", &s);
                    if action == 0 {
                        s.self_removed.store(true, Ordering::SeqCst);
                        if lp.remove_timer(id).is_ok() {
                            let now = c.iterations.load(Ordering::SeqCst);
                            s.removed_at.store(now, Ordering::SeqCst);
                        }
                    } else if action == 1 {
                        let _ = lp.update_timer(id, Schedule::Disabled);
                    }
                });
                match added {
                    Ok(id) => live.push((Id::Timer(id), state)),
                    Err(err) => ctx.violations.push(format!("add_timer: {err}")),
                }
            }
            // Update one of ours.
            9..=11 => {
                if live.is_empty() {
                    continue;
                }
                let (id, state) = &live[rng.below(live.len())];
                let got = match *id {
                    Id::Watch(id) => ctx.lp.update_watch(
                        id,
                        [IoEvents::empty(), IoEvents::READABLE, IoEvents::WRITABLE][rng.below(3)],
                    ),
                    Id::Timer(id) => ctx.lp.update_timer(
                        id,
                        [
                            Schedule::Disabled,
                            Schedule::EVERY_ITERATION,
                            Schedule::Every(Duration::from_millis(2)),
                            Schedule::Once(Duration::ZERO),
                        ][rng.below(4)],
                    ),
                };
                expect_ok_or_self_removed(&ctx, "update", got, state);
            }
            // Remove one of ours.
            12..=15 => {
                if live.is_empty() {
                    continue;
                }
                let (id, state) = live.swap_remove(rng.below(live.len()));
                let got = match id {
                    Id::Watch(id) => ctx.lp.remove_watch(id),
                    Id::Timer(id) => ctx.lp.remove_timer(id),
                };
                if got.is_ok() {
                    let now = ctx.iterations.load(Ordering::SeqCst);
                    let _ = state.removed_at.compare_exchange(
                        NOT_REMOVED,
                        now,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                }
                expect_ok_or_self_removed(&ctx, "remove", got, &state);
            }
            // Make a pipe readable.
            16..=18 => ctx.pipes[rng.below(PIPES)].write(1),
            // The loop still answers.
            _ => {
                report.pings += 1;
                if !ctx.ping() {
                    ctx.violations
                        .push("R40: a ping timer never fired (lost wake-up or deadlock)".into());
                    break;
                }
            }
        }
    }
    for (id, state) in live {
        let got = match id {
            Id::Watch(id) => ctx.lp.remove_watch(id),
            Id::Timer(id) => ctx.lp.remove_timer(id),
        };
        if got.is_ok() {
            let now = ctx.iterations.load(Ordering::SeqCst);
            let _ = state.removed_at.compare_exchange(
                NOT_REMOVED,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        expect_ok_or_self_removed(&ctx, "final remove", got, &state);
    }
    report
}

/// Sends SIGUSR2 to the loop thread every few milliseconds until dropped (then joined, so it
/// never signals a thread that may have exited).
struct Signaller {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Signaller {
    fn start(target: libc::pthread_t) -> Signaller {
        install_noop_sigusr2();
        let (stop, sent) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s, n) = (stop.clone(), sent.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(3));
                // SAFETY: the loop thread is alive: the scenario's driver outlives this
                // signaller, which stops and joins this thread when dropped.
                unsafe { libc::pthread_kill(target, libc::SIGUSR2) };
                n.fetch_add(1, Ordering::Relaxed);
            }
        });
        Signaller {
            stop,
            sent,
            thread: Some(thread),
        }
    }
}

impl Drop for Signaller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Stress: four threads churn registrations (add, update, remove, self-removal in callbacks,
/// writes, pings) on a loop that blocks in `run_once(None)` and is interrupted by signals; nothing
/// runs after its remove, no wake-up is lost, no deadlock, every free runs exactly once, the loop
/// ends empty ([R15](anyloop::contract#r15), [R22](anyloop::contract#r22),
/// [R23](anyloop::contract#r23), [R39](anyloop::contract#r39), [R40](anyloop::contract#r40),
/// [R44](anyloop::contract#r44), [R55](anyloop::contract#r55)).
pub fn t01_threads_churn_while_loop_blocks_and_signals_r15_r23_r39_r40_r55(env: &Env) {
    let ops: usize = std::env::var("ANYLOOP_STRESS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_OPS);
    let d = env.start();
    let ctx = Ctx {
        lp: d.lp().clone(),
        iterations: d.iteration_counter(),
        violations: Arc::new(Log::new()),
        callbacks: Arc::new(AtomicUsize::new(0)),
        pipes: Arc::new((0..PIPES).map(|_| Pipe::new()).collect()),
    };
    let loop_pthread = d.on_loop(|_| {
        // SAFETY: pthread_self has no preconditions.
        unsafe { libc::pthread_self() }
    });
    let done = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Log::new());
    let (dn, errs) = (done.clone(), errors.clone());
    let looping = d.spawn(move |lctx| {
        while !dn.load(Ordering::SeqCst) {
            if let Err(err) = lctx.run_once(None) {
                errs.push(err.to_string());
            }
        }
    });
    let signaller = Signaller::start(loop_pthread);
    let start = Instant::now();
    let seed0 = std::env::var("ANYLOOP_STRESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) ^ start.elapsed().as_nanos() as u64);
    let (report_tx, report_rx) = mpsc::channel();
    for w in 0..WORKERS {
        // Tokens are made here: the harness then checks each was freed exactly once.
        let tokens: Vec<_> = (0..ops).map(|i| env.token(format!("w{w}-{i}"))).collect();
        let (ctx, tx) = (ctx.clone(), report_tx.clone());
        let seed = seed0.wrapping_add(w as u64 * 0x9E37_79B9);
        thread::spawn(move || {
            let report = worker(ctx, tokens, seed, ops);
            let _ = tx.send(report);
        });
    }
    drop(report_tx);
    // Hang guard for the whole run: generous, never a speed assertion; inside the kit's
    // watchdog (which grows under valgrind), so that this message, with the seed, is the one
    // a hang gets.
    let deadline = Instant::now()
        + crate::watchdog()
            .saturating_sub(TIMEOUT * 2)
            .max(TIMEOUT * 6);
    let mut reports = Vec::new();
    while reports.len() < WORKERS {
        let left = deadline.saturating_duration_since(Instant::now());
        match report_rx.recv_timeout(left) {
            Ok(report) => reports.push(report),
            Err(_) => panic!(
                "{}: R39/R40: stress workers did not finish (deadlock or lost wake-up?) with seed \
                 {seed0}; violations: {:?}",
                d.name(),
                ctx.violations.snapshot()
            ),
        }
    }
    // Everything is removed now; the loop blocks with nothing registered: a last ping from
    // here must still wake it.
    assert!(ctx.ping(), "R40: the final ping never fired (seed {seed0})");
    let signals = signaller.sent.load(Ordering::Relaxed);
    drop(signaller);
    done.store(true, Ordering::SeqCst);
    // Any op from this thread wakes the blocked loop, which then sees `done` (a ping would
    // not do: the job may end before the ping's timer runs).
    let wake = ctx.lp.add_timer(Schedule::Disabled, |_| {}).expect("add");
    ctx.lp.remove_timer(wake).expect("remove");
    looping
        .wait_for(TIMEOUT)
        .unwrap_or_else(|| panic!("{}: the loop job did not end", d.name()));
    let violations = ctx.violations.snapshot();
    assert!(
        violations.is_empty(),
        "{}: stress (seed {seed0}): {} violations, first: {:?}",
        d.name(),
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert!(
        errors.is_empty(),
        "{}: run_once failed during the stress (R55: EINTR must be retried): {:?}",
        d.name(),
        errors.snapshot()
    );
    d.on_loop(|lctx| lctx.turns(2));
    let stats = d.stats();
    assert_eq!(
        (stats.watches, stats.timers, stats.pending_frees),
        (0, 0, 0),
        "{}: the loop did not end empty: {stats:?}",
        d.name()
    );
    let total_ops: usize = reports.iter().map(|r| r.ops).sum();
    let pings: usize = reports.iter().map(|r| r.pings).sum();
    // The figures RELIABILITY.md reports (visible with `--nocapture`).
    eprintln!(
        "stress {}: {WORKERS} threads, {total_ops} ops ({pings} pings), {signals} signals, {} callbacks, {} iterations, {:?}",
        d.name(),
        ctx.callbacks.load(Ordering::Relaxed),
        d.iterations(),
        start.elapsed()
    );
}

/// Fault: a callback blocks for a long while (until the test thread lets it go). Meanwhile another
/// thread makes 300 operations on the loop, which all return without waiting for it
/// ([R43](anyloop::contract#r43), [R44](anyloop::contract#r44)); a 5 ms periodic timer due many
/// times over fires once afterwards, not once per missed period ([R30](anyloop::contract#r30)); a
/// 0-interval timer added during the block fires in a later iteration; the blocked watch's own
/// registration, removed meanwhile, is freed only after the callback returns and never started
/// again ([R15](anyloop::contract#r15), [R22](anyloop::contract#r22)).
pub fn t02_long_blocking_callback_ops_proceed_no_catch_up_r15_r22_r30_r44(env: &Env) {
    let d = env.start_pumped();
    let pipe = Pipe::new();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (runs, token) = (Arc::new(AtomicUsize::new(0)), env.token("blocked"));
    let (r, probe) = (runs.clone(), env.probe().clone());
    let freed_inside = Arc::new(AtomicBool::new(false));
    let fi = freed_inside.clone();
    let blocked = d
        .lp()
        .add_watch(pipe.fd(), IoEvents::READABLE, move |_, _, _| {
            let _ = &token;
            if r.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = entered_tx.send(());
                let _ = release_rx.recv_timeout(TIMEOUT * 2);
                fi.store(probe.count("blocked") > 0, Ordering::SeqCst);
            }
        })
        .expect("add");
    let (ticks, token) = (Arc::new(Log::new()), env.token("ticker"));
    let (t, iterations) = (ticks.clone(), d.iteration_counter());
    let ticker = d
        .lp()
        .add_timer(Schedule::Every(Duration::from_millis(5)), move |_| {
            let _ = &token;
            t.push(iterations.load(Ordering::SeqCst));
        })
        .expect("add ticker");
    pipe.write(1); // never read: a second start would show
    entered_rx
        .recv_timeout(TIMEOUT)
        .expect("the callback never started");
    let ticks_before = ticks.len();
    // 300 operations from another thread while the loop thread is stuck in the callback.
    let (lp, tokens): (Loop, Vec<_>) = (
        d.lp().clone(),
        (0..100).map(|i| env.token(format!("op{i}"))).collect(),
    );
    let (ops_tx, ops_rx) = mpsc::channel();
    let zero_fired = Arc::new(AtomicBool::new(false));
    let zf = zero_fired.clone();
    thread::spawn(move || {
        for token in tokens {
            let id = lp
                .add_timer(Schedule::Every(Duration::from_secs(3600)), move |_| {
                    let _ = &token;
                })
                .expect("add");
            lp.update_timer(id, Schedule::Disabled).expect("update");
            lp.remove_timer(id).expect("remove");
        }
        let zero = lp
            .add_timer(Schedule::EVERY_ITERATION, move |_| {
                zf.store(true, Ordering::SeqCst)
            })
            .expect("add zero timer");
        let removed = lp.remove_watch(blocked).map_err(|e| e.to_string());
        let _ = ops_tx.send((zero, removed));
    });
    let (zero, removed) = ops_rx
        .recv_timeout(TIMEOUT)
        .expect("R43/R44: operations waited for the blocked callback");
    assert_eq!(removed, Ok(()), "removing the blocked watch");
    // Let several ticker periods pass while still blocked, then release.
    thread::sleep(Duration::from_millis(60));
    let _ = release_tx.send(());
    assert!(env.probe().wait_freed("blocked", TIMEOUT), "never freed");
    let deadline = Instant::now() + TIMEOUT;
    while !zero_fired.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the 0-interval timer added meanwhile never fired"
        );
        thread::sleep(Duration::from_millis(2));
    }
    d.lp().remove_timer(zero).expect("remove zero timer");
    // After the stall the ticker fires again, once per iteration at most: no burst making
    // up the periods lost (R30).
    assert!(
        ticks.wait_len(ticks_before + 3, TIMEOUT),
        "the ticker stopped"
    );
    d.lp().remove_timer(ticker).expect("remove ticker");
    let fired_in = ticks.snapshot();
    let mut per_iteration = fired_in.clone();
    per_iteration.dedup();
    assert_eq!(
        per_iteration.len(),
        fired_in.len(),
        "R30: the ticker fired several times in one iteration: {fired_in:?}"
    );
    d.settle();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "R15: started again after remove"
    );
    assert!(
        !freed_inside.load(Ordering::SeqCst),
        "R22: freed while its callback was running"
    );
}
