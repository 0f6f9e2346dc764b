//! The self-test's presses of a row's Pause and Cancel buttons (`--self-test-pause ROW`,
//! `--self-test-cancel ROW`): what a user does with the window, done through the buttons
//! themselves (their handlers are the application's), with what the transfer did meanwhile
//! checked.
//!
//! Pause: at the row's first progress, Pause is pressed; from 100 ms after the press (bytes
//! libcurl had already taken in may still arrive) to 600 ms, the transfer must move no byte
//! and report no progress that moved, then Pause is released and the transfer must run
//! again (the test's end checks it completed, byte count and all). Cancel: at the row's first
//! progress, Cancel is clicked: the row must say cancelled at once, and its `done` must never
//! come (it would overwrite the row's state, which the final check reads).

use std::time::Duration;

use gtk4::glib;
use gtk4::prelude::*;

use crate::{RowState, SharedUi};

/// How long after the press of Pause the window of silence starts, and how long it lasts.
const SETTLE: Duration = Duration::from_millis(100);
const SILENCE: Duration = Duration::from_millis(500);

/// What the self-test still has to press, and what it saw.
#[derive(Debug, Default)]
pub(crate) struct Presses {
    /// The row (index) whose Pause is still to press.
    pause: Option<usize>,
    /// The row (index) whose Cancel is still to click.
    cancel: Option<usize>,
    /// The paused row while its silence is watched: its progress events meanwhile.
    watch: Option<Watch>,
    /// Presses made and not yet checked (the self-test must not end meanwhile).
    in_progress: u32,
    report: Vec<String>,
}

#[derive(Debug)]
struct Watch {
    row: usize,
    /// `downloaded` of the progress events that arrived in the window.
    seen: Vec<u64>,
}

/// A press that is due.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Press {
    Pause(usize),
    Cancel(usize),
}

impl Presses {
    /// Presses for the rows numbered from 1, as on the command line.
    pub(crate) fn new(pause: Option<usize>, cancel: Option<usize>) -> Presses {
        Presses {
            pause: pause.and_then(|row| row.checked_sub(1)),
            cancel: cancel.and_then(|row| row.checked_sub(1)),
            ..Presses::default()
        }
    }

    /// Row `row` reported `downloaded` bytes while `state`: the press now due, if any.
    pub(crate) fn on_progress(
        &mut self,
        row: usize,
        state: &RowState,
        downloaded: u64,
    ) -> Option<Press> {
        if let Some(watch) = self.watch.as_mut().filter(|watch| watch.row == row) {
            watch.seen.push(downloaded);
        }
        if *state != RowState::Running || downloaded == 0 {
            return None;
        }
        if self.pause == Some(row) {
            self.pause = None;
            self.in_progress += 1;
            return Some(Press::Pause(row));
        }
        if self.cancel == Some(row) {
            self.cancel = None;
            self.in_progress += 1;
            return Some(Press::Cancel(row));
        }
        None
    }

    /// Whether a press is still to come or to be checked (the self-test waits for it).
    pub(crate) fn pending(&self) -> bool {
        self.pause.is_some() || self.cancel.is_some() || self.in_progress > 0
    }

    /// What the presses did, for the self-test's line.
    pub(crate) fn report(&self) -> Option<String> {
        (!self.report.is_empty()).then(|| self.report.join("; "))
    }
}

/// Makes `press`, from a fresh turn of the main loop (not inside the progress event that
/// made it due), then checks its effect.
pub(crate) fn schedule(ui: &SharedUi, press: Press) {
    let ui = ui.clone();
    glib::idle_add_local_once(move || match press {
        Press::Pause(row) => pause(&ui, row),
        Press::Cancel(row) => cancel(&ui, row),
    });
}

fn pause(ui: &SharedUi, row: usize) {
    let Some(button) = ui.borrow().rows.get(row).map(|r| r.pause.clone()) else {
        return fail(ui, format!("no row {}", row + 1));
    };
    button.set_active(true); // its handler pauses the transfer
    if let Err(why) = expect_state(ui, row, &RowState::Paused) {
        return fail(ui, why);
    }
    let ui = ui.clone();
    glib::timeout_add_local_once(SETTLE, move || {
        let Some(before) = progress_of(&ui, row) else {
            return fail(&ui, format!("row {}: the paused transfer ended", row + 1));
        };
        ui.borrow_mut().presses.watch = Some(Watch {
            row,
            seen: Vec::new(),
        });
        glib::timeout_add_local_once(SILENCE, move || {
            let after = progress_of(&ui, row);
            let watch = ui.borrow_mut().presses.watch.take();
            let seen = watch.map(|w| w.seen).unwrap_or_default();
            if after != Some(before) || seen.iter().any(|&bytes| bytes != before) {
                return fail(
                    &ui,
                    format!(
                        "row {}: bytes moved while paused: {before} at the start, {after:?} \
                         at the end, progress events {seen:?}",
                        row + 1
                    ),
                );
            }
            button.set_active(false); // resumes
            if let Err(why) = expect_state(&ui, row, &RowState::Running) {
                return fail(&ui, why);
            }
            {
                let mut state = ui.borrow_mut();
                state.presses.report.push(format!(
                    "row {} paused {SILENCE:?} at {before} B with no byte meanwhile ({} \
                     progress events), resumed",
                    row + 1,
                    seen.len()
                ));
                state.presses.in_progress -= 1;
            }
            crate::finish_if_all_ended(&ui);
        });
    });
}

fn cancel(ui: &SharedUi, row: usize) {
    let Some(button) = ui.borrow().rows.get(row).map(|r| r.cancel.clone()) else {
        return fail(ui, format!("no row {}", row + 1));
    };
    let at = progress_of(ui, row).unwrap_or(0);
    button.emit_clicked(); // its handler drops the transfer
    if let Err(why) = expect_state(ui, row, &RowState::Cancelled) {
        return fail(ui, why);
    }
    {
        let mut state = ui.borrow_mut();
        state
            .presses
            .report
            .push(format!("row {} cancelled at {at} B", row + 1));
        state.presses.in_progress -= 1;
    }
    crate::finish_if_all_ended(ui);
}

/// Bytes the row's transfer received so far, as libcurl counts them; `None` once it ended.
fn progress_of(ui: &SharedUi, row: usize) -> Option<u64> {
    let state = ui.borrow();
    let transfer = state.rows.get(row)?.transfer.as_ref()?;
    transfer.progress().map(|progress| progress.downloaded)
}

fn expect_state(ui: &SharedUi, row: usize, expected: &RowState) -> Result<(), String> {
    let state = ui.borrow();
    match state.rows.get(row) {
        Some(r) if r.state == *expected => Ok(()),
        Some(r) => Err(format!(
            "row {}: {:?} after the press, expected {expected:?}",
            row + 1,
            r.state
        )),
        None => Err(format!("no row {}", row + 1)),
    }
}

fn fail(ui: &SharedUi, why: String) {
    if let Some(test) = ui.borrow().self_test.as_ref() {
        test.fail(why);
    }
}
