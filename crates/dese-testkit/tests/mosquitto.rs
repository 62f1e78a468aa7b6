//! The broker harness against the real Mosquitto.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use dese_testkit::{Mosquitto, MosquittoConfig};

#[test]
fn starts_on_its_own_loopback_port_and_stops_by_pid() {
    let broker = Mosquitto::start().unwrap();
    assert!(broker.addr().ip().is_loopback());
    assert!(broker.log().contains(&format!(
        "Opening ipv4 listen socket on port {}.",
        broker.port()
    )));
    assert_eq!(
        broker.probe_connect("probe").unwrap(),
        0,
        "CONNACK accepted"
    );
    let pid = broker.pid().unwrap();
    let addr = broker.addr();
    drop(broker);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the process is gone"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is closed"
    );
}

#[test]
fn two_brokers_never_share_a_port() {
    let a = Mosquitto::start().unwrap();
    let b = Mosquitto::start().unwrap();
    assert_ne!(a.port(), b.port());
}

#[test]
fn restarts_gracefully_on_the_same_port() {
    let mut broker = Mosquitto::start().unwrap();
    let (port, first) = (broker.port(), broker.pid().unwrap());
    broker.restart().unwrap();
    assert_eq!(broker.port(), port);
    assert_ne!(broker.pid().unwrap(), first);
    assert_eq!(broker.probe_connect("again").unwrap(), 0);
}

#[test]
fn anonymous_clients_refused_when_configured() {
    let broker = Mosquitto::start_with(MosquittoConfig {
        allow_anonymous: false,
        ..MosquittoConfig::default()
    })
    .unwrap();
    // 5: not authorized.
    assert_eq!(broker.probe_connect("anon").unwrap(), 5);
}
