//! W2 timers: churn (add, update, remove, deferred drain) and zero-interval one-shot firings
//! (`w2_churn()` / `w2_fire()` of the C peers' harness).

use std::time::Duration;

use crate::contender::{fired, never_fires, run_until, Contender};
use crate::measure::{median, Measure, Params};
use crate::sys::{now_ns, Rng};

/// 60 s .. 160 s, varied; never fires during the test (`w2_interval` of the C peers' harness).
fn interval(i: usize, salt: bool) -> Duration {
    let mul: u64 = if salt { 104_729 } else { 7_919 };
    Duration::from_millis(60_000 + (i as u64 * mul) % 100_000)
}

/// Churn: add N, update each once in a shuffled order, remove all in another shuffled order,
/// then run the loop until every removed timer's state is dropped. ns per operation per phase,
/// and "all" = (add + update + remove + drain) / 3N.
pub fn churn<C: Contender>(n: usize, p: &Params) -> Vec<Measure> {
    let mut c = C::make();
    let mut rng = Rng::new();
    let mut timers: Vec<C::Timer> = Vec::with_capacity(n);
    let mut order: Vec<usize> = (0..n).collect();
    let mut phases: [Vec<f64>; 5] = Default::default();

    for _ in 0..p.w2_reps {
        timers.clear();
        let t0 = now_ns();
        for i in 0..n {
            timers.push(c.timer_add(interval(i, false), never_fires));
        }
        let t1 = now_ns();
        rng.shuffle(&mut order);
        for &i in &order {
            c.timer_update(timers[i], interval(i, true));
        }
        let t2 = now_ns();
        rng.shuffle(&mut order);
        for &i in &order {
            c.timer_remove(timers[i]);
        }
        let t3 = now_ns();
        c.timer_drain();
        let t4 = now_ns();
        let per = |a: u64, b: u64| (b - a) as f64 / n as f64;
        phases[0].push(per(t0, t1));
        phases[1].push(per(t1, t2));
        phases[2].push(per(t2, t3));
        phases[3].push(per(t3, t4));
        phases[4].push((t4 - t0) as f64 / (3 * n) as f64);
    }
    let names = [
        "churn-add",
        "churn-update",
        "churn-remove",
        "churn-drain",
        "churn-all",
    ];
    names
        .iter()
        .zip(&phases)
        .map(|(name, v)| Measure::new("W2", n as u64, median(v)).phase(name))
        .collect()
}

/// Firings: `batch` arms K one-shots then runs until all fired; otherwise arms one, runs
/// until it fired, K times. ns per fired callback, including arming and release: the timed
/// region ends after the loop has dropped every fired timer's state (for the floor, which
/// frees inside dispatch, that is immediate).
pub fn fire<C: Contender>(k: usize, batch: bool, p: &Params) -> Measure {
    let mut c = C::make();
    let mut reps = Vec::with_capacity(p.w2_reps);
    for _ in 0..p.w2_reps {
        let base = fired();
        let t0 = now_ns();
        if batch {
            for _ in 0..k {
                c.oneshot0();
            }
            run_until(&mut c, base + k as u64);
        } else {
            for i in 0..k {
                c.oneshot0();
                run_until(&mut c, base + i as u64 + 1);
            }
        }
        c.timer_drain();
        let t1 = now_ns();
        assert_eq!(fired() - base, k as u64, "W2 fire: wrong number of firings");
        reps.push((t1 - t0) as f64 / k as f64);
    }
    if !batch {
        // For `tests/benches/syscalls.sh W2`: kernel calls per sequential firing.
        eprintln!(
            "  W2: {} round trips in all (one sequential one-shot firing each)",
            k * p.w2_reps
        );
    }
    let phase = if batch { "fire-batch" } else { "fire-seq" };
    Measure::new("W2", k as u64, median(&reps)).phase(phase)
}
