//! The vectors of command responses, valid and invalid.

use serde_json::json;

use super::{TS, Vector, bad, del, ok, set, topic};

pub(super) fn vectors() -> Vec<Vector> {
    let resp = json!({
        "command_id": "cmd-1234567890-abc", "success": true,
        "response": {"pump_state": "on", "pump_duration": 3600}, "error": null,
        "timestamp": "2025-01-27T10:00:05Z"
    });
    let r = topic("command_response", "org-123");
    Vec::from([
        ok("spec example", &r, resp.clone(), &["DESE-P6"]),
        ok(
            "failure with an error",
            &r,
            json!({"command_id":"cmd-1","success":false,"error":"unknown command \"dance\"","timestamp":TS}),
            &["DESE-P6", "DESE-C4"],
        ),
        ok(
            "required fields only",
            &r,
            json!({"command_id":"cmd-1","success":true,"timestamp":TS}),
            &["DESE-P6"],
        ),
        ok(
            "unknown fields are ignored",
            &r,
            set(&resp, "duration_ms", json!(12)),
            &["DESE-P11"],
        ),
        bad(
            "success as a string",
            &r,
            set(&resp, "success", json!("true")),
            "wrong_type",
            "success",
            &["DESE-P6"],
        ),
        bad(
            "success missing",
            &r,
            del(&resp, "success"),
            "missing_field",
            "success",
            &["DESE-P6"],
        ),
        bad(
            "command id missing",
            &r,
            del(&resp, "command_id"),
            "missing_field",
            "command_id",
            &["DESE-P6"],
        ),
        bad(
            "error is a number",
            &r,
            set(&resp, "error", json!(5)),
            "wrong_type",
            "error",
            &["DESE-P6"],
        ),
        bad(
            "error is empty",
            &r,
            set(&resp, "error", json!("")),
            "bad_text",
            "error",
            &["DESE-P6"],
        ),
        bad(
            "response is an array",
            &r,
            set(&resp, "response", json!(["on"])),
            "wrong_type",
            "response",
            &["DESE-P6"],
        ),
        bad(
            "timestamp missing",
            &r,
            del(&resp, "timestamp"),
            "missing_field",
            "timestamp",
            &["DESE-P6"],
        ),
    ])
}
