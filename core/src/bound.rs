//! [`ThreadBound`]: a value that may travel between threads but is only reachable, and only
//! dropped, on the thread that made it.

use std::fmt;

use fragile::Sticky;

/// A value bound to the thread that wrapped it: `Send` and `Sync` whatever `T` is, usable only
/// on that thread, and dropped there (a drop elsewhere waits until that thread ends,
/// [R42](crate::contract#r42)).
///
/// **Binding a C library whose Rust wrapper demands `Send`.** Many wrappers of C libraries
/// built for an external loop take their callbacks as `Send` closures although the C library
/// calls them on the thread that drives it, which with anyloop is the loop thread (the `curl`
/// crate's `Multi::socket_function` and `timer_function`, for example). The binding's state
/// on that thread is usually an `Rc<RefCell<..>>`, which is not `Send`. Wrap it: the closure
/// becomes `Send`, reaches the state through [`with`](Self::with) (an `Fn` closure can, since
/// it takes `&self`) or [`with_mut`](Self::with_mut), and would get `None` if it ever ran on
/// another thread, so no `unsafe impl Send` is needed:
///
/// ```
/// use anyloop::ThreadBound;
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// /// What a wrapper asks for: a `Send` callback (here called on this same thread).
/// fn set_socket_function(f: impl Fn(i32) + Send + 'static) -> Box<dyn Fn(i32) + Send> {
///     Box::new(f)
/// }
///
/// let sockets: Rc<RefCell<Vec<i32>>> = Rc::default();
/// let bound = ThreadBound::new(sockets.clone());
/// let callback = set_socket_function(move |fd| {
///     // Always `Some` on the loop thread, where the C library calls it.
///     bound.with(|sockets| sockets.borrow_mut().push(fd)).expect("on the loop thread");
/// });
/// callback(7);
/// assert_eq!(*sockets.borrow(), [7]);
/// ```
///
/// It is also how a refused thread-bound registry callback comes back
/// ([`Registry::on_local`](crate::Registry::on_local)): inside a [`Rejected`](crate::Rejected)
/// that stays `Send + Sync`, so that `?` turns it into `anyhow::Error` or
/// `Box<dyn Error + Send + Sync>` like any other failed add.
///
/// ```
/// use anyloop::ThreadBound;
/// use std::rc::Rc;
///
/// let bound = ThreadBound::new(Rc::new(5)); // `Rc` is not `Send`; `ThreadBound<Rc<_>>` is
/// assert!(bound.is_here());
/// let back = bound.into_inner().expect("on its own thread");
/// assert_eq!(*back, 5);
/// ```
pub struct ThreadBound<T: 'static>(Sticky<T>);

impl<T: 'static> ThreadBound<T> {
    /// Binds `value` to the calling thread.
    pub fn new(value: T) -> Self {
        ThreadBound(Sticky::new(value))
    }

    /// Whether the calling thread is the one the value is bound to.
    pub fn is_here(&self) -> bool {
        self.0.is_valid()
    }

    /// The value, on its own thread; elsewhere `Err(self)`, untouched.
    ///
    /// # Errors
    /// The wrapper itself when called on another thread.
    pub fn into_inner(self) -> Result<T, Self> {
        if self.is_here() {
            Ok(self.0.into_inner())
        } else {
            Err(self)
        }
    }

    /// Runs `f` with the value on its own thread (`None` elsewhere, and `f` is not called).
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.0.try_with(f).ok()
    }

    /// Runs `f` with the value, mutably, on its own thread (`None` elsewhere, and `f` is not
    /// called).
    pub fn with_mut<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.0.try_with_mut(f).ok()
    }
}

impl<T: 'static> fmt::Debug for ThreadBound<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadBound")
            .field("here", &self.is_here())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::LocalTypedCallback;
    use crate::Rejected;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn local_rejections_convert_like_any_other() {
        send_sync::<Rejected<LocalTypedCallback<u8>>>();
        send_sync::<Rejected<ThreadBound<std::rc::Rc<()>>>>();
        let rejected = Rejected::new(crate::Error::Closed, ThreadBound::new(std::rc::Rc::new(())));
        let boxed: Box<dyn std::error::Error + Send + Sync> = rejected.into();
        assert!(!boxed.to_string().is_empty());
    }

    #[test]
    fn off_its_thread_the_value_is_out_of_reach_and_comes_back_untouched() {
        let mut bound = ThreadBound::new(std::rc::Rc::new(7));
        let bound = std::thread::scope(|s| {
            s.spawn(move || {
                assert!(!bound.is_here());
                assert_eq!(bound.with_mut(|v| **v), None);
                assert_eq!(bound.with(|v| **v), None);
                bound.into_inner().expect_err("not its thread")
            })
            .join()
            .expect("thread")
        });
        assert_eq!(bound.with(|v| **v), Some(7));
        assert_eq!(*bound.into_inner().expect("home again"), 7);
    }
}
