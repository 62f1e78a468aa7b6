//! A Mosquitto broker for one test.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the generated configuration says, beyond the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosquittoConfig {
    /// Whether clients may connect without a username (`allow_anonymous`).
    pub allow_anonymous: bool,
    /// A password file (`mosquitto_passwd` format), when authentication is wanted.
    pub password_file: Option<PathBuf>,
    /// An ACL file, when authorization is wanted.
    pub acl_file: Option<PathBuf>,
    /// `max_queued_messages`. Mosquitto's default, 1000, silently drops QoS 1 messages beyond
    /// it for a slow subscriber; the tests raise it so that a slow test is not a lost message.
    pub max_queued_messages: u32,
    /// `max_inflight_messages` per client; 0 is unlimited.
    pub max_inflight_messages: u32,
    /// Whether the broker saves its state (persistent sessions and their queued messages) in
    /// the test's folder when it stops, and loads it when it starts again.
    pub persistence: bool,
    /// Extra lines appended to the configuration as they are.
    pub extra: Vec<String>,
    /// The user a broker started as root drops to, as a stock installation does (Debian's
    /// `mosquitto`): the test's folder is given to that user, and the broker then reads
    /// every file it is given as that user. `None`: it stays the invoking user (`user root`
    /// when that is root). Ignored when not running as root.
    pub run_as: Option<String>,
    /// The port of a listener that `extra` defines (an included `dese.conf` does): the broker
    /// gets no listener of the test kit's own, and is ready when that one is. `None`: a
    /// loopback listener on a free port.
    pub listener_in_extra: Option<u16>,
}

impl Default for MosquittoConfig {
    fn default() -> Self {
        Self {
            allow_anonymous: true,
            password_file: None,
            acl_file: None,
            max_queued_messages: 100_000,
            max_inflight_messages: 0,
            persistence: false,
            extra: Vec::new(),
            run_as: None,
            listener_in_extra: None,
        }
    }
}

/// Why a broker could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `mosquitto` is not installed (the test command installs it: `apt-get install mosquitto`).
    #[error("mosquitto is not installed (apt-get install mosquitto)")]
    NotInstalled,
    /// A file or process operation failed.
    #[error("cannot run mosquitto")]
    Io(#[from] std::io::Error),
    /// The broker did not come up on its port in time; the log's tail says why.
    #[error("mosquitto did not listen on 127.0.0.1:{port}; its log ends with:\n{log}")]
    NotListening {
        /// The port it was given.
        port: u16,
        /// The end of its log.
        log: String,
    },
}

/// A running Mosquitto, stopped (by PID) when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    config: MosquittoConfig,
}

impl Mosquitto {
    /// Starts a broker with the default configuration.
    pub fn start() -> Result<Self, StartError> {
        Self::start_with(MosquittoConfig::default())
    }

    /// Starts a broker with `config` on a free loopback port.
    pub fn start_with(config: MosquittoConfig) -> Result<Self, StartError> {
        let dir = std::env::temp_dir().join(format!(
            "dese-mosquitto-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir)?;
        if let (Some(user), true) = (&config.run_as, running_as_root()) {
            let (uid, gid) = system_user(user).ok_or_else(|| {
                StartError::Io(std::io::Error::other(format!("no user {user:?}")))
            })?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let mut broker = Self {
            child: None,
            port: 0,
            dir,
            config,
        };
        // A port that was free a moment ago can be taken before the broker binds it: retry.
        let mut last = None;
        if let Some(port) = broker.config.listener_in_extra {
            broker.port = port;
            broker.spawn()?;
            return Ok(broker);
        }
        for _ in 0..5 {
            broker.port = free_port()?;
            match broker.spawn() {
                Ok(()) => return Ok(broker),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(StartError::NotListening {
            port: 0,
            log: String::new(),
        }))
    }

    /// The loopback address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker gracefully (SIGTERM, so that it closes its clients' connections) and
    /// waits for it to exit; SIGKILL if it has not within 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the broker with SIGKILL, as a power loss or the kernel's OOM killer would: it
    /// saves nothing and says goodbye to no client. Start it again with
    /// [`Mosquitto::start_again`]; with persistence on, it comes back with what it last saved.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped broker again, on the same port and with the same configuration (with
    /// persistence, its saved sessions too).
    pub fn start_again(&mut self) -> Result<(), StartError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.spawn()
    }

    /// Stops the broker and starts it again on the same port, as a graceful restart.
    pub fn restart(&mut self) -> Result<(), StartError> {
        self.stop();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), StartError> {
        let conf = self.dir.join("mosquitto.conf");
        let log = self.dir.join("mosquitto.log");
        let _ = std::fs::remove_file(&log);
        std::fs::write(&conf, self.config_text(&log))?;
        let child = Command::new(binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StartError::NotInstalled,
                _ => StartError::Io(e),
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let opened = format!("Opening ipv4 listen socket on port {}.", self.port);
        while Instant::now() < deadline {
            let alive = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if !alive {
                break;
            }
            // Ours: the log of this process says it opened this port, and it answers.
            if self.log().contains(&opened) && TcpStream::connect(self.addr()).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let tail = tail(&self.log(), 20);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(StartError::NotListening {
            port: self.port,
            log: tail,
        })
    }

    fn config_text(&self, log: &Path) -> String {
        let c = &self.config;
        let mut lines = Vec::new();
        if running_as_root() {
            // Run as root, Mosquitto drops to the `mosquitto` user, which cannot write into
            // this test's folder unless it was given to it; `user root` keeps it as the
            // invoking user.
            lines.push(format!("user {}", c.run_as.as_deref().unwrap_or("root")));
        }
        if c.listener_in_extra.is_none() {
            lines.push(format!("listener {} 127.0.0.1", self.port));
        }
        lines.extend([
            format!("allow_anonymous {}", c.allow_anonymous),
            format!("persistence {}", c.persistence),
            format!("persistence_location {}/", self.dir.display()),
            format!("log_dest file {}", log.display()),
            "log_type error".to_string(),
            "log_type warning".to_string(),
            "log_type notice".to_string(),
            "log_type information".to_string(),
            "connection_messages true".to_string(),
            format!("max_queued_messages {}", c.max_queued_messages),
            format!("max_inflight_messages {}", c.max_inflight_messages),
            // Without it the broker's side of every small packet waits for Nagle's algorithm
            // and a command round trip takes 40 ms or more even when the clients set it.
            "set_tcp_nodelay true".to_string(),
        ]);
        if let Some(file) = &c.password_file {
            lines.push(format!("password_file {}", file.display()));
        }
        if let Some(file) = &c.acl_file {
            lines.push(format!("acl_file {}", file.display()));
        }
        lines.extend(c.extra.iter().cloned());
        lines.join("\n") + "\n"
    }

    /// Sends a bare MQTT 3.1.1 CONNECT and returns the CONNACK's return code (0: accepted): a
    /// probe that needs no client library.
    pub fn probe_connect(&self, client_id: &str) -> std::io::Result<u8> {
        let mut stream = TcpStream::connect(self.addr())?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let id = client_id.as_bytes();
        let id_len =
            u16::try_from(id.len()).map_err(|_| std::io::Error::other("client id too long"))?;
        let mut variable = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
        variable.extend_from_slice(&id_len.to_be_bytes());
        variable.extend_from_slice(id);
        let remaining =
            u8::try_from(variable.len()).map_err(|_| std::io::Error::other("too long"))?;
        let mut packet = vec![0x10, remaining];
        packet.extend(variable);
        stream.write_all(&packet)?;
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack)?;
        if connack[0] != 0x20 {
            return Err(std::io::Error::other(format!("not a CONNACK: {connack:?}")));
        }
        Ok(connack[3])
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `mosquitto` from the PATH, or from /usr/sbin where Debian installs it (not on a regular
/// user's PATH).
fn binary() -> PathBuf {
    let sbin = Path::new("/usr/sbin/mosquitto");
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("mosquitto").is_file())
    });
    if !on_path && sbin.is_file() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("mosquitto")
    }
}

/// Whether this process runs with user id 0 (Linux: from /proc).
pub(crate) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The uid and gid of a system user, from /etc/passwd.
pub(crate) fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
