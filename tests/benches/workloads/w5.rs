//! W5 event registry: one [`anyloop::Registry`] on a loop thread with C callbacks for one
//! kind (C = 1, 10, 100; for C > 1 half of them filtered to another object), E events emitted
//! from another thread in bursts of 1000. Then the latency from `emit` to delivery of single
//! events, measured like W3 (the loop blocked with nothing to do; the emitter sleeps, takes
//! t0, emits; the callback takes t1).
//!
//! Only anyloop backends have a registry: for the floor and the raw substrates W5 yields
//! nothing.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyloop::Registry;

use crate::contender::{xt_fired, xt_install, Contender};
use crate::measure::{median, Measure, Params};
use crate::sys::now_ns;

/// The object every emitted event is about.
const OBJECT: u32 = 1;
/// The object the filtered half of the callbacks listens to: none of the events.
const OTHER_OBJECT: u32 = 2;
/// Events per burst.
const BURST: u64 = 1000;

/// The benchmark's one event: small, with an object key.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    object: u32,
    seq: u64,
}

anyloop::event_set! {
    /// The benchmark's event set: one kind.
    #[derive(Debug)]
    pub enum BenchEvent {
        kind: BenchKind,
        key: u32,
        /// The only event.
        Tick(Tick) => object,
    }
}

/// Events delivered so far, published by the first callback (only the loop thread writes
/// it, once per event, so the emitter's polling does not bounce a line per callback).
static DELIVERED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Calls of the other unfiltered callbacks, counted on the loop thread without sharing.
    static OTHER_CALLS: Cell<u64> = const { Cell::new(0) };
}

fn first_callback(tick: &Tick) {
    std::hint::black_box(tick.seq);
    DELIVERED.store(DELIVERED.load(Ordering::Relaxed) + 1, Ordering::Release);
}

fn other_callback(tick: &Tick) {
    std::hint::black_box(tick.seq);
    OTHER_CALLS.with(|calls| calls.set(calls.get() + 1));
}

fn filtered_callback(tick: &Tick) {
    panic!(
        "W5: a callback filtered to another object got event {}",
        tick.seq
    );
}

pub fn run<C: Contender + 'static>(p: &Params) -> Vec<Measure> {
    if !C::HAS_REGISTRY {
        return Vec::new();
    }
    let mut out: Vec<Measure> = [1usize, 10, 100]
        .into_iter()
        .map(|callbacks| throughput::<C>(callbacks, p))
        .collect();
    out.push(latency::<C>(p));
    out
}

/// A loop thread with a registry: `setup` registers the callbacks there (on the loop
/// thread), then the loop runs until `stop`; the registry comes back to the caller.
struct LoopThread {
    registry: Registry<BenchEvent>,
    stop: Arc<AtomicBool>,
    /// Returns how many calls the other unfiltered callbacks counted.
    thread: std::thread::JoinHandle<u64>,
}

impl LoopThread {
    fn start<C: Contender + 'static>(
        name: &str,
        setup: impl FnOnce(&Registry<BenchEvent>) + Send + 'static,
    ) -> LoopThread {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let loop_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut c = C::make();
                let lp = c.event_loop().expect("an anyloop contender");
                let registry = Registry::<BenchEvent>::with_loop(lp).expect("Registry::with_loop");
                setup(&registry);
                tx.send(registry.clone()).expect("W5 ready");
                while !loop_stop.load(Ordering::Acquire) {
                    c.run_once();
                }
                drop(registry);
                OTHER_CALLS.with(Cell::get)
            })
            .expect("spawn the W5 loop thread");
        let registry = rx.recv().expect("W5 loop thread died during setup");
        LoopThread {
            registry,
            stop,
            thread,
        }
    }

    /// Waits a few hundred ns between polls of the delivered count (polling it back to back
    /// would steal the cache line from the loop thread at every event); fails instead of
    /// spinning forever when the loop thread died (a filtered callback was reached, say).
    fn pause(&self) {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        assert!(
            !self.thread.is_finished(),
            "W5: the loop thread stopped while events were outstanding (see its panic above)"
        );
    }

    /// Stops the loop; returns the other unfiltered callbacks' call count.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        // One more event wakes the loop, which then sees `stop`.
        self.registry.emit(Tick {
            object: OBJECT,
            seq: u64::MAX,
        });
        self.thread.join().expect("W5 loop thread panicked")
    }
}

fn throughput<C: Contender + 'static>(callbacks: usize, p: &Params) -> Measure {
    // Callbacks 0, 2, 4... get every event; 1, 3, 5... are filtered to another object.
    let unfiltered = callbacks.div_ceil(2) as u64;
    let delivered_before = DELIVERED.load(Ordering::Acquire);
    let looper = LoopThread::start::<C>(&format!("w5-c{callbacks}"), move |registry| {
        for i in 0..callbacks {
            let registered = match i {
                0 => registry
                    .on::<Tick>(first_callback)
                    .map_err(anyloop::Error::from),
                _ if i % 2 == 0 => registry
                    .on::<Tick>(other_callback)
                    .map_err(anyloop::Error::from),
                _ => registry
                    .listen::<Tick>()
                    .object(OTHER_OBJECT)
                    .call(filtered_callback)
                    .map_err(anyloop::Error::from),
            };
            registered.expect("register a W5 callback");
        }
    });
    let events = p.w5_events;
    let mut per_event = Vec::with_capacity(p.w5_reps);
    let mut seq = 0u64;
    for _ in 0..p.w5_reps {
        let base = DELIVERED.load(Ordering::Acquire);
        let delivered = || DELIVERED.load(Ordering::Acquire) - base;
        let t0 = now_ns();
        let mut emitted = 0;
        while emitted < events {
            for _ in 0..BURST.min(events - emitted) {
                looper.registry.emit(Tick {
                    object: OBJECT,
                    seq,
                });
                seq += 1;
            }
            emitted += BURST.min(events - emitted);
            // At most two bursts in flight: the queue stays bounded, the loop never starves.
            while delivered() + BURST < emitted {
                looper.pause();
            }
        }
        while delivered() < events {
            looper.pause();
        }
        per_event.push((now_ns() - t0) as f64 / events as f64);
    }
    let other_calls = looper.stop();
    // Every event reached every unfiltered callback (the filtered ones panic if reached).
    let events_seen = DELIVERED.load(Ordering::Acquire) - delivered_before;
    assert_eq!(
        other_calls,
        events_seen * (unfiltered - 1),
        "W5: lost callback calls"
    );
    let ns = median(&per_event);
    Measure::new("W5", events, ns)
        .phase("throughput")
        .a(callbacks as u64)
        .extra("events_per_s", 1e9 / ns)
        .extra("calls_per_s", 1e9 / ns * unfiltered as f64)
}

fn latency<C: Contender + 'static>(p: &Params) -> Measure {
    let (t1_tx, t1_rx) = mpsc::channel::<u64>();
    let looper = LoopThread::start::<C>("w5-latency", move |registry| {
        xt_install(t1_tx);
        registry
            .on::<Tick>(|tick| {
                if tick.seq != u64::MAX {
                    xt_fired();
                }
            })
            .map_err(anyloop::Error::from)
            .expect("register the W5 latency callback");
    });
    let total = p.w3_warm + p.w3_samples;
    let mut lat = Vec::with_capacity(p.w3_samples);
    for i in 0..total {
        std::thread::sleep(Duration::from_micros(p.w3_gap_us)); // the loop is back in its wait
        let t0 = now_ns();
        looper.registry.emit(Tick {
            object: OBJECT,
            seq: i as u64,
        });
        let t1 = t1_rx
            .recv_timeout(Duration::from_secs(2))
            .expect("W5: an emitted event was not delivered within 2 s");
        if i >= p.w3_warm {
            lat.push(t1.saturating_sub(t0) as f64 / 1000.0);
        }
    }
    looper.stop();
    lat.sort_by(f64::total_cmp);
    assert!(!lat.is_empty(), "W5: no latency samples (w3_samples is 0)");
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Measure::new("W5", p.w3_samples as u64, at(0.5) * 1000.0)
        .phase("latency")
        .extra("p50_us", at(0.5))
        .extra("p90_us", at(0.9))
        .extra("p99_us", at(0.99))
        .extra("p999_us", at(0.999))
}
