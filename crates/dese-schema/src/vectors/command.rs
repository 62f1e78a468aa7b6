//! The vectors of commands: each command with its parameters, valid and invalid.

use serde_json::json;

use super::{TS, Vector, bad, cmd_bare, cmd_with, del, ok, set, topic};

pub(super) fn vectors() -> Vec<Vector> {
    let cmd = json!({
        "command_id": "cmd-1234567890-abc", "device_id": "esp32-001", "command": "set_pump",
        "parameters": {"pump_id": 1, "state": "on", "duration": 3600}, "timestamp": TS
    });
    let c = topic("commands", "org-123");
    Vec::from([
        ok("spec example", &c, cmd.clone(), &["DESE-P4", "DESE-P5"]),
        ok(
            "set_pump off without duration",
            &c,
            cmd_with("set_pump", json!({"pump_id":2,"state":"off"})),
            &["DESE-P5"],
        ),
        ok(
            "set_ph_target",
            &c,
            cmd_with("set_ph_target", json!({"target_ph":7.4})),
            &["DESE-P5"],
        ),
        ok(
            "set_chlorine_target",
            &c,
            cmd_with("set_chlorine_target", json!({"target_chlorine":1.5})),
            &["DESE-P5"],
        ),
        ok(
            "reboot without parameters",
            &c,
            cmd_bare("reboot"),
            &["DESE-P4", "DESE-P5"],
        ),
        ok(
            "reset_config with empty parameters",
            &c,
            cmd_with("reset_config", json!({})),
            &["DESE-P5"],
        ),
        ok(
            "calibrate_sensor",
            &c,
            cmd_with("calibrate_sensor", json!({"sensor_type":"ph","value":7.0})),
            &["DESE-P5"],
        ),
        ok(
            "calibrate a sensor the protocol does not list",
            &c,
            cmd_with(
                "calibrate_sensor",
                json!({"sensor_type":"turbidity","value":1.0}),
            ),
            &["DESE-P5"],
        ),
        bad(
            "a command the protocol does not list",
            &c,
            cmd_with("dance", json!({"style":"tango"})),
            "unknown_command",
            "command",
            &["DESE-P4", "DESE-C4"],
        )
        .command_id("cmd-1"),
        ok(
            "extra parameters are ignored",
            &c,
            cmd_with("reboot", json!({"delay":5})),
            &["DESE-P11"],
        ),
        bad(
            "command id missing",
            &c,
            del(&cmd, "command_id"),
            "missing_field",
            "command_id",
            &["DESE-P4"],
        ),
        bad(
            "command name missing",
            &c,
            del(&cmd_bare("reboot"), "command"),
            "missing_field",
            "command",
            &["DESE-P4"],
        )
        .command_id("cmd-1"),
        bad(
            "command name is a number",
            &c,
            set(&cmd_bare("reboot"), "command", json!(5)),
            "wrong_type",
            "command",
            &["DESE-P4"],
        )
        .command_id("cmd-1"),
        bad(
            "empty command name",
            &c,
            cmd_bare(""),
            "bad_text",
            "command",
            &["DESE-C4"],
        )
        .command_id("cmd-1"),
        bad(
            "pump state is neither on nor off",
            &c,
            cmd_with("set_pump", json!({"pump_id":1,"state":"maybe"})),
            "not_one_of",
            "parameters.state",
            &["DESE-P5", "DESE-C4"],
        )
        .command_id("cmd-1"),
        bad(
            "pump id missing",
            &c,
            cmd_with("set_pump", json!({"state":"on"})),
            "missing_field",
            "parameters.pump_id",
            &["DESE-P5", "DESE-C4"],
        )
        .command_id("cmd-1"),
        bad(
            "set_pump without parameters",
            &c,
            cmd_bare("set_pump"),
            "missing_field",
            "parameters.pump_id",
            &["DESE-P5", "DESE-C4"],
        )
        .command_id("cmd-1"),
        bad(
            "negative pump id",
            &c,
            cmd_with("set_pump", json!({"pump_id":-1,"state":"on"})),
            "out_of_range",
            "parameters.pump_id",
            &["DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "negative duration",
            &c,
            cmd_with("set_pump", json!({"pump_id":1,"state":"on","duration":-5})),
            "out_of_range",
            "parameters.duration",
            &["DESE-P2", "DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "duration as text",
            &c,
            cmd_with(
                "set_pump",
                json!({"pump_id":1,"state":"on","duration":"1h"}),
            ),
            "wrong_type",
            "parameters.duration",
            &["DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "pH target above 14",
            &c,
            cmd_with("set_ph_target", json!({"target_ph":15})),
            "out_of_range",
            "parameters.target_ph",
            &["DESE-P2", "DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "negative chlorine target",
            &c,
            cmd_with("set_chlorine_target", json!({"target_chlorine":-1})),
            "out_of_range",
            "parameters.target_chlorine",
            &["DESE-P2", "DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "sensor name with spaces",
            &c,
            cmd_with("calibrate_sensor", json!({"sensor_type":"p h","value":7})),
            "bad_text",
            "parameters.sensor_type",
            &["DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "calibration value missing",
            &c,
            cmd_with("calibrate_sensor", json!({"sensor_type":"ph"})),
            "missing_field",
            "parameters.value",
            &["DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "parameters as an array",
            &c,
            cmd_with("set_pump", json!([1, "on"])),
            "wrong_type",
            "parameters",
            &["DESE-P4"],
        )
        .command_id("cmd-1"),
        bad(
            "command for another device",
            &c,
            set(&cmd_bare("reboot"), "device_id", json!("esp32-002")),
            "tenant_mismatch",
            "device_id",
            &["DESE-T5"],
        )
        .command_id("cmd-1"),
        bad(
            "command id with a wildcard",
            &c,
            set(&cmd_bare("reboot"), "command_id", json!("cmd+1")),
            "bad_id",
            "command_id",
            &["DESE-T3"],
        ),
        bad(
            "timestamp not ISO 8601",
            &c,
            set(&cmd_bare("reboot"), "timestamp", json!("yesterday")),
            "bad_timestamp",
            "timestamp",
            &["DESE-P3"],
        )
        .command_id("cmd-1"),
    ])
}
