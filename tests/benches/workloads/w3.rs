//! W3 cross-thread wake-up: the loop thread blocks with nothing to do; this thread sleeps
//! 100 µs, takes t0 and posts through the contender's mechanism; the callback takes t1
//! (`w3()` of the C peers' harness).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::contender::{xt_install, Contender};
use crate::measure::{Measure, Params};
use crate::sys::now_ns;

/// Measures every mechanism the contender offers, one loop thread each.
pub fn run<C: Contender + 'static>(p: &Params) -> Vec<Measure> {
    (0..C::xt_variants().len())
        .map(|v| variant::<C>(v, p))
        .collect()
}

fn variant<C: Contender + 'static>(variant: usize, p: &Params) -> Measure {
    let name = C::xt_variants()[variant];
    let (t1_tx, t1_rx) = mpsc::channel::<u64>();
    let (post_tx, post_rx) = mpsc::channel::<Box<dyn FnMut() + Send>>();
    let stop = Arc::new(AtomicBool::new(false));
    let loop_stop = Arc::clone(&stop);
    let looper = std::thread::Builder::new()
        .name(format!("w3-{name}"))
        .spawn(move || {
            xt_install(t1_tx);
            let mut c = C::make();
            post_tx.send(c.xt_setup(variant)).expect("W3 ready");
            while !loop_stop.load(Ordering::Acquire) {
                c.run_once();
            }
        })
        .expect("spawn the W3 loop thread");
    let mut post = post_rx.recv().expect("W3 loop thread died during setup");

    let total = p.w3_warm + p.w3_samples;
    let mut lat = Vec::with_capacity(p.w3_samples);
    let mut lost = 0;
    for i in 0..total {
        std::thread::sleep(Duration::from_micros(p.w3_gap_us)); // the loop is back in its wait
        if i == total - 1 {
            stop.store(true, Ordering::Release); // the last sample also stops the loop
        }
        let t0 = now_ns();
        post();
        match t1_rx.recv_timeout(Duration::from_secs(2)) {
            Ok(t1) if i >= p.w3_warm => lat.push(t1.saturating_sub(t0) as f64 / 1000.0),
            Ok(_) => {}
            Err(_) => {
                lost += 1;
                eprintln!("W3 {name}: NO WAKE-UP within 2 s (sample {i})");
                assert!(lost <= 3, "W3 {name}: wake-ups are being lost");
            }
        }
    }
    looper.join().expect("W3 loop thread panicked");
    lat.sort_by(f64::total_cmp);
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Measure::new("W3", p.w3_samples as u64, at(0.5) * 1000.0)
        .phase(name)
        .extra("p50_us", at(0.5))
        .extra("p90_us", at(0.9))
        .extra("p99_us", at(0.99))
        .extra("p999_us", at(0.999))
        .extra("lost", lost as f64)
}
