//! `cstyle`: a library written the way C libraries are (its state is not `Send`; it asks its
//! host to watch fds and arm one timeout through callbacks, like libcurl's multi-socket API)
//! running on the anyloop loop chosen with `--loop`.
//!
//! ```text
//! cargo run -p anyloop-examples --bin cstyle                               # the built-in loop
//! cargo run -p anyloop-examples --bin cstyle -- --loop glib --transfers 8 --pings 100
//! cargo run -p anyloop-examples --bin cstyle -- --loop calloop --stall     # a peer goes quiet
//! ```
//!
//! Each transfer plays ping-pong with a peer over a socket pair: the library
//! ([`anyloop_examples::cstyle::Multi`]) writes `ping N`, waits for `pong N`, and so on; the
//! peers are plain threads. The library is bound to the loop by
//! [`anyloop_examples::cstyle::LoopBinding`], with thread-bound watches and a one-shot timer,
//! and its results come back through a callback that fills an `Rc<RefCell<..>>`: no `Send`
//! anywhere on the library's side, no `unsafe`. With `--stall`, the last peer stops answering
//! halfway and its transfer fails when the reply timeout passes.
//!
//! One line per finished transfer on stdout, a summary on stderr. Exits 0 when every
//! transfer ended as expected (all answered; with `--stall`, the last one timed out).

use std::cell::RefCell;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop::{Runner, Stopped};
use anyloop_backends::LoopChoice;
use anyloop_examples::cstyle::{answer_pings, Done, LoopBinding, Multi, Outcome};
use clap::Parser;

/// Run a C-style ping-pong library, bound to anyloop with thread-bound callbacks, on the loop
/// of your choice.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The loop that runs the library: `select`, `select-mio`, `select-poll`, `glib` (in
    /// builds with the `glib` feature), `calloop`, `tokio` or `tokio-multi`.
    #[arg(
        long = "loop",
        default_value_t = LoopChoice::Select,
        value_name = "LOOP",
        value_parser = anyloop_examples::cli::loop_choice()
    )]
    event_loop: LoopChoice,
    /// Transfers run at once, each over its own socket pair.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    transfers: u32,
    /// Pings per transfer.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pings: u32,
    /// Milliseconds a peer has to answer each ping.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    reply_timeout: u64,
    /// The last peer stops answering halfway: its transfer times out.
    #[arg(long)]
    stall: bool,
}

/// A hang guard: far longer than any run needs.
const LIMIT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("cstyle: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    // Made on this thread, which runs it: the loop thread, where the binding must be made.
    let mut lp = args.event_loop.create()?;
    let multi = Multi::new();
    let finished: Rc<RefCell<Vec<Done>>> = Rc::default();
    {
        let finished = Rc::clone(&finished);
        multi.set_done_function(move |done| {
            println!("{}", describe(&done));
            finished.borrow_mut().push(done);
        });
    }
    let binding = LoopBinding::new(&lp.handle(), &multi)?;

    let reply_timeout = Duration::from_millis(args.reply_timeout);
    let mut peers = Vec::new();
    for n in 1..=args.transfers {
        let (ours, theirs) = UnixStream::pair()?;
        let limit = (args.stall && n == args.transfers).then_some(args.pings / 2);
        peers.push(thread::spawn(move || answer_pings(theirs, limit)));
        multi.add(ours, args.pings, reply_timeout)?;
    }
    eprintln!(
        "cstyle: {} transfers of {} pings on the {} loop; {} sockets watched",
        args.transfers,
        args.pings,
        args.event_loop,
        binding.watches()
    );

    let started = Instant::now();
    let all = usize::try_from(args.transfers)?;
    let stopped = lp.run_until(Some(started + LIMIT), &mut || {
        finished.borrow().len() == all
    })?;
    let took = started.elapsed();
    for peer in peers {
        // Each peer ends when the library closed its socket.
        peer.join().map_err(|_| "a peer thread panicked")??;
    }

    // The binding's timer and the library's last handles are freed by the loop, here.
    drop(binding);
    drop(multi);
    lp.run_once(Some(Duration::ZERO))?;
    let stats = lp.stats();

    let finished = finished.borrow();
    let answered = finished.iter().filter(|d| d.outcome.is_success()).count();
    let timed_out = finished
        .iter()
        .filter(|d| matches!(d.outcome, Outcome::TimedOut { .. }))
        .count();
    eprintln!(
        "cstyle: {answered} answered, {timed_out} timed out in {took:.1?}; the loop iterated \
         {} times and holds {} watches, {} timers, {} pending frees",
        stats.iterations, stats.watches, stats.timers, stats.pending_frees
    );
    let expected_timeouts = usize::from(args.stall);
    Ok(stopped == Stopped::Done
        && timed_out == expected_timeouts
        && answered == all - expected_timeouts
        && stats.watches + stats.timers == 0)
}

fn describe(done: &Done) -> String {
    match &done.outcome {
        Outcome::Answered => format!("{}: {} pings answered", done.transfer, done.answered),
        Outcome::TimedOut { ping } => format!(
            "{}: no answer to ping {ping} in time ({} answered)",
            done.transfer, done.answered
        ),
        other => format!(
            "{}: failed after {} answers: {other:?}",
            done.transfer, done.answered
        ),
    }
}
