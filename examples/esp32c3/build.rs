//! Build-time settings: read from the environment, checked with the protocol's own rules, and
//! handed to the firmware as `DESE_BUILD_*` variables. A wrong value fails the build with a
//! message naming it, rather than a device that never connects.

use std::env;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use dese_protocol::{DeviceId, OrgId, TelemetryInterval};

/// Every variable the firmware reads, with its default (`None`: empty when unset).
const SETTINGS: [(&str, Option<&str>); 10] = [
    ("DESE_WIFI_SSID", Some("dese-lab")),
    ("DESE_WIFI_PASSWORD", None),
    ("DESE_BROKER", Some("mqtt://192.168.1.10:1883")),
    ("DESE_MQTT_USERNAME", None),
    ("DESE_MQTT_PASSWORD", None),
    ("DESE_ORG", Some("org-1")),
    ("DESE_DEVICE", Some("esp32c3-1")),
    ("DESE_TELEMETRY_INTERVAL_MS", Some("30000")),
    ("DESE_NTP_SERVER", Some("pool.ntp.org")),
    // The CA that signed the broker's certificate, for mqtts:// (a PEM or DER file).
    ("DESE_CA", None),
];

/// The largest CA certificate the firmware takes (embedded-tls parses it on every connection).
const CA_MAX: usize = 4096;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(dese_tls)");
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
            "DESE_BROKER" => broker(&value).map_or(String::new(), |broker| {
                println!("cargo:rustc-env=DESE_BUILD_BROKER_PORT={}", broker.port);
                // The TLS code is built in only for mqtts://, as `cfg(dese_tls)`.
                if broker.tls {
                    println!("cargo:rustc-cfg=dese_tls");
                }
                broker.host
            }),
            _ => value,
        };
        println!(
            "cargo:rustc-env={}={out}",
            name.replace("DESE_", "DESE_BUILD_")
        );
    }
    // The CA, in DER, for src/firmware.rs to include (empty without TLS).
    let tls = env::var("DESE_BROKER").is_ok_and(|b| b.starts_with("mqtts://"));
    let ca_path = env::var("DESE_CA").unwrap_or_default();
    let ca = match (tls, ca_path.is_empty()) {
        (true, true) => Err(
            "mqtts:// needs DESE_CA, the CA certificate (PEM or DER) that \
                             signed the broker's certificate"
                .to_string(),
        ),
        (false, false) => Err("DESE_CA is set but DESE_BROKER is not mqtts://".to_string()),
        (true, false) => {
            println!("cargo:rerun-if-changed={ca_path}");
            certificate(Path::new(&ca_path))
        }
        (false, true) => Ok(Vec::new()),
    };
    match ca {
        Ok(der) => {
            let out = Path::new(&env::var("OUT_DIR").unwrap_or_default()).join("broker-ca.der");
            if let Err(error) = std::fs::write(&out, der) {
                problems.push(format!("cannot write {}: {error}", out.display()));
            }
        }
        Err(problem) => problems.push(format!("DESE_CA={ca_path:?}: {problem}")),
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

/// Where the broker is.
struct Broker {
    host: String,
    port: u16,
    tls: bool,
}

/// `mqtt://host[:port]` (1883), `mqtts://host[:port]` (8883), or `host[:port]`.
fn broker(value: &str) -> Result<Broker, String> {
    let (tls, rest) = match value.strip_prefix("mqtts://") {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix("mqtt://").unwrap_or(value)),
    };
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?,
        ),
        None => (rest, default_port),
    };
    if host.is_empty() || port == 0 || host.contains('/') {
        return Err("expected mqtt://host:port or mqtts://host:port".into());
    }
    if tls && host.len() > 64 {
        return Err(
            "mqtts:// takes a broker name of at most 64 bytes, the longest the \
                    firmware's TLS checks a certificate against"
                .into(),
        );
    }
    if tls && host.parse::<std::net::IpAddr>().is_ok() {
        return Err(
            "mqtts:// needs the broker's DNS name, as its certificate names it: the \
                    firmware's TLS (embedded-tls) does not match IP addresses"
                .into(),
        );
    }
    Ok(Broker {
        host: host.to_string(),
        port,
        tls,
    })
}

/// The certificate in `path`, PEM (the first `CERTIFICATE` block) or DER, as DER.
fn certificate(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let der = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => {
            let body = text
                .split("-----BEGIN CERTIFICATE-----")
                .nth(1)
                .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
                .ok_or("a PEM certificate without its END line")?;
            base64(body)?
        }
        _ => bytes,
    };
    // A DER certificate is one SEQUENCE.
    if der.first() != Some(&0x30) || der.len() < 64 {
        return Err("not a certificate (PEM or DER)".into());
    }
    if der.len() > CA_MAX {
        return Err(format!(
            "a {}-byte certificate; the firmware takes at most {CA_MAX}",
            der.len()
        ));
    }
    Ok(der)
}

/// Standard base64, whitespace ignored.
fn base64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for byte in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            other => return Err(format!("{:?} in the PEM's base64", char::from(other))),
        };
        buffer = ((buffer << 6) | u32::from(value)) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Ok(out)
}
