//! Scenarios over a daemon connection (`test+unix://` to a private `libvirtd`, see
//! [`super::daemon`]): libvirt's remote driver registers the RPC socket as an fd handle and
//! its keep-alive timer on our loop, and reports the daemon going away through the close
//! callback.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::Schedule;
use anyloop_libvirt::{
    upstream_stats, vtable_stats, CloseReason, Connection, ConnectionClosed, Error, LifecycleEvent,
};

use super::daemon::Daemon;
use super::scenarios::{
    assert_vtable_settled, close, domain_xml, next_event, wait_until, watch_domain, EVENT_DEADLINE,
};
use super::LoopThread;

/// The window over which an idle loop's iterations are counted.
const QUIET: Duration = Duration::from_millis(500);
/// At most this many loop iterations in [`QUIET`]: a loop that spins on a dead socket (a
/// level-triggered readable or hang-up nobody consumes) makes tens of thousands.
const QUIET_ITERATIONS: u64 = 200;

/// What a close callback saw: the reason and the thread it ran on.
type Closed = (CloseReason, ThreadId);

fn open(daemon: &Daemon) -> Connection {
    Connection::open(&daemon.uri())
        .unwrap_or_else(|err| panic!("open {}: {err}\n{}", daemon.uri(), daemon.log()))
}

/// Registers a (`Send`) close callback that forwards every close to the returned channel.
fn watch_closes(conn: &Connection) -> Receiver<Closed> {
    let (sender, receiver) = mpsc::channel();
    conn.connection_events()
        .expect("the connection's own events")
        .on::<ConnectionClosed>(move |closed| {
            let _ = sender.send((closed.reason, thread::current().id()));
        })
        .expect("register a close callback");
    receiver
}

/// Runs `call` on a helper thread and fails the test if it has not returned within the
/// deadline: a call on a dead connection must fail, not hang.
fn bounded<T: Send + 'static>(what: &str, call: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(call());
    });
    result
        .recv_timeout(EVENT_DEADLINE)
        .unwrap_or_else(|_| panic!("{what} did not return within {EVENT_DEADLINE:?}"))
}

/// The loop iterates a bounded number of times over [`QUIET`]: nothing spins.
fn assert_loop_quiet(loop_thread: &LoopThread, what: &str) {
    let start = loop_thread.lp.stats().iterations;
    thread::sleep(QUIET);
    let iterations = loop_thread.lp.stats().iterations - start;
    assert!(
        iterations < QUIET_ITERATIONS,
        "{what}: the loop iterated {iterations} times in {QUIET:?} (spinning?)"
    );
}

/// Lifecycle events reach a connection that makes no call of its own, so they can only
/// arrive through libvirt's watch of its RPC socket, dispatched on the loop thread; the
/// domain is driven from a worker thread through a second connection, as another client of
/// the daemon would.
pub fn remote_lifecycle_events_arrive_through_the_socket_watch(
    loop_thread: &LoopThread,
    daemon: &mut Daemon,
) {
    let before = vtable_stats();
    let listener = open(daemon);
    let opened = vtable_stats();
    assert_eq!(
        opened.handles,
        before.handles + 1,
        "libvirt watches its RPC socket on our loop: {opened:?}"
    );
    assert!(opened.handles_added > before.handles_added);
    let name = "anyloop-remote-lifecycle";
    let events = watch_domain(&listener, name);
    let handle_calls = vtable_stats().handle_calls;

    let uri = daemon.uri();
    let worker = thread::spawn(move || -> anyloop_libvirt::Result<String> {
        let driver = Connection::open(&uri)?;
        let domain = driver.define_domain(&domain_xml(name))?;
        let uuid = domain.uuid()?;
        domain.start()?;
        domain.suspend()?;
        domain.resume()?;
        domain.destroy()?;
        domain.undefine()?;
        drop(domain);
        driver.close()?;
        Ok(uuid)
    });
    let uuid = worker
        .join()
        .expect("the worker did not panic")
        .unwrap_or_else(|err| panic!("driving the domain: {err}\n{}", daemon.log()));

    let expected = [
        (LifecycleEvent::Defined, 0, "Added"),
        (LifecycleEvent::Started, 0, "Booted"),
        (LifecycleEvent::Suspended, 0, "Paused"),
        (LifecycleEvent::Resumed, 0, "Unpaused"),
        (LifecycleEvent::Stopped, 1, "Destroyed"),
        (LifecycleEvent::Undefined, 0, "Removed"),
    ];
    for (event, detail, detail_name) in expected {
        let (seen, thread) = next_event(&events, &format!("{event} over the daemon"));
        assert_eq!(thread, loop_thread.thread, "{seen} ran off the loop thread");
        assert_eq!((seen.event, seen.detail), (event, detail), "{seen}");
        assert_eq!(seen.event.detail_name(seen.detail), Some(detail_name));
        assert_eq!(
            (seen.name.as_str(), seen.uuid.as_str()),
            (name, uuid.as_str())
        );
    }
    assert!(events.try_recv().is_err(), "no extra events");
    let after = vtable_stats();
    assert!(
        after.handle_calls > handle_calls,
        "the events came through libvirt's socket handle: {after:?}"
    );
    assert!(listener.is_alive().expect("is_alive"));

    close(listener);
    assert_vtable_settled(&before);
    assert_eq!(
        vtable_stats().handles,
        before.handles,
        "the socket watch is gone"
    );
}

/// With keep-alive on (1 s), an idle connection stays open across several keep-alive rounds:
/// libvirt's keep-alive timer fires on our loop and the daemon's answers come back through
/// the socket watch. Turning keep-alive off removes the timer.
pub fn remote_keep_alive_holds_an_idle_connection(loop_thread: &LoopThread, daemon: &mut Daemon) {
    const ROUNDS: u64 = 3;
    let before = vtable_stats();
    let conn = open(daemon);
    let opened = vtable_stats();
    assert_eq!(opened.handles, before.handles + 1, "{opened:?}");
    let closes = watch_closes(&conn);
    conn.set_keep_alive(Duration::from_secs(1), 2)
        .unwrap_or_else(|err| panic!("set_keep_alive: {err}\n{}", daemon.log()));
    let armed = vtable_stats();
    assert_eq!(
        armed.timeouts,
        opened.timeouts + 1,
        "libvirt's keep-alive timer is on our loop: {armed:?}"
    );

    // Idle: nothing but keep-alive traffic, for at least ROUNDS seconds.
    let idle_since = Instant::now();
    wait_until("keep-alive rounds on an idle connection", || {
        vtable_stats().timeout_calls >= armed.timeout_calls + ROUNDS
    });
    assert!(idle_since.elapsed() >= Duration::from_secs(ROUNDS - 1));
    let idle = vtable_stats();
    assert!(
        idle.handle_calls > armed.handle_calls,
        "the daemon's keep-alive answers were read through the socket watch: {idle:?}"
    );
    assert!(
        closes.try_recv().is_err(),
        "closed although the daemon answers"
    );
    assert!(conn.is_alive().expect("is_alive"));
    assert_eq!(
        conn.lookup_domain("test")
            .expect("a call after idling")
            .name()
            .expect("name"),
        "test"
    );
    assert_loop_quiet(loop_thread, "an idle connection with keep-alive");

    conn.set_keep_alive(Duration::ZERO, 0)
        .expect("keep-alive off");
    wait_until("libvirt to remove its keep-alive timer", || {
        vtable_stats().timeouts == opened.timeouts
    });
    close(conn);
    assert_vtable_settled(&before);
}

/// A stopped daemon (SIGSTOP: its socket stays open, it just never answers) is noticed by
/// libvirt's keep-alive timer on our loop: the connection closes with
/// [`CloseReason::KeepAlive`], reported on the loop thread, and libvirt removes its socket
/// watch and timer.
pub fn remote_keep_alive_notices_a_stopped_daemon(loop_thread: &LoopThread, daemon: &mut Daemon) {
    let before = vtable_stats();
    let conn = Arc::new(open(daemon));
    let closes = watch_closes(&conn);
    conn.set_keep_alive(Duration::from_secs(1), 1)
        .expect("keep-alive on");
    assert_eq!(vtable_stats().handles, before.handles + 1);

    daemon.signal(libc::SIGSTOP);
    let (reason, thread) = closes
        .recv_timeout(EVENT_DEADLINE)
        .expect("a close event once keep-alive gave up");
    assert_eq!(reason, CloseReason::KeepAlive);
    assert_eq!(
        thread, loop_thread.thread,
        "the close ran off the loop thread"
    );
    wait_until(
        "libvirt to remove its socket watch and keep-alive timer",
        || {
            let now = vtable_stats();
            now.handles == before.handles && now.timeouts == before.timeouts
        },
    );
    assert_loop_quiet(loop_thread, "after a keep-alive close");
    assert!(!conn.is_alive().expect("is_alive"));
    let probe = Arc::clone(&conn);
    let later = bounded("a call after the keep-alive close", move || {
        probe.lookup_domain("test").map(drop)
    });
    assert!(matches!(later, Err(Error::Libvirt { .. })), "{later:?}");

    daemon.kill();
    let conn = Arc::into_inner(conn).expect("the only reference left");
    let closed = bounded("closing the dead connection", move || conn.close());
    assert!(
        matches!(closed, Ok(0) | Err(Error::Libvirt { .. })),
        "{closed:?}"
    );
    assert!(closes.try_recv().is_err(), "one close event only");
    assert_vtable_settled(&before);
}

/// The daemon killed (SIGKILL) under a connection: the close callback (a thread-bound one,
/// registered on the loop thread) reports [`CloseReason::Eof`] on the loop thread, libvirt
/// removes its socket watch and the loop frees it, nothing spins, later calls fail with typed
/// errors instead of hanging, and closing cleans up. A restarted daemon then serves a fresh
/// connection.
pub fn remote_daemon_killed_then_restarted(loop_thread: &LoopThread, daemon: &mut Daemon) {
    let before = vtable_stats();
    let upstream_before = upstream_stats();
    let conn = Arc::new(open(daemon));
    let opened = vtable_stats();
    assert_eq!(
        opened.handles,
        before.handles + 1,
        "libvirt watches its RPC socket on our loop: {opened:?}"
    );
    // A lifecycle registration too, so that one is dropped on a dead connection as well.
    let lifecycle = watch_domain(&conn, "test");

    // Thread-bound: registered from the loop thread, capturing an `Rc`.
    let (close_sender, closes) = mpsc::channel::<(CloseReason, usize, ThreadId)>();
    let (registered_sender, registered) = mpsc::channel();
    let registry = conn.connection_events().expect("connection events").clone();
    let on_loop = loop_thread
        .lp
        .timer(Schedule::Once(Duration::ZERO), move |_id| {
            let count = Rc::new(Cell::new(0usize));
            let sender = close_sender.clone();
            let outcome = registry
                .on_local::<ConnectionClosed>(move |closed| {
                    count.set(count.get() + 1);
                    let _ = sender.send((closed.reason, count.get(), thread::current().id()));
                })
                .map(drop)
                .map_err(|rejected| rejected.error().to_string());
            let _ = registered_sender.send(outcome);
        })
        .expect("a one-shot timer on the loop");
    registered
        .recv_timeout(EVENT_DEADLINE)
        .expect("the loop ran the registration")
        .expect("a thread-bound close callback registered on the loop thread");
    drop(on_loop);
    assert_eq!(
        upstream_stats().close_registered,
        upstream_before.close_registered + 1
    );

    daemon.kill();
    let (reason, count, thread) = closes
        .recv_timeout(EVENT_DEADLINE)
        .expect("a close event once the daemon died");
    assert_eq!(reason, CloseReason::Eof, "the daemon's socket hung up");
    assert_eq!(count, 1);
    assert_eq!(
        thread, loop_thread.thread,
        "the close ran off the loop thread"
    );
    wait_until(
        "libvirt to remove its socket watch and the loop to free it",
        || {
            let now = vtable_stats();
            now.handles == before.handles
                && now.handle_frees == now.handles_added - now.handles as u64
        },
    );
    let dead = vtable_stats();
    assert_eq!(dead.frees_before_remove, 0, "{dead:?}");
    assert_loop_quiet(loop_thread, "after the daemon died");

    // Later calls fail with libvirt's error, promptly.
    assert!(!conn.is_alive().expect("is_alive"));
    let probe = Arc::clone(&conn);
    let lookup = bounded("a lookup on the dead connection", move || {
        probe.lookup_domain("test").map(drop)
    });
    assert!(
        matches!(
            lookup,
            Err(Error::Libvirt {
                call: "virDomainLookupByName",
                ..
            })
        ),
        "{lookup:?}"
    );
    let probe = Arc::clone(&conn);
    let define = bounded("a define on the dead connection", move || {
        probe
            .define_domain(&domain_xml("anyloop-too-late"))
            .map(drop)
    });
    assert!(matches!(define, Err(Error::Libvirt { .. })), "{define:?}");
    assert!(
        lifecycle.try_recv().is_err(),
        "no lifecycle event from a dead daemon"
    );

    let conn = Arc::into_inner(conn).expect("the only reference left");
    let closed = bounded("closing the dead connection", move || conn.close());
    assert!(
        matches!(closed, Ok(0) | Err(Error::Libvirt { .. })),
        "{closed:?}"
    );
    assert!(closes.try_recv().is_err(), "one close event only");
    assert_vtable_settled(&before);

    // A restarted daemon serves a fresh connection, events included.
    daemon.restart();
    let fresh = open(daemon);
    assert_eq!(vtable_stats().handles, before.handles + 1);
    let events = watch_domain(&fresh, "test");
    let domain = fresh.lookup_domain("test").expect("the test domain again");
    domain.suspend().expect("suspend");
    domain.resume().expect("resume");
    for expected in [LifecycleEvent::Suspended, LifecycleEvent::Resumed] {
        let (seen, thread) = next_event(&events, "an event after the restart");
        assert_eq!(seen.event, expected, "{seen}");
        assert_eq!(thread, loop_thread.thread);
    }
    drop(domain);
    close(fresh);
    assert_vtable_settled(&before);
}
