//! `event_set!`: declares a library's events (the enum, its kind enum and every trait impl) in
//! one place.

/// Declares an [`EventSet`](crate::EventSet): the enum of a library's events, its kind enum
/// (an [`EventKind`](crate::EventKind)), and for each payload type the
/// [`Event`](crate::Event) impl and a `From` impl (so `registry.emit(payload)` works).
///
/// Each variant is `Name(PayloadType)`, optionally followed by `=> field`: the payload field
/// holding the object key (for object filters); variants without it are about no object. The
/// kind enum gets one variant per event variant, with the same name. `key:` may be left out
/// (the key type is then `()`). One payload type per variant; at most 64 variants.
///
/// ```
/// /// Identifies one child process for its whole life.
/// #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// pub struct ChildId(pub u64);
///
/// /// The child started.
/// #[derive(Debug, Clone)]
/// pub struct Launched { pub child: ChildId, pub pid: u32 }
/// /// One line of output.
/// #[derive(Debug, Clone)]
/// pub struct LogLine { pub child: ChildId, pub bytes: Vec<u8> }
/// /// The supervisor closes.
/// #[derive(Debug, Clone)]
/// pub struct Close;
///
/// anyloop::event_set! {
///     /// Everything the supervisor reports.
///     #[derive(Debug, Clone)]
///     pub enum SupervisorEvent {
///         kind: SupervisorKind,
///         key: ChildId,
///         /// A child started.
///         Launched(Launched) => child,
///         /// A child wrote a line.
///         LogLine(LogLine) => child,
///         /// The supervisor is closing.
///         Close(Close),
///     }
/// }
///
/// use anyloop::{EventKind, EventSet};
/// let event = SupervisorEvent::from(LogLine { child: ChildId(7), bytes: b"hi".to_vec() });
/// assert_eq!(event.kind(), SupervisorKind::LogLine);
/// assert_eq!(event.key(), Some(&ChildId(7)));
/// assert_eq!(SupervisorEvent::from(Close).key(), None);
/// assert_eq!(SupervisorKind::ALL.len(), 3);
/// ```
#[macro_export]
macro_rules! event_set {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            kind: $kind:ident,
            key: $key:ty,
            $(
                $(#[$vmeta:meta])*
                $variant:ident($payload:ty) $(=> $field:ident)?
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant($payload),
            )+
        }

        #[doc = concat!("The kinds of [`", stringify!($name), "`], one per variant.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $kind {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        impl $crate::EventKind for $kind {
            const ALL: &'static [$kind] = &[$($kind::$variant),+];
            fn index(self) -> usize {
                self as usize
            }
        }

        impl $crate::EventSet for $name {
            type Kind = $kind;
            type Key = $key;
            fn kind(&self) -> $kind {
                match self {
                    $($name::$variant(_) => $kind::$variant,)+
                }
            }
            fn key(&self) -> ::core::option::Option<&$key> {
                match self {
                    $($name::$variant(_event) => $crate::event_set!(@key _event $($field)?),)+
                }
            }
        }

        $(
            impl $crate::Event<$name> for $payload {
                const KIND: $kind = $kind::$variant;
                #[allow(unreachable_patterns)]
                fn view(event: &$name) -> ::core::option::Option<&$payload> {
                    match event {
                        $name::$variant(payload) => ::core::option::Option::Some(payload),
                        _ => ::core::option::Option::None,
                    }
                }
            }

            impl ::core::convert::From<$payload> for $name {
                fn from(payload: $payload) -> $name {
                    $name::$variant(payload)
                }
            }
        )+
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            kind: $kind:ident,
            $($rest:tt)*
        }
    ) => {
        $crate::event_set! {
            $(#[$meta])*
            $vis enum $name {
                kind: $kind,
                key: (),
                $($rest)*
            }
        }
    };
    (@key $event:ident $field:ident) => {
        ::core::option::Option::Some(&$event.$field)
    };
    (@key $event:ident) => {
        ::core::option::Option::None
    };
}
