//! Why a message was refused: what was wrong, and where.
//!
//! [`DecodeError`] is the one error of [`decode`](crate::decode); every variant that concerns
//! the payload's content is an [`Invalid`], which names the field path and says expected versus
//! got. [`DecodeError::reason`] sorts every error into a small [`Reason`] for counting.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use crate::id::{CommandId, IdError};
use crate::kind::MessageKind;
use crate::time::TimestampError;
use crate::topic::TopicError;
use crate::value::RangeError;

/// Where in the payload a problem is, as dotted field names: `sensors.ph`,
/// `config.sensor_calibration.ph.scale`. Empty for the payload as a whole.
///
/// ```
/// use dese_protocol::decode;
///
/// let err = decode("devices/o/d/status", b"[]").unwrap_err();
/// let path = &err.invalid().unwrap().path;
/// assert!(path.is_root());
/// assert_eq!(path.to_string(), "payload");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Cow<'static, str>);

impl FieldPath {
    /// The whole payload.
    pub const ROOT: Self = Self(Cow::Borrowed(""));

    pub(crate) const fn of(path: &'static str) -> Self {
        Self(Cow::Borrowed(path))
    }

    pub(crate) fn owned(path: String) -> Self {
        Self(Cow::Owned(path))
    }

    /// The dotted path; empty for the whole payload.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the whole payload.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_root() { "payload" } else { &self.0 })
    }
}

/// The JSON types, for "expected a string, got a number".
///
/// ```
/// use dese_protocol::{JsonType, Problem, decode};
///
/// let payload = br#"{"status":"online","firmware_version":1,"timestamp":"2025-01-27T10:00:00Z"}"#;
/// let err = decode("devices/o/d/status", payload).unwrap_err();
/// assert_eq!(
///     err.invalid().unwrap().problem,
///     Problem::WrongType { expected: JsonType::String, got: JsonType::Number }
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// Any number.
    Number,
    /// A number without a fractional part.
    Integer,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl JsonType {
    pub(crate) fn of(value: &serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => Self::Null,
            Value::Bool(_) => Self::Bool,
            Value::Number(_) => Self::Number,
            Value::String(_) => Self::String,
            Value::Array(_) => Self::Array,
            Value::Object(_) => Self::Object,
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Null => "null",
            Self::Bool => "a boolean",
            Self::Number => "a number",
            Self::Integer => "an integer",
            Self::String => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        })
    }
}

/// What is wrong with one field.
///
/// ```
/// use dese_protocol::{Problem, decode};
///
/// let payload = br#"{"severity":"warning","timestamp":"2025-01-27T10:00:00Z"}"#;
/// let err = decode("devices/o/d/alert", payload).unwrap_err();
/// let invalid = err.invalid().unwrap();
/// assert_eq!(invalid.problem, Problem::Missing);
/// assert_eq!(err.to_string(), "message: missing required field");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    /// A required field is absent (or `null`).
    Missing,
    /// The field has the wrong JSON type.
    WrongType {
        /// The type the field needs.
        expected: JsonType,
        /// The type found.
        got: JsonType,
    },
    /// An integer field holds a number with a fraction.
    NotInteger {
        /// The number found.
        got: f64,
    },
    /// A number outside the field's range.
    OutOfRange(RangeError),
    /// A string that is none of the field's allowed values.
    NotOneOf {
        /// The string found (shortened if long).
        got: String,
        /// The allowed values.
        expected: &'static [&'static str],
    },
    /// A string that breaks the id rules.
    Id {
        /// The string found (shortened if long).
        got: String,
        /// What is wrong with it.
        error: IdError,
    },
    /// A string that is not an ISO 8601 UTC timestamp.
    Timestamp {
        /// The string found (shortened if long).
        got: String,
        /// What is wrong with it.
        error: TimestampError,
    },
    /// A text field that is empty or too long.
    Text {
        /// Its length in bytes.
        len: usize,
        /// The longest allowed, in bytes.
        max: usize,
    },
    /// A name (such as a sensor name) with characters other than ASCII letters, digits, `_`
    /// and `-`, or longer than 32 bytes.
    Name {
        /// The string found (shortened if long).
        got: String,
    },
    /// The payload names another organization or device than its topic (tenant isolation).
    TenantMismatch {
        /// The id in the topic.
        topic: String,
        /// The id in the payload (shortened if long).
        payload: String,
    },
    /// A threshold whose `min` is above its `max`.
    MinAboveMax {
        /// The lower bound given.
        min: f64,
        /// The upper bound given.
        max: f64,
    },
    /// A command name the protocol does not list. Only a decoder that refuses unknown
    /// commands reports it ([`Decoder::refuse_unknown_commands`](crate::Decoder::refuse_unknown_commands));
    /// a device's decoder lets the command through, so that the device can answer it with an
    /// error response.
    UnknownCommand {
        /// The name found (shortened if long).
        got: String,
    },
    /// A problem found by the JSON parser that has no more precise description (such as a
    /// field given twice).
    Other(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("missing required field"),
            Self::WrongType { expected, got } => write!(f, "expected {expected}, got {got}"),
            Self::NotInteger { got } => write!(f, "expected an integer, got {got}"),
            Self::OutOfRange(e) => e.fmt(f),
            Self::NotOneOf { got, expected } => {
                write!(f, "{got:?} is not one of ")?;
                for (i, value) in expected.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(value)?;
                }
                Ok(())
            }
            Self::Id { got, error } => {
                write!(
                    f,
                    "{got:?} is not a valid {}: it {}",
                    error.kind.name(),
                    error.problem
                )
            }
            Self::Timestamp { got, error } => {
                write!(f, "{got:?} is not an ISO 8601 UTC timestamp: {error}")
            }
            Self::Text { len: 0, .. } => f.write_str("is empty, expected text"),
            Self::Text { len, max } => write!(f, "is {len} bytes long, expected at most {max}"),
            Self::Name { got } => write!(
                f,
                "{got:?} is not a valid name, expected 1 to 32 ASCII letters, digits, '_' or '-'"
            ),
            Self::TenantMismatch { topic, payload } => {
                write!(f, "{payload:?} does not match the topic's {topic:?}")
            }
            Self::MinAboveMax { min, max } => write!(f, "min {min} is greater than max {max}"),
            Self::UnknownCommand { got } => write!(
                f,
                "{got:?} is not one of the protocol's commands: {}",
                crate::Action::NAMES.join(", ")
            ),
            Self::Other(message) => f.write_str(message),
        }
    }
}

/// A payload that was valid JSON but not a valid message: which message kind, which field,
/// what is wrong.
///
/// `Display` is `{path}: {problem}`, such as `sensors.ph: 15.2 is out of range, expected 0 to 14`.
///
/// ```
/// use dese_protocol::{MessageKind, decode};
///
/// let payload = br#"{"command_id":"c-7","device_id":"dev","command":"set_ph_target",
///   "parameters":{"target_ph":15},"timestamp":"2025-01-27T10:00:00Z"}"#;
/// let err = decode("devices/org/dev/commands", payload).unwrap_err();
/// let invalid = err.invalid().unwrap();
/// assert_eq!(invalid.kind, MessageKind::Commands);
/// assert_eq!(invalid.path.as_str(), "parameters.target_ph");
/// assert_eq!(invalid.command_id.as_ref().unwrap().as_str(), "c-7");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct Invalid {
    /// The kind of message the topic announced.
    pub kind: MessageKind,
    /// Where the problem is.
    pub path: FieldPath,
    /// What it is.
    pub problem: Problem,
    /// For a command, its `command_id` when that much could be read, so that a device can
    /// still answer with an error response.
    pub command_id: Option<CommandId>,
}

/// A field-level problem before it is tied to a message kind.
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) path: FieldPath,
    pub(crate) problem: Problem,
}

impl Fault {
    pub(crate) const fn at(path: &'static str, problem: Problem) -> Self {
        Self {
            path: FieldPath::of(path),
            problem,
        }
    }

    pub(crate) fn into_invalid(self, kind: MessageKind) -> Invalid {
        Invalid {
            kind,
            path: self.path,
            problem: self.problem,
            command_id: None,
        }
    }
}

/// Where and why a payload is not JSON, as the parser said it.
///
/// ```
/// use dese_protocol::{DecodeError, decode};
///
/// let err = decode("devices/org/dev/status", br#"{"status": online}"#).unwrap_err();
/// let DecodeError::Syntax(syntax) = &err else { panic!("{err}") };
/// assert_eq!((syntax.line(), syntax.column()), (1, 12));
/// assert_eq!(syntax.to_string(), "expected value");
/// assert_eq!(err.to_string(), "payload is not valid JSON (line 1, column 12)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct JsonSyntax {
    line: usize,
    column: usize,
    ends_early: bool,
    what: String,
}

impl JsonSyntax {
    /// The line of the first byte the parser could not take, from 1.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Its column, from 1, as the parser counts it.
    pub fn column(&self) -> usize {
        self.column
    }

    /// Whether the payload ends before the JSON value does.
    pub fn ends_early(&self) -> bool {
        self.ends_early
    }
}

impl From<serde_json::Error> for JsonSyntax {
    fn from(error: serde_json::Error) -> Self {
        // serde_json writes "{what} at line {l} column {c}": the position is kept apart.
        let text = alloc::string::ToString::to_string(&error);
        let what = match text.rfind(" at line ") {
            Some(at) => String::from(&text[..at]),
            None => text,
        };
        Self {
            line: error.line(),
            column: error.column(),
            ends_early: error.is_eof(),
            what,
        }
    }
}

/// Why [`decode`](crate::decode) refused a message.
///
/// ```
/// use dese_protocol::{DecodeError, decode};
///
/// // An empty retained message clears a device's status: the backend sees it as its own case.
/// let err = decode("devices/org/dev/status", b"").unwrap_err();
/// assert!(matches!(err, DecodeError::Empty));
/// ```
///
/// It is `Clone`, so that an event that reports a refusal can carry it whole, field path and
/// reason included.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The topic is not a DESE topic.
    #[error(transparent)]
    Topic(TopicError),
    /// The payload is empty. On the `status` topic this is how a retained status is cleared.
    #[error("payload is empty, expected a JSON object")]
    Empty,
    /// The payload is larger than the decoder's limit; nothing was parsed.
    #[error("payload is {size} bytes, expected at most {max}")]
    TooLarge {
        /// Payload size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The payload nests objects or arrays deeper than the decoder's limit; nothing was parsed.
    #[error("payload nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The payload is not JSON.
    #[error(
        "payload is not valid JSON{} (line {}, column {})",
        if .0.ends_early() { ": it ends early" } else { "" },
        .0.line(),
        .0.column()
    )]
    Syntax(#[source] JsonSyntax),
    /// The payload is JSON, but not a valid message.
    #[error(transparent)]
    Invalid(Box<Invalid>),
}

impl DecodeError {
    /// The category of this error, for counting drops by reason.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Topic(_) => Reason::Topic,
            Self::Empty => Reason::Empty,
            Self::TooLarge { .. } => Reason::TooLarge,
            Self::TooDeep { .. } => Reason::TooDeep,
            Self::Syntax(_) => Reason::Syntax,
            Self::Invalid(invalid) => Reason::of(&invalid.problem),
        }
    }

    /// The field-level details when the payload was JSON but not a valid message.
    pub fn invalid(&self) -> Option<&Invalid> {
        match self {
            Self::Invalid(invalid) => Some(invalid),
            _ => None,
        }
    }

    /// The `command_id` of a refused command, when it could be read: the device answers it
    /// with an error response instead of staying silent.
    pub fn command_id(&self) -> Option<&CommandId> {
        self.invalid()
            .and_then(|invalid| invalid.command_id.as_ref())
    }
}

impl From<TopicError> for DecodeError {
    fn from(e: TopicError) -> Self {
        Self::Topic(e)
    }
}

impl From<Invalid> for DecodeError {
    fn from(e: Invalid) -> Self {
        Self::Invalid(Box::new(e))
    }
}

/// Why a message was dropped, in a few categories: a label for counters and logs.
///
/// ```
/// use std::collections::BTreeMap;
/// use dese_protocol::{Reason, decode};
///
/// let mut dropped: BTreeMap<Reason, u64> = BTreeMap::new();
/// for payload in [&b"not json"[..], b"{}", b"[1]"] {
///     if let Err(err) = decode("devices/org/dev/alert", payload) {
///         *dropped.entry(err.reason()).or_default() += 1;
///     }
/// }
/// assert_eq!(dropped[&Reason::Syntax], 1);
/// assert_eq!(dropped[&Reason::MissingField], 1);
/// assert_eq!(dropped[&Reason::WrongType], 1);
/// assert_eq!(Reason::TenantMismatch.as_str(), "tenant_mismatch");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Not a DESE topic.
    Topic,
    /// Empty payload.
    Empty,
    /// Payload over the size limit.
    TooLarge,
    /// Payload over the nesting limit.
    TooDeep,
    /// Not JSON.
    Syntax,
    /// A required field is absent.
    MissingField,
    /// A field of the wrong type.
    WrongType,
    /// A number out of range.
    OutOfRange,
    /// A value that is none of the allowed ones.
    NotOneOf,
    /// An id that breaks the id rules.
    BadId,
    /// A timestamp that is not ISO 8601 UTC.
    BadTimestamp,
    /// Text that is empty or too long, or a malformed name.
    BadText,
    /// The payload names another organization or device than its topic.
    TenantMismatch,
    /// Fields that contradict each other.
    Inconsistent,
    /// A command name the protocol does not list (only from a decoder that refuses them).
    UnknownCommand,
    /// Anything else the parser refused.
    Other,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 16] = [
        Self::Topic,
        Self::Empty,
        Self::TooLarge,
        Self::TooDeep,
        Self::Syntax,
        Self::MissingField,
        Self::WrongType,
        Self::OutOfRange,
        Self::NotOneOf,
        Self::BadId,
        Self::BadTimestamp,
        Self::BadText,
        Self::TenantMismatch,
        Self::Inconsistent,
        Self::UnknownCommand,
        Self::Other,
    ];

    fn of(problem: &Problem) -> Self {
        match problem {
            Problem::Missing => Self::MissingField,
            Problem::WrongType { .. } | Problem::NotInteger { .. } => Self::WrongType,
            Problem::OutOfRange(_) => Self::OutOfRange,
            Problem::NotOneOf { .. } => Self::NotOneOf,
            Problem::Id { .. } => Self::BadId,
            Problem::Timestamp { .. } => Self::BadTimestamp,
            Problem::Text { .. } | Problem::Name { .. } => Self::BadText,
            Problem::TenantMismatch { .. } => Self::TenantMismatch,
            Problem::MinAboveMax { .. } => Self::Inconsistent,
            Problem::UnknownCommand { .. } => Self::UnknownCommand,
            Problem::Other(_) => Self::Other,
        }
    }

    /// A stable snake_case label, such as `out_of_range`, used by the test vectors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::TooDeep => "too_deep",
            Self::Syntax => "syntax",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::OutOfRange => "out_of_range",
            Self::NotOneOf => "not_one_of",
            Self::BadId => "bad_id",
            Self::BadTimestamp => "bad_timestamp",
            Self::BadText => "bad_text",
            Self::TenantMismatch => "tenant_mismatch",
            Self::Inconsistent => "inconsistent",
            Self::UnknownCommand => "unknown_command",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why [`encode`](crate::encode) refused a message.
///
/// ```
/// use dese_protocol::{CommandId, CommandResponse, EncodeError, Timestamp, encode, serde_json::json};
///
/// let mut data = dese_protocol::JsonObject::new();
/// data.insert("log".into(), json!("x".repeat(20_000)));
/// let response = CommandResponse::ok(CommandId::parse("c-1")?, Some(data), Timestamp::UNIX_EPOCH);
/// let err = encode(&response.into()).unwrap_err();
/// assert!(matches!(err, EncodeError::TooLarge { max: 16_384, .. }));
/// # Ok::<(), dese_protocol::IdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Telemetry over the protocol's 1 KB budget.
    #[error("telemetry is {size} bytes, over the protocol's budget of {budget}")]
    OverBudget {
        /// The encoded size in bytes.
        size: usize,
        /// The budget in bytes ([`TELEMETRY_BUDGET`](crate::TELEMETRY_BUDGET)).
        budget: usize,
    },
    /// Larger than a peer with default limits accepts.
    #[error("message is {size} bytes, expected at most {max}")]
    TooLarge {
        /// The encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// Nested deeper than a peer with default limits accepts (a deep `response` object).
    #[error("message nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A field that a peer would refuse, such as an empty alert message.
    #[error(transparent)]
    Invalid(Box<Invalid>),
}
