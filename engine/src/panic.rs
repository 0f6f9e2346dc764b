//! Catching panics at the dispatch boundary (contract [R54](anyloop::contract#r54)).

use std::panic::{catch_unwind, AssertUnwindSafe};

use anyloop::Error;
use anyloop::RegistrationId;

/// Runs user code (a callback or a free) and turns a panic into
/// [`Error::CallbackPanicked`] naming the registration.
///
/// The backend's own bookkeeping must not be borrowed across this call (no lock held, no
/// `RefCell` borrowed), so whatever the user code did before panicking, the loop's state stays
/// consistent. The user's own state is taken to be unwind-safe: a callback that panicked is
/// put back and may run again, as any code after a caught panic would.
///
/// ```
/// use anyloop_engine::catch_user_panic;
/// use anyloop::{Error, TimerId};
/// let id = TimerId::allocate();
/// let err = catch_user_panic(id.into(), || panic!("boom")).unwrap_err();
/// assert!(matches!(err, Error::CallbackPanicked { message, .. } if message == "boom"));
/// assert_eq!(catch_user_panic(id.into(), || 5).unwrap(), 5);
/// ```
pub fn catch_user_panic<R>(id: RegistrationId, f: impl FnOnce() -> R) -> Result<R, Error> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Error::panicked(id, &*payload))
}
