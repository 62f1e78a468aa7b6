//! A fixed number of telemetry decodes, for counting instructions under callgrind, which is
//! repeatable on a noisy machine where wall-clock time is not. `scripts/codec-instructions`
//! runs it in both modes and prints the ratio:
//!
//! - `dese N`: decode + validate with `dese-protocol`, N times;
//! - `serde N`: bare `serde_json::from_slice` into plain structs of the same shape, N times.
//!
//! Without arguments (as `cargo test --benches` runs it) it does a few of each.

#![allow(missing_docs)]

use core::hint::black_box;

use dese::protocol::{Decoder, Topic};
use serde::Deserialize;

const TELEMETRY: &[u8] = br#"{
  "device_id": "esp32-001",
  "timestamp": "2025-01-27T10:00:00Z",
  "organization_id": "org-123",
  "sensors": {"ph": 7.2, "chlorine": 2.5, "temperature": 25.5, "orp": 650, "tds": 1200, "flow_rate": 45.5},
  "metadata": {"battery": 85, "signal_strength": -65, "firmware_version": "1.0.0"}
}"#;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Plain {
    device_id: String,
    timestamp: String,
    organization_id: String,
    sensors: PlainSensors,
    metadata: PlainMetadata,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct PlainSensors {
    ph: f64,
    chlorine: f64,
    temperature: f64,
    orp: Option<i32>,
    tds: Option<u32>,
    flow_rate: Option<f64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct PlainMetadata {
    battery: Option<u8>,
    signal_strength: Option<i32>,
    firmware_version: String,
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let mode = args.next().unwrap_or_default();
    let count: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let topic: Topic = "devices/org-123/esp32-001/telemetry"
        .parse()
        .expect("valid topic");
    let decoder = Decoder::new();
    let mut decoded = 0u32;
    for _ in 0..count {
        if mode != "serde"
            && decoder
                .decode_message(black_box(&topic), black_box(TELEMETRY))
                .is_ok()
        {
            decoded += 1;
        }
        if mode != "dese" && serde_json::from_slice::<Plain>(black_box(TELEMETRY)).is_ok() {
            decoded += 1;
        }
    }
    assert!(decoded >= count, "every decode succeeds");
}
