//! What a backend author implements to run the battery: [`LoopFactory`] and [`LoopUnderTest`].

use std::sync::Arc;
use std::time::Duration;

use anyloop::{Loop, LoopStats, Result};

/// Asks a running loop to quit; callable from any thread (R47).
pub type Quitter = Arc<dyn Fn() + Send + Sync>;

/// A factory of loops under test: one per scenario (some scenarios make two).
///
/// The kit calls [`create`](Self::create) *on the loop's own thread* and keeps the loop there
/// for its whole life, so backends whose loop cannot move between threads (calloop's) work.
///
/// ```
/// use anyloop_conformance::{LoopFactory, LoopUnderTest, reference::PollLoop};
///
/// struct MyBackend;
///
/// impl LoopFactory for MyBackend {
///     fn name(&self) -> String { "my-loop".into() }
///     fn create(&self) -> anyloop::Result<Box<dyn LoopUnderTest>> {
///         Ok(Box::new(PollLoop::new()?))
///     }
/// }
/// ```
pub trait LoopFactory: Send + Sync + 'static {
    /// A short name for reports (`"select-epoll"`).
    fn name(&self) -> String;

    /// Creates a fresh loop; called on the thread that will drive it.
    ///
    /// # Errors
    /// Whatever the backend's constructor reports; the scenario then fails.
    fn create(&self) -> Result<Box<dyn LoopUnderTest>>;
}

/// One loop under test, owned and driven by the kit on the loop's thread (hence not `Send`).
///
/// Dropping it destroys the loop: every remaining free must run then, on this thread (R48).
pub trait LoopUnderTest {
    /// The vtable handle libraries use; may be cloned and sent to any thread.
    fn handle(&self) -> Loop;

    /// One iteration: poll (blocking at most `timeout`, forever for `None`), then dispatch.
    /// Returns how many callbacks ran (R46).
    ///
    /// # Errors
    /// [`anyloop::Error::CallbackPanicked`] after a callback or free panicked (R54).
    fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize>;

    /// Runs iterations until quit (R47).
    ///
    /// # Errors
    /// As [`run_once`](Self::run_once).
    fn run(&mut self) -> Result<()>;

    /// A quit function usable from any thread and from callbacks.
    fn quitter(&self) -> Quitter;

    /// The loop's counts (R25, R57).
    fn stats(&self) -> LoopStats;
}
