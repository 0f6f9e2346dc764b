//! The behavioural contract every anyloop backend and the event registry honour: the rules
//! (R1–R60 for watches and timers, E1–E30 for the registry) that the documentation cites and
//! the conformance kit (`anyloop-conformance`) checks on every backend.
#![doc = include_str!("contract.md")]
