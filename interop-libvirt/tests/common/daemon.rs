//! A private `libvirtd` for one test: its own directory, config file, sockets, pid file and
//! log, started as a child process and killed when dropped.
//!
//! Clients reach it as `test+unix:///default?socket=<dir>/libvirt-sock`: libvirt's remote
//! driver over a Unix socket to the daemon, which serves its own built-in test driver. That
//! is where libvirt really uses the event implementation's fd handles (the RPC socket) and
//! keep-alive timers.
//!
//! The daemon loads no driver module: `LIBVIRT_DRIVER_DIR` points at an empty directory, so
//! only the test driver built into libvirt is there. The QEMU, network, storage, nwfilter...
//! modules Debian installs would otherwise start too, as root, with system-wide state (the
//! QEMU driver wants a `libvirt-qemu` user and takes a lock a system libvirtd also takes).
//!
//! The binary is `ANYLOOP_LIBVIRTD` when set, else `libvirtd` from `PATH`, `/usr/sbin` or
//! `/sbin`. Without one the tests say so on stderr and pass as skipped, unless
//! `ANYLOOP_REQUIRE_LIBVIRTD=1` (set by CI) makes that a failure.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyloop_libvirt::Connection;

/// Set to `1` to turn "no libvirtd installed" from a skip into a failure.
pub const REQUIRE_ENV: &str = "ANYLOOP_REQUIRE_LIBVIRTD";
/// The `libvirtd` binary to run instead of searching for one.
pub const BINARY_ENV: &str = "ANYLOOP_LIBVIRTD";
/// How long the daemon may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// The daemon exits by itself after this long without clients: a safety net for a test
/// process killed before it could kill its daemon.
const IDLE_EXIT_SECS: &str = "60";

/// A running private `libvirtd` (or, after [`kill`](Self::kill), a stopped one).
pub struct Daemon {
    binary: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon for `test`, or returns `None` (the test is skipped) when no
    /// `libvirtd` is installed and [`REQUIRE_ENV`] is not `1`.
    ///
    /// # Panics
    /// When libvirtd is required and missing, or does not start within the deadline.
    pub fn start(test: &str) -> Option<Daemon> {
        let Some(binary) = find_libvirtd() else {
            let required = std::env::var(REQUIRE_ENV).is_ok_and(|value| value == "1");
            assert!(
                !required,
                "{REQUIRE_ENV}=1 but no libvirtd was found ({BINARY_ENV}, PATH, /usr/sbin, \
                 /sbin); install Debian's libvirt-daemon"
            );
            // Straight to stderr: libtest captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "anyloop-libvirt: SKIPPED {test}: no libvirtd found (Debian: \
                 libvirt-daemon); set {REQUIRE_ENV}=1 to make this a failure"
            );
            return None;
        };
        let dir = private_dir();
        fs::create_dir_all(dir.join("drivers")).expect("create the daemon's directory");
        fs::write(dir.join("libvirtd.conf"), config(&dir)).expect("write libvirtd.conf");
        let mut daemon = Daemon {
            binary,
            dir,
            child: None,
        };
        daemon.spawn();
        Some(daemon)
    }

    /// The URI of the daemon's test driver through its socket.
    pub fn uri(&self) -> String {
        format!(
            "test+unix:///default?socket={}",
            self.dir.join("libvirt-sock").display()
        )
    }

    /// The daemon's process id.
    ///
    /// # Panics
    /// When it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon runs").id()
    }

    /// Sends `signal` to the daemon (`libc::SIGSTOP`, `libc::SIGCONT`...).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, which has not been reaped (we hold its `Child`
        // and reap it only in `kill`), so the pid cannot name another process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
    }

    /// Kills the daemon with SIGKILL (no goodbye to its clients: they see the socket hang up)
    /// and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same socket, after [`kill`](Self::kill).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The daemon's log and output so far, for failure messages.
    pub fn log(&self) -> String {
        ["libvirtd.log", "libvirtd.out"]
            .iter()
            .map(|name| fs::read_to_string(self.dir.join(name)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Starts the process and waits (bounded) until a connection opens through its socket.
    fn spawn(&mut self) {
        let socket = self.dir.join("libvirt-sock");
        // A killed daemon leaves its socket file; waiting for it must mean the new one.
        let _ = fs::remove_file(&socket);
        let output = fs::File::create(self.dir.join("libvirtd.out")).expect("daemon output file");
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.join("libvirtd.conf"))
            .arg("--pid-file")
            .arg(self.dir.join("libvirtd.pid"))
            .arg("--timeout")
            .arg(IDLE_EXIT_SECS)
            .env("LIBVIRT_DRIVER_DIR", self.dir.join("drivers"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("duplicate the output file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.binary.display()));
        self.child = Some(child);
        self.wait_ready(&socket);
    }

    fn wait_ready(&mut self, socket: &Path) {
        let deadline = Instant::now() + START_DEADLINE;
        while !socket.exists() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "libvirtd made no socket within {START_DEADLINE:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
        // The socket file appears at bind(), before listen(): a connection made in between is
        // refused, so a refusal is retried until the deadline. A first connection proves the
        // daemon serves; each try runs on a helper thread so that a daemon that never answers
        // fails the test instead of hanging it.
        loop {
            let (sender, opened) = mpsc::channel();
            let uri = self.uri();
            thread::spawn(move || {
                let _ = sender.send(Connection::open(&uri).and_then(Connection::close));
            });
            let remaining = deadline.saturating_duration_since(Instant::now());
            match opened.recv_timeout(remaining.max(Duration::from_secs(1))) {
                Ok(Ok(_)) => return,
                Ok(Err(err))
                    if err.to_string().contains("Connection refused")
                        && Instant::now() < deadline =>
                {
                    self.assert_running();
                    thread::sleep(Duration::from_millis(10));
                }
                Ok(Err(err)) => panic!("libvirtd refused a connection: {err}\n{}", self.log()),
                Err(_) => panic!(
                    "no connection to libvirtd within {START_DEADLINE:?}:\n{}",
                    self.log()
                ),
            }
        }
    }

    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("the daemon was started");
        if let Some(status) = child.try_wait().expect("poll libvirtd") {
            panic!("libvirtd exited with {status}:\n{}", self.log());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// [`BINARY_ENV`] if set, else `libvirtd` from `PATH`, else where Debian puts it
/// (`/usr/sbin` is not in every user's `PATH`).
fn find_libvirtd() -> Option<PathBuf> {
    if let Some(binary) = std::env::var_os(BINARY_ENV) {
        return Some(PathBuf::from(binary)).filter(|binary| binary.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("libvirtd"))
        .find(|candidate| candidate.is_file())
}

/// A fresh directory for one daemon. Unix socket paths are limited to 107 bytes, so a long
/// `TMPDIR` falls back to `/tmp`.
fn private_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "anyloop-libvirtd-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() + name.len() > 60 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    let dir = base.join(name);
    // Left over by a killed run of a process with the same pid: start clean.
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// The daemon's configuration: Unix sockets in `dir` with no authentication, no TCP or TLS
/// listener, a log file in `dir`. (libvirt 9 has no mDNS advertising any more, so there is
/// nothing to turn off for it.)
fn config(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "# A private libvirtd for one anyloop-libvirt test.\n\
         listen_tls = 0\n\
         listen_tcp = 0\n\
         unix_sock_dir = \"{dir}\"\n\
         unix_sock_rw_perms = \"0700\"\n\
         unix_sock_ro_perms = \"0700\"\n\
         unix_sock_admin_perms = \"0700\"\n\
         auth_unix_ro = \"none\"\n\
         auth_unix_rw = \"none\"\n\
         log_outputs = \"3:file:{dir}/libvirtd.log\"\n"
    )
}
