//! The `dese` binary's commands that need no broker: validate, schema, acl.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn dese(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dese"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dese");
    let mut input = child.stdin.take().unwrap();
    // A broken pipe is fine: dese may stop reading early.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The repository's root, read at run time (a shared target dir reuses test binaries).
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dese-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every test vector of every message kind: `dese validate --json` gives the vector's verdict,
/// reason and field path, with exit status 0 or 1.
#[test]
fn validate_agrees_with_every_test_vector() {
    let mut checked = 0;
    for file in std::fs::read_dir(root().join("schemas/vectors")).unwrap() {
        let path = file.unwrap().path();
        let vectors: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for v in vectors["vectors"].as_array().unwrap() {
            let name = format!("{}: {}", path.display(), v["name"]);
            let payload = match (&v["payload"], v["payload_text"].as_str()) {
                (_, Some(text)) => text.as_bytes().to_vec(),
                (payload, None) => serde_json::to_vec(payload).unwrap(),
            };
            let topic = v["topic"].as_str().unwrap();
            let out = dese(&["validate", "--json", "--topic", topic], &payload);
            let verdict: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {}", text(&out.stdout)));
            let valid = v["valid"].as_bool().unwrap();
            assert_eq!(verdict["valid"], valid, "{name}: {verdict}");
            assert_eq!(out.status.code(), Some(if valid { 0 } else { 1 }), "{name}");
            if !valid {
                assert_eq!(verdict["reason"], v["reason"], "{name}: {verdict}");
                let path = v["path"].as_str().unwrap_or("");
                if !path.is_empty() {
                    assert_eq!(verdict["path"], path, "{name}: {verdict}");
                }
            } else {
                assert_eq!(verdict["topic"], topic);
                assert!(verdict["message"].is_object(), "{name}: {verdict}");
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} vectors");
}

#[test]
fn validate_names_the_field_and_what_was_expected_on_standard_error() {
    let payload = br#"{"device_id":"pool-1","timestamp":"2025-01-27T10:00:00Z","organization_id":"acme",
        "sensors":{"ph":"7.2","chlorine":1.0,"temperature":20},"metadata":{"firmware_version":"1"}}"#;
    let out = dese(
        &["validate", "-t", "devices/acme/pool-1/telemetry"],
        payload,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("sensors.ph") && err.contains("expected a number, got a string"),
        "{err}"
    );
}

#[test]
fn validate_reads_a_file_and_refuses_another_tenant_and_unserved_orgs() {
    let dir = scratch("validate");
    let file = dir.join("status.json");
    std::fs::write(
        &file,
        br#"{"status":"online","firmware_version":"1.0","timestamp":"2025-01-27T10:00:00Z"}"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let ok = dese(&["validate", "-t", "devices/acme/pool-1/status", file], b"");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(
        text(&ok.stdout).trim(),
        "valid status: online (firmware 1.0)"
    );

    let other = dese(
        &[
            "validate",
            "--json",
            "--org",
            "acme",
            "-t",
            "devices/evil/pool-1/status",
            file,
        ],
        b"",
    );
    assert_eq!(other.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_eq!(verdict["reason"], "org_not_allowed");

    // The tenant check: the payload's organization must be the topic's.
    let wrong =
        br#"{"device_id":"pool-1","timestamp":"2025-01-27T10:00:00Z","organization_id":"evil",
        "sensors":{"ph":7.2,"chlorine":1.0,"temperature":20},"metadata":{"firmware_version":"1"}}"#;
    let out = dese(
        &["validate", "--json", "-t", "devices/acme/pool-1/telemetry"],
        wrong,
    );
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{verdict}");
    assert_eq!(verdict["reason"], "tenant_mismatch", "{verdict}");
    assert_eq!(verdict["path"], "organization_id", "{verdict}");

    let missing = dese(
        &[
            "validate",
            "-t",
            "devices/acme/pool-1/status",
            "/nonexistent/x.json",
        ],
        b"",
    );
    assert_eq!(missing.status.code(), Some(5));
    assert!(text(&missing.stderr).contains("/nonexistent/x.json"));
    let _ = std::fs::remove_dir_all(dir);
}

/// Hostile input of every kind: exit 1 with a message that says what is wrong, never a panic.
#[test]
fn validate_refuses_hostile_input_with_a_clear_message() {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let huge = format!("{{\"message\":\"{}\"}}", "x".repeat(20 * 1024));
    let cases: [(&str, &[u8], &str, &str); 7] = [
        ("devices/acme/p/alert", b"", "empty", "payload is empty"),
        ("devices/acme/p/alert", b"\xff\xfe{}", "syntax", "not UTF-8"),
        (
            "devices/acme/p/alert",
            b"{\"severity\":",
            "syntax",
            "ends early",
        ),
        (
            "devices/acme/p/alert",
            deep.as_bytes(),
            "too_deep",
            "nests deeper",
        ),
        (
            "devices/acme/p/alert",
            huge.as_bytes(),
            "too_large",
            "expected at most 16384",
        ),
        ("devices/+/p/alert", b"{}", "topic", "devices/+/p/alert"),
        ("$SYS/broker/uptime", b"1", "topic", "$SYS"),
    ];
    for (topic, payload, reason, says) in cases {
        let json = dese(&["validate", "--json", "-t", topic], payload);
        assert_eq!(
            json.status.code(),
            Some(1),
            "{topic} {reason}: {}",
            text(&json.stderr)
        );
        let verdict: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(verdict["reason"], reason, "{verdict}");
        let plain = dese(&["validate", "-t", topic], payload);
        assert_eq!(plain.status.code(), Some(1));
        let err = text(&plain.stderr);
        assert!(
            err.contains(says) && !err.contains("panicked"),
            "{reason}: {err}"
        );
    }
}

#[test]
fn usage_errors_exit_2_and_help_shows_examples() {
    let none = dese(&["validate"], b"");
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).contains("--topic"));
    let bad = dese(
        &[
            "send",
            "--org",
            "acme",
            "--device",
            "p",
            "set_ph_target",
            "target_ph=15",
        ],
        b"",
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("parameters.target_ph"),
        "{}",
        text(&bad.stderr)
    );
    // Ids are parsed at the argument layer: a bad one is a usage error naming its flag.
    for (args, flag, why) in [
        (
            &["send", "--org", "a/b", "--device", "p", "reboot"][..],
            "--org",
            "'/'",
        ),
        (
            &["send", "--org", "acme", "--device", "", "reboot"],
            "--device",
            "empty",
        ),
        (&["monitor", "--group", "$share"], "--group", "'$'"),
        (
            &["validate", "--topic", "devices/a/b/status", "--org", "a+"],
            "--org",
            "'+'",
        ),
        (&["simulate", "--org", "#"], "--org", "'#'"),
    ] {
        let out = dese(args, b"");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("invalid value") && stderr.contains(flag) && stderr.contains(why),
            "{args:?}: {stderr}"
        );
    }
    let unknown = dese(&["send", "--org", "acme", "--device", "p", "dance"], b"");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("unknown command \"dance\""));
    for command in ["validate", "schema", "monitor", "send", "simulate", "acl"] {
        let help = dese(&[command, "--help"], b"");
        assert_eq!(help.status.code(), Some(0));
        let help = text(&help.stdout);
        assert!(
            help.contains("Examples:") && help.contains(&format!("dese {command}")),
            "{command}: {help}"
        );
    }
    let top = text(&dese(&["--help"], b"").stdout);
    assert!(top.contains("Exit status:") && top.contains("3  the command timed out"));
}

// Absurd durations are usage errors that name the flag, never a panic (an `Instant` plus
// `1e19` seconds overflows). No broker is needed: they are refused before any connection.
#[test]
fn absurd_durations_are_refused_not_a_panic() {
    let broker = ["--broker", "mqtt://127.0.0.1:9"];
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "send",
                "--org",
                "acme",
                "--device",
                "p",
                "reboot",
                "--timeout",
                "1e19",
            ],
            "--timeout",
        ),
        (
            &[
                "send",
                "--org",
                "acme",
                "--device",
                "p",
                "reboot",
                "--timeout",
                "0",
            ],
            "--timeout",
        ),
        (
            &[
                "send",
                "--org",
                "acme",
                "--device",
                "p",
                "reboot",
                "--timeout",
                "NaN",
            ],
            "--timeout",
        ),
        (
            &[
                "send",
                "--org",
                "acme",
                "--device",
                "p",
                "reboot",
                "--connect-timeout",
                "1e19",
            ],
            "--connect-timeout",
        ),
        (
            &["monitor", "--connect-timeout", "1e19"],
            "--connect-timeout",
        ),
        (
            &["simulate", "--org", "acme", "--connect-timeout", "1e19"],
            "--connect-timeout",
        ),
    ];
    for (args, flag) in cases {
        let args: Vec<&str> = args.iter().chain(&broker).copied().collect();
        let out = dese(&args, b"");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn schema_writes_what_the_repository_holds_and_check_finds_drift() {
    let dir = scratch("schema");
    let out = dir.join("schemas");
    let first = dese(&["schema", "--out", out.to_str().unwrap()], b"");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let committed = root().join("schemas");
    let mut compared = 0;
    for line in text(&first.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("wrote   "))
    {
        let written = Path::new(line.trim());
        let relative = written.strip_prefix(&out).unwrap();
        assert_eq!(
            std::fs::read(written).unwrap(),
            std::fs::read(committed.join(relative)).unwrap(),
            "{}",
            relative.display()
        );
        compared += 1;
    }
    assert!(compared >= 14, "{compared} files");
    let again = dese(&["schema", "--out", out.to_str().unwrap()], b"");
    assert!(
        text(&again.stdout).contains("0 written"),
        "{}",
        text(&again.stdout)
    );
    std::fs::write(out.join("json/alert.schema.json"), "{}").unwrap();
    let check = dese(&["schema", "--check", "--out", out.to_str().unwrap()], b"");
    assert_eq!(check.status.code(), Some(1));
    assert!(text(&check.stdout).contains("differs"));
    assert_eq!(
        std::fs::read_to_string(out.join("json/alert.schema.json")).unwrap(),
        "{}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn acl_refuses_a_bad_registry_with_the_entry_named() {
    let dir = scratch("acl-bad");
    let registry = dir.join("registry.toml");
    std::fs::write(
        &registry,
        "[[device]]\norg = \"acme\"\ndevice = \"a+b\"\npassword = \"x\"\n",
    )
    .unwrap();
    let out = dese(
        &[
            "acl",
            "--devices",
            registry.to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("device[0] (acme/a+b)"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("out/acl").exists());
    let _ = std::fs::remove_dir_all(dir);
}
