//! `cargo xtask near-valid`: payloads a change or two away from a valid test vector, each
//! judged by the Rust decoder, for the validators in other languages to agree with (the test
//! command's `scripts/check-validators`).
//!
//! Every case starts from a valid vector and changes one or two things: a field removed,
//! nulled, or given a value of another type or at the edge of its range; a string made empty,
//! too long, non-ASCII, or given a forbidden character; a timestamp's zone, fraction or date; a
//! sensor name; an unknown field or map key; and sometimes the topic's device or organization
//! (the tenant check) or the text itself (a field given twice at the top or nested, a number
//! JSON cannot hold in an unknown or a known field, a cut, a byte order mark).

use dese_protocol::serde_json::{self, Map, Value, json};
use dese_schema::vectors;

/// xorshift64*: reproducible without a random number crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values at the edges of the protocol's types and ranges.
fn edge_values() -> Vec<Value> {
    let text = |s: &str| Value::String(s.to_owned());
    vec![
        Value::Null,
        json!(true),
        json!([]),
        json!({}),
        json!([1, 2]),
        json!(0),
        json!(-1),
        json!(1),
        json!(14),
        json!(14.000001),
        json!(-0.000001),
        json!(7.2),
        json!(650.0),
        json!(650.5),
        json!(100),
        json!(101),
        json!(-128),
        json!(-129),
        json!(99),
        json!(86_400_000),
        json!(86_400_001),
        json!(65_535),
        json!(65_536),
        json!(4_294_967_295_u64),
        json!(4_294_967_296_u64),
        json!(2_147_483_648_u64),
        json!(-2_147_483_649_i64),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(-273.15),
        json!(-273.16),
        json!(1e300),
        json!(-1e300),
        json!(1.5e19),
        text(""),
        text("x"),
        text("$SYS"),
        text("a/b"),
        text("a+b"),
        text("a#"),
        text("tab\there"),
        text("del\u{7f}"),
        text("c1\u{85}"),
        text("é"),
        text(&"x".repeat(64)),
        text(&"x".repeat(65)),
        text(&"x".repeat(128)),
        text(&"x".repeat(129)),
        text(&"é".repeat(32)),
        text(&"é".repeat(33)),
        text(&"m".repeat(512)),
        text(&"m".repeat(513)),
        text("online"),
        text("offline"),
        text("maintenance"),
        text("ONLINE"),
        text("warning"),
        text("critical"),
        text("on"),
        text("off"),
        text("ph"),
        text("flow_rate"),
        text("turbidity"),
        text("Ph"),
        text("ph "),
        text("set_pump"),
        text("reboot"),
        text("dance"),
        text("2025-01-27T10:00:00Z"),
        text("2025-01-27T10:00:00.123456789Z"),
        text("2025-01-27T10:00:00.1234567890Z"),
        text("2025-01-27T10:00:00+00:00"),
        text("2025-01-27T10:00:00-00:00"),
        text("2025-01-27T10:00:00+01:00"),
        text("2025-01-27t10:00:00z"),
        text("2025-01-27 10:00:00Z"),
        text("2025-01-27T10:00:00"),
        text("2024-02-29T00:00:00Z"),
        text("2025-02-29T00:00:00Z"),
        text("2025-13-01T00:00:00Z"),
        text("2025-01-27T24:00:00Z"),
        text("2025-01-27T23:59:60Z"),
        text("2025-01-27T10:00:00.Z"),
        text("１２"),
        json!(0.1),
    ]
}

/// The dotted paths of every value in `value` (objects only: arrays are payload data).
fn paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(map) = value {
        for (key, inner) in map {
            prefix.push(key.clone());
            out.push(prefix.clone());
            paths(inner, prefix, out);
            prefix.pop();
        }
    }
}

fn parent<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Map<String, Value>> {
    let mut here = value;
    for key in path {
        here = here.as_object_mut()?.get_mut(key)?;
    }
    here.as_object_mut()
}

/// One change to `value` at a random place; a short description of it.
fn mutate(value: &mut Value, rng: &mut Rng, edges: &[Value]) -> String {
    let mut all = Vec::new();
    paths(value, &mut Vec::new(), &mut all);
    // The payload's own object counts as a place too, for new keys.
    all.push(Vec::new());
    let path = rng.pick(&all).clone();
    let shown = path.join(".");
    let Some((last, up)) = path.split_last() else {
        if let Some(map) = value.as_object_mut() {
            map.insert("extra".into(), rng.pick(edges).clone());
        }
        return "an unknown field".into();
    };
    let Some(map) = parent(value, up) else {
        return "nothing".into();
    };
    match rng.below(6) {
        0 => {
            map.remove(last);
            format!("{shown} removed")
        }
        1 => {
            // A new key beside it: an unknown field, or an unknown sensor in a map.
            let key = rng
                .pick(&["extra", "turbidity", "ph", "", "é", "a.b"])
                .to_string();
            map.insert(key.clone(), rng.pick(edges).clone());
            format!("{key:?} added beside {shown}")
        }
        _ => {
            let edge = rng.pick(edges).clone();
            map.insert(last.clone(), edge.clone());
            format!("{shown} = {edge}")
        }
    }
}

/// `text` with the first field of the object that opens just before `from` given twice (cut at
/// the first `,` or `}`, so a nested value may come out cut: the Rust verdict says what it is).
fn first_field_twice(text: &str, from: usize) -> String {
    let end = text[from..]
        .find([',', '}'])
        .map_or(text.len(), |at| from + at);
    format!("{}{},{}", &text[..from], &text[from..end], &text[from..])
}

/// Changes to the text itself, which a JSON value cannot express.
fn mutate_text(text: &str, rng: &mut Rng) -> (String, String) {
    match rng.below(10) {
        0 => (first_field_twice(text, 1), "the first field twice".into()),
        8 => match text.find(":{\"") {
            Some(at) => (
                first_field_twice(text, at + 2),
                "a nested field twice".into(),
            ),
            None => (first_field_twice(text, 1), "the first field twice".into()),
        },
        9 => {
            // A field of the message whose number no double holds.
            let bytes = text.as_bytes();
            let start = text.match_indices("\":").map(|(at, _)| at + 2).find(|&at| {
                bytes
                    .get(at)
                    .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
            });
            match start {
                Some(start) => {
                    let end = text[start..]
                        .find([',', '}', ']'])
                        .map_or(text.len(), |at| start + at);
                    let changed = format!("{}1e400{}", &text[..start], &text[end..]);
                    (changed, "a known field's number beyond a double".into())
                }
                None => (format!("{text} x"), "trailing garbage".into()),
            }
        }
        1 => {
            let end = rng.below(text.len());
            let mut end = end;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            (text[..end].to_owned(), "cut short".into())
        }
        2 => (format!("{text} x"), "trailing garbage".into()),
        3 => (format!("\u{feff}{text}"), "a byte order mark".into()),
        4 => (format!(" \n\t{text}\r\n"), "whitespace around".into()),
        5 => {
            let number = rng.pick(&[
                "1e400", "NaN", "-0", "1E2", "0.0", "-", "01", "1.", "2e-400",
            ]);
            (
                text.replacen("\"timestamp\"", &format!("\"n\":{number},\"timestamp\""), 1),
                format!("a number {number}"),
            )
        }
        6 => (text.replacen(':', ": ", 3), "spaces after colons".into()),
        _ => {
            let depth = 14 + rng.below(5);
            let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            (
                text.replacen(
                    "\"timestamp\"",
                    &format!("\"deep\":{deep},\"timestamp\""),
                    1,
                ),
                format!("nested {depth} deep"),
            )
        }
    }
}

/// `count` cases from `seed`, as a JSON array.
pub(crate) fn cases(count: usize, seed: u64) -> Value {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let valid: Vec<_> = vectors()
        .into_iter()
        .filter(|v| v.valid && v.payload.is_some())
        .collect();
    let edges = edge_values();
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let base = rng.pick(&valid);
        let mut topic = base.topic.clone();
        let mut payload = base.payload.clone().unwrap_or(Value::Null);
        let mut what = Vec::new();
        for _ in 0..1 + rng.below(2) {
            what.push(mutate(&mut payload, &mut rng, &edges));
        }
        if rng.below(10) == 0 {
            let levels: Vec<&str> = topic.split('/').collect();
            let other = rng.pick(&["org-999", "esp32-999", "commands", "alert"]);
            topic = match rng.below(3) {
                0 => format!("devices/{other}/{}/{}", levels[2], levels[3]),
                1 => format!("devices/{}/{other}/{}", levels[1], levels[3]),
                _ => format!(
                    "devices/{}/{}/{}",
                    levels[1],
                    levels[2],
                    rng.pick(&[
                        "telemetry",
                        "status",
                        "config",
                        "commands",
                        "alert",
                        "command_response"
                    ])
                ),
            };
            what.push(format!("topic {topic}"));
        }
        let mut text = payload.to_string();
        if rng.below(6) == 0 {
            let (changed, how) = mutate_text(&text, &mut rng);
            text = changed;
            what.push(how);
        }
        let verdict = dese_protocol::validate(&topic, text.as_bytes());
        let mut case = json!({
            "name": format!("{n}: {} with {}", base.name, what.join(", ")),
            "topic": topic,
            "payload_text": text,
            "valid": verdict.is_ok(),
        });
        if let Err(error) = verdict {
            case["reason"] = json!(error.reason().as_str());
            if let Some(invalid) = error.invalid() {
                case["path"] = json!(invalid.path.as_str());
            }
        }
        out.push(case);
    }
    Value::Array(out)
}

/// Prints the cases as JSON.
pub(crate) fn print(count: usize, seed: u64) -> Result<(), serde_json::Error> {
    let cases = cases(count, seed);
    println!("{}", serde_json::to_string(&cases)?);
    Ok(())
}
