//! `dese validate`: one message checked as the backend would check it.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use dese_protocol::{DecodeError, Decoder, Direction, OrgId, Printable, Topic};
use serde_json::json;

use crate::exit::{Exit, Failure};
use crate::render::{message_json, message_line};

/// The most `validate` reads: enough to report an oversized payload with its size, without
/// holding an endless stream.
const READ_CAP: u64 = 64 * 1024 * 1024;

/// Check one message as the backend would: the topic (levels, ids, kind), the payload (JSON,
/// size, depth, every field, ranges) and the tenant (the payload's ids must be the topic's).
///
/// The payload comes from FILE, or from standard input when FILE is absent or `-`. Exit status
/// 0 when valid, 1 when invalid (the error names the field path and what was expected), 2 on a
/// usage error.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  dese validate --topic devices/acme/pool-1/telemetry reading.json
  echo '{\"status\":\"online\",\"firmware_version\":\"1.0\",\"timestamp\":\"2025-01-27T10:00:00Z\"}' \\
      | dese validate --topic devices/acme/pool-1/status
  dese validate --json --org acme --topic devices/acme/pool-1/alert alert.json")]
pub(crate) struct Args {
    /// The MQTT topic the message was (or will be) published on: devices/{org}/{device}/{kind}
    #[arg(long, short = 't')]
    topic: String,

    /// The payload file; `-` or absent: standard input
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,

    /// Print a JSON verdict on standard output instead of text
    #[arg(long)]
    json: bool,

    /// Organizations the backend serves; a message of any other is refused (repeatable)
    #[arg(long = "org", value_name = "ORG")]
    orgs: Vec<OrgId>,

    /// Require organization ids to be UUIDs
    #[arg(long)]
    uuid_orgs: bool,
}

pub(crate) fn run(args: &Args) -> Result<Exit, Failure> {
    let allowed: BTreeSet<OrgId> = args.orgs.iter().cloned().collect();
    let payload = read_payload(args)?;
    let decoder = Decoder::new()
        .require_uuid_orgs(args.uuid_orgs)
        .refuse_unknown_commands(true);
    let verdict = check(&decoder, &allowed, &args.topic, &payload);
    match (&verdict, args.json) {
        // The payload's own text is escaped: it cannot drive the terminal.
        (Ok(report), true) => println!("{}", Printable::json_safe(&report.json.to_string())),
        (Ok(report), false) => println!("valid {}: {}", report.kind, Printable(&report.line)),
        (Err(refusal), true) => println!(
            "{}",
            Printable::json_safe(&refusal.json(&args.topic).to_string())
        ),
        (Err(refusal), false) => eprintln!(
            "invalid: {} ({})",
            Printable(&refusal.message),
            refusal.reason
        ),
    }
    Ok(if verdict.is_ok() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

fn read_payload(args: &Args) -> Result<Vec<u8>, Failure> {
    let mut payload = Vec::new();
    let read = match args.file.as_deref() {
        None => std::io::stdin()
            .lock()
            .take(READ_CAP)
            .read_to_end(&mut payload),
        Some(path) if path.as_os_str() == "-" => std::io::stdin()
            .lock()
            .take(READ_CAP)
            .read_to_end(&mut payload),
        Some(path) => std::fs::File::open(path)
            .and_then(|file| file.take(READ_CAP).read_to_end(&mut payload))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    read.map_err(|e| Failure::new(Exit::Io, format!("cannot read the payload: {e}")))?;
    Ok(payload)
}

struct Report {
    kind: String,
    line: String,
    json: serde_json::Value,
}

struct Refusal {
    reason: &'static str,
    message: String,
    path: Option<String>,
}

impl Refusal {
    fn json(&self, topic: &str) -> serde_json::Value {
        json!({
            "valid": false,
            "topic": topic,
            "reason": self.reason,
            "path": self.path,
            "error": self.message,
        })
    }
}

fn check(
    decoder: &Decoder,
    allowed: &BTreeSet<OrgId>,
    topic: &str,
    payload: &[u8],
) -> Result<Report, Refusal> {
    let refuse = |error: DecodeError| Refusal {
        reason: error.reason().as_str(),
        path: error.invalid().map(|i| i.path.as_str().to_string()),
        message: error.to_string(),
    };
    let parsed = Topic::parse_with(topic, false).map_err(|e| refuse(e.into()))?;
    if !allowed.is_empty() && !allowed.contains(parsed.org()) {
        return Err(Refusal {
            reason: "org_not_allowed",
            path: None,
            message: format!(
                "organization {} is not one of those served (--org)",
                parsed.org()
            ),
        });
    }
    // Said plainly before JSON parsing does, with the offset: a byte-level problem.
    if payload.len() <= decoder.limits().max_payload {
        if let Err(e) = std::str::from_utf8(payload) {
            return Err(Refusal {
                reason: "syntax",
                path: None,
                message: format!(
                    "payload is not UTF-8: invalid byte at offset {}",
                    e.valid_up_to()
                ),
            });
        }
    }
    let message = decoder.decode_message(&parsed, payload).map_err(refuse)?;
    let direction = match parsed.kind().direction() {
        Direction::DeviceToBackend => "device_to_backend",
        _ => "backend_to_device",
    };
    Ok(Report {
        kind: parsed.kind().to_string(),
        line: message_line(&message),
        json: json!({
            "valid": true,
            "topic": topic,
            "kind": parsed.kind().as_str(),
            "org": parsed.org().as_str(),
            "device": parsed.device().as_str(),
            "direction": direction,
            "message": message_json(&message),
        }),
    })
}
