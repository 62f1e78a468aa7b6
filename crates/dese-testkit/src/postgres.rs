//! A throwaway PostgreSQL server for one test run.

use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::mosquitto::{free_port, running_as_root, tail, unique};

/// Why a PostgreSQL server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// No PostgreSQL server is installed (the test command installs Debian's `postgresql`).
    #[error(
        "no PostgreSQL server is installed (apt-get install postgresql): looked in \
         /usr/lib/postgresql/*/bin and on the PATH"
    )]
    NotInstalled,
    /// The tests run as root, which PostgreSQL refuses, and there is no `postgres` user to run
    /// it as.
    #[error("running as root, and there is no `postgres` user to run PostgreSQL as")]
    NoUser,
    /// A file or process operation failed.
    #[error("cannot run PostgreSQL")]
    Io(#[from] std::io::Error),
    /// A setup step (`initdb`, `createdb`) failed; its output says why.
    #[error("{step} failed:\n{output}")]
    Setup {
        /// The step.
        step: &'static str,
        /// What it printed.
        output: String,
    },
    /// The server did not accept connections on its port in time; its log's tail says why.
    #[error("PostgreSQL did not accept connections on 127.0.0.1:{port}; its log ends with:\n{log}")]
    NotListening {
        /// The port it was given.
        port: u16,
        /// The end of its log.
        log: String,
    },
}

/// A PostgreSQL server of its own: a cluster made by `initdb` in a temporary folder, listening
/// on a free loopback port (and a socket in that folder), with a database `dese` owned by the
/// user `dese` (trust authentication, loopback only). Run as the `postgres` user when the tests
/// run as root. Stopped (by PID) and removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// The user the server runs as, when the tests run as root.
    user: Option<(u32, u32)>,
}

impl Postgres {
    /// Makes a cluster and starts the server.
    pub fn start() -> Result<Self, PostgresError> {
        let bin = bin_dir().ok_or(PostgresError::NotInstalled)?;
        let user = if running_as_root() {
            Some(crate::mosquitto::system_user("postgres").ok_or(PostgresError::NoUser)?)
        } else {
            None
        };
        let dir =
            std::env::temp_dir().join(format!("dese-postgres-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir)?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            bin,
            user,
        };
        let initdb = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args(["-U", "dese", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()?;
        if !initdb.status.success() {
            return Err(PostgresError::Setup {
                step: "initdb",
                output: String::from_utf8_lossy(&[initdb.stdout, initdb.stderr].concat())
                    .into_owned(),
            });
        }
        // A port that was free a moment ago can be taken before the server binds it: retry.
        let mut last = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => {
                    server.create_database()?;
                    return Ok(server);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(PostgresError::NotListening {
            port: 0,
            log: String::new(),
        }))
    }

    /// `postgres://dese@127.0.0.1:{port}/dese`.
    pub fn url(&self) -> String {
        format!("postgres://dese@127.0.0.1:{}/dese", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server (SIGINT: PostgreSQL's fast shutdown) and waits; SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A program of the server's installation, run as its user.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.stdin(Stdio::null()).current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn spawn(&mut self) -> Result<(), PostgresError> {
        let log = std::fs::File::create(self.dir.join("postgres.log"))?;
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(self.dir.join("postgres.log"), Some(uid), Some(gid))?;
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.dir)
            // A throwaway server: what a test writes need not survive a power loss.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let listening = format!(
            "listening on IPv4 address \"127.0.0.1\", port {}",
            self.port
        );
        while Instant::now() < deadline {
            let alive = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if !alive {
                break;
            }
            // Ours: the log of this process says it listens on this port, and it is ready.
            if self.log().contains(&listening)
                && self.log().contains("ready to accept connections")
                && TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let tail = tail(&self.log(), 20);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(PostgresError::NotListening {
            port: self.port,
            log: tail,
        })
    }

    fn create_database(&self) -> Result<(), PostgresError> {
        let out = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "dese",
                "dese",
            ])
            .output()?;
        if !out.status.success() {
            return Err(PostgresError::Setup {
                step: "createdb",
                output: String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned(),
            });
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server's programs: the newest `/usr/lib/postgresql/*/bin` (Debian), else the folder of
/// `initdb` on the PATH.
fn bin_dir() -> Option<PathBuf> {
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    debian.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
    })
}
