//! `gtk_fetch`: downloads in a GTK 4 window, a progress bar per transfer, with libcurl's
//! multi interface running on GTK's own main loop through `anyloop-curl`.
//!
//! ```text
//! cargo run -p anyloop-examples --features gtk --bin gtk_fetch -- https://example.org/ URL...
//! xvfb-run -a cargo run -p anyloop-examples --features gtk --bin gtk_fetch -- --self-test --screenshot shot.png URL...
//! ```
//!
//! No second thread and no runtime: [`anyloop_glib::install_default`] plugs anyloop into
//! GLib's default main context (the one `gtk::Application::run` iterates), the
//! [`anyloop_curl::Client`] watches libcurl's sockets and arms its timer there, and every
//! callback (a transfer's end, the client's [`TransferProgress`] events) is a *thread-bound*
//! closure that updates the GTK widgets directly through an `Rc<RefCell<..>>`: no channel, no
//! lock, no `unsafe`. Each row has a progress bar, a status, and buttons to pause/resume
//! ([`Transfer::pause`]) and cancel (dropping the [`Transfer`]); the entry at the top starts
//! more downloads.
//!
//! `--self-test` downloads the URLs given, waits until every transfer ended, checks what the
//! window shows against what the transfers reported (and that every callback ran on GTK's
//! thread), optionally saves a screenshot, prints one line per transfer and exits 0 (1 on a
//! failed check or after 20 s). With `--self-test-pause ROW` and `--self-test-cancel ROW` it
//! also presses those rows' buttons and checks what the transfers did (see `presses.rs`).

mod presses;

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::thread::ThreadId;
use std::time::Duration;

use anyloop::Loop;
use anyloop_curl::curl::easy::Easy2;
use anyloop_curl::{Client, Failed, Transfer, TransferId, TransferProgress};
use anyloop_examples::download::{file_name, Store};
use anyloop_examples::gtk_self_test::{self, SelfTest};
use clap::Parser;
use gtk4 as gtk;
use gtk4::glib;
use gtk4::prelude::*;

/// Download URLs in a GTK 4 window, with libcurl on GTK's main loop.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Download the URLs, wait until every transfer ended, check the window, exit.
    #[arg(long)]
    self_test: bool,
    /// With --self-test: save a PNG of the window once the checks passed.
    #[arg(long, value_name = "PATH")]
    screenshot: Option<PathBuf>,
    /// With --self-test: press Pause on this row (from 1) at its first progress, check that
    /// no byte moves for half a second, release it, and expect the transfer to complete.
    #[arg(long, value_name = "ROW", requires = "self_test")]
    self_test_pause: Option<usize>,
    /// With --self-test: click Cancel on this row (from 1) at its first progress.
    #[arg(long, value_name = "ROW", requires = "self_test")]
    self_test_cancel: Option<usize>,
    /// Save the bodies in this directory (else they are counted and dropped).
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// URLs to download at start.
    #[arg(value_name = "URL")]
    urls: Vec<String>,
}

/// How long the self-test waits before failing.
const SELF_TEST_LIMIT: Duration = Duration::from_secs(20);

/// Where a row's transfer is.
#[derive(Debug, Clone, PartialEq)]
enum RowState {
    Running,
    Paused,
    Done { status: u32 },
    Failed(String),
    Cancelled,
}

/// One transfer's row.
struct Row {
    name: String,
    bar: gtk::ProgressBar,
    status: gtk::Label,
    pause: gtk::ToggleButton,
    cancel: gtk::Button,
    /// Owned while it runs: dropping it cancels the transfer.
    transfer: Option<Transfer<Store>>,
    state: RowState,
    downloaded: u64,
    total: Option<u64>,
}

/// The window and its rows, shared by the thread-bound callbacks (GTK's thread only).
struct Ui {
    client: Client,
    window: gtk::ApplicationWindow,
    list: gtk::Box,
    summary: gtk::Label,
    rows: Vec<Row>,
    output_dir: Option<PathBuf>,
    /// The threads our callbacks ran on (all must be GTK's).
    callback_threads: Vec<ThreadId>,
    self_test: Option<SelfTest>,
    /// The self-test's button presses (none without `--self-test-pause`/`-cancel`).
    presses: presses::Presses,
}

type SharedUi = Rc<RefCell<Ui>>;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.self_test {
        gtk_self_test::prepare_environment();
    }
    // The one call: anyloop's vtable on GLib's default main context.
    let anyloop = match anyloop_glib::install_default() {
        Ok(lp) => lp,
        Err(err) => {
            eprintln!("gtk_fetch: cannot plug anyloop into GLib: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome: gtk_self_test::Outcome = Rc::default();
    let o = outcome.clone();
    let (status, ui) =
        gtk_self_test::run_application("org.anyloop.GtkFetch", &outcome, move |app| {
            build(app, &args, o.clone())
        });

    // Window closed: cancel what still runs and drop the client; dropping the loop then frees
    // every callback, here, on the thread they belong to.
    if let Some(ui) = ui {
        // Out of the borrow first: closing makes the `done` calls, which borrow the window.
        let (client, transfers) = {
            let mut ui = ui.borrow_mut();
            let transfers: Vec<_> = ui
                .rows
                .iter_mut()
                .filter_map(|r| r.transfer.take())
                .collect();
            (ui.client.clone(), transfers)
        };
        drop(transfers);
        client.close();
    }
    drop(anyloop);
    gtk_self_test::exit_code("gtk_fetch", &outcome, status)
}

fn build(
    app: &gtk::Application,
    args: &Args,
    outcome: gtk_self_test::Outcome,
) -> Result<SharedUi, Box<dyn std::error::Error>> {
    // A library would take the loop the application installed: the process default.
    let lp = Loop::current()?;
    let client = Client::builder(&lp)
        .progress_interval(Duration::from_millis(50))
        .max_host_connections(4)
        .build()?;

    let window = gtk::ApplicationWindow::builder()
        .application(app)
        .title("anyloop-curl — downloads on GTK's main loop")
        .default_width(760)
        .default_height(360)
        .build();
    let column = gtk::Box::new(gtk::Orientation::Vertical, 8);
    for margin in [
        gtk::Box::set_margin_top,
        gtk::Box::set_margin_bottom,
        gtk::Box::set_margin_start,
        gtk::Box::set_margin_end,
    ] {
        margin(&column, 12);
    }
    let top = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    let entry = gtk::Entry::builder()
        .placeholder_text("https://… (Enter to download)")
        .hexpand(true)
        .build();
    let start = gtk::Button::with_label("Download");
    top.append(&entry);
    top.append(&start);
    let list = gtk::Box::new(gtk::Orientation::Vertical, 6);
    let scroller = gtk::ScrolledWindow::builder()
        .vexpand(true)
        .child(&list)
        .build();
    let summary = gtk::Label::new(Some("no download yet"));
    summary.set_xalign(0.0);
    column.append(&top);
    column.append(&scroller);
    column.append(&summary);
    window.set_child(Some(&column));

    let ui: SharedUi = Rc::new(RefCell::new(Ui {
        client: client.clone(),
        window: window.clone(),
        list,
        summary,
        rows: Vec::new(),
        output_dir: args.output_dir.clone(),
        callback_threads: Vec::new(),
        self_test: args
            .self_test
            .then(|| SelfTest::new(app, args.screenshot.clone(), outcome.clone())),
        presses: presses::Presses::new(args.self_test_pause, args.self_test_cancel),
    }));

    // Thread-bound: progress goes straight into the rows' bars.
    {
        let ui = ui.clone();
        client
            .events()
            .on_local::<TransferProgress>(move |event| on_progress(&ui, event))?;
    }
    let add = {
        let (ui, entry) = (ui.clone(), entry.clone());
        move || {
            let url = entry.text().trim().to_owned();
            if !url.is_empty() {
                entry.set_text("");
                add_download(&ui, &url);
            }
        }
    };
    let add_on_click = add.clone();
    start.connect_clicked(move |_| add_on_click());
    entry.connect_activate(move |_| add());
    for url in &args.urls {
        add_download(&ui, url);
    }
    ui.borrow_mut().refresh_summary();

    if args.self_test {
        let (app, timed_ui) = (app.clone(), ui.clone());
        glib::timeout_add_local_once(SELF_TEST_LIMIT, move || {
            let ui = timed_ui;
            if outcome.borrow().is_none() {
                let states: Vec<String> = ui
                    .borrow()
                    .rows
                    .iter()
                    .map(|r| format!("{}: {:?}", r.name, r.state))
                    .collect();
                *outcome.borrow_mut() = Some(Err(format!(
                    "not every transfer ended within {SELF_TEST_LIMIT:?}: {states:?}"
                )));
            }
            app.quit();
        });
        if args.urls.is_empty() {
            if let Some(test) = ui.borrow().self_test.as_ref() {
                test.fail("--self-test needs URLs".into());
            }
        }
    }
    window.present();
    Ok(ui)
}

/// Starts a download and adds its row.
fn add_download(ui: &SharedUi, url: &str) {
    let mut state = ui.borrow_mut();
    let number = state.rows.len() + 1;
    let name = file_name(url, number, true);
    let store = match &state.output_dir {
        Some(dir) => Store::file(dir.join(format!("{number}-{name}"))),
        None => Store::discard(),
    };
    let mut easy = Easy2::new(store);
    let configured = easy
        .url(url)
        .and_then(|()| easy.follow_location(true))
        .and_then(|()| easy.useragent("anyloop-gtk-fetch"));
    let (bar, status, pause, cancel) = state.add_row_widgets(&name);
    let index = state.rows.len();
    let mut row = Row {
        name,
        bar,
        status,
        pause,
        cancel,
        transfer: None,
        state: RowState::Running,
        downloaded: 0,
        total: None,
    };
    if let Err(error) = configured {
        row.state = RowState::Failed(error.to_string());
    } else {
        let done_ui = ui.clone();
        let started = state
            .client
            .start(easy, move |result| on_done(&done_ui, index, result));
        match started {
            Ok(transfer) => row.transfer = Some(transfer),
            Err(failed) => row.state = RowState::Failed(failed.error().to_string()),
        }
    }
    {
        let ui = ui.clone();
        row.pause.connect_toggled(move |button| {
            // Out of the borrow while libcurl runs: a resume may end other transfers, whose
            // `done` calls borrow the window.
            let transfer = ui
                .borrow_mut()
                .rows
                .get_mut(index)
                .and_then(|row| row.transfer.take());
            let Some(transfer) = transfer else { return };
            let paused = button.is_active();
            let result = if paused {
                transfer.pause()
            } else {
                transfer.resume()
            };
            let mut state = ui.borrow_mut();
            let Some(row) = state.rows.get_mut(index) else {
                return;
            };
            if !matches!(row.state, RowState::Running | RowState::Paused) {
                return; // it ended meanwhile
            }
            match result {
                Ok(()) => {
                    row.state = if paused {
                        RowState::Paused
                    } else {
                        RowState::Running
                    }
                }
                Err(error) => row.state = RowState::Failed(error.to_string()),
            }
            row.transfer = Some(transfer);
            row.show();
        });
    }
    {
        let ui = ui.clone();
        row.cancel.connect_clicked(move |_| {
            {
                let mut state = ui.borrow_mut();
                if let Some(row) = state.rows.get_mut(index) {
                    if row.transfer.take().is_some() {
                        // Dropped: cancelled; its `done` is not called.
                        row.state = RowState::Cancelled;
                        row.show();
                    }
                }
                state.refresh_summary();
            }
            finish_if_all_ended(&ui);
        });
    }
    row.show();
    state.rows.push(row);
    state.refresh_summary();
}

/// A `TransferProgress` event, on GTK's thread.
fn on_progress(ui: &SharedUi, event: &TransferProgress) {
    let mut state = ui.borrow_mut();
    state.callback_threads.push(std::thread::current().id());
    let Some(index) = state.row_of(event.transfer) else {
        return;
    };
    let row = &mut state.rows[index];
    if row.state == RowState::Running {
        row.downloaded = event.progress.downloaded;
        row.total = event.progress.download_total;
        row.show();
    }
    let row_state = row.state.clone();
    let due = state
        .presses
        .on_progress(index, &row_state, event.progress.downloaded);
    drop(state);
    if let Some(press) = due {
        presses::schedule(ui, press);
    }
}

/// A transfer ended, on GTK's thread.
fn on_done(ui: &SharedUi, index: usize, result: Result<Easy2<Store>, Failed<Store>>) {
    let mut state = ui.borrow_mut();
    state.callback_threads.push(std::thread::current().id());
    if state.rows.get(index).map(|row| &row.state) == Some(&RowState::Cancelled) {
        // anyloop-curl never calls `done` after the transfer was dropped: a bug if it did.
        if let Some(test) = state.self_test.as_ref() {
            test.fail(format!("row {}: done called after Cancel", index + 1));
        }
        return;
    }
    if let Some(row) = state.rows.get_mut(index) {
        let (easy, failure) = match result {
            Ok(easy) => (Some(easy), None),
            Err(failed) => {
                let (error, easy) = failed.into_parts();
                // libcurl's own words when it has them (the row already names the transfer).
                let message = error
                    .curl_error()
                    .map_or_else(|| error.to_string(), ToString::to_string);
                (easy, Some(message))
            }
        };
        if let Some(easy) = &easy {
            row.downloaded = easy.get_ref().bytes;
            if let Ok(total) = easy.content_length_download() {
                row.total = (total >= 0.0).then_some(total as u64);
            }
        }
        row.state = match failure {
            Some(message) => RowState::Failed(message),
            None => RowState::Done {
                status: easy.and_then(|e| e.response_code().ok()).unwrap_or(0),
            },
        };
        row.transfer = None;
        row.show();
    }
    state.refresh_summary();
    drop(state);
    finish_if_all_ended(ui);
}

impl Ui {
    fn add_row_widgets(
        &self,
        name: &str,
    ) -> (gtk::ProgressBar, gtk::Label, gtk::ToggleButton, gtk::Button) {
        let line = gtk::Box::new(gtk::Orientation::Horizontal, 8);
        let label = gtk::Label::new(Some(name));
        label.set_width_chars(18);
        label.set_max_width_chars(18);
        label.set_ellipsize(gtk::pango::EllipsizeMode::Middle);
        label.set_xalign(0.0);
        let bar = gtk::ProgressBar::builder()
            .show_text(true)
            .hexpand(true)
            .valign(gtk::Align::Center)
            .build();
        let status = gtk::Label::new(None);
        status.set_width_chars(26);
        status.set_max_width_chars(26);
        status.set_ellipsize(gtk::pango::EllipsizeMode::End);
        status.set_xalign(0.0);
        let pause = gtk::ToggleButton::with_label("Pause");
        let cancel = gtk::Button::with_label("Cancel");
        for widget in [
            label.upcast_ref::<gtk::Widget>(),
            bar.upcast_ref(),
            status.upcast_ref(),
            pause.upcast_ref(),
            cancel.upcast_ref(),
        ] {
            line.append(widget);
        }
        self.list.append(&line);
        (bar, status, pause, cancel)
    }

    /// The index of the row whose transfer is `transfer`.
    fn row_of(&self, transfer: TransferId) -> Option<usize> {
        self.rows
            .iter()
            .position(|row| row.transfer.as_ref().is_some_and(|t| t.id() == transfer))
    }

    fn refresh_summary(&mut self) {
        let count = |f: fn(&RowState) -> bool| self.rows.iter().filter(|r| f(&r.state)).count();
        let running = count(|s| matches!(s, RowState::Running | RowState::Paused));
        let done = count(|s| matches!(s, RowState::Done { .. }));
        let failed = count(|s| matches!(s, RowState::Failed(_)));
        let thread = std::thread::current();
        self.summary.set_text(&format!(
            "{running} running · {done} completed · {failed} failed · libcurl on anyloop-glib, callbacks on thread {:?}",
            thread.name().unwrap_or("?"),
        ));
    }

    /// What the self-test expects: every row ended, its widgets show what it reported, every
    /// callback ran on this (GTK's) thread.
    fn check(&self) -> Result<String, String> {
        let here = std::thread::current().id();
        if self.callback_threads.is_empty() || self.callback_threads.iter().any(|t| *t != here) {
            return Err(format!(
                "callbacks ran on {:?}, GTK is {here:?}",
                self.callback_threads
            ));
        }
        let mut lines = Vec::new();
        for row in &self.rows {
            if matches!(row.state, RowState::Running | RowState::Paused) {
                return Err(format!("{} has not ended", row.name));
            }
            let fraction = row.bar.fraction();
            if (fraction - row.fraction()).abs() > 1e-9 {
                return Err(format!(
                    "{}: bar at {fraction}, expected {}",
                    row.name,
                    row.fraction()
                ));
            }
            if row.status.text() != row.status_text()
                || row.bar.text().as_deref() != Some(&row.bar_text())
            {
                return Err(format!(
                    "{}: the widgets show {:?}",
                    row.name,
                    row.status.text()
                ));
            }
            lines.push(format!(
                "{} {} {}",
                row.name,
                row.bar_text(),
                row.status_text()
            ));
        }
        if !self.window.is_visible() {
            return Err("the window is not visible".into());
        }
        if self.presses.pending() {
            return Err(format!("button presses not made: {:?}", self.presses));
        }
        let presses = self
            .presses
            .report()
            .map(|report| format!("; buttons: {report}"))
            .unwrap_or_default();
        Ok(format!(
            "{} transfers: {}{presses}",
            self.rows.len(),
            lines.join("; ")
        ))
    }
}

impl Row {
    fn fraction(&self) -> f64 {
        match (self.total, &self.state) {
            (_, RowState::Done { .. }) if self.total.is_none() => 1.0,
            (Some(total), _) if total > 0 => (self.downloaded as f64 / total as f64).min(1.0),
            _ => 0.0,
        }
    }

    fn bar_text(&self) -> String {
        match self.total {
            Some(total) => format!("{} / {}", human(self.downloaded), human(total)),
            None => human(self.downloaded),
        }
    }

    fn status_text(&self) -> String {
        match &self.state {
            RowState::Running => "downloading".into(),
            RowState::Paused => "paused".into(),
            RowState::Done { status } => format!("done, HTTP {status}"),
            RowState::Failed(message) => format!("failed: {message}"),
            RowState::Cancelled => "cancelled".into(),
        }
    }

    /// Puts the row's state into its widgets.
    fn show(&self) {
        self.bar.set_fraction(self.fraction());
        self.bar.set_text(Some(&self.bar_text()));
        self.status.set_text(&self.status_text());
        self.status.set_tooltip_text(Some(&self.status_text()));
        if matches!(self.state, RowState::Failed(_)) {
            self.status.add_css_class("error");
        }
        let live = matches!(self.state, RowState::Running | RowState::Paused);
        self.pause.set_sensitive(live);
        self.cancel.set_sensitive(live);
    }
}

/// Bytes as people read them.
fn human(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// In a self-test, once every row ended and no button press is left: check the window from
/// a fresh main-loop turn (GTK lays out and draws the last changes meanwhile), save the
/// screenshot, quit.
fn finish_if_all_ended(ui: &SharedUi) {
    let mut guard = ui.borrow_mut();
    let state = &mut *guard;
    let ended = state.rows.iter().all(|row| row.transfer.is_none());
    if !ended || state.presses.pending() {
        return;
    }
    if let Some(test) = state.self_test.as_mut() {
        let ui = ui.clone();
        test.finish_soon(&state.window, move || ui.borrow().check());
    }
}
