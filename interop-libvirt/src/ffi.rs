//! The few libvirt C symbols this crate uses, declared by hand (libvirt 9.0 headers:
//! `libvirt-event.h`, `libvirt-host.h`, `libvirt-domain.h`, `virterror.h`).
//!
//! Nothing outside this module names a C symbol; [`crate::shim`], [`crate::connection`],
//! [`crate::domain`] and [`crate::lifecycle`] wrap them.

#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_char, c_int, c_void};

/// `struct _virConnect`: opaque.
#[repr(C)]
pub(crate) struct virConnect {
    _private: [u8; 0],
}

/// `struct _virDomain`: opaque.
#[repr(C)]
pub(crate) struct virDomain {
    _private: [u8; 0],
}

pub(crate) type virConnectPtr = *mut virConnect;
pub(crate) type virDomainPtr = *mut virDomain;

/// `virFreeCallback`.
pub(crate) type virFreeCallback = Option<unsafe extern "C" fn(opaque: *mut c_void)>;

/// `virEventHandleCallback`.
pub(crate) type virEventHandleCallback =
    Option<unsafe extern "C" fn(watch: c_int, fd: c_int, events: c_int, opaque: *mut c_void)>;
/// `virEventTimeoutCallback`.
pub(crate) type virEventTimeoutCallback =
    Option<unsafe extern "C" fn(timer: c_int, opaque: *mut c_void)>;

pub(crate) type virEventAddHandleFunc = Option<
    unsafe extern "C" fn(
        fd: c_int,
        event: c_int,
        cb: virEventHandleCallback,
        opaque: *mut c_void,
        ff: virFreeCallback,
    ) -> c_int,
>;
pub(crate) type virEventUpdateHandleFunc = Option<unsafe extern "C" fn(watch: c_int, event: c_int)>;
pub(crate) type virEventRemoveHandleFunc = Option<unsafe extern "C" fn(watch: c_int) -> c_int>;
pub(crate) type virEventAddTimeoutFunc = Option<
    unsafe extern "C" fn(
        timeout: c_int,
        cb: virEventTimeoutCallback,
        opaque: *mut c_void,
        ff: virFreeCallback,
    ) -> c_int,
>;
pub(crate) type virEventUpdateTimeoutFunc =
    Option<unsafe extern "C" fn(timer: c_int, timeout: c_int)>;
pub(crate) type virEventRemoveTimeoutFunc = Option<unsafe extern "C" fn(timer: c_int) -> c_int>;

/// `virConnectDomainEventGenericCallback`; the lifecycle callback is registered through it
/// with a cast, as C does with `VIR_DOMAIN_EVENT_CALLBACK()`.
pub(crate) type virConnectDomainEventGenericCallback =
    Option<unsafe extern "C" fn(conn: virConnectPtr, dom: virDomainPtr, opaque: *mut c_void)>;

/// `virConnectDomainEventCallback`: the signature of lifecycle events.
pub(crate) type virConnectDomainEventCallback = unsafe extern "C" fn(
    conn: virConnectPtr,
    dom: virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int;

// `virEventHandleType`.
pub(crate) const VIR_EVENT_HANDLE_READABLE: c_int = 1 << 0;
pub(crate) const VIR_EVENT_HANDLE_WRITABLE: c_int = 1 << 1;
pub(crate) const VIR_EVENT_HANDLE_ERROR: c_int = 1 << 2;
pub(crate) const VIR_EVENT_HANDLE_HANGUP: c_int = 1 << 3;

/// `virConnectCloseFunc`: called when a connection is closed other than by the application.
pub(crate) type virConnectCloseFunc =
    unsafe extern "C" fn(conn: virConnectPtr, reason: c_int, opaque: *mut c_void);

// `virConnectCloseReason`.
pub(crate) const VIR_CONNECT_CLOSE_REASON_ERROR: c_int = 0;
pub(crate) const VIR_CONNECT_CLOSE_REASON_EOF: c_int = 1;
pub(crate) const VIR_CONNECT_CLOSE_REASON_KEEPALIVE: c_int = 2;
pub(crate) const VIR_CONNECT_CLOSE_REASON_CLIENT: c_int = 3;

/// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`.
pub(crate) const VIR_DOMAIN_EVENT_ID_LIFECYCLE: c_int = 0;
/// `VIR_UUID_STRING_BUFLEN`: 36 characters and the NUL.
pub(crate) const VIR_UUID_STRING_BUFLEN: usize = 37;

#[link(name = "virt")]
extern "C" {
    pub(crate) fn virEventRegisterImpl(
        addHandle: virEventAddHandleFunc,
        updateHandle: virEventUpdateHandleFunc,
        removeHandle: virEventRemoveHandleFunc,
        addTimeout: virEventAddTimeoutFunc,
        updateTimeout: virEventUpdateTimeoutFunc,
        removeTimeout: virEventRemoveTimeoutFunc,
    );
    pub(crate) fn virEventAddTimeout(
        timeout: c_int,
        cb: virEventTimeoutCallback,
        opaque: *mut c_void,
        ff: virFreeCallback,
    ) -> c_int;
    pub(crate) fn virEventRemoveTimeout(timer: c_int) -> c_int;

    pub(crate) fn virConnectOpen(name: *const c_char) -> virConnectPtr;
    pub(crate) fn virConnectClose(conn: virConnectPtr) -> c_int;
    pub(crate) fn virConnectRef(conn: virConnectPtr) -> c_int;
    pub(crate) fn virConnectIsAlive(conn: virConnectPtr) -> c_int;
    pub(crate) fn virConnectSetKeepAlive(
        conn: virConnectPtr,
        interval: c_int,
        count: std::ffi::c_uint,
    ) -> c_int;
    pub(crate) fn virConnectRegisterCloseCallback(
        conn: virConnectPtr,
        cb: Option<virConnectCloseFunc>,
        opaque: *mut c_void,
        freecb: virFreeCallback,
    ) -> c_int;
    pub(crate) fn virConnectUnregisterCloseCallback(
        conn: virConnectPtr,
        cb: Option<virConnectCloseFunc>,
    ) -> c_int;
    pub(crate) fn virConnectDomainEventRegisterAny(
        conn: virConnectPtr,
        dom: virDomainPtr,
        eventID: c_int,
        cb: virConnectDomainEventGenericCallback,
        opaque: *mut c_void,
        freecb: virFreeCallback,
    ) -> c_int;
    pub(crate) fn virConnectDomainEventDeregisterAny(
        conn: virConnectPtr,
        callbackID: c_int,
    ) -> c_int;

    pub(crate) fn virDomainDefineXML(conn: virConnectPtr, xml: *const c_char) -> virDomainPtr;
    pub(crate) fn virDomainLookupByName(conn: virConnectPtr, name: *const c_char) -> virDomainPtr;
    pub(crate) fn virDomainCreate(domain: virDomainPtr) -> c_int;
    pub(crate) fn virDomainSuspend(domain: virDomainPtr) -> c_int;
    pub(crate) fn virDomainResume(domain: virDomainPtr) -> c_int;
    pub(crate) fn virDomainDestroy(domain: virDomainPtr) -> c_int;
    pub(crate) fn virDomainUndefine(domain: virDomainPtr) -> c_int;
    pub(crate) fn virDomainFree(domain: virDomainPtr) -> c_int;
    pub(crate) fn virDomainGetName(domain: virDomainPtr) -> *const c_char;
    pub(crate) fn virDomainGetUUIDString(domain: virDomainPtr, buf: *mut c_char) -> c_int;

    pub(crate) fn virGetLastErrorMessage() -> *const c_char;
    pub(crate) fn virResetLastError();
    pub(crate) fn virSetErrorFunc(userData: *mut c_void, handler: virErrorFunc);
}

/// `virErrorFunc`: `void (*)(void *userData, virErrorPtr error)`; the error is opaque here.
pub(crate) type virErrorFunc =
    Option<unsafe extern "C" fn(userData: *mut c_void, error: *mut c_void)>;
