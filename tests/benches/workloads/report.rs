//! Aggregation over passes, ratios to the floor of the same run, the markdown tables, the
//! step targets and `target/workloads.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::measure::{max, median, min, spread, Measure, RERUN_SPREAD};

/// The smallest yardstick a ratio is taken against: a floor (or raw substrate) figure below
/// one nanosecond is a loop that does nothing there (the floor frees inside remove, so its W2
/// drain is about 0 ns), and a ratio to it would say nothing; the cell shows the absolute
/// figure alone.
pub const MIN_YARDSTICK_NS: f64 = 1.0;

/// The key of one figure: which workload, phase or mechanism, N and A.
pub type Key = (&'static str, Option<&'static str>, u64, Option<u64>);

/// Whether a figure was rerun because its passes disagreed by more than
/// [`RERUN_SPREAD`](crate::measure::RERUN_SPREAD), and how the rerun went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rerun {
    No,
    /// Rerun once; the rerun's passes agree (marked †).
    Settled,
    /// Rerun once; its passes still disagree (marked ‡).
    StillNoisy,
}

impl Rerun {
    fn mark(self) -> &'static str {
        match self {
            Rerun::No => "",
            Rerun::Settled => "†",
            Rerun::StillNoisy => "‡",
        }
    }

    fn name(self) -> Option<&'static str> {
        match self {
            Rerun::No => None,
            Rerun::Settled => Some("rerun"),
            Rerun::StillNoisy => Some("still-noisy-after-rerun"),
        }
    }
}

/// One aggregated figure of one backend: medians over passes.
#[derive(Debug, Clone)]
pub struct Row {
    pub backend: &'static str,
    pub workload: &'static str,
    pub phase: Option<&'static str>,
    pub n: Option<u64>,
    pub a: Option<u64>,
    pub ns: f64,
    pub pass_min: f64,
    pub pass_max: f64,
    pub passes: usize,
    /// The headline value of every pass, in pass order (empty for derived rows).
    pub pass_values: Vec<f64>,
    /// (max − min) / median over passes; `None` for one pass or a derived row.
    pub spread: Option<f64>,
    pub rerun: Rerun,
    /// A rerun figure: the first passes' values, which the rerun replaced.
    pub replaced: Vec<f64>,
    pub extra: Vec<(&'static str, f64)>,
    pub ratio: Option<f64>,
}

/// Collects every pass's measures, in the order they were produced.
#[derive(Default)]
pub struct Collector {
    order: Vec<(&'static str, Key)>,
    seen: BTreeMap<(&'static str, Key), Vec<Measure>>,
    /// Which job (an index the driver gives) produced each figure: what a rerun runs again.
    job: BTreeMap<(&'static str, Key), usize>,
    /// Figures rerun once: the replaced passes' values and how the rerun went.
    reruns: BTreeMap<(&'static str, Key), (Vec<f64>, Rerun)>,
}

impl Collector {
    pub fn add(&mut self, backend: &'static str, job: usize, m: Measure) {
        let key = (m.workload, m.phase, m.n, m.a);
        let slot = self.seen.entry((backend, key)).or_default();
        if slot.is_empty() {
            self.order.push((backend, key));
            self.job.insert((backend, key), job);
        }
        slot.push(m);
    }

    /// Figures not yet rerun whose passes disagree by more than [`RERUN_SPREAD`]: backend,
    /// job index and key, in the order they were produced.
    pub fn noisy(&self) -> Vec<(&'static str, usize, Key)> {
        self.order
            .iter()
            .filter(|id| !self.reruns.contains_key(*id))
            .filter(|id| {
                let ns: Vec<f64> = self.seen[*id].iter().map(|m| m.ns).collect();
                spread(&ns).is_some_and(|s| s > RERUN_SPREAD)
            })
            .map(|&(backend, key)| (backend, self.job[&(backend, key)], key))
            .collect()
    }

    /// Replaces a figure's passes by those of its rerun (once per figure) and returns its
    /// rerun spread.
    pub fn replace(&mut self, backend: &'static str, key: Key, rerun: Vec<Measure>) -> Option<f64> {
        let ns: Vec<f64> = rerun.iter().map(|m| m.ns).collect();
        let s = spread(&ns);
        let outcome = if s.is_some_and(|s| s > RERUN_SPREAD) {
            Rerun::StillNoisy
        } else {
            Rerun::Settled
        };
        let slot = self
            .seen
            .get_mut(&(backend, key))
            .expect("a measured figure");
        let old = std::mem::replace(slot, rerun);
        self.reruns.insert(
            (backend, key),
            (old.iter().map(|m| m.ns).collect(), outcome),
        );
        s
    }

    /// Medians over passes, the derived W1 slope, and ratios to the floor.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .order
            .iter()
            .map(|(backend, key)| {
                let ms = &self.seen[&(*backend, *key)];
                let ns: Vec<f64> = ms.iter().map(|m| m.ns).collect();
                let extra = ms[0]
                    .extra
                    .iter()
                    .map(|(name, _)| {
                        let v: Vec<f64> = ms
                            .iter()
                            .filter_map(|m| m.extra.iter().find(|(n, _)| n == name))
                            .map(|(_, v)| *v)
                            .collect();
                        (*name, median(&v))
                    })
                    .collect();
                let (replaced, rerun) = self
                    .reruns
                    .get(&(*backend, *key))
                    .cloned()
                    .unwrap_or((Vec::new(), Rerun::No));
                Row {
                    backend,
                    workload: key.0,
                    phase: key.1,
                    n: Some(key.2),
                    a: key.3,
                    ns: median(&ns),
                    pass_min: min(&ns),
                    pass_max: max(&ns),
                    passes: ns.len(),
                    spread: spread(&ns),
                    pass_values: ns,
                    rerun,
                    replaced,
                    extra,
                    ratio: None,
                }
            })
            .collect();
        rows.extend(slopes(&rows));
        let floors: Vec<Row> = rows
            .iter()
            .filter(|r| r.backend == "floor")
            .cloned()
            .collect();
        for row in rows.iter_mut().filter(|r| r.backend != "floor") {
            row.ratio = floors
                .iter()
                .find(|f| comparable(f, row))
                .filter(|f| f.ns >= MIN_YARDSTICK_NS && row.workload != "W1slope")
                .map(|f| row.ns / f.ns);
        }
        rows
    }
}

/// Which floor figure a row is compared with: the same workload, phase, N and A; for W3 the
/// floor has one mechanism (eventfd), the yardstick of every mechanism.
fn comparable(floor: &Row, row: &Row) -> bool {
    // W5's emit-to-delivery latency is a cross-thread wake-up plus the registry: its
    // yardstick is the floor's W3.
    if row.workload == "W5" {
        return row.phase == Some("latency") && floor.workload == "W3";
    }
    // The futures layer's W3a and W4a: against the floor's W3 and W4.
    let workload = match row.workload {
        "W3a" => "W3",
        "W4a" => "W4",
        other => other,
    };
    if workload != row.workload {
        return floor.workload == workload && (workload == "W3" || floor.n == row.n);
    }
    floor.workload == row.workload
        && floor.n == row.n
        && floor.a == row.a
        && (row.workload == "W3" || floor.phase == row.phase)
}

/// The A = 1 slope: (ns at N = 10000 − ns at N = 10) / 9990, the cost per registered watch.
fn slopes(rows: &[Row]) -> Vec<Row> {
    let find = |backend: &str, n: u64| {
        rows.iter().find(|r| {
            r.backend == backend && r.workload == "W1" && r.n == Some(n) && r.a == Some(1)
        })
    };
    // Each backend once, in order of appearance (rows of several backends interleave).
    let mut backends: Vec<&'static str> = Vec::new();
    for r in rows {
        if !backends.contains(&r.backend) {
            backends.push(r.backend);
        }
    }
    backends
        .into_iter()
        .filter_map(|b| {
            let (small, large) = (find(b, 10)?, find(b, 10_000)?);
            let slope = (large.ns - small.ns) / 9990.0;
            Some(Row {
                backend: b,
                workload: "W1slope",
                phase: None,
                n: None,
                a: Some(1),
                ns: slope,
                pass_min: slope,
                pass_max: slope,
                passes: small.passes,
                pass_values: Vec::new(),
                spread: None,
                rerun: Rerun::No,
                replaced: Vec::new(),
                extra: Vec::new(),
                ratio: None,
            })
        })
        .collect()
}

fn label(r: &Row) -> String {
    let n = r.n.map(group).unwrap_or_default();
    match (r.workload, r.phase) {
        ("W1", _) => format!("W1 N={n} A={} ns/event", r.a.unwrap_or(0)),
        ("W1slope", _) => "W1 A=1 slope, ns per registered watch".into(),
        ("W2", Some(phase)) => format!(
            "W2 {phase} {} ns/op",
            if phase.starts_with("fire") {
                format!("K={n}")
            } else {
                format!("N={n}")
            }
        ),
        ("W3", Some(variant)) => format!("W3 p50 / p99 µs ({variant})"),
        ("W4", _) => "W4 ns/round trip".into(),
        ("W6", Some(kind)) => format!(
            "W6 {kind} N={n}, anonymous resident bytes/registration (fresh process, zero-sized closures)"
        ),
        ("W7", _) => {
            "W7 toggling: enable WRITABLE, wait for it, write, disable, read the reply; ns/round trip"
                .into()
        }
        ("W7c", _) => "W7c interest R→RW→R within a callback + timer re-arm per side, ns/round trip"
            .into(),
        ("W8", Some(phase)) => {
            let (direction, cpu) = match phase.strip_suffix("-cpu") {
                Some(direction) => (direction, true),
                None => (phase, false),
            };
            format!(
                "W8 {} 16 KiB per callback, {n} socket{}, {}",
                if direction == "send" { "send" } else { "receive" },
                if r.n == Some(1) { "" } else { "s" },
                if cpu {
                    "loop-thread CPU ns/callback"
                } else {
                    "ns/callback (MB/s)"
                }
            )
        }
        ("W3a", _) => "W3a futures: task woken from another thread, p50 / p99 µs".into(),
        ("W4a", _) => "W4a futures: ping-pong with readable().await, ns/round trip".into(),
        ("W5", Some("throughput")) => {
            format!("W5 C={} ns/event (events/s), E={n}", r.a.unwrap_or(0))
        }
        ("W5", _) => "W5 emit→delivery p50 / p99 µs (ratio to the floor's W3)".into(),
        (w, _) => w.to_string(),
    }
}

fn cell(r: &Row) -> String {
    let value = if r.workload == "W3"
        || r.workload == "W3a"
        || (r.workload == "W5" && r.phase == Some("latency"))
    {
        format!("{:.1} / {:.1}", extra(r, "p50_us"), extra(r, "p99_us"))
    } else if r.workload == "W5" {
        format!("{:.0} ({:.2} M/s)", r.ns, extra(r, "events_per_s") / 1e6)
    } else if r.workload == "W8" && !r.phase.is_some_and(|p| p.ends_with("-cpu")) {
        format!(
            "{} ({:.0} MB/s)",
            group(r.ns.round() as u64),
            extra(r, "mb_per_s")
        )
    } else if r.workload == "W6" {
        format!("{:.1}", r.ns)
    } else if r.workload == "W1slope" {
        format!("{:.3}", r.ns)
    } else {
        group(r.ns.round() as u64)
    };
    let spread = match r.spread {
        Some(s) => format!(" ±{:.0}%", s * 100.0),
        None => String::new(),
    };
    let mark = r.rerun.mark();
    match r.ratio {
        Some(ratio) => format!("{value}{spread}{mark} ({ratio:.2}×)"),
        None => format!("{value}{spread}{mark}"),
    }
}

fn extra(r: &Row, name: &str) -> f64 {
    r.extra
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap_or(f64::NAN)
}

/// 1234567 -> "1,234,567".
fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// One line per figure, one column per backend; ratios to the floor in parentheses. W3 rows
/// of different mechanisms share a line when their backends offer different mechanisms.
pub fn markdown(rows: &[Row]) -> String {
    let mut backends: Vec<&'static str> = Vec::new();
    for r in rows {
        if !backends.contains(&r.backend) {
            backends.push(r.backend);
        }
    }
    let mut lines: Vec<(String, BTreeMap<&'static str, String>)> = Vec::new();
    for r in rows {
        // The floor's W3 line is shared with the first mechanism of the other backends.
        let l = label(r);
        let idx = match lines
            .iter()
            .position(|(k, m)| *k == l && !m.contains_key(r.backend))
        {
            Some(i) => i,
            None => {
                lines.push((l, BTreeMap::new()));
                lines.len() - 1
            }
        };
        lines[idx].1.insert(r.backend, cell(r));
    }
    let spreads = rows.iter().any(|r| r.spread.is_some());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| figure ({}) | {} |",
        if spreads {
            "median ±spread over passes"
        } else {
            "median"
        },
        backends.join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---|".repeat(backends.len()));
    for (l, cells) in &lines {
        let cols: Vec<&str> = backends
            .iter()
            .map(|b| cells.get(b).map_or("–", |s| s.as_str()))
            .collect();
        let _ = writeln!(out, "| {l} | {} |", cols.join(" | "));
    }
    if spreads {
        let _ = writeln!(
            out,
            "\nSpread: (max − min) / median of the headline value over passes (W3, W5 latency: \
             the p50)."
        );
    }
    if rows.iter().any(|r| r.rerun == Rerun::Settled) {
        let _ = writeln!(
            out,
            "\n† rerun: passes disagreed by more than {:.0} %; the figure is the rerun's.",
            RERUN_SPREAD * 100.0
        );
    }
    if rows.iter().any(|r| r.rerun == Rerun::StillNoisy) {
        let _ = writeln!(
            out,
            "\n‡ still noisy after a rerun (passes disagreed by more than {:.0} % twice); the \
             figure is the rerun's.",
            RERUN_SPREAD * 100.0
        );
    }
    out
}

/// A target of one step: a "met"/"MISSED" line per matching row.
struct Target {
    /// The backend rows it applies to.
    backend: &'static str,
    /// What it says.
    text: &'static str,
    /// Whether a row is one it checks.
    applies: fn(&Row) -> bool,
    /// The raw substrate it compares with (`None`: the floor, or an absolute figure).
    against: Option<&'static str>,
    /// The limit on the ratio (or on the W1 slope in ns, for `W1slope` rows).
    limit: f64,
}

fn is(workload: &'static str, r: &Row) -> bool {
    r.workload == workload
}

/// A W8 wall-time row (not a loop-thread CPU row).
fn is_w8_wall(r: &Row) -> bool {
    r.workload == "W8" && !r.phase.is_some_and(|p| p.ends_with("-cpu"))
}

/// The step targets of the ratio kind: step 1 (issue 2) for the select backends, step 3
/// (issue 4) for calloop. Step 2's (glib) have other shapes: see [`glib_targets`].
fn all_targets() -> Vec<Target> {
    let mut out = Vec::new();
    for backend in ["select", "select-mio"] {
        out.extend([
            Target {
                backend,
                text: "W1 ≤ 1.2× floor",
                applies: |r| is("W1", r),
                against: None,
                limit: 1.2,
            },
            Target {
                backend,
                text: "slope < 0.1 ns/watch",
                applies: |r| is("W1slope", r),
                against: None,
                limit: 0.1,
            },
            Target {
                backend,
                text: "W2 churn 100k ≤ 1.5× floor",
                applies: |r| r.phase == Some("churn-all") && r.n == Some(100_000),
                against: None,
                limit: 1.5,
            },
            Target {
                backend,
                text: "W3 p50 ≤ 1.3× floor",
                applies: |r| is("W3", r),
                against: None,
                limit: 1.3,
            },
            Target {
                backend,
                text: "W4 ≤ 1.2× floor",
                applies: |r| is("W4", r),
                against: None,
                limit: 1.2,
            },
        ]);
    }
    // Step 13 (issue 23): streaming and real interest toggling, on wall time.
    out.extend([
        Target {
            backend: "select",
            text: "W8 ≤ 1.05× floor",
            applies: is_w8_wall,
            against: None,
            limit: 1.05,
        },
        Target {
            backend: "select",
            text: "W7 ≤ 1.05× floor",
            applies: |r| is("W7", r),
            against: None,
            limit: 1.05,
        },
    ]);
    for (backend, raw) in [
        ("glib", "glib-raw"),
        ("calloop", "calloop-raw"),
        ("tokio", "tokio-raw"),
    ] {
        out.extend([
            Target {
                backend,
                text: "W8 ≤ its raw substrate",
                applies: is_w8_wall,
                against: Some(raw),
                limit: 1.0,
            },
            Target {
                backend,
                text: "W7 ≤ its raw substrate",
                applies: |r| is("W7", r),
                against: Some(raw),
                limit: 1.0,
            },
        ]);
    }
    out.extend([
        Target {
            backend: "calloop",
            text: "W1 N=10 ≤ 1.2× calloop-raw",
            applies: |r| is("W1", r) && r.n == Some(10),
            against: Some("calloop-raw"),
            limit: 1.2,
        },
        Target {
            backend: "calloop",
            text: "slope < 0.1 ns/watch",
            applies: |r| is("W1slope", r),
            against: None,
            limit: 0.1,
        },
        Target {
            backend: "calloop",
            text: "W2 churn 100k ≤ 2× floor",
            applies: |r| r.phase == Some("churn-all") && r.n == Some(100_000),
            against: None,
            limit: 2.0,
        },
        Target {
            backend: "calloop",
            text: "W3 p50 ≤ 1.5× floor",
            applies: |r| is("W3", r),
            against: None,
            limit: 1.5,
        },
        Target {
            backend: "calloop",
            text: "W4 ≤ 1.2× calloop-raw",
            applies: |r| is("W4", r),
            against: Some("calloop-raw"),
            limit: 1.2,
        },
    ]);
    out
}

/// The ratio of `row` to the same figure of `against` in this run.
fn ratio_to(rows: &[Row], row: &Row, against: &str) -> Option<f64> {
    rows.iter()
        .find(|o| {
            o.backend == against
                && o.workload == row.workload
                && o.n == row.n
                && o.a == row.a
                && o.phase == row.phase
        })
        .filter(|o| o.ns >= MIN_YARDSTICK_NS)
        .map(|o| row.ns / o.ns)
}

/// The step targets for the backends of this run: a "met"/"MISSED" line each.
pub fn targets(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| backend | target | measured | verdict |");
    let _ = writeln!(out, "|---|---|---|---|");
    for target in all_targets() {
        for r in rows
            .iter()
            .filter(|r| r.backend == target.backend && (target.applies)(r))
        {
            let value = match (r.workload, target.against) {
                ("W1slope", _) => Some(r.ns),
                (_, Some(against)) => ratio_to(rows, r, against),
                (_, None) => r.ratio,
            };
            let shown = match (r.workload, value) {
                ("W1slope", Some(v)) => format!("{v:.3} ns"),
                (_, Some(v)) => format!("{v:.2}×"),
                (_, None) => format!("no {} figure", target.against.unwrap_or("floor")),
            };
            let verdict = match value {
                Some(v) if v < target.limit || (v == target.limit && r.workload != "W1slope") => {
                    "met"
                }
                Some(_) => "MISSED",
                None => "?",
            };
            let _ = writeln!(
                out,
                "| {} | {}: {} | {shown} | {verdict} |",
                r.backend,
                target.text,
                label(r)
            );
        }
    }
    glib_targets(rows, &mut out);
    w5_targets(rows, &mut out);
    out
}

/// Step 4 (issue 5): the registry's throughput with one callback on `select`, and its
/// emit-to-delivery latency against the floor's W3 on every anyloop backend.
fn w5_targets(rows: &[Row], out: &mut String) {
    if let Some(r) = find(rows, "select", "W5", Some("throughput"), None, Some(1)) {
        let rate = extra(r, "events_per_s");
        verdict_line(
            out,
            "select",
            "W5 C=1 ≥ 2 M delivered events/s",
            &format!("{:.2} M/s", rate / 1e6),
            Some(rate >= 2e6),
        );
    }
    for r in rows
        .iter()
        .filter(|r| r.workload == "W5" && r.phase == Some("latency"))
    {
        verdict_line(
            out,
            r.backend,
            "W5 emit→delivery p50 ≤ 1.5× floor W3 p50",
            &r.ratio
                .map_or("no floor W3 figure".into(), |x| format!("{x:.2}×")),
            r.ratio.map(|x| x <= 1.5),
        );
    }
}

fn verdict_line(out: &mut String, backend: &str, target: &str, shown: &str, met: Option<bool>) {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "?",
    };
    let _ = writeln!(out, "| {backend} | {target} | {shown} | {verdict} |");
}

fn find<'a>(
    rows: &'a [Row],
    backend: &str,
    workload: &str,
    phase: Option<&str>,
    n: Option<u64>,
    a: Option<u64>,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.backend == backend
            && r.workload == workload
            && (phase.is_none() || r.phase == phase)
            && (n.is_none() || r.n == n)
            && (a.is_none() || r.a == a)
    })
}

/// Step 2 (issue 3): `glib` against the floor and against raw glib-rs (`glib-raw`).
fn glib_targets(rows: &[Row], out: &mut String) {
    let ratio = |a: Option<&Row>, b: Option<&Row>| match (a, b) {
        (Some(a), Some(b)) if b.ns >= MIN_YARDSTICK_NS => Some(a.ns / b.ns),
        _ => None,
    };
    let shown = |x: Option<f64>| x.map_or("no figure".to_string(), |x| format!("{x:.2}×"));
    let w1 = |backend: &str, n: u64| find(rows, backend, "W1", None, Some(n), Some(1));
    if w1("glib", 10).is_some() {
        // Flat in N: N = 10 000 against N = 10, at A = 1; raw GLib's growth for context.
        let flat = ratio(w1("glib", 10_000), w1("glib", 10));
        let raw_flat = ratio(w1("glib-raw", 10_000), w1("glib-raw", 10));
        let raw_vs_glib = ratio(w1("glib-raw", 10_000), w1("glib", 10_000));
        verdict_line(
            out,
            "glib",
            "W1 flat in N: N=10000 ≤ 1.3× N=10 (A=1)",
            &format!(
                "{} (glib-raw: {}; glib-raw/glib at N=10000: {})",
                shown(flat),
                shown(raw_flat),
                shown(raw_vs_glib)
            ),
            flat.map(|x| x <= 1.3),
        );
        let vs_raw = ratio(w1("glib", 10), w1("glib-raw", 10));
        verdict_line(
            out,
            "glib",
            "W1 N=10 A=1 ≤ 1.3× glib-raw",
            &shown(vs_raw),
            vs_raw.map(|x| x <= 1.3),
        );
    }
    let churn = find(rows, "glib", "W2", Some("churn-all"), Some(100_000), None);
    if let Some(churn) = churn {
        verdict_line(
            out,
            "glib",
            "W2 churn 100k ≤ 2× floor",
            &shown(churn.ratio),
            churn.ratio.map(|x| x <= 2.0),
        );
    }
    let invoke = find(rows, "glib-raw", "W3", Some("invoke"), None, None);
    for r in rows
        .iter()
        .filter(|r| r.backend == "glib" && r.workload == "W3")
    {
        let x = invoke.map(|i| extra(r, "p50_us") / extra(i, "p50_us"));
        verdict_line(
            out,
            "glib",
            &format!("W3 p50 ≤ 1.3× glib-raw invoke ({})", r.phase.unwrap_or("")),
            &shown(x),
            x.map(|x| x <= 1.3),
        );
    }
    if let Some(w4) = find(rows, "glib", "W4", None, None, None) {
        let x = ratio(Some(w4), find(rows, "glib-raw", "W4", None, None, None));
        verdict_line(
            out,
            "glib",
            "W4 ≤ 1.2× glib-raw",
            &shown(x),
            x.map(|x| x <= 1.2),
        );
    }
}

/// The machine-readable rows: `workload`, `backend`, `n`, `a`, `ns` on every row (null where
/// a key does not apply); W3 and W5 latency rows add `p50_us` .. `p999_us`, W5 throughput rows
/// `events_per_s` and `calls_per_s`; W2, W3 and W5 rows carry `phase`. Every row has
/// `passes` (a count), `pass_ns` (each pass's headline value, the rerun's for a rerun figure)
/// and `spread` ((max − min) / median, null for one pass); a rerun figure adds `rerun`
/// ("rerun" or "still-noisy-after-rerun") and `replaced_pass_ns` (the first passes' values).
pub fn json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                let mut v = json!({
                    "workload": r.workload,
                    "backend": r.backend,
                    "n": r.n,
                    "a": r.a,
                    "ns": r.ns,
                    "pass_min_ns": r.pass_min,
                    "pass_max_ns": r.pass_max,
                    "passes": r.passes,
                    "pass_ns": r.pass_values,
                    "spread": r.spread,
                    "ratio_to_floor": r.ratio,
                });
                if let Some(rerun) = r.rerun.name() {
                    v["rerun"] = json!(rerun);
                    v["replaced_pass_ns"] = json!(r.replaced);
                }
                if let Some(phase) = r.phase {
                    v["phase"] = json!(phase);
                }
                for (name, value) in &r.extra {
                    v[*name] = json!(value);
                }
                v
            })
            .collect(),
    )
}

/// What each workload does and does not model, printed above the tables for the workloads of
/// the run (the same text as `BENCHMARKS.md`'s workload list, shortened).
const DESCRIPTIONS: [(&str, &str); 12] = [
    (
        "W1",
        "fan-in dispatch: N read watches on one-fd pipes, A made readable per round, one byte \
         read per callback. Models a server with many idle connections and a few active ones. \
         Does not model: fds that stay ready (W8), writes, timers.",
    ),
    (
        "W2",
        "timers: churn (add, update, remove N timers that never fire, then the loop time until \
         their state is dropped) and zero-delay one-shot firings, batched or one at a time. \
         Models timeout bookkeeping (libvirt, libcurl). Does not model: timers firing \
         periodically, timers beside I/O.",
    ),
    (
        "W3",
        "cross-thread wake-up: p50..p99.9 latency from a post on another thread to the \
         callback, the loop blocked with nothing to do. Does not model: a busy loop, or \
         several posters.",
    ),
    (
        "W3a",
        "W3 for a task of the futures layer (anyloop-async) woken from another thread.",
    ),
    (
        "W4",
        "ping-pong: one byte back and forth over two socketpairs in one thread, 2 dispatches \
         per round trip. Models request/response latency. Does not model: interest changes \
         (W7), bulk data (W8), a peer in another thread.",
    ),
    (
        "W4a",
        "W4 with each side a task of the futures layer (readable().await).",
    ),
    (
        "W5",
        "event registry: E events from another thread to C callbacks (half filtered out), \
         throughput and emit-to-delivery latency. anyloop backends only (the others have no \
         registry). Does not model: events emitted on the loop thread.",
    ),
    (
        "W6",
        "memory: anonymous resident bytes (`RssAnon`) per disabled timer, armed timer and \
         watch, in a fresh process, zero-sized closures. Does not model: the kernel's memory \
         (epoll items), closures' own size, code paged in once per process (file-backed).",
    ),
    (
        "W7",
        "interest toggling as libdbus and libcurl do it: one socketpair; the client enables \
         WRITABLE, waits until the loop reports it, writes one byte, disables WRITABLE, waits \
         for the reply as READABLE; the server replies at once. Two interest changes per round \
         trip in different iterations (they never cancel out), three iterations. Does not \
         model: the timer re-arms beside the changes (W7c has them), writes that would block, \
         messages over one byte.",
    ),
    (
        "W7c",
        "interest changes that cancel out: the W4 ping-pong in which each callback sets its \
         watch to READABLE|WRITABLE, re-arms its timer and sets READABLE again before writing \
         (libdbus when a send succeeds at once). Floor and anyloop backends only. Does not \
         model: waiting for WRITABLE (W7), raw substrates (they have no call that could cancel \
         out).",
    ),
    (
        "W8",
        "streaming: 1 or 16 AF_UNIX socketpairs, one 16 KiB read (receive) or write (send) per \
         callback while the socket stays ready, the peer one blocking thread; every byte \
         checked against a per-socket pattern, counts checked at both ends. Wall ns per \
         callback with MB/s, and the loop thread's CPU ns per callback (leaves out time the \
         loop slept because the peer was late). Models a protocol library's bulk transfer. \
         Does not model: TCP's stack, a callback that reads until EAGAIN, timers or interest \
         changes during the transfer.",
    ),
    (
        "W1slope",
        "(derived) the A = 1 slope of W1: extra ns per registered watch.",
    ),
];

/// The descriptions of the workloads present in `rows`, in the order of [`DESCRIPTIONS`].
pub fn descriptions(rows: &[Row]) -> String {
    let mut out = String::from("Workloads of this run (what each does and does not model):\n\n");
    for (workload, text) in DESCRIPTIONS {
        if rows.iter().any(|r| r.workload == workload) {
            let _ = writeln!(out, "- **{workload}**: {text}");
        }
    }
    out.push('\n');
    out
}
