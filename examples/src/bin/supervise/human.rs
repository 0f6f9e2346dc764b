//! The terminal view: one line per event with coloured labels, a progress bar per child that
//! reports progress. Colours are dropped when stdout is not a terminal (or NO_COLOR is set);
//! bars are drawn on stderr only when it is a terminal.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use anyloop_backends::LoopChoice;
use anyloop_examples::supervisor::{signal_name, ChildId, Stream, SupervisorEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::Render;

const NAME: Style = Style::new().bold();
const STDOUT: Style = AnsiColor::Cyan.on_default();
const STDERR: Style = AnsiColor::Yellow.on_default();
const GOOD: Style = AnsiColor::Green.on_default().bold();
const BAD: Style = AnsiColor::Red.on_default().bold();
const SIGNAL: Style = AnsiColor::Magenta.on_default().bold();

/// Column width of child names.
const NAME_WIDTH: usize = 8;

pub(crate) struct Terminal {
    bars: MultiProgress,
    progress: HashMap<ChildId, ProgressBar>,
}

impl Terminal {
    pub(crate) fn new() -> Self {
        Terminal {
            bars: MultiProgress::new(),
            progress: HashMap::new(),
        }
    }

    /// Prints a line above the progress bars.
    fn say(&self, name: &str, label: &str, label_style: Style, text: &str) {
        let line =
            format!("{NAME}{name:<NAME_WIDTH$}{NAME:#} {label_style}{label}{label_style:#} {text}");
        self.bars.suspend(|| {
            let mut out = anstream::stdout().lock();
            // A closed stdout must not stop the supervisor.
            let _ = writeln!(out, "{line}");
        });
    }

    fn progress(&mut self, child: ChildId, name: &str, position: u64, total: u64) {
        let bar = self.progress.entry(child).or_insert_with(|| {
            let bar = self.bars.add(ProgressBar::new(total));
            if let Ok(style) =
                ProgressStyle::with_template("{prefix:<8.bold} [{bar:32.cyan/blue}] {pos}/{len}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(name.to_owned());
            bar
        });
        bar.set_length(total);
        bar.set_position(position);
    }
}

impl Render for Terminal {
    fn event(&mut self, event: &SupervisorEvent, name: &str) {
        match event {
            SupervisorEvent::Launched(launched) => self.say(
                name,
                "started",
                GOOD,
                &format!("{} (pid {})", shorten(&launched.command), launched.pid),
            ),
            SupervisorEvent::LogLine(line) => {
                let (label, style) = match line.stream {
                    Stream::Stdout => ("    out", STDOUT),
                    Stream::Stderr => ("    err", STDERR),
                };
                let mut text = printable(&line.bytes);
                if line.truncated {
                    text.push_str(" [cut]");
                }
                self.say(name, label, style, &text);
            }
            SupervisorEvent::Progress(progress) => {
                self.progress(progress.child, name, progress.position, progress.total)
            }
            SupervisorEvent::SignalSent(sent) => {
                let why = if sent.escalated {
                    " (grace period over)"
                } else {
                    ""
                };
                self.say(
                    name,
                    "   kill",
                    SIGNAL,
                    &format!("sent {}{why}", signal_name(sent.signal)),
                );
            }
            SupervisorEvent::SubprocessQuit(quit) => {
                if let Some(bar) = self.progress.remove(&quit.child) {
                    bar.finish_and_clear();
                }
                let style = if quit.reason.success() { GOOD } else { BAD };
                self.say(
                    name,
                    "   quit",
                    style,
                    &format!("{} after {:.1?}", quit.reason, quit.runtime),
                );
            }
            SupervisorEvent::Close(close) if close.killed_children > 0 => self.say(
                "",
                "  close",
                SIGNAL,
                &format!("killed {} children still running", close.killed_children),
            ),
            SupervisorEvent::Close(_) => {}
        }
    }
}

/// The line as text for a terminal: invalid UTF-8 replaced, control characters (which could
/// move the cursor or change colours) shown escaped. `--json` keeps the exact bytes.
fn printable(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(text, "\\x{:02x}", u32::from(c));
        } else {
            text.push(c);
        }
    }
    text
}

/// Long command lines (scripts) cut for the one-line view.
fn shorten(command: &str) -> String {
    const MAX: usize = 72;
    match command.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &command[..cut]),
        None => command.to_owned(),
    }
}

/// The demo's last line.
pub(crate) fn demo_summary(as_scripted: bool, took: Duration, event_loop: LoopChoice) {
    let mut err = anstream::stderr().lock();
    let _ = if as_scripted {
        writeln!(
            err,
            "{GOOD}demo:{GOOD:#} three children on the {event_loop} loop in {took:.1?}, each ended as scripted"
        )
    } else {
        writeln!(
            err,
            "{BAD}demo:{BAD:#} a child did not end as scripted (see above)"
        )
    };
}
