//! Codec benchmarks: what validation costs over bare serde.
//!
//! For each message type, `dese` decode + validate is measured beside a bare
//! `serde_json::from_slice` into plain structs of the same shape (what an application would write
//! without this SDK) and into `serde_json::Value`, in the same run, so the ratios survive a noisy
//! machine. Run with `cargo bench --bench codec`; docs/performance.md records the figures.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use core::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dese::protocol::{Decoder, Timestamp, Topic, decode, encode};
use serde::Deserialize;

#[path = "common/plain.rs"]
mod plain;
use plain::{PlainTelemetry, TELEMETRY};

const COMMAND: &[u8] = br#"{"command_id":"cmd-1234567890-abc","device_id":"esp32-001","command":"set_pump","parameters":{"pump_id":1,"state":"on","duration":3600},"timestamp":"2025-01-27T10:00:00Z"}"#;
const RESPONSE: &[u8] = br#"{"command_id":"cmd-1234567890-abc","success":true,"response":{"pump_state":"on","pump_duration":3600},"error":null,"timestamp":"2025-01-27T10:00:05Z"}"#;
const STATUS: &[u8] = br#"{"status":"online","battery":85,"signal_strength":-65,"firmware_version":"1.0.0","timestamp":"2025-01-27T10:00:00Z"}"#;
const CONFIG: &[u8] = br#"{"device_id":"esp32-001","config":{"telemetry_interval":30000,"mqtt_keepalive":60,"sensor_calibration":{"ph":{"offset":0.2,"scale":1.0}}},"timestamp":"2025-01-27T10:00:00Z"}"#;
const ALERT: &[u8] = br#"{"severity":"warning","message":"pH level below threshold","sensor":"ph","value":6.8,"threshold":7.0,"timestamp":"2025-01-27T10:00:00Z"}"#;

#[derive(Deserialize)]
#[allow(dead_code)]
struct NaiveCommand {
    command_id: String,
    device_id: String,
    command: String,
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    timestamp: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct NaiveResponse {
    command_id: String,
    success: bool,
    response: Option<serde_json::Map<String, serde_json::Value>>,
    error: Option<String>,
    timestamp: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct NaiveStatus {
    status: String,
    battery: Option<u8>,
    signal_strength: Option<i32>,
    firmware_version: String,
    timestamp: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct NaiveConfig {
    device_id: String,
    config: serde_json::Map<String, serde_json::Value>,
    timestamp: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct NaiveAlert {
    severity: String,
    message: String,
    sensor: Option<String>,
    value: Option<f64>,
    threshold: Option<f64>,
    timestamp: String,
}

fn group<N: for<'de> Deserialize<'de>>(c: &mut Criterion, kind: &str, payload: &[u8]) {
    let topic_text = format!("devices/org-123/esp32-001/{kind}");
    let topic: Topic = topic_text.parse().expect("bench topic");
    let decoder = Decoder::new();
    let message = decoder
        .decode_message(&topic, payload)
        .expect("bench payload is valid");

    let mut g = c.benchmark_group(kind);
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("dese_decode_validate", |b| {
        b.iter(|| decoder.decode_message(black_box(&topic), black_box(payload)))
    });
    g.bench_function("dese_decode_with_topic", |b| {
        b.iter(|| decode(black_box(&topic_text), black_box(payload)))
    });
    g.bench_function("serde_typed_no_checks", |b| {
        b.iter(|| serde_json::from_slice::<N>(black_box(payload)).map(|_| ()))
    });
    g.bench_function("serde_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(payload)))
    });
    g.bench_function("dese_encode", |b| b.iter(|| encode(black_box(&message))));
    g.finish();
}

fn codec(c: &mut Criterion) {
    group::<PlainTelemetry>(c, "telemetry", TELEMETRY);
    group::<NaiveCommand>(c, "commands", COMMAND);
    group::<NaiveResponse>(c, "command_response", RESPONSE);
    group::<NaiveStatus>(c, "status", STATUS);
    group::<NaiveConfig>(c, "config", CONFIG);
    group::<NaiveAlert>(c, "alert", ALERT);
}

fn topics(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic");
    g.bench_function("parse", |b| {
        b.iter(|| black_box("devices/org-123/esp32-001/command_response").parse::<Topic>())
    });
    let topic: Topic = "devices/org-123/esp32-001/command_response"
        .parse()
        .expect("topic");
    g.bench_function("display", |b| b.iter(|| black_box(&topic).to_string()));
    g.finish();
}

/// The timestamp every message carries, read by the protocol's own parser and by chrono's
/// RFC 3339 parser with the check the protocol adds (UTC only), in the same run: the figure
/// behind keeping the parser (docs/performance.md).
fn timestamps(c: &mut Criterion) {
    let mut g = c.benchmark_group("timestamp");
    for (name, text) in [
        ("common", "2025-01-27T10:00:00Z"),
        ("fraction", "2025-01-27T10:00:00.250+00:00"),
    ] {
        g.bench_function(format!("dese_{name}"), |b| {
            b.iter(|| Timestamp::parse(black_box(text)))
        });
        g.bench_function(format!("chrono_{name}"), |b| {
            b.iter(|| {
                chrono::DateTime::parse_from_rfc3339(black_box(text))
                    .ok()
                    .filter(|t| t.offset().local_minus_utc() == 0)
                    .map(|t| t.to_utc())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec, topics, timestamps);
criterion_main!(benches);
