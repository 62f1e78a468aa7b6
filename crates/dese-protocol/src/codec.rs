//! The codec: `(topic, bytes)` to a typed message, and a message back to bytes.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{DecodeError, EncodeError, Fault, FieldPath, Problem};
use crate::id::{CommandId, IdError, IdKind, IdProblem};
use crate::kind::MessageKind;
use crate::message::check::{self, Field, Object, shorten};
use crate::message::{
    ALERT_SHAPE, Action, Alert, AlertWire, COMMAND_SHAPE, CONFIG_SHAPE, Command, CommandResponse,
    CommandWire, Config, ConfigWire, Envelope, Message, RESPONSE_SHAPE, ResponseWire, STATUS_SHAPE,
    Status, StatusWire, TELEMETRY_SHAPE, Telemetry, TelemetryWire,
};
use crate::topic::{Topic, TopicError, TopicProblem};

/// The protocol's size budget for one telemetry message: "keep telemetry messages under 1KB".
/// [`encode`] refuses telemetry larger than this many bytes.
pub const TELEMETRY_BUDGET: usize = 1024;

/// Bounds checked on a payload before any parsing work.
///
/// ```
/// use dese_protocol::{Decoder, Limits};
///
/// let strict = Decoder::new().with_limits(Limits { max_payload: 2048, ..Limits::DEFAULT });
/// assert_eq!(strict.limits().max_depth, 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload, in bytes.
    pub max_payload: usize,
    /// The deepest nesting of objects and arrays; the payload's own object is level 1. Values
    /// above 100 are treated as 100 (the JSON parser's own recursion guard is 128).
    pub max_depth: usize,
}

impl Limits {
    /// 16 KiB and 16 levels: far above any valid message (telemetry is at most 1 KiB and 2
    /// levels deep), far below what could hurt a backend.
    pub const DEFAULT: Self = Self {
        max_payload: 16 * 1024,
        max_depth: 16,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Decodes and validates messages, with configurable limits and organization id policy.
///
/// [`decode`] is `Decoder::new().decode(..)`.
///
/// # Examples
///
/// ```
/// use dese_protocol::{DecodeError, Decoder, Limits, Reason};
///
/// let decoder = Decoder::new().with_limits(Limits { max_payload: 512, max_depth: 4 });
/// let err = decoder.decode("devices/org-123/esp32-001/alert", &[b' '; 600]).unwrap_err();
/// assert!(matches!(err, DecodeError::TooLarge { size: 600, max: 512 }));
/// assert_eq!(err.reason(), Reason::TooLarge);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoder {
    limits: Limits,
    uuid_orgs: bool,
    refuse_unknown_commands: bool,
}

impl Decoder {
    /// A decoder with [`Limits::DEFAULT`] that accepts any valid organization id.
    pub const fn new() -> Self {
        Self {
            limits: Limits::DEFAULT,
            uuid_orgs: false,
            refuse_unknown_commands: false,
        }
    }

    /// Replaces the limits.
    #[must_use]
    pub const fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// When `yes`, organization ids must be UUIDs (see [`OrgId::parse_uuid`](crate::OrgId::parse_uuid)).
    #[must_use]
    pub const fn require_uuid_orgs(mut self, yes: bool) -> Self {
        self.uuid_orgs = yes;
        self
    }

    /// When `yes`, a command whose name the protocol does not list is refused
    /// ([`Reason::UnknownCommand`](crate::Reason::UnknownCommand), at `command`, with its
    /// `command_id`), as a validator judges it. By default it decodes as
    /// [`Action::Unknown`](crate::Action::Unknown), so that a device can answer it with an
    /// error response, as the protocol asks.
    ///
    /// ```
    /// use dese_protocol::{Decoder, Reason};
    ///
    /// let dance = br#"{"command_id":"c-1","device_id":"d","command":"dance","timestamp":"2025-01-27T10:00:00Z"}"#;
    /// assert!(Decoder::new().decode("devices/o/d/commands", dance).is_ok());
    /// let err = Decoder::new().refuse_unknown_commands(true).decode("devices/o/d/commands", dance).unwrap_err();
    /// assert_eq!(err.reason(), Reason::UnknownCommand);
    /// assert_eq!(err.command_id().unwrap().as_str(), "c-1");
    /// ```
    #[must_use]
    pub const fn refuse_unknown_commands(mut self, yes: bool) -> Self {
        self.refuse_unknown_commands = yes;
        self
    }

    /// The limits in force.
    pub const fn limits(&self) -> Limits {
        self.limits
    }

    /// Parses the topic, then decodes and validates the payload as the message kind the topic
    /// names, including the tenant check (the payload's ids must equal the topic's).
    pub fn decode(&self, topic: &str, payload: &[u8]) -> Result<Envelope, DecodeError> {
        let topic = Topic::parse_with(topic, self.uuid_orgs)?;
        let message = self.decode_message(&topic, payload)?;
        Ok(Envelope { topic, message })
    }

    /// Like [`Decoder::decode`], for a topic already parsed.
    pub fn decode_message(&self, topic: &Topic, payload: &[u8]) -> Result<Message, DecodeError> {
        if self.uuid_orgs && !topic.org().is_uuid() {
            return Err(uuid_error(topic));
        }
        self.precheck(payload)?;
        let kind = topic.kind();
        let result = match kind {
            MessageKind::Telemetry => {
                run::<TelemetryWire<'_>, _>(payload, kind, TELEMETRY_SHAPE, |w| {
                    Telemetry::from_wire(w, topic)
                })
                .map(Message::Telemetry)
            }
            MessageKind::Commands => run::<CommandWire<'_>, _>(payload, kind, COMMAND_SHAPE, |w| {
                Command::from_wire(w, topic)
            })
            .and_then(|command| self.known(command))
            .map(Message::Command),
            MessageKind::CommandResponse => run::<ResponseWire<'_>, _>(
                payload,
                kind,
                RESPONSE_SHAPE,
                CommandResponse::from_wire,
            )
            .map(Message::CommandResponse),
            MessageKind::Status => {
                run::<StatusWire<'_>, _>(payload, kind, STATUS_SHAPE, Status::from_wire)
                    .map(Message::Status)
            }
            MessageKind::Config => run::<ConfigWire<'_>, _>(payload, kind, CONFIG_SHAPE, |w| {
                Config::from_wire(w, topic)
            })
            .map(Message::Config),
            MessageKind::Alert => {
                run::<AlertWire<'_>, _>(payload, kind, ALERT_SHAPE, Alert::from_wire)
                    .map(Message::Alert)
            }
        };
        match result {
            Err(DecodeError::Invalid(mut invalid)) if kind == MessageKind::Commands => {
                invalid.command_id = recover_command_id(payload);
                Err(DecodeError::Invalid(invalid))
            }
            other => other,
        }
    }

    /// Refuses an unknown command when asked to ([`Decoder::refuse_unknown_commands`]).
    fn known(&self, command: Command) -> Result<Command, DecodeError> {
        match &command.action {
            Action::Unknown { name, .. } if self.refuse_unknown_commands => {
                let fault = Fault::at("command", Problem::UnknownCommand { got: shorten(name) });
                Err(fault.into_invalid(MessageKind::Commands).into())
            }
            _ => Ok(command),
        }
    }

    fn precheck(&self, payload: &[u8]) -> Result<(), DecodeError> {
        if payload.is_empty() {
            return Err(DecodeError::Empty);
        }
        if payload.len() > self.limits.max_payload {
            return Err(DecodeError::TooLarge {
                size: payload.len(),
                max: self.limits.max_payload,
            });
        }
        let max = self.limits.max_depth.min(100);
        if nesting_exceeds(payload, max) {
            return Err(DecodeError::TooDeep { max });
        }
        Ok(())
    }
}

fn uuid_error(topic: &Topic) -> DecodeError {
    let error = IdError {
        kind: IdKind::Organization,
        problem: IdProblem::NotUuid,
    };
    let problem = TopicProblem::Level { level: 2, error };
    DecodeError::Topic(TopicError::new(&topic.to_string(), problem))
}

/// Decodes one message with the default [`Decoder`]: topic check, size and depth limits before
/// parsing, JSON, every field rule, and the tenant check.
///
/// # Examples
///
/// ```
/// use dese_protocol::{decode, Reason};
///
/// let payload = br#"{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:00Z",
///   "organization_id":"org-123","sensors":{"ph":15.2,"chlorine":2.5,"temperature":25.5},
///   "metadata":{"firmware_version":"1.0.0"}}"#;
/// let err = decode("devices/org-123/esp32-001/telemetry", payload).unwrap_err();
/// assert_eq!(err.to_string(), "sensors.ph: 15.2 is out of range, expected 0 to 14");
/// assert_eq!(err.reason(), Reason::OutOfRange);
/// assert_eq!(err.invalid().unwrap().path.as_str(), "sensors.ph");
/// ```
pub fn decode(topic: &str, payload: &[u8]) -> Result<Envelope, DecodeError> {
    Decoder::new().decode(topic, payload)
}

/// Judges a message as a validator does (`dese validate`, the JSON Schemas, the test vectors):
/// like [`decode`], and a command whose name the protocol does not list is refused
/// ([`Decoder::refuse_unknown_commands`]). A device decodes with [`decode`] instead, so that it
/// can answer such a command with an error response.
///
/// ```
/// use dese_protocol::{Reason, decode, validate};
///
/// let dance = br#"{"command_id":"c-1","device_id":"d","command":"dance","timestamp":"2025-01-27T10:00:00Z"}"#;
/// assert!(decode("devices/o/d/commands", dance).is_ok());
/// assert_eq!(validate("devices/o/d/commands", dance).unwrap_err().reason(), Reason::UnknownCommand);
/// ```
pub fn validate(topic: &str, payload: &[u8]) -> Result<Envelope, DecodeError> {
    Decoder::new()
        .refuse_unknown_commands(true)
        .decode(topic, payload)
}

/// Fast pass: serde into the wire struct, then the field rules. Slow pass, only when serde
/// refused the payload: find which field has the wrong presence or type.
fn run<'a, W: Deserialize<'a>, T>(
    payload: &'a [u8],
    kind: MessageKind,
    shape: &'static [Field],
    convert: impl FnOnce(W) -> Result<T, Fault>,
) -> Result<T, DecodeError> {
    let error = match serde_json::from_slice::<Object<W>>(payload) {
        Ok(Object(wire)) => return convert(wire).map_err(|fault| fault.into_invalid(kind).into()),
        Err(error) => error,
    };
    // Serde refused the payload. Whether it is JSON at all, and if so which field is wrong, is
    // decided on a generic parse, not on serde's classification of its own error.
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(syntax) => return Err(DecodeError::Syntax(syntax.into())),
    };
    let fault = check::explain(&value, shape).err().unwrap_or(Fault {
        // Serde refused what the shape accepts: a field given twice.
        path: FieldPath::ROOT,
        problem: Problem::Other(error.to_string()),
    });
    Err(fault.into_invalid(kind).into())
}

/// The `command_id` of a refused command, when it is there and valid.
fn recover_command_id(payload: &[u8]) -> Option<CommandId> {
    #[derive(Deserialize)]
    struct IdOnly {
        command_id: String,
    }
    let id = serde_json::from_slice::<IdOnly>(payload).ok()?.command_id;
    CommandId::from_string(id).ok()
}

/// Whether `payload` nests objects and arrays deeper than `max`, ignoring brackets in strings.
/// Malformed JSON is left for the parser to report.
fn nesting_exceeds(payload: &[u8], max: usize) -> bool {
    // Nesting can never exceed the number of opening brackets. Counting them in chunks of at
    // most 255 with a `u8` counter is a loop the compiler vectorizes; it settles every ordinary
    // message without the exact scan below.
    let opening: usize = payload
        .chunks(255)
        .map(|chunk| {
            let n = chunk
                .iter()
                .fold(0u8, |n, &b| n + u8::from((b == b'{') | (b == b'[')));
            usize::from(n)
        })
        .sum();
    if opening <= max {
        return false;
    }
    let mut depth = 0usize;
    let mut bytes = payload.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => {
                // Skip the string, escapes included.
                while let Some(&c) = bytes.next() {
                    match c {
                        b'\\' => {
                            bytes.next();
                        }
                        b'"' => break,
                        _ => {}
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Telemetry(m) => m.serialize(s),
            Self::Command(m) => m.serialize(s),
            Self::CommandResponse(m) => m.serialize(s),
            Self::Status(m) => m.serialize(s),
            Self::Config(m) => m.serialize(s),
            Self::Alert(m) => m.serialize(s),
        }
    }
}

/// Encodes a message as compact JSON, refusing what a peer with default limits would refuse:
/// telemetry over [`TELEMETRY_BUDGET`], anything over [`Limits::DEFAULT`], empty or overlong
/// text fields.
///
/// Every other rule is already guaranteed by the types (ids, timestamps, ranges).
///
/// # Examples
///
/// ```
/// use dese_protocol::{encode, Alert, EncodeError, Message, Severity, Timestamp};
///
/// let alert = Alert {
///     severity: Severity::Info,
///     message: String::new(),
///     sensor: None,
///     value: None,
///     threshold: None,
///     timestamp: Timestamp::UNIX_EPOCH,
/// };
/// let err = encode(&Message::Alert(alert)).unwrap_err();
/// assert_eq!(err.to_string(), "message: is empty, expected text");
/// ```
pub fn encode(message: &Message) -> Result<Vec<u8>, EncodeError> {
    let texts = match message {
        Message::Telemetry(m) => m.check_text(),
        Message::Command(m) => m.check_text(),
        Message::CommandResponse(m) => m.check_text(),
        Message::Status(m) => m.check_text(),
        Message::Config(m) => m.check_text(),
        Message::Alert(m) => m.check_text(),
    };
    texts.map_err(|fault| EncodeError::Invalid(Box::new(fault.into_invalid(message.kind()))))?;
    let bytes = serde_json::to_vec(message).map_err(|e| {
        let fault = Fault {
            path: FieldPath::ROOT,
            problem: Problem::Other(e.to_string()),
        };
        EncodeError::Invalid(Box::new(fault.into_invalid(message.kind())))
    })?;
    check_size(message.kind(), &bytes)?;
    Ok(bytes)
}

/// The size and depth a peer with default limits accepts, and the telemetry budget.
fn check_size(kind: MessageKind, bytes: &[u8]) -> Result<(), EncodeError> {
    if kind == MessageKind::Telemetry && bytes.len() > TELEMETRY_BUDGET {
        return Err(EncodeError::OverBudget {
            size: bytes.len(),
            budget: TELEMETRY_BUDGET,
        });
    }
    let limits = Limits::DEFAULT;
    if bytes.len() > limits.max_payload {
        return Err(EncodeError::TooLarge {
            size: bytes.len(),
            max: limits.max_payload,
        });
    }
    if nesting_exceeds(bytes, limits.max_depth) {
        return Err(EncodeError::TooDeep {
            max: limits.max_depth,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Action, CommandResponse, JsonObject};
    use crate::{CommandId, DeviceId, Timestamp};
    use alloc::vec;
    use serde_json::Value;

    // DESE-V3: size is bounded before parsing; the default is 16 KiB.
    #[test]
    fn dese_v3_too_large() {
        let mut payload = vec![b' '; Limits::DEFAULT.max_payload];
        payload[0] = b'{';
        let err = decode("devices/o/d/alert", &payload).unwrap_err();
        assert_ne!(
            err.reason(),
            crate::Reason::TooLarge,
            "at the limit it is parsed: {err}"
        );
        payload.push(b'}');
        let err = decode("devices/o/d/alert", &payload).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    size: 16_385,
                    max: 16_384
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "payload is 16385 bytes, expected at most 16384"
        );
    }

    // DESE-P10: the encoder reports telemetry over the 1 KB budget.
    #[test]
    fn dese_p10_budget_guard() {
        let over = vec![b' '; TELEMETRY_BUDGET + 1];
        assert!(matches!(
            check_size(MessageKind::Telemetry, &over),
            Err(EncodeError::OverBudget {
                size: 1025,
                budget: 1024
            })
        ));
        assert!(check_size(MessageKind::Telemetry, &over[1..]).is_ok());
        assert!(
            check_size(MessageKind::Alert, &over).is_ok(),
            "the budget is telemetry's only"
        );
    }

    // DESE-P10: the field limits keep every valid telemetry within the budget, so the guard
    // above never fires for a message the types allow. This is the largest one: every field
    // at its longest text.
    #[test]
    fn dese_p10_largest_telemetry_fits() {
        // The longest shortest-round-trip forms of an f64: 23 characters, 24 with a sign.
        let long = f64::MIN_POSITIVE;
        let t = crate::Telemetry {
            device_id: DeviceId::parse(&"d".repeat(DeviceId::MAX_LEN)).unwrap(),
            timestamp: Timestamp::from_unix(-62_000_000_000, 123_456_789).unwrap(),
            organization_id: crate::OrgId::parse(&"o".repeat(crate::OrgId::MAX_LEN)).unwrap(),
            sensors: crate::Sensors {
                ph: crate::Ph::new(long).unwrap(),
                chlorine: crate::Ppm::new(long).unwrap(),
                temperature: crate::Celsius::new(-long).unwrap(),
                orp: Some(i32::MIN),
                tds: Some(u32::MAX),
                flow_rate: Some(crate::FlowRate::new(long).unwrap()),
            },
            metadata: crate::Metadata {
                battery: Some(crate::Battery::new(100).unwrap()),
                signal_strength: Some(crate::SignalStrength::new(-128).unwrap()),
                // Control characters: JSON escapes each byte as six (`\u0001`).
                firmware_version: "\u{1}".repeat(crate::FIRMWARE_VERSION_MAX),
            },
        };
        let bytes = encode(&Message::Telemetry(t)).unwrap();
        assert!(
            bytes.len() <= 852,
            "largest telemetry is {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn encode_refuses_what_a_peer_refuses() {
        let mut deep = Value::Null;
        for _ in 0..20 {
            deep = Value::Array(vec![deep]);
        }
        let mut response = JsonObject::new();
        response.insert("deep".into(), deep);
        let id = CommandId::parse("c").unwrap();
        let r = CommandResponse::ok(id.clone(), Some(response), Timestamp::UNIX_EPOCH);
        assert!(matches!(
            encode(&r.into()),
            Err(EncodeError::TooDeep { max: 16 })
        ));

        let mut big = JsonObject::new();
        big.insert("blob".into(), Value::String("x".repeat(20_000)));
        let r = CommandResponse::ok(id.clone(), Some(big), Timestamp::UNIX_EPOCH);
        assert!(matches!(
            encode(&r.into()),
            Err(EncodeError::TooLarge { .. })
        ));

        let command = crate::Command {
            command_id: id,
            device_id: DeviceId::parse("d").unwrap(),
            action: Action::Unknown {
                name: String::new(),
                parameters: None,
            },
            timestamp: Timestamp::UNIX_EPOCH,
        };
        let err = encode(&command.into()).unwrap_err();
        assert_eq!(err.to_string(), "command: is empty, expected text");
    }

    // DESE-V3: nesting is measured before parsing, strings do not count.
    #[test]
    fn dese_v3_nesting() {
        assert!(!nesting_exceeds(br#"{"a":{"b":1}}"#, 2));
        assert!(nesting_exceeds(br#"{"a":{"b":[1]}}"#, 2));
        assert!(!nesting_exceeds(br#"{"a":"{{{{[[[[\"{{"}"#, 1));
        assert!(!nesting_exceeds(br#"{"a":"\\"}"#, 1));
        assert!(nesting_exceeds(&[b'['; 1000], 16));
        assert!(!nesting_exceeds(b"", 0));
    }
}
