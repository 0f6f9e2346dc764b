//! Domain lifecycle events as typed payloads, and the event set applications register
//! callbacks for through an [`anyloop::Registry`].

use std::fmt;

/// What happened to a domain (`virDomainEventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LifecycleEvent {
    /// A persistent definition was added or changed.
    Defined,
    /// A persistent definition was removed.
    Undefined,
    /// The domain started.
    Started,
    /// The domain was paused.
    Suspended,
    /// The domain was unpaused.
    Resumed,
    /// The domain stopped.
    Stopped,
    /// The guest shut down (or began to).
    Shutdown,
    /// The guest entered power-management suspend.
    PmSuspended,
    /// The guest crashed.
    Crashed,
    /// A value this crate does not know (a newer libvirt).
    Other(i32),
}

impl LifecycleEvent {
    /// From libvirt's `virDomainEventType` value.
    pub fn from_raw(raw: i32) -> Self {
        match raw {
            0 => Self::Defined,
            1 => Self::Undefined,
            2 => Self::Started,
            3 => Self::Suspended,
            4 => Self::Resumed,
            5 => Self::Stopped,
            6 => Self::Shutdown,
            7 => Self::PmSuspended,
            8 => Self::Crashed,
            other => Self::Other(other),
        }
    }

    /// The name of a `detail` value for this event (libvirt's `virDomainEvent*DetailType`),
    /// as `virsh event` prints it; `None` for values this crate does not know.
    pub fn detail_name(self, detail: i32) -> Option<&'static str> {
        let names: &[&str] = match self {
            Self::Defined => &["Added", "Updated", "Renamed", "Snapshot"],
            Self::Undefined => &["Removed", "Renamed"],
            Self::Started => &["Booted", "Migrated", "Restored", "Snapshot", "Event wakeup"],
            Self::Suspended => &[
                "Paused",
                "Migrated",
                "I/O Error",
                "Watchdog",
                "Restored",
                "Snapshot",
                "API error",
                "Post-copy",
                "Post-copy Error",
            ],
            Self::Resumed => &[
                "Unpaused",
                "Migrated",
                "Snapshot",
                "Post-copy",
                "Post-copy Error",
            ],
            Self::Stopped => &[
                "Shutdown",
                "Destroyed",
                "Crashed",
                "Migrated",
                "Saved",
                "Failed",
                "Snapshot",
            ],
            Self::Shutdown => &[
                "Finished",
                "Finished after guest request",
                "Finished after host request",
            ],
            Self::PmSuspended => &["Memory", "Disk"],
            Self::Crashed => &["Core Dump", "Crashloaded"],
            Self::Other(_) => &[],
        };
        usize::try_from(detail)
            .ok()
            .and_then(|index| names.get(index).copied())
    }
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PmSuspended => f.write_str("PMSuspended"),
            Self::Other(raw) => write!(f, "Unknown({raw})"),
            known => fmt::Debug::fmt(known, f),
        }
    }
}

/// One lifecycle event of one domain (`VIR_DOMAIN_EVENT_ID_LIFECYCLE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainLifecycle {
    /// The domain's name.
    pub name: String,
    /// The domain's UUID (36-character text).
    pub uuid: String,
    /// What happened.
    pub event: LifecycleEvent,
    /// Why, as libvirt's raw detail value ([`LifecycleEvent::detail_name`] names it).
    pub detail: i32,
}

impl fmt::Display for DomainLifecycle {
    /// `virsh event`'s wording: `event 'lifecycle' for domain 'test': Suspended Paused`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event 'lifecycle' for domain '{}': {}",
            self.name, self.event
        )?;
        match self.event.detail_name(self.detail) {
            Some(detail) => write!(f, " {detail}"),
            None => write!(f, " detail {}", self.detail),
        }
    }
}

anyloop::event_set! {
    /// Every domain event a [`Connection`](crate::Connection) reports; the object key is the
    /// domain's UUID (stable across renames and restarts, unlike its name or numeric id).
    #[derive(Debug, Clone)]
    pub enum DomainEvent {
        kind: DomainEventKind,
        key: String,
        /// A domain was defined, started, paused, stopped...
        Lifecycle(DomainLifecycle) => uuid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_details_by_libvirt_value() {
        assert_eq!(LifecycleEvent::from_raw(3), LifecycleEvent::Suspended);
        assert_eq!(LifecycleEvent::from_raw(42), LifecycleEvent::Other(42));
        assert_eq!(LifecycleEvent::Stopped.detail_name(1), Some("Destroyed"));
        assert_eq!(LifecycleEvent::Stopped.detail_name(99), None);
        assert_eq!(LifecycleEvent::Started.detail_name(-1), None);
        assert_eq!(LifecycleEvent::Other(42).detail_name(0), None);
    }

    #[test]
    fn displays_like_virsh_event() {
        let event = DomainLifecycle {
            name: "test".into(),
            uuid: "6695eb01-f6a4-8304-79aa-97f2502e193f".into(),
            event: LifecycleEvent::PmSuspended,
            detail: 0,
        };
        assert_eq!(
            event.to_string(),
            "event 'lifecycle' for domain 'test': PMSuspended Memory"
        );
        let unknown = DomainLifecycle {
            event: LifecycleEvent::Other(12),
            detail: 3,
            ..event
        };
        assert_eq!(
            unknown.to_string(),
            "event 'lifecycle' for domain 'test': Unknown(12) detail 3"
        );
    }
}
