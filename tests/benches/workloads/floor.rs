//! The floor: a raw level-triggered epoll loop, the Rust twin of the C peers' raw epoll loop.
//!
//! One `epoll_wait` per iteration, dispatch through one indirect call per event, timers in an
//! index-tracked binary min-heap (O(log n) add, update and remove), an eventfd for
//! cross-thread wake-ups. No ids, no locks, no deferred frees: what "nothing but the syscalls
//! and one indirect call" costs. Every backend is reported as a ratio to it.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use anyloop::IoEvents;
use rustix::event::epoll;

use crate::contender::{oneshot_fired, xt_fired, Contender, Step};
use crate::sys::{borrow, now_ns, read_eventfd, write_eventfd};

/// A registered read watch: its fd and its callback.
struct FdWatch {
    fd: RawFd,
    cb: Box<dyn FnMut(RawFd) + Send>,
}

/// A W7/W8 watch: its fd, the interest the kernel holds, and its callback.
struct IoWatch {
    fd: RawFd,
    interest: IoEvents,
    cb: Box<dyn FnMut(RawFd, IoEvents) -> Step + Send>,
}

/// The bit of an epoll key that marks an [`IoWatch`] (the rest is its index).
const IO_KEY: u64 = 1 << 63;

/// The epoll flags of an interest.
pub(crate) fn epoll_flags(interest: IoEvents) -> epoll::EventFlags {
    let mut flags = epoll::EventFlags::empty();
    if interest.contains(IoEvents::READABLE) {
        flags |= epoll::EventFlags::IN;
    }
    if interest.contains(IoEvents::WRITABLE) {
        flags |= epoll::EventFlags::OUT;
    }
    flags
}

/// What an epoll report tells a watch with `interest`: the ready part of its interest, plus
/// `ERROR` and `HANGUP`.
fn told(flags: epoll::EventFlags, interest: IoEvents) -> IoEvents {
    let mut events = IoEvents::empty();
    if flags.contains(epoll::EventFlags::IN) {
        events |= IoEvents::READABLE;
    }
    if flags.contains(epoll::EventFlags::OUT) {
        events |= IoEvents::WRITABLE;
    }
    if flags.contains(epoll::EventFlags::ERR) {
        events |= IoEvents::ERROR;
    }
    if flags.contains(epoll::EventFlags::HUP) {
        events |= IoEvents::HANGUP;
    }
    events & (interest | IoEvents::ALWAYS_REPORTED)
}

/// A timer node. `pos` is its index in the heap (`NONE` when not queued), kept up to date by
/// every swap so update and remove find it in O(1).
struct Node {
    expiry: u64,
    pos: u32,
    cb: fn(),
    oneshot: bool,
}

const NONE: u32 = u32::MAX;

/// Timer nodes live in a slab (a vector plus a free list); the heap holds slab indices.
#[derive(Default)]
pub(crate) struct Heap {
    nodes: Vec<Node>,
    free: Vec<u32>,
    heap: Vec<u32>,
}

impl Heap {
    fn key(&self, pos: usize) -> u64 {
        self.nodes[self.heap[pos] as usize].expiry
    }

    fn place(&mut self, pos: usize, node: u32) {
        self.heap[pos] = node;
        self.nodes[node as usize].pos = pos as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        let node = self.heap[pos];
        let key = self.nodes[node as usize].expiry;
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.key(parent) <= key {
                break;
            }
            let moved = self.heap[parent];
            self.place(pos, moved);
            pos = parent;
        }
        self.place(pos, node);
    }

    fn sift_down(&mut self, mut pos: usize) {
        let node = self.heap[pos];
        let key = self.nodes[node as usize].expiry;
        let len = self.heap.len();
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.key(right) < self.key(left) {
                right
            } else {
                left
            };
            if self.key(child) >= key {
                break;
            }
            let moved = self.heap[child];
            self.place(pos, moved);
            pos = child;
        }
        self.place(pos, node);
    }

    pub(crate) fn insert(&mut self, expiry: u64, cb: fn(), oneshot: bool) -> u32 {
        let node = Node {
            expiry,
            pos: NONE,
            cb,
            oneshot,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.nodes[idx as usize] = node;
                idx
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.heap.push(idx);
        self.sift_up(self.heap.len() - 1);
        idx
    }

    /// Takes `idx` out of the heap (the node stays allocated).
    pub(crate) fn unlink(&mut self, idx: u32) {
        let pos = self.nodes[idx as usize].pos as usize;
        let last = self.heap.pop().expect("unlink from an empty heap");
        self.nodes[idx as usize].pos = NONE;
        if pos < self.heap.len() {
            self.place(pos, last);
            self.sift_up(pos);
            let pos = self.nodes[last as usize].pos as usize;
            self.sift_down(pos);
        }
    }

    pub(crate) fn rekey(&mut self, idx: u32, expiry: u64) {
        self.nodes[idx as usize].expiry = expiry;
        let pos = self.nodes[idx as usize].pos as usize;
        self.sift_up(pos);
        let pos = self.nodes[idx as usize].pos as usize;
        self.sift_down(pos);
    }

    fn remove(&mut self, idx: u32) {
        self.unlink(idx);
        self.free.push(idx);
    }

    pub(crate) fn earliest(&self) -> Option<u64> {
        self.heap
            .first()
            .map(|&idx| self.nodes[idx as usize].expiry)
    }
}

/// The raw level-triggered epoll loop.
pub struct Floor {
    epoll: OwnedFd,
    watches: Vec<FdWatch>,
    io_watches: Vec<IoWatch>,
    timers: Heap,
    events: Vec<epoll::Event>,
    /// W3's eventfd, kept open for the loop's lifetime.
    wake: Option<OwnedFd>,
}

impl Floor {
    /// W6: a timer node that is not queued (the floor's "disabled" timer).
    pub(crate) fn timer_add_disabled(&mut self) -> u32 {
        let idx = self
            .timers
            .insert(u64::MAX, crate::contender::never_fires, false);
        self.timers.unlink(idx);
        idx
    }
}

fn deadline(after: Duration) -> u64 {
    now_ns() + after.as_nanos() as u64
}

impl Contender for Floor {
    type Timer = u32;

    fn make() -> Self {
        Floor {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll_create1"),
            watches: Vec::new(),
            io_watches: Vec::new(),
            timers: Heap::default(),
            events: Vec::with_capacity(256),
            wake: None,
        }
    }

    fn watch_add(&mut self, fd: RawFd, cb: impl FnMut(RawFd) + Send + 'static) {
        let key = self.watches.len() as u64;
        self.watches.push(FdWatch {
            fd,
            cb: Box::new(cb),
        });
        // SAFETY: the workload keeps `fd` open until this loop is dropped (see `sys::borrow`).
        let source = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        epoll::add(
            &self.epoll,
            source,
            epoll::EventData::new_u64(key),
            epoll::EventFlags::IN,
        )
        .expect("epoll_ctl ADD");
    }

    fn io_watch_add(
        &mut self,
        fd: RawFd,
        interest: IoEvents,
        cb: impl FnMut(RawFd, IoEvents) -> Step + Send + 'static,
    ) {
        let key = self.io_watches.len() as u64 | IO_KEY;
        self.io_watches.push(IoWatch {
            fd,
            interest,
            cb: Box::new(cb),
        });
        epoll::add(
            &self.epoll,
            borrow(fd),
            epoll::EventData::new_u64(key),
            epoll_flags(interest),
        )
        .expect("epoll_ctl ADD");
    }

    fn run_once(&mut self) {
        // The C floor's timeout: block without timers, else until the earliest one (ms,
        // rounded up, as rustix converts it for epoll_pwait).
        let timeout = self.timers.earliest().map(|expiry| {
            let wait = expiry.saturating_sub(now_ns());
            rustix::time::Timespec {
                tv_sec: (wait / 1_000_000_000) as i64,
                tv_nsec: (wait % 1_000_000_000) as _,
            }
        });
        self.events.clear();
        let events = &mut self.events;
        loop {
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(events),
                timeout.as_ref(),
            ) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => panic!("epoll_wait: {err}"),
            }
        }
        for event in &self.events {
            let key = event.data.u64();
            if key & IO_KEY == 0 {
                let watch = &mut self.watches[key as usize];
                (watch.cb)(watch.fd);
                continue;
            }
            // A W7/W8 watch: an interest change reaches the kernel at once, as a raw loop's
            // update does.
            let watch = &mut self.io_watches[(key & !IO_KEY) as usize];
            let step = (watch.cb)(watch.fd, told(event.flags, watch.interest));
            if step.interest != watch.interest {
                watch.interest = step.interest;
                epoll::modify(
                    &self.epoll,
                    borrow(watch.fd),
                    event.data,
                    epoll_flags(step.interest),
                )
                .expect("epoll_ctl MOD");
            }
        }
        if self.timers.earliest().is_some() {
            let now = now_ns();
            while let Some(expiry) = self.timers.earliest() {
                if expiry > now {
                    break;
                }
                let idx = self.timers.heap[0];
                let node = &self.timers.nodes[idx as usize];
                let (cb, oneshot) = (node.cb, node.oneshot);
                // A periodic timer would be re-armed here; the workloads only fire one-shots.
                debug_assert!(oneshot, "only one-shots fire in these workloads");
                self.timers.remove(idx);
                cb();
            }
        }
    }

    fn timer_add(&mut self, after: Duration, cb: fn()) -> u32 {
        self.timers.insert(deadline(after), cb, false)
    }

    fn timer_update(&mut self, timer: u32, after: Duration) {
        self.timers.rekey(timer, deadline(after));
    }

    fn timer_remove(&mut self, timer: u32) {
        self.timers.remove(timer);
    }

    fn oneshot0(&mut self) {
        self.timers.insert(now_ns(), oneshot_fired, true);
    }

    fn w6(kind: &str, n: usize) -> Option<f64> {
        Some(crate::w6::floor(kind, n))
    }

    fn w7c(p: &crate::measure::Params) -> Vec<crate::measure::Measure> {
        crate::w7c::floor(p)
    }

    fn xt_variants() -> &'static [&'static str] {
        &["eventfd"]
    }

    fn xt_setup(&mut self, _variant: usize) -> Box<dyn FnMut() + Send> {
        let efd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::NONBLOCK | rustix::event::EventfdFlags::CLOEXEC,
        )
        .expect("eventfd");
        let raw = efd.as_raw_fd();
        self.watch_add(raw, |fd| {
            read_eventfd(fd);
            xt_fired();
        });
        self.wake = Some(efd);
        // The eventfd outlives every post: the W3 driver joins the loop thread (which owns
        // it) only after the last post was answered.
        Box::new(move || write_eventfd(raw))
    }
}
