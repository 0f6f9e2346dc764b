//! The crate's errors: what libcurl said, or why a transfer never reached it.

use std::fmt;
use std::sync::Arc;

use curl::easy::Easy2;
use sync_wrapper::SyncWrapper;

use crate::events::TransferId;

/// What went wrong with a transfer or with the [`Client`](crate::Client).
///
/// Cheap to clone (the loop's own error is shared), so that the same error can reach the
/// transfer's owner and the [`TransferDone`](crate::TransferDone) event.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// libcurl ended the transfer with an error code (`CURLE_*`): a refused connection, a
    /// timeout, a connection closed before the body was complete, a certificate it does not
    /// trust... `source` carries libcurl's code and its message (with the transfer's own
    /// detail, `CURLOPT_ERRORBUFFER`, when there is one).
    #[error("{transfer} failed: {source}")]
    Curl {
        /// The transfer.
        transfer: TransferId,
        /// libcurl's code and message.
        #[source]
        source: curl::Error,
    },
    /// libcurl's multi handle refused an operation (`CURLM_*`), for example a call made from
    /// inside one of libcurl's own callbacks (`CURLM_RECURSIVE_API_CALL`).
    #[error("libcurl's multi handle refused {op}: {source}")]
    Multi {
        /// What was asked (`"adding a transfer"`, `"a socket action"`...).
        op: &'static str,
        /// libcurl's code and message.
        #[source]
        source: curl::MultiError,
    },
    /// libcurl refused an option or a pause/resume on an easy handle.
    #[error("libcurl refused {what}: {source}")]
    Easy {
        /// What was asked (`"CURLOPT_TIMEOUT"`, `"pausing"`...).
        what: &'static str,
        /// libcurl's code and message.
        #[source]
        source: curl::Error,
    },
    /// The transfer is not in flight any more: it ended, or it was cancelled.
    #[error("{transfer} is not in flight (it ended or was cancelled)")]
    NotInFlight {
        /// The transfer.
        transfer: TransferId,
    },
    /// The client was closed ([`Client::close`](crate::Client::close), or its last clone was
    /// dropped): its multi handle takes no transfer, and the transfers it had were stopped.
    #[error("the curl client is closed")]
    Closed,
    /// The event loop the client runs on was destroyed: the transfers it had were stopped
    /// ([R48](anyloop::contract#r48)).
    #[error("the curl client's event loop is gone (it was dropped)")]
    LoopGone,
    /// The event loop refused to watch one of libcurl's sockets or to arm its timer (for
    /// example a thread-bound registration off the loop's thread).
    #[error("the event loop refused {what}: {source}")]
    Loop {
        /// What was asked of the loop.
        what: &'static str,
        /// The loop's error.
        #[source]
        source: Arc<anyloop::Error>,
    },
}

impl Error {
    /// libcurl's `CURLE_*` code, for [`Error::Curl`].
    pub fn curl_code(&self) -> Option<u32> {
        match self {
            Error::Curl { source, .. } => Some(source.code()),
            _ => None,
        }
    }

    /// The transfer's libcurl error, for [`Error::Curl`].
    pub fn curl_error(&self) -> Option<&curl::Error> {
        match self {
            Error::Curl { source, .. } => Some(source),
            _ => None,
        }
    }

    /// True when libcurl ended the transfer because a timeout passed
    /// (`CURLE_OPERATION_TIMEDOUT`: `CURLOPT_TIMEOUT`, `CURLOPT_CONNECTTIMEOUT` or the
    /// low-speed limit).
    pub fn is_timeout(&self) -> bool {
        self.curl_error()
            .is_some_and(curl::Error::is_operation_timedout)
    }

    pub(crate) fn from_loop(what: &'static str, source: anyloop::Error) -> Error {
        match source {
            anyloop::Error::LoopGone => Error::LoopGone,
            source => Error::Loop {
                what,
                source: Arc::new(source),
            },
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A transfer that did not complete, with its easy handle given back when libcurl let go of
/// it: always, unless libcurl's multi handle itself failed to take it (`curl_multi_add_handle`
/// refused it: the `curl` crate drops the handle then) or to remove it.
///
/// The handle keeps what the transfer did (its handler, `response_code`, the bytes it
/// received before the failure). `?` turns it into [`Error`] (dropping the handle), or into
/// `Box<dyn Error + Send + Sync>` or `anyhow::Error` when the handler is `Send`: a `Failed`
/// is `Sync` whatever the handler, because only `&mut` reaches the handle.
pub struct Failed<H> {
    error: Error,
    has_easy: bool,
    easy: SyncWrapper<Option<Easy2<H>>>,
}

impl<H> Failed<H> {
    pub(crate) fn new(error: Error, easy: Option<Easy2<H>>) -> Self {
        Failed {
            error,
            has_easy: easy.is_some(),
            easy: SyncWrapper::new(easy),
        }
    }

    /// Why the transfer failed.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Whether libcurl gave the easy handle back (always, unless its multi handle failed to
    /// take it or to remove it).
    pub fn has_easy(&self) -> bool {
        self.has_easy
    }

    /// The easy handle, when libcurl gave it back.
    pub fn easy_mut(&mut self) -> Option<&mut Easy2<H>> {
        self.easy.get_mut().as_mut()
    }

    /// The easy handle, when libcurl gave it back.
    pub fn into_easy(self) -> Option<Easy2<H>> {
        self.easy.into_inner()
    }

    /// The error and the easy handle.
    pub fn into_parts(self) -> (Error, Option<Easy2<H>>) {
        (self.error, self.easy.into_inner())
    }
}

impl<H> fmt::Debug for Failed<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failed")
            .field("error", &self.error)
            .field("easy", &self.has_easy.then_some("Easy2 { .. }"))
            .finish()
    }
}

impl<H> fmt::Display for Failed<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<H> std::error::Error for Failed<H> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl<H> From<Failed<H>> for Error {
    fn from(failed: Failed<H>) -> Self {
        failed.error
    }
}
