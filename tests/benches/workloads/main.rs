//! Cross-backend workloads W1–W8 (described in `BENCHMARKS.md` at the repository root), with
//! the same method as the C peers' harness: calibrated rounds, repeats, medians, the same
//! shuffled orders, one-fd pipes. Every backend is measured beside a raw level-triggered epoll
//! floor in the same run, and reported as a ratio to it.
//!
//! ```text
//! cargo bench -p anyloop-conformance --bench workloads -- --quick      # a few minutes
//! cargo bench -p anyloop-conformance --bench workloads                 # full: 3 passes
//! cargo bench -p anyloop-conformance --bench workloads -- --only W1 --backend floor,select --n 10000
//! ```
//!
//! Prints markdown tables and writes `target/workloads.json` (and `target/workloads.md`) at
//! the workspace root, or under `$CARGO_TARGET_DIR`, or at `--json PATH`.
//!
//! Adding a backend: implement [`contender::Contender`] (a raw substrate) or name an
//! `anyloop_backends::LoopChoice` with a [`backends::Choice`] marker (an anyloop backend, see
//! `backends.rs`), then add one line to [`backends`].

mod anyloop_adapter;
mod async_layer;
mod backends;
mod calloop_raw;
mod contender;
mod floor;
mod glib_raw;
mod measure;
mod report;
mod sys;
mod tokio_raw;
mod w1;
mod w2;
mod w3;
mod w4;
mod w5;
mod w6;
mod w7;
mod w7c;
mod w8;

use std::path::PathBuf;
use std::time::Instant;

use contender::Contender;
use measure::{Measure, Params};

/// One workload configuration; each pass runs every job on every backend.
#[derive(Debug, Clone, Copy)]
enum Job {
    W1 {
        n: usize,
    },
    W2Churn {
        n: usize,
    },
    W2Fire {
        k: usize,
        batch: bool,
    },
    W3,
    W4,
    W5,
    /// W6 memory: an index into [`w6::KINDS`]; measured in a fresh child process.
    W6 {
        kind: usize,
    },
    /// Interest toggling that waits for WRITABLE.
    W7,
    /// Interest changes that cancel out within a callback.
    W7c,
    /// Streaming on `sockets` sockets, receive or send.
    W8 {
        sockets: usize,
        send: bool,
    },
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::W1 { .. } => "W1",
            Job::W2Churn { .. } | Job::W2Fire { .. } => "W2",
            Job::W3 => "W3",
            Job::W4 => "W4",
            Job::W5 => "W5",
            Job::W6 { .. } => "W6",
            Job::W7 => "W7",
            Job::W7c => "W7c",
            Job::W8 { .. } => "W8",
        }
    }

    /// The part of a workload a job runs, for `--phase`.
    fn phase(self) -> Option<&'static str> {
        match self {
            Job::W2Churn { .. } => Some("churn"),
            Job::W2Fire { batch: true, .. } => Some("fire-batch"),
            Job::W2Fire { batch: false, .. } => Some("fire-seq"),
            Job::W8 { send: false, .. } => Some("recv"),
            Job::W8 { send: true, .. } => Some("send"),
            _ => None,
        }
    }

    fn size(self) -> Option<usize> {
        match self {
            Job::W1 { n } | Job::W2Churn { n } => Some(n),
            Job::W2Fire { k, .. } => Some(k),
            Job::W6 { kind } => Some(w6::KINDS[kind].1),
            Job::W8 { sockets, .. } => Some(sockets),
            Job::W3 | Job::W4 | Job::W5 | Job::W7 | Job::W7c => None,
        }
    }
}

/// A backend under test: its name in the tables and JSON, and its workloads.
struct Backend {
    name: &'static str,
    run: fn(Job, &Params) -> Vec<Measure>,
    /// W6 in the child process: bytes per registration, `None` where not measured.
    w6: fn(&str, usize) -> Option<f64>,
}

fn backend<C: Contender + 'static>(name: &'static str) -> Backend {
    Backend {
        name,
        run: run_job::<C>,
        w6: C::w6,
    }
}

/// Every backend, the floor first; a raw substrate (`glib-raw`, `calloop-raw`, `tokio-raw`)
/// beside the anyloop backend built on it.
fn backends() -> Vec<Backend> {
    use anyloop_adapter::Anyloop;
    use backends::{Calloop, Glib, Select, SelectMio, Tokio};
    vec![
        backend::<floor::Floor>("floor"),
        backend::<Anyloop<Select>>("select"),
        backend::<Anyloop<SelectMio>>("select-mio"),
        backend::<Anyloop<Glib>>("glib"),
        backend::<glib_raw::GlibRaw>("glib-raw"),
        backend::<Anyloop<Calloop>>("calloop"),
        backend::<calloop_raw::CalloopRaw>("calloop-raw"),
        backend::<Anyloop<Tokio>>("tokio"),
        backend::<tokio_raw::TokioRaw>("tokio-raw"),
    ]
}

fn run_job<C: Contender + 'static>(job: Job, p: &Params) -> Vec<Measure> {
    match job {
        Job::W1 { n } => w1::run::<C>(n, p),
        Job::W2Churn { n } => w2::churn::<C>(n, p),
        Job::W2Fire { k, batch } => vec![w2::fire::<C>(k, batch, p)],
        // The futures layer (`anyloop-async`) beside the callbacks: W3a, W4a.
        Job::W3 => [w3::run::<C>(p), async_layer::w3::<C>(p)].concat(),
        Job::W4 => [vec![w4::run::<C>(p)], async_layer::w4::<C>(p)].concat(),
        Job::W5 => w5::run::<C>(p),
        // Run by the driver in a child process per backend (see `main`).
        Job::W6 { .. } => Vec::new(),
        Job::W7 => w7::run::<C>(p),
        Job::W7c => C::w7c(p),
        Job::W8 { sockets, send } => w8::run::<C>(sockets, send, p),
    }
}

fn all_jobs() -> Vec<Job> {
    // W3 (latency of one wake-up) first: it is the figure most easily disturbed by state that
    // the heavier jobs leave behind in a substrate (a GLib context, calloop's timer wheel).
    let mut jobs = vec![Job::W3];
    jobs.extend([10, 1000, 10_000].map(|n| Job::W1 { n }));
    jobs.extend([10_000, 100_000].map(|n| Job::W2Churn { n }));
    for batch in [true, false] {
        jobs.extend([10_000, 100_000].map(|k| Job::W2Fire { k, batch }));
    }
    jobs.push(Job::W4);
    jobs.push(Job::W5);
    jobs.push(Job::W7);
    jobs.push(Job::W7c);
    for sockets in [1, 16] {
        jobs.extend([false, true].map(|send| Job::W8 { sockets, send }));
    }
    jobs.extend((0..w6::KINDS.len()).map(|kind| Job::W6 { kind }));
    jobs
}

struct Options {
    params: Params,
    only: Option<Vec<String>>,
    backends: Option<Vec<String>>,
    sizes: Option<Vec<usize>>,
    phases: Option<Vec<String>>,
    json: Option<PathBuf>,
}

const USAGE: &str = "workloads [--quick] [--passes P] [--only W1,W2,W3,W4,W5,W6,W7,W7c,W8] \
[--backend floor,select,...] [--n 10,1000,...] [--phase recv,send,churn,fire-batch,fire-seq] \
[--json PATH]";

fn parse_args() -> Option<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs the binary without it: then
    // there is nothing to assert, so do nothing (benchmarks are never part of the tests).
    if !args.iter().any(|a| a == "--bench") && args.is_empty() {
        println!("workloads: run it with `cargo bench -p anyloop-conformance --bench workloads`");
        return None;
    }
    let list = |v: Option<&String>| -> Vec<String> {
        v.unwrap_or_else(|| panic!("usage: {USAGE}"))
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    let mut o = Options {
        params: Params::full(),
        only: None,
        backends: None,
        sizes: None,
        phases: None,
        json: None,
    };
    let mut passes = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => {}
            "--quick" => o.params = Params::quick(),
            "--passes" => passes = Some(list(it.next())[0].parse().expect("--passes P")),
            "--only" => o.only = Some(list(it.next()).iter().map(|s| s.to_uppercase()).collect()),
            "--backend" => o.backends = Some(list(it.next())),
            "--n" => {
                o.sizes = Some(
                    list(it.next())
                        .iter()
                        .map(|s| s.parse().expect("--n"))
                        .collect(),
                )
            }
            "--phase" => o.phases = Some(list(it.next())),
            "--json" => o.json = Some(PathBuf::from(it.next().expect("--json PATH"))),
            "-h" | "--help" => {
                println!("usage: {USAGE}");
                return None;
            }
            // Filters cargo may forward (e.g. a bench name): ignore rather than fail.
            other => eprintln!("workloads: ignoring argument {other:?} (usage: {USAGE})"),
        }
    }
    if let Some(p) = passes {
        o.params.passes = p;
    }
    // For `tests/benches/syscalls.sh`, which counts kernel calls under strace (slow): fewer
    // W4 round trips per repeat.
    if let Some(k) = std::env::var("W4_ROUND_TRIPS")
        .ok()
        .and_then(|k| k.parse().ok())
    {
        o.params.w4_k = k;
    }
    Some(o)
}

/// `$CARGO_TARGET_DIR` if set, else `<workspace root>/target` (this crate sits one level
/// below the root).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    }
}

/// W6's child process: `--w6-child BACKEND KIND N` (see `w6.rs`).
fn w6_child() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("--w6-child") {
        return false;
    }
    let [_, backend, kind, n] = &args[..] else {
        panic!("usage: workloads --w6-child BACKEND KIND N");
    };
    sys::raise_nofile();
    let b = backends()
        .into_iter()
        .find(|b| b.name == backend)
        .unwrap_or_else(|| panic!("unknown backend {backend}"));
    w6::child(b.w6, kind, n.parse().expect("N"));
    true
}

/// What the callbacks given to the anyloop backends capture (a closure that captures nothing
/// is zero-sized: boxing it allocates nothing), printed above the tables.
const CLOSURES: &str = "What the closures capture (anyloop backends; the floor stores timers' \
`fn` pointer in its node and boxes watch callbacks once, before timing):\n\n\
- W1: nothing: the callback is a function item (the fd arrives as an argument, the counter is \
a static); zero-sized.\n\
- W2: churn timers capture a `fn()` pointer (8 bytes, like libvirt's opaque), so every \
`add_timer` in the churn figures includes one closure allocation that a zero-sized closure \
would not pay; the one-shots of fire-batch/fire-seq capture the same pointer (one allocation \
per firing).\n\
- W3: the posted closures capture nothing (zero-sized); the poster captures a `Loop` clone, \
made once before timing.\n\
- W4: nothing: function items, fds and counters in statics. W4a: each task's future holds its \
`Async` socket and a `fn` pointer, spawned once before timing.\n\
- W5: nothing: function items or non-capturing closures; counters in statics.\n\
- W6: nothing (zero-sized closures): the figure is the registration's own memory.\n\
- W7: nothing: function items (round trips counted in statics); the adapter's closure around \
each adds the interest last asked for (4 bytes: one allocation per watch, before timing).\n\
- W7c: the watch callback captures its side's `TimerId` and side index (registered once, \
before timing); the timers' closures capture nothing.\n\
- W8: each watch's closure owns its socket's index and stream position (and, for receive, \
its 16 KiB buffer), made once before timing.\n\n";

/// Runs one job on one backend once, logging each figure.
fn run_one(b: &Backend, job: Job, p: &Params, tag: &str) -> Vec<measure::Measure> {
    let t = Instant::now();
    let measures = match job {
        Job::W6 { kind } => w6::spawn(b.name, kind),
        _ => (b.run)(job, p),
    };
    for m in &measures {
        eprintln!(
            "  [{tag}] {:<10} {} {}{} n={} a={:?}: {:.1} {} ({:.1} s)",
            b.name,
            m.workload,
            m.phase.unwrap_or(""),
            if m.phase.is_some() { "" } else { "-" },
            m.n,
            m.a,
            m.ns,
            if m.workload == "W6" { "bytes" } else { "ns" },
            t.elapsed().as_secs_f64()
        );
    }
    measures
}

/// Reruns, once and with the same number of passes, every figure whose passes disagree by
/// more than [`measure::RERUN_SPREAD`]: its job on its backend only; the rerun's values replace
/// the first ones (a job yielding several figures updates only the noisy ones).
fn rerun_noisy(collector: &mut report::Collector, jobs: &[Job], backends: &[Backend], p: &Params) {
    let noisy = collector.noisy();
    // One rerun per (backend, job), covering every noisy figure it yields.
    let mut groups: Vec<(&'static str, usize, Vec<report::Key>)> = Vec::new();
    for (backend, job, key) in noisy {
        match groups.iter_mut().find(|g| g.0 == backend && g.1 == job) {
            Some(g) => g.2.push(key),
            None => groups.push((backend, job, vec![key])),
        }
    }
    for (backend, j, keys) in groups {
        let b = backends
            .iter()
            .find(|b| b.name == backend)
            .expect("a backend of this run");
        eprintln!(
            "rerun: {backend} {} ({} noisy figure(s)), {} passes",
            jobs[j].name(),
            keys.len(),
            p.passes
        );
        let mut fresh: Vec<(report::Key, Vec<measure::Measure>)> = Vec::new();
        for pass in 0..p.passes {
            let tag = format!("rerun {}/{}", pass + 1, p.passes);
            for m in run_one(b, jobs[j], p, &tag) {
                let key = (m.workload, m.phase, m.n, m.a);
                if !keys.contains(&key) {
                    continue;
                }
                match fresh.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push(m),
                    None => fresh.push((key, vec![m])),
                }
            }
        }
        for (key, measures) in fresh {
            let s = collector.replace(backend, key, measures);
            eprintln!(
                "rerun: {backend} {} {:?} n={} a={:?}: spread now {}",
                key.0,
                key.1,
                key.2,
                key.3,
                s.map_or("?".into(), |s| format!("{:.0}%", s * 100.0))
            );
        }
    }
}

fn main() {
    if w6_child() {
        return;
    }
    let Some(opts) = parse_args() else { return };
    sys::raise_nofile();
    let p = &opts.params;
    let jobs: Vec<Job> = all_jobs()
        .into_iter()
        .filter(|j| {
            opts.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|w| w.eq_ignore_ascii_case(j.name())))
        })
        .filter(|j| match (&opts.sizes, j.size()) {
            (Some(sizes), Some(n)) => sizes.contains(&n),
            _ => true,
        })
        .filter(|j| match (&opts.phases, j.phase()) {
            (Some(phases), Some(phase)) => phases.iter().any(|p| p == phase),
            _ => true,
        })
        .collect();
    let backends: Vec<Backend> = backends()
        .into_iter()
        .filter(|b| {
            opts.backends
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == b.name))
        })
        .collect();

    let started = Instant::now();
    let load_before = sys::loadavg();
    eprintln!("workloads: {p:?}\nload average before: {load_before}");
    let mut collector = report::Collector::default();
    for pass in 0..p.passes {
        for (j, job) in jobs.iter().enumerate() {
            // Rotate the backend order each pass so none always runs right after another.
            for i in 0..backends.len() {
                let b = &backends[(i + pass) % backends.len()];
                for m in run_one(b, *job, p, &format!("pass {}/{}", pass + 1, p.passes)) {
                    collector.add(b.name, j, m);
                }
            }
        }
    }
    if p.passes >= 2 {
        rerun_noisy(&mut collector, &jobs, &backends, p);
    }
    let load_after = sys::loadavg();
    let rows = collector.rows();

    let mut md = String::new();
    md.push_str(&format!(
        "Mode: {} ({} pass(es)); wall time {:.0} s; load average before {load_before}, after {load_after}; {} CPUs.\n\n",
        if p.passes == 1 { "quick or single pass" } else { "full" },
        p.passes,
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    ));
    md.push_str(&report::descriptions(&rows));
    md.push_str(CLOSURES);
    md.push_str(&report::markdown(&rows));
    md.push_str("\nTargets (ratios to the floor, or to the raw substrate, of this run):\n\n");
    md.push_str(&report::targets(&rows));
    println!("\n{md}");

    let json_path = opts
        .json
        .unwrap_or_else(|| target_dir().join("workloads.json"));
    if let Some(dir) = json_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(&report::json(&rows)).expect("serialise rows");
    std::fs::write(&json_path, text + "\n").expect("write workloads.json");
    let md_path = json_path.with_extension("md");
    std::fs::write(&md_path, &md).expect("write workloads.md");
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
}
