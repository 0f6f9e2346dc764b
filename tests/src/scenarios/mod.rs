//! The battery, one module per behaviour. Each `pub fn` is one scenario taking an [`Env`];
//! its name gives the contract scenario (`sNN`) or the rule it pins (`rNN`, `eNN`) and ends
//! with the rules it checks.
//!
//! | module | what it checks |
//! |---|---|
//! | [`libvirt`] | [S1–S12](anyloop::contract#s1): libvirt's own loop test, replayed |
//! | [`frees`] | [S13–S20](anyloop::contract#s13), [R21–R26](anyloop::contract#r21): when, where and how often frees run |
//! | [`delivery`] | [S21–S27](anyloop::contract#s21), [R8–R13](anyloop::contract#r8), [R51](anyloop::contract#r51): level-triggered delivery and what callbacks are told |
//! | [`mutation`] | [S28–S29](anyloop::contract#s28), [R15–R20](anyloop::contract#r15): adds, updates and removes during dispatch |
//! | [`timers`] | [S32–S43](anyloop::contract#s32), [R27–R38](anyloop::contract#r27): schedules, order, restarts, arithmetic |
//! | [`one_shot`] | [R27](anyloop::contract#r27), [R29](anyloop::contract#r29), [R36](anyloop::contract#r36): `Schedule::Once` fires once, reads `Disabled`, re-arms |
//! | [`threads`] | [S44–S50](anyloop::contract#s44), [R39–R45](anyloop::contract#r39): operations from other threads, wake-ups |
//! | [`thread_bound`] | [R42](anyloop::contract#r42), [R50](anyloop::contract#r50), [E24](anyloop::contract#e24): thread-bound callbacks (`watch_local`, `on_local`...) |
//! | [`lifecycle`] | [S47–S53](anyloop::contract#s47), [R46–R50](anyloop::contract#r46): run, quit, destruction, per-thread and default loops |
//! | [`run_until`] | [R46](anyloop::contract#r46), [R47](anyloop::contract#r47): `Runner::run_until` and `Loop::wake` |
//! | [`stats`] | [R57](anyloop::contract#r57): `LoopStats` from every thread, what each count means |
//! | [`bad_input`] | [S54–S57](anyloop::contract#s54), [R51–R60](anyloop::contract#r51): closed fds, bad arguments, panics |
//! | [`stress`] | threads churning registrations while the loop runs |
//! | [`model`] | random operation sequences against an executable model |
//! | [`registry`] | [S59–S66](anyloop::contract#s59), [E1–E30](anyloop::contract#e1): the typed event registry |
//! | [`closed_fd`] | [R52](anyloop::contract#r52), [B62](anyloop::contract#b62): watched fds closed under their watch, every way: the file kept open by a dup, a child or `SCM_RIGHTS`; the number reused by a pipe, a socket, a regular file; disabled in the same iteration; closed before the first iteration and around an epoll reset, then updated and removed |
//! | [`async_layer`] | the futures layer (`anyloop-async`) on the backend: futures on the loop thread, drop, wake-ups from other threads, a loop that has gone, tasks, sleeps, intervals, registry streams, socket I/O |
//!
//! Scenarios that close a descriptor number and check which file takes it next (all of
//! [`closed_fd`], and the reuse scenarios of [`bad_input`]) run alone among the kit's
//! scenarios ([`FdUse::Exclusive`](crate::FdUse::Exclusive)); the others run side by side.
//!
//! [`Env`]: crate::runner::Env

pub mod async_layer;
pub mod bad_input;
pub mod closed_fd;
pub mod delivery;
pub mod frees;
pub mod libvirt;
pub mod lifecycle;
pub mod model;
pub mod mutation;
pub mod one_shot;
pub mod registry;
pub mod run_until;
pub mod stats;
pub mod stress;
pub mod thread_bound;
pub mod threads;
pub mod timers;
