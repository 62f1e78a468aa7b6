//! The MQTT 3.1.1 packets a device needs, encoded and decoded without panicking.
//!
//! A device sends CONNECT, SUBSCRIBE, PUBLISH (QoS 1), PUBACK, PINGREQ and DISCONNECT, and
//! receives CONNACK, SUBACK, PUBLISH, PUBACK and PINGRESP. Anything else from the broker is a
//! protocol error ([`DecodeError::Unexpected`]); QoS 2 is never subscribed to, so a QoS 2
//! PUBLISH is one too. Every length read from the wire is checked against the bytes present.

use alloc::vec::Vec;
use core::fmt;

/// The largest remaining length MQTT can express (four length bytes).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// What a device publishes and subscribes with: the protocol uses QoS 1 for everything.
const QOS_1: u8 = 1;

/// A packet identifier: never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(u16);

impl PacketId {
    /// The first identifier a session hands out.
    pub const FIRST: Self = Self(1);

    /// The identifier, if `value` is not zero.
    pub const fn new(value: u16) -> Option<Self> {
        if value == 0 { None } else { Some(Self(value)) }
    }

    /// Its value.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The next identifier, wrapping from 65535 to 1.
    #[must_use]
    pub const fn next(self) -> Self {
        if self.0 == u16::MAX {
            Self(1)
        } else {
            Self(self.0 + 1)
        }
    }
}

/// The broker's answer to CONNECT (MQTT 3.1.1 section 3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectReturn {
    /// 0: accepted.
    Accepted,
    /// 1: the broker does not speak MQTT 3.1.1.
    UnacceptableProtocolVersion,
    /// 2: the client id was refused.
    IdentifierRejected,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable,
    /// 4: wrong user name or password.
    BadUsernameOrPassword,
    /// 5: not authorized.
    NotAuthorized,
}

impl ConnectReturn {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUsernameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }
}

impl fmt::Display for ConnectReturn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Accepted => "accepted",
            Self::UnacceptableProtocolVersion => "the broker does not speak MQTT 3.1.1",
            Self::IdentifierRejected => "the client id was refused",
            Self::ServerUnavailable => "the MQTT service is unavailable",
            Self::BadUsernameOrPassword => "wrong user name or password",
            Self::NotAuthorized => "not authorized",
        })
    }
}

/// A packet from the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// CONNACK.
    ConnAck {
        /// Whether the broker kept a session (never, with a clean session).
        session_present: bool,
        /// The verdict.
        code: ConnectReturn,
    },
    /// SUBACK: one granted QoS per filter, `None` where the broker refused the filter.
    SubAck {
        /// The SUBSCRIBE it answers.
        id: PacketId,
        /// Granted QoS per filter, in order; at most [`SubAck::MAX_FILTERS`].
        granted: SubAck,
    },
    /// PUBLISH.
    Publish(Publish<'a>),
    /// PUBACK.
    PubAck(PacketId),
    /// PINGRESP.
    PingResp,
}

/// The return codes of a SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubAck {
    codes: [Option<u8>; SubAck::MAX_FILTERS],
    len: usize,
}

impl SubAck {
    /// A device subscribes to two filters; a SUBACK with more codes than this is refused.
    pub const MAX_FILTERS: usize = 4;

    /// The granted QoS for each filter, `None` for a refused one.
    pub fn granted(&self) -> &[Option<u8>] {
        &self.codes[..self.len]
    }

    /// How many filters the broker refused.
    pub fn refused(&self) -> usize {
        self.granted().iter().filter(|code| code.is_none()).count()
    }
}

/// A PUBLISH from the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// The topic.
    pub topic: &'a str,
    /// `Some` for QoS 1: answer with a PUBACK carrying it.
    pub id: Option<PacketId>,
    /// The retain flag: set when the broker delivers a retained message on subscription.
    pub retain: bool,
    /// The DUP flag: the broker may have delivered it before.
    pub dup: bool,
    /// The payload.
    pub payload: &'a [u8],
}

/// Why bytes from the broker are not an acceptable packet. After any of these the connection
/// cannot be trusted: close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The remaining length uses more than four bytes.
    MalformedLength,
    /// A packet a broker never sends to a client (CONNECT, SUBSCRIBE, ...), a reserved type,
    /// or a QoS 2 PUBLISH.
    Unexpected {
        /// The first byte of the fixed header.
        header: u8,
    },
    /// The flags of the fixed header are wrong for its type.
    BadFlags {
        /// The first byte of the fixed header.
        header: u8,
    },
    /// The packet's length does not match what its type requires.
    BadLength {
        /// The packet type (upper four bits of the header).
        packet_type: u8,
        /// The remaining length given.
        length: usize,
    },
    /// A CONNACK return code above 5.
    BadConnectReturn(u8),
    /// A packet identifier of zero.
    ZeroPacketId,
    /// A topic that is not UTF-8 or is empty.
    BadTopic,
    /// A SUBACK return code other than 0, 1, 2 or 0x80.
    BadSubAckCode(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedLength => f.write_str("remaining length longer than four bytes"),
            Self::Unexpected { header } => {
                write!(
                    f,
                    "unexpected packet from the broker (header {header:#04x})"
                )
            }
            Self::BadFlags { header } => write!(f, "wrong flags in header {header:#04x}"),
            Self::BadLength {
                packet_type,
                length,
            } => write!(f, "packet type {packet_type} with wrong length {length}"),
            Self::BadConnectReturn(code) => write!(f, "CONNACK return code {code} is not defined"),
            Self::ZeroPacketId => f.write_str("packet identifier 0"),
            Self::BadTopic => f.write_str("PUBLISH topic empty or not UTF-8"),
            Self::BadSubAckCode(code) => write!(f, "SUBACK return code {code:#04x} is not defined"),
        }
    }
}

/// The fixed header of the next packet in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The first byte: type and flags.
    pub header: u8,
    /// Bytes taken by the fixed header (2 to 5).
    pub header_len: usize,
    /// The remaining length.
    pub remaining: usize,
}

impl Frame {
    /// The whole packet's size.
    pub fn len(&self) -> usize {
        self.header_len + self.remaining
    }

    /// Never true: a packet has at least its two header bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Reads the fixed header at the start of `buf`: `Ok(None)` until enough bytes for it are
    /// there (the body may still be missing).
    pub fn read(buf: &[u8]) -> Result<Option<Self>, DecodeError> {
        let Some(&header) = buf.first() else {
            return Ok(None);
        };
        let mut remaining = 0usize;
        for (i, &byte) in buf.iter().skip(1).take(4).enumerate() {
            remaining |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(Some(Self {
                    header,
                    header_len: i + 2,
                    remaining,
                }));
            }
            if i == 3 {
                return Err(DecodeError::MalformedLength);
            }
        }
        Ok(None)
    }
}

/// Decodes the packet at the start of `buf`: `Ok(None)` while it is incomplete, otherwise the
/// packet and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Incoming<'_>, usize)>, DecodeError> {
    let Some(frame) = Frame::read(buf)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(frame.header_len..frame.len()) else {
        return Ok(None);
    };
    let header = frame.header;
    let packet_type = header >> 4;
    let flags = header & 0x0f;
    let bad_length = DecodeError::BadLength {
        packet_type,
        length: body.len(),
    };
    let incoming = match packet_type {
        2 => {
            expect_flags(header, 0)?;
            let [ack_flags, code] = *body else {
                return Err(bad_length);
            };
            if ack_flags & 0xfe != 0 {
                return Err(DecodeError::BadFlags { header: ack_flags });
            }
            let code = ConnectReturn::from_byte(code).ok_or(DecodeError::BadConnectReturn(code))?;
            Incoming::ConnAck {
                session_present: ack_flags & 1 == 1,
                code,
            }
        }
        3 => Incoming::Publish(publish(flags, body)?),
        4 => {
            expect_flags(header, 0)?;
            let [high, low] = *body else {
                return Err(bad_length);
            };
            Incoming::PubAck(packet_id(high, low)?)
        }
        9 => {
            expect_flags(header, 0)?;
            let [high, low, codes @ ..] = body else {
                return Err(bad_length);
            };
            if codes.is_empty() || codes.len() > SubAck::MAX_FILTERS {
                return Err(bad_length);
            }
            let mut granted = SubAck {
                codes: [None; SubAck::MAX_FILTERS],
                len: codes.len(),
            };
            for (slot, &code) in granted.codes.iter_mut().zip(codes) {
                *slot = match code {
                    0..=2 => Some(code),
                    0x80 => None,
                    other => return Err(DecodeError::BadSubAckCode(other)),
                };
            }
            Incoming::SubAck {
                id: packet_id(*high, *low)?,
                granted,
            }
        }
        13 => {
            expect_flags(header, 0)?;
            if !body.is_empty() {
                return Err(bad_length);
            }
            Incoming::PingResp
        }
        _ => return Err(DecodeError::Unexpected { header }),
    };
    Ok(Some((incoming, frame.len())))
}

/// The topic and packet id at the start of a PUBLISH's body, when they are there: enough to
/// acknowledge a PUBLISH too large to keep.
pub fn publish_prefix(header: u8, body_start: &[u8]) -> Option<(&str, Option<PacketId>)> {
    let (topic, rest) = string(body_start)?;
    let topic = core::str::from_utf8(topic).ok()?;
    match (header >> 1) & 0b11 {
        0 => Some((topic, None)),
        1 => match *rest {
            [high, low, ..] => Some((topic, PacketId::new(u16::from_be_bytes([high, low])))),
            _ => None,
        },
        _ => None,
    }
}

fn publish(flags: u8, body: &[u8]) -> Result<Publish<'_>, DecodeError> {
    let header = 0x30 | flags;
    let qos = (flags >> 1) & 0b11;
    let (topic, rest) = string(body).ok_or(DecodeError::BadLength {
        packet_type: 3,
        length: body.len(),
    })?;
    let topic = core::str::from_utf8(topic).map_err(|_| DecodeError::BadTopic)?;
    if topic.is_empty() {
        return Err(DecodeError::BadTopic);
    }
    let (id, payload) = match qos {
        0 => (None, rest),
        1 => match rest {
            [high, low, payload @ ..] => (Some(packet_id(*high, *low)?), payload),
            _ => {
                return Err(DecodeError::BadLength {
                    packet_type: 3,
                    length: body.len(),
                });
            }
        },
        _ => return Err(DecodeError::Unexpected { header }),
    };
    Ok(Publish {
        topic,
        id,
        retain: flags & 1 == 1,
        dup: flags & 0b1000 != 0,
        payload,
    })
}

/// A length-prefixed string's bytes and what follows them; `None` when cut short.
fn string(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let [high, low, rest @ ..] = buf else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([*high, *low]));
    Some((rest.get(..len)?, rest.get(len..)?))
}

fn packet_id(high: u8, low: u8) -> Result<PacketId, DecodeError> {
    PacketId::new(u16::from_be_bytes([high, low])).ok_or(DecodeError::ZeroPacketId)
}

fn expect_flags(header: u8, flags: u8) -> Result<(), DecodeError> {
    if header & 0x0f == flags {
        Ok(())
    } else {
        Err(DecodeError::BadFlags { header })
    }
}

/// A string or payload too long for MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// What was too long.
    pub what: &'static str,
    /// Its length.
    pub len: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} bytes is too long for MQTT",
            self.what, self.len
        )
    }
}

/// The last will of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Will<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// Retained.
    pub retain: bool,
}

/// What a CONNECT carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// Keepalive, seconds.
    pub keepalive: u16,
    /// Clean session.
    pub clean_session: bool,
    /// The last will, published at QoS 1.
    pub will: Option<Will<'a>>,
    /// User name.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a [u8]>,
}

/// Appends a CONNECT for MQTT 3.1.1 to `out`.
pub fn encode_connect(connect: &Connect<'_>, out: &mut Vec<u8>) -> Result<(), TooLong> {
    let mut body = Vec::new();
    put_bytes(&mut body, b"MQTT", "protocol name")?;
    body.push(4); // protocol level: 3.1.1
    let mut flags = 0u8;
    if connect.clean_session {
        flags |= 0b10;
    }
    if let Some(will) = &connect.will {
        flags |= 0b100 | (QOS_1 << 3);
        if will.retain {
            flags |= 0b10_0000;
        }
    }
    if connect.password.is_some() {
        flags |= 0b100_0000;
    }
    if connect.username.is_some() {
        flags |= 0b1000_0000;
    }
    body.push(flags);
    body.extend_from_slice(&connect.keepalive.to_be_bytes());
    put_bytes(&mut body, connect.client_id.as_bytes(), "client id")?;
    if let Some(will) = &connect.will {
        put_bytes(&mut body, will.topic.as_bytes(), "will topic")?;
        put_bytes(&mut body, will.payload, "will payload")?;
    }
    if let Some(username) = connect.username {
        put_bytes(&mut body, username.as_bytes(), "user name")?;
    }
    if let Some(password) = connect.password {
        put_bytes(&mut body, password, "password")?;
    }
    frame(0x10, &body, out)
}

/// Appends a SUBSCRIBE of `filters` at QoS 1 to `out`.
pub fn encode_subscribe(id: PacketId, filters: &[&str], out: &mut Vec<u8>) -> Result<(), TooLong> {
    let mut body = Vec::new();
    body.extend_from_slice(&id.get().to_be_bytes());
    for filter in filters {
        put_bytes(&mut body, filter.as_bytes(), "topic filter")?;
        body.push(QOS_1);
    }
    frame(0x82, &body, out)
}

/// Appends a QoS 1 PUBLISH to `out`.
pub fn encode_publish(
    id: PacketId,
    topic: &str,
    payload: &[u8],
    retain: bool,
    out: &mut Vec<u8>,
) -> Result<(), TooLong> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    put_bytes(&mut body, topic.as_bytes(), "topic")?;
    body.extend_from_slice(&id.get().to_be_bytes());
    body.extend_from_slice(payload);
    frame(0x30 | (QOS_1 << 1) | u8::from(retain), &body, out)
}

/// Appends a PUBACK to `out`.
pub fn encode_puback(id: PacketId, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x40, 2]);
    out.extend_from_slice(&id.get().to_be_bytes());
}

/// Appends a PINGREQ to `out`.
pub fn encode_pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xc0, 0]);
}

/// Appends a DISCONNECT to `out`.
pub fn encode_disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xe0, 0]);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8], what: &'static str) -> Result<(), TooLong> {
    let len = u16::try_from(bytes.len()).map_err(|_| TooLong {
        what,
        len: bytes.len(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn frame(header: u8, body: &[u8], out: &mut Vec<u8>) -> Result<(), TooLong> {
    if body.len() > MAX_REMAINING_LENGTH {
        return Err(TooLong {
            what: "packet",
            len: body.len(),
        });
    }
    out.push(header);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn connect_matches_the_specification_layout() {
        let mut out = Vec::new();
        encode_connect(
            &Connect {
                client_id: "o:d",
                keepalive: 60,
                clean_session: true,
                will: Some(Will {
                    topic: "t",
                    payload: b"x",
                    retain: true,
                }),
                username: Some("u"),
                password: Some(b"p"),
            },
            &mut out,
        )
        .unwrap();
        let expected = [
            0x10,
            27,
            0,
            4,
            b'M',
            b'Q',
            b'T',
            b'T',
            4,
            0b1110_1110,
            0,
            60,
            0,
            3,
            b'o',
            b':',
            b'd',
            0,
            1,
            b't',
            0,
            1,
            b'x',
            0,
            1,
            b'u',
            0,
            1,
            b'p',
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn publish_round_trips_through_the_decoder() {
        let mut out = Vec::new();
        let id = PacketId::new(513).unwrap();
        encode_publish(id, "a/b", &[7; 200], true, &mut out).unwrap();
        // 200-byte payload: a two-byte remaining length.
        assert_eq!(&out[..3], &[0x33, 207, 1]);
        let (packet, used) = decode(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(
            packet,
            Incoming::Publish(Publish {
                topic: "a/b",
                id: Some(id),
                retain: true,
                dup: false,
                payload: &[7; 200],
            })
        );
    }

    #[test]
    fn incomplete_packets_wait_for_more_bytes() {
        let mut out = Vec::new();
        encode_publish(PacketId::FIRST, "t", b"hello", false, &mut out).unwrap();
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(decode(&out).unwrap().is_some());
    }

    #[test]
    fn broker_packets_decode() {
        assert_eq!(
            decode(&[0x20, 2, 0, 4]),
            Ok(Some((
                Incoming::ConnAck {
                    session_present: false,
                    code: ConnectReturn::BadUsernameOrPassword
                },
                4
            )))
        );
        assert_eq!(
            decode(&[0x40, 2, 0, 9]),
            Ok(Some((Incoming::PubAck(PacketId::new(9).unwrap()), 4)))
        );
        let (suback, _) = decode(&[0x90, 4, 0, 1, 1, 0x80]).unwrap().unwrap();
        let Incoming::SubAck { id, granted } = suback else {
            panic!("{suback:?}");
        };
        assert_eq!(id, PacketId::FIRST);
        assert_eq!(granted.granted(), &[Some(1), None]);
        assert_eq!(granted.refused(), 1);
        assert_eq!(decode(&[0xd0, 0]), Ok(Some((Incoming::PingResp, 2))));
    }

    #[test]
    fn hostile_bytes_are_typed_errors() {
        assert_eq!(
            decode(&[0x20, 2, 0, 6]),
            Err(DecodeError::BadConnectReturn(6))
        );
        assert_eq!(decode(&[0x40, 2, 0, 0]), Err(DecodeError::ZeroPacketId));
        assert_eq!(
            decode(&[0x10, 0]),
            Err(DecodeError::Unexpected { header: 0x10 })
        );
        assert_eq!(
            decode(&[0x34, 5, 0, 1, b't', 0, 1]),
            Err(DecodeError::Unexpected { header: 0x34 })
        );
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(DecodeError::MalformedLength)
        );
        assert_eq!(decode(&[0x30, 3, 0, 1, 0xff]), Err(DecodeError::BadTopic));
        assert_eq!(decode(&[0x30, 2, 0, 0]), Err(DecodeError::BadTopic));
        assert_eq!(
            decode(&[0x90, 3, 0, 1, 7]),
            Err(DecodeError::BadSubAckCode(7))
        );
        assert_eq!(
            decode(&[0x42, 2, 0, 1]),
            Err(DecodeError::BadFlags { header: 0x42 })
        );
    }

    #[test]
    fn every_short_input_decodes_without_panicking() {
        // Every one- and two-byte input, and every header with a three-byte body of each
        // pattern: decode answers, it never panics or over-reads.
        for a in 0..=255u8 {
            let _ = decode(&[a]);
            for b in 0..=255u8 {
                let _ = decode(&[a, b]);
                let _ = decode(&[a, 3, b, b, b]);
                let _ = decode(&[a, 4, 0, 1, b, b]);
            }
        }
    }

    #[test]
    fn the_prefix_of_an_oversized_publish_names_its_id() {
        let mut out = Vec::new();
        encode_publish(
            PacketId::new(77).unwrap(),
            "dese/x",
            &vec![0; 10_000],
            false,
            &mut out,
        )
        .unwrap();
        let frame = Frame::read(&out).unwrap().unwrap();
        let prefix = &out[frame.header_len..frame.header_len + 20];
        assert_eq!(
            publish_prefix(frame.header, prefix),
            Some(("dese/x", PacketId::new(77)))
        );
    }

    #[test]
    fn packet_ids_skip_zero() {
        assert_eq!(PacketId::new(u16::MAX).unwrap().next(), PacketId::FIRST);
        assert_eq!(PacketId::new(0), None);
    }
}
