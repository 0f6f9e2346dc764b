//! # anyloop-curl: libcurl's multi interface on any anyloop backend
//!
//! TODO crate docs
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

mod client;
mod error;
mod events;
mod ffi;
mod shared;
mod slot;
mod transfer;

pub use client::{Client, ClientBuilder, ClientStats};
pub use error::{Error, Failed, Result};
pub use events::{
    Progress, TransferDone, TransferEvent, TransferId, TransferKind, TransferProgress,
    TransferStarted,
};
pub use transfer::{Fetch, Transfer};

#[doc(no_inline)]
pub use curl;
