//! The vectors of alerts, valid and invalid.

use serde_json::json;

use super::{TS, Vector, bad, del, ok, set, topic};

pub(super) fn vectors() -> Vec<Vector> {
    let al = json!({"severity": "warning", "message": "pH level below threshold", "sensor": "ph", "value": 6.8, "threshold": 7.0, "timestamp": TS});
    let a = topic("alert", "org-123");
    Vec::from([
        ok("spec example", &a, al.clone(), &["DESE-P9"]),
        ok(
            "required fields only",
            &a,
            json!({"severity":"critical","message":"pump stalled","timestamp":TS}),
            &["DESE-P9"],
        ),
        ok(
            "info about a sensor the protocol does not list",
            &a,
            set(
                &set(&al, "severity", json!("info")),
                "sensor",
                json!("turbidity"),
            ),
            &["DESE-P9"],
        ),
        bad(
            "severity not in the list",
            &a,
            set(&al, "severity", json!("fatal")),
            "not_one_of",
            "severity",
            &["DESE-P9"],
        ),
        bad(
            "empty message",
            &a,
            set(&al, "message", json!("")),
            "bad_text",
            "message",
            &["DESE-P9"],
        ),
        bad(
            "message too long",
            &a,
            set(&al, "message", json!("x".repeat(513))),
            "bad_text",
            "message",
            &["DESE-P9"],
        ),
        bad(
            "message missing",
            &a,
            del(&al, "message"),
            "missing_field",
            "message",
            &["DESE-P9"],
        ),
        bad(
            "value as text",
            &a,
            set(&al, "value", json!("6.8")),
            "wrong_type",
            "value",
            &["DESE-P9"],
        ),
        bad(
            "empty sensor name",
            &a,
            set(&al, "sensor", json!("")),
            "bad_text",
            "sensor",
            &["DESE-P9"],
        ),
        bad(
            "timestamp missing",
            &a,
            del(&al, "timestamp"),
            "missing_field",
            "timestamp",
            &["DESE-P9"],
        ),
    ])
}
