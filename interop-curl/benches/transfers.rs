//! anyloop-curl beside libcurl's own loop: transfers per second for many small bodies and
//! MB/s for a few large ones, on every backend, against a loopback server this benchmark
//! starts.
//!
//! ```text
//! cargo bench -p anyloop-curl --bench transfers            # 7 passes per figure
//! cargo bench -p anyloop-curl --bench transfers -- --quick # 3 passes
//! cargo bench -p anyloop-curl --bench transfers -- --quick --only select,glib
//! ```
//!
//! - `small`: 1 000 GET of 1 KiB each, at most 100 in flight (a new one starts when one
//!   ends), over at most 100 connections (`CURLMOPT_MAX_HOST_CONNECTIONS`), kept alive.
//! - `large`: 4 GET of 32 MiB each at once, over 4 connections.
//!
//! Drivers, all on this one thread, each pass with a fresh multi handle (so fresh
//! connections): `libcurl` is libcurl's own loop (`Multi::perform` + `Multi::wait`, the raw
//! substrate); `select`, `select-mio`, `glib`, `calloop`, `tokio` are an
//! `anyloop_curl::Client` on that backend (`LoopChoice`), started and chained from its `done`
//! callbacks. Each figure is the median of its passes, with the spread (min–max); the ratio
//! is the backend's median time over libcurl's own loop's, measured in the same run. The
//! loop thread's CPU time per transfer (per MB for `large`) is the driver's own cost, apart
//! from the time spent waiting for the server; its ratio is to libcurl's own loop's.
//!
//! The server is the tests' (a thread per connection, bodies served from one buffer made
//! once). It is checked not to be the bottleneck: its connection threads' CPU time per pass
//! is measured, and the requests (or bytes) it could serve per second of that CPU time are
//! printed beside what the client achieved.
//!
//! Writes `target/curl-transfers.json`.

#[allow(dead_code)]
#[path = "../tests/support/server.rs"]
mod server;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use anyloop::Runner;
use anyloop_backends::LoopChoice;
use anyloop_curl::curl::easy::{Easy2, Handler, WriteError};
use anyloop_curl::curl::multi::Multi;
use anyloop_curl::Client;
use serde_json::json;
use server::{thread_cpu_ns, Server};

/// Counts body bytes and keeps none.
struct Count(u64);

impl Handler for Count {
    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        self.0 += data.len() as u64;
        Ok(data.len())
    }
}

/// One workload.
#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    transfers: usize,
    body: usize,
    in_flight: usize,
}

const SMALL: Workload = Workload {
    name: "small",
    transfers: 1000,
    body: 1024,
    in_flight: 100,
};
const LARGE: Workload = Workload {
    name: "large",
    transfers: 4,
    body: 32 << 20,
    in_flight: 4,
};

/// One pass: wall time and the loop thread's CPU time.
#[derive(Clone, Copy)]
struct Pass {
    wall: Duration,
    client_cpu: Duration,
    server_cpu: Duration,
}

fn easy(url: &str) -> Easy2<Count> {
    let mut easy = Easy2::new(Count(0));
    easy.url(url).expect("url");
    easy
}

/// libcurl's own loop: `perform`, read the finished transfers, start the next ones, `wait`.
fn libcurl_pass(url: &str, load: Workload) -> (Duration, Duration) {
    let mut multi = Multi::new();
    multi.set_max_host_connections(100).expect("limit");
    let mut handles = HashMap::new();
    let (mut next, mut done, mut bytes) = (0usize, 0usize, 0u64);
    let started = Instant::now();
    let cpu = thread_cpu_ns();
    let launch = |multi: &Multi, handles: &mut HashMap<usize, _>, next: &mut usize| {
        let mut handle = multi.add2(easy(url)).expect("add");
        handle.set_token(*next).expect("token");
        handles.insert(*next, handle);
        *next += 1;
    };
    while next < load.in_flight.min(load.transfers) {
        launch(&multi, &mut handles, &mut next);
    }
    while done < load.transfers {
        multi.perform().expect("perform");
        let mut finished = Vec::new();
        multi.messages(|message| {
            if let (Ok(token), Some(result)) = (message.token(), message.result()) {
                finished.push((token, result));
            }
        });
        for (token, result) in finished {
            result.expect("transfer");
            let handle = handles.remove(&token).expect("handle");
            let easy = multi.remove2(handle).expect("remove");
            bytes += easy.get_ref().0;
            done += 1;
            if next < load.transfers {
                launch(&multi, &mut handles, &mut next);
            }
        }
        if done < load.transfers {
            multi.wait(&mut [], Duration::from_secs(1)).expect("wait");
        }
    }
    let took = started.elapsed();
    let cpu = Duration::from_nanos(thread_cpu_ns() - cpu);
    assert_eq!(bytes, (load.transfers * load.body) as u64);
    (took, cpu)
}

/// The driver's state for an anyloop pass.
struct Chain {
    client: Client,
    url: String,
    total: usize,
    next: Cell<usize>,
    done: Cell<usize>,
    bytes: Cell<u64>,
}

fn launch(chain: &Rc<Chain>) {
    chain.next.set(chain.next.get() + 1);
    let again = chain.clone();
    chain
        .client
        .start(easy(&chain.url), move |result| {
            let easy = result.expect("transfer");
            again.bytes.set(again.bytes.get() + easy.get_ref().0);
            again.done.set(again.done.get() + 1);
            if again.next.get() < again.total {
                launch(&again);
            }
        })
        .expect("start")
        .detach();
}

/// An `anyloop_curl::Client` on `choice`'s loop.
fn anyloop_pass(choice: LoopChoice, url: &str, load: Workload) -> (Duration, Duration) {
    let mut lp = choice.create().expect("loop");
    let client = Client::builder(&lp.handle())
        .max_host_connections(100)
        .build()
        .expect("client");
    let chain = Rc::new(Chain {
        client,
        url: url.to_owned(),
        total: load.transfers,
        next: Cell::new(0),
        done: Cell::new(0),
        bytes: Cell::new(0),
    });
    let started = Instant::now();
    let cpu = thread_cpu_ns();
    for _ in 0..load.in_flight.min(load.transfers) {
        launch(&chain);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let finished = lp
        .run_until(Some(deadline), &mut || chain.done.get() == load.transfers)
        .expect("run");
    let took = started.elapsed();
    let cpu = Duration::from_nanos(thread_cpu_ns() - cpu);
    assert_eq!(finished, anyloop::Stopped::Done, "{choice}: hung");
    assert_eq!(chain.bytes.get(), (load.transfers * load.body) as u64);
    chain.client.close();
    (took, cpu)
}

/// The server's connection threads' CPU time since `before`, once the pass's connections
/// closed (their threads add their CPU time when they end).
fn server_cpu(server: &Server, before: u64) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().open.load(SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    Duration::from_nanos(server.stats().cpu_ns.load(SeqCst) - before)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let passes = if quick { 3 } else { 7 };
    let server = Server::http();
    server::static_body(); // made before any pass
    let mut drivers = vec!["libcurl".to_owned()];
    drivers.extend(LoopChoice::built().map(|choice| choice.name().to_owned()));
    // `--only NAME,NAME`: some drivers (for strace or perf); libcurl's own loop stays first.
    let args: Vec<String> = std::env::args().collect();
    if let Some(only) = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|k| args.get(k + 1))
    {
        let only: Vec<&str> = only.split(',').collect();
        drivers.retain(|driver| driver == "libcurl" || only.contains(&driver.as_str()));
    }
    let mut report = Vec::new();
    println!(
        "anyloop-curl vs libcurl's own loop (libcurl {}), {passes} passes per figure, loopback server",
        curl_version()
    );
    for load in [SMALL, LARGE] {
        let url = server.url(&format!("/static/{}", load.body));
        let unit = if load.name == "small" {
            "transfers/s"
        } else {
            "MB/s"
        };
        let per = if load.name == "small" {
            "transfer"
        } else {
            "MB"
        };
        println!(
            "\n{} ({} x {} B, {} in flight)\n{:<11} {:>12} {:>15} {:>7} {:>14} {:>9} {:>10} {:>22}",
            load.name,
            load.transfers,
            load.body,
            load.in_flight,
            "driver",
            unit,
            "spread",
            "ratio",
            format!("CPU µs/{per}"),
            "CPU ratio",
            "CPU busy",
            "server capacity"
        );
        let mut base_time = None;
        let mut base_cpu = None;
        // Interleaved: pass k of every driver, then pass k+1, so that a noisy spell of the
        // machine hits every driver alike.
        let mut runs: HashMap<&str, Vec<Pass>> = HashMap::new();
        for _ in 0..passes {
            for driver in &drivers {
                let before = server.stats().cpu_ns.load(SeqCst);
                let (wall, client_cpu) = if driver == "libcurl" {
                    libcurl_pass(&url, load)
                } else {
                    let choice: LoopChoice = driver.parse().expect("a built backend");
                    anyloop_pass(choice, &url, load)
                };
                let server_cpu = server_cpu(&server, before);
                runs.entry(driver).or_default().push(Pass {
                    wall,
                    client_cpu,
                    server_cpu,
                });
            }
        }
        for driver in &drivers {
            let passes = &runs[driver.as_str()];
            let rate = |pass: &Pass| {
                let per_second = 1.0 / pass.wall.as_secs_f64();
                if load.name == "small" {
                    load.transfers as f64 * per_second
                } else {
                    (load.transfers * load.body) as f64 / 1e6 * per_second
                }
            };
            let rates: Vec<f64> = passes.iter().map(rate).collect();
            let time = median(passes.iter().map(|p| p.wall.as_secs_f64()).collect());
            let value = median(rates.clone());
            let (low, high) = rates
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            let base = *base_time.get_or_insert(time);
            let ratio = time / base;
            let client_cpu = median(
                passes
                    .iter()
                    .map(|p| p.client_cpu.as_secs_f64() / p.wall.as_secs_f64())
                    .collect(),
            );
            // The loop thread's CPU time per transfer (per MB): the driver's own cost, which
            // the wall time mixes with waiting for the server.
            let work = if load.name == "small" {
                load.transfers as f64
            } else {
                (load.transfers * load.body) as f64 / 1e6
            };
            let cpu_per = median(
                passes
                    .iter()
                    .map(|p| p.client_cpu.as_secs_f64() * 1e6 / work)
                    .collect(),
            );
            let cpu_ratio = cpu_per / *base_cpu.get_or_insert(cpu_per);
            // What the server could serve per second of its own CPU time.
            let capacity = median(
                passes
                    .iter()
                    .map(|p| {
                        let work = if load.name == "small" {
                            load.transfers as f64
                        } else {
                            (load.transfers * load.body) as f64 / 1e6
                        };
                        work / p.server_cpu.as_secs_f64().max(1e-9)
                    })
                    .collect(),
            );
            println!(
                "{driver:<11} {value:>12.0} {:>15} {ratio:>6.2}x {cpu_per:>14.1} {cpu_ratio:>8.2}x {:>9.0}% {capacity:>10.0} {unit}",
                format!("{low:.0}–{high:.0}"),
                client_cpu * 100.0
            );
            report.push(json!({
                "workload": load.name,
                "driver": driver,
                "unit": unit,
                "median": value,
                "min": low,
                "max": high,
                "time_ratio_to_libcurl": ratio,
                "client_cpu_share": client_cpu,
                "client_cpu_us_per_unit": cpu_per,
                "client_cpu_ratio_to_libcurl": cpu_ratio,
                "server_capacity": capacity,
                "passes": rates,
            }));
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/curl-transfers.json");
    let json = serde_json::to_string_pretty(&report).expect("json");
    match std::fs::write(path, json) {
        Ok(()) => println!("\nwrote {path}"),
        Err(error) => eprintln!("cannot write {path}: {error}"),
    }
}

fn curl_version() -> String {
    anyloop_curl::curl::Version::get().version().to_owned()
}
