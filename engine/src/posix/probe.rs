//! One batched, zero-timeout `poll(2)` over a list of fds.
//!
//! Used for fds epoll refuses because they are always ready (regular files, `/dev/null`:
//! contract [D4](anyloop::contract#d4) says they behave as under `poll(2)`, so we ask `poll(2)`), and by the mio
//! poller to re-check the fds it dispatched in the previous iteration (level-triggered
//! emulation, [R8](anyloop::contract#r8)). One syscall for the whole list, whatever its length. `POLLNVAL` (the fd is
//! not open any more) is reported so that the engine delivers `ERROR` once and disables the
//! watch instead of spinning ([R52](anyloop::contract#r52)).

use std::time::Duration;

use crate::{Probe, Readiness};
use anyloop::{Error, Result};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::{borrow_fd, io_events, poll_flags};

/// Reusable `pollfd` array (no allocation per iteration in steady state).
#[derive(Debug, Default)]
pub struct Prober {
    fds: Vec<PollFd<'static>>,
}

impl Prober {
    /// Probes `probes` (see [`probe`](Self::probe)) and returns how long the kernel wait
    /// that follows may block: `timeout`, or zero when a probed fd was ready (its event must
    /// not wait behind a sleep).
    ///
    /// # Errors
    /// As [`probe`](Self::probe).
    pub fn probe_before_wait(
        &mut self,
        probes: &[Probe],
        out: &mut Vec<Readiness>,
        timeout: Option<Duration>,
    ) -> Result<Option<Duration>> {
        Ok(if self.probe(probes, out)? {
            Some(Duration::ZERO)
        } else {
            timeout
        })
    }

    /// Probes `probes` without blocking; appends the ready ones to `out`. Returns whether any
    /// was ready. A negative fd in `probes` (the engine never passes one) is skipped.
    ///
    /// # Errors
    /// [`Error::Os`] if `poll(2)` fails for a reason other than a signal.
    pub fn probe(&mut self, probes: &[Probe], out: &mut Vec<Readiness>) -> Result<bool> {
        if probes.is_empty() {
            return Ok(false);
        }
        self.fds.clear();
        self.fds.extend(probes.iter().filter_map(|p| {
            borrow_fd(p.fd).map(|fd| PollFd::from_borrowed_fd(fd, poll_flags(p.interest)))
        }));
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let ready = loop {
            match poll(&mut self.fds, Some(&zero)) {
                Ok(n) => break n,
                Err(Errno::INTR) | Err(Errno::AGAIN) => continue, // zero timeout: bounded (R55)
                Err(err) => {
                    return Err(Error::Os {
                        op: "poll",
                        fd: None,
                        source: err.into(),
                    })
                }
            }
        };
        if ready == 0 {
            return Ok(false);
        }
        // Same filter as above, so the two sequences stay aligned.
        let probed = probes.iter().filter(|p| p.fd >= 0);
        for (pollfd, probe) in self.fds.iter().zip(probed) {
            let revents = pollfd.revents();
            if revents.is_empty() {
                continue;
            }
            out.push(Readiness {
                token: probe.token,
                events: io_events(revents),
                invalid: revents.contains(PollFlags::NVAL),
            });
        }
        Ok(true)
    }
}
