//! Readiness conditions of a file descriptor: what a watch asks for and what it is told.

use bitflags::bitflags;

bitflags! {
    /// Conditions on a watched file descriptor.
    ///
    /// Used twice: as the *interest* a library registers (normally `READABLE` and/or
    /// `WRITABLE`; an empty set disables the watch without removing it, contract [R10](crate::contract#r10)), and as
    /// the *events* a callback receives (never empty, a subset of the interest plus `ERROR`
    /// and `HANGUP`, which every enabled watch gets whether it asked or not, [R9](crate::contract#r9)).
    ///
    /// The bit values are libvirt's (`VIR_EVENT_HANDLE_*`). Code that bridges another C
    /// vtable must translate by name, never by value: PulseAudio swaps `ERROR` and `HANGUP`
    /// (contract [D12](crate::contract#d12)).
    ///
    /// ```
    /// use anyloop::IoEvents;
    /// let interest = IoEvents::READABLE | IoEvents::WRITABLE;
    /// assert!(interest.contains(IoEvents::READABLE));
    /// assert_eq!(IoEvents::from_bits(0x10), None); // unknown bits are refused
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
    pub struct IoEvents: u32 {
        /// Data can be read without blocking (or end of file was reached).
        const READABLE = 1;
        /// Data can be written without blocking.
        const WRITABLE = 2;
        /// An error condition on the descriptor. Also how a watch learns that the number it
        /// watches was closed under it, once the loop notices ([R52](crate::contract#r52)):
        /// that `ERROR` comes at most once, disables the watch, and is the last thing it
        /// hears until updated or removed. A number closed while no other descriptor keeps
        /// its file open is forgotten by the kernel without a report: that watch hears
        /// nothing at all (it stays registered until removed).
        const ERROR = 4;
        /// The peer hung up (for a pipe: every writer closed).
        const HANGUP = 8;
    }
}

impl IoEvents {
    /// The conditions every enabled watch receives whether or not it asked for them.
    pub const ALWAYS_REPORTED: IoEvents = IoEvents::ERROR.union(IoEvents::HANGUP);

    /// The bits of `self` that are not defined by this type (non-zero means invalid input).
    ///
    /// ```
    /// use anyloop::IoEvents;
    /// assert_eq!(IoEvents::from_bits_retain(0x13).unknown_bits(), 0x10);
    /// ```
    pub const fn unknown_bits(self) -> u32 {
        self.bits() & !IoEvents::all().bits()
    }

    /// What a watch with interest `self` is told when the descriptor reports `ready`:
    /// the requested bits plus `ERROR`/`HANGUP`, or an empty set when the watch must not be
    /// called (contract [R9](crate::contract#r9), [R11](crate::contract#r11), [R18](crate::contract#r18)). A disabled watch (empty interest) is told nothing.
    ///
    /// ```
    /// use anyloop::IoEvents;
    /// let ready = IoEvents::READABLE | IoEvents::WRITABLE | IoEvents::HANGUP;
    /// assert_eq!(IoEvents::WRITABLE.deliverable(ready), IoEvents::WRITABLE | IoEvents::HANGUP);
    /// assert!(IoEvents::empty().deliverable(ready).is_empty());
    /// ```
    pub const fn deliverable(self, ready: IoEvents) -> IoEvents {
        if self.is_empty() {
            return IoEvents::empty();
        }
        ready.intersection(self.union(IoEvents::ALWAYS_REPORTED))
    }
}
