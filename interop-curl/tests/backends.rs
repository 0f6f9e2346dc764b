//! Every scenario of `support/scenarios.rs` on every backend this build has: the same client
//! code on the built-in loop (epoll, mio and `poll(2)`), GLib, calloop and tokio (current-thread
//! and multi-thread runtimes).

mod support;

use anyloop_backends::LoopChoice;
use support::scenarios;

macro_rules! on_backend {
    ($backend:ident, $choice:expr; $($name:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[test]
                fn $name() {
                    scenarios::$name($choice);
                }
            )*
        }
    };
}

macro_rules! every_backend {
    ($($name:ident),* $(,)?) => {
        on_backend!(select, LoopChoice::Select; $($name),*);
        on_backend!(select_mio, LoopChoice::SelectMio; $($name),*);
        on_backend!(select_poll, LoopChoice::SelectPoll; $($name),*);
        on_backend!(glib, LoopChoice::Glib; $($name),*);
        on_backend!(calloop, LoopChoice::Calloop; $($name),*);
        on_backend!(tokio, LoopChoice::Tokio; $($name),*);
        on_backend!(tokio_multi, LoopChoice::TokioMulti; $($name),*);
    };
}

every_backend!(
    plain_http_byte_exact,
    https_with_a_generated_ca,
    keep_alive_reuses_connections,
    two_hundred_concurrent_byte_exact,
    uploads_arrive_byte_exact,
    stalled_server_times_out_without_spinning,
    server_dies_mid_body,
    refused_port,
    cancelled_mid_body,
    started_from_another_completion,
    pause_and_resume,
    loop_destroyed_with_transfers_in_flight,
    close_ends_transfers,
    progress_and_done_events,
    total_connection_limit,
    refused_inside_a_libcurl_callback,
    closed_from_inside_a_libcurl_callback,
    paused_and_resumed_from_inside_a_libcurl_callback,
);

/// A client is made on its loop's thread: elsewhere it is a typed error.
#[test]
fn a_client_off_its_loop_thread_is_refused() {
    let lp = LoopChoice::Select.create().expect("loop");
    let handle = lp.handle();
    let error = std::thread::spawn(move || anyloop_curl::Client::new(&handle).err())
        .join()
        .expect("thread")
        .expect("refused");
    assert!(
        matches!(&error, anyloop_curl::Error::Loop { source, .. }
            if matches!(**source, anyloop::Error::WrongThread { .. })),
        "{error}"
    );
}
