//! `gtk_relay`: the example line relay inside a GTK 4 window, on anyloop's GLib backend.
//!
//! ```text
//! cargo run -p anyloop-examples --features gtk --bin gtk_relay                 # the window
//! xvfb-run -a cargo run -p anyloop-examples --features gtk --bin gtk_relay -- --self-test
//! ```
//!
//! The library ([`LineRelay`], written against the anyloop vtable only) is plugged into the
//! GTK application's main context with ONE call, [`anyloop_glib::install_default`]. As in the
//! `relay --demo`, a timer feeds lines into a pipe and the relay reads them back through an
//! fd watch; here its numbered output goes into a second pipe, which another anyloop watch
//! reads and shows in the window, line by line, with the relay's events and a status line.
//! Every anyloop callback runs on GTK's main thread, inside `gtk::Application::run`. They are
//! *thread-bound* callbacks ([`anyloop::Loop::watch_local`], [`anyloop::Loop::timer_local`],
//! [`LineRelay::start_local`]): closures that are not `Send`, capturing the window's state
//! (an `Rc<RefCell<Ui>>` holding the GTK widgets) and updating the widgets directly, with no
//! channel, no lock, no thread-local and no `unsafe`. anyloop guarantees that they are only
//! ever called and dropped on this thread ([R42](anyloop::contract#r42)).
//!
//! `--self-test` runs the real window (under Xvfb in CI: `xvfb-run -a`), waits until the
//! relay has reported every line and gone idle, checks what the window shows, optionally
//! saves a screenshot (`--screenshot PATH`), and exits 0 (1 on a failed check or after 20 s).

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyloop::{IoEvents, Loop, Runner, Schedule, Timer, TimerId, Watch};
use anyloop_examples::gtk_self_test::{self, SelfTest};
use anyloop_examples::relay::{LineRelay, RelayConfig, RelayEvent, DEMO_IDLE_TIMEOUT};
use clap::Parser;
use gtk4 as gtk;
use gtk4::glib;
use gtk4::prelude::*;

/// The example line relay in a GTK 4 window, on the GLib backend of anyloop.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Run the window, wait for the relay's events, check what the window shows, exit 0.
    #[arg(long)]
    self_test: bool,
    /// With --self-test: save a PNG of the window once the checks passed.
    #[arg(long, value_name = "PATH")]
    screenshot: Option<PathBuf>,
}

/// What the demo feeder writes, one line every 150 ms.
const LINES: [&str; 6] = [
    "anyloop demo: this line was written by a timer",
    "and read back by an fd watch on the same loop",
    "the relay numbers each line and writes it to a pipe",
    "another watch reads that pipe and shows it here",
    "all of it runs on GTK's own main loop",
    "after the last line the relay reports idle",
];

/// How long the self-test waits before failing.
const SELF_TEST_LIMIT: Duration = Duration::from_secs(20);

/// The window's widgets and what they show, shared (`Rc<RefCell<..>>`) by the anyloop
/// callbacks that update it; on GTK's main thread only (GTK widgets are not `Send`).
struct Ui {
    window: gtk::ApplicationWindow,
    list: gtk::ListBox,
    status: gtk::Label,
    /// The text of every row, in order (what the self-test checks).
    rows: Vec<String>,
    lines_shown: usize,
    state: String,
    relay: Option<LineRelay>,
    /// The demo's anyloop registrations, kept for the window's lifetime.
    registrations: Vec<Registration>,
    /// Lines the feeder wrote so far.
    fed: usize,
    /// Pending partial output line.
    partial: Vec<u8>,
    self_test: Option<SelfTest>,
}

#[allow(dead_code)] // held for their Drop only
enum Registration {
    Watch(Watch),
    Timer(Timer),
}

/// The window's state as the callbacks hold it.
type SharedUi = Rc<RefCell<Ui>>;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.self_test {
        gtk_self_test::prepare_environment();
    }
    // The one call: anyloop's vtable on GLib's default main context, installed as the
    // process default loop. Everything anyloop does from here on runs inside GTK's loop.
    let anyloop = match anyloop_glib::install_default() {
        Ok(lp) => lp,
        Err(err) => {
            eprintln!("gtk_relay: cannot plug anyloop into GLib: {err}");
            return ExitCode::FAILURE;
        }
    };

    let outcome: gtk_self_test::Outcome = Rc::default();
    let (self_test, screenshot, o) = (args.self_test, args.screenshot.clone(), outcome.clone());
    let (status, window) =
        gtk_self_test::run_application("org.anyloop.GtkRelay", &outcome, move |app| {
            build(app, self_test, screenshot.clone(), o.clone())
        });

    // Window closed: stop the relay and remove the demo's registrations; dropping the loop
    // then frees every callback, here, on the thread they belong to.
    if let Some(ui) = window {
        ui.borrow_mut().shut_down();
    }
    let stats = anyloop.stats();
    drop(anyloop);

    if outcome.borrow().is_none() && status == glib::ExitCode::SUCCESS {
        eprintln!("gtk_relay: done ({} anyloop iterations)", stats.iterations);
    }
    gtk_self_test::exit_code("gtk_relay", &outcome, status)
}

/// Builds the window and starts the relay on anyloop's current (default) loop.
fn build(
    app: &gtk::Application,
    self_test: bool,
    screenshot: Option<PathBuf>,
    outcome: gtk_self_test::Outcome,
) -> Result<SharedUi, Box<dyn std::error::Error>> {
    let window = gtk::ApplicationWindow::builder()
        .application(app)
        .title("anyloop relay — GTK 4")
        .default_width(680)
        .default_height(440)
        .build();
    let column = gtk::Box::new(gtk::Orientation::Vertical, 8);
    column.set_margin_top(12);
    column.set_margin_bottom(12);
    column.set_margin_start(12);
    column.set_margin_end(12);
    let heading = gtk::Label::new(Some(
        "A library written against anyloop, running on GTK's main loop (anyloop-glib)",
    ));
    heading.set_xalign(0.0);
    heading.add_css_class("heading");
    let list = gtk::ListBox::new();
    list.set_selection_mode(gtk::SelectionMode::None);
    let scroller = gtk::ScrolledWindow::builder()
        .vexpand(true)
        .child(&list)
        .build();
    scroller.add_css_class("frame");
    let status = gtk::Label::new(Some("starting…"));
    status.set_xalign(0.0);
    column.append(&heading);
    column.append(&scroller);
    column.append(&status);
    window.set_child(Some(&column));

    let ui: SharedUi = Rc::new(RefCell::new(Ui {
        window: window.clone(),
        list,
        status,
        rows: Vec::new(),
        lines_shown: 0,
        state: "running".into(),
        relay: None,
        registrations: Vec::new(),
        fed: 0,
        partial: Vec::new(),
        self_test: self_test.then(|| SelfTest::new(app, screenshot.clone(), outcome.clone())),
    }));

    // The library side: only `anyloop::Loop`, found through the process default.
    let lp = Loop::current()?;
    let (input, feed) = rustix::pipe::pipe()?;
    let (output_reader, output) = rustix::pipe::pipe()?;
    let config = RelayConfig {
        idle_timeout: Some(DEMO_IDLE_TIMEOUT),
        ..RelayConfig::default()
    };
    // Thread-bound: the relay's reports go straight into the window.
    let relay = {
        let ui = ui.clone();
        LineRelay::start_local(&lp, input, output, config, move |event| {
            on_relay_event(&ui, event)
        })?
    };
    let feeder = start_feeder(&lp, feed, ui.clone())?;
    let output_watch = watch_output(&lp, output_reader, ui.clone())?;
    {
        let mut state = ui.borrow_mut();
        state.relay = Some(relay);
        state.registrations = vec![
            Registration::Timer(feeder),
            Registration::Watch(output_watch),
        ];
        state.refresh_status();
    }

    if self_test {
        let (app, ui) = (app.clone(), ui.clone());
        glib::timeout_add_local_once(SELF_TEST_LIMIT, move || {
            if outcome.borrow().is_none() {
                let seen = ui.borrow().rows.join(" | ");
                *outcome.borrow_mut() = Some(Err(format!(
                    "no idle report within {SELF_TEST_LIMIT:?}; window shows: {seen}"
                )));
            }
            app.quit();
        });
    }
    window.present();
    Ok(ui)
}

/// The relay's events, on GTK's main thread.
fn on_relay_event(ui: &SharedUi, event: RelayEvent) {
    let mut state = ui.borrow_mut();
    match &event {
        RelayEvent::Line { .. } => {}
        RelayEvent::Idle { after } => {
            state.state = format!("idle (no input for {after:?})");
            state.add_row(format!("··  relay: idle after {after:?}"));
            if state.self_test.is_some() {
                schedule_self_test_check(ui.clone(), &mut state);
            }
        }
        RelayEvent::Backpressure { paused } => {
            state.state = if *paused { "paused" } else { "running" }.into();
        }
        RelayEvent::Finished { lines, .. } => {
            state.state = format!("finished after {lines} lines");
            let row = state.state.clone();
            state.add_row(row);
        }
        RelayEvent::Failed { side, error } => {
            state.state = format!("{side} failed: {error}");
            let row = state.state.clone();
            state.add_row(row);
        }
    }
    state.refresh_status();
}

/// The demo's producer: a one-shot anyloop timer that writes one line into the relay's input
/// pipe, counts it in the window's state and re-arms itself 150 ms later while lines remain;
/// then it stays disabled (the pipe stays open, so the relay idles).
fn start_feeder(lp: &Loop, pipe: OwnedFd, ui: SharedUi) -> anyloop::Result<Timer> {
    const PERIOD: Duration = Duration::from_millis(150);
    let timers = lp.clone();
    let timer = lp.timer_local(Schedule::Once(PERIOD), move |id: TimerId| {
        let mut state = ui.borrow_mut();
        let Some(line) = LINES.get(state.fed) else {
            return;
        };
        // A pipe holds far more than six short lines: this write never blocks.
        let _ = rustix::io::write(&pipe, format!("{line}\n").as_bytes());
        state.fed += 1;
        state.refresh_status();
        if state.fed < LINES.len() {
            // Re-arming a one-shot from its own callback starts a new countdown (R36).
            let _ = timers.update_timer(id, Schedule::Once(PERIOD));
        }
    })?;
    Ok(timer)
}

/// Reads what the relay wrote and shows it, a line per row.
fn watch_output(lp: &Loop, pipe: OwnedFd, ui: SharedUi) -> anyloop::Result<Watch> {
    rustix::fs::fcntl_setfl(&pipe, rustix::fs::OFlags::NONBLOCK).map_err(|err| {
        anyloop::Error::Os {
            op: "fcntl(O_NONBLOCK)",
            fd: Some(pipe.as_raw_fd()),
            source: io::Error::from(err),
        }
    })?;
    let fd = pipe.as_raw_fd();
    let watch = lp.watch_local(fd, IoEvents::READABLE, move |_id, _fd, _events| {
        let mut buf = [0u8; 4096];
        // Level-triggered: one bounded read per call, called again while data is left.
        let n = rustix::io::read(&pipe, &mut buf).unwrap_or(0);
        ui.borrow_mut().output(&buf[..n]);
    })?;
    Ok(watch)
}

impl Ui {
    fn add_row(&mut self, text: String) {
        let label = gtk::Label::new(Some(&text));
        label.set_xalign(0.0);
        label.set_margin_start(6);
        label.set_margin_top(2);
        label.set_margin_bottom(2);
        self.list.append(&label);
        self.rows.push(text);
    }

    fn output(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.lines_shown += 1;
            self.add_row(format!("→  {text}"));
        }
        self.refresh_status();
    }

    fn refresh_status(&mut self) {
        let stats = self
            .relay
            .as_ref()
            .map(LineRelay::stats)
            .unwrap_or_default();
        let thread = std::thread::current();
        self.status.set_text(&format!(
            "relay: {} lines · {} bytes in · {} bytes out · {} · fed {}/{} · callbacks on thread {:?}",
            stats.lines,
            stats.bytes_in,
            stats.bytes_out,
            self.state,
            self.fed,
            LINES.len(),
            thread.name().unwrap_or("?"),
        ));
    }

    /// Stops the relay and removes the demo's watch and timer (their callbacks, which hold
    /// this state, are freed by the loop).
    fn shut_down(&mut self) {
        self.relay = None;
        self.registrations.clear();
    }

    /// What the self-test expects the window to show.
    fn check(&self) -> Result<String, String> {
        let shown: Vec<&String> = self.rows.iter().filter(|r| r.starts_with('→')).collect();
        if shown.len() != LINES.len() {
            return Err(format!(
                "{} relayed lines shown, expected {}: {:?}",
                shown.len(),
                LINES.len(),
                self.rows
            ));
        }
        for (k, (row, line)) in shown.iter().zip(LINES).enumerate() {
            // The relay numbers lines like `cat -n`: right-aligned number, a tab, the text.
            let number = format!("{}", k + 1);
            if !(row.contains(line) && row.contains(&number)) {
                return Err(format!(
                    "row {k} shows {row:?}, expected line {number}: {line:?}"
                ));
            }
        }
        if !self.rows.last().is_some_and(|r| r.contains("idle")) {
            return Err(format!("no idle row at the end: {:?}", self.rows));
        }
        // The real widgets agree with our record.
        let mut widget_rows = 0;
        let mut child = self.list.first_child();
        while let Some(row) = child {
            widget_rows += 1;
            child = row.next_sibling();
        }
        if widget_rows != self.rows.len() {
            return Err(format!(
                "{widget_rows} rows in the list, {} recorded",
                self.rows.len()
            ));
        }
        let status = self.status.text();
        if !(status.contains("6 lines") && status.contains("idle")) {
            return Err(format!("status line shows {status:?}"));
        }
        if !self.window.is_visible() {
            return Err("the window is not visible".into());
        }
        Ok(format!("{} rows shown; status: {status}", self.rows.len()))
    }
}

/// After the work is done: check the window from a fresh main-loop turn (GTK lays out and
/// draws the last changes meanwhile), save the screenshot, quit.
fn schedule_self_test_check(ui: SharedUi, state: &mut Ui) {
    if let Some(test) = state.self_test.as_mut() {
        test.finish_soon(&state.window, move || ui.borrow().check());
    }
}
