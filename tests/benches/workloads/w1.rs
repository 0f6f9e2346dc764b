//! W1 fan-in dispatch: N read watches, A of them made readable per round; only the loop is
//! timed, until all A callbacks ran (`w1()` / `w1_measure()` of the C peers' harness).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::contender::{fired, run_until, w1_read_cb, Contender};
use crate::measure::{max, median, min, Measure, Params};
use crate::sys::{now_ns, rdwr_pipe, write1, Rng};

/// Registers N watches, then measures A = 1 and (when N/10 > 1) A = N/10, as the peers do in
/// one process.
pub fn run<C: Contender>(n: usize, p: &Params) -> Vec<Measure> {
    // The pipes outlive the contender: it is declared after them, so it drops first.
    let pipes: Vec<OwnedFd> = (0..n).map(|_| rdwr_pipe()).collect();
    let fds: Vec<RawFd> = pipes.iter().map(|p| p.as_raw_fd()).collect();
    let mut c = C::make();
    for &fd in &fds {
        c.watch_add(fd, w1_read_cb);
    }
    let mut perm: Vec<usize> = (0..n).collect();
    Rng::new().shuffle(&mut perm);

    let mut out = vec![measure(&mut c, 1, &fds, &perm, p)];
    if n / 10 > 1 {
        out.push(measure(&mut c, n / 10, &fds, &perm, p));
    }
    out
}

fn measure<C: Contender>(
    c: &mut C,
    a: usize,
    fds: &[RawFd],
    perm: &[usize],
    p: &Params,
) -> Measure {
    let n = fds.len();
    let mut pos = 0;
    // One round: write to the next A pipes of the shuffled order (untimed), then time the
    // loop until all A callbacks ran.
    let mut round = |c: &mut C| -> u64 {
        for _ in 0..a {
            write1(fds[perm[pos]]);
            pos = (pos + 1) % n;
        }
        let target = fired() + a as u64;
        let t0 = now_ns();
        run_until(c, target);
        now_ns() - t0
    };

    // Calibrate (and warm up): about 30 ms of rounds.
    let (mut spent, mut rounds) = (0u64, 0u64);
    while spent < 30_000_000 && rounds < 100_000 {
        spent += round(c);
        rounds += 1;
    }
    let per_round = spent as f64 / rounds as f64;
    let r = ((p.w1_rep_ms as f64 * 1e6 / per_round) as u64).clamp(20, 1_000_000);

    let mut reps = Vec::with_capacity(p.w1_reps);
    for _ in 0..p.w1_reps {
        let before = fired();
        let total: u64 = (0..r).map(|_| round(c)).sum();
        assert_eq!(
            fired() - before,
            r * a as u64,
            "W1: callback count mismatch"
        );
        reps.push(total as f64 / (r * a as u64) as f64);
    }
    Measure::new("W1", n as u64, median(&reps))
        .a(a as u64)
        .extra("rep_min", min(&reps))
        .extra("rep_max", max(&reps))
        .extra("rounds", r as f64)
}
