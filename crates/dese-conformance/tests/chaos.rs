//! Chaos on a real Mosquitto: resets, mid-packet cuts and silent links between a device and the
//! broker while it streams readings and the backend commands it, for each transport. The short
//! run here; `scripts/chaos --minutes N` runs the long one with fresh seeds
//! (`DESE_CHAOS=long`, `DESE_CHAOS_SEED`). Figures in docs/reliability.md.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::time::Duration;

use dese_conformance::chaos::{Autosave, ChaosFigures, Faults, broker_kills, link_faults};
use dese_paho::Paho;
use dese_rumqttc::Rumqttc;

/// The short run, or the long one with `DESE_CHAOS=long`; `DESE_CHAOS_SEED` replays a seed.
fn faults() -> Faults {
    let mut faults = match std::env::var("DESE_CHAOS").as_deref() {
        Ok("long") => Faults::LONG,
        _ => Faults::SHORT,
    };
    if let Some(seed) = std::env::var("DESE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        faults.seed = seed;
    }
    faults
}

/// The promise, whatever the faults: nothing lost, every command ended, none run twice, and a
/// silent link noticed within 1.5 keepalive periods (plus the time to see the result).
fn check(transport: &str, faults: Faults, figures: &ChaosFigures) {
    println!("{transport}, seed {}: {figures}", faults.seed);
    assert_eq!(figures.lost, 0, "{transport}: {figures}");
    assert_eq!(
        figures.received,
        u64::from(faults.readings),
        "{transport}: {figures}"
    );
    assert_eq!(figures.commands_run_twice, 0, "{transport}: {figures}");
    let ended: u64 = ["completed", "failed", "timed_out"]
        .iter()
        .filter_map(|k| figures.commands.get(k))
        .sum();
    assert_eq!(
        Some(&ended),
        figures.commands.get("sent"),
        "{transport}: every command ended: {figures}"
    );
    let keepalive = Duration::from_secs(u64::from(faults.keepalive_secs));
    let bound = keepalive.mul_f64(1.5) + Duration::from_millis(500);
    assert!(
        figures.slowest_silence_detection <= bound,
        "{transport}: a silent link went unnoticed for {:?} (bound {bound:?}): {figures}",
        figures.slowest_silence_detection
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_through_resets_cuts_and_silent_links() {
    let faults = faults();
    let figures = link_faults::<Rumqttc, Rumqttc>(faults).await;
    check("rumqttc", faults, &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_through_resets_cuts_and_silent_links() {
    let faults = faults();
    let figures = link_faults::<Paho, Paho>(faults).await;
    check("paho", faults, &figures);
}

/// Ten SIGKILLs of the broker during the readings (two in the short run), autosave on every
/// change (and every 1800 s, Mosquitto's default, in the long run): every reading the device
/// took was acknowledged by the broker in the end (its outbox kept each one until then: the
/// scenario waits for it to empty), and the backend received what the broker kept.
async fn kills<D: dese_transport::Transport, B: dese_transport::Transport>(transport: &str) {
    let long = std::env::var("DESE_CHAOS").as_deref() == Ok("long");
    let (readings, kills) = if long { (10_000, 10) } else { (2_000, 2) };
    for autosave in [Autosave::EveryChange, Autosave::Seconds(1800)] {
        if !long && autosave != Autosave::EveryChange {
            continue;
        }
        let figures = broker_kills::<D, B>(readings, kills, autosave).await;
        println!("{transport}, {autosave}: {figures}");
        assert_eq!(figures.sent, u64::from(readings), "{transport}: {figures}");
        assert_eq!(figures.kills, u64::from(kills), "{transport}: {figures}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_through_broker_kills() {
    kills::<Rumqttc, Rumqttc>("rumqttc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_through_broker_kills() {
    kills::<Paho, Paho>("paho").await;
}
