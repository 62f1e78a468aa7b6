//! Topic names (`devices/{org}/{device}/{kind}`) and subscription filters.
//!
//! A [`Topic`] names exactly one device's stream of one message kind; a [`TopicFilter`] is
//! what a client subscribes to, with `+` in place of any level it leaves open, and optionally a
//! shared-subscription group. They are separate types so that a filter can never be published
//! to.

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use crate::id::{DeviceId, IdError, IdKind, OrgId, ShareGroup};
use crate::kind::MessageKind;

/// The first level of every DESE topic.
pub const PREFIX: &str = "devices";

/// The longest topic this crate parses, in bytes: the prefix, two ids at their maximum and the
/// longest kind. Anything longer is refused before it is split.
pub const MAX_TOPIC_LEN: usize = PREFIX.len() + 3 + 2 * 64 + "command_response".len();

/// A parsed topic name: `devices/{organization_id}/{device_id}/{message_type}`.
///
/// `Display` writes the topic back exactly as parsed.
///
/// # Examples
///
/// ```
/// use dese_protocol::{MessageKind, Topic};
///
/// let topic: Topic = "devices/org-123/esp32-001/telemetry".parse()?;
/// assert_eq!(topic.org(), "org-123");
/// assert_eq!(topic.device(), "esp32-001");
/// assert_eq!(topic.kind(), MessageKind::Telemetry);
/// assert_eq!(topic.to_string(), "devices/org-123/esp32-001/telemetry");
///
/// let err = "devices/acme//telemetry".parse::<Topic>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"invalid topic "devices/acme//telemetry": level 3 (device id) is empty"#
/// );
/// # Ok::<(), dese_protocol::TopicError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic {
    org: OrgId,
    device: DeviceId,
    kind: MessageKind,
}

impl Topic {
    /// The topic of `kind` messages of one device.
    pub const fn new(org: OrgId, device: DeviceId, kind: MessageKind) -> Self {
        Self { org, device, kind }
    }

    /// Parses a topic name; see [`Topic::parse_with`] to require UUID organization ids.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        Self::parse_with(topic, false)
    }

    /// Parses a topic name, and when `uuid_orgs` is set also requires level 2 to be a UUID.
    pub fn parse_with(topic: &str, uuid_orgs: bool) -> Result<Self, TopicError> {
        let fail = |problem| Err(TopicError::new(topic, problem));
        if topic.len() > MAX_TOPIC_LEN {
            return fail(TopicProblem::TooLong { len: topic.len() });
        }
        let mut levels = topic.split('/');
        let mut next = || levels.next();
        let (Some(prefix), Some(org), Some(device), Some(kind)) = (next(), next(), next(), next())
        else {
            return fail(TopicProblem::LevelCount {
                got: topic.split('/').count(),
            });
        };
        if next().is_some() {
            return fail(TopicProblem::LevelCount {
                got: topic.split('/').count(),
            });
        }
        if prefix != PREFIX {
            return fail(TopicProblem::Prefix);
        }
        let org = match OrgId::parse(org) {
            Ok(org) if uuid_orgs && !org.is_uuid() => {
                let error = IdError {
                    kind: IdKind::Organization,
                    problem: crate::id::IdProblem::NotUuid,
                };
                return fail(TopicProblem::Level { level: 2, error });
            }
            Ok(org) => org,
            Err(error) => return fail(TopicProblem::Level { level: 2, error }),
        };
        let device = match DeviceId::parse(device) {
            Ok(device) => device,
            Err(error) => return fail(TopicProblem::Level { level: 3, error }),
        };
        let Ok(kind) = kind.parse() else {
            return fail(TopicProblem::Kind);
        };
        Ok(Self { org, device, kind })
    }

    /// The organization, level 2.
    pub const fn org(&self) -> &OrgId {
        &self.org
    }

    /// The device, level 3.
    pub const fn device(&self) -> &DeviceId {
        &self.device
    }

    /// The message kind, level 4.
    pub const fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The topic of another kind for the same device, such as the `command_response` topic that
    /// answers a `commands` topic.
    pub fn with_kind(&self, kind: MessageKind) -> Self {
        Self {
            org: self.org.clone(),
            device: self.device.clone(),
            kind,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}/{}/{}/{}", self.org, self.device, self.kind)
    }
}

impl FromStr for Topic {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::parse(s)
    }
}

/// One level of a filter: a fixed value or `+`.
///
/// ```
/// use dese_protocol::topic::Level;
///
/// assert_eq!(Level::<u8>::Any.to_string(), "+");
/// assert_eq!(Level::Is(7).to_string(), "7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Level<T> {
    /// `+`: any value.
    Any,
    /// Exactly this value.
    Is(T),
}

impl<T: PartialEq> Level<T> {
    fn matches(&self, value: &T) -> bool {
        match self {
            Self::Any => true,
            Self::Is(want) => want == value,
        }
    }
}

impl<T: fmt::Display> fmt::Display for Level<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("+"),
            Self::Is(value) => value.fmt(f),
        }
    }
}

/// A subscription filter over DESE topics, optionally shared by a group of subscribers.
///
/// Built from a scope (everything, one organization, one device), narrowed to one kind, and
/// optionally turned into an MQTT shared subscription so that several backend instances split
/// the messages. `Display` writes the MQTT filter; `FromStr` reads it back, also accepting a
/// trailing `#` for the levels it covers.
///
/// # Examples
///
/// ```
/// use dese_protocol::{MessageKind, OrgId, ShareGroup, TopicFilter};
///
/// let org = OrgId::parse("org-123")?;
/// let filter = TopicFilter::org(org).kind(MessageKind::Telemetry);
/// assert_eq!(filter.to_string(), "devices/org-123/+/telemetry");
/// assert!(filter.matches(&"devices/org-123/esp32-001/telemetry".parse()?));
/// assert!(!filter.matches(&"devices/org-999/esp32-001/telemetry".parse()?));
///
/// let shared = TopicFilter::all().shared(ShareGroup::parse("backend")?);
/// assert_eq!(shared.to_string(), "$share/backend/devices/+/+/+");
/// assert_eq!(shared.to_string().parse::<TopicFilter>()?, shared);
/// assert_eq!("devices/#".parse::<TopicFilter>()?, TopicFilter::all());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter {
    group: Option<ShareGroup>,
    org: Level<OrgId>,
    device: Level<DeviceId>,
    kind: Level<MessageKind>,
}

impl TopicFilter {
    /// Every device of every organization: `devices/+/+/+`.
    pub const fn all() -> Self {
        Self {
            group: None,
            org: Level::Any,
            device: Level::Any,
            kind: Level::Any,
        }
    }

    /// Every device of one organization: `devices/{org}/+/+`.
    pub const fn org(org: OrgId) -> Self {
        Self {
            group: None,
            org: Level::Is(org),
            device: Level::Any,
            kind: Level::Any,
        }
    }

    /// One device: `devices/{org}/{device}/+`.
    pub const fn device(org: OrgId, device: DeviceId) -> Self {
        Self {
            group: None,
            org: Level::Is(org),
            device: Level::Is(device),
            kind: Level::Any,
        }
    }

    /// Exactly one topic.
    pub fn topic(topic: &Topic) -> Self {
        Self::device(topic.org.clone(), topic.device.clone()).kind(topic.kind)
    }

    /// Narrows the filter to one message kind.
    #[must_use]
    pub fn kind(mut self, kind: MessageKind) -> Self {
        self.kind = Level::Is(kind);
        self
    }

    /// Makes it an MQTT shared subscription: `$share/{group}/...`. The broker hands each
    /// message to one subscriber of the group.
    #[must_use]
    pub fn shared(mut self, group: ShareGroup) -> Self {
        self.group = Some(group);
        self
    }

    /// The shared-subscription group, if any.
    pub const fn group(&self) -> Option<&ShareGroup> {
        self.group.as_ref()
    }

    /// Whether a message published on `topic` reaches a subscriber of this filter.
    pub fn matches(&self, topic: &Topic) -> bool {
        self.org.matches(&topic.org)
            && self.device.matches(&topic.device)
            && self.kind.matches(&topic.kind)
    }

    /// Parses an MQTT filter over DESE topics; see the type's documentation.
    pub fn parse(filter: &str) -> Result<Self, TopicError> {
        let fail = |problem| Err(TopicError::new(filter, problem));
        if filter.len() > MAX_TOPIC_LEN + 8 + ShareGroup::MAX_LEN {
            return fail(TopicProblem::TooLong { len: filter.len() });
        }
        let (group, rest) = match filter.strip_prefix("$share/") {
            Some(shared) => {
                let Some((group, rest)) = shared.split_once('/') else {
                    return fail(TopicProblem::LevelCount { got: 2 });
                };
                match ShareGroup::parse(group) {
                    Ok(group) => (Some(group), rest),
                    Err(error) => return fail(TopicProblem::Level { level: 2, error }),
                }
            }
            None => (None, filter),
        };
        let offset = if group.is_some() { 2 } else { 0 };
        let levels: alloc::vec::Vec<&str> = rest.split('/').collect();
        if levels.len() > 4 {
            return fail(TopicProblem::LevelCount { got: levels.len() });
        }
        if levels[0] != PREFIX {
            return fail(TopicProblem::Prefix);
        }
        let mut out = Self::all();
        out.group = group;
        let multi = levels.last() == Some(&"#");
        let fixed = if multi {
            levels.len() - 1
        } else {
            levels.len()
        };
        if !multi && levels.len() != 4 {
            return fail(TopicProblem::LevelCount { got: levels.len() });
        }
        if fixed < 1 {
            return fail(TopicProblem::Prefix);
        }
        if let Some(&org) = levels.get(1).filter(|_| fixed > 1) {
            if org != "+" {
                match OrgId::parse(org) {
                    Ok(org) => out.org = Level::Is(org),
                    Err(error) => {
                        return fail(TopicProblem::Level {
                            level: offset + 2,
                            error,
                        });
                    }
                }
            }
        }
        if let Some(&device) = levels.get(2).filter(|_| fixed > 2) {
            if device != "+" {
                match DeviceId::parse(device) {
                    Ok(device) => out.device = Level::Is(device),
                    Err(error) => {
                        return fail(TopicProblem::Level {
                            level: offset + 3,
                            error,
                        });
                    }
                }
            }
        }
        if let Some(&kind) = levels.get(3).filter(|_| fixed > 3) {
            if kind != "+" {
                match kind.parse() {
                    Ok(kind) => out.kind = Level::Is(kind),
                    Err(_) => return fail(TopicProblem::Kind),
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(group) = &self.group {
            write!(f, "$share/{group}/")?;
        }
        write!(f, "{PREFIX}/{}/{}/{}", self.org, self.device, self.kind)
    }
}

impl FromStr for TopicFilter {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::parse(s)
    }
}

/// What is wrong with a topic or filter.
///
/// ```
/// use dese_protocol::Topic;
/// use dese_protocol::topic::TopicProblem;
///
/// let err = Topic::parse("devices/org/dev").unwrap_err();
/// assert_eq!(err.problem(), &TopicProblem::LevelCount { got: 3 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicProblem {
    /// Longer than any valid topic.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Not four levels.
    LevelCount {
        /// How many levels it has.
        got: usize,
    },
    /// The first level is not `devices`.
    Prefix,
    /// An id level breaks the id rules.
    Level {
        /// The 1-based level.
        level: usize,
        /// What is wrong with the id there.
        error: IdError,
    },
    /// The last level names none of the six kinds.
    Kind,
}

/// A topic or filter that was refused, with the input (shortened if very long) and the reason.
///
/// ```
/// use dese_protocol::Topic;
///
/// let err = Topic::parse("devices/org-123/esp32-001/telemetryx").unwrap_err();
/// assert_eq!(err.topic(), "devices/org-123/esp32-001/telemetryx");
/// assert!(err.to_string().ends_with("level 4 expected one of telemetry, commands, command_response, status, config, alert"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    topic: String,
    problem: TopicProblem,
}

impl TopicError {
    const SHOWN: usize = 160;

    pub(crate) fn new(topic: &str, problem: TopicProblem) -> Self {
        Self {
            topic: crate::text::shortened(topic, Self::SHOWN),
            problem,
        }
    }

    /// The refused topic, cut after 160 bytes.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// What is wrong with it.
    pub const fn problem(&self) -> &TopicProblem {
        &self.problem
    }
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid topic {:?}: ", self.topic)?;
        match &self.problem {
            TopicProblem::TooLong { len } => {
                write!(f, "{len} bytes long, expected at most {MAX_TOPIC_LEN}")
            }
            TopicProblem::LevelCount { got } => {
                write!(
                    f,
                    "has {got} levels, expected 4 (devices/{{organization_id}}/{{device_id}}/{{message_type}})"
                )
            }
            TopicProblem::Prefix => write!(f, "level 1 is not \"{PREFIX}\""),
            TopicProblem::Level { level, error } => {
                write!(f, "level {level} ({}) {}", error.kind.name(), error.problem)
            }
            TopicProblem::Kind => write!(f, "level 4 {}", crate::kind::UnknownKind),
        }
    }
}

/// The message says what is wrong with the level, the id's problem included, so there is no
/// `source()` to print it a second time; [`TopicError::problem`] has it, structured.
impl core::error::Error for TopicError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn problem(s: &str) -> TopicProblem {
        Topic::parse(s).unwrap_err().problem
    }

    // DESE-T1: exactly four levels, the first `devices`.
    #[test]
    fn dese_t1_shape() {
        assert!(Topic::parse("devices/org-123/esp32-001/telemetry").is_ok());
        assert_eq!(
            problem("devices/org/dev"),
            TopicProblem::LevelCount { got: 3 }
        );
        assert_eq!(
            problem("devices/org/dev/telemetry/extra"),
            TopicProblem::LevelCount { got: 5 }
        );
        assert_eq!(problem("device/org/dev/telemetry"), TopicProblem::Prefix);
        assert_eq!(problem("/devices/org/dev"), TopicProblem::Prefix);
        assert_eq!(problem(""), TopicProblem::LevelCount { got: 1 });
    }

    // DESE-T2 and DESE-T3 applied to topic levels.
    #[test]
    fn dese_t2_t3_levels() {
        assert_eq!(problem("devices/org/dev/telemetryx"), TopicProblem::Kind);
        assert!(matches!(
            problem("devices/+/dev/status"),
            TopicProblem::Level { level: 2, .. }
        ));
        assert!(matches!(
            problem("devices/org/#/status"),
            TopicProblem::Level { level: 3, .. }
        ));
        assert!(matches!(
            problem("devices/$SYS/dev/status"),
            TopicProblem::Level { level: 2, .. }
        ));
        let long = "x".repeat(10_000);
        assert_eq!(problem(&long), TopicProblem::TooLong { len: 10_000 });
        let err = Topic::parse(&long).unwrap_err();
        assert!(
            err.to_string().len() < 300,
            "hostile input is not echoed in full"
        );
    }

    #[test]
    fn uuid_orgs() {
        let uuid = "devices/0b6f1f1e-8d1a-4c53-9b0e-5c1f4e2a7d10/esp32-001/status";
        assert!(Topic::parse_with(uuid, true).is_ok());
        let err = Topic::parse_with("devices/org-123/esp32-001/status", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid topic \"devices/org-123/esp32-001/status\": level 2 (organization id) is not a UUID, expected 8-4-4-4-12 hex digits"
        );
    }

    #[test]
    fn filters() {
        let org = OrgId::from_static("org-123");
        let dev = DeviceId::from_static("esp32-001");
        let cases = [
            (TopicFilter::all(), "devices/+/+/+"),
            (TopicFilter::org(org.clone()), "devices/org-123/+/+"),
            (
                TopicFilter::device(org.clone(), dev.clone()),
                "devices/org-123/esp32-001/+",
            ),
            (
                TopicFilter::all().kind(MessageKind::Status),
                "devices/+/+/status",
            ),
            (
                TopicFilter::org(org.clone())
                    .kind(MessageKind::Alert)
                    .shared(ShareGroup::from_static("g1")),
                "$share/g1/devices/org-123/+/alert",
            ),
        ];
        for (filter, text) in cases {
            assert_eq!(filter.to_string(), text);
            assert_eq!(TopicFilter::parse(text), Ok(filter));
        }
        assert_eq!(TopicFilter::parse("devices/#"), Ok(TopicFilter::all()));
        assert_eq!(
            TopicFilter::parse("devices/org-123/#"),
            Ok(TopicFilter::org(org.clone()))
        );
        assert_eq!(
            TopicFilter::parse("devices/org-123/esp32-001/#"),
            Ok(TopicFilter::device(org.clone(), dev.clone()))
        );
        for bad in [
            "#",
            "devices",
            "devices/+/+",
            "other/+/+/+",
            "$share/g/#",
            "devices/+/+/+/+",
            "$share//devices/#",
            "devices/+/+/bogus",
        ] {
            assert!(TopicFilter::parse(bad).is_err(), "{bad}");
        }
        let topic = Topic::new(org.clone(), dev, MessageKind::Config);
        assert!(TopicFilter::topic(&topic).matches(&topic));
        assert!(!TopicFilter::topic(&topic).matches(&topic.with_kind(MessageKind::Status)));
        assert_eq!(TopicFilter::topic(&topic).to_string(), topic.to_string());
    }
}
