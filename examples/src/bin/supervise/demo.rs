//! `--demo`: three children on one loop, each showing one thing the supervisor does.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyloop_examples::supervisor::{ChildId, ExitReason, SpawnOptions};

use crate::Planned;

/// The demo's children: `build` reports progress, `flaky` writes to stderr and fails,
/// `stuck` ignores SIGTERM and is killed with SIGKILL when its grace period ends.
pub(crate) fn children(progress_prefix: &str) -> Vec<Planned> {
    let options = SpawnOptions {
        progress_prefix: Some(progress_prefix.to_owned()),
        ..SpawnOptions::default()
    };
    // The prefix goes into the script as one single-quoted word, whatever it contains.
    let prefix = format!("'{}'", progress_prefix.replace('\'', r"'\''"));
    let build = format!(
        "for i in 1 2 3 4 5 6 7 8; do \
            echo \"compiling unit $i of 8\"; \
            echo {prefix} \"$i/8\"; \
            sleep 0.15; \
         done; \
         echo 'warning: unit 5 is slow' >&2; \
         echo 'build finished'"
    );
    let flaky = "echo 'connecting to the test server'; sleep 0.4; \
                 echo 'error: connection refused' >&2; exit 3";
    let stuck = "trap '' TERM; echo 'ignoring SIGTERM, running forever'; \
                 while :; do sleep 0.1; done";
    vec![
        shell("build", &build, options.clone(), None),
        shell("flaky", flaky, options.clone(), None),
        Planned {
            grace: Some(Duration::from_millis(500)),
            ..shell("stuck", stuck, options, Some(Duration::from_millis(800)))
        },
    ]
}

fn shell(name: &str, script: &str, options: SpawnOptions, timeout: Option<Duration>) -> Planned {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    Planned {
        name: name.to_owned(),
        command,
        options,
        timeout,
        grace: None,
    }
}

/// Whether each demo child ended the way its script makes it end.
pub(crate) fn ended_as_scripted(
    names: &BTreeMap<ChildId, String>,
    ended: &BTreeMap<ChildId, ExitReason>,
) -> bool {
    names.iter().all(|(child, name)| {
        let expected = match name.as_str() {
            "build" => ExitReason::Exited(0),
            "flaky" => ExitReason::Exited(3),
            _ => ExitReason::Signaled(9),
        };
        ended.get(child) == Some(&expected)
    })
}
