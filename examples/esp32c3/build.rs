//! Build-time settings: read from the environment, checked with the protocol's own rules, and
//! handed to the firmware as `DESE_BUILD_*` variables. A wrong value fails the build with a
//! message naming it, rather than a device that never connects.

use std::env;
use std::time::{SystemTime, UNIX_EPOCH};

use dese_protocol::{DeviceId, OrgId, TelemetryInterval};

/// Every variable the firmware reads, with its default (`None`: empty when unset).
const SETTINGS: [(&str, Option<&str>); 9] = [
    ("DESE_WIFI_SSID", Some("dese-lab")),
    ("DESE_WIFI_PASSWORD", None),
    ("DESE_BROKER", Some("mqtt://192.168.1.10:1883")),
    ("DESE_MQTT_USERNAME", None),
    ("DESE_MQTT_PASSWORD", None),
    ("DESE_ORG", Some("org-1")),
    ("DESE_DEVICE", Some("esp32c3-1")),
    ("DESE_TELEMETRY_INTERVAL_MS", Some("30000")),
    ("DESE_NTP_SERVER", Some("pool.ntp.org")),
];

fn main() {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        // esp-hal's linker scripts: without them the firmware does not link.
        println!("cargo:rustc-link-arg-bins=-Tlinkall.x");
    }
    let mut problems = Vec::new();
    for (name, default) in SETTINGS {
        println!("cargo:rerun-if-env-changed={name}");
        let value = env::var(name)
            .ok()
            .or(default.map(String::from))
            .unwrap_or_default();
        if let Err(problem) = check(name, &value) {
            problems.push(format!("{name}={value:?}: {problem}"));
        }
        let out = match name {
            "DESE_BROKER" => broker(&value).map_or(String::new(), |(host, port)| {
                println!("cargo:rustc-env=DESE_BUILD_BROKER_PORT={port}");
                host
            }),
            _ => value,
        };
        println!(
            "cargo:rustc-env={}={out}",
            name.replace("DESE_", "DESE_BUILD_")
        );
    }
    if !problems.is_empty() {
        eprintln!("examples/esp32c3: wrong build-time settings (see docs/firmware.md):");
        for problem in &problems {
            eprintln!("  {problem}");
        }
        std::process::exit(1);
    }
    // Until SNTP answers, the firmware's clock starts at its build time.
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let built = env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=DESE_BUILD_UNIX_SECONDS={built}");
}

fn check(name: &str, value: &str) -> Result<(), String> {
    match name {
        "DESE_WIFI_SSID" if value.is_empty() || value.len() > 32 => {
            Err("an SSID has 1 to 32 bytes".into())
        }
        "DESE_WIFI_PASSWORD" if !value.is_empty() && !(8..=64).contains(&value.len()) => {
            Err("a WPA2 passphrase has 8 to 63 characters (empty for an open network)".into())
        }
        "DESE_BROKER" => broker(value).map(drop),
        "DESE_ORG" => OrgId::parse(value).map(drop).map_err(|e| e.to_string()),
        "DESE_DEVICE" => DeviceId::parse(value).map(drop).map_err(|e| e.to_string()),
        "DESE_TELEMETRY_INTERVAL_MS" => value
            .parse::<i64>()
            .map_err(|e| e.to_string())
            .and_then(|ms| TelemetryInterval::new(ms).map_err(|e| e.to_string()))
            .map(drop),
        "DESE_NTP_SERVER" if value.is_empty() => Err("name a time server".into()),
        _ => Ok(()),
    }
}

/// `mqtt://host[:port]` or `host[:port]`; TLS is not built into this firmware.
fn broker(value: &str) -> Result<(String, u16), String> {
    if value.starts_with("mqtts://") {
        return Err(
            "TLS (mqtts://) is not built into this firmware: use mqtt:// on a \
                    trusted network, see docs/firmware.md"
                .into(),
        );
    }
    let rest = value.strip_prefix("mqtt://").unwrap_or(value);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() || port == 0 || host.contains('/') {
        return Err("expected mqtt://host:port".into());
    }
    Ok((host.to_string(), port))
}
