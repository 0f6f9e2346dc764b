//! `install_default`: the one call of a GTK application (process-global, so its own binary).

use anyloop::Runner;
use anyloop::Schedule;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyloop::{Error, Loop};
use glib::MainContext;

#[test]
fn install_default_plugs_the_default_context() {
    let lp = anyloop_glib::install_default().expect("install");
    assert!(lp.context() == &MainContext::default());
    // Library code with no loop of its own finds it, from any thread.
    let found = std::thread::spawn(Loop::current)
        .join()
        .expect("thread")
        .expect("the default loop");
    assert!(found.same_loop(&lp.handle()));
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    let _timer = found
        .timer(Schedule::Every(Duration::from_millis(1)), move |id| {
            f.fetch_add(1, Ordering::SeqCst);
            let _ = Loop::current()
                .expect("current")
                .update_timer(id, Schedule::Disabled);
        })
        .expect("timer");
    // Driven by GLib's default context, as `gtk::Application::run` would.
    let context = MainContext::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fired.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        context.iteration(true);
    }
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    // A second install is refused (R7).
    assert!(matches!(
        anyloop_glib::install_default(),
        Err(Error::AlreadyRegistered { .. })
    ));
}
