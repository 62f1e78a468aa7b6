//! Identifiers that appear as topic levels and in payloads.
//!
//! One rule set serves every id, checked byte by byte in a `const fn` so that the same code
//! validates literals at compile time ([`DeviceId::from_static`]) and input at run time
//! ([`DeviceId::parse`]). An id is:
//!
//! - not empty, and at most a documented number of bytes long (`MAX_LEN` on each type);
//! - free of `/` (the level separator), `+` and `#` (MQTT wildcards), NUL and every other
//!   control character (C0, DEL and C1), which brokers and log files mangle;
//! - not starting with `$`, which MQTT reserves for broker topics such as `$SYS`.
//!
//! Everything else, including non-ASCII letters, is allowed. Organization ids may additionally
//! be required to be UUIDs (see [`OrgId::parse_uuid`]).

use core::fmt;

/// Which kind of id a rule was checked for; names the id in error messages.
///
/// ```
/// use dese_protocol::IdKind;
///
/// assert_eq!(IdKind::Device.name(), "device id");
/// assert_eq!(IdKind::Command.max_len(), 128);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdKind {
    /// An organization (tenant) id, topic level 2.
    Organization,
    /// A device id, topic level 3.
    Device,
    /// A command id, correlating a command with its response.
    Command,
    /// The group name of an MQTT shared subscription (`$share/{group}/...`).
    ShareGroup,
}

impl IdKind {
    /// How error messages name this kind of id.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Organization => "organization id",
            Self::Device => "device id",
            Self::Command => "command id",
            Self::ShareGroup => "share group",
        }
    }

    /// The longest id of this kind, in bytes.
    pub const fn max_len(self) -> usize {
        match self {
            Self::Organization | Self::Device | Self::ShareGroup => 64,
            Self::Command => 128,
        }
    }
}

/// What is wrong with an id.
///
/// ```
/// use dese_protocol::{DeviceId, IdProblem};
///
/// let err = DeviceId::parse("$SYS").unwrap_err();
/// assert_eq!(err.problem, IdProblem::StartsWithDollar);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdProblem {
    /// The id is the empty string.
    Empty,
    /// The id is longer than [`IdKind::max_len`].
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The id holds a character that cannot appear in a topic level.
    Forbidden {
        /// The character.
        ch: char,
        /// Its byte offset in the id.
        at: usize,
    },
    /// The id starts with `$`, which MQTT reserves for the broker.
    StartsWithDollar,
    /// A UUID was required and the id is not one.
    NotUuid,
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::TooLong { len, max } => {
                write!(f, "is {len} bytes long, expected at most {max}")
            }
            Self::Forbidden { ch, at } => {
                write!(f, "contains {ch:?} at byte {at}, which is not allowed")
            }
            Self::StartsWithDollar => f.write_str("starts with '$', which MQTT reserves"),
            Self::NotUuid => f.write_str("is not a UUID, expected 8-4-4-4-12 hex digits"),
        }
    }
}

/// An id that breaks the rules, with the kind of id it was meant to be.
///
/// Its `Display` names both: `device id contains '/' at byte 5, which is not allowed`.
///
/// ```
/// use dese_protocol::{CommandId, IdKind, IdProblem};
///
/// let err = CommandId::parse("").unwrap_err();
/// assert_eq!((err.kind, err.problem), (IdKind::Command, IdProblem::Empty));
/// assert_eq!(err.to_string(), "command id is empty");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} {problem}", kind.name())]
pub struct IdError {
    /// What the id was meant to be.
    pub kind: IdKind,
    /// What is wrong with it.
    pub problem: IdProblem,
}

/// Checks `s` against the id rules for `kind`, without allocating.
///
/// This is the single rule set behind every id type; firmware without a heap can call it
/// directly.
///
/// # Examples
///
/// ```
/// use dese_protocol::id::{check, IdKind, IdProblem};
///
/// assert!(check(IdKind::Device, "esp32-001").is_ok());
/// let err = check(IdKind::Device, "esp32/001").unwrap_err();
/// assert_eq!(err.problem, IdProblem::Forbidden { ch: '/', at: 5 });
/// assert_eq!(err.to_string(), "device id contains '/' at byte 5, which is not allowed");
/// ```
pub const fn check(kind: IdKind, s: &str) -> Result<(), IdError> {
    match check_bytes(s.as_bytes(), kind.max_len()) {
        Ok(()) => Ok(()),
        Err(problem) => Err(IdError { kind, problem }),
    }
}

const fn check_bytes(b: &[u8], max: usize) -> Result<(), IdProblem> {
    if b.is_empty() {
        return Err(IdProblem::Empty);
    }
    if b.len() > max {
        return Err(IdProblem::TooLong { len: b.len(), max });
    }
    if b[0] == b'$' {
        return Err(IdProblem::StartsWithDollar);
    }
    // Fast pass without early exit: is any byte suspect? 0xC2 starts the encoding of the C1
    // control characters, and of harmless letters too; the exact pass below tells them apart.
    let mut suspect = false;
    let mut i = 0;
    while i < b.len() {
        suspect |= SUSPECT[b[i] as usize];
        i += 1;
    }
    if !suspect {
        return Ok(());
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' || c == b'+' || c == b'#' || c < 0x20 || c == 0x7f {
            return Err(IdProblem::Forbidden {
                ch: c as char,
                at: i,
            });
        }
        // C1 control characters U+0080..=U+009F are encoded as 0xC2 0x80..=0x9F.
        if c == 0xc2 && i + 1 < b.len() && b[i + 1] >= 0x80 && b[i + 1] <= 0x9f {
            let ch = match char::from_u32(b[i + 1] as u32) {
                Some(ch) => ch,
                None => char::REPLACEMENT_CHARACTER,
            };
            return Err(IdProblem::Forbidden { ch, at: i });
        }
        i += 1;
    }
    Ok(())
}

/// The bytes that may make an id invalid: C0 controls, `/`, `+`, `#`, DEL, and 0xC2.
const SUSPECT: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        table[c] = true;
        c += 1;
    }
    table[b'/' as usize] = true;
    table[b'+' as usize] = true;
    table[b'#' as usize] = true;
    table[0x7f] = true;
    table[0xc2] = true;
    table
};

/// Whether `s` is a UUID in its text form (8-4-4-4-12 hex digits, either case).
pub const fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    let mut i = 0;
    while i < 36 {
        let ok = match i {
            8 | 13 | 18 | 23 => b[i] == b'-',
            _ => b[i].is_ascii_hexdigit(),
        };
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(feature = "alloc")]
pub use typed::{CommandId, DeviceId, OrgId, ShareGroup};

#[cfg(feature = "alloc")]
mod typed {
    use alloc::borrow::Cow;
    use alloc::string::String;
    use core::fmt;
    use core::str::FromStr;

    use super::{IdError, IdKind, IdProblem, check};

    macro_rules! id_type {
        ($(#[$doc:meta])* $name:ident, $kind:expr, $example:literal, $bad:literal) => {
            $(#[$doc])*
            ///
            /// The value always satisfies the [id rules](crate::id); it cannot be built otherwise.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("use dese_protocol::", stringify!($name), ";")]
            ///
            #[doc = concat!("let id = ", stringify!($name), "::parse(\"", $example, "\")?;")]
            #[doc = concat!("assert_eq!(id.as_str(), \"", $example, "\");")]
            #[doc = concat!("assert!(", stringify!($name), "::parse(\"", $bad, "\").is_err());")]
            /// # Ok::<(), dese_protocol::IdError>(())
            /// ```
            ///
            /// A literal is checked at compile time when used in a `const`, and panics at run
            /// time otherwise:
            ///
            /// ```should_panic
            #[doc = concat!("use dese_protocol::", stringify!($name), ";")]
            ///
            #[doc = concat!("let id = ", stringify!($name), "::from_static(\"", $bad, "\");")]
            /// ```
            #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
            pub struct $name(Cow<'static, str>);

            impl $name {
                /// The longest id of this kind, in bytes.
                pub const MAX_LEN: usize = $kind.max_len();

                /// Checks `s` and copies it into an id.
                pub fn parse(s: &str) -> Result<Self, IdError> {
                    check($kind, s)?;
                    Ok(Self(Cow::Owned(String::from(s))))
                }

                /// Checks an owned string and keeps it without copying.
                pub fn from_string(s: String) -> Result<Self, IdError> {
                    check($kind, &s)?;
                    Ok(Self(Cow::Owned(s)))
                }

                /// Wraps a string the caller has just checked with [`check`].
                #[allow(dead_code)] // share groups are never read from payloads
                pub(crate) fn from_checked(s: String) -> Self {
                    Self(Cow::Owned(s))
                }

                /// Makes an id from a literal.
                ///
                /// # Panics
                ///
                /// When the literal breaks the id rules (at compile time in a `const`).
                pub const fn from_static(s: &'static str) -> Self {
                    if check($kind, s).is_err() {
                        panic!(concat!("invalid ", stringify!($name), " literal"));
                    }
                    Self(Cow::Borrowed(s))
                }

                /// The id as text.
                pub fn as_str(&self) -> &str {
                    &self.0
                }
            }

            impl fmt::Display for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.pad(&self.0)
                }
            }

            impl fmt::Debug for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    write!(f, "{}({:?})", stringify!($name), &*self.0)
                }
            }

            impl FromStr for $name {
                type Err = IdError;
                fn from_str(s: &str) -> Result<Self, IdError> {
                    Self::parse(s)
                }
            }

            impl TryFrom<String> for $name {
                type Error = IdError;
                fn try_from(s: String) -> Result<Self, IdError> {
                    Self::from_string(s)
                }
            }

            impl AsRef<str> for $name {
                fn as_ref(&self) -> &str {
                    &self.0
                }
            }

            impl PartialEq<str> for $name {
                fn eq(&self, other: &str) -> bool {
                    *self.0 == *other
                }
            }

            impl PartialEq<&str> for $name {
                fn eq(&self, other: &&str) -> bool {
                    *self.0 == **other
                }
            }

            impl serde::Serialize for $name {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_str(&self.0)
                }
            }

            impl<'de> serde::Deserialize<'de> for $name {
                fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let s = String::deserialize(d)?;
                    Self::from_string(s).map_err(serde::de::Error::custom)
                }
            }
        };
    }

    id_type!(
        /// An organization (tenant) id: topic level 2 and telemetry's `organization_id`.
        ///
        /// The protocol calls it a UUID while its own examples use `org-123`, so by default any
        /// id that follows the rules is accepted; [`OrgId::parse_uuid`] is the strict check.
        OrgId, IdKind::Organization, "org-123", "org/123"
    );
    id_type!(
        /// A device id such as `esp32-001`: topic level 3 and the payloads' `device_id`.
        DeviceId, IdKind::Device, "esp32-001", "+"
    );
    id_type!(
        /// A command id, chosen by the backend and echoed by the device's response.
        CommandId, IdKind::Command, "cmd-1234567890-abc", ""
    );
    id_type!(
        /// The group name of an MQTT shared subscription (`$share/{group}/...`), through which
        /// several backend instances split one stream of messages.
        ShareGroup, IdKind::ShareGroup, "dese-backend", "group#1"
    );

    impl OrgId {
        /// Like [`OrgId::parse`], and also requires the 8-4-4-4-12 UUID text form, for
        /// deployments whose organization ids are all UUIDs.
        ///
        /// ```
        /// use dese_protocol::OrgId;
        ///
        /// assert!(OrgId::parse_uuid("0b6f1f1e-8d1a-4c53-9b0e-5c1f4e2a7d10").is_ok());
        /// assert!(OrgId::parse_uuid("org-123").is_err());
        /// ```
        pub fn parse_uuid(s: &str) -> Result<Self, IdError> {
            let id = Self::parse(s)?;
            if id.is_uuid() {
                Ok(id)
            } else {
                Err(IdError {
                    kind: IdKind::Organization,
                    problem: IdProblem::NotUuid,
                })
            }
        }

        /// Whether this id is in the UUID text form.
        pub fn is_uuid(&self) -> bool {
            super::is_uuid(&self.0)
        }
    }

    /// A UUID as an organization id, in the lowercase hyphenated form (feature `uuid`).
    ///
    /// ```
    /// use dese_protocol::OrgId;
    /// use uuid::Uuid;
    ///
    /// let uuid = Uuid::parse_str("0B6F1F1E-8D1A-4C53-9B0E-5C1F4E2A7D10").unwrap();
    /// let org = OrgId::from(uuid);
    /// assert_eq!(org.as_str(), "0b6f1f1e-8d1a-4c53-9b0e-5c1f4e2a7d10");
    /// assert_eq!(Uuid::try_from(&org)?, uuid);
    /// # Ok::<(), dese_protocol::IdError>(())
    /// ```
    #[cfg(feature = "uuid")]
    impl From<uuid::Uuid> for OrgId {
        fn from(uuid: uuid::Uuid) -> Self {
            let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
            Self::from_checked(String::from(uuid.hyphenated().encode_lower(&mut text)))
        }
    }

    /// An organization id in the UUID text form (either case), as a UUID (feature `uuid`);
    /// any other id is refused as [`IdProblem::NotUuid`], the rule of [`OrgId::parse_uuid`].
    #[cfg(feature = "uuid")]
    impl TryFrom<&OrgId> for uuid::Uuid {
        type Error = IdError;

        fn try_from(org: &OrgId) -> Result<Self, IdError> {
            let not_uuid = IdError {
                kind: IdKind::Organization,
                problem: IdProblem::NotUuid,
            };
            if !org.is_uuid() {
                return Err(not_uuid);
            }
            Self::try_parse(org.as_str()).map_err(|_| not_uuid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // DESE-T3: empty, too long, separators, wildcards, NUL, controls and a leading '$' are refused.
    #[test]
    fn dese_t3_rules() {
        let cases: &[(&str, IdProblem)] = &[
            ("", IdProblem::Empty),
            ("a/b", IdProblem::Forbidden { ch: '/', at: 1 }),
            ("+", IdProblem::Forbidden { ch: '+', at: 0 }),
            ("dev#", IdProblem::Forbidden { ch: '#', at: 3 }),
            ("a\0", IdProblem::Forbidden { ch: '\0', at: 1 }),
            ("tab\there", IdProblem::Forbidden { ch: '\t', at: 3 }),
            (
                "del\u{7f}",
                IdProblem::Forbidden {
                    ch: '\u{7f}',
                    at: 3,
                },
            ),
            (
                "c1\u{85}",
                IdProblem::Forbidden {
                    ch: '\u{85}',
                    at: 2,
                },
            ),
            ("$SYS", IdProblem::StartsWithDollar),
        ];
        for (input, problem) in cases {
            let err = check(IdKind::Device, input).unwrap_err();
            assert_eq!(err.problem, *problem, "{input:?}");
        }
        let long = "x".repeat(65);
        assert_eq!(
            check(IdKind::Device, &long).unwrap_err().problem,
            IdProblem::TooLong { len: 65, max: 64 }
        );
        assert!(check(IdKind::Device, &long[..64]).is_ok());
        assert!(check(IdKind::Command, &"c".repeat(128)).is_ok());
        // Non-ASCII letters and inner '$' are fine.
        for ok in ["esp32-001", "org-123", "pompe-é", "a$b", "日本"] {
            assert!(check(IdKind::Organization, ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn uuid_check() {
        assert!(is_uuid("0B6F1F1E-8D1A-4C53-9B0E-5C1F4E2A7D10"));
        assert!(!is_uuid("0b6f1f1e-8d1a-4c53-9b0e-5c1f4e2a7d1"));
        assert!(!is_uuid("0b6f1f1e18d1a-4c53-9b0e-5c1f4e2a7d10"));
        assert!(!is_uuid("0b6f1f1e-8d1a-4c53-9b0e-5c1f4e2a7d1g"));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn typed_ids() {
        use alloc::string::ToString;
        const DEV: DeviceId = DeviceId::from_static("esp32-001");
        assert_eq!(DEV, "esp32-001");
        assert_eq!(DeviceId::parse("esp32-001").unwrap(), DEV);
        let err = OrgId::parse("org/1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "organization id contains '/' at byte 3, which is not allowed"
        );
        assert_eq!(
            OrgId::parse_uuid("org-1").unwrap_err().problem,
            IdProblem::NotUuid
        );
        let json = serde_json::to_string(&DEV).unwrap();
        assert_eq!(json, "\"esp32-001\"");
        assert!(serde_json::from_str::<DeviceId>("\"a/b\"").is_err());
    }

    #[cfg(feature = "uuid")]
    #[test]
    fn uuid_conversions_follow_the_uuid_rule() {
        let uuid = uuid::Uuid::from_u128(0x0b6f_1f1e_8d1a_4c53_9b0e_5c1f_4e2a_7d10);
        let org = OrgId::from(uuid);
        assert!(org.is_uuid());
        assert_eq!(OrgId::parse_uuid(org.as_str()), Ok(org.clone()));
        assert_eq!(uuid::Uuid::try_from(&org), Ok(uuid));
        let upper = OrgId::parse("0B6F1F1E-8D1A-4C53-9B0E-5C1F4E2A7D10").unwrap();
        assert_eq!(uuid::Uuid::try_from(&upper), Ok(uuid));
        // Forms the uuid crate reads but the protocol's rule does not: no hyphens, a URN.
        for other in [
            "org-123",
            "0b6f1f1e8d1a4c539b0e5c1f4e2a7d10",
            "urn:uuid:0b6f1f1e-8d1a-4c53-9b0e-5c1f4e2a7d10",
        ] {
            let org = OrgId::parse(other).unwrap();
            let refused = uuid::Uuid::try_from(&org).unwrap_err();
            assert_eq!(refused.problem, IdProblem::NotUuid, "{other}");
        }
    }
}
