//! The GTK example's self-test, under Xvfb: the real window on GTK's main loop, real relay
//! events through anyloop's GLib backend, the window's content checked, a screenshot saved.
//!
//! Needs `xvfb-run` (Debian: `xvfb`, `xauth`); without it the test says so and passes (CI
//! installs it). Run with `cargo test -p anyloop-examples --features gtk --test gtk_relay`.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn gtk_relay_self_test_under_xvfb() {
    if !anyloop_examples::gtk_self_test::xvfb_run_available() {
        return;
    }
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gtk_relay.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = Command::new("xvfb-run")
        .args([
            "-a",
            env!("CARGO_BIN_EXE_gtk_relay"),
            "--self-test",
            "--screenshot",
        ])
        .arg(&screenshot)
        .output()
        .expect("running xvfb-run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "self-test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("self-test passed"), "{stdout}\n{stderr}");
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("{stdout}screenshot: {}", screenshot.display());
}
