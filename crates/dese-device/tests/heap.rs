//! No sequence of config messages grows the device engine's heap: the firmware has about 200
//! KiB of it, and a panic on allocation failure halts the chip. A test binary of its own, with
//! dhat's allocator counting the live bytes, so that only this test's allocations are counted.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use dese_device::{CommandHandler, Device, Event, Instant, Settings};
use dese_protocol::{Action, JsonObject, Timestamp};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// The bytes allocated now.
fn live() -> usize {
    dhat::HeapStats::get().curr_bytes
}

struct Refuse;

impl CommandHandler for Refuse {
    fn run(&mut self, _action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        Err("no pumps here".into())
    }
}

/// A config of 100 calibrations and 100 thresholds for invented sensors, plus the six real ones.
fn config(round: usize) -> String {
    let invented: Vec<String> = (0..100).map(|n| format!("s{round}-{n}")).collect();
    let real = ["ph", "chlorine", "temperature", "orp", "tds", "flow_rate"];
    let calibration: Vec<String> = real
        .iter()
        .map(|s| (*s).to_string())
        .chain(invented.iter().cloned())
        .map(|s| format!(r#""{s}":{{"offset":0.1}}"#))
        .collect();
    let thresholds: Vec<String> = real
        .iter()
        .map(|s| (*s).to_string())
        .chain(invented)
        .map(|s| format!(r#""{s}":{{"min":1,"max":2}}"#))
        .collect();
    format!(
        r#"{{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:00Z","config":{{"sensor_calibration":{{{}}},"alert_thresholds":{{{}}}}}}}"#,
        calibration.join(","),
        thresholds.join(",")
    )
}

// 1,000 configs of 100 invented sensor names each: every one is refused and reported (an event
// and an alert), nothing of them is kept, and the live heap is where it was after the first.
#[test]
fn a_thousand_configs_of_invented_sensors_do_not_grow_the_heap() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let settings = Settings::new(
        "org-123".parse().unwrap(),
        "esp32-001".parse().unwrap(),
        "1.0.0",
    );
    let now = Instant::ZERO;
    let utc = Timestamp::UNIX_EPOCH;
    let mut device = Device::new(settings, now);
    device.handle_connected(now, utc);
    let topic = "devices/org-123/esp32-001/config";
    let deliver = |device: &mut Device, round: usize| -> usize {
        device.handle_message_with(
            now,
            utc,
            topic,
            config(round).as_bytes(),
            false,
            &mut Refuse,
        );
        while let Some(transmit) = device.poll_transmit() {
            device.handle_acked(transmit.id);
        }
        std::iter::from_fn(|| device.poll_event())
            .filter(|e| matches!(e, Event::ConfigRejected { .. }))
            .count()
    };
    assert_eq!(deliver(&mut device, 0), 1);
    let before = live();
    let mut refused = 1;
    for round in 1..1_000 {
        refused += deliver(&mut device, round);
    }
    let after = live();
    assert_eq!(refused, 1_000);
    assert_eq!(device.stats().configs_rejected, 1_000);
    assert_eq!(device.stats().configs_applied, 0);
    assert!(device.stats().alerts >= 1_000, "each refusal is reported");
    assert!(
        after <= before + 256,
        "the heap grew from {before} to {after} bytes over 999 configs"
    );
}
