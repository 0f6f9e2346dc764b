//! The driver: owns a loop under test on its own thread and lets a scenario drive it.
//!
//! The loop thread executes *jobs* (closures run on the loop thread with the loop in hand)
//! and, while the *pump* is on, iterates the loop with `run_once(Some(TICK))`, running queued
//! jobs between iterations. The kit counts every `run_once` it makes, so scenarios can wait for
//! iterations and check that nothing spins, without assertions on speed.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use anyloop::{Error, Loop, LoopStats, Quitter, Result, Runner, Schedule, Stopped};

use crate::harness::LoopFactory;
use crate::probe::lock;
use crate::track::{Monitor, Tracked};

/// The generous timeout of every wait; reaching it only fails the scenario.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The poll timeout of one pump iteration.
pub const TICK: Duration = Duration::from_millis(20);

/// The minimum quiet time of [`Driver::settle`].
pub const SETTLE: Duration = Duration::from_millis(60);

type Job = Box<dyn FnOnce(&mut LoopCtx) + Send>;
type JobResult<R> = std::result::Result<R, Box<dyn Any + Send>>;

/// The loop as seen by a job running on the loop thread.
pub struct LoopCtx {
    lut: Option<Box<dyn Runner>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LoopCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopCtx")
            .field("alive", &self.lut.is_some())
            .finish()
    }
}

impl LoopCtx {
    fn lut(&mut self) -> &mut dyn Runner {
        self.lut.as_deref_mut().expect("the loop was destroyed")
    }

    /// One iteration of the loop under test (counted by the kit).
    ///
    /// # Errors
    /// What the backend's `run_once` returns.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let shared = self.shared.clone();
        let _doing = shared.doing(format!("in run_once({timeout:?})"));
        let result = self.lut().run_once(timeout);
        self.shared.iterations.fetch_add(1, Ordering::SeqCst);
        result
    }

    /// `n` non-blocking iterations; panics on an error.
    pub fn turns(&mut self, n: usize) -> usize {
        (0..n)
            .map(|turn| {
                self.run_once(Some(Duration::ZERO)).unwrap_or_else(|err| {
                    panic!("run_once(Some(0)) failed in turn {turn} of {n}: {err}")
                })
            })
            .sum()
    }

    /// The backend's [`Runner::run`] (until quit). Its iterations are not counted by the kit.
    ///
    /// # Errors
    /// What the backend's `run` returns.
    pub fn run(&mut self) -> Result<()> {
        let shared = self.shared.clone();
        let _doing = shared.doing("in Runner::run (until quit)".to_owned());
        self.lut().run()
    }

    /// The backend's [`Runner::run_until`]. Its iterations are not counted by the kit (the
    /// backend's own count is [`LoopStats::iterations`]).
    ///
    /// # Errors
    /// What the backend's `run_until` returns.
    pub fn run_until(
        &mut self,
        deadline: Option<Instant>,
        done: &mut dyn FnMut() -> bool,
    ) -> Result<Stopped> {
        let shared = self.shared.clone();
        let _doing = shared.doing(format!(
            "in Runner::run_until (deadline in {:?})",
            deadline.map(|at| at.saturating_duration_since(Instant::now()))
        ));
        self.lut().run_until(deadline, done)
    }

    /// The backend's counts ([`Runner::stats`]).
    pub fn stats(&self) -> LoopStats {
        self.lut.as_deref().expect("the loop was destroyed").stats()
    }

    /// The loop under test itself, for what the context does not wrap (its `run_once` calls
    /// made through here are not counted by the kit).
    pub fn runner(&mut self) -> &mut dyn Runner {
        self.lut()
    }

    /// The number of `run_once` calls the kit made so far.
    pub fn iteration(&self) -> u64 {
        self.shared.iterations.load(Ordering::SeqCst)
    }

    /// Destroys the loop (drops the loop under test) on this thread.
    pub fn destroy(&mut self) {
        let shared = self.shared.clone();
        let _doing = shared.doing("dropping the loop (R48: its frees run here)".to_owned());
        drop(self.lut.take());
    }

    /// True while the loop is not destroyed.
    pub fn alive(&self) -> bool {
        self.lut.is_some()
    }

    /// Iterates for `window` (at most [`TICK`] per poll) and reports how busy the loop was.
    pub fn measure_idle(&mut self, window: Duration) -> IdleReport {
        let cpu0 = thread_cpu_time();
        let backend0 = self.stats().iterations;
        let kit0 = self.iteration();
        let callbacks = {
            let start = Instant::now();
            let mut callbacks = 0;
            while start.elapsed() < window {
                callbacks += self.run_once(Some(TICK)).unwrap_or(0);
            }
            callbacks
        };
        IdleReport {
            kit_iterations: self.iteration() - kit0,
            backend_iterations: self.stats().iterations.saturating_sub(backend0),
            cpu: thread_cpu_time().saturating_sub(cpu0),
            callbacks,
        }
    }
}

/// How busy a loop was during [`LoopCtx::measure_idle`].
#[derive(Debug, Clone, Copy)]
pub struct IdleReport {
    /// `run_once` calls the kit made.
    pub kit_iterations: u64,
    /// Iterations the backend counted (its `LoopStats::iterations`).
    pub backend_iterations: u64,
    /// CPU time the loop thread used.
    pub cpu: Duration,
    /// Callbacks run.
    pub callbacks: usize,
}

impl IdleReport {
    /// Panics unless the loop stayed quiet: few iterations, little CPU
    /// ([R10](anyloop::contract#r10), [R52](anyloop::contract#r52)).
    pub fn assert_quiet(&self, what: &str) {
        // A 200 ms window at TICK = 20 ms gives about 10 iterations; a spinning loop gives
        // thousands. The CPU bound holds under any load (it is CPU time, not wall time).
        assert!(
            self.kit_iterations < 100 && self.backend_iterations < 200,
            "{what}: the loop spins (R10, R52): {} run_once calls and {} backend iterations in \
             the window, expected fewer than 100 and 200 (an idle loop makes about one per \
             {TICK:?}); {self:?}",
            self.kit_iterations,
            self.backend_iterations
        );
        assert!(
            self.cpu < Duration::from_millis(150),
            "{what}: the loop thread burns CPU (R10, R52): {:?} of CPU time in the window, \
             expected less than 150ms; {self:?}",
            self.cpu
        );
    }
}

/// CPU time used by the calling thread.
pub fn thread_cpu_time() -> Duration {
    // Through libc (glibc's vDSO call), not rustix: rustix's own vDSO parser crashes under
    // valgrind, and the kit runs under valgrind in CI (.ci/valgrind).
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live, properly aligned `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A job started with [`Driver::spawn`]; [`wait`](Self::wait) for its result.
pub struct Pending<R> {
    rx: Receiver<JobResult<R>>,
    /// A result taken off the channel by [`is_done`](Self::is_done), kept for `wait`.
    early: std::cell::RefCell<Option<JobResult<R>>>,
    /// The job, as failure messages name it: where it was started and what it does.
    job: String,
    /// The backend's name, for messages.
    backend: String,
    /// What the loop thread is doing, for the message of a wait that gives up.
    shared: Arc<Shared>,
}

impl<R> std::fmt::Debug for Pending<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("job", &self.job).finish()
    }
}

impl<R> Pending<R> {
    /// Waits up to `timeout`; `None` if the job has not finished by then.
    pub fn wait_for(&self, timeout: Duration) -> Option<R> {
        let received = match self.early.borrow_mut().take() {
            Some(result) => Ok(result),
            None => self.rx.recv_timeout(timeout),
        };
        match received {
            Ok(Ok(value)) => Some(value),
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!(
                "{}: {} ended without a result: the loop thread died",
                self.backend, self.job
            ),
        }
    }

    /// Waits up to [`TIMEOUT`]; panics (failing the scenario) if the job did not finish,
    /// saying which job and what the loop thread was doing then.
    pub fn wait(&self) -> R {
        self.wait_for(TIMEOUT).unwrap_or_else(|| {
            panic!(
                "{}: {} did not finish within {TIMEOUT:?}: the loop thread is {}",
                self.backend,
                self.job,
                self.shared.activity()
            )
        })
    }

    /// The job as messages name it (where it was started, and what it does if said).
    pub fn job(&self) -> &str {
        &self.job
    }

    /// True if the job finished (its result is then kept for `wait`).
    pub fn is_done(&self) -> bool {
        if self.early.borrow().is_some() {
            return true;
        }
        match self.rx.try_recv() {
            Ok(result) => {
                *self.early.borrow_mut() = Some(result);
                true
            }
            Err(mpsc::TryRecvError::Empty) => false,
            // The job's sender is gone without a result: `wait` reports it.
            Err(mpsc::TryRecvError::Disconnected) => true,
        }
    }
}

struct Shared {
    pumping: AtomicBool,
    iterations: Arc<AtomicU64>,
    errors: Mutex<Vec<Error>>,
    /// What the loop thread is doing now (innermost last), for the messages of waits that
    /// give up: "in run_once(None) for 5.0s, in the job started at ...".
    activity: Mutex<Vec<(String, Instant)>>,
}

impl Shared {
    /// Records that the loop thread is doing `what` until the returned guard is dropped.
    fn doing(&self, what: String) -> Doing<'_> {
        lock(&self.activity).push((what, Instant::now()));
        Doing(self)
    }

    /// What the loop thread is doing, innermost first, with how long it has been at it.
    fn activity(&self) -> String {
        let activity = lock(&self.activity);
        let pumping = self.pumping.load(Ordering::SeqCst);
        let iterations = self.iterations.load(Ordering::SeqCst);
        let doing = if activity.is_empty() {
            "waiting for the next job".to_owned()
        } else {
            activity
                .iter()
                .rev()
                .map(|(what, since)| format!("{what} for {:?}", since.elapsed()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{doing} (the kit made {iterations} run_once calls; pump {})",
            if pumping { "on" } else { "off" }
        )
    }
}

/// Ends an entry of [`Shared::doing`].
struct Doing<'a>(&'a Shared);

impl Drop for Doing<'_> {
    fn drop(&mut self) {
        lock(&self.0.activity).pop();
    }
}

/// One loop under test on its own thread. Dropping the driver destroys the loop there.
pub struct Driver {
    name: String,
    lp: Loop,
    raw: Loop,
    quitter: Quitter,
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    exited: Receiver<()>,
    loop_thread: ThreadId,
    shared: Arc<Shared>,
    monitor: Arc<Monitor>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("backend", &self.name)
            .finish()
    }
}

impl Driver {
    /// Creates a loop of `backend` on a new thread (the loop is made there).
    pub fn start(backend: &Arc<dyn LoopFactory>) -> Driver {
        let name = backend.name();
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (exit_tx, exited) = mpsc::channel();
        let shared = Arc::new(Shared {
            pumping: AtomicBool::new(false),
            iterations: Arc::new(AtomicU64::new(0)),
            errors: Mutex::new(Vec::new()),
            activity: Mutex::new(Vec::new()),
        });
        let thread_shared = shared.clone();
        let backend = backend.clone();
        let thread = thread::Builder::new()
            .name(format!("loop-{name}"))
            .spawn(move || {
                let created = backend.create();
                let lut = match created {
                    Ok(lut) => {
                        let _ = ready_tx.send(Ok((lut.handle(), lut.quitter())));
                        lut
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                let mut ctx = LoopCtx {
                    lut: Some(lut),
                    shared: thread_shared.clone(),
                };
                loop_thread_main(&mut ctx, &job_rx, &thread_shared);
                // Channel closed: destroy the loop here (frees run on this thread).
                ctx.destroy();
                let _ = exit_tx.send(());
            })
            .expect("spawning the loop thread");
        let loop_thread = thread.thread().id();
        let (raw, quitter) = match ready_rx.recv_timeout(TIMEOUT) {
            Ok(Ok(parts)) => parts,
            Ok(Err(err)) => panic!("{name}: creating the loop failed: {err}"),
            Err(_) => panic!("{name}: creating the loop did not finish in {TIMEOUT:?}"),
        };
        let monitor = Arc::new(Monitor::new(loop_thread));
        let lp = Loop::new(Tracked::new(raw.clone(), monitor.clone()));
        Driver {
            name,
            lp,
            raw,
            quitter,
            jobs: Some(job_tx),
            thread: Some(thread),
            exited,
            loop_thread,
            shared,
            monitor,
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The loop handle, through the kit's checking interposer: use this in scenarios.
    pub fn lp(&self) -> &Loop {
        &self.lp
    }

    /// The backend's own handle, without the interposer (for [R2](anyloop::contract#r2) scenarios
    /// that need the rejected callback back unwrapped).
    pub fn raw(&self) -> &Loop {
        &self.raw
    }

    /// The loop's quit function.
    pub fn quitter(&self) -> Quitter {
        self.quitter.clone()
    }

    /// The id of the loop thread.
    pub fn loop_thread(&self) -> ThreadId {
        self.loop_thread
    }

    /// The violations monitor of the interposer.
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// A shared counter of the `run_once` calls made by the kit (readable in callbacks).
    pub fn iteration_counter(&self) -> Arc<AtomicU64> {
        self.shared.iterations.clone()
    }

    /// `run_once` calls made so far.
    pub fn iterations(&self) -> u64 {
        self.shared.iterations.load(Ordering::SeqCst)
    }

    /// Runs `job` on the loop thread (between pump iterations) and returns its result.
    /// Panics in the job are re-raised here; a job that does not finish in [`TIMEOUT`] fails,
    /// naming the line that started it.
    #[track_caller]
    pub fn on_loop<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut LoopCtx) -> R + Send + 'static,
    ) -> R {
        self.spawn(job).wait()
    }

    /// [`on_loop`](Self::on_loop), for a job whose failure message should say what it does
    /// and which rule it checks (`"run_once(None), which only the foreign remove can end
    /// (R40)"`).
    #[track_caller]
    pub fn on_loop_doing<R: Send + 'static>(
        &self,
        what: &str,
        job: impl FnOnce(&mut LoopCtx) -> R + Send + 'static,
    ) -> R {
        self.spawn_doing(what, job).wait()
    }

    /// Starts `job` on the loop thread and returns at once.
    #[track_caller]
    pub fn spawn<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut LoopCtx) -> R + Send + 'static,
    ) -> Pending<R> {
        let at = Location::caller();
        self.start_job(format!("the job started at {at}"), job)
    }

    /// [`spawn`](Self::spawn), for a job whose failure message should say what it does and
    /// which rule it checks.
    #[track_caller]
    pub fn spawn_doing<R: Send + 'static>(
        &self,
        what: &str,
        job: impl FnOnce(&mut LoopCtx) -> R + Send + 'static,
    ) -> Pending<R> {
        let at = Location::caller();
        self.start_job(format!("the job started at {at} ({what})"), job)
    }

    fn start_job<R: Send + 'static>(
        &self,
        name: String,
        job: impl FnOnce(&mut LoopCtx) -> R + Send + 'static,
    ) -> Pending<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        let shared = self.shared.clone();
        let doing = format!("running {name}");
        let job: Job = Box::new(move |ctx: &mut LoopCtx| {
            let _doing = shared.doing(doing);
            let result = panic::catch_unwind(AssertUnwindSafe(|| job(ctx)));
            let _ = tx.send(result);
        });
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
        Pending {
            rx,
            early: std::cell::RefCell::new(None),
            job: name,
            backend: self.name.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Starts iterating the loop continuously (`run_once(Some(TICK))`).
    pub fn pump(&self) {
        self.shared.pumping.store(true, Ordering::SeqCst);
        // Wake the loop thread if it waits for jobs.
        drop(self.spawn(|_| ()));
    }

    /// Stops the pump after its current iteration.
    pub fn stop_pump(&self) {
        self.shared.pumping.store(false, Ordering::SeqCst);
        self.on_loop(|_| ());
    }

    /// Errors `run_once` returned in the pump so far (taken; the harness fails the scenario
    /// for any error left untaken).
    pub fn take_errors(&self) -> Vec<Error> {
        std::mem::take(&mut *lock(&self.shared.errors))
    }

    /// Waits until the kit made `n` more `run_once` calls (pump or job); panics on timeout.
    #[track_caller]
    pub fn wait_iterations(&self, n: u64) {
        let target = self.iterations() + n;
        let deadline = Instant::now() + TIMEOUT;
        while self.iterations() < target {
            if Instant::now() >= deadline {
                panic!(
                    "{}: the loop did not make {n} more iterations within {TIMEOUT:?} \
                     (R46: each run_once(Some({TICK:?})) of the pump returns by its timeout); \
                     the loop thread is {}",
                    self.name,
                    self.shared.activity()
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Lets the pumped loop run for at least [`SETTLE`] and 3 more iterations, so that
    /// anything that was going to fire has fired.
    pub fn settle(&self) {
        let start = Instant::now();
        self.wait_iterations(3);
        if let Some(rest) = SETTLE.checked_sub(start.elapsed()) {
            thread::sleep(rest);
        }
        self.wait_iterations(1);
    }

    /// Destroys the loop now, on its thread (frees of survivors run there,
    /// [R48](anyloop::contract#r48)).
    pub fn destroy(&self) {
        self.stop_pump();
        self.on_loop(|ctx| ctx.destroy());
    }

    /// The loop's stats (read on the loop thread).
    pub fn stats(&self) -> LoopStats {
        self.on_loop(|ctx| ctx.stats())
    }

    fn shutdown(&mut self) {
        self.shared.pumping.store(false, Ordering::SeqCst);
        drop(self.jobs.take());
        if self.exited.recv_timeout(TIMEOUT).is_err() {
            // Stuck (a lost wake-up or a deadlock, already reported): try to unblock it.
            self.quitter.quit();
            self.raw.wake();
            let _ = self.raw.add_timer(Schedule::Once(Duration::ZERO), |_| {});
            if self.exited.recv_timeout(TIMEOUT).is_err() {
                self.monitor.violation(format!(
                    "{}: the loop thread never exited after the scenario, even after a quit, \
                     a wake and a zero-delay timer (R40, R47): it is {}",
                    self.name,
                    self.shared.activity()
                ));
                return; // leave the thread detached
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// What the harness checks after the scenario, kept alive past the driver's drop.
    pub(crate) fn checks(&self) -> DriverChecks {
        DriverChecks {
            name: self.name.clone(),
            monitor: self.monitor.clone(),
            shared: self.shared.clone(),
            raw: self.raw.clone(),
            quitter: self.quitter.clone(),
        }
    }

    /// What the loop thread is doing now (for messages of waits that give up).
    pub fn activity(&self) -> String {
        self.shared.activity()
    }
}

/// The after-scenario checks of one driver: violations and untaken loop errors; and, for the
/// scenario watchdog, what its loop thread is doing and a way to unblock it.
pub(crate) struct DriverChecks {
    name: String,
    monitor: Arc<Monitor>,
    shared: Arc<Shared>,
    raw: Loop,
    quitter: Quitter,
}

impl DriverChecks {
    /// "loop thread of NAME: ACTIVITY".
    pub(crate) fn describe(&self) -> String {
        format!(
            "the loop thread of {} is {}",
            self.name,
            self.shared.activity()
        )
    }

    /// Asks a loop stuck in a wait to return: stop the pump, quit, wake.
    pub(crate) fn unblock(&self) {
        self.shared.pumping.store(false, Ordering::SeqCst);
        self.quitter.quit();
        self.raw.wake();
    }

    /// Every problem found, as messages.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .monitor
            .violations()
            .into_iter()
            .map(|v| format!("{}: contract violation: {v}", self.name))
            .collect();
        out.extend(
            lock(&self.shared.errors)
                .iter()
                .map(|e| format!("{}: unexpected error from run_once: {e}", self.name)),
        );
        out
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn loop_thread_main(ctx: &mut LoopCtx, jobs: &Receiver<Job>, shared: &Shared) {
    loop {
        if shared.pumping.load(Ordering::SeqCst) && ctx.alive() {
            loop {
                match jobs.try_recv() {
                    Ok(job) => job(ctx),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            if !shared.pumping.load(Ordering::SeqCst) || !ctx.alive() {
                continue;
            }
            if let Err(err) = ctx.run_once(Some(TICK)) {
                lock(&shared.errors).push(err);
            }
        } else {
            match jobs.recv() {
                Ok(job) => job(ctx),
                Err(_) => return,
            }
        }
    }
}
