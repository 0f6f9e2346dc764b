//! The GTK downloader's self-test, under Xvfb: the real window on GTK's main loop, libcurl's
//! transfers against a loopback server through anyloop-curl on anyloop's GLib backend, the
//! window's bars and statuses checked, the Pause and Cancel buttons of two rows pressed (no
//! byte while paused, the transfer complete after the release; the cancelled row stays
//! cancelled), a screenshot saved.
//!
//! Needs `xvfb-run` (Debian: `xvfb`, `xauth`); without it the test says so and passes (CI
//! installs it). Run with `cargo test -p anyloop-examples --features gtk --test gtk_fetch`.

#[allow(dead_code)]
#[path = "../../interop-curl/tests/support/server.rs"]
mod server;

use std::path::PathBuf;
use std::process::Command;

use server::Server;

#[test]
fn gtk_fetch_self_test_under_xvfb() {
    if !anyloop_examples::gtk_self_test::xvfb_run_available() {
        return;
    }
    let server = Server::http();
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/refused.iso", listener.local_addr().unwrap())
    };
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gtk_fetch.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = Command::new("xvfb-run")
        .args([
            "-a",
            env!("CARGO_BIN_EXE_gtk_fetch"),
            "--self-test",
            "--self-test-pause",
            "5",
            "--self-test-cancel",
            "6",
            "--screenshot",
        ])
        .arg(&screenshot)
        .args([
            server.url("/bytes/2000000?seed=1"),
            server.url("/slow/400000?chunk=40000&ms=30&seed=2"),
            server.url("/die/300000?seed=3"),
            refused,
            // Rows 5 and 6: long enough to be pressed mid-body (30 and 75 chunks, 20 ms apart).
            server.url("/slow/600000?chunk=20000&ms=20&seed=4"),
            server.url("/slow/1500000?chunk=20000&ms=20&seed=5"),
        ])
        .output()
        .expect("running xvfb-run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "self-test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("self-test passed: 6 transfers"),
        "{stdout}\n{stderr}"
    );
    for expected in [
        "2000000 2.0 MB / 2.0 MB done, HTTP 200",
        "400000 400.0 kB / 400.0 kB done, HTTP 200",
        "300000 300.0 kB / 600.0 kB failed: [18] Transferred a partial file",
        "refused.iso 0 B failed: [7] Couldn't connect to server",
        "600000 600.0 kB / 600.0 kB done, HTTP 200",
        "; buttons: ",
        "row 5 paused 500ms at ",
        "B with no byte meanwhile (",
        "progress events), resumed",
        "row 6 cancelled at ",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in {stdout}");
    }
    // The cancelled row: its own line says so (a `done` after Cancel would have replaced it).
    let cancelled = stdout
        .split("; ")
        .find(|line| line.starts_with("1500000 "))
        .unwrap_or_else(|| panic!("no line for row 6 in {stdout}"));
    assert!(
        cancelled.ends_with(" / 1.5 MB cancelled"),
        "row 6: {cancelled:?}"
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("{stdout}screenshot: {}", screenshot.display());
}
