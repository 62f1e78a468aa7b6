//! TLS against a Mosquitto TLS listener, with certificates made by the test.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{NoCommands, Probe};
use dese_device::Settings;
use dese_protocol::TelemetryInterval;
use dese_rumqttc::{BrokerOptions, DeviceClient, ErrorKind};
use dese_testkit::{Mosquitto, MosquittoConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

/// A CA, and a server certificate it signed for 127.0.0.1; returns (ca.pem, server.pem, key.pem).
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("DESE test CA {name}"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server_params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-server.pem")),
        dir.join(format!("{name}-server.key")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, server.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    paths
}

fn settings() -> Settings {
    let mut s = Settings::new("org-1".parse().unwrap(), "dev-1".parse().unwrap(), "1.0.0");
    s.telemetry_interval = TelemetryInterval::new(200).unwrap();
    s
}

async fn eventually(done: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in time: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// DESE-S2: the right CA connects; a wrong CA is a TLS error that stops the client; plaintext to
// the TLS port fails as I/O and is retried with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dese_s2_tls_listener() {
    let dir = std::env::temp_dir().join(format!("dese-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir, "good");
    let (other_ca, _, _) = certificates(&dir, "other");
    let broker = Mosquitto::start_with(MosquittoConfig {
        extra: vec![
            format!("cafile {}", ca.display()),
            format!("certfile {}", cert.display()),
            format!("keyfile {}", key.display()),
        ],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let url = format!("mqtts://127.0.0.1:{}", broker.port());

    // The right CA: connected, and the broker acknowledges the device's messages.
    let options = BrokerOptions::parse(&url).unwrap().with_ca(&ca).unwrap();
    let device = DeviceClient::spawn(&options, settings(), Probe, NoCommands).unwrap();
    eventually(|| device.stats().delivered >= 3, "delivered over TLS").await;
    device.shutdown().await.unwrap();

    // A CA that did not sign the broker's certificate: a TLS error, final.
    let options = BrokerOptions::parse(&url)
        .unwrap()
        .with_ca(&other_ca)
        .unwrap();
    let device = DeviceClient::spawn(&options, settings(), Probe, NoCommands).unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), device.closed())
        .await
        .expect("stops by itself")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Tls, "{error}");

    // Plaintext to the TLS port: refused, reported as I/O, retried with backoff.
    let options = BrokerOptions::parse(&format!("mqtt://127.0.0.1:{}", broker.port())).unwrap();
    let device = DeviceClient::spawn(&options, settings(), Probe, NoCommands).unwrap();
    eventually(|| device.last_failure().is_some(), "a failure reported").await;
    assert_eq!(device.last_failure().unwrap().kind, ErrorKind::Io);
    assert!(!device.is_connected());
    device.shutdown().await.unwrap();

    // mqtts:// without a CA is a configuration error at once.
    let options = BrokerOptions::parse(&url).unwrap();
    let refused = DeviceClient::spawn(&options, settings(), Probe, NoCommands);
    assert_eq!(refused.err().map(|e| e.kind()), Some(ErrorKind::Tls));
    let _ = std::fs::remove_dir_all(dir);
}
