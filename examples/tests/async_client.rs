//! The `linechat` `async fn` library and the `async_client` program on every backend this
//! build includes: the same client and server code, requests answered in order by several
//! clients at once, a request timing out (and the client closing), a closed connection
//! reported, a missing server refused, nothing left on the loop afterwards; the program's
//! `--demo` as a whole process; and a client on each loop talking to a server process.

use std::cell::Cell;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::Runner;
use anyloop_async::{block_on, spawn_local, timeout};
use anyloop_backends::LoopChoice;
use anyloop_examples::linechat::{serve, Client, ClientError};

/// A hang guard, far longer than any scenario needs.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread, failing if it takes longer than [`LIMIT`].
fn guarded(what: String, f: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = mpsc::channel();
    let thread = thread::Builder::new()
        .name(what.clone())
        .spawn(move || {
            f();
            let _ = done_tx.send(());
        })
        .unwrap();
    match done_rx.recv_timeout(LIMIT) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for {LIMIT:?}"),
    }
}

fn socket_path(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "anyloop-linechat-test-{}-{tag}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn the_library_on_every_loop() {
    for choice in LoopChoice::built() {
        guarded(format!("linechat on {choice}"), move || {
            let mut runner = choice.create().unwrap();
            let lp = runner.handle();
            let path = socket_path(choice.name());
            let served = Rc::new(Cell::new(0));
            let server = spawn_local(
                &lp,
                serve(
                    lp.clone(),
                    UnixListener::bind(&path).unwrap(),
                    served.clone(),
                ),
            )
            .unwrap();
            let limit = Duration::from_millis(300);

            // Three clients at once, each with its own sequence of requests.
            let clients: Vec<_> = (0..3)
                .map(|c| {
                    let (lp, path) = (lp.clone(), path.clone());
                    spawn_local(&lp.clone(), async move {
                        let mut client =
                            Client::connect(&lp, &path, Duration::from_secs(10)).await?;
                        for i in 0..50 {
                            let reply =
                                client.request(&format!("ECHO client {c} line {i}")).await?;
                            assert_eq!(reply, format!("client {c} line {i}"));
                        }
                        assert_eq!(client.request("UPPER ok").await?, "OK");
                        client.ping().await?;
                        Ok::<_, ClientError>(c)
                    })
                    .unwrap()
                })
                .collect();
            let session = async {
                for client in clients {
                    client.await.unwrap().unwrap();
                }
                // A reply later than the limit: TimedOut, and the client is closed.
                let mut client = Client::connect(&lp, &path, limit).await.unwrap();
                let started = Instant::now();
                let slow = client.request("WAIT 2000 late").await;
                assert!(
                    matches!(slow, Err(ClientError::TimedOut { .. })),
                    "{slow:?}"
                );
                assert!(started.elapsed() >= limit, "timed out early");
                assert!(!client.is_open());
                assert!(matches!(
                    client.request("PING").await,
                    Err(ClientError::Closed)
                ));
                // After BYE the server closes.
                let mut client = Client::connect(&lp, &path, limit).await.unwrap();
                assert_eq!(client.request("BYE").await.unwrap(), "BYE");
                assert!(matches!(
                    client.request("PING").await,
                    Err(ClientError::Closed)
                ));
                assert!(client
                    .request("NONSENSE")
                    .await
                    .is_err_and(|e| matches!(e, ClientError::Closed)));
                // Unknown command, on a fresh connection.
                let mut client = Client::connect(&lp, &path, limit).await.unwrap();
                assert!(client.request("NONSENSE").await.unwrap().starts_with("ERR"));
                // No server there.
                let missing = Client::connect(&lp, &socket_path("missing"), limit).await;
                assert!(
                    matches!(missing, Err(ClientError::Connect { .. })),
                    "{missing:?}"
                );
            };
            block_on(&mut *runner, timeout(&lp, Duration::from_secs(30), session))
                .unwrap()
                .expect("the session finished in time");
            assert!(served.get() >= 158, "{}", served.get()); // 3 × 52, BYE, NONSENSE
            drop(server); // cancels the accept loop and every connection
            for _ in 0..3 {
                runner.run_once(Some(Duration::from_millis(2))).unwrap();
            }
            let stats = runner.stats();
            assert_eq!((stats.watches, stats.timers), (0, 0), "{choice}: {stats:?}");
            let _ = std::fs::remove_file(&path);
        });
    }
}

#[test]
fn the_program_demo_on_every_loop() {
    for choice in LoopChoice::built() {
        let output = Command::new(env!("CARGO_BIN_EXE_async_client"))
            .args(["--demo", "--loop", choice.name(), "--timeout", "200"])
            .output()
            .expect("run async_client");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{choice}: {stdout}{stderr}");
        assert!(stdout.contains("< PONG"), "{choice}: {stdout}");
        assert!(stdout.contains("< ANY LOOP WILL DO"), "{choice}: {stdout}");
        assert!(
            stdout.contains("! no reply within 200ms"),
            "{choice}: {stdout}"
        );
        assert!(stdout.contains("< BYE"), "{choice}: {stdout}");
        assert!(
            stderr.contains(&format!("on the {choice} loop")),
            "{stderr}"
        );
    }
}

#[test]
fn clients_on_every_loop_talk_to_a_server_process() {
    let path = socket_path("process");
    let mut server = Command::new(env!("CARGO_BIN_EXE_async_client"))
        .args(["--loop", "select", "--serve-for", "60", "--serve"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server process");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let mut failures = Vec::new();
    for choice in LoopChoice::built() {
        let path = path.clone();
        let outcome = std::panic::catch_unwind(move || {
            guarded(format!("client on {choice}"), move || {
                let mut runner = choice.create().unwrap();
                let lp = runner.handle();
                let reply = block_on(&mut *runner, async {
                    let mut client = Client::connect(&lp, &path, Duration::from_secs(10)).await?;
                    client.request(&format!("UPPER from {choice}")).await
                })
                .unwrap()
                .unwrap();
                assert_eq!(reply, format!("FROM {}", choice.name().to_uppercase()));
            })
        });
        if outcome.is_err() {
            failures.push(choice);
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_file(&path);
    assert!(failures.is_empty(), "failed on {failures:?}");
}
