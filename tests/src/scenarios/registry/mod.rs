//! [S59–S66](anyloop::contract#s59) and [E1–E30](anyloop::contract#e1): the typed event registry
//! ([`anyloop::Registry`]) on the backend under test. The registry uses only the vtable, so every
//! backend must carry it unchanged.
//!
//! The scenarios use a small libvirt/libguestfs-like event set: `Lifecycle` and `Reboot` about an
//! object (kinds K and L of [S59](anyloop::contract#s59)), `Library`/`Warning` messages with bytes,
//! `Progress` with a `u64` array, and `Close`.

mod contract;
mod delivery;
mod fixture;
mod lifecycle;

pub use contract::*;
pub use delivery::*;
pub use lifecycle::*;
