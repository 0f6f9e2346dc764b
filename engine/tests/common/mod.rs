//! A fake OS layer for the engine's integration tests: it records every kernel registration
//! call and every wait, and reports the fds a test marks ready.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyloop::{IoEvents, Result};
use anyloop_engine::{HostPoller, Poller, Probe, Readiness, Registered, Registrar, Token};

/// What the fake kernel knows and has seen.
#[derive(Default)]
pub struct Kernel {
    /// Every registration change, in order.
    pub calls: Vec<(&'static str, RawFd, IoEvents)>,
    pub tokens: HashMap<RawFd, Token>,
    /// Fds the next wait reports readable.
    pub ready: Vec<RawFd>,
    /// Fds refused as always ready (as epoll refuses regular files).
    pub always_ready: Vec<RawFd>,
    /// Waits made (each one a kernel call on a real poller).
    pub waits: usize,
}

/// Registrar and poller at once, sharing one [`Kernel`].
#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<Kernel>>);

impl Fake {
    pub fn calls(&self) -> Vec<(&'static str, RawFd, IoEvents)> {
        self.0.lock().unwrap().calls.clone()
    }

    pub fn waits(&self) -> usize {
        self.0.lock().unwrap().waits
    }

    fn record(
        &self,
        call: &'static str,
        fd: RawFd,
        token: Token,
        interest: IoEvents,
    ) -> Registered {
        let mut k = self.0.lock().unwrap();
        k.calls.push((call, fd, interest));
        k.tokens.insert(fd, token);
        if k.always_ready.contains(&fd) {
            Registered::AlwaysReady
        } else {
            Registered::Kernel
        }
    }
}

impl Registrar for Fake {
    fn check_fd(&self, _fd: RawFd) -> Result<()> {
        Ok(())
    }

    fn register(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered> {
        Ok(self.record("register", fd, token, interest))
    }

    fn reregister(&self, fd: RawFd, token: Token, interest: IoEvents) -> io::Result<Registered> {
        Ok(self.record("reregister", fd, token, interest))
    }

    fn deregister(&self, fd: RawFd) -> io::Result<()> {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(("deregister", fd, IoEvents::empty()));
        Ok(())
    }

    fn wake(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Poller for Fake {
    type Registrar = Fake;
    const EDGE_TRIGGERED: bool = false;

    fn wait(
        &mut self,
        probes: &[Probe],
        _timeout: Option<Duration>,
        events: &mut Vec<Readiness>,
    ) -> Result<bool> {
        let mut k = self.0.lock().unwrap();
        k.waits += 1;
        for fd in &k.ready {
            events.push(Readiness {
                token: k.tokens[fd],
                events: IoEvents::READABLE,
                invalid: false,
            });
        }
        for probe in probes {
            events.push(Readiness {
                token: probe.token,
                events: probe.interest,
                invalid: false,
            });
        }
        Ok(false)
    }
}

/// The fake's "poller fd" for a host: `/dev/null`, opened once (the fake's readiness does not
/// go through it; a host test says itself whether it was readable).
impl HostPoller for Fake {
    fn host_fd(&self) -> Arc<OwnedFd> {
        static NULL: OnceLock<Arc<OwnedFd>> = OnceLock::new();
        NULL.get_or_init(|| {
            Arc::new(OwnedFd::from(
                std::fs::File::open("/dev/null").expect("open /dev/null"),
            ))
        })
        .clone()
    }
}
