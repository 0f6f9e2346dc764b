//! Soak: registrations churned on every backend at once for minutes, resident memory sampled
//! (the kit's [`anyloop_conformance::process::soak_churn_memory_stays_flat`]).
//!
//! Not part of `cargo test` (ignored); run it with `ANYLOOP_SOAK_SECS=300 cargo test --release -p
//! anyloop-conformance --test soak -- --ignored --nocapture` (default 60 s). It prints one line per
//! sample: elapsed time, operations so far, RSS.

mod support;

use std::time::Duration;

#[test]
#[ignore = "minutes long: run with --ignored (see the file's doc)"]
fn soak_churn_on_every_backend_memory_stays_flat() {
    let secs: u64 = std::env::var("ANYLOOP_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    anyloop_conformance::process::soak_churn_memory_stays_flat(
        &support::backends(),
        Duration::from_secs(secs),
    );
}
