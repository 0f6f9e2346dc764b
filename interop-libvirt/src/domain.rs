//! `Domain`: one reference to a libvirt domain (`virDomainPtr`), freed on drop.

use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

use crate::error::{Error, Result};
use crate::ffi;

/// A libvirt domain (a virtual machine, defined or running), released when dropped.
///
/// The operations below are the libvirt calls of the same name; each one that changes the
/// domain's state also makes libvirt emit a lifecycle event (see
/// [`Connection::domain_events`](crate::Connection::domain_events)).
#[derive(Debug)]
pub struct Domain {
    raw: NonNull<ffi::virDomain>,
}

// SAFETY: libvirt domain objects are reference counted and locked inside libvirt; its API
// may be called on one domain from several threads.
unsafe impl Send for Domain {}
// SAFETY: as above.
unsafe impl Sync for Domain {}

impl Domain {
    /// Takes ownership of a domain reference returned by libvirt (`None` for NULL).
    ///
    /// # Safety
    /// `raw` must be NULL or a domain reference the caller owns and gives up.
    pub(crate) unsafe fn from_owned(raw: ffi::virDomainPtr) -> Option<Domain> {
        NonNull::new(raw).map(|raw| Domain { raw })
    }

    /// The domain's name.
    ///
    /// # Errors
    /// [`Error::Libvirt`] if libvirt cannot tell (it always can for a live reference).
    pub fn name(&self) -> Result<String> {
        // SAFETY: `self.raw` is a live reference.
        unsafe { name_of(self.raw.as_ptr()) }.ok_or_else(|| Error::last("virDomainGetName"))
    }

    /// The domain's UUID in its 36-character text form.
    ///
    /// # Errors
    /// [`Error::Libvirt`] if libvirt cannot tell.
    pub fn uuid(&self) -> Result<String> {
        // SAFETY: `self.raw` is a live reference.
        unsafe { uuid_of(self.raw.as_ptr()) }.ok_or_else(|| Error::last("virDomainGetUUIDString"))
    }

    /// Starts a defined domain (`virDomainCreate`).
    ///
    /// # Errors
    /// [`Error::Libvirt`], e.g. when it is already running.
    pub fn start(&self) -> Result<()> {
        self.call("virDomainCreate", ffi::virDomainCreate)
    }

    /// Pauses a running domain (`virDomainSuspend`).
    ///
    /// # Errors
    /// [`Error::Libvirt`], e.g. when it is not running.
    pub fn suspend(&self) -> Result<()> {
        self.call("virDomainSuspend", ffi::virDomainSuspend)
    }

    /// Resumes a paused domain (`virDomainResume`).
    ///
    /// # Errors
    /// [`Error::Libvirt`], e.g. when it is not paused.
    pub fn resume(&self) -> Result<()> {
        self.call("virDomainResume", ffi::virDomainResume)
    }

    /// Stops a running domain at once (`virDomainDestroy`, a forced power-off).
    ///
    /// # Errors
    /// [`Error::Libvirt`], e.g. when it is not running.
    pub fn destroy(&self) -> Result<()> {
        self.call("virDomainDestroy", ffi::virDomainDestroy)
    }

    /// Removes a domain's persistent definition (`virDomainUndefine`).
    ///
    /// # Errors
    /// [`Error::Libvirt`], e.g. when it is not persistent.
    pub fn undefine(&self) -> Result<()> {
        self.call("virDomainUndefine", ffi::virDomainUndefine)
    }

    fn call(
        &self,
        name: &'static str,
        op: unsafe extern "C" fn(ffi::virDomainPtr) -> c_int,
    ) -> Result<()> {
        // SAFETY: `op` is one of libvirt's `int f(virDomainPtr)` calls and `self.raw` is a
        // live reference for the whole call.
        if unsafe { op(self.raw.as_ptr()) } < 0 {
            return Err(Error::last(name));
        }
        Ok(())
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        // SAFETY: our reference, released exactly once.
        unsafe { ffi::virDomainFree(self.raw.as_ptr()) };
    }
}

/// The name of a domain libvirt owns or lends.
///
/// # Safety
/// `raw` must be a live domain reference.
pub(crate) unsafe fn name_of(raw: ffi::virDomainPtr) -> Option<String> {
    // SAFETY: the caller guarantees `raw`; the returned string belongs to the domain and is
    // copied before the reference can go away.
    let name = unsafe { ffi::virDomainGetName(raw) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated, owned by the live domain.
    Some(
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The UUID text of a domain libvirt owns or lends.
///
/// # Safety
/// `raw` must be a live domain reference.
pub(crate) unsafe fn uuid_of(raw: ffi::virDomainPtr) -> Option<String> {
    let mut buf = [0 as c_char; ffi::VIR_UUID_STRING_BUFLEN];
    // SAFETY: the caller guarantees `raw`; `buf` has the VIR_UUID_STRING_BUFLEN bytes
    // libvirt writes (36 characters and the NUL).
    if unsafe { ffi::virDomainGetUUIDString(raw, buf.as_mut_ptr()) } < 0 {
        return None;
    }
    // SAFETY: on success libvirt wrote a NUL-terminated string into `buf`.
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}
