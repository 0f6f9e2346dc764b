//! The `--self-test --screenshot FILE` mode the GTK 4 examples share (`gtk_relay`,
//! `gtk_fetch`): a real window, checked from the main loop once the work is done, captured
//! to a PNG, then the application quits with a verdict. Feature `gtk`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use gtk4 as gtk;
use gtk4::glib;
use gtk4::prelude::*;

/// A self-test's verdict: `Ok` with a summary, or `Err` with what went wrong; `None` until
/// decided.
pub type Outcome = Rc<RefCell<Option<Result<String, String>>>>;

/// Sets up the process for a self-test under Xvfb, before GTK starts: Xvfb has no GPU (render
/// with cairo, deterministically) and CI has no session bus for the accessibility bridge.
/// Variables already set are kept.
pub fn prepare_environment() {
    for (name, value) in [("GSK_RENDERER", "cairo"), ("GTK_A11Y", "none")] {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
}

/// Runs the GTK application `app_id` (one instance per process, GTK parsing none of our
/// flags): `build` makes its window on `activate`; a failure to build is the verdict
/// (`starting failed: ...`) and quits. Returns GTK's status and what `build` made, for the
/// program to shut down before it drops its loop.
pub fn run_application<T: 'static>(
    app_id: &str,
    outcome: &Outcome,
    build: impl Fn(&gtk::Application) -> Result<T, Box<dyn std::error::Error>> + 'static,
) -> (glib::ExitCode, Option<T>) {
    let app = gtk::Application::builder()
        .application_id(app_id)
        .flags(gtk::gio::ApplicationFlags::NON_UNIQUE)
        .build();
    let built: Rc<RefCell<Option<T>>> = Rc::default();
    let (slot, outcome) = (built.clone(), outcome.clone());
    app.connect_activate(move |app| match build(app) {
        Ok(made) => *slot.borrow_mut() = Some(made),
        Err(err) => {
            *outcome.borrow_mut() = Some(Err(format!("starting failed: {err}")));
            app.quit();
        }
    });
    let status = app.run_with_args::<&str>(&[]);
    let made = built.borrow_mut().take();
    (status, made)
}

/// The process's exit once the application's `run` returned `status`: the self-test's
/// verdict, if one was reached, printed as `PROGRAM: self-test passed: ...` (stdout) or
/// `PROGRAM: self-test FAILED: ...` (stderr); else GTK's own status.
pub fn exit_code(program: &str, outcome: &Outcome, status: glib::ExitCode) -> ExitCode {
    let verdict = outcome.borrow_mut().take();
    match verdict {
        Some(Ok(summary)) => {
            println!("{program}: self-test passed: {summary}");
            ExitCode::SUCCESS
        }
        Some(Err(problem)) => {
            eprintln!("{program}: self-test FAILED: {problem}");
            ExitCode::FAILURE
        }
        None if status == glib::ExitCode::SUCCESS => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

/// Whether `xvfb-run` is there to run a self-test in (Debian: `xvfb`, `xauth`). Missing, it
/// fails the caller under CI (the `CI` variable set: `.ci/run` installs it) and is a skip,
/// said on stderr, elsewhere.
pub fn xvfb_run_available() -> bool {
    if std::process::Command::new("xvfb-run")
        .arg("--help")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "xvfb-run is not installed (Debian: apt-get install xvfb xauth)"
    );
    eprintln!("SKIPPED: xvfb-run is not installed (Debian: apt-get install xvfb xauth)");
    false
}

/// One self-test run of an application.
#[derive(Debug)]
pub struct SelfTest {
    app: gtk::Application,
    screenshot: Option<PathBuf>,
    outcome: Outcome,
    scheduled: bool,
}

impl SelfTest {
    /// A self-test of `app`, saving the window to `screenshot` if given; the verdict lands in
    /// `outcome` (read it after the application's `run` returned).
    pub fn new(app: &gtk::Application, screenshot: Option<PathBuf>, outcome: Outcome) -> SelfTest {
        SelfTest {
            app: app.clone(),
            screenshot,
            outcome,
            scheduled: false,
        }
    }

    /// Fails now, saying why, and quits.
    pub fn fail(&self, why: String) {
        *self.outcome.borrow_mut() = Some(Err(why));
        self.app.quit();
    }

    /// Once the work is done (later calls do nothing): a moment later, from a fresh turn of
    /// the main loop (GTK lays out and draws the last changes meanwhile), runs `check`, saves
    /// the screenshot of `window`, records the verdict and quits the application.
    pub fn finish_soon(
        &mut self,
        window: &gtk::ApplicationWindow,
        check: impl FnOnce() -> Result<String, String> + 'static,
    ) {
        if std::mem::replace(&mut self.scheduled, true) {
            return;
        }
        let (window, app) = (window.clone(), self.app.clone());
        let (screenshot, outcome) = (self.screenshot.clone(), self.outcome.clone());
        glib::timeout_add_local_once(Duration::from_millis(300), move || {
            let verdict = check().and_then(|summary| match &screenshot {
                Some(path) => save_png(&window, path)
                    .map(|()| format!("{summary}; screenshot {}", path.display())),
                None => Ok(summary),
            });
            *outcome.borrow_mut() = Some(verdict);
            app.quit();
        });
    }
}

/// Renders `window` into a PNG at `path`.
///
/// # Errors
/// What could not be drawn or saved.
pub fn save_png(window: &gtk::ApplicationWindow, path: &Path) -> Result<(), String> {
    let (width, height) = (window.width(), window.height());
    let paintable = gtk::WidgetPaintable::new(Some(window));
    let snapshot = gtk::Snapshot::new();
    paintable.snapshot(&snapshot, f64::from(width), f64::from(height));
    let node = snapshot
        .to_node()
        .ok_or("the window drew nothing to capture")?;
    let renderer = window
        .native()
        .and_then(|native| native.renderer())
        .ok_or("the window has no renderer")?;
    let texture = renderer.render_texture(&node, None);
    texture
        .save_to_png(path)
        .map_err(|err| format!("saving {}: {err}", path.display()))
}
