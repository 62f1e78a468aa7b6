//! Checks shared by the six messages: the field rules in one place.
//!
//! Decoding runs in two passes. The fast pass lets serde read the payload into plain "wire"
//! structs (strings and numbers) and then checks every field here, with its path. Only when serde
//! itself refuses the payload (a missing field, a wrong JSON type) does the slow pass run: it
//! parses the payload into a `serde_json::Value` and walks it with the message's [`Field`] table
//! to say exactly which field and which type, since serde's own message names neither the path
//! nor a machine-readable reason.

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};

use serde_json::{Map, Number, Value};

use crate::error::{Fault, FieldPath, JsonType, Problem};
use crate::id::{DeviceId, IdKind, check};
use crate::time::Timestamp;
use crate::topic::Topic;
use crate::value::{Num, Range, RangeError};

/// A struct that only deserializes from a JSON object.
///
/// Serde's derived structs also accept an array of their fields in order, which the protocol
/// (and JSON Schema) does not: `"sensors": [7.2, 2.5, 25.5]` must be refused. Every wire struct,
/// the payload's own included, is read through this wrapper.
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyMaps<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        d.deserialize_map(OnlyMaps(PhantomData)).map(Object)
    }
}

/// Strings from the input are shortened to this many bytes inside error messages.
const SHOWN: usize = 64;

/// `s`, cut to 64 bytes at a character boundary, with `…` when cut.
pub(crate) fn shorten(s: &str) -> String {
    crate::text::shortened(s, SHOWN)
}

/// An id field, checked against the id rules for `kind`, then wrapped by `make`.
pub(crate) fn id<T>(
    s: String,
    path: &'static str,
    kind: IdKind,
    make: fn(String) -> T,
) -> Result<T, Fault> {
    match check(kind, &s) {
        Ok(()) => Ok(make(s)),
        Err(error) => Err(Fault::at(
            path,
            Problem::Id {
                got: shorten(&s),
                error,
            },
        )),
    }
}

/// The payload's `device_id`: a valid id, equal to the topic's (tenant isolation, DESE-T5).
pub(crate) fn device_of(device_id: String, topic: &Topic) -> Result<DeviceId, Fault> {
    let device_id = id(
        device_id,
        "device_id",
        IdKind::Device,
        DeviceId::from_checked,
    )?;
    same_as_topic(&device_id, topic.device(), "device_id")?;
    Ok(device_id)
}

/// The payload's id must equal the topic's (tenant isolation, DESE-T5).
pub(crate) fn same_as_topic<T: AsRef<str> + PartialEq>(
    payload: &T,
    topic: &T,
    path: &'static str,
) -> Result<(), Fault> {
    if payload == topic {
        Ok(())
    } else {
        Err(Fault::at(
            path,
            Problem::TenantMismatch {
                topic: String::from(topic.as_ref()),
                payload: shorten(payload.as_ref()),
            },
        ))
    }
}

pub(crate) fn timestamp(s: &str, path: &'static str) -> Result<Timestamp, Fault> {
    Timestamp::parse(s).map_err(|error| {
        Fault::at(
            path,
            Problem::Timestamp {
                got: shorten(s),
                error,
            },
        )
    })
}

/// A number field checked by the constructor of its value type.
pub(crate) fn number<T>(
    v: f64,
    path: impl Into<PathArg>,
    new: fn(f64) -> Result<T, RangeError>,
) -> Result<T, Fault> {
    new(v).map_err(|e| Fault {
        path: path.into().0,
        problem: Problem::OutOfRange(e),
    })
}

/// An integer field checked by the constructor of its value type. A number with a zero
/// fraction (`650.0`) counts as an integer, as it does in JSON Schema.
pub(crate) fn integer<T>(
    n: &Number,
    path: impl Into<PathArg>,
    range: Range,
    new: impl FnOnce(i64) -> Result<T, RangeError>,
) -> Result<T, Fault> {
    let fault = |problem| Fault {
        path: path.into().0,
        problem,
    };
    let value = if let Some(i) = n.as_i64() {
        i
    } else if let Some(u) = n.as_u64() {
        return Err(fault(Problem::OutOfRange(RangeError {
            got: Num::UInt(u),
            expected: range,
        })));
    } else {
        // JSON numbers are finite; `core` has no `fract`, so compare with the truncation.
        let f = n.as_f64().unwrap_or(f64::NAN);
        if !(-9.2e18..=9.2e18).contains(&f) {
            return Err(fault(Problem::OutOfRange(RangeError {
                got: Num::Float(f),
                expected: range,
            })));
        }
        let truncated = f as i64;
        if truncated as f64 != f {
            return Err(fault(Problem::NotInteger { got: f }));
        }
        truncated
    };
    new(value).map_err(|e| fault(Problem::OutOfRange(e)))
}

/// A field path given either as a literal or built at run time (map keys).
pub(crate) struct PathArg(FieldPath);

impl From<&'static str> for PathArg {
    fn from(path: &'static str) -> Self {
        Self(FieldPath::of(path))
    }
}

impl From<String> for PathArg {
    fn from(path: String) -> Self {
        Self(FieldPath::owned(path))
    }
}

/// The range of a plain integer type, for fields without a value type of their own.
pub(crate) fn int_range<T: TryFrom<i64>>(
    lo: i64,
    hi: i64,
) -> (Range, impl Fn(i64) -> Result<T, RangeError>) {
    let range = Range::Between(Num::Int(lo), Num::Int(hi));
    (range, move |v: i64| {
        if v < lo || v > hi {
            return Err(RangeError {
                got: Num::Int(v),
                expected: range,
            });
        }
        T::try_from(v).map_err(|_| RangeError {
            got: Num::Int(v),
            expected: range,
        })
    })
}

/// A text field: not empty, at most `max` bytes.
pub(crate) fn text(s: String, max: usize, path: &'static str) -> Result<String, Fault> {
    text_ref(&s, max, path)?;
    Ok(s)
}

/// [`text`] for a borrowed string, as the encoder checks it.
pub(crate) fn text_ref(s: &str, max: usize, path: &'static str) -> Result<(), Fault> {
    if s.is_empty() || s.len() > max {
        Err(Fault::at(path, Problem::Text { len: s.len(), max }))
    } else {
        Ok(())
    }
}

/// An enumeration carried as a string, such as a status or a severity.
pub(crate) trait Named: Copy + 'static {
    /// The wire names, in the order of [`Named::ALL`].
    const NAMES: &'static [&'static str];
    /// The values.
    const ALL: &'static [Self];
}

pub(crate) fn one_of<T: Named>(s: &str, path: &'static str) -> Result<T, Fault> {
    match T::NAMES.iter().position(|name| *name == s) {
        Some(i) => Ok(T::ALL[i]),
        None => Err(Fault::at(
            path,
            Problem::NotOneOf {
                got: shorten(s),
                expected: T::NAMES,
            },
        )),
    }
}

/// The JSON type a field must have, for the slow pass.
#[derive(Clone, Copy)]
pub(crate) enum Ty {
    Str,
    Num,
    Bool,
    /// An object with known fields.
    Obj(&'static [Field]),
    /// An object whose keys are free (sensor names) and whose values all have these fields.
    MapOf(&'static [Field]),
    /// Any object.
    AnyObj,
}

/// One field of a message's shape.
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) ty: Ty,
    pub(crate) required: bool,
}

impl Field {
    pub(crate) const fn req(name: &'static str, ty: Ty) -> Self {
        Self {
            name,
            ty,
            required: true,
        }
    }

    pub(crate) const fn opt(name: &'static str, ty: Ty) -> Self {
        Self {
            name,
            ty,
            required: false,
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        String::from(name)
    } else {
        format!("{prefix}.{name}")
    }
}

fn fault(path: &str, problem: Problem) -> Fault {
    Fault {
        path: FieldPath::owned(String::from(path)),
        problem,
    }
}

/// Finds the first field of `value` that does not have the presence or JSON type its table
/// says. Returns `Ok` when the structure is right (the problem, if any, is then in a value).
pub(crate) fn explain(value: &Value, fields: &'static [Field]) -> Result<(), Fault> {
    walk(value, Ty::Obj(fields), "")
}

fn walk(value: &Value, ty: Ty, path: &str) -> Result<(), Fault> {
    let expected = match ty {
        Ty::Str => JsonType::String,
        Ty::Num => JsonType::Number,
        Ty::Bool => JsonType::Bool,
        Ty::Obj(_) | Ty::MapOf(_) | Ty::AnyObj => JsonType::Object,
    };
    let ok = matches!(
        (ty, value),
        (Ty::Str, Value::String(_))
            | (Ty::Num, Value::Number(_))
            | (Ty::Bool, Value::Bool(_))
            | (Ty::Obj(_) | Ty::MapOf(_) | Ty::AnyObj, Value::Object(_))
    );
    if !ok {
        return Err(fault(
            path,
            Problem::WrongType {
                expected,
                got: JsonType::of(value),
            },
        ));
    }
    match (ty, value) {
        (Ty::Obj(fields), Value::Object(map)) => fields_of(map, fields, path),
        (Ty::MapOf(fields), Value::Object(map)) => {
            for (key, entry) in map {
                walk(entry, Ty::Obj(fields), &join(path, key))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn fields_of(map: &Map<String, Value>, fields: &'static [Field], path: &str) -> Result<(), Fault> {
    for field in fields {
        let here = join(path, field.name);
        match (map.get(field.name), field.required) {
            (None, true) => return Err(fault(&here, Problem::Missing)),
            (None | Some(Value::Null), false) => {}
            (Some(value), _) => walk(value, field.ty, &here)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INNER: &[Field] = &[Field::req("x", Ty::Num)];
    const SHAPE: &[Field] = &[
        Field::req("a", Ty::Str),
        Field::opt("b", Ty::Obj(INNER)),
        Field::opt("m", Ty::MapOf(INNER)),
    ];

    fn problem_at(json: &str) -> (String, Problem) {
        let value: Value = serde_json::from_str(json).unwrap();
        let f = explain(&value, SHAPE).unwrap_err();
        (String::from(f.path.as_str()), f.problem)
    }

    #[test]
    fn walker_names_path_and_types() {
        assert_eq!(problem_at("{}"), (String::from("a"), Problem::Missing));
        assert_eq!(
            problem_at("[]"),
            (
                String::new(),
                Problem::WrongType {
                    expected: JsonType::Object,
                    got: JsonType::Array
                }
            )
        );
        assert_eq!(
            problem_at(r#"{"a":null}"#),
            (
                String::from("a"),
                Problem::WrongType {
                    expected: JsonType::String,
                    got: JsonType::Null
                }
            )
        );
        assert_eq!(
            problem_at(r#"{"a":"","b":{"x":"1"}}"#),
            (
                String::from("b.x"),
                Problem::WrongType {
                    expected: JsonType::Number,
                    got: JsonType::String
                }
            )
        );
        assert_eq!(
            problem_at(r#"{"a":"","m":{"ph":{}}}"#),
            (String::from("m.ph.x"), Problem::Missing)
        );
        let ok: Value = serde_json::from_str(r#"{"a":"","b":null,"extra":[1]}"#).unwrap();
        assert!(explain(&ok, SHAPE).is_ok());
    }

    #[test]
    fn integers() {
        let (range, new) = int_range::<u32>(0, i64::from(u32::MAX));
        let n = |s: &str| serde_json::from_str::<Number>(s).unwrap();
        assert_eq!(integer(&n("7"), "f", range, &new).unwrap(), 7);
        assert_eq!(integer(&n("7.0"), "f", range, &new).unwrap(), 7);
        assert!(matches!(
            integer(&n("7.5"), "f", range, &new).unwrap_err().problem,
            Problem::NotInteger { .. }
        ));
        assert!(matches!(
            integer(&n("-1"), "f", range, &new).unwrap_err().problem,
            Problem::OutOfRange(_)
        ));
        assert!(matches!(
            integer(&n("18446744073709551615"), "f", range, &new)
                .unwrap_err()
                .problem,
            Problem::OutOfRange(_)
        ));
        assert!(matches!(
            integer(&n("1e300"), "f", range, &new).unwrap_err().problem,
            Problem::OutOfRange(_)
        ));
    }

    #[test]
    fn shorten_cuts_at_char_boundary() {
        let s = "é".repeat(40);
        let short = shorten(&s);
        assert!(short.len() <= SHOWN + '…'.len_utf8());
        assert!(short.ends_with('…'));
    }
}
