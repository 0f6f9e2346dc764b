//! # anyloop-conformance: the behavioural battery every anyloop backend must pass
//!
//! The kit runs the conformance scenarios of the anyloop [contract](anyloop::contract) (its
//! section 5) and tests for its rules (sections 1 and 3) against any backend. A backend
//! author's whole job is two steps:
//!
//! 1. implement [`LoopFactory`]: a [`name`](LoopFactory::name) for reports, and
//!    [`create`](LoopFactory::create), which makes a fresh loop (the kit calls it on the
//!    loop's own thread) and returns it as an `anyloop::Result<Box<dyn anyloop::Runner>>`:
//!    the backend's loop type already implements [`anyloop::Runner`], the owner-side trait
//!    the kit drives it through (run once, run, run until, quit with [`anyloop::Quitter`],
//!    stats);
//! 2. expand [`conformance_tests!`]`(TheFactory)` in a test file: one `#[test]` per
//!    scenario, named after it and the rules it pins, so `cargo test` lists and filters them.
//!
//! (Or call [`run_battery`] and print its [`Report`], for a `main` of your own.)
//!
//! ```no_run
//! // tests/conformance.rs of a third-party backend crate
//! use anyloop_conformance::LoopFactory;
//!
//! struct MyBackend;
//!
//! impl LoopFactory for MyBackend {
//!     fn name(&self) -> String { "my-loop".into() }
//!     fn create(&self) -> anyloop::Result<Box<dyn anyloop::Runner>> {
//!         // Construct your loop here (this runs on the loop's own thread) and return it;
//!         // the kit's poll(2) reference stands in for it in this example.
//!         Ok(Box::new(anyloop_conformance::reference::PollLoop::new()?))
//!     }
//! }
//!
//! anyloop_conformance::conformance_tests!(MyBackend);
//! ```
//!
//! Each scenario runs on a thread of its own, gets its own loop(s) on dedicated threads
//! ([`Driver`]), talks to the backend through an interposed vtable that checks where callbacks
//! and frees run, and ends with the harness checking that every callback state was freed
//! exactly once. (The futures-layer scenarios make their loop on the scenario's thread and
//! drive it with `block_on`, as an application does.)
//!
//! A broken backend fails fast and is told what happened; it never hangs the test binary:
//!
//! - every wait of the kit is bounded: a generous timeout ([`TIMEOUT`]) for each wait for the
//!   loop (jobs on the loop thread, callbacks, helper threads: [`bounded`](mod@bounded)), and a
//!   watchdog over each whole scenario ([`watchdog`], 60 s by default): a scenario still
//!   running then fails with its name and what its loops were doing, and is left behind;
//! - every failure names the backend, the scenario and the rules it pins, and says what was
//!   observed against what was expected (a job that does not finish says which job, started
//!   where, and what the loop thread was doing);
//! - waits never assert speed; "nothing else fired" checks let the loop run a settle window
//!   plus extra iterations first.
//!
//! Scenarios that close a descriptor number and check which file takes it next run alone
//! among the kit's scenarios of the process ([`FdUse::Exclusive`]), and check that the number
//! went where they expect.
//!
//! The battery's groups, and what each checks, are listed in the [`scenarios`](mod@scenarios)
//! module: the contract's scenarios and rules for watches and timers, one-shot timers
//! (`Schedule::Once`), thread-bound callbacks, `Runner::run_until` and `Loop::wake`,
//! `LoopStats`, bad input, stress, random operation sequences checked against a model, the
//! event registry, fds closed under their watch in every way a library gets there
//! (`closed_fd`), and the futures layer `anyloop-async` on the backend (`async_layer`).
//! [`scenarios()`] lists every scenario, in order.
//!
//! [`reference`](mod@reference) is a tiny poll(2) backend that passes the battery: the kit's
//! self-check and a readable example of the whole contract.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod bounded;
pub mod driver;
pub mod fds;
pub mod harness;
pub mod probe;
pub mod process;
pub mod reference;
pub mod runner;
pub mod scenarios;
pub mod track;

pub use driver::{Driver, LoopCtx, Pending, TIMEOUT};
pub use harness::LoopFactory;
pub use runner::{
    check_scenario, run_battery, run_scenario, watchdog, Env, FdUse, Outcome, Report, Scenario,
    WATCHDOG,
};

/// Every scenario of the battery, in order.
// Built by the same macro that expands the tests, so the two lists cannot drift apart.
#[allow(clippy::vec_init_then_push)]
pub fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    __scenario_list!(table all);
    all
}

/// Expands to one `#[test]` per scenario of the battery, run on the given backend: every
/// group, the futures layer's (`async_layer`) and the closed-fd matrix (`closed_fd`) included.
///
/// The argument is an expression building a [`LoopFactory`] (evaluated once per test). Put
/// several backends in one file by expanding the macro in one module each. Each test runs its
/// scenario through [`run_scenario`] (watchdog, descriptor-number lock, failure messages).
///
/// ```no_run
/// mod reference {
///     anyloop_conformance::conformance_tests!(anyloop_conformance::reference::ReferenceBackend);
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::__scenario_list!(tests $backend);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_item {
    ([tests $backend:expr] $group:ident $name:ident $($fds:ident)?) => {
        #[test]
        fn $name() {
            $crate::run_scenario(
                ::std::sync::Arc::new($backend),
                $crate::__scenario!($group $name $($fds)?),
            );
        }
    };
    ([table $all:ident] $group:ident $name:ident $($fds:ident)?) => {
        $all.push($crate::__scenario!($group $name $($fds)?));
    };
}

/// The [`Scenario`] value of one entry of the list; `exclusive_fds` marks a scenario that
/// runs alone ([`FdUse::Exclusive`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __scenario {
    ($group:ident $name:ident) => {
        $crate::Scenario {
            name: stringify!($name),
            group: stringify!($group),
            run: $crate::scenarios::$group::$name,
            fds: $crate::FdUse::Shared,
        }
    };
    ($group:ident $name:ident exclusive_fds) => {
        $crate::Scenario {
            name: stringify!($name),
            group: stringify!($group),
            run: $crate::scenarios::$group::$name,
            fds: $crate::FdUse::Exclusive,
        }
    };
}

/// Test mode: the backend factory shared by the grouped tests (their modules are nested, so
/// the backend expression is evaluated here, at the expansion site).
#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_prelude {
    ([tests $backend:expr]) => {
        fn __kit_backend() -> ::std::sync::Arc<dyn $crate::LoopFactory> {
            ::std::sync::Arc::new($backend)
        }
    };
    ([table $all:ident]) => {};
}

/// A group of scenarios expanded as one test module named after the group, so a filter on
/// the group's name (`cargo test registry`) runs exactly them.
#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_group {
    ([tests $backend:expr] $group:ident [$($name:ident $($fds:ident)?),* $(,)?]) => {
        mod $group {
            $(
                #[test]
                fn $name() {
                    $crate::run_scenario(
                        super::__kit_backend(),
                        $crate::__scenario!($group $name $($fds)?),
                    );
                }
            )*
        }
    };
    ([table $all:ident] $group:ident [$($name:ident $($fds:ident)?),* $(,)?]) => {
        $( $crate::__scenario_item!([table $all] $group $name $($fds)?); )*
    };
}

/// The battery's list; the single source for the macro and [`scenarios`].
#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_list {
    ($($mode:tt)*) => {
        $crate::__scenario_item!([$($mode)*] libvirt s01_simple_write_r13);
        $crate::__scenario_item!([$($mode)*] libvirt s02_deleted_before_poll_r15);
        $crate::__scenario_item!([$($mode)*] libvirt s03_interrupted_during_poll_r40_r46);
        $crate::__scenario_item!([$($mode)*] libvirt s04_removed_during_dispatch_not_called_r15);
        $crate::__scenario_item!([$($mode)*] libvirt s05_self_removal_during_dispatch_r16);
        $crate::__scenario_item!([$($mode)*] libvirt s06_firing_a_timer_r27);
        $crate::__scenario_item!([$($mode)*] libvirt s07_timer_deleted_before_poll_r15);
        $crate::__scenario_item!([$($mode)*] libvirt s08_timer_removal_interrupts_poll_r40_r46);
        $crate::__scenario_item!([$($mode)*] libvirt s09_timer_deleted_during_dispatch_r33_r34);
        $crate::__scenario_item!([$($mode)*] libvirt s10_timer_deletes_itself_r16);
        $crate::__scenario_item!([$($mode)*] libvirt s11_survivor_after_mass_removal_r03);
        $crate::__scenario_item!([$($mode)*] libvirt s12_same_fd_twice_r10_r11);
        $crate::__scenario_item!([$($mode)*] frees s13_remove_disabled_watch_frees_once_r04_r06);
        $crate::__scenario_item!([$($mode)*] frees s14_remove_disabled_timer_frees_once_r04_r06);
        $crate::__scenario_item!([$($mode)*] frees s15_free_never_inside_remove_r21_r24);
        $crate::__scenario_item!([$($mode)*] frees s16_free_after_running_callback_r22_r44);
        $crate::__scenario_item!([$($mode)*] frees s17_free_may_call_every_op_r24_r43);
        $crate::__scenario_item!([$($mode)*] frees s18_frees_at_loop_destruction_r23_r48);
        $crate::__scenario_item!([$($mode)*] frees s19_failed_add_returns_callback_r02_r59);
        $crate::__scenario_item!([$($mode)*] frees s20_drain_pending_frees_r25_r57);
        $crate::__scenario_item!([$($mode)*] frees r25_drain_runs_pending_frees_and_counts_them_r57);
        $crate::__scenario_item!([$($mode)*] frees r26_frees_run_in_removal_order);
        $crate::__scenario_item!([$($mode)*] frees r25_free_by_end_of_next_iteration);
        $crate::__scenario_item!([$($mode)*] frees r46_leftover_free_ends_the_iteration_r25);
        $crate::__scenario_item!([$($mode)*] delivery s21_level_triggered_partial_read_r08);
        $crate::__scenario_item!([$($mode)*] delivery r08_writable_is_level_triggered);
        $crate::__scenario_item!([$($mode)*] delivery s22_hangup_without_asking_r09);
        $crate::__scenario_item!([$($mode)*] delivery s23_disabled_watch_silent_on_hangup_r10);
        $crate::__scenario_item!([$($mode)*] delivery s24_read_write_in_one_call_r12);
        $crate::__scenario_item!([$($mode)*] delivery s25_overlapping_watches_own_bits_r09_r11);
        $crate::__scenario_item!([$($mode)*] delivery r11_three_overlapping_watches_one_fd);
        $crate::__scenario_item!([$($mode)*] delivery s26_interest_change_mid_iteration_r18);
        $crate::__scenario_item!([$($mode)*] delivery s27_update_same_interest_noop_r05);
        $crate::__scenario_item!([$($mode)*] delivery r09_reported_bits_subset_of_interest);
        $crate::__scenario_item!([$($mode)*] delivery r51_regular_file_and_dev_null_always_ready_d4);
        $crate::__scenario_item!([$($mode)*] delivery r13_arguments_are_own_id_and_fd);
        $crate::__scenario_item!([$($mode)*] mutation s28_add_during_dispatch_waits_next_iteration_r17_r37);
        $crate::__scenario_item!([$($mode)*] mutation s29_remove_readd_same_fd_r19);
        $crate::__scenario_item!([$($mode)*] mutation r15_foreign_remove_never_started_again);
        $crate::__scenario_item!([$($mode)*] mutation r16_self_removal_state_alive_until_return);
        $crate::__scenario_item!([$($mode)*] mutation r18_update_from_callback_applies_next_poll);
        $crate::__scenario_item!([$($mode)*] mutation r20_heavy_mutation_from_callbacks);
        $crate::__scenario_item!([$($mode)*] mutation r20_mutation_from_frees);
        $crate::__scenario_item!([$($mode)*] timers s32_zero_interval_every_iteration_no_starvation_r27_r35);
        $crate::__scenario_item!([$($mode)*] timers r27_zero_interval_and_kernel_ready_fd_once_per_iteration_r30);
        $crate::__scenario_item!([$($mode)*] timers s33_one_shot_by_self_disable_r34);
        $crate::__scenario_item!([$($mode)*] timers s34_disabled_never_fires_r27);
        $crate::__scenario_item!([$($mode)*] timers s35_cross_thread_arm_wakes_r28_r40);
        $crate::__scenario_item!([$($mode)*] timers s36_update_restarts_countdown_r29);
        $crate::__scenario_item!([$($mode)*] timers s37_update_shortens_r29);
        $crate::__scenario_item!([$($mode)*] timers s38_never_early_r27_r31_r32);
        $crate::__scenario_item!([$($mode)*] timers s40_deadline_order_r33);
        $crate::__scenario_item!([$($mode)*] timers r33_equal_deadlines_fire_in_creation_order);
        $crate::__scenario_item!([$($mode)*] timers s41_timer_disabled_by_earlier_timer_r34);
        $crate::__scenario_item!([$($mode)*] timers s42_timer_added_in_timer_callback_waits_r37);
        $crate::__scenario_item!([$($mode)*] timers s43_huge_intervals_no_overflow_r38);
        $crate::__scenario_item!([$($mode)*] timers r30_no_catch_up_after_stall);
        $crate::__scenario_item!([$($mode)*] timers r36_rearm_from_own_callback_r36);
        $crate::__scenario_item!([$($mode)*] timers r29_update_same_interval_restarts);
        $crate::__scenario_item!([$($mode)*] timers r06_timer_disable_enable_cycles);
        $crate::__scenario_item!([$($mode)*] one_shot r27_once_fires_exactly_once_then_reads_disabled_r57);
        $crate::__scenario_item!([$($mode)*] one_shot r36_once_rearmed_from_own_callback_fires_once_more);
        $crate::__scenario_item!([$($mode)*] one_shot r27_once_zero_next_iteration_once_no_spin_r35);
        $crate::__scenario_item!([$($mode)*] one_shot r27_once_disabled_before_due_never_fires_r06);
        $crate::__scenario_item!([$($mode)*] one_shot r29_once_rearmed_before_due_fires_once_at_new_deadline_r31);
        $crate::__scenario_item!([$($mode)*] threads s44_cross_thread_add_wakes_r40);
        $crate::__scenario_item!([$($mode)*] threads s45_cross_thread_update_wakes_r40);
        $crate::__scenario_item!([$($mode)*] threads r40_wakeups_never_lost_repeated);
        $crate::__scenario_item!([$($mode)*] threads r40_cross_thread_remove_and_quit_wake);
        $crate::__scenario_item!([$($mode)*] threads r39_concurrent_ops_from_four_threads);
        $crate::__scenario_item!([$($mode)*] threads s50_callbacks_and_frees_on_loop_thread_r42_r50);
        $crate::__scenario_item!([$($mode)*] threads r43_no_lock_held_around_callbacks_and_frees);
        $crate::__scenario_item!([$($mode)*] threads r44_remove_does_not_wait_for_running_timer);
        $crate::__scenario_item!([$($mode)*] thread_bound r42_thread_bound_callbacks_called_on_loop_thread_r50);
        $crate::__scenario_item!([$($mode)*] thread_bound r50_thread_bound_add_off_loop_thread_refused_callback_back_r02);
        $crate::__scenario_item!([$($mode)*] thread_bound r42_thread_bound_free_on_loop_thread_once_after_remove_r21_r24);
        $crate::__scenario_item!([$($mode)*] thread_bound r42_other_threads_bound_callback_never_called_reported_r59);
        $crate::__scenario_item!([$($mode)*] thread_bound e24_registry_on_local_gets_foreign_emits_on_loop_thread_r42);
        $crate::__scenario_item!([$($mode)*] lifecycle s47_quit_from_foreign_thread_r47);
        $crate::__scenario_item!([$($mode)*] lifecycle s48_quit_from_callback_finishes_batch_r47);
        $crate::__scenario_item!([$($mode)*] lifecycle s49_run_once_nothing_registered_r46);
        $crate::__scenario_item!([$($mode)*] lifecycle r47_quit_before_run_not_lost);
        $crate::__scenario_item!([$($mode)*] lifecycle r47_quit_from_timer_then_run_again);
        $crate::__scenario_item!([$($mode)*] lifecycle r48_ops_after_destruction_loop_gone_r02);
        $crate::__scenario_item!([$($mode)*] lifecycle s52_per_thread_loops_r50);
        $crate::__scenario_item!([$($mode)*] lifecycle s53_second_default_install_refused_r07_r50);
        $crate::__scenario_item!([$($mode)*] lifecycle r49_owner_outlives_its_timer);
        $crate::__scenario_item!([$($mode)*] lifecycle r56_debug_names_and_errors_name_ids_and_fds);
        $crate::__scenario_item!([$($mode)*] run_until r47_run_until_done_by_callback);
        $crate::__scenario_item!([$($mode)*] run_until r47_run_until_deadline_passed_when_idle);
        $crate::__scenario_item!([$($mode)*] run_until r47_run_until_quit_from_foreign_thread_consumed);
        $crate::__scenario_item!([$($mode)*] run_until r47_run_until_checks_done_before_first_iteration);
        $crate::__scenario_item!([$($mode)*] run_until r47_run_until_sees_foreign_condition_after_wake_r46);
        $crate::__scenario_item!([$($mode)*] run_until r46_wake_from_foreign_thread_ends_blocked_run_once_r40);
        $crate::__scenario_item!([$($mode)*] stats r57_stats_same_from_loop_thread_callbacks_and_other_threads);
        $crate::__scenario_item!([$($mode)*] stats r57_counts_follow_add_and_remove_pending_frees_until_next_iteration_r25);
        $crate::__scenario_item!([$($mode)*] stats r57_iterations_count_idle_waits_and_stand_still_r46);
        $crate::__scenario_item!([$($mode)*] bad_input s54_fd_closed_while_watched_no_spin_r52);
        $crate::__scenario_item!([$($mode)*] bad_input r52_closed_fd_open_elsewhere_no_spin_b62);
        $crate::__scenario_item!([$($mode)*] bad_input r18_disabled_earlier_in_iteration_no_error_for_closed_fd_r52);
        $crate::__scenario_item!([$($mode)*] bad_input r52_closed_fd_number_reused_r19 exclusive_fds);
        $crate::__scenario_item!([$($mode)*] bad_input r52_reused_fd_number_watch_enabled_by_update_r19 exclusive_fds);
        $crate::__scenario_item!([$($mode)*] bad_input s56_invalid_fd_and_unknown_bits_r02_r51_r59);
        $crate::__scenario_item!([$($mode)*] bad_input s57_panicking_callback_r54);
        $crate::__scenario_item!([$($mode)*] bad_input r54_panicking_timer_and_free_r23);
        $crate::__scenario_item!([$($mode)*] bad_input r55_eintr_is_retried);
        $crate::__scenario_item!([$($mode)*] bad_input r03_double_and_unknown_remove_not_found_r59);
        $crate::__scenario_item!([$($mode)*] bad_input r04_update_after_remove_never_rearms);
        $crate::__scenario_item!([$($mode)*] bad_input r01_ids_unique_across_churn_and_loops);
        $crate::__scenario_item!([$($mode)*] bad_input r60_bad_input_never_panics);
        $crate::__scenario_item!([$($mode)*] stress t01_threads_churn_while_loop_blocks_and_signals_r15_r23_r39_r40_r55);
        $crate::__scenario_item!([$($mode)*] stress t02_long_blocking_callback_ops_proceed_no_catch_up_r15_r22_r30_r44);
        $crate::__scenario_item!([$($mode)*] model m01_random_op_sequences_match_the_model_r03_r08_r15_r21_r25_r27_r52);
        $crate::__scenario_prelude!([$($mode)*]);
        $crate::__scenario_group!([$($mode)*] registry [
            s59_filter_by_object_e06_e08_e29,
            s60_deregister_inside_flush_e10_e11,
            s64_close_drops_queue_and_frees_e16,
            s65_unknown_double_deregister_ids_never_reused_e02_e12,
            s66_bitmask_and_payload_e03_e13_e20_e21,
            e01_refused_register_hands_callback_back_e03,
            e04_keyed_duplicates_refused_e04,
            e05_no_callbacks_emit_drops_arms_nothing_e27,
            e06_emit_never_delivers_synchronously_wakes_loop_e06,
            e07_emit_order_and_registration_order_e22,
            e08_predicate_on_loop_thread_without_locks_e08,
            e09_register_during_flush_sees_only_later_events,
            e10_deregister_during_flush_stops_delivery_at_once,
            e11_free_never_inside_deregister_nor_while_running,
            e13_self_emitting_callback_one_event_per_flush_e13,
            e14_last_deregister_discards_queue_and_timer,
            e15_transition_hooks_and_counts_e28,
            e16_close_delivers_closing_event_then_frees_e17,
            e16_drop_of_last_handle_closes_despite_weak_handles_e25,
            e17_foreign_close_waits_for_running_callback,
            e18_last_handle_dropped_during_its_own_flush,
            e20_bytes_and_u64_arrays_bit_exact,
            e23_panics_do_not_stop_the_flush,
            e24_two_loops_two_threads_own_objects_e25,
            e26_counts_of_callbacks_and_queued_events,
            e27_arming_races_never_strand_nor_spin_e06,
            e30_fallback_only_when_no_callback_matched,
        ]);
        $crate::__scenario_group!([$($mode)*] closed_fd [
            r52_closed_fd_kept_open_by_a_dup_no_spin_error_at_most_once_r10 exclusive_fds,
            r52_closed_fd_kept_open_by_a_child_process_no_spin_error_at_most_once_r10 exclusive_fds,
            r52_closed_fd_kept_open_in_flight_scm_rights_no_spin_error_at_most_once_r10 exclusive_fds,
            r52_stream_closed_under_its_watch_error_within_128_reports_no_spin exclusive_fds,
            r52_number_reused_by_a_pipe_never_reaches_the_old_watch_r19 exclusive_fds,
            r52_number_reused_by_a_socket_never_reaches_the_old_watch_r19 exclusive_fds,
            r52_number_reused_by_a_regular_file_never_reaches_the_old_watch_r19 exclusive_fds,
            r18_watch_disabled_earlier_in_the_iteration_hears_nothing_of_its_closed_fd_r10_r52 exclusive_fds,
            r52_watched_fds_closed_before_the_first_iteration_update_and_remove_work_r53 exclusive_fds,
            r52_watched_fds_closed_around_an_epoll_reset_update_and_remove_work_b62 exclusive_fds,
            r52_number_reused_before_an_epoll_rebuild_never_reaches_the_old_watch_b62 exclusive_fds,
            r53_update_after_reuse_leaves_the_old_files_registration_behind_b62 exclusive_fds,
        ]);
        $crate::__scenario_group!([$($mode)*] async_layer [
            r42_futures_resolve_on_the_loop_thread_r40,
            r15_dropped_futures_remove_their_registrations_and_never_wake_r21,
            r40_no_wake_up_lost_when_another_thread_wakes_a_blocked_loop,
            r48_futures_on_a_loop_that_has_gone_end_with_loop_gone,
            r54_tasks_spawn_join_abort_detach_and_panics_r50,
            r33_sleeps_resolve_in_deadline_order_never_early_r29_r31,
            r30_intervals_tick_and_merge_missed_firings,
            e07_registry_streams_deliver_in_order_and_end_at_close_e16,
            r08_socket_pair_readiness_with_real_reads_and_writes_r14,
            r50_futures_made_off_the_loop_thread_are_wrong_thread_r42,
            r46_block_on_a_future_that_wakes_itself_does_not_block,
            e17_a_wake_during_the_tasks_own_poll_is_not_lost_r40,
        ]);
    };
}

#[cfg(test)]
mod tests {
    /// The README says how many scenarios the kit runs: that number stays the macro's.
    #[test]
    fn the_readme_counts_the_battery() {
        let readme = include_str!("../../README.md");
        let count = crate::scenarios().len();
        assert!(
            readme.contains(&format!("That is {count} scenarios")),
            "README.md's kit section must say \"That is {count} scenarios\""
        );
    }
}
