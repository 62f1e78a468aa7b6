//! A backend that takes 200 events a second while 250 devices send 1,000 a second, for each
//! transport, in a process of its own so that its resident memory is the scenario's. The two
//! tests take turns, for the same reason.
//!
//!     cargo test -p dese-conformance --test slow_consumer -- --nocapture
//!     DESE_SLOW_CONSUMER_SECS=600 cargo test -p dese-conformance --test slow_consumer -- --nocapture

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::time::Duration;

use dese_conformance::delivery;
use dese_paho::Paho;
use dese_rumqttc::Rumqttc;

/// One scenario at a time: each measures this process's memory.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the devices send: `DESE_SLOW_CONSUMER_SECS`, 60 s by default.
fn sending() -> Duration {
    let secs = std::env::var("DESE_SLOW_CONSUMER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

// DESE-D9
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_dese_d9_slow_consumer() {
    let _turn = TURN.lock().await;
    let figures = delivery::slow_consumer::<Rumqttc>("rumqttc", sending()).await;
    println!("rumqttc: slow consumer: {figures}");
}

// DESE-D9
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_dese_d9_slow_consumer() {
    let _turn = TURN.lock().await;
    let figures = delivery::slow_consumer::<Paho>("paho", sending()).await;
    println!("paho: slow consumer: {figures}");
}
