//! `--json`: one JSON object per event on stdout, for scripts.

use std::io::Write;
use std::time::Instant;

use anyloop_backends::LoopChoice;
use anyloop_examples::supervisor::{signal_name, ExitReason, ProgressSource, SupervisorEvent};
use serde_json::{json, Value};

use crate::Render;

/// Writes each event as a line of JSON with the milliseconds since start.
pub(crate) struct Json {
    started: Instant,
    event_loop: LoopChoice,
}

impl Json {
    pub(crate) fn new(event_loop: LoopChoice) -> Self {
        Json {
            started: Instant::now(),
            event_loop,
        }
    }
}

impl Render for Json {
    fn event(&mut self, event: &SupervisorEvent, name: &str) {
        let mut object = describe(event);
        if let Value::Object(fields) = &mut object {
            if !name.is_empty() {
                fields.insert("name".into(), name.into());
            }
            fields.insert("loop".into(), self.event_loop.name().into());
            let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            fields.insert("time_ms".into(), millis.into());
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (`supervise --json | head`) must not kill the supervisor.
        let _ = writeln!(out, "{object}");
        let _ = out.flush();
    }
}

fn describe(event: &SupervisorEvent) -> Value {
    match event {
        SupervisorEvent::Launched(launched) => json!({
            "event": "launched",
            "child": launched.child.0,
            "pid": launched.pid,
            "command": launched.command,
        }),
        SupervisorEvent::LogLine(line) => {
            let mut object = json!({
                "event": "line",
                "child": line.child.0,
                "stream": line.stream.name(),
                "text": String::from_utf8_lossy(&line.bytes),
                "truncated": line.truncated,
            });
            // Output is bytes: when it is not UTF-8, the exact bytes come along.
            if std::str::from_utf8(&line.bytes).is_err() {
                object["bytes"] = json!(line.bytes);
            }
            object
        }
        SupervisorEvent::Progress(progress) => json!({
            "event": "progress",
            "child": progress.child.0,
            "position": progress.position,
            "total": progress.total,
            "source": match progress.source {
                ProgressSource::Output => "output",
                ProgressSource::Timer => "timer",
            },
        }),
        SupervisorEvent::SignalSent(sent) => json!({
            "event": "signal_sent",
            "child": sent.child.0,
            "signal": signal_name(sent.signal),
            "signal_number": sent.signal,
            "escalated": sent.escalated,
        }),
        SupervisorEvent::SubprocessQuit(quit) => {
            let (exit_status, signal) = match quit.reason {
                ExitReason::Exited(code) => (Some(code), None),
                ExitReason::Signaled(signal) => (None, Some(signal)),
                ExitReason::Unknown => (None, None),
            };
            json!({
                "event": "quit",
                "child": quit.child.0,
                "exit_status": exit_status,
                "signal": signal.map(signal_name),
                "signal_number": signal,
                "shell_status": quit.reason.shell_status(),
                "killed": quit.killed,
                "runtime_ms": u64::try_from(quit.runtime.as_millis()).unwrap_or(u64::MAX),
            })
        }
        SupervisorEvent::Close(close) => json!({
            "event": "close",
            "killed_children": close.killed_children,
        }),
    }
}
