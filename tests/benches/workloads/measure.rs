//! What one workload run on one contender yields, and the statistics over repeats.

/// One figure from one pass: `ns` is the headline value (ns per event, per operation, per
/// round trip; W3: the p50 latency in ns), `extra` holds secondary values (W3 percentiles).
#[derive(Debug, Clone)]
pub struct Measure {
    pub workload: &'static str,
    /// W2: the phase ("churn-add", ..., "fire-batch"); W3: the wake-up mechanism.
    pub phase: Option<&'static str>,
    pub n: u64,
    pub a: Option<u64>,
    pub ns: f64,
    pub extra: Vec<(&'static str, f64)>,
}

impl Measure {
    pub fn new(workload: &'static str, n: u64, ns: f64) -> Self {
        Measure {
            workload,
            phase: None,
            n,
            a: None,
            ns,
            extra: Vec::new(),
        }
    }

    pub fn phase(mut self, phase: &'static str) -> Self {
        self.phase = Some(phase);
        self
    }

    pub fn a(mut self, a: u64) -> Self {
        self.a = Some(a);
        self
    }

    pub fn extra(mut self, name: &'static str, value: f64) -> Self {
        self.extra.push((name, value));
        self
    }
}

/// Median (mean of the two middle values for an even count), as `median_of` in the C peers'
/// harness.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    assert!(n > 0, "median of nothing");
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The spread of one figure over passes: (max − min) / median; `None` for fewer than two
/// values. A median of zero with differing values is infinitely spread.
pub fn spread(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let (lo, hi) = (min(values), max(values));
    if hi == lo {
        return Some(0.0);
    }
    let m = median(values).abs();
    Some(if m > 0.0 {
        (hi - lo) / m
    } else {
        f64::INFINITY
    })
}

/// A figure whose passes disagree by more than this spread is rerun once.
pub const RERUN_SPREAD: f64 = 0.15;

/// How much work each workload does. `full()` is the C peers' method (their harness'
/// defaults); `quick()` trades repeats for time.
#[derive(Debug, Clone)]
pub struct Params {
    pub passes: usize,
    pub w1_reps: usize,
    pub w1_rep_ms: u64,
    pub w2_reps: usize,
    pub w3_samples: usize,
    pub w3_warm: usize,
    pub w3_gap_us: u64,
    pub w4_k: u64,
    pub w4_reps: usize,
    pub w5_events: u64,
    pub w5_reps: usize,
    /// W8: bytes per repeat (all sockets together), and repeats.
    pub w8_bytes: u64,
    pub w8_reps: usize,
}

impl Params {
    pub fn full() -> Self {
        Params {
            passes: 3,
            w1_reps: 7,
            w1_rep_ms: 150,
            w2_reps: 5,
            w3_samples: 10_000,
            w3_warm: 500,
            w3_gap_us: 100,
            w4_k: 100_000,
            w4_reps: 5,
            w5_events: 1_000_000,
            w5_reps: 5,
            w8_bytes: 512 << 20,
            w8_reps: 5,
        }
    }

    pub fn quick() -> Self {
        Params {
            passes: 1,
            w1_reps: 5,
            w1_rep_ms: 80,
            w2_reps: 3,
            w3_samples: 5_000,
            w3_warm: 500,
            w3_gap_us: 100,
            w4_k: 100_000,
            w4_reps: 3,
            w5_events: 1_000_000,
            w5_reps: 3,
            w8_bytes: 512 << 20,
            w8_reps: 3,
        }
    }
}
