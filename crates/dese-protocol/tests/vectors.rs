//! The committed test vectors under `schemas/vectors/`, judged by the decoder as a validator
//! runs it (`validate`: unknown commands refused).
//!
//! Each vector names the conformance statements it proves (DESE-T*, P*, V*, C4); this test
//! proves all of them at once and fails on the first vector whose verdict, reason or field path
//! differs. Valid vectors must also survive encode then decode unchanged.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::collections::BTreeSet;
use std::path::PathBuf;

use dese_protocol::{Reason, encode, validate};
use serde_json::Value;

struct Vector {
    file: String,
    name: String,
    topic: String,
    payload: Vec<u8>,
    valid: bool,
    reason: Option<String>,
    path: Option<String>,
    command_id: Option<String>,
}

fn vectors() -> Vec<Vector> {
    // Read at run time: a target directory shared between clones reuses binaries.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let dir = PathBuf::from(manifest).join("../../schemas/vectors");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("schemas/vectors exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "one vector file per message type");
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for v in doc["vectors"].as_array().expect("a vectors array") {
            let text = |key: &str| v.get(key).and_then(Value::as_str).map(String::from);
            let payload = match (v.get("payload"), text("payload_text")) {
                (Some(p), None) => serde_json::to_vec(p).unwrap(),
                (None, Some(t)) => t.into_bytes(),
                _ => panic!("{file}: vector needs exactly one of payload, payload_text: {v}"),
            };
            out.push(Vector {
                file: file.clone(),
                name: text("name").expect("name"),
                topic: text("topic").expect("topic"),
                payload,
                valid: v["valid"].as_bool().expect("valid"),
                reason: text("reason"),
                path: text("path"),
                command_id: text("command_id"),
            });
        }
    }
    out
}

// DESE-T1, T2, T3, T5, P1..P9, P11, C4, V1, V2, V3: every committed vector gets its verdict.
#[test]
fn every_vector_gets_its_verdict() {
    let vectors = vectors();
    assert!(
        vectors.len() > 100,
        "expected the full vector set, found {}",
        vectors.len()
    );
    let mut reasons_seen = BTreeSet::new();
    for v in &vectors {
        let at = format!("{} / {:?}", v.file, v.name);
        match (validate(&v.topic, &v.payload), v.valid) {
            (Ok(envelope), true) => {
                // Round trip: what we encode, we decode to the same value.
                let bytes =
                    encode(&envelope.message).unwrap_or_else(|e| panic!("{at}: encode: {e}"));
                let again =
                    validate(&v.topic, &bytes).unwrap_or_else(|e| panic!("{at}: re-decode: {e}"));
                assert_eq!(again, envelope, "{at}: round trip");
            }
            (Err(err), false) => {
                let reason = err.reason().as_str();
                reasons_seen.insert(reason);
                assert_eq!(Some(reason), v.reason.as_deref(), "{at}: reason ({err})");
                if let Some(path) = &v.path {
                    let invalid = err
                        .invalid()
                        .unwrap_or_else(|| panic!("{at}: expected a field error, got {err}"));
                    assert_eq!(invalid.path.as_str(), path, "{at}: path ({err})");
                    // The message names the offending field.
                    let shown = if path.is_empty() { "payload" } else { path };
                    assert!(
                        err.to_string().starts_with(shown),
                        "{at}: {err:?} does not name {shown}"
                    );
                }
                if v.topic.ends_with("/commands") && err.invalid().is_some() {
                    assert_eq!(
                        err.command_id().map(|id| id.as_str()),
                        v.command_id.as_deref(),
                        "{at}: recovered command_id"
                    );
                }
            }
            (Ok(envelope), false) => panic!("{at}: expected {:?}, decoded {envelope:?}", v.reason),
            (Err(err), true) => panic!("{at}: expected valid, got {err}"),
        }
    }
    // The vectors exercise every reason a payload can be refused for, except too_large, whose
    // payloads would bloat the data files (a unit test covers it).
    for reason in Reason::ALL {
        if reason != Reason::TooLarge {
            assert!(
                reasons_seen.contains(reason.as_str()),
                "no vector for reason {reason}"
            );
        }
    }
}

#[test]
fn vector_names_are_unique_per_file() {
    let mut seen = BTreeSet::new();
    for v in vectors() {
        assert!(
            seen.insert((v.file.clone(), v.name.clone())),
            "duplicate {} / {}",
            v.file,
            v.name
        );
    }
}
