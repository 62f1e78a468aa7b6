//! The vectors of statuses, valid and invalid.

use serde_json::json;

use super::{TS, Vector, bad, del, ok, set, topic};

pub(super) fn vectors() -> Vec<Vector> {
    let st = json!({"status": "online", "battery": 85, "signal_strength": -65, "firmware_version": "1.0.0", "timestamp": TS});
    let s = topic("status", "org-123");
    Vec::from([
        ok("spec example", &s, st.clone(), &["DESE-P7"]),
        ok(
            "offline, required fields only",
            &s,
            json!({"status":"offline","firmware_version":"1.0.0","timestamp":TS}),
            &["DESE-P7", "DESE-D5"],
        ),
        ok(
            "maintenance",
            &s,
            set(&st, "status", json!("maintenance")),
            &["DESE-P7"],
        ),
        ok(
            "error",
            &s,
            set(&st, "status", json!("error")),
            &["DESE-P7"],
        ),
        bad(
            "status value not in the list",
            &s,
            set(&st, "status", json!("sleeping")),
            "not_one_of",
            "status",
            &["DESE-P7"],
        ),
        bad(
            "status in upper case",
            &s,
            set(&st, "status", json!("ONLINE")),
            "not_one_of",
            "status",
            &["DESE-P7"],
        ),
        bad(
            "status null",
            &s,
            set(&st, "status", json!(null)),
            "wrong_type",
            "status",
            &["DESE-P7"],
        ),
        bad(
            "battery over 100",
            &s,
            set(&st, "battery", json!(101)),
            "out_of_range",
            "battery",
            &["DESE-P2", "DESE-P7"],
        ),
        bad(
            "signal strength as text",
            &s,
            set(&st, "signal_strength", json!("-65")),
            "wrong_type",
            "signal_strength",
            &["DESE-P7"],
        ),
        bad(
            "firmware version missing",
            &s,
            del(&st, "firmware_version"),
            "missing_field",
            "firmware_version",
            &["DESE-P7"],
        ),
    ])
}
