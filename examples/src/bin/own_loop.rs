//! `own_loop`: an application with a `poll(2)` loop of its own ([`AppLoop`]: its own fd, its
//! own timer) hosts anyloop through the adapter of `examples/src/own_loop/adapter.rs`, and
//! runs two anyloop libraries on it, unchanged: an `async fn` task of `linechat` (a server and
//! a client over a Unix socket) and the `supervisor` (a child process, its output lines and
//! its exit).
//!
//! ```text
//! cargo run -p anyloop-examples --bin own_loop
//! ```
//!
//! Prints the application's own events (`app:`) and the libraries' (`chat:`, `child:`) as they
//! interleave on the one loop, then a summary. Exits 0 when both libraries finished and the
//! application's own fd and timer kept working beside them, 1 otherwise.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyloop::{Loop, Runner, Stopped};
use anyloop_async::spawn_local;
use anyloop_examples::linechat::{serve, Client};
use anyloop_examples::own_loop::{adapter::Hosted, AppLoop};
use anyloop_examples::supervisor::{LogLine, SpawnOptions, SubprocessQuit, Supervisor};
use rustix::event::PollFlags;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("own_loop: something did not finish");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("own_loop: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What can go wrong setting the demo up.
type Failure = Box<dyn std::error::Error>;

fn run() -> Result<bool, Failure> {
    let app = AppLoop::new();

    // The application's own timer and fd: a heartbeat, and lines another thread writes.
    let beats = Rc::new(Cell::new(0u32));
    let count = beats.clone();
    app.add_timer(
        Duration::ZERO,
        Some(Duration::from_millis(40)),
        move |_, ()| {
            count.set(count.get() + 1);
            println!("app: heartbeat {}", count.get());
        },
    );
    let (reader, mut writer) = std::io::pipe()?;
    let reader = Rc::new(reader);
    let lines = Rc::new(Cell::new(0u32));
    let key = Rc::new(Cell::new(usize::MAX));
    let (seen, file, own_key) = (lines.clone(), reader.clone(), key.clone());
    key.set(app.add_fd(reader, PollFlags::IN, move |app, _| {
        let mut line = String::new();
        // One line per write from the thread below (a pipe write of this size is atomic,
        // and the reader buffers nothing across calls: it reads up to the newline).
        match BufReader::with_capacity(1, &*file).read_line(&mut line) {
            Ok(0) | Err(_) => app.remove_fd(own_key.get()), // the writer is gone
            Ok(_) => {
                seen.set(seen.get() + 1);
                println!("app: read {:?}", line.trim_end());
            }
        }
    }));
    let helper = std::thread::spawn(move || {
        for n in 1..=3 {
            std::thread::sleep(Duration::from_millis(30));
            let _ = writeln!(writer, "line {n} from another thread");
        }
    });

    // anyloop, hosted: libraries find it with `Loop::current()`, as on any backend.
    let mut hosted = Hosted::new(&app)?;
    let _bound = hosted.make_current()?;
    let lp = Loop::current()?;

    let (_supervisor, child_done) = supervise(&lp)?;
    let (chat_done, _server, socket) = chat(&lp)?;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    let stopped = hosted.run_until(Some(deadline), &mut || child_done.get() && chat_done.get())?;
    let _ = helper.join();
    // The thread's last lines may still be in the pipe: one more turn of the app's loop.
    app.iterate(Some(Duration::from_millis(50)));
    let _ = std::fs::remove_file(&socket);
    println!(
        "done in {:.0} ms: {} heartbeats and {} lines of the application's own, both libraries finished: {}",
        started.elapsed().as_secs_f64() * 1e3,
        beats.get(),
        lines.get(),
        stopped == Stopped::Done,
    );
    Ok(stopped == Stopped::Done && beats.get() > 0 && lines.get() == 3)
}

/// The supervisor library runs a child; the flag is set once it quit.
fn supervise(lp: &Loop) -> Result<(Supervisor, Rc<Cell<bool>>), Failure> {
    let supervisor = Supervisor::new(lp)?;
    let events = supervisor.events();
    events.on::<LogLine>(|line| {
        println!("child: {}", String::from_utf8_lossy(&line.bytes));
    })?;
    let done = Rc::new(Cell::new(false));
    let flag = done.clone();
    events.on_local::<SubprocessQuit>(move |quit| {
        println!("child: {}", quit.reason);
        flag.set(true);
    })?;
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "for i in 1 2 3; do echo step $i of 3; sleep 0.05; done",
    ]);
    supervisor.spawn(command, &SpawnOptions::default())?;
    Ok((supervisor, done))
}

/// A linechat server and client, as `async fn` tasks of the loop; true once the client is
/// done.
type Chat = (
    Rc<Cell<bool>>,
    anyloop_async::JoinHandle<std::io::Result<()>>,
    std::path::PathBuf,
);

fn chat(lp: &Loop) -> Result<Chat, Failure> {
    let socket = std::env::temp_dir().join(format!("anyloop-own-loop-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    let server = spawn_local(lp, serve(lp.clone(), listener, Rc::default()))?;
    let done = Rc::new(Cell::new(false));
    let (flag, path, lp2) = (done.clone(), socket.clone(), lp.clone());
    let client = spawn_local(lp, async move {
        let limit = Duration::from_secs(5);
        match Client::connect(&lp2, &path, limit).await {
            Ok(mut client) => {
                for request in ["PING", "UPPER any loop will do", "WAIT 60 on time"] {
                    match client.request(request).await {
                        Ok(reply) => println!("chat: {request} -> {reply}"),
                        Err(err) => println!("chat: {request} failed: {err}"),
                    }
                }
            }
            Err(err) => println!("chat: cannot connect: {err}"),
        }
        flag.set(true);
    })?;
    client.detach();
    Ok((done, server, socket))
}
