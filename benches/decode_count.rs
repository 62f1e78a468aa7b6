//! A fixed number of telemetry decodes, for counting instructions under callgrind, which is
//! repeatable on a noisy machine where wall-clock time is not. `scripts/codec-instructions`
//! runs it in both modes and prints the ratio:
//!
//! - `dese N`: decode + validate with `dese-protocol`, N times;
//! - `serde N`: bare `serde_json::from_slice` into plain structs of the same shape, N times.
//!
//! Without arguments (as `cargo test --benches` runs it) it does a few of each.

#![allow(missing_docs)]

use core::hint::black_box;

use dese::protocol::{Decoder, Topic};

#[path = "common/plain.rs"]
mod plain;
use plain::{PlainTelemetry, TELEMETRY};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let mode = args.next().unwrap_or_default();
    let count: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let topic: Topic = "devices/org-123/esp32-001/telemetry"
        .parse()
        .expect("valid topic");
    let decoder = Decoder::new();
    let mut decoded = 0u32;
    for _ in 0..count {
        if mode != "serde"
            && decoder
                .decode_message(black_box(&topic), black_box(TELEMETRY))
                .is_ok()
        {
            decoded += 1;
        }
        if mode != "dese" && serde_json::from_slice::<PlainTelemetry>(black_box(TELEMETRY)).is_ok()
        {
            decoded += 1;
        }
    }
    assert!(decoded >= count, "every decode succeeds");
}
