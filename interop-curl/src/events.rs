//! What a [`Client`](crate::Client) reports through its [`Registry`](anyloop::Registry): a
//! transfer started, made progress, ended.

use std::fmt;
use std::time::Duration;

use crate::error::Error;

/// Identifies one transfer of one [`Client`](crate::Client) for its whole life (never
/// reused): the object key of the client's events, so an application can listen to one
/// transfer (`client.events().listen::<TransferProgress>().object(id)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transfer {}", self.0)
    }
}

/// How far a transfer got: bytes so far, and the totals when they are known (a
/// `Content-Length` for a download, the size given to libcurl for an upload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Body bytes received so far.
    pub downloaded: u64,
    /// Body bytes expected, when the server announced them.
    pub download_total: Option<u64>,
    /// Body bytes sent so far.
    pub uploaded: u64,
    /// Body bytes to send, when libcurl was told (`CURLOPT_INFILESIZE`,
    /// `CURLOPT_POSTFIELDSIZE`...).
    pub upload_total: Option<u64>,
}

/// A transfer was handed to libcurl ([`Client::start`](crate::Client::start) or
/// [`Client::fetch`](crate::Client::fetch)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferStarted {
    /// The transfer.
    pub transfer: TransferId,
}

/// A transfer moved bytes. Reported after the loop iteration that moved them, at most once
/// per transfer every [`ClientBuilder::progress_interval`](crate::ClientBuilder::progress_interval),
/// and only while a callback listens to this kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferProgress {
    /// The transfer.
    pub transfer: TransferId,
    /// Where it is now.
    pub progress: Progress,
}

/// A transfer ended: completed (whatever the HTTP status: libcurl only fails a transfer
/// for a status with `CURLOPT_FAILONERROR`), failed, or stopped because the client was
/// closed or its loop went away. A cancelled transfer (its handle or future dropped) reports
/// nothing more.
#[derive(Debug, Clone)]
pub struct TransferDone {
    /// The transfer.
    pub transfer: TransferId,
    /// `Ok` when libcurl completed it, else why not.
    pub result: Result<(), Error>,
    /// The last response code (HTTP status), 0 when no response came.
    pub response_code: u32,
    /// Where it ended.
    pub progress: Progress,
    /// From the start to the end, as libcurl counts it (`CURLINFO_TOTAL_TIME`).
    pub total_time: Duration,
}

anyloop::event_set! {
    /// Everything a [`Client`](crate::Client) reports, about one transfer each.
    #[derive(Debug, Clone)]
    pub enum TransferEvent {
        kind: TransferKind,
        key: TransferId,
        /// A transfer was handed to libcurl.
        Started(TransferStarted) => transfer,
        /// A transfer moved bytes.
        Progress(TransferProgress) => transfer,
        /// A transfer ended.
        Done(TransferDone) => transfer,
    }
}
