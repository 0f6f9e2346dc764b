//! The source is an ordinary GLib source: priority, plain `g_main_context_iteration`,
//! `glib::MainLoop`, nested main loops.

mod util;

use anyloop::Runner;
use anyloop::Schedule;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyloop_glib::GlibLoop;
use glib::{ControlFlow, MainContext, Priority};
use util::{iterate_until, Pair, TIMEOUT};

type Log = Arc<Mutex<Vec<&'static str>>>;

fn push(log: &Log, what: &'static str) {
    log.lock().unwrap().push(what);
}

fn take(log: &Log) -> Vec<&'static str> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// GLib dispatches only the most urgent ready sources of an iteration: the loop's priority
/// decides whether anyloop callbacks or another ready source run first.
#[test]
fn priority_orders_anyloop_among_other_sources() {
    let context = MainContext::new();
    let lp = GlibLoop::with_priority(&context, Priority::HIGH).expect("loop");
    assert_eq!(lp.priority(), Priority::HIGH);
    let log: Log = Arc::default();
    let l = log.clone();
    let _timer = lp
        .handle()
        .timer(Schedule::EVERY_ITERATION, move |_| push(&l, "anyloop"))
        .expect("timer");
    let l = log.clone();
    let idle = glib::idle_source_new(None, Priority::DEFAULT, move || {
        push(&l, "glib");
        ControlFlow::Continue
    });
    idle.attach(Some(&context));

    context.iteration(false);
    assert_eq!(
        take(&log),
        ["anyloop"],
        "HIGH beats DEFAULT: only anyloop runs"
    );

    lp.set_priority(Priority::LOW);
    assert_eq!(lp.priority(), Priority::LOW);
    context.iteration(false);
    assert_eq!(
        take(&log),
        ["glib"],
        "DEFAULT beats LOW: only the idle runs"
    );

    lp.set_priority(Priority::DEFAULT);
    context.iteration(false);
    let mut both = take(&log);
    both.sort_unstable();
    assert_eq!(both, ["anyloop", "glib"], "same priority: both run");
    idle.destroy();
}

/// Nothing but GLib's own `iteration` and `MainLoop` drive the loop: an fd watch fires and
/// an anyloop callback can quit a `glib::MainLoop`.
#[test]
fn plain_iteration_and_main_loop_drive_callbacks() {
    let context = MainContext::new();
    let lp = GlibLoop::new(&context).expect("loop");
    let pair = Pair::new();
    let rx = pair.rx.try_clone().expect("dup");
    let got = Arc::new(Mutex::new(0usize));
    let g = got.clone();
    let main_loop = glib::MainLoop::new(Some(&context), false);
    let ml = main_loop.clone();
    let _watch = lp
        .handle()
        .watch(
            std::os::fd::AsRawFd::as_raw_fd(&pair.rx),
            anyloop::IoEvents::READABLE,
            move |_, _, _| {
                while util::read_one(&rx) {
                    *g.lock().unwrap() += 1;
                }
                ml.quit();
            },
        )
        .expect("watch");
    pair.send(3);
    assert!(iterate_until(&context, || *got.lock().unwrap() == 3));
    pair.send(2);
    context
        .with_thread_default(|| main_loop.run())
        .expect("own the context");
    assert_eq!(
        *got.lock().unwrap(),
        5,
        "the watch quit the MainLoop after reading"
    );
}

/// An anyloop callback that runs a nested main loop: other GLib sources run inside it,
/// anyloop callbacks are not re-entered (GLib blocks a source while it dispatches), and
/// everything resumes afterwards.
#[test]
fn nested_main_loop_inside_a_callback() {
    let context = MainContext::new();
    let lp = GlibLoop::new(&context).expect("loop");
    let log: Log = Arc::default();

    // A 0 ms timer that would fire on every iteration if it could be re-entered.
    let l = log.clone();
    let _ticker = lp
        .handle()
        .timer(Schedule::Every(Duration::from_millis(1)), move |_| {
            push(&l, "tick")
        })
        .expect("ticker");

    // A watch whose fd becomes readable while the nested loop runs: the epoll fd GLib polls
    // is then readable (level-triggered) all through the nested loop.
    let pair = Pair::new();
    let (l, rx) = (log.clone(), pair.rx.try_clone().expect("dup"));
    let _watch = lp
        .handle()
        .watch(
            std::os::fd::AsRawFd::as_raw_fd(&pair.rx),
            anyloop::IoEvents::READABLE,
            move |_, _, _| {
                while util::read_one(&rx) {}
                push(&l, "readable");
            },
        )
        .expect("watch");
    let tx = pair.tx.try_clone().expect("dup");

    let (l, ctx) = (log.clone(), context.clone());
    let handle = lp.handle();
    let _nester = lp
        .handle()
        .timer(Schedule::EVERY_ITERATION, move |id| {
            handle
                .update_timer(id, Schedule::Disabled)
                .expect("one-shot");
            push(&l, "nest-begin");
            std::io::Write::write_all(&mut &tx, b"x").expect("write");
            let nested = glib::MainLoop::new(Some(&ctx), false);
            let (n, l2) = (nested.clone(), l.clone());
            let mut rounds = 0;
            let source = glib::timeout_source_new(
                Duration::from_millis(2),
                None,
                Priority::DEFAULT,
                move || {
                    push(&l2, "glib-inside");
                    rounds += 1;
                    if rounds == 25 {
                        n.quit();
                        ControlFlow::Break
                    } else {
                        ControlFlow::Continue
                    }
                },
            );
            source.attach(Some(&ctx));
            let (cpu0, wall0) = (util::thread_cpu_time(), std::time::Instant::now());
            nested.run();
            let (cpu, wall) = (util::thread_cpu_time() - cpu0, wall0.elapsed());
            // The watched fd is readable all along; a nested loop polling our epoll fd
            // would spin: its thread would burn about all of the wall time.
            assert!(
                cpu < wall / 2 + Duration::from_millis(5),
                "the nested loop spins: {cpu:?} CPU in {wall:?}"
            );
            push(&l, "nest-end");
        })
        .expect("nester");

    assert!(iterate_until(&context, || log
        .lock()
        .unwrap()
        .contains(&"nest-end")));
    let seen = take(&log);
    let begin = seen.iter().position(|w| *w == "nest-begin").unwrap();
    let end = seen.iter().position(|w| *w == "nest-end").unwrap();
    assert_eq!(
        seen[begin + 1..end],
        ["glib-inside"; 25],
        "inside the nested loop only the other GLib source runs: {seen:?}"
    );
    // Afterwards anyloop callbacks run again.
    assert!(iterate_until(&context, || log
        .lock()
        .unwrap()
        .contains(&"tick")));
}

/// `GlibLoop::iterate` honours its bound and reports the callbacks it ran.
#[test]
fn iterate_bounds_and_counts() {
    let context = MainContext::new();
    let mut lp = GlibLoop::new(&context).expect("loop");
    let start = std::time::Instant::now();
    assert_eq!(
        lp.run_once(Some(Duration::from_millis(30)))
            .expect("iterate"),
        0
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(30),
        "returned early: {waited:?}"
    );
    assert!(waited < TIMEOUT);
    let _t = lp
        .handle()
        .timer(Schedule::Every(Duration::from_millis(5)), |_| {})
        .expect("timer");
    assert_eq!(lp.run_once(None).expect("iterate"), 1);
    assert_eq!(lp.run_once(Some(Duration::ZERO)).expect("iterate"), 0);
}
