//! The PostgreSQL harness against the real server.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::process::Command;

use dese_testkit::Postgres;

/// Runs one SQL statement with the installation's `psql` and returns what it printed.
fn psql(server: &Postgres, sql: &str) -> String {
    let out = Command::new("psql")
        .args([&server.url(), "-At", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn starts_its_own_cluster_on_a_loopback_port_and_stops_by_pid() {
    let server = Postgres::start().unwrap();
    assert!(server.url().starts_with("postgres://dese@127.0.0.1:"));
    assert!(
        server.log().contains(&format!("port {}", server.port())),
        "{}",
        server.log()
    );
    // Its database, owned by its user, and ours to write.
    assert_eq!(
        psql(&server, "SELECT current_user || ' ' || current_database()"),
        "dese dese"
    );
    psql(&server, "CREATE TABLE t (n int); INSERT INTO t VALUES (42)");
    assert_eq!(psql(&server, "SELECT n FROM t"), "42");
    let (pid, port) = (server.pid().unwrap(), server.port());
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the process is gone"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed"
    );
}

#[test]
fn two_servers_never_share_a_port() {
    let a = Postgres::start().unwrap();
    let b = Postgres::start().unwrap();
    assert_ne!(a.port(), b.port());
}
