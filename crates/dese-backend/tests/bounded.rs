//! The engine's state stays bounded whatever device ids the messages invent: one million of
//! them, valid or not. A test binary of its own, so that the resident memory it reports is the
//! engine's, not another test's.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::time::{Duration, Instant};

use dese_backend::{Backend, Inbound, Settings};

const IDS: usize = 1_000_000;

/// The resident memory of this process, in bytes (Linux).
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn telemetry(device: &str) -> String {
    format!(
        r#"{{"device_id":"{device}","timestamp":"2025-01-27T10:00:00Z","organization_id":"org-1","sensors":{{"ph":7.2,"chlorine":2.5,"temperature":25.5}},"metadata":{{"firmware_version":"1.0.0"}}}}"#
    )
}

fn drain(backend: &mut Backend) {
    while let Some(delivered) = backend.poll_event() {
        if let Some(ack) = delivered.ack {
            backend.ack(ack);
        }
    }
    while backend.poll_ack().is_some() {}
}

// One million invented devices, each with one valid reading then one that does not decode: the
// table holds at most `max_devices`, the longest silent are forgotten (and counted), the
// garbage creates nothing, and the resident memory stays within the table's budget.
#[test]
fn a_million_invented_devices_stay_within_the_cap() {
    let settings = Settings::default();
    let cap = settings.max_devices;
    let mut backend = Backend::new(settings);
    let t0 = Instant::now();
    backend.handle_connected(t0);
    let before = resident();
    let mut peak = 0;
    for n in 0..IDS {
        let now = t0 + Duration::from_millis(n as u64);
        let device = format!("dev-{n}");
        let topic = format!("devices/org-1/{device}/telemetry");
        backend.handle_message(
            now,
            Inbound(n as u64),
            &topic,
            telemetry(&device).as_bytes(),
        );
        let other = format!("devices/org-1/garbage-{n}/telemetry");
        backend.handle_message(now, Inbound(n as u64), &other, b"{\"not\": telemetry");
        drain(&mut backend);
        if n % 50_000 == 0 {
            assert!(backend.tracked_devices() <= cap);
            peak = peak.max(resident());
        }
    }
    let tracked = backend.tracked_devices();
    let evicted = backend.counters().devices_evicted;
    let grown = peak.max(resident()).saturating_sub(before);
    println!(
        "{IDS} invented devices: {tracked} tracked (cap {cap}), {evicted} forgotten, resident \
         memory grew by {} MiB (from {} MiB)",
        grown >> 20,
        before >> 20
    );
    assert!(tracked <= cap);
    assert_eq!(
        tracked as u64 + evicted,
        IDS as u64,
        "the garbage created no entry"
    );
    // A device's entry is a few hundred bytes: the cap's worth, with the map's own slack.
    assert!(grown < cap * 1_024, "grew by {grown} bytes");
}
