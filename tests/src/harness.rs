//! What a backend author implements to run the battery: [`LoopFactory`], a factory of loops
//! that are driven through [`anyloop::Runner`].

use anyloop::{Result, Runner};

/// A factory of loops under test: one per scenario (some scenarios make two).
///
/// The kit calls [`create`](Self::create) *on the loop's own thread* and keeps the loop there
/// for its whole life, so backends whose loop cannot move between threads (calloop's) work.
/// The loop is driven through [`Runner`], the owner-side trait every backend's loop type
/// implements: the kit needs nothing else ([`handle`](Runner::handle),
/// [`run_once`](Runner::run_once), [`run`](Runner::run), [`run_until`](Runner::run_until),
/// [`quitter`](Runner::quitter), [`stats`](Runner::stats)). Dropping the returned loop
/// destroys it: every remaining free must run then, on that thread
/// ([R48](anyloop::contract#r48)).
///
/// ```
/// use anyloop_conformance::{reference::PollLoop, LoopFactory};
///
/// struct MyBackend;
///
/// impl LoopFactory for MyBackend {
///     fn name(&self) -> String { "my-loop".into() }
///     fn create(&self) -> anyloop::Result<Box<dyn anyloop::Runner>> {
///         Ok(Box::new(PollLoop::new()?))
///     }
/// }
/// ```
pub trait LoopFactory: Send + Sync + 'static {
    /// A short name for reports (`"select-mio"`).
    fn name(&self) -> String;

    /// Creates a fresh loop; called on the thread that will drive it.
    ///
    /// # Errors
    /// Whatever the backend's constructor reports; the scenario then fails.
    fn create(&self) -> Result<Box<dyn Runner>>;
}
