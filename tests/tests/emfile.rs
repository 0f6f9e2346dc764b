//! EMFILE on every backend of this build (and the kit's reference backend): the kit's
//! process-wide check ([`anyloop_conformance::process`]), in a test binary of its own because
//! it lowers the process's descriptor limit.

mod support;

#[test]
fn emfile_is_a_typed_error_and_running_loops_keep_working_r40_r60() {
    // GLib makes its global default context lazily, and aborts if it cannot make its wake-up
    // fd then; a GLib program has it from the start, so make it here too.
    let _ = glib::MainContext::default();
    anyloop_conformance::process::emfile_is_a_typed_error_and_running_loops_keep_working_r40_r60(
        &support::backends(),
    );
}
