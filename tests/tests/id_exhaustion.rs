//! `Error::Exhausted` on every backend of this build (and the kit's reference backend): the
//! kit's process-wide check ([`anyloop_conformance::process`]), in a test binary of its own
//! because it moves the process's id counter to its end, for good.

mod support;

#[test]
fn exhausted_ids_are_a_typed_error_and_the_loop_keeps_working_r01_r02_r60() {
    anyloop_conformance::process::exhausted_ids_are_a_typed_error_and_the_loop_keeps_working_r01_r02_r60(
        &support::backends(),
    );
}
