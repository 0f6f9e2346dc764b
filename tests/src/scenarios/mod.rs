//! The battery, one module per behaviour. Each `pub fn` is one scenario taking an [`Env`];
//! its name gives the contract scenario (`sNN`) or the rule it pins (`rNN`) and ends with the
//! rules it checks.
//!
//! [`Env`]: crate::runner::Env

pub mod bad_input;
pub mod delivery;
pub mod frees;
pub mod libvirt;
pub mod lifecycle;
pub mod model;
pub mod mutation;
pub mod registry;
pub mod stress;
pub mod threads;
pub mod timers;
