//! One fd's record in the table: what the kernel knows of it, what it reported this
//! iteration, and the watches on it.
//!
//! Paid once per watched fd, so it is packed (W6): 24 bytes. Events are kept in a byte each
//! (an [`IoEvents`] has four bits), the three flags in one byte, and the first two watches
//! inline; the rare fd with more watches keeps the rest in [`Crowds`], a side table that is
//! empty, and never looked at, while no fd has a third watch.

use std::os::fd::RawFd;

use rustc_hash::FxHashMap;

use super::poller::{FileId, Token};
use anyloop::IoEvents;

/// How the kernel currently knows an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kernel {
    /// Not registered (no enabled watch): a disabled watch is silent ([R10](anyloop::contract#r10)).
    Unregistered,
    /// Registered with the fd slot's interest.
    Registered,
    /// Refused as always ready: probed every iteration ([D4](anyloop::contract#d4)).
    AlwaysReady,
    /// The fd was found closed; nothing is registered and the watches are quiet ([R52](anyloop::contract#r52)).
    Gone,
    /// The number was closed and reused by another file, which a new watch of the library now
    /// watches through another slot: this slot's watches belong to the old file. Nothing is
    /// ever registered for it again; a watch re-enabled by an update moves to the number's
    /// current slot ([R52](anyloop::contract#r52), [R53](anyloop::contract#r53)).
    Retired,
}

/// Marks an empty inline watch place.
const NO_WATCH: u32 = u32::MAX;

/// Readiness reported as POLLNVAL this iteration.
const INVALID: u8 = 1;
/// An interest change made by a callback is waiting in `State::dirty` for the kernel.
const DIRTY: u8 = 2;
/// That change enabled a watch: check the kernel registration even if the union of the
/// interests ends up unchanged (as `State::sync_kernel`'s `verify`).
const DIRTY_VERIFY: u8 = 4;
/// A kernel call since the last report registered or modified the fd by number, which
/// succeeds only while the number names the registered file: that call was an identity check
/// ([R52](anyloop::contract#r52)), and the next consecutive report needs none.
const SYNCED: u8 = 8;
/// Bits 4..7: how many identity checks in a row the fd passed while it stayed ready (its
/// *level*, capped at [`MAX_LEVEL`]). At level `n` the fd is checked in rounds that are a
/// multiple of `2^n`: an fd ready in every iteration (a stream) pays one check per `2^n`
/// rounds, never one per iteration.
const LEVEL_SHIFT: u32 = 4;
const LEVEL_MASK: u8 = 0b0111_0000;
/// The highest level: an fd that stays ready is checked at least once every 128 rounds, which
/// bounds how long a closed number whose file lives on can go unnoticed.
pub(crate) const MAX_LEVEL: u8 = 7;

/// The kernel-facing state of one watched fd.
pub(crate) struct FdSlot {
    pub(crate) fd: RawFd,
    pub(crate) generation: u32,
    /// The engine round in which the fd was last reported ready: a report in the very next
    /// round is what a closed fd whose file lives on looks like, and is verified ([R52](anyloop::contract#r52)).
    pub(crate) last_round: u32,
    /// The first two watches on this fd (handle slots, in registration order; `NO_WATCH`
    /// where there is none): dispatch reaches them without a pointer chase, which is a cache
    /// miss per event with 10 000 fds. Further watches are in [`Crowds`].
    inline: [u32; 2],
    /// Union of the watches' interests: what the kernel is asked for.
    interest: u8,
    /// Readiness collected in the current iteration (merges duplicate reports, [R12](anyloop::contract#r12)).
    pending: u8,
    pub(crate) kernel: Kernel,
    /// `INVALID`, `DIRTY`, `DIRTY_VERIFY`, `SYNCED`, and the identity-check level.
    flags: u8,
}

/// Bits of an [`IoEvents`] in a byte (it has four).
fn pack(events: IoEvents) -> u8 {
    events.bits() as u8
}

fn unpack(bits: u8) -> IoEvents {
    IoEvents::from_bits_truncate(u32::from(bits))
}

impl FdSlot {
    /// A slot for `fd` with no watch, unknown to the kernel.
    pub(crate) fn new(fd: RawFd, generation: u32) -> Self {
        FdSlot {
            fd,
            generation,
            last_round: 0,
            inline: [NO_WATCH; 2],
            interest: 0,
            pending: 0,
            kernel: Kernel::Unregistered,
            flags: 0,
        }
    }

    pub(crate) fn token(&self, key: usize) -> Token {
        Token::new(key, self.generation)
    }

    /// The union of the watches' interests, as last told to the kernel.
    pub(crate) fn interest(&self) -> IoEvents {
        unpack(self.interest)
    }

    pub(crate) fn set_interest(&mut self, interest: IoEvents) {
        self.interest = pack(interest);
    }

    /// Merges one readiness report; true if the slot had none yet this iteration.
    pub(crate) fn add_report(&mut self, events: IoEvents, invalid: bool) -> bool {
        let first = self.pending == 0 && self.flags & INVALID == 0;
        self.pending |= pack(events);
        if invalid {
            self.flags |= INVALID;
        }
        first
    }

    /// The readiness collected this iteration and whether the fd was reported invalid,
    /// leaving none.
    pub(crate) fn take_report(&mut self) -> (IoEvents, bool) {
        let ready = unpack(std::mem::take(&mut self.pending));
        let invalid = self.flags & INVALID != 0;
        self.flags &= !INVALID;
        (ready, invalid)
    }

    /// Records an interest change waiting for the kernel; true if the slot was not waiting
    /// already (the caller lists it then).
    pub(crate) fn mark_dirty(&mut self, verify: bool) -> bool {
        let listed = self.flags & DIRTY != 0;
        self.flags |= DIRTY;
        if verify {
            self.flags |= DIRTY_VERIFY;
        }
        !listed
    }

    /// Takes the waiting change: `None` if there is none, else whether to verify.
    pub(crate) fn take_dirty(&mut self) -> Option<bool> {
        if self.flags & DIRTY == 0 {
            return None;
        }
        let verify = self.flags & DIRTY_VERIFY != 0;
        self.flags &= !(DIRTY | DIRTY_VERIFY);
        Some(verify)
    }

    /// A kernel call just registered or modified this fd by number: it named the registered
    /// file then (see [`SYNCED`]).
    pub(crate) fn mark_synced(&mut self) {
        self.flags |= SYNCED;
    }

    /// Whether this report of an fd the kernel tracks calls for an identity check
    /// ([R52](anyloop::contract#r52)): the fd was reported in the previous round too (a
    /// closed number whose file lives on is reported in every round, level-triggered), no
    /// kernel call checked it since, and `round` is a multiple of `2^level`. A report that
    /// breaks the streak sets the level back to 0, so a streak's first consecutive report is
    /// always checked. Consumes the synced mark.
    pub(crate) fn identity_check_due(&mut self, consecutive: bool, round: u32) -> bool {
        let synced = self.flags & SYNCED != 0;
        self.flags &= !SYNCED;
        if !consecutive {
            self.flags &= !LEVEL_MASK;
            return false;
        }
        let level = (self.flags & LEVEL_MASK) >> LEVEL_SHIFT;
        !synced && round & ((1u32 << level) - 1) == 0
    }

    /// The identity check that [`identity_check_due`](Self::identity_check_due) asked for
    /// found the same file: check half as often from now on (down to [`MAX_LEVEL`]).
    pub(crate) fn identity_confirmed(&mut self) {
        let level = ((self.flags & LEVEL_MASK) >> LEVEL_SHIFT).saturating_add(1);
        self.flags = (self.flags & !LEVEL_MASK) | (level.min(MAX_LEVEL) << LEVEL_SHIFT);
    }

    /// The handle slots of the watches on this fd (fd slot `key`), in registration order.
    #[inline]
    pub(crate) fn watch_keys<'a>(
        &self,
        key: usize,
        crowds: &'a Crowds,
    ) -> impl Iterator<Item = usize> + 'a {
        let inline = self.inline;
        let more: &'a [u32] = if inline[1] != NO_WATCH {
            crowds.get(key)
        } else {
            &[]
        };
        inline
            .into_iter()
            .take_while(|&w| w != NO_WATCH)
            .chain(more.iter().copied())
            .map(|w| w as usize)
    }

    /// Adds watch slot `watch` last. Handle slots are below 2^24 (an id's tag), so they fit.
    pub(crate) fn push_watch(&mut self, key: usize, watch: usize, crowds: &mut Crowds) {
        let watch = watch as u32;
        if let Some(place) = self.inline.iter_mut().find(|w| **w == NO_WATCH) {
            *place = watch;
        } else {
            crowds.0.entry(key).or_default().push(watch);
        }
    }

    /// Removes watch slot `watch`, keeping the others' order; true if none is left.
    pub(crate) fn remove_watch(&mut self, key: usize, watch: usize, crowds: &mut Crowds) -> bool {
        let watch = watch as u32;
        let Some(pos) = self.inline.iter().position(|&w| w == watch) else {
            if let Some(more) = crowds.0.get_mut(&key) {
                more.retain(|&w| w != watch);
                if more.is_empty() {
                    crowds.0.remove(&key);
                }
            }
            return false;
        };
        if pos == 0 {
            self.inline[0] = self.inline[1];
        }
        // The first crowded watch (if any) moves inline.
        self.inline[1] = match crowds.0.get_mut(&key) {
            Some(more) if self.inline[0] != NO_WATCH => {
                let next = more.remove(0);
                if more.is_empty() {
                    crowds.0.remove(&key);
                }
                next
            }
            _ => NO_WATCH,
        };
        self.inline[0] == NO_WATCH
    }
}

/// The watches beyond the second on an fd, by fd slot, in registration order. Few fds have
/// three watches; an inline list long enough for them would cost every fd (W6).
#[derive(Default)]
pub(crate) struct Crowds(FxHashMap<usize, Vec<u32>>);

impl Crowds {
    fn get(&self, key: usize) -> &[u32] {
        if self.0.is_empty() {
            return &[];
        }
        self.0.get(&key).map_or(&[], Vec::as_slice)
    }
}

/// For an fd probed by number (always ready, e.g. a regular file; [D4](anyloop::contract#d4)):
/// the file it named when registered, by fd slot, so that a number reused by another file is
/// told apart ([R52](anyloop::contract#r52)). A side table: few fds need it, and a field would
/// cost every fd slot (W6).
#[derive(Default)]
pub(crate) struct Identities(FxHashMap<usize, FileId>);

impl Identities {
    /// Records the file of fd slot `key` (or forgets it if it could not be read).
    pub(crate) fn remember(&mut self, key: usize, file: Option<FileId>) {
        match file {
            Some(file) => {
                self.0.insert(key, file);
            }
            None => {
                self.0.remove(&key);
            }
        }
    }

    /// The file recorded for fd slot `key`.
    pub(crate) fn get(&self, key: usize) -> Option<&FileId> {
        self.0.get(&key)
    }

    /// Fd slot `key` was removed (its number may be reused by a new slot).
    pub(crate) fn forget(&mut self, key: usize) {
        if !self.0.is_empty() {
            self.0.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What W6 counts per watched fd (it was 48 bytes with a `SmallVec` of watches).
    #[test]
    fn an_fd_slot_is_24_bytes() {
        assert_eq!(std::mem::size_of::<FdSlot>(), 24);
        assert_eq!(std::mem::size_of::<Option<FdSlot>>(), 24);
    }

    fn keys(slot: &FdSlot, key: usize, crowds: &Crowds) -> Vec<usize> {
        slot.watch_keys(key, crowds).collect()
    }

    /// Watches keep registration order whichever is removed, inline or crowded, and a
    /// crowded watch moves inline when a place frees up.
    #[test]
    fn watches_keep_registration_order() {
        let mut crowds = Crowds::default();
        let mut other = FdSlot::new(4, 1);
        other.push_watch(9, 100, &mut crowds);
        let mut slot = FdSlot::new(3, 1);
        for w in [10, 11, 12, 13, 14] {
            slot.push_watch(7, w, &mut crowds);
        }
        assert_eq!(keys(&slot, 7, &crowds), [10, 11, 12, 13, 14]);
        assert_eq!(keys(&other, 9, &crowds), [100]);
        assert!(!slot.remove_watch(7, 13, &mut crowds));
        assert_eq!(keys(&slot, 7, &crowds), [10, 11, 12, 14]);
        assert!(!slot.remove_watch(7, 10, &mut crowds));
        assert_eq!(keys(&slot, 7, &crowds), [11, 12, 14]);
        assert!(!slot.remove_watch(7, 12, &mut crowds));
        assert_eq!(keys(&slot, 7, &crowds), [11, 14]);
        assert!(crowds.0.is_empty());
        slot.push_watch(7, 15, &mut crowds);
        assert_eq!(keys(&slot, 7, &crowds), [11, 14, 15]);
        assert!(!slot.remove_watch(7, 14, &mut crowds));
        assert!(!slot.remove_watch(7, 99, &mut crowds));
        assert!(!slot.remove_watch(7, 11, &mut crowds));
        assert_eq!(keys(&slot, 7, &crowds), [15]);
        assert!(slot.remove_watch(7, 15, &mut crowds));
        assert_eq!(keys(&slot, 7, &crowds), Vec::<usize>::new());
        assert!(crowds.0.is_empty());
    }

    /// An fd ready round after round is checked at its first consecutive report, then at
    /// rounds spaced by 2, 4, ... up to 128; a round without a report starts over; a kernel
    /// call in between stands for a check.
    #[test]
    fn identity_checks_thin_out_while_an_fd_stays_ready() {
        let mut slot = FdSlot::new(3, 1);
        assert!(
            !slot.identity_check_due(false, 1),
            "a first report needs no check"
        );
        let mut checks = Vec::new();
        for round in 2..=1000u32 {
            if slot.identity_check_due(true, round) {
                checks.push(round);
                slot.identity_confirmed();
            }
        }
        assert_eq!(checks[..4], [2, 4, 8, 16]);
        let gaps: Vec<u32> = checks.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&gap| gap <= 128), "{gaps:?}");
        assert!(checks.len() < 15, "{} checks in 999 rounds", checks.len());
        // The streak breaks: the next consecutive report is checked at once again.
        assert!(!slot.identity_check_due(false, 2000));
        assert!(slot.identity_check_due(true, 2001));
        // A kernel call since the last report stands for the check.
        slot.mark_synced();
        assert!(!slot.identity_check_due(true, 2002));
        assert!(slot.identity_check_due(true, 2002), "only once");
        // The level and the synced mark leave the other flags alone.
        slot.set_interest(IoEvents::READABLE);
        assert!(slot.mark_dirty(true));
        slot.mark_synced();
        slot.identity_confirmed();
        assert_eq!(slot.take_dirty(), Some(true));
        assert_eq!(slot.take_report(), (IoEvents::empty(), false));
    }

    #[test]
    fn reports_merge_and_flags_stay_apart() {
        let mut slot = FdSlot::new(3, 1);
        slot.set_interest(IoEvents::READABLE | IoEvents::WRITABLE);
        assert!(slot.add_report(IoEvents::READABLE, false));
        assert!(!slot.add_report(IoEvents::HANGUP, true));
        assert!(slot.mark_dirty(false));
        assert!(!slot.mark_dirty(true));
        assert_eq!(
            slot.take_report(),
            (IoEvents::READABLE | IoEvents::HANGUP, true)
        );
        assert_eq!(slot.take_report(), (IoEvents::empty(), false));
        assert_eq!(slot.take_dirty(), Some(true));
        assert_eq!(slot.take_dirty(), None);
        assert!(slot.add_report(IoEvents::ERROR, false));
        assert_eq!(slot.interest(), IoEvents::READABLE | IoEvents::WRITABLE);
    }
}
