//! The vectors of configs, valid and invalid.

use serde_json::json;

use super::{TS, Vector, bad, del, ok, set, topic};

pub(super) fn vectors() -> Vec<Vector> {
    let cfg = json!({
        "device_id": "esp32-001",
        "config": {"telemetry_interval": 30000, "mqtt_keepalive": 60, "sensor_calibration": {"ph": {"offset": 0.2, "scale": 1.0}}},
        "timestamp": TS
    });
    let g = topic("config", "org-123");
    Vec::from([
        ok("spec example", &g, cfg.clone(), &["DESE-P8"]),
        ok(
            "empty config changes nothing",
            &g,
            json!({"device_id":"esp32-001","config":{},"timestamp":TS}),
            &["DESE-P8"],
        ),
        ok(
            "alert thresholds",
            &g,
            set(
                &cfg,
                "config.alert_thresholds",
                json!({"ph":{"min":6.8,"max":7.8},"chlorine":{"max":3}}),
            ),
            &["DESE-P8"],
        ),
        ok(
            "calibration with offset only",
            &g,
            set(
                &cfg,
                "config.sensor_calibration",
                json!({"orp":{"offset":-0.5}}),
            ),
            &["DESE-P8"],
        ),
        bad(
            "calibration of a sensor the protocol does not list",
            &g,
            set(
                &cfg,
                "config.sensor_calibration",
                json!({"turbidity":{"offset":-0.5}}),
            ),
            "not_one_of",
            "config.sensor_calibration",
            &["DESE-P8"],
        ),
        bad(
            "threshold of an invented sensor",
            &g,
            set(
                &cfg,
                "config.alert_thresholds",
                json!({"ph":{"min":6.8},"x-1":{"max":1}}),
            ),
            "not_one_of",
            "config.alert_thresholds",
            &["DESE-P8"],
        ),
        bad(
            "negative interval",
            &g,
            set(&cfg, "config.telemetry_interval", json!(-1)),
            "out_of_range",
            "config.telemetry_interval",
            &["DESE-P2", "DESE-P8"],
        ),
        bad(
            "zero interval",
            &g,
            set(&cfg, "config.telemetry_interval", json!(0)),
            "out_of_range",
            "config.telemetry_interval",
            &["DESE-P8"],
        ),
        bad(
            "interval with a fraction",
            &g,
            set(&cfg, "config.telemetry_interval", json!(1500.5)),
            "wrong_type",
            "config.telemetry_interval",
            &["DESE-P8"],
        ),
        bad(
            "keepalive zero",
            &g,
            set(&cfg, "config.mqtt_keepalive", json!(0)),
            "out_of_range",
            "config.mqtt_keepalive",
            &["DESE-P8"],
        ),
        bad(
            "calibration scale zero",
            &g,
            set(&cfg, "config.sensor_calibration.ph.scale", json!(0)),
            "out_of_range",
            "config.sensor_calibration.ph.scale",
            &["DESE-P8"],
        ),
        bad(
            "regression: calibration as a positional array",
            &g,
            set(&cfg, "config.sensor_calibration.ph", json!([0.2, 1.0])),
            "wrong_type",
            "config.sensor_calibration.ph",
            &["DESE-P8", "DESE-V1"],
        ),
        bad(
            "calibration offset as text",
            &g,
            set(&cfg, "config.sensor_calibration.ph.offset", json!("0.2")),
            "wrong_type",
            "config.sensor_calibration.ph.offset",
            &["DESE-P8"],
        ),
        bad(
            "threshold min above max",
            &g,
            set(
                &cfg,
                "config.alert_thresholds",
                json!({"ph":{"min":8,"max":7}}),
            ),
            "inconsistent",
            "config.alert_thresholds.ph",
            &["DESE-P8"],
        ),
        bad(
            "sensor name with spaces",
            &g,
            set(
                &cfg,
                "config.sensor_calibration",
                json!({"p h":{"offset":0}}),
            ),
            "not_one_of",
            "config.sensor_calibration",
            &["DESE-P8"],
        ),
        bad(
            "config missing",
            &g,
            del(&cfg, "config"),
            "missing_field",
            "config",
            &["DESE-P8"],
        ),
        bad(
            "config as an array",
            &g,
            set(&cfg, "config", json!([])),
            "wrong_type",
            "config",
            &["DESE-P8"],
        ),
        bad(
            "config for another device",
            &g,
            set(&cfg, "device_id", json!("esp32-002")),
            "tenant_mismatch",
            "device_id",
            &["DESE-T5"],
        ),
    ])
}
