//! The generated files under `schemas/`: no drift from the code, and JSON Schemas that agree
//! with the Rust decoder, judged by an independent validator (the `jsonschema` crate).

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

// The protocol crate's helpers for walking and changing a payload, shared rather than copied.
#[path = "../../dese-protocol/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use dese_protocol::{MessageKind, validate};
use dese_schema::{self as schema, Vector};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Read when the test runs, not when it is compiled: with a target directory shared between
/// clones (the test command's default), a binary built in another clone is reused, and a path
/// baked in at compile time would point into that clone.
fn schemas_dir() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    PathBuf::from(manifest).join("../../schemas")
}

// Every generated file is committed as generated, and nothing stale sits beside them.
#[test]
fn committed_files_match_the_code() {
    let dir = schemas_dir();
    let mut stale = Vec::new();
    let files = schema::files();
    for file in &files {
        let committed = std::fs::read_to_string(dir.join(&file.path)).unwrap_or_default();
        let same = serde_json::from_str::<Value>(&committed).ok()
            == serde_json::from_str::<Value>(&file.contents).ok();
        if !same {
            stale.push(file.path.clone());
        }
    }
    for sub in ["json", "json/parameters", "vectors"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let rel = path
                    .strip_prefix(&dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if !files.iter().any(|f| f.path == rel) {
                    stale.push(format!("{rel} (not generated any more)"));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ differs from the code in {stale:?}: run `cargo xtask schema` and commit the result"
    );
}

/// The reasons for refusal that lie outside what a JSON Schema can judge (see
/// `schema::RULES_OUTSIDE_SCHEMAS`): the schema must accept such payloads.
const OUTSIDE_SCHEMAS: [&str; 6] = [
    "tenant_mismatch",
    "inconsistent",
    "other",
    "too_deep",
    "too_large",
    "topic",
];

fn validators() -> &'static BTreeMap<MessageKind, jsonschema::Validator> {
    static VALIDATORS: std::sync::OnceLock<BTreeMap<MessageKind, jsonschema::Validator>> =
        std::sync::OnceLock::new();
    VALIDATORS.get_or_init(|| {
        MessageKind::ALL
            .into_iter()
            .map(|kind| {
                let schema = schema::message_schema(kind);
                let validator = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("{kind} schema does not compile: {e}"));
                (kind, validator)
            })
            .collect()
    })
}

fn kind_of(topic: &str) -> Option<MessageKind> {
    topic.rsplit('/').next()?.parse().ok()
}

// Rust and the jsonschema crate give every vector the same verdict, except for the rules a
// schema cannot express, where the schema accepts what Rust refuses.
#[test]
fn vectors_agree_with_the_schemas() {
    let validators = validators();
    let mut judged = 0;
    for v in schema::vectors() {
        let Vector {
            payload: Some(payload),
            ..
        } = &v
        else {
            continue;
        };
        let Some(kind) = kind_of(&v.topic) else {
            continue;
        };
        let by_schema = validators[&kind].is_valid(payload);
        let outside = v
            .reason
            .as_deref()
            .is_some_and(|r| OUTSIDE_SCHEMAS.contains(&r));
        let by_rust = validate(&v.topic, &v.bytes()).is_ok();
        assert_eq!(by_rust, v.valid, "{}: the vector's own verdict", v.name);
        if outside {
            assert!(
                by_schema,
                "{kind} / {}: a rule outside the schema, yet the schema refuses it",
                v.name
            );
        } else {
            let errors: Vec<String> = validators[&kind]
                .iter_errors(payload)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert_eq!(
                by_schema, v.valid,
                "{kind} / {}: schema and Rust disagree: {errors:?}",
                v.name
            );
        }
        judged += 1;
    }
    assert!(judged > 100, "only {judged} vectors judged");
}

// The schemas and generated parameters schemas all compile.
#[test]
fn parameter_schemas_compile() {
    for (name, schema) in schema::parameter_schemas() {
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A valid payload of each kind, in ASCII so that byte and character lengths agree.
fn valid_payloads() -> Vec<(MessageKind, Value)> {
    schema::vectors()
        .into_iter()
        .filter(|v| v.valid)
        .filter_map(|v| Some((kind_of(&v.topic)?, v.payload?)))
        .filter(|(_, p)| p.to_string().is_ascii())
        .collect()
}

/// Values near the edges: out of range by a little, wrong types, extremes.
fn near_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!("")),
        Just(json!("x")),
        Just(json!("on")),
        Just(json!("2025-01-27T10:00:00Z")),
        Just(json!("2025-02-29T10:00:00Z")),
        Just(json!([])),
        Just(json!({})),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(14)),
        Just(json!(14.01)),
        Just(json!(100)),
        Just(json!(101)),
        Just(json!(-128)),
        Just(json!(-129)),
        Just(json!(99)),
        Just(json!(65_536)),
        Just(json!(4_294_967_296_i64)),
        Just(json!(650.5)),
        Just(json!(-273.16)),
        "[a-z_ /+#$]{0,70}".prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
    ]
}

proptest! {
    // One field of a valid payload replaced by a value near an edge, or removed: Rust and the
    // schema agree on the verdict (the payloads' ids match their topic, and are ASCII).
    #[test]
    fn near_valid_payloads_agree(pick in any::<prop::sample::Index>(), field in any::<prop::sample::Index>(), new in proptest::option::of(near_value())) {
        let payloads = valid_payloads();
        let (kind, mut payload) = pick.get(&payloads).clone();
        let all = common::paths(&payload);
        let path = field.get(&all).clone();
        common::set(&mut payload, &path, new.clone());
        // The topic names whatever ids the payload now carries, so the tenant rule holds.
        let org = payload.get("organization_id").and_then(Value::as_str).unwrap_or("org-123").to_string();
        let device = payload.get("device_id").and_then(Value::as_str).unwrap_or("esp32-001").to_string();
        let topic = format!("devices/{org}/{device}/{kind}");
        let rust = validate(&topic, payload.to_string().as_bytes());
        // A topic that the new id made invalid is judged by the topic parser, not the schema.
        prop_assume!(!matches!(rust, Err(ref e) if e.reason() == dese_protocol::Reason::Topic));
        let validators = validators();
        let by_schema = validators[&kind].is_valid(&payload);
        let outside = rust.as_ref().err().is_some_and(|e| OUTSIDE_SCHEMAS.contains(&e.reason().as_str()));
        if outside {
            prop_assert!(by_schema);
        } else {
            prop_assert_eq!(
                rust.is_ok(), by_schema,
                "{} at {:?} = {:?}: rust says {:?}, the schema {:?}", kind, path, new,
                rust.as_ref().err().map(ToString::to_string),
                validators[&kind].iter_errors(&payload).map(|e| e.to_string()).collect::<Vec<_>>()
            );
        }
    }
}
