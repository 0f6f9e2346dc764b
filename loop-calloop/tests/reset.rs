//! The [B62](anyloop::contract#b62) trap: a watched fd closed while a dup keeps its file open cannot be removed from
//! epoll by number, so the engine rebuilds its epoll instance behind the same fd number
//! (`dup3`). That silently drops calloop's registration of the old instance; the backend must
//! register the new one, or no watch is ever delivered again.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyloop::IoEvents;
use anyloop_calloop::CalloopSource;

#[test]
fn watches_are_still_delivered_after_the_epoll_instance_was_reset() {
    let mut event_loop = calloop::EventLoop::<()>::try_new().expect("calloop");
    let backend = CalloopSource::new(&event_loop.handle()).expect("backend");
    let lp = backend.handle();
    let tick = Some(Duration::from_millis(20));

    // A watch on a dup of `kept`; the dup is closed while `kept` stays open.
    let (mut writer, kept) = UnixStream::pair().expect("pair");
    let dup = kept.try_clone().expect("dup");
    let old = lp
        .add_watch(dup.as_raw_fd(), IoEvents::READABLE, |_, _, _| {})
        .map_err(anyloop::Error::from)
        .expect("add");
    backend
        .dispatch(&mut event_loop, tick, &mut ())
        .expect("dispatch");
    drop(dup);
    writer.write_all(b"x").expect("write"); // readable through the surviving file
    backend
        .dispatch(&mut event_loop, tick, &mut ())
        .expect("dispatch");
    // The kernel registration cannot be removed by number any more (EBADF): it is reported
    // again and again until the engine resets its epoll instance.
    lp.remove_watch(old).expect("remove");
    for _ in 0..5 {
        backend
            .dispatch(&mut event_loop, tick, &mut ())
            .expect("dispatch");
    }

    // No spin: an idle window makes few iterations.
    let before = backend.handle().stats().iterations;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        backend
            .dispatch(&mut event_loop, Some(Duration::from_millis(50)), &mut ())
            .expect("dispatch");
    }
    let spins = backend.handle().stats().iterations - before;
    assert!(
        spins < 20,
        "the closed fd makes the loop spin: {spins} iterations in 200 ms"
    );

    // A new watch is delivered: calloop still hears the (new) epoll instance.
    let (mut tx, rx) = UnixStream::pair().expect("pair");
    let mut reader = rx.try_clone().expect("dup");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let _watch = lp
        .watch(rx.as_raw_fd(), IoEvents::READABLE, move |_, _, _| {
            let mut buf = [0u8; 8];
            let _ = reader.read(&mut buf);
            h.fetch_add(1, Ordering::SeqCst);
        })
        .expect("watch");
    tx.write_all(b"y").expect("write");
    let deadline = Instant::now() + Duration::from_secs(2);
    while hits.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        backend
            .dispatch(&mut event_loop, Some(Duration::from_millis(100)), &mut ())
            .expect("dispatch");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a watch added after the epoll reset was never delivered"
    );
    drop(kept);
}
