//! The scenarios, each a plain function of the process's loop thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{CallbackId, Runner};
use anyloop_libvirt::{
    upstream_stats, vtable_stats, Connection, ConnectionClosed, Domain, DomainLifecycle, Error,
    LifecycleEvent, UpstreamStats, VtableStats,
};

use super::LoopThread;

/// libvirt's built-in test driver: no daemon, state shared by the process's connections.
const URI: &str = "test:///default";
/// How long one expected event may take; generous for valgrind and loaded machines.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(20);

pub fn domain_xml(name: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    )
}

/// What a lifecycle callback saw: the event and the thread it ran on.
pub type Seen = (DomainLifecycle, ThreadId);

/// Registers a callback that forwards every event of domain `name` to the returned channel.
pub fn watch_domain(conn: &Connection, name: &str) -> Receiver<Seen> {
    let (sender, receiver) = mpsc::channel();
    let name = name.to_owned();
    conn.domain_events()
        .expect("the connection's event registry")
        .listen::<DomainLifecycle>()
        .filter(move |event| event.name == name)
        .call(move |event| {
            // The receiver may be gone when a scenario finished early: nothing to do then.
            let _ = sender.send((event.clone(), thread::current().id()));
        })
        .expect("register a lifecycle callback");
    receiver
}

/// The next event, or a test failure naming what was awaited.
pub fn next_event(events: &Receiver<Seen>, what: &str) -> Seen {
    events.recv_timeout(EVENT_DEADLINE).unwrap_or_else(|err| {
        panic!("no lifecycle event ({what}) within {EVENT_DEADLINE:?}: {err}")
    })
}

/// Polls `condition` until it holds or the deadline passes; the loop thread does the work.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENT_DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Defines and starts a fresh domain; the caller destroys and undefines it.
fn running_domain(conn: &Connection, name: &str) -> Domain {
    let domain = conn.define_domain(&domain_xml(name)).expect("define");
    domain.start().expect("start");
    domain
}

fn remove_domain(domain: &Domain) {
    domain.destroy().expect("destroy");
    domain.undefine().expect("undefine");
}

/// Closes `conn`; leaks show in `assert_vtable_settled`, which every scenario ends with.
///
/// `close` returns the references left on the connection: 0, or 1 when libvirt was still
/// dispatching an event on the loop thread as the callback was deregistered. libvirt then
/// defers dropping the callback (its free callback and its reference on the connection) to
/// the end of that dispatch, which `assert_vtable_settled` waits for.
pub fn close(conn: Connection) {
    let remaining = conn.close().expect("close");
    assert!(
        remaining <= 1,
        "{remaining} references left on the connection"
    );
}

/// Drop counter for a callback's captured state: proves libvirt ran our free callback.
struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Every registration libvirt made through the vtable has been removed and freed exactly
/// once, with its `ff`, every lifecycle registration was deregistered and freed once, every
/// close callback's state was released, and nothing crossed the FFI boundary as a panic.
pub fn assert_vtable_settled(before: &VtableStats) {
    wait_until(
        "libvirt to free every lifecycle and close registration",
        || {
            let UpstreamStats {
                registered,
                deregistered,
                freed,
                close_registered,
                close_released,
            } = upstream_stats();
            registered == deregistered
                && deregistered == freed
                && close_registered == close_released
        },
    );
    wait_until(
        "libvirt to remove its registrations and the loop to free them",
        || {
            let now = vtable_stats();
            now.handles == before.handles
                && now.timeouts == before.timeouts
                && now.handle_frees == now.handles_added - now.handles as u64
                && now.timeout_frees == now.timeouts_added - now.timeouts as u64
        },
    );
    let now = vtable_stats();
    assert_eq!(now.pending_frees(), 0, "{now:?}");
    assert_eq!(now.ff_calls, now.ff_owed, "every ff exactly once: {now:?}");
    assert_eq!(now.frees_before_remove, 0, "{now:?}");
    assert_eq!(now.panics, 0, "{now:?}");
}

pub fn lifecycle_events_arrive_on_the_loop_thread(loop_thread: &LoopThread) {
    let before = vtable_stats();
    let conn = Connection::open(URI).expect("open");
    let name = "anyloop-lifecycle";
    let events = watch_domain(&conn, name);

    let domain = conn.define_domain(&domain_xml(name)).expect("define");
    let uuid = domain.uuid().expect("uuid");
    domain.start().expect("start");
    domain.suspend().expect("suspend");
    domain.resume().expect("resume");
    domain.destroy().expect("destroy");
    domain.undefine().expect("undefine");

    let expected = [
        (LifecycleEvent::Defined, 0, "Added"),
        (LifecycleEvent::Started, 0, "Booted"),
        (LifecycleEvent::Suspended, 0, "Paused"),
        (LifecycleEvent::Resumed, 0, "Unpaused"),
        (LifecycleEvent::Stopped, 1, "Destroyed"),
        (LifecycleEvent::Undefined, 0, "Removed"),
    ];
    for (event, detail, detail_name) in expected {
        let (seen, thread) = next_event(&events, &format!("{event}"));
        assert_eq!(thread, loop_thread.thread, "{seen} ran off the loop thread");
        assert_eq!((seen.event, seen.detail), (event, detail), "{seen}");
        assert_eq!(seen.event.detail_name(seen.detail), Some(detail_name));
        assert_eq!(seen.name, name);
        assert_eq!(seen.uuid, uuid);
    }
    assert!(events.try_recv().is_err(), "no extra events");

    drop(domain);
    close(conn);
    assert_vtable_settled(&before);
}

pub fn burst_of_1000_suspend_resume_pairs_arrives_in_order(_loop_thread: &LoopThread) {
    const PAIRS: usize = 1000;
    let before = vtable_stats();
    let conn = Connection::open(URI).expect("open");
    let name = "anyloop-burst";
    let domain = running_domain(&conn, name);
    let events = watch_domain(&conn, name);

    for _ in 0..PAIRS {
        domain.suspend().expect("suspend");
        domain.resume().expect("resume");
    }
    for pair in 0..PAIRS {
        for expected in [LifecycleEvent::Suspended, LifecycleEvent::Resumed] {
            let (seen, _) = next_event(&events, &format!("pair {pair}: {expected}"));
            assert_eq!(seen.event, expected, "pair {pair} out of order: {seen}");
        }
    }
    remove_domain(&domain);
    for expected in [LifecycleEvent::Stopped, LifecycleEvent::Undefined] {
        assert_eq!(next_event(&events, "teardown").0.event, expected);
    }
    assert!(events.try_recv().is_err(), "no extra events");

    drop(domain);
    close(conn);
    assert_vtable_settled(&before);
}

pub fn callback_deregisters_itself(loop_thread: &LoopThread) {
    let before = vtable_stats();
    let upstream_before = upstream_stats();
    let conn = Connection::open(URI).expect("open");
    let name = "anyloop-self-deregister";
    let domain = running_domain(&conn, name);
    let events = conn.domain_events().expect("registry");

    let calls = Arc::new(AtomicUsize::new(0));
    let frees = Arc::new(AtomicUsize::new(0));
    let own_id: Arc<OnceLock<CallbackId>> = Arc::new(OnceLock::new());
    let (outcome_sender, outcomes) = mpsc::channel();
    let (counted, owned, id_cell, weak) = (
        Arc::clone(&calls),
        CountDrop(Arc::clone(&frees)),
        Arc::clone(&own_id),
        events.downgrade(),
    );
    let id = events
        .listen::<DomainLifecycle>()
        .filter(move |event| event.name == name)
        .call(move |_event| {
            let _owned = &owned;
            counted.fetch_add(1, Ordering::SeqCst);
            // The only callback: deregistering it also deregisters libvirt's callback, from
            // the loop thread.
            let outcome = match (weak.upgrade(), id_cell.get()) {
                (Some(events), Some(id)) => events.deregister(*id).map_err(|err| err.to_string()),
                _ => Err("registry or id missing".to_owned()),
            };
            let _ = outcome_sender.send((outcome, thread::current().id()));
        })
        .expect("register");
    own_id.set(id).expect("set once");
    assert_eq!(upstream_stats().registered, upstream_before.registered + 1);

    domain.suspend().expect("suspend");
    domain.resume().expect("resume");
    let (outcome, thread) = outcomes
        .recv_timeout(EVENT_DEADLINE)
        .expect("the callback ran");
    assert_eq!(outcome, Ok(0), "deregistered itself, no callback left");
    assert_eq!(thread, loop_thread.thread);
    wait_until("the deregistered callback to be freed", || {
        frees.load(Ordering::SeqCst) == 1
    });
    wait_until("libvirt's callback to be deregistered and freed", || {
        upstream_stats().freed == upstream_before.freed + 1
    });
    // The resume event was not delivered to it: libvirt was unsubscribed, and a later
    // callback sees the next events only.
    let later = watch_domain(&conn, name);
    domain.suspend().expect("suspend again");
    assert_eq!(
        next_event(&later, "suspend again").0.event,
        LifecycleEvent::Suspended
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no delivery after deregistering"
    );
    assert!(matches!(
        events.deregister(id),
        Err(anyloop::Error::NotFound { .. })
    ));

    domain.resume().expect("resume again");
    remove_domain(&domain);
    drop(domain);
    close(conn);
    assert_eq!(frees.load(Ordering::SeqCst), 1, "freed exactly once");
    assert_vtable_settled(&before);
}

pub fn closing_the_connection_frees_everything_once(_loop_thread: &LoopThread) {
    const CALLBACKS: usize = 3;
    let before = vtable_stats();
    let conn = Connection::open(URI).expect("open");
    let name = "anyloop-close";
    let frees = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicUsize::new(0));
    let upstream_before = upstream_stats();
    for _ in 0..CALLBACKS {
        let owned = CountDrop(Arc::clone(&frees));
        let delivered = Arc::clone(&delivered);
        conn.domain_events()
            .expect("registry")
            .on::<DomainLifecycle>(move |event| {
                let _owned = &owned;
                if event.name == name {
                    delivered.fetch_add(1, Ordering::SeqCst);
                }
            })
            .expect("register");
    }
    assert_eq!(
        upstream_stats().registered,
        upstream_before.registered + 1,
        "one libvirt callback per connection, however many Rust callbacks"
    );
    let during = vtable_stats();
    assert!(
        during.timeouts > before.timeouts,
        "libvirt's event queue keeps a timeout on our loop: {during:?}"
    );

    let domain = conn.define_domain(&domain_xml(name)).expect("define");
    domain.undefine().expect("undefine");
    wait_until("both events to reach every callback", || {
        delivered.load(Ordering::SeqCst) == 2 * CALLBACKS
    });
    assert_eq!(
        frees.load(Ordering::SeqCst),
        0,
        "nothing freed while registered"
    );

    // An application may keep a clone of the registry past the connection.
    let kept = conn.domain_events().expect("registry").clone();
    drop(domain);
    close(conn);
    let late = kept.on::<DomainLifecycle>(|_event| {});
    assert!(
        matches!(
            late.map_err(anyloop::Error::from),
            Err(anyloop::Error::Closed)
        ),
        "a closed connection's registry takes no callbacks"
    );
    drop(kept);
    wait_until("every callback to be freed", || {
        frees.load(Ordering::SeqCst) >= CALLBACKS
    });
    assert_vtable_settled(&before);
    assert_eq!(
        frees.load(Ordering::SeqCst),
        CALLBACKS,
        "each freed exactly once"
    );
}

pub fn several_connections_and_callbacks(loop_thread: &LoopThread) {
    let before = vtable_stats();
    let first = Connection::open(URI).expect("open first");
    let second = Connection::open(URI).expect("open second");
    let name = "anyloop-two-connections";
    let on_first = watch_domain(&first, name);
    let on_second = watch_domain(&second, name);

    // An operation through one connection is seen through both (same driver state).
    let domain = first.define_domain(&domain_xml(name)).expect("define");
    let looked_up = second.lookup_domain(name).expect("lookup by name");
    assert_eq!(looked_up.name().expect("name"), name);
    looked_up.undefine().expect("undefine");
    for events in [&on_first, &on_second] {
        for expected in [LifecycleEvent::Defined, LifecycleEvent::Undefined] {
            let (seen, thread) = next_event(events, "two connections");
            assert_eq!(seen.event, expected);
            assert_eq!(thread, loop_thread.thread);
        }
    }
    drop((domain, looked_up));
    drop(first);
    close(second);
    assert_vtable_settled(&before);
}

pub fn panicking_callback_is_contained(_loop_thread: &LoopThread) {
    let before = vtable_stats();
    let conn = Connection::open(URI).expect("open");
    let name = "anyloop-panic";
    conn.domain_events()
        .expect("registry")
        .on::<DomainLifecycle>(move |event| {
            if event.name == name {
                panic!("a callback panics on purpose");
            }
        })
        .expect("register");
    let events = watch_domain(&conn, name);

    let domain = conn.define_domain(&domain_xml(name)).expect("define");
    domain.undefine().expect("undefine");
    assert_eq!(
        next_event(&events, "define").0.event,
        LifecycleEvent::Defined
    );
    assert_eq!(
        next_event(&events, "undefine").0.event,
        LifecycleEvent::Undefined
    );

    drop(domain);
    close(conn);
    assert_vtable_settled(&before);
}

pub fn errors_are_typed(loop_thread: &LoopThread) {
    let bad_driver = Connection::open("nosuchdriver:///").expect_err("unknown driver");
    match &bad_driver {
        Error::Libvirt { call, message } => {
            assert_eq!(*call, "virConnectOpen");
            assert!(!message.is_empty() && message != "no error", "{message}");
        }
        other => panic!("expected a libvirt error, got {other:?}"),
    }
    assert!(matches!(
        Connection::open("test:///default\0"),
        Err(Error::NulByte { what: "URI" })
    ));

    let conn = Connection::open(URI).expect("open");
    let missing = conn
        .lookup_domain("anyloop-no-such-domain")
        .expect_err("missing");
    assert!(
        matches!(
            missing,
            Error::Libvirt {
                call: "virDomainLookupByName",
                ..
            }
        ),
        "{missing}"
    );
    let bad_xml = conn.define_domain("<domain>").expect_err("bad xml");
    assert!(matches!(bad_xml, Error::Libvirt { .. }), "{bad_xml}");
    let test_domain = conn.lookup_domain("test").expect("the driver's own domain");
    let not_paused = test_domain.resume().expect_err("resume a running domain");
    assert!(matches!(
        not_paused,
        Error::Libvirt {
            call: "virDomainResume",
            ..
        }
    ));

    // Keep-alive needs a connection with a socket; libvirt counts whole seconds.
    assert!(
        matches!(
            conn.set_keep_alive(Duration::from_secs(1), 3),
            Err(Error::Libvirt {
                call: "virConnectSetKeepAlive",
                ..
            })
        ),
        "test:///default has no keep-alive"
    );
    for interval in [Duration::from_millis(1500), Duration::from_secs(1 << 31)] {
        assert!(matches!(
            conn.set_keep_alive(interval, 3),
            Err(Error::KeepAliveInterval(rejected)) if rejected == interval
        ));
    }
    assert!(
        conn.is_alive().expect("is_alive"),
        "a local connection stays alive"
    );

    // One event implementation per process: the same loop again is fine, another is not.
    anyloop_libvirt::register(&loop_thread.lp).expect("same loop again");
    let other = anyloop_backends::LoopChoice::Select
        .create()
        .expect("another loop");
    assert!(matches!(
        anyloop_libvirt::register(&other.handle()),
        Err(Error::AlreadyRegistered)
    ));
    assert!(anyloop_libvirt::registered_loop().is_some_and(|lp| lp.same_loop(&loop_thread.lp)));
    drop(test_domain);
    close(conn);
}

pub fn object_filter_selects_one_domain(_loop_thread: &LoopThread) {
    let before = vtable_stats();
    let conn = Connection::open(URI).expect("open");
    let watched = running_domain(&conn, "anyloop-watched");
    let other = running_domain(&conn, "anyloop-other");
    let uuid = watched.uuid().expect("uuid");
    let (sender, only_watched) = mpsc::channel();
    conn.domain_events()
        .expect("registry")
        .listen::<DomainLifecycle>()
        .object(uuid.clone())
        .call(move |event| {
            let _ = sender.send(event.clone());
        })
        .expect("register");
    let everything = watch_domain(&conn, "anyloop-watched");

    other.suspend().expect("suspend other");
    watched.suspend().expect("suspend watched");
    let seen = only_watched.recv_timeout(EVENT_DEADLINE).expect("an event");
    assert_eq!(
        (seen.uuid.as_str(), seen.event),
        (uuid.as_str(), LifecycleEvent::Suspended)
    );
    assert_eq!(
        next_event(&everything, "suspend").0.event,
        LifecycleEvent::Suspended
    );
    assert!(
        only_watched.try_recv().is_err(),
        "the other domain was filtered out"
    );

    for domain in [&watched, &other] {
        domain.resume().expect("resume");
        remove_domain(domain);
    }
    drop((watched, other));
    close(conn);
    assert_vtable_settled(&before);
}

pub fn operations_from_several_threads_keep_per_domain_order(loop_thread: &LoopThread) {
    const THREADS: usize = 4;
    const PAIRS: usize = 100;
    let before = vtable_stats();
    let conn = Connection::open(URI).expect("open");
    let names: Vec<String> = (0..THREADS)
        .map(|i| format!("anyloop-thread-{i}"))
        .collect();
    let domains: Vec<Domain> = names
        .iter()
        .map(|name| running_domain(&conn, name))
        .collect();
    let receivers: Vec<Receiver<Seen>> =
        names.iter().map(|name| watch_domain(&conn, name)).collect();

    // libvirt queues each thread's events and calls the vtable (arming its flush timer)
    // from all of these threads at once.
    thread::scope(|scope| {
        for domain in &domains {
            scope.spawn(move || {
                for _ in 0..PAIRS {
                    domain.suspend().expect("suspend");
                    domain.resume().expect("resume");
                }
            });
        }
    });
    for (name, events) in names.iter().zip(&receivers) {
        for pair in 0..PAIRS {
            for expected in [LifecycleEvent::Suspended, LifecycleEvent::Resumed] {
                let (seen, thread) = next_event(events, &format!("{name} pair {pair}"));
                assert_eq!(seen.event, expected, "{name} pair {pair} out of order");
                assert_eq!(thread, loop_thread.thread);
            }
        }
    }
    for domain in &domains {
        remove_domain(domain);
    }
    drop(domains);
    close(conn);
    assert_vtable_settled(&before);
}

/// `test:///default` keeps no close callback (libvirt accepts the registration and stores
/// nothing): a close callback there is never called, and its state is released (here, not by
/// libvirt) and dropped exactly once when the last callback leaves or the connection closes.
pub fn close_callback_on_a_local_connection(_loop_thread: &LoopThread) {
    let before = vtable_stats();
    let upstream_before = upstream_stats();
    let conn = Connection::open(URI).expect("open");
    let events = conn.connection_events().expect("connection events");
    let (calls, frees) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let register = || {
        let (calls, owned) = (Arc::clone(&calls), CountDrop(Arc::clone(&frees)));
        events
            .on::<ConnectionClosed>(move |_closed| {
                let _owned = &owned;
                calls.fetch_add(1, Ordering::SeqCst);
            })
            .expect("register a close callback")
    };
    let first = register();
    let second = register();
    let subscribed = upstream_stats();
    assert_eq!(
        subscribed.close_registered,
        upstream_before.close_registered + 1,
        "one libvirt close callback per connection, however many Rust callbacks"
    );
    // The last one leaving unsubscribes; a new one subscribes again.
    assert_eq!(events.deregister(first).expect("deregister"), 1);
    assert_eq!(events.deregister(second).expect("deregister"), 0);
    let unsubscribed = upstream_stats();
    assert_eq!(unsubscribed.close_released, unsubscribed.close_registered);
    let _third = register();
    assert_eq!(
        upstream_stats().close_registered,
        upstream_before.close_registered + 2
    );

    let domain = conn.lookup_domain("test").expect("lookup");
    domain.suspend().expect("suspend");
    domain.resume().expect("resume");
    drop(domain);
    close(conn);
    wait_until("the three close callbacks to be freed", || {
        frees.load(Ordering::SeqCst) == 3
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a local connection never closes by itself"
    );
    assert_vtable_settled(&before);
}
