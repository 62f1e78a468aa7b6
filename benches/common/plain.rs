//! What an application would declare with bare serde, without this SDK: the protocol's telemetry
//! example and plain structs of the same shape, with no checks. Shared by the benches.

use serde::Deserialize;

/// The protocol's own telemetry example.
pub(crate) const TELEMETRY: &[u8] = br#"{
  "device_id": "esp32-001",
  "timestamp": "2025-01-27T10:00:00Z",
  "organization_id": "org-123",
  "sensors": {"ph": 7.2, "chlorine": 2.5, "temperature": 25.5, "orp": 650, "tds": 1200, "flow_rate": 45.5},
  "metadata": {"battery": 85, "signal_strength": -65, "firmware_version": "1.0.0"}
}"#;

/// Telemetry, bare serde: same shape, no checks.
#[derive(Deserialize)]
#[allow(dead_code)]
pub(crate) struct PlainTelemetry {
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
