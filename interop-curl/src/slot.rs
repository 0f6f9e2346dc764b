//! One transfer in the client's table, with its handler type erased: what the client does
//! with a transfer whatever `H` is.

use std::any::Any;
use std::time::{Duration, Instant};

use curl::easy::{Easy2, Handler};
use curl::multi::{Easy2Handle, Multi};

use crate::error::{Error, Failed};
use crate::events::{Progress, TransferDone, TransferId};
use crate::ffi;

/// What a finished transfer's owner is given.
pub(crate) type Outcome<H> = Result<Easy2<H>, Failed<H>>;

/// The owner's side of a transfer: called once with its outcome.
pub(crate) type Done<H> = Box<dyn FnOnce(Outcome<H>)>;

/// A transfer that ended: the event to report, and the owner's call to make once the
/// client's state is consistent again (no borrow held: the owner may start, cancel or close).
pub(crate) struct Ended {
    pub(crate) event: TransferDone,
    pub(crate) deliver: Box<dyn FnOnce()>,
}

/// A transfer, whatever its handler type.
pub(crate) trait Slot {
    /// The easy handle, for libcurl calls the `curl` crate does not wrap.
    fn raw(&self) -> *mut curl_sys::CURL;
    /// Bytes moved so far, and the totals when known.
    fn progress(&self) -> Progress;
    /// Removes the transfer from `multi` and prepares its owner's call with `result`.
    fn end(self: Box<Self>, multi: &Multi, id: TransferId, result: Result<(), Error>) -> Ended;
    /// Removes the transfer from `multi` without telling its owner (a cancel): the easy
    /// handle as a `Box<Easy2<H>>`, when libcurl let go of it.
    fn take_easy(self: Box<Self>, multi: &Multi) -> Option<Box<dyn Any>>;
}

/// The table's entry: the typed transfer and what the client tracks about it.
pub(crate) struct Entry {
    pub(crate) slot: Box<dyn Slot>,
    pub(crate) paused: bool,
    /// The progress last reported in an event, and when.
    pub(crate) reported: Progress,
    pub(crate) reported_at: Option<Instant>,
}

/// The typed transfer.
pub(crate) struct Typed<H> {
    pub(crate) handle: Easy2Handle<H>,
    pub(crate) done: Done<H>,
}

/// A libcurl figure in bytes (a `double`, `-1` when unknown) as a count.
fn bytes(value: Result<f64, curl::Error>) -> Option<u64> {
    value.ok().filter(|v| *v >= 0.0).map(|v| v as u64)
}

impl<H: Handler + 'static> Slot for Typed<H> {
    fn raw(&self) -> *mut curl_sys::CURL {
        self.handle.raw()
    }

    fn progress(&self) -> Progress {
        Progress {
            downloaded: bytes(self.handle.download_size()).unwrap_or(0),
            download_total: bytes(self.handle.content_length_download()),
            uploaded: bytes(self.handle.upload_size()).unwrap_or(0),
            upload_total: ffi::upload_total(&self.handle),
        }
    }

    fn end(self: Box<Self>, multi: &Multi, id: TransferId, result: Result<(), Error>) -> Ended {
        let progress = self.progress();
        let response_code = self.handle.response_code().unwrap_or(0);
        let total_time = self.handle.total_time().unwrap_or(Duration::ZERO);
        let Typed { handle, done } = *self;
        let outcome = match (multi.remove2(handle), result) {
            (Ok(easy), Ok(())) => Ok(easy),
            (Ok(easy), Err(error)) => Err(Failed::new(error, Some(easy))),
            (Err(source), _) => Err(Failed::new(
                Error::Multi {
                    op: "removing a finished transfer",
                    source,
                },
                None,
            )),
        };
        let event = TransferDone {
            transfer: id,
            result: outcome
                .as_ref()
                .map(|_| ())
                .map_err(|failed| failed.error().clone()),
            response_code,
            progress,
            total_time,
        };
        Ended {
            event,
            deliver: Box::new(move || done(outcome)),
        }
    }

    fn take_easy(self: Box<Self>, multi: &Multi) -> Option<Box<dyn Any>> {
        let Typed { handle, done } = *self;
        drop(done);
        match multi.remove2(handle) {
            Ok(easy) => Some(Box::new(easy)),
            Err(error) => {
                tracing::warn!(%error, "libcurl did not let go of a cancelled transfer");
                None
            }
        }
    }
}
