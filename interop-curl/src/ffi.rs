//! The libcurl calls the `curl` crate does not wrap.

use std::os::raw::{c_double, c_int};

/// `curl_easy_pause` with `CURLPAUSE_ALL` (`pause`) or `CURLPAUSE_CONT`.
///
/// libcurl may call the transfer's write callback from inside (data it held back while
/// paused), and its socket and timer callbacks.
///
/// # Safety
/// `easy` must be a live easy handle, not freed during the call.
pub(crate) unsafe fn set_paused(easy: *mut curl_sys::CURL, pause: bool) -> Result<(), curl::Error> {
    let mask: c_int = if pause {
        curl_sys::CURLPAUSE_RECV | curl_sys::CURLPAUSE_SEND
    } else {
        curl_sys::CURLPAUSE_RECV_CONT | curl_sys::CURLPAUSE_SEND_CONT
    };
    // SAFETY: `easy` is live for the whole call (this function's contract); curl_easy_pause
    // takes any easy handle, inside a multi handle or not.
    let code = unsafe { curl_sys::curl_easy_pause(easy, mask) };
    if code == curl_sys::CURLE_OK {
        Ok(())
    } else {
        Err(curl::Error::new(code))
    }
}

/// `CURLINFO_CONTENT_LENGTH_UPLOAD`: the upload size libcurl was given, when it was.
pub(crate) fn upload_total<H>(easy: &curl::multi::Easy2Handle<H>) -> Option<u64> {
    let mut size: c_double = -1.0;
    // SAFETY: the handle is live while borrowed; CURLINFO_CONTENT_LENGTH_UPLOAD is a
    // CURLINFO_DOUBLE, so libcurl writes one `double` through the pointer, which points to a
    // local `c_double`.
    let code = unsafe {
        curl_sys::curl_easy_getinfo(
            easy.raw(),
            curl_sys::CURLINFO_CONTENT_LENGTH_UPLOAD,
            &mut size as *mut c_double,
        )
    };
    (code == curl_sys::CURLE_OK && size >= 0.0).then_some(size as u64)
}
