//! [R27](anyloop::contract#r27), [R29](anyloop::contract#r29), [R36](anyloop::contract#r36):
//! one-shot timers, `Schedule::Once`. A one-shot fires exactly once, is disabled as it fires
//! (before its callback runs, which may re-arm it), stays registered and counted, and an update
//! before it is due replaces its deadline.
//!
//! Every scenario counts firings over a window after the expected one (a settle of the pumped loop,
//! or extra iterations), so a second firing is seen; waits are bounded by [`TIMEOUT`] and only
//! lower bounds on time are asserted (never early, [R31](anyloop::contract#r31)).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{Schedule, TimerId};

use crate::driver::TIMEOUT;
use crate::probe::Log;
use crate::runner::Env;

/// The tolerance of "never early": deadlines have millisecond granularity
/// ([R31](anyloop::contract#r31)).
const GRANULARITY: Duration = Duration::from_millis(1);

/// [R27](anyloop::contract#r27)/[R57](anyloop::contract#r57): `Once(10 ms)` fires exactly once,
/// never early; its callback already reads `Disabled`; afterwards `timer_schedule` is `Disabled`,
/// the guard's `is_enabled()` false, and the timer stays registered (counted in
/// `LoopStats::timers`) until removed.
pub fn r27_once_fires_exactly_once_then_reads_disabled_r57(env: &Env) {
    let d = env.start_pumped();
    let (calls, lp, token) = (Arc::new(Log::new()), d.lp().clone(), env.token("once"));
    let c = calls.clone();
    let armed = Instant::now();
    let timer = d
        .lp()
        .timer(
            Schedule::Once(Duration::from_millis(10)),
            move |id: TimerId| {
                let _ = &token;
                c.push((Instant::now(), lp.timer_schedule(id).ok()));
            },
        )
        .expect("add");
    assert!(
        matches!(
            timer.schedule(),
            Ok(Schedule::Once(_)) | Ok(Schedule::Disabled)
        ),
        "R27: {:?}",
        timer.schedule()
    );
    assert!(calls.wait_len(1, TIMEOUT), "R27: the one-shot never fired");
    d.settle();
    d.settle(); // the window in which a second firing would show
    let got = calls.snapshot();
    assert_eq!(got.len(), 1, "R27: a one-shot fired {} times", got.len());
    let (fired, inside) = got[0];
    assert!(
        fired.duration_since(armed) + GRANULARITY >= Duration::from_millis(10),
        "R31: fired {:?} after it was armed",
        fired.duration_since(armed)
    );
    assert_eq!(
        inside,
        Some(Schedule::Disabled),
        "R27: not Disabled before its own callback ran"
    );
    assert_eq!(timer.schedule().ok(), Some(Schedule::Disabled), "R27");
    assert!(!timer.is_enabled(), "R27: is_enabled() after the firing");
    assert_eq!(
        d.lp().stats().timers,
        1,
        "R27/R57: a fired one-shot left the count"
    );
    timer
        .remove()
        .expect("R27: a fired one-shot can be removed");
    assert!(env.probe().wait_freed("once", TIMEOUT), "R25: never freed");
    assert_eq!(d.lp().stats().timers, 0, "R57");
}

/// [R36](anyloop::contract#r36)/[R27](anyloop::contract#r27): a one-shot's callback re-arms its own
/// timer with `Once(30 ms)` the first time: it fires exactly once more, in a later iteration, never
/// earlier than 30 ms after the re-arm; then it stays disabled.
pub fn r36_once_rearmed_from_own_callback_fires_once_more(env: &Env) {
    let d = env.start_pumped();
    let (calls, lp, iters, token) = (
        Arc::new(Log::new()),
        d.lp().clone(),
        d.iteration_counter(),
        env.token("rearmed"),
    );
    let c = calls.clone();
    let timer = d
        .lp()
        .timer(Schedule::Once(Duration::ZERO), move |id| {
            let _ = &token;
            // Read before the update: the new countdown starts no earlier.
            let at = Instant::now();
            if c.is_empty() {
                lp.update_timer(id, Schedule::Once(Duration::from_millis(30)))
                    .expect("re-arm from its own callback");
            }
            c.push((at, iters.load(Ordering::SeqCst)));
        })
        .expect("add");
    assert!(
        calls.wait_len(2, TIMEOUT),
        "R36: the re-armed one-shot never fired"
    );
    d.settle();
    d.settle();
    let got = calls.snapshot();
    assert_eq!(got.len(), 2, "R27/R36: fired {} times, want 2", got.len());
    let (rearmed_at, first_iteration) = got[0];
    let (second, second_iteration) = got[1];
    assert_ne!(
        first_iteration, second_iteration,
        "R36: fired twice in one iteration"
    );
    assert!(
        second.duration_since(rearmed_at) + GRANULARITY >= Duration::from_millis(30),
        "R31/R36: the re-armed one-shot fired {:?} after the re-arm",
        second.duration_since(rearmed_at)
    );
    assert_eq!(timer.schedule().ok(), Some(Schedule::Disabled), "R27");
}

/// [R27](anyloop::contract#r27)/[R35](anyloop::contract#r35): `Once(ZERO)` runs its callback in the
/// next iteration, once: over a 200 ms window of further iterations it does not fire again and the
/// loop does not spin (few iterations, little CPU), unlike a forgotten `Every(ZERO)`. The same
/// after an update to `Once(ZERO)`, with the next iteration a blocking `run_once(None)` that the
/// due one-shot must end ([R38](anyloop::contract#r38)).
pub fn r27_once_zero_next_iteration_once_no_spin_r35(env: &Env) {
    let d = env.start();
    let (calls, iters, token) = (
        Arc::new(Log::new()),
        d.iteration_counter(),
        env.token("once-zero"),
    );
    let c = calls.clone();
    let id = d
        .lp()
        .add_timer(Schedule::Once(Duration::ZERO), move |_| {
            let _ = &token;
            c.push(iters.load(Ordering::SeqCst));
        })
        .expect("add");
    let mut want = Vec::new();
    for round in 0..2 {
        // The kit's count when the next iteration runs its callbacks.
        want.push(d.iterations());
        if round == 0 {
            d.on_loop(|ctx| ctx.turns(1));
        } else {
            // A blocking wait must not outlast the due one-shot; bounded by the watchdog.
            let ran = d
                .spawn(|ctx| ctx.run_once(None))
                .wait_for(TIMEOUT)
                .expect("R27: run_once(None) stayed blocked with a Once(ZERO) due")
                .expect("run_once");
            assert_eq!(ran, 1, "R27: round {round}");
        }
        assert_eq!(
            calls.snapshot(),
            want,
            "R27: round {round}: not fired once, in the next iteration"
        );
        d.on_loop(|ctx| ctx.measure_idle(Duration::from_millis(200)))
            .assert_quiet("a fired Once(ZERO)");
        assert_eq!(
            calls.len(),
            round + 1,
            "R27: round {round}: a Once(ZERO) fired again"
        );
        assert_eq!(
            d.lp().timer_schedule(id).ok(),
            Some(Schedule::Disabled),
            "R27: round {round}"
        );
        d.lp()
            .update_timer(id, Schedule::Once(Duration::ZERO))
            .expect("re-arm");
    }
}

/// [R27](anyloop::contract#r27)/[R6](anyloop::contract#r6): a `Once(100 ms)` updated to `Disabled`
/// before it is due never fires (watched for 300 ms of iterations past its old deadline), and stays
/// registered, disabled.
pub fn r27_once_disabled_before_due_never_fires_r06(env: &Env) {
    let d = env.start_pumped();
    let (calls, token) = (Arc::new(Log::new()), env.token("cancelled"));
    let c = calls.clone();
    let armed = Instant::now();
    let timer = d
        .lp()
        .timer(Schedule::Once(Duration::from_millis(100)), move |_| {
            let _ = &token;
            c.push(());
        })
        .expect("add");
    timer.update(Schedule::Disabled).expect("disable");
    if let Some(rest) = Duration::from_millis(400).checked_sub(armed.elapsed()) {
        thread::sleep(rest); // the window around the old deadline
    }
    d.settle();
    assert_eq!(
        calls.len(),
        0,
        "R27: a one-shot disabled before it was due fired"
    );
    assert_eq!(
        timer.schedule().ok(),
        Some(Schedule::Disabled),
        "R27: a one-shot disabled before it was due must read Disabled"
    );
    assert_eq!(d.lp().stats().timers, 1, "R6: disabled is still registered");
}

/// [R29](anyloop::contract#r29)/[R31](anyloop::contract#r31): a `Once(20 ms)` re-armed with
/// `Once(300 ms)` before it is due fires exactly once, at the new deadline: nothing in the first
/// 150 ms after the update (past the old deadline), and its one firing no earlier than 300 ms after
/// the update. The loop does not iterate between the add and the update, so the old deadline cannot
/// legitimately come first.
pub fn r29_once_rearmed_before_due_fires_once_at_new_deadline_r31(env: &Env) {
    let d = env.start();
    let (calls, token) = (Arc::new(Log::new()), env.token("moved"));
    let c = calls.clone();
    let timer = d
        .lp()
        .timer(Schedule::Once(Duration::from_millis(20)), move |_| {
            let _ = &token;
            c.push(Instant::now());
        })
        .expect("add");
    // Read before the update: the new countdown starts no earlier.
    let updated = Instant::now();
    timer
        .update(Schedule::Once(Duration::from_millis(300)))
        .expect("re-arm");
    d.pump();
    let window = updated + Duration::from_millis(150);
    while Instant::now() < window {
        assert!(
            calls.is_empty(),
            "R29: fired {:?} after the update: the old 20 ms deadline was kept",
            calls.snapshot()[0].duration_since(updated)
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert!(
        calls.wait_len(1, TIMEOUT),
        "R29: the re-armed one-shot never fired"
    );
    d.settle();
    d.settle();
    let got = calls.snapshot();
    assert_eq!(
        got.len(),
        1,
        "R27/R29: fired {} times, want once",
        got.len()
    );
    let after = got[0].duration_since(updated);
    assert!(
        after + GRANULARITY >= Duration::from_millis(300),
        "R29/R31: fired {after:?} after the update to 300 ms"
    );
    assert_eq!(timer.schedule().ok(), Some(Schedule::Disabled), "R27");
}
