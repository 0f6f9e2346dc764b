//! The scenarios, each run on every backend (`tests/backends.rs` expands them), each against
//! a server of its own on loopback, each bounded by a watchdog.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use anyloop_backends::LoopChoice;
use anyloop_curl::curl::easy::{Easy2, Handler, WriteError};
use anyloop_curl::{Client, Error, TransferDone, TransferId, TransferProgress, TransferStarted};

use super::server::{fnv1a, pattern, Server};
use super::*;

/// No scenario takes longer (the watchdog aborts the process then).
const LIMIT: Duration = Duration::from_secs(60);
/// A transfer that takes longer than this is hung: libcurl gives up on it (a hang guard
/// only, far above what any scenario needs).
const HANG_GUARD: Duration = Duration::from_secs(20);

fn client(lp: &dyn Runner) -> Client {
    Client::builder(&lp.handle())
        .timeout(HANG_GUARD)
        .build()
        .expect("client")
}

/// Every handler made so far was dropped, the client leaves nothing on the loop.
fn finish(
    mut lp: Box<dyn Runner>,
    client: Client,
    counters: &Counters,
    handlers: usize,
    what: &str,
) {
    drop(client);
    assert_nothing_registered(&mut *lp, what);
    assert_eq!(counters.drops.get(), handlers, "{what}: handlers dropped");
}

pub fn plain_http_byte_exact(choice: LoopChoice) {
    let _dog = Watchdog::new("plain_http_byte_exact", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();

    // As a future.
    let fetched = block_on(
        &mut *lp,
        HANG_GUARD,
        client.fetch(counters.easy(&server.url("/bytes/1048576?seed=7"))),
    );
    let easy = fetched.expect("the transfer completes");
    assert_eq!(easy.response_code().unwrap(), 200);
    assert!(
        easy.get_ref().data == pattern(7, 1 << 20),
        "{choice}: body differs"
    );
    drop(easy);

    // As a callback, on the loop's thread; a 404 is a completed transfer.
    let outcome = Rc::new(RefCell::new(None));
    let seen = outcome.clone();
    let test_thread = std::thread::current().id();
    client
        .start(counters.easy(&server.url("/missing")), move |result| {
            assert_eq!(std::thread::current().id(), test_thread);
            *seen.borrow_mut() = Some(result);
        })
        .expect("start")
        .detach();
    assert!(run_until(&mut *lp, HANG_GUARD, || outcome
        .borrow()
        .is_some()));
    let easy = outcome
        .borrow_mut()
        .take()
        .unwrap()
        .expect("a 404 completes");
    assert_eq!(easy.response_code().unwrap(), 404);
    assert_eq!(easy.get_ref().data, b"not found");
    drop(easy);
    let stats = client.stats();
    assert_eq!((stats.started, stats.completed, stats.in_flight), (2, 2, 0));
    finish(lp, client, &counters, 2, "plain HTTP");
}

pub fn https_with_a_generated_ca(choice: LoopChoice) {
    let _dog = Watchdog::new("https_with_a_generated_ca", LIMIT);
    let tls = super::tls::make(choice.name());
    let server = Server::https(tls.acceptor.clone());
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();

    let mut trusted = counters.easy(&server.url("/bytes/300000?seed=11"));
    trusted.cainfo(&tls.ca_file).unwrap();
    let easy = block_on(&mut *lp, HANG_GUARD, client.fetch(trusted)).expect("HTTPS completes");
    assert_eq!(easy.response_code().unwrap(), 200);
    assert!(easy.get_ref().data == pattern(11, 300_000));
    drop(easy);

    // The same server is refused when its CA is not trusted: verification is on.
    let untrusted = counters.easy(&server.url("/bytes/10"));
    let failed = block_on(&mut *lp, HANG_GUARD, client.fetch(untrusted))
        .expect_err("an unknown CA is refused");
    let error = failed.error().curl_error().expect("libcurl's error");
    assert!(
        error.is_peer_failed_verification() || error.is_ssl_cacert(),
        "{choice}: {}",
        failed.error()
    );
    assert!(failed.has_easy(), "the handle comes back");
    drop(failed);
    let _ = std::fs::remove_file(&tls.ca_file);
    finish(lp, client, &counters, 2, "HTTPS");
}

pub fn keep_alive_reuses_connections(choice: LoopChoice) {
    let _dog = Watchdog::new("keep_alive_reuses_connections", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();

    // One after the other: one connection for all twenty.
    let sequential = async {
        for seed in 0..20u64 {
            let url = server.url(&format!("/bytes/5000?seed={seed}"));
            let easy = client.fetch(counters.easy(&url)).await.expect("fetch");
            assert!(easy.get_ref().data == pattern(seed, 5000));
        }
    };
    block_on(&mut *lp, HANG_GUARD, sequential);
    assert_eq!(server.stats().requests.load(SeqCst), 20);
    assert_eq!(
        server.stats().connections.load(SeqCst),
        1,
        "{choice}: not reused"
    );

    // At most two per host: ten at once share two connections.
    let limited = Client::builder(&lp.handle())
        .max_host_connections(2)
        .timeout(HANG_GUARD)
        .build()
        .unwrap();
    let other = Server::http();
    let fetches: Vec<_> = (0..10u64)
        .map(|seed| {
            limited.fetch(
                counters.easy(&other.url(&format!("/slow/20000?chunk=5000&ms=5&seed={seed}"))),
            )
        })
        .collect();
    let all = async {
        for (seed, fetch) in fetches.into_iter().enumerate() {
            let easy = fetch.await.expect("fetch");
            assert!(easy.get_ref().data == pattern(seed as u64, 20000));
        }
    };
    block_on(&mut *lp, HANG_GUARD, all);
    assert!(
        other.stats().peak_open.load(SeqCst) <= 2,
        "{choice}: per-host limit"
    );
    assert!(
        other.stats().connections.load(SeqCst) <= 2,
        "{choice}: reuse under a limit"
    );
    drop(limited);
    finish(lp, client, &counters, 30, "keep-alive");
}

pub fn two_hundred_concurrent_byte_exact(choice: LoopChoice) {
    let _dog = Watchdog::new("two_hundred_concurrent_byte_exact", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();
    let size = |seed: u64| 1 + (seed as usize * 7919) % 70_000;
    let handle = lp.handle();
    let tasks: Vec<_> = (0..200u64)
        .map(|seed| {
            let url = server.url(&format!("/bytes/{}?seed={seed}", size(seed)));
            anyloop_async::spawn_local(&handle, client.fetch(counters.easy(&url))).expect("spawn")
        })
        .collect();
    assert_eq!(client.stats().in_flight, 200);
    let results = block_on(&mut *lp, HANG_GUARD, async {
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }
        results
    });
    for (seed, result) in results.into_iter().enumerate() {
        let easy = result.expect("transfer");
        assert!(
            easy.get_ref().data == pattern(seed as u64, size(seed as u64)),
            "{choice}: body {seed} differs"
        );
    }
    assert_eq!(counters.written.get(), (0..200).map(size).sum::<usize>());
    let stats = client.stats();
    assert_eq!(
        (stats.completed, stats.failed, stats.in_flight),
        (200, 0, 0)
    );
    finish(lp, client, &counters, 200, "200 at once");
}

pub fn uploads_arrive_byte_exact(choice: LoopChoice) {
    let _dog = Watchdog::new("uploads_arrive_byte_exact", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let body = pattern(3, 300_000);
    let expected = format!("len={} fnv={:016x}", body.len(), fnv1a(&body));
    let done = Rc::new(RefCell::new(Vec::new()));
    let record = done.clone();
    client
        .events()
        .on_local::<TransferDone>(move |event| record.borrow_mut().push(event.clone()))
        .unwrap();

    // POST with a known size.
    let mut post = Easy2::new(Upload {
        body: body.clone(),
        sent: 0,
        answer: Vec::new(),
    });
    post.url(&server.url("/upload")).unwrap();
    post.post(true).unwrap();
    post.post_field_size(body.len() as u64).unwrap();
    let post = block_on(&mut *lp, HANG_GUARD, client.fetch(post)).expect("POST");
    assert_eq!(String::from_utf8_lossy(&post.get_ref().answer), expected);

    // PUT of unknown size: chunked.
    let mut put = Easy2::new(Upload {
        body,
        sent: 0,
        answer: Vec::new(),
    });
    put.url(&server.url("/upload")).unwrap();
    put.upload(true).unwrap();
    let put = block_on(&mut *lp, HANG_GUARD, client.fetch(put)).expect("PUT");
    assert_eq!(String::from_utf8_lossy(&put.get_ref().answer), expected);

    assert!(run_until(&mut *lp, HANG_GUARD, || done.borrow().len() == 2));
    let done = done.borrow();
    assert_eq!(done[0].progress.uploaded, 300_000);
    assert_eq!(done[0].progress.upload_total, Some(300_000));
    // libcurl counts the chunk framing it sent.
    assert!(
        done[1].progress.uploaded >= 300_000,
        "{:?}",
        done[1].progress
    );
    assert_eq!(
        done[1].progress.upload_total, None,
        "chunked: no size given"
    );
    assert!(done
        .iter()
        .all(|event| event.result.is_ok() && event.response_code == 200));
    drop(client);
    assert_nothing_registered(&mut *lp, "uploads");
}

/// A transfer waiting on a server that never answers: libcurl's timeout fires, not earlier
/// than set, and the loop sleeps meanwhile (a spin would show as thousands of iterations).
pub fn stalled_server_times_out_without_spinning(choice: LoopChoice) {
    let _dog = Watchdog::new("stalled_server_times_out_without_spinning", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let counters = Counters::default();
    let limit = Duration::from_millis(600);
    // The client's timeout, and (with a client that sets none) the easy handle's own.
    let limited = Client::builder(&lp.handle())
        .timeout(limit)
        .build()
        .unwrap();
    let client = Client::new(&lp.handle()).unwrap();

    for (path, body) in [("/stall", 0), ("/stall-after/30000?seed=4", 30_000)] {
        let mut easy = counters.easy(&server.url(path));
        let client = if body == 0 {
            &limited
        } else {
            easy.timeout(limit).unwrap();
            &client
        };
        let before = lp.stats().iterations;
        let started = Instant::now();
        let failed = block_on(&mut *lp, HANG_GUARD, client.fetch(easy)).expect_err("times out");
        let took = started.elapsed();
        let iterations = lp.stats().iterations - before;
        assert!(
            failed.error().is_timeout(),
            "{choice} {path}: {}",
            failed.error()
        );
        assert!(
            took >= limit,
            "{choice} {path}: gave up after {took:?}, before {limit:?}"
        );
        assert!(took < HANG_GUARD, "{choice} {path}: {took:?}");
        assert!(
            iterations < 60,
            "{choice} {path}: {iterations} loop iterations in {took:?}"
        );
        let easy = failed.into_easy().expect("handle");
        assert!(
            easy.get_ref().data == pattern(4, body),
            "{choice} {path}: partial body"
        );
        drop(easy);
        // libcurl 7.88 does not say "delete" after the timeout that ended the transfer: the
        // client removes its fired timer itself, so nothing stays on the loop (R27).
        assert_nothing_registered(&mut *lp, "after a timeout, clients open");
    }
    // The server saw the client give up.
    assert!(run_until_seen(&mut *lp, HANG_GUARD, || server
        .stats()
        .broken
        .load(SeqCst)
        == 2));
    drop(limited);
    finish(lp, client, &counters, 2, "stalled server");
}

pub fn server_dies_mid_body(choice: LoopChoice) {
    let _dog = Watchdog::new("server_dies_mid_body", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();
    let mut failed = block_on(
        &mut *lp,
        HANG_GUARD,
        client.fetch(counters.easy(&server.url("/die/40000?seed=9"))),
    )
    .expect_err("a short body fails");
    let error = failed.error().curl_error().expect("libcurl's error");
    assert!(error.is_partial_file(), "{choice}: {}", failed.error());
    assert!(failed.easy_mut().unwrap().get_ref().data == pattern(9, 40_000));
    drop(failed);
    finish(lp, client, &counters, 1, "dying server");
}

pub fn refused_port(choice: LoopChoice) {
    let _dog = Watchdog::new("refused_port", LIMIT);
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();
    let url = format!("http://127.0.0.1:{port}/");
    let failed =
        block_on(&mut *lp, HANG_GUARD, client.fetch(counters.easy(&url))).expect_err("refused");
    assert!(
        failed
            .error()
            .curl_error()
            .is_some_and(|e| e.is_couldnt_connect()),
        "{choice}: {}",
        failed.error()
    );
    assert_eq!(failed.error().curl_code(), Some(7));
    assert!(failed.to_string().contains("transfer 1"), "{failed}");
    drop(failed);
    finish(lp, client, &counters, 1, "refused port");
}

pub fn cancelled_mid_body(choice: LoopChoice) {
    let _dog = Watchdog::new("cancelled_mid_body", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();
    let url = server.url("/slow/2000000?chunk=4096&ms=4&seed=2");

    // Dropping the future.
    let fetch = client.fetch(counters.easy(&url));
    assert!(run_until(&mut *lp, HANG_GUARD, || counters.written.get() >= 16_384));
    drop(fetch);
    let at_cancel = counters.written.get();
    assert_eq!(
        counters.drops.get(),
        1,
        "the handler went with the transfer"
    );
    let stats = client.stats();
    assert_eq!(
        (stats.in_flight, stats.cancelled, stats.sockets),
        (0, 1, 0),
        "{choice}"
    );
    run_for(&mut *lp, Duration::from_millis(300));
    assert_eq!(
        counters.written.get(),
        at_cancel,
        "{choice}: bytes after the cancel"
    );
    assert!(run_until_seen(&mut *lp, HANG_GUARD, || server
        .stats()
        .broken
        .load(SeqCst)
        == 1));
    // The client is still open, idle: nothing of it on the loop (its fired timer included).
    assert!(run_until(&mut *lp, Duration::from_secs(5), || lp_idle(
        &client
    )));
    assert_nothing_registered(&mut *lp, "after a cancel, client open");

    // Dropping the handle; `cancel` gives the easy handle back, `done` is never called.
    let called = Rc::new(Cell::new(false));
    let flag = called.clone();
    let transfer = client
        .start(counters.easy(&url), move |_| flag.set(true))
        .expect("start");
    let before = counters.written.get();
    assert!(run_until(&mut *lp, HANG_GUARD, || counters.written.get()
        >= before + 8192));
    let easy = transfer.cancel().expect("the easy handle");
    assert!(!easy.get_ref().data.is_empty());
    drop(easy);
    run_for(&mut *lp, Duration::from_millis(100));
    assert!(!called.get(), "done called for a cancelled transfer");
    finish(lp, client, &counters, 2, "cancel");
}

/// The client has nothing registered on the loop.
fn lp_idle(client: &Client) -> bool {
    let stats = client.stats();
    stats.sockets == 0 && !stats.timer_registered
}

pub fn started_from_another_completion(choice: LoopChoice) {
    let _dog = Watchdog::new("started_from_another_completion", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();
    let order = Rc::new(RefCell::new(Vec::new()));
    let (second_url, next_client, next_counters) = (
        server.url("/bytes/7000?seed=22"),
        client.clone(),
        counters.clone(),
    );
    let log = order.clone();
    client
        .start(
            counters.easy(&server.url("/bytes/3000?seed=21")),
            move |first| {
                let first = first.expect("first");
                assert!(first.get_ref().data == pattern(21, 3000));
                log.borrow_mut().push("first");
                let log = log.clone();
                next_client
                    .start(next_counters.easy(&second_url), move |second| {
                        let second = second.expect("second");
                        assert!(second.get_ref().data == pattern(22, 7000));
                        log.borrow_mut().push("second");
                    })
                    .expect("start from a completion")
                    .detach();
            },
        )
        .expect("start")
        .detach();
    assert!(run_until(&mut *lp, HANG_GUARD, || order.borrow().len() == 2));
    assert_eq!(*order.borrow(), ["first", "second"]);
    assert_eq!(server.stats().connections.load(SeqCst), 1, "reused");
    finish(lp, client, &counters, 2, "chained");
}

/// Pauses itself on its first write (the data comes back later).
struct PauseOnce {
    data: Vec<u8>,
    paused: Rc<Cell<bool>>,
}

impl Handler for PauseOnce {
    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        if !self.paused.replace(true) {
            return Err(WriteError::Pause);
        }
        self.data.extend_from_slice(data);
        Ok(data.len())
    }
}

pub fn pause_and_resume(choice: LoopChoice) {
    let _dog = Watchdog::new("pause_and_resume", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();

    // Paused from outside mid-body: no byte and no spin while paused, all bytes after.
    let fetch = client.fetch(counters.easy(&server.url("/slow/600000?chunk=8192&ms=2&seed=5")));
    assert!(run_until(&mut *lp, HANG_GUARD, || counters.written.get() >= 32_768));
    let transfer = fetch.transfer().expect("started");
    transfer.pause().unwrap();
    assert!(transfer.is_paused());
    let at_pause = counters.written.get();
    let before = lp.stats().iterations;
    run_for(&mut *lp, Duration::from_millis(400));
    assert_eq!(
        counters.written.get(),
        at_pause,
        "{choice}: bytes while paused"
    );
    let iterations = lp.stats().iterations - before;
    assert!(
        iterations < 40,
        "{choice}: {iterations} iterations while paused"
    );
    transfer.resume().unwrap();
    assert!(!transfer.is_paused());
    let easy = block_on(&mut *lp, HANG_GUARD, fetch).expect("completes after resume");
    assert!(
        easy.get_ref().data == pattern(5, 600_000),
        "{choice}: body differs"
    );
    drop(easy);

    // Paused by its handler on the whole (small) body, the socket quiet afterwards: only the
    // resume's own kick can finish it.
    let paused = Rc::new(Cell::new(false));
    let mut easy = Easy2::new(PauseOnce {
        data: Vec::new(),
        paused: paused.clone(),
    });
    easy.url(&server.url("/bytes/3000?seed=6")).unwrap();
    let fetch = client.fetch(easy);
    assert!(run_until(&mut *lp, HANG_GUARD, || paused.get()));
    run_for(&mut *lp, Duration::from_millis(200));
    assert!(
        fetch.transfer().unwrap().progress().is_some(),
        "still in flight while paused"
    );
    fetch.transfer().unwrap().resume().unwrap();
    let easy = block_on(&mut *lp, HANG_GUARD, fetch).expect("completes after resume");
    assert!(easy.get_ref().data == pattern(6, 3000));
    drop(easy);
    finish(lp, client, &counters, 1, "pause");
}

pub fn loop_destroyed_with_transfers_in_flight(choice: LoopChoice) {
    let _dog = Watchdog::new("loop_destroyed_with_transfers_in_flight", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();
    let fetches = vec![
        client.fetch(counters.easy(&server.url("/stall"))),
        client.fetch(counters.easy(&server.url("/slow/5000000?chunk=1024&ms=5"))),
        client.fetch(counters.easy(&server.url("/stall-after/10000"))),
    ];
    let calls = Rc::new(RefCell::new(Vec::new()));
    let record = calls.clone();
    client
        .start(counters.easy(&server.url("/stall")), move |result| {
            record
                .borrow_mut()
                .push(result.map(|_| ()).map_err(|f| f.error().clone()));
        })
        .expect("start")
        .detach();
    let events = Rc::new(Cell::new(0));
    let seen = events.clone();
    client
        .events()
        .on_kinds_local(anyloop::KindSet::all(), move |_, _| {
            seen.set(seen.get() + 1)
        })
        .unwrap();
    assert!(run_until_seen(&mut *lp, HANG_GUARD, || server
        .stats()
        .requests
        .load(SeqCst)
        == 4
        && counters.written.get() >= 10_000));

    drop(lp); // the loop is destroyed with four transfers in flight

    assert_eq!(calls.borrow().len(), 1, "{choice}: done called once");
    assert!(
        matches!(calls.borrow()[0], Err(Error::LoopGone)),
        "{:?}",
        calls.borrow()[0]
    );
    let written = counters.written.get();
    let events_seen = events.get();
    let mut cx = Context::from_waker(Waker::noop());
    for fetch in fetches {
        let mut fetch = pin!(fetch);
        match fetch.as_mut().poll(&mut cx) {
            Poll::Ready(Err(failed)) => {
                assert!(
                    matches!(failed.error(), Error::LoopGone),
                    "{}",
                    failed.error()
                );
                assert!(failed.has_easy(), "the handle comes back");
            }
            Poll::Ready(Ok(_)) => panic!("{choice}: completed without a loop"),
            Poll::Pending => panic!("{choice}: a future never resolves"),
        }
    }
    let stats = client.stats();
    assert_eq!(
        (stats.in_flight, stats.sockets, stats.timer_registered),
        (0, 0, false)
    );
    assert_eq!(stats.failed, 4);
    assert!(client.is_closed());
    let refused = client.start(counters.easy(&server.url("/bytes/1")), |_| panic!("called"));
    let refused = refused.expect_err("no loop");
    assert!(matches!(refused.error(), Error::LoopGone));
    drop(refused);
    // The transfers let go of their connections (libcurl closed the sockets when the client
    // removed the handles): the server sees every one of them closed, with no loop running.
    let deadline = Instant::now() + HANG_GUARD;
    while server.stats().open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        server.stats().open.load(Ordering::SeqCst),
        0,
        "{choice}: connections still open after the loop went"
    );
    assert_eq!(
        counters.written.get(),
        written,
        "no callback after the loop went"
    );
    assert_eq!(events.get(), events_seen, "no event after the loop went");
    drop(client);
    assert_eq!(counters.drops.get(), 5, "{choice}: every handler dropped");
}

pub fn close_ends_transfers(choice: LoopChoice) {
    let _dog = Watchdog::new("close_ends_transfers", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let counters = Counters::default();
    let fetch = client.fetch(counters.easy(&server.url("/stall")));
    assert!(run_until_seen(&mut *lp, HANG_GUARD, || server
        .stats()
        .requests
        .load(SeqCst)
        == 1));
    client.close();
    let failed = block_on(&mut *lp, HANG_GUARD, fetch).expect_err("closed");
    assert!(matches!(failed.error(), Error::Closed));
    drop(failed);
    let refused = client.fetch(counters.easy(&server.url("/bytes/1")));
    let refused = block_on(&mut *lp, HANG_GUARD, refused).expect_err("closed");
    assert!(matches!(refused.error(), Error::Closed));
    assert!(refused.has_easy());
    drop(refused);
    assert_nothing_registered(&mut *lp, "closed client");
    finish(lp, client, &counters, 2, "close");
}

pub fn progress_and_done_events(choice: LoopChoice) {
    let _dog = Watchdog::new("progress_and_done_events", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = Client::builder(&lp.handle())
        .timeout(HANG_GUARD)
        .progress_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let counters = Counters::default();
    let fetch = client.fetch(counters.easy(&server.url("/slow/200000?chunk=8192&ms=10&seed=8")));
    let other = client.fetch(counters.easy(&server.url("/bytes/100")));
    let watched: TransferId = fetch.transfer().unwrap().id();
    let log = Rc::new(RefCell::new(Vec::new()));
    let (started, progress, done) = (log.clone(), log.clone(), log.clone());
    let events = client.events();
    events
        .listen::<TransferStarted>()
        .object(watched)
        .call_local(move |e| {
            started
                .borrow_mut()
                .push(format!("started {}", e.transfer.0))
        })
        .unwrap();
    events
        .listen::<TransferProgress>()
        .object(watched)
        .call_local(move |e| {
            progress
                .borrow_mut()
                .push(format!("progress {}", e.progress.downloaded))
        })
        .unwrap();
    let dones = Rc::new(RefCell::new(Vec::new()));
    let all_done = dones.clone();
    events
        .on_local::<TransferDone>(move |e| all_done.borrow_mut().push(e.clone()))
        .unwrap();
    events
        .listen::<TransferDone>()
        .object(watched)
        .call_local(move |e| {
            done.borrow_mut()
                .push(format!("done {}", e.progress.downloaded))
        })
        .unwrap();
    let easy = block_on(&mut *lp, HANG_GUARD, fetch).expect("fetch");
    assert!(easy.get_ref().data == pattern(8, 200_000));
    drop(easy);
    drop(block_on(&mut *lp, HANG_GUARD, other).expect("other"));
    assert!(run_until(&mut *lp, HANG_GUARD, || dones.borrow().len() == 2));
    let log = log.borrow();
    // Registered after the transfer started: no `started` (E9); progress in order, then done.
    let figures: Vec<u64> = log
        .iter()
        .filter_map(|line| line.strip_prefix("progress ")?.parse().ok())
        .collect();
    assert!(figures.len() >= 3, "{choice}: {log:?}");
    assert!(figures.windows(2).all(|w| w[0] < w[1]), "{choice}: {log:?}");
    assert_eq!(
        log.last().map(String::as_str),
        Some("done 200000"),
        "{log:?}"
    );
    let done = dones.borrow();
    let ours = done.iter().find(|e| e.transfer == watched).unwrap();
    assert!(ours.result.is_ok());
    assert_eq!(ours.response_code, 200);
    assert_eq!(ours.progress.download_total, Some(200_000));
    assert!(ours.total_time > Duration::ZERO);
    drop(done);
    finish(lp, client, &counters, 2, "events");
}

pub fn total_connection_limit(choice: LoopChoice) {
    let _dog = Watchdog::new("total_connection_limit", LIMIT);
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = Client::builder(&lp.handle())
        .max_total_connections(3)
        .timeout(HANG_GUARD)
        .build()
        .unwrap();
    let counters = Counters::default();
    let fetches: Vec<_> = (0..12u64)
        .map(|seed| {
            client.fetch(
                counters.easy(&server.url(&format!("/slow/16384?chunk=4096&ms=5&seed={seed}"))),
            )
        })
        .collect();
    block_on(&mut *lp, HANG_GUARD, async {
        for (seed, fetch) in fetches.into_iter().enumerate() {
            let easy = fetch.await.expect("fetch");
            assert!(easy.get_ref().data == pattern(seed as u64, 16384));
        }
    });
    let peak = server.stats().peak_open.load(SeqCst);
    assert!(
        (1..=3).contains(&peak),
        "{choice}: {peak} connections at once"
    );
    finish(lp, client, &counters, 12, "limits");
}

pub fn refused_inside_a_libcurl_callback(choice: LoopChoice) {
    let _dog = Watchdog::new("refused_inside_a_libcurl_callback", LIMIT);
    /// Tries to start a transfer from inside libcurl's write callback.
    struct Nested {
        client: Client,
        url: String,
        refused: Rc<RefCell<Option<String>>>,
    }
    impl Handler for Nested {
        fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
            if self.refused.borrow().is_none() {
                let failed = self
                    .client
                    .start(easy(&self.url), |_| {})
                    .expect_err("refused");
                assert!(failed.has_easy(), "the handle comes back");
                *self.refused.borrow_mut() = Some(failed.error().to_string());
            }
            Ok(data.len())
        }
    }
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let refused = Rc::new(RefCell::new(None));
    let mut nested = Easy2::new(Nested {
        client: client.clone(),
        url: server.url("/bytes/1"),
        refused: refused.clone(),
    });
    nested.url(&server.url("/bytes/100")).unwrap();
    drop(block_on(&mut *lp, HANG_GUARD, client.fetch(nested)).expect("fetch"));
    let message = refused.borrow().clone().expect("tried");
    assert!(
        message.contains("inside one of libcurl's callbacks"),
        "{message}"
    );
    drop(client);
    assert_nothing_registered(&mut *lp, "nested");
}

/// A handler closes its own client from inside libcurl's write callback: libcurl refuses to
/// let go of the easy handles there (one of which it is using), so the client shuts down right
/// after libcurl returns: the transfer ends with `Closed`, its handle comes back, nothing is
/// freed under libcurl's feet and nothing stays registered.
pub fn closed_from_inside_a_libcurl_callback(choice: LoopChoice) {
    let _dog = Watchdog::new("closed_from_inside_a_libcurl_callback", LIMIT);
    struct Closer {
        client: Client,
        closed: Rc<Cell<bool>>,
    }
    impl Handler for Closer {
        fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
            if !self.closed.replace(true) {
                self.client.close();
            }
            Ok(data.len())
        }
    }
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let closed = Rc::new(Cell::new(false));
    let mut closer = Easy2::new(Closer {
        client: client.clone(),
        closed: closed.clone(),
    });
    // Some bytes, then a stall: the transfer cannot complete in the action that ran the write.
    closer.url(&server.url("/stall-after/10000")).unwrap();
    let other = client.fetch(easy(&server.url("/stall")));
    let outcome = block_on(&mut *lp, HANG_GUARD, client.fetch(closer));
    let Err(failed) = outcome else {
        panic!("{choice}: the transfer completed although its client was closed under it")
    };
    assert!(closed.get(), "{choice}: the handler ran");
    assert!(
        matches!(failed.error(), Error::Closed),
        "{}",
        failed.error()
    );
    assert!(failed.has_easy(), "{choice}: the handle comes back");
    let other = block_on(&mut *lp, HANG_GUARD, other).expect_err("closed too");
    assert!(matches!(other.error(), Error::Closed), "{}", other.error());
    assert!(client.is_closed());
    drop(client);
    assert_nothing_registered(&mut *lp, "closed from a callback");
}

/// One transfer's handler pauses and resumes another, in flight, from inside libcurl's write
/// callback: the pause reaches libcurl there, the work that follows it waits until libcurl
/// returns, and both transfers complete byte-exact.
pub fn paused_and_resumed_from_inside_a_libcurl_callback(choice: LoopChoice) {
    let _dog = Watchdog::new("paused_and_resumed_from_inside_a_libcurl_callback", LIMIT);
    type Slot = Rc<RefCell<Option<anyloop_curl::Transfer<Sink>>>>;
    struct Toggler {
        other: Slot,
        toggled: Rc<Cell<u32>>,
        data: Vec<u8>,
    }
    impl Handler for Toggler {
        fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
            if let Some(other) = self.other.borrow().as_ref() {
                if other.pause().is_ok() && other.resume().is_ok() {
                    self.toggled.set(self.toggled.get() + 1);
                }
            }
            self.data.extend_from_slice(data);
            Ok(data.len())
        }
    }
    let server = Server::http();
    let mut lp = new_loop(choice);
    let client = client(&*lp);
    let other: Slot = Rc::default();
    let done: Rc<RefCell<Option<usize>>> = Rc::default();
    let seen = done.clone();
    // Slow (a chunk every 2 ms): still in flight while the toggler's writes run.
    let transfer = client
        .start(
            easy(&server.url("/slow/300000?chunk=8192&ms=2")),
            move |outcome| {
                *seen.borrow_mut() =
                    Some(outcome.expect("the other transfer").get_ref().data.len());
            },
        )
        .expect("start the other transfer");
    *other.borrow_mut() = Some(transfer);
    let toggled = Rc::new(Cell::new(0));
    let mut toggler = Easy2::new(Toggler {
        other: other.clone(),
        toggled: toggled.clone(),
        data: Vec::new(),
    });
    toggler
        .url(&server.url("/slow/200000?chunk=8192&ms=1"))
        .unwrap();
    let mine = block_on(&mut *lp, HANG_GUARD, client.fetch(toggler)).expect("the toggler");
    assert_eq!(mine.get_ref().data.len(), 200_000, "{choice}: byte-exact");
    assert!(run_until_seen(&mut *lp, HANG_GUARD, || done
        .borrow()
        .is_some()));
    assert_eq!(
        *done.borrow(),
        Some(300_000),
        "{choice}: the toggled one, byte-exact"
    );
    assert!(
        toggled.get() > 0,
        "{choice}: the handler never reached the other transfer"
    );
    other.borrow_mut().take();
    drop(client);
    assert_nothing_registered(&mut *lp, "toggled from a callback");
}

use std::sync::atomic::Ordering::SeqCst;
