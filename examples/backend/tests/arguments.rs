//! The reference backend refuses settings that cannot work with a message naming them, exit
//! status 2, before it opens the database or connects: never a panic.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::process::Command;

#[test]
fn absurd_settings_are_refused_by_name() {
    let db = std::env::temp_dir().join(format!("dese-backend-args-{}.db", std::process::id()));
    let cases: [(&[&str], &str); 4] = [
        (&["--command-timeout", "1e19"], "command_timeout"),
        (&["--command-timeout", "0"], "command_timeout"),
        (&["--command-timeout=-1"], "--command-timeout"),
        (&["--receive-window", "0"], "--receive-window"),
    ];
    for (args, named) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_dese-reference-backend"))
            .args(["--broker", "mqtt://127.0.0.1:9", "--db"])
            .arg(&db)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(named) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
        assert!(
            !db.exists(),
            "{args:?}: refused before the database was opened"
        );
    }
}
