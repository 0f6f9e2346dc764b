//! `fetch`: downloads several URLs at once with libcurl, on the loop chosen with `--loop`,
//! through `anyloop-curl`.
//!
//! ```text
//! cargo run -p anyloop-examples --bin fetch -- -o /tmp https://example.org/ https://example.com/
//! cargo run -p anyloop-examples --bin fetch -- --loop glib --json URL...   # one JSON object per event
//! ```
//!
//! Every transfer runs on one thread, the loop's: one libcurl multi handle, its sockets
//! watched by the loop, its timer a loop timer. On a terminal each transfer has a progress
//! bar (on stderr) fed by the client's `TransferProgress` events; `--json` prints every event
//! instead. Bodies go to `-o DIR` (named after the URL's last path segment), or are counted
//! and dropped. Exit status: 0 when every transfer completed (with `--fail`, also with an
//! HTTP status below 400), 1 when one did not, 2 for a bad option, 130 after Ctrl-C (the
//! transfers in flight are cancelled).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyloop::{IoEvents, Loop, Runner, Watch};
use anyloop_backends::{ChooseError, LoopChoice};
use anyloop_curl::curl::easy::Easy2;
use anyloop_curl::{Client, Failed, TransferId, TransferProgress};
use anyloop_examples::download::{file_name, Store};
use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};

/// Download URLs at once with libcurl's multi interface, on the event loop of your choice.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The loop that runs the transfers: the built-in loop on epoll (`select`), on mio
    /// (`select-mio`) or on `poll(2)` (`select-poll`), a GLib main context (`glib`, in builds
    /// with the `glib` feature), a calloop event loop (`calloop`) or a tokio runtime (`tokio`,
    /// or `tokio-multi` for a multi-thread one).
    #[arg(
        long = "loop",
        default_value_t = LoopChoice::Select,
        value_name = "LOOP",
        value_parser = anyloop_examples::cli::loop_choice()
    )]
    event_loop: LoopChoice,
    /// Print one JSON object per event on stdout instead of progress bars.
    #[arg(long)]
    json: bool,
    /// Save the bodies in this directory (else they are counted and dropped).
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Fail a transfer whose HTTP status is 400 or more (libcurl's `--fail`).
    #[arg(long)]
    fail: bool,
    /// Give up on a transfer after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    timeout: Option<f64>,
    /// Give up on a connection not made within this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    connect_timeout: Option<f64>,
    /// At most this many connections at once to one host.
    #[arg(long, value_name = "N")]
    max_host_connections: Option<usize>,
    /// Trust the certificate authorities in this PEM file (libcurl's `--cacert`).
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// The URLs to download.
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 && value <= 1e6 => Ok(value),
        _ => Err(format!("`{text}` is not a number of seconds above 0")),
    }
}

/// The exit status after Ctrl-C, as a shell reports SIGINT.
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fetch: error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Loop(#[from] ChooseError),
    #[error("the loop failed: {0}")]
    Anyloop(#[from] anyloop::Error),
    #[error(transparent)]
    Curl(#[from] anyloop_curl::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// One URL to download.
struct Job {
    number: usize,
    url: String,
    name: String,
    /// Known once the client took the transfer.
    transfer: std::cell::Cell<TransferId>,
}

/// How events are shown.
trait Render {
    fn started(&mut self, job: &Job, transfer: TransferId);
    fn progress(&mut self, job: &Job, event: &TransferProgress);
    fn done(&mut self, job: &Job, report: &Report);
    fn summary(&mut self, ok: usize, failed: usize, interrupted: bool);
}

/// How a transfer ended, for the renderers.
struct Report {
    status: u32,
    bytes: u64,
    file: Option<PathBuf>,
    error: Option<anyloop_curl::Error>,
    elapsed: Duration,
}

fn run(args: &Args) -> Result<ExitCode, RunError> {
    // This thread owns the loop and runs it: it is the loop thread, where the client lives.
    let mut runner = args.event_loop.create()?;
    let lp = runner.handle();
    let mut builder = Client::builder(&lp).progress_interval(Duration::from_millis(100));
    if let Some(limit) = args.timeout {
        builder = builder.timeout(Duration::from_secs_f64(limit));
    }
    if let Some(limit) = args.connect_timeout {
        builder = builder.connect_timeout(Duration::from_secs_f64(limit));
    }
    if let Some(limit) = args.max_host_connections {
        builder = builder.max_host_connections(limit);
    }
    let client = builder.build()?;
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
            what: format!("cannot create {}", dir.display()),
            source,
        })?;
    }

    let render: Rc<RefCell<Box<dyn Render>>> = Rc::new(RefCell::new(if args.json {
        Box::new(Json::new(args.event_loop))
    } else {
        Box::new(Bars::new())
    }));
    let jobs: Rc<RefCell<HashMap<TransferId, Rc<Job>>>> = Rc::default();
    let outcome: Rc<RefCell<(usize, usize)>> = Rc::default();
    {
        // Thread-bound callbacks: they hold `Rc`s and the renderer, on the loop's thread.
        let (render, jobs) = (render.clone(), jobs.clone());
        client
            .events()
            .on_local::<TransferProgress>(move |event| {
                if let Some(job) = jobs.borrow().get(&event.transfer) {
                    render.borrow_mut().progress(job, event);
                }
            })
            .map_err(anyloop::Error::from)?;
    }

    let names: Vec<String> = args
        .urls
        .iter()
        .enumerate()
        .map(|(k, url)| file_name(url, k + 1, true))
        .collect();
    let unique = (1..names.len()).all(|k| !names[..k].contains(&names[k]));
    let mut transfers = Vec::new();
    let quitter = runner.quitter();
    let total = args.urls.len();
    for (k, url) in args.urls.iter().enumerate() {
        let job = Rc::new(Job {
            number: k + 1,
            url: url.clone(),
            name: file_name(url, k + 1, unique),
            transfer: std::cell::Cell::new(TransferId(0)),
        });
        let store = match &args.output_dir {
            Some(dir) => Store::file(dir.join(&job.name)),
            None => Store::discard(),
        };
        let easy = configure(Easy2::new(store), url, args)?;
        let started = Instant::now();
        let (done_job, render_done, outcome, quitter) = (
            job.clone(),
            render.clone(),
            outcome.clone(),
            quitter.clone(),
        );
        let transfer = client.start(easy, move |result| {
            let report = report(result, started);
            let ok = report.error.is_none();
            render_done.borrow_mut().done(&done_job, &report);
            let mut outcome = outcome.borrow_mut();
            if ok {
                outcome.0 += 1;
            } else {
                outcome.1 += 1;
            }
            if outcome.0 + outcome.1 == total {
                quitter.quit();
            }
        });
        match transfer {
            Ok(transfer) => {
                job.transfer.set(transfer.id());
                render.borrow_mut().started(&job, transfer.id());
                jobs.borrow_mut().insert(transfer.id(), job);
                transfers.push(transfer);
            }
            Err(failed) => return Err(failed.into_parts().0.into()),
        }
    }

    let interrupted = Rc::new(RefCell::new(false));
    let _interrupt = watch_interrupt(&lp, client.clone(), interrupted.clone(), runner.quitter())?;
    runner.run()?;
    let interrupted = *interrupted.borrow();
    // Cancels whatever is still in flight (after Ctrl-C); completed transfers are no-ops.
    drop(transfers);
    let (ok, failed) = *outcome.borrow();
    render.borrow_mut().summary(ok, failed, interrupted);
    drop(client);
    // The frees of the client's last watch and timer run on the loop.
    runner.run_once(Some(Duration::ZERO))?;
    Ok(if interrupted {
        ExitCode::from(INTERRUPTED)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn configure(mut easy: Easy2<Store>, url: &str, args: &Args) -> Result<Easy2<Store>, RunError> {
    let option = |what: &'static str| move |source| anyloop_curl::Error::Easy { what, source };
    easy.url(url).map_err(option("CURLOPT_URL"))?;
    easy.follow_location(true)
        .map_err(option("CURLOPT_FOLLOWLOCATION"))?;
    easy.fail_on_error(args.fail)
        .map_err(option("CURLOPT_FAILONERROR"))?;
    easy.useragent(concat!("anyloop-fetch/", env!("CARGO_PKG_VERSION")))
        .map_err(option("CURLOPT_USERAGENT"))?;
    if let Some(cacert) = &args.cacert {
        easy.cainfo(cacert).map_err(option("CURLOPT_CAINFO"))?;
    }
    Ok(easy)
}

fn report(result: Result<Easy2<Store>, Failed<Store>>, started: Instant) -> Report {
    let (easy, error) = match result {
        Ok(easy) => (Some(easy), None),
        Err(failed) => {
            let (error, easy) = failed.into_parts();
            (easy, Some(error))
        }
    };
    let status = easy
        .as_ref()
        .and_then(|easy| easy.response_code().ok())
        .unwrap_or(0);
    let store = easy.as_ref().map(Easy2::get_ref);
    Report {
        status,
        bytes: store.map_or(0, |store| store.bytes),
        file: store.and_then(|store| store.path().map(PathBuf::from)),
        error,
        elapsed: started.elapsed(),
    }
}

/// Ctrl-C (or SIGTERM, a hang-up): closes the client, which ends every transfer in flight,
/// and stops the loop. The signal handler only writes to a pipe that a thread-bound watch
/// reads, so nothing runs in signal context and no thread is needed.
fn watch_interrupt(
    lp: &Loop,
    client: Client,
    interrupted: Rc<RefCell<bool>>,
    quitter: anyloop::Quitter,
) -> Result<Watch, RunError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source: std::io::Error| RunError::Io { what, source }
    };
    let (read_end, write_end) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
    )
    .map_err(|e| io("cannot watch for Ctrl-C")(e.into()))?;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for signal in [SIGINT, SIGHUP, SIGTERM] {
        let write_end = write_end
            .try_clone()
            .map_err(io("cannot watch for Ctrl-C"))?;
        signal_hook::low_level::pipe::register(signal, write_end)
            .map_err(io("cannot watch for Ctrl-C"))?;
    }
    let fd = read_end.as_raw_fd();
    let watch = lp
        .watch_local(fd, IoEvents::READABLE, move |_, _, _| {
            let mut drained = [0u8; 64];
            while matches!(rustix::io::read(&read_end, &mut drained), Ok(n) if n > 0) {}
            *interrupted.borrow_mut() = true;
            client.close();
            quitter.quit();
        })
        .map_err(anyloop::Error::from)?;
    Ok(watch)
}

/// Progress bars on stderr (drawn only when it is a terminal) and a line per finished
/// transfer on stdout.
struct Bars {
    bars: MultiProgress,
    by_job: HashMap<usize, ProgressBar>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            bars: MultiProgress::new(),
            by_job: HashMap::new(),
        }
    }

    fn say(&self, line: String) {
        self.bars.suspend(|| {
            // A closed stdout must not stop the downloads.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        });
    }
}

impl Render for Bars {
    fn started(&mut self, job: &Job, _transfer: TransferId) {
        let bar = self.bars.add(ProgressBar::new(0));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:<20.bold} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(job.name.clone());
        self.by_job.insert(job.number, bar);
    }

    fn progress(&mut self, job: &Job, event: &TransferProgress) {
        if let Some(bar) = self.by_job.get(&job.number) {
            if let Some(total) = event.progress.download_total {
                bar.set_length(total);
            }
            bar.set_position(event.progress.downloaded);
        }
    }

    fn done(&mut self, job: &Job, report: &Report) {
        if let Some(bar) = self.by_job.remove(&job.number) {
            bar.finish_and_clear();
        }
        let line = match &report.error {
            None => format!(
                "{}: {} ({} bytes, status {}, {:.1?}){}",
                job.name,
                job.url,
                report.bytes,
                report.status,
                report.elapsed,
                report
                    .file
                    .as_ref()
                    .map(|file| format!(" -> {}", file.display()))
                    .unwrap_or_default()
            ),
            Some(error) => format!("{}: {} FAILED: {error}", job.name, job.url),
        };
        self.say(line);
    }

    fn summary(&mut self, ok: usize, failed: usize, interrupted: bool) {
        let tail = if interrupted { ", interrupted" } else { "" };
        eprintln!("fetch: {ok} completed, {failed} failed{tail}");
    }
}

/// One JSON object per event on stdout.
struct Json {
    started: Instant,
    event_loop: LoopChoice,
}

impl Json {
    fn new(event_loop: LoopChoice) -> Self {
        Json {
            started: Instant::now(),
            event_loop,
        }
    }

    fn print(&self, mut object: Value) {
        if let Value::Object(fields) = &mut object {
            fields.insert("loop".into(), self.event_loop.name().into());
            let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            fields.insert("time_ms".into(), millis.into());
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{object}");
        let _ = out.flush();
    }
}

impl Render for Json {
    fn started(&mut self, job: &Job, transfer: TransferId) {
        self.print(json!({
            "event": "started", "transfer": transfer.0, "url": job.url, "name": job.name,
        }));
    }

    fn progress(&mut self, job: &Job, event: &TransferProgress) {
        self.print(json!({
            "event": "progress",
            "transfer": event.transfer.0,
            "name": job.name,
            "downloaded": event.progress.downloaded,
            "total": event.progress.download_total,
        }));
    }

    fn done(&mut self, job: &Job, report: &Report) {
        self.print(json!({
            "event": "done",
            "transfer": job.transfer.get().0,
            "name": job.name,
            "url": job.url,
            "ok": report.error.is_none(),
            "status": report.status,
            "bytes": report.bytes,
            "file": report.file.as_ref().map(|file| file.display().to_string()),
            "error": report.error.as_ref().map(ToString::to_string),
            "curl_code": report.error.as_ref().and_then(anyloop_curl::Error::curl_code),
            "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        }));
    }

    fn summary(&mut self, ok: usize, failed: usize, interrupted: bool) {
        self.print(json!({
            "event": "summary", "completed": ok, "failed": failed, "interrupted": interrupted,
        }));
    }
}
