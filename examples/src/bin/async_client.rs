//! `async_client`: the `linechat` `async fn` library ([`anyloop_examples::linechat`]) on the
//! loop chosen with `--loop`.
//!
//! ```text
//! cargo run -p anyloop-examples --bin async_client -- --demo                 # the built-in loop
//! cargo run -p anyloop-examples --bin async_client -- --demo --loop tokio
//! cargo run -p anyloop-examples --bin async_client -- --serve /tmp/chat.sock --loop glib &
//! cargo run -p anyloop-examples --bin async_client -- --connect /tmp/chat.sock --loop calloop PING "UPPER hi"
//! ```
//!
//! `--demo` runs a server and a client as two tasks of one loop, over a socket in the temporary
//! directory: a few requests, one whose reply comes after the client's time limit (the client
//! gives up, closes and reconnects), and `BYE`. `--serve PATH` only serves (for `--serve-for`
//! seconds, or until killed); `--connect PATH REQUEST...` sends the requests to a server and
//! prints the replies.
//!
//! Each request is printed as `> REQUEST`, each reply as `< REPLY (N ms)`, each failure as
//! `! ERROR`. Exits 0 when everything went as expected (for `--demo`: the slow request timed
//! out and everything else was answered), 1 otherwise, 2 for a bad option.

use std::cell::Cell;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyloop::{Loop, Runner};
use anyloop_async::{block_on, spawn_local};
use anyloop_backends::LoopChoice;
use anyloop_examples::linechat::{serve, Client, ClientError};
use clap::Parser;

/// Run the `linechat` async client (and its server) on the loop of your choice.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The loop: `select`, `select-mio`, `select-poll`, `glib` (in builds with the `glib`
    /// feature), `calloop`, `tokio` or `tokio-multi`.
    #[arg(
        long = "loop",
        default_value_t = LoopChoice::Select,
        value_name = "LOOP",
        value_parser = anyloop_examples::cli::loop_choice()
    )]
    event_loop: LoopChoice,
    /// Milliseconds a request may take.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    timeout: u64,
    /// Run a server and a client on one loop through a scripted session.
    #[arg(long, conflicts_with_all = ["serve", "connect"])]
    demo: bool,
    /// Serve at this socket path.
    #[arg(long, value_name = "PATH", conflicts_with = "connect")]
    serve: Option<PathBuf>,
    /// With `--serve`: stop after this many seconds (default: run until killed).
    #[arg(long, value_name = "SECS", requires = "serve")]
    serve_for: Option<u64>,
    /// Connect to the server at this socket path and send REQUESTs.
    #[arg(long, value_name = "PATH", requires = "requests")]
    connect: Option<PathBuf>,
    /// The requests `--connect` sends, one line each.
    #[arg(value_name = "REQUEST")]
    requests: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.demo && args.serve.is_none() && args.connect.is_none() {
        eprintln!(
            "async_client: give --demo, --serve PATH or --connect PATH REQUEST... (see --help)"
        );
        return ExitCode::from(2);
    }
    let mut runner = match args.event_loop.create() {
        Ok(runner) => runner,
        Err(err) => {
            eprintln!("async_client: {err}");
            return ExitCode::FAILURE;
        }
    };
    let lp = runner.handle();
    let limit = Duration::from_millis(args.timeout);
    eprintln!("async_client: on the {} loop", args.event_loop);
    let outcome = if let Some(path) = &args.serve {
        run_server(
            &mut *runner,
            &lp,
            path,
            args.serve_for.map(Duration::from_secs),
        )
    } else if let Some(path) = &args.connect {
        block_on(&mut *runner, send_all(&lp, path, limit, &args.requests))
            .map_err(|err| err.to_string())
            .and_then(|ok| {
                ok.then_some(())
                    .ok_or_else(|| "a request failed".to_owned())
            })
    } else {
        demo(&mut *runner, &lp, limit)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("async_client: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `requests` in order, printing each exchange; true when all were answered.
async fn send_all(lp: &Loop, path: &Path, limit: Duration, requests: &[String]) -> bool {
    let mut client = match Client::connect(lp, path, limit).await {
        Ok(client) => client,
        Err(err) => {
            println!("! {err}");
            return false;
        }
    };
    let mut all = true;
    for request in requests {
        all &= exchange(&mut client, request).await.is_ok();
    }
    all
}

/// One request: prints it, and its reply or its failure.
async fn exchange(client: &mut Client, request: &str) -> Result<String, ClientError> {
    println!("> {request}");
    let started = Instant::now();
    let outcome = client.request(request).await;
    match &outcome {
        Ok(reply) => println!(
            "< {reply} ({:.1} ms)",
            started.elapsed().as_secs_f64() * 1e3
        ),
        Err(err) => println!("! {err}"),
    }
    outcome
}

fn run_server(
    runner: &mut dyn Runner,
    lp: &Loop,
    path: &Path,
    serve_for: Option<Duration>,
) -> Result<(), String> {
    let listener = UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let served = Rc::new(Cell::new(0));
    let server = serve(lp.clone(), listener, Rc::clone(&served));
    let outcome = block_on(runner, async {
        match serve_for {
            Some(limit) => match anyloop_async::timeout(lp, limit, server).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Ok(()), // the time is up
            },
            None => server.await.map_err(|e| e.to_string()),
        }
    });
    let _ = std::fs::remove_file(path);
    eprintln!("async_client: served {} requests", served.get());
    outcome.map_err(|e| e.to_string())?
}

fn demo(runner: &mut dyn Runner, lp: &Loop, limit: Duration) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("anyloop-linechat-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let served = Rc::new(Cell::new(0));
    // The server is a task of the same loop; dropping its handle at the end cancels it and
    // every connection it runs.
    let server = spawn_local(lp, serve(lp.clone(), listener, Rc::clone(&served)))
        .map_err(|e| e.to_string())?;
    let slow = format!("WAIT {} too late", limit.as_millis() * 3);
    let script = async {
        let mut client = Client::connect(lp, &path, limit).await?;
        let mut answered = 0;
        for request in [
            "PING",
            "ECHO hello, loop",
            "UPPER any loop will do",
            "WAIT 20 on time",
        ] {
            exchange(&mut client, request).await?;
            answered += 1;
        }
        // Too slow: the client gives up at its limit and closes the connection.
        let timed_out = matches!(
            exchange(&mut client, &slow).await,
            Err(ClientError::TimedOut { .. })
        );
        if !client.is_open() {
            println!("  (reconnecting)");
            client = Client::connect(lp, &path, limit).await?;
        }
        exchange(&mut client, "BYE").await?;
        answered += 1;
        // The server closed after BYE: the next request says so.
        let closed = matches!(client.request("PING").await, Err(ClientError::Closed));
        Ok::<_, ClientError>((answered, timed_out, closed))
    };
    let result = block_on(runner, script).map_err(|e| e.to_string())?;
    drop(server);
    let _ = std::fs::remove_file(&path);
    let (answered, timed_out, closed) = result.map_err(|e| e.to_string())?;
    eprintln!(
        "async_client: {answered} replies, slow request timed out: {timed_out}, closed after BYE: {closed}, server answered {}",
        served.get()
    );
    if answered == 5 && timed_out && closed {
        Ok(())
    } else {
        Err("the demo did not go as expected".into())
    }
}
