//! Translations between libvirt's vtable arguments and anyloop's types, by name.

use std::ffi::c_int;
use std::time::Duration;

use anyloop::{IoEvents, Schedule};

use crate::ffi::{
    VIR_EVENT_HANDLE_ERROR, VIR_EVENT_HANDLE_HANGUP, VIR_EVENT_HANDLE_READABLE,
    VIR_EVENT_HANDLE_WRITABLE,
};

/// Each libvirt handle bit and the anyloop flag of the same meaning. Translated by name, not
/// by value: anyloop's values equal libvirt's today, but nothing promises it (PulseAudio's
/// ERROR and HANGUP, for one, are swapped).
const PAIRS: [(c_int, IoEvents); 4] = [
    (VIR_EVENT_HANDLE_READABLE, IoEvents::READABLE),
    (VIR_EVENT_HANDLE_WRITABLE, IoEvents::WRITABLE),
    (VIR_EVENT_HANDLE_ERROR, IoEvents::ERROR),
    (VIR_EVENT_HANDLE_HANGUP, IoEvents::HANGUP),
];

/// The interest libvirt asks for. Bits libvirt does not define are dropped (libvirt never
/// sends any); 0 is a paused watch, which anyloop expresses as an empty interest.
pub(crate) fn interest_from_libvirt(bits: c_int) -> IoEvents {
    PAIRS
        .iter()
        .filter(|(libvirt, _)| bits & libvirt != 0)
        .fold(IoEvents::empty(), |acc, (_, ours)| acc | *ours)
}

/// The events a callback reports to libvirt.
pub(crate) fn events_to_libvirt(events: IoEvents) -> c_int {
    PAIRS
        .iter()
        .filter(|(_, ours)| events.contains(*ours))
        .fold(0, |acc, (libvirt, _)| acc | libvirt)
}

/// A libvirt timeout in milliseconds as an anyloop schedule ([R27](anyloop::contract#r27)):
/// negative (libvirt uses -1) is [`Schedule::Disabled`], 0 is
/// [`Schedule::EVERY_ITERATION`], n > 0 is [`Schedule::Every`] n ms. libvirt's timeouts are
/// periodic: they fire until libvirt disables or removes them.
pub(crate) fn schedule_from_libvirt(ms: c_int) -> Schedule {
    match u64::try_from(ms) {
        Err(_) => Schedule::Disabled,
        Ok(0) => Schedule::EVERY_ITERATION,
        Ok(ms) => Schedule::Every(Duration::from_millis(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_by_name() {
        for bits in 0..16 {
            assert_eq!(events_to_libvirt(interest_from_libvirt(bits)), bits);
        }
        assert_eq!(
            interest_from_libvirt(VIR_EVENT_HANDLE_READABLE | VIR_EVENT_HANDLE_HANGUP),
            IoEvents::READABLE | IoEvents::HANGUP
        );
        assert_eq!(interest_from_libvirt(0x30), IoEvents::empty());
    }

    #[test]
    fn schedules() {
        assert_eq!(schedule_from_libvirt(-1), Schedule::Disabled);
        assert_eq!(schedule_from_libvirt(-7), Schedule::Disabled);
        assert_eq!(schedule_from_libvirt(0), Schedule::EVERY_ITERATION);
        assert_eq!(schedule_from_libvirt(0), Schedule::Every(Duration::ZERO));
        assert_eq!(
            schedule_from_libvirt(2000),
            Schedule::Every(Duration::from_secs(2))
        );
        assert_eq!(
            schedule_from_libvirt(c_int::MAX),
            Schedule::Every(Duration::from_millis(c_int::MAX as u64))
        );
    }
}
