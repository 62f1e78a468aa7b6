//! `dese acl`: a Mosquitto password file and ACL from a device registry.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dese_protocol::{DeviceId, Direction, MessageKind, OrgId};
use ring::rand::SecureRandom as _;
use serde::Deserialize;

use crate::exit::{Exit, Failure};

/// The PBKDF2-HMAC-SHA512 iterations of the `$7$` hashes this writes. Mosquitto's own
/// `mosquitto_passwd` uses 101, which makes a leaked password file cheap to guess through.
/// Mosquitto verifies the hash at every CONNECT, on its one thread: 10,000 iterations cost
/// about 7 ms a connection on a 2-core machine (so 10,000 devices reconnecting after a broker
/// restart cost about 70 s of the broker's CPU), where 101 cost 0.1 ms. Long random device
/// passwords matter more than iterations; this raises the cost of guessing a weak one a
/// hundredfold.
const ITERATIONS: u32 = 10_000;

/// The fewest iterations a `password_hash` from the registry may have: Mosquitto's default.
const FEWEST_ITERATIONS: u32 = 101;

/// Write a Mosquitto password file and ACL in which every device can only publish its own
/// telemetry, status, command_response and alert, and only subscribe to its own commands and
/// config; backend users read what devices send and write commands and config.
///
/// Mosquitto's `pattern` rules fill one topic level per %u or %c, so they cannot bind an
/// organization and a device together: the ACL has literal rules for each device. Writes
/// DIR/passwd, DIR/acl and DIR/dese.conf (to include in mosquitto.conf: the files; the client
/// id taken from the username, so that no credential can take over another client's
/// connection; and the broker settings the SDK relies on). With --auth certificate, devices
/// and backends authenticate with client certificates instead (the certificate's common name
/// is the username the ACL names) and there is no password file. Run it again after every
/// change to the registry, then reload Mosquitto (SIGHUP).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The registry (TOML):

  [[backend]]
  username = \"backend\"
  password = \"change-me\"           # or password_hash = \"$7$101$...\" (mosquitto_passwd)
  orgs = [\"acme\"]                  # optional: only these organizations

  [[device]]
  org = \"acme\"
  device = \"pool-1\"
  password = \"s3cret\"              # or password_hash; none with --auth certificate
  # username = \"acme/pool-1\"       # the default: {org}/{device}

The broker takes each client's id from its username, so every backend instance and every tool
(dese monitor, dese send) needs a user of its own: two clients with one user would take over
each other's connection.

Examples:
  dese acl --devices registry.toml --out /etc/mosquitto/dese
  echo 'include_dir /etc/mosquitto/dese' >> /etc/mosquitto/mosquitto.conf   # or copy dese.conf
  dese acl --devices registry.toml --out /etc/mosquitto/dese --auth certificate \\
      --tls-ca ca.pem --tls-cert broker.pem --tls-key broker.key --port 8883
  scripts/certificates device --ca-dir ca --org acme --device pool-1   # docs/security.md")]
pub(crate) struct Args {
    /// The device registry (TOML)
    #[arg(long, value_name = "FILE")]
    devices: PathBuf,

    /// Where to write passwd, acl and dese.conf (created when missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// How devices and backends authenticate: a password each, or a client certificate whose
    /// common name is the username (needs the --tls-* files)
    #[arg(long, value_enum, default_value_t = Auth::Password)]
    auth: Auth,

    /// The broker's TLS listener: the CA that signs the clients' certificates (and the broker's)
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,

    /// The broker's certificate, for the TLS listener
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,

    /// The broker's private key, for the TLS listener
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    tls_key: Option<PathBuf>,

    /// The port of the broker's listener, which dese.conf defines (remove the listener lines
    /// of mosquitto.conf): 1883 by default, 8883 with the --tls-* files
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,

    /// The address the listener binds to (every interface by default)
    #[arg(long, value_name = "ADDRESS")]
    bind: Option<String>,

    /// The group the broker runs as: the password file and the ACL are made readable by it
    /// (mode 0640, owner root) when dese acl runs as root, as Mosquitto reads them after it
    /// dropped its privileges. Not root: the files are the invoking user's, mode 0600, and the
    /// broker must run as that user.
    #[arg(long, value_name = "GROUP", default_value = "mosquitto")]
    broker_group: String,

    /// Accept `$6$` password hashes (one round of SHA-512: fast to guess) from the registry
    #[arg(long)]
    allow_sha512_hashes: bool,
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Auth {
    /// A username and password each (a password file).
    Password,
    /// A client certificate each; its common name is the username.
    Certificate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registry {
    #[serde(default)]
    backend: Vec<BackendEntry>,
    #[serde(default)]
    device: Vec<DeviceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendEntry {
    username: String,
    password: Option<String>,
    password_hash: Option<String>,
    orgs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceEntry {
    org: String,
    device: String,
    username: Option<String>,
    password: Option<String>,
    password_hash: Option<String>,
}

/// One user of the generated files.
struct User {
    name: String,
    /// Its password hash; `None` when it authenticates with a certificate.
    hash: Option<String>,
    rules: Vec<String>,
    what: String,
}

/// How the registry's entries are read.
#[derive(Debug, Clone, Copy)]
struct Policy {
    auth: Auth,
    allow_sha512_hashes: bool,
}

pub(crate) fn run(args: &Args) -> Result<Exit, Failure> {
    let text = std::fs::read_to_string(&args.devices).map_err(|e| {
        Failure::new(
            Exit::Io,
            format!("cannot read {}: {e}", args.devices.display()),
        )
    })?;
    let registry: Registry = toml::from_str(&text)
        .map_err(|e| Failure::new(Exit::Failed, format!("{}: {e}", args.devices.display())))?;
    let policy = Policy {
        auth: args.auth,
        allow_sha512_hashes: args.allow_sha512_hashes,
    };
    let users = users(&registry, policy)
        .map_err(|e| Failure::new(Exit::Failed, format!("{}: {e}", args.devices.display())))?;
    let tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
            ca: absolute(ca)?,
            cert: absolute(cert)?,
            key: absolute(key)?,
        }),
        _ if args.auth == Auth::Certificate => {
            return Err(Failure::usage(
                "--auth certificate needs the broker's TLS listener: --tls-ca, --tls-cert, --tls-key",
            ));
        }
        _ => None,
    };
    if let Some(bind) = &args.bind {
        if bind.is_empty() || bind.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Failure::usage(format!("--bind {bind:?} is not an address")));
        }
    }
    let listener = Listener {
        port: args.port.unwrap_or(if tls.is_some() { 8883 } else { 1883 }),
        bind: args.bind.clone(),
        tls,
    };
    let written = write_files(&args.out, &users, args.auth, &listener, &args.broker_group)?;
    let devices = registry.device.len();
    println!(
        "wrote {}: {} user(s) ({devices} device(s), {} backend user(s))",
        written
            .iter()
            .map(|f| args.out.join(f).display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        users.len(),
        registry.backend.len()
    );
    Ok(Exit::Ok)
}

/// The broker's listener. Mosquitto applies a listener's own settings (such as
/// `use_username_as_clientid`) to the `listener` line above them in the same file; in an
/// included file with none, they create a default listener on port 1883 instead. So dese.conf
/// defines the listener itself.
struct Listener {
    port: u16,
    bind: Option<String>,
    tls: Option<TlsFiles>,
}

/// The broker's TLS files.
struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    if !path.is_file() {
        return Err(Failure::usage(format!("{} is not a file", path.display())));
    }
    std::path::absolute(path)
        .map_err(|e| Failure::new(Exit::Io, format!("{}: {e}", path.display())))
}

fn users(registry: &Registry, policy: Policy) -> Result<Vec<User>, String> {
    let mut users = Vec::new();
    let mut devices = BTreeSet::new();
    for (i, entry) in registry.backend.iter().enumerate() {
        let what = format!("backend[{i}] ({})", entry.username);
        let orgs = match &entry.orgs {
            None => vec!["+".to_string()],
            Some(orgs) if orgs.is_empty() => {
                return Err(format!(
                    "{what}: orgs is empty; leave it out to serve every organization"
                ));
            }
            Some(orgs) => orgs
                .iter()
                .map(|org| {
                    let id = OrgId::parse(org).map_err(|e| format!("{what}: org {org:?}: {e}"))?;
                    acl_safe(id.as_str(), &what)?;
                    Ok(id.to_string())
                })
                .collect::<Result<_, String>>()?,
        };
        users.push(User {
            rules: orgs
                .iter()
                .flat_map(|org| rules(org, "+", Direction::BackendToDevice))
                .collect(),
            name: username(&entry.username, &what)?,
            hash: hash(
                entry.password.as_deref(),
                entry.password_hash.as_deref(),
                policy,
                &what,
            )?,
            what,
        });
    }
    for (i, entry) in registry.device.iter().enumerate() {
        let what = format!("device[{i}] ({}/{})", entry.org, entry.device);
        let org = OrgId::parse(&entry.org).map_err(|e| format!("{what}: org: {e}"))?;
        let device = DeviceId::parse(&entry.device).map_err(|e| format!("{what}: device: {e}"))?;
        acl_safe(org.as_str(), &what)?;
        acl_safe(device.as_str(), &what)?;
        if !devices.insert((org.clone(), device.clone())) {
            return Err(format!("{what}: this device is listed twice"));
        }
        let name = entry
            .username
            .clone()
            .unwrap_or_else(|| format!("{org}/{device}"));
        users.push(User {
            rules: rules(org.as_str(), device.as_str(), Direction::DeviceToBackend),
            name: username(&name, &what)?,
            hash: hash(
                entry.password.as_deref(),
                entry.password_hash.as_deref(),
                policy,
                &what,
            )?,
            what,
        });
    }
    let mut names = BTreeSet::new();
    for user in &users {
        if !names.insert(user.name.as_str()) {
            return Err(format!(
                "{}: username {:?} is used twice",
                user.what, user.name
            ));
        }
    }
    Ok(users)
}

/// The six rules of one party on `devices/{org}/{device}/{kind}`: it writes the kinds that
/// travel in its `sends` direction and reads the others.
fn rules(org: &str, device: &str, sends: Direction) -> Vec<String> {
    MessageKind::ALL
        .iter()
        .map(|kind| {
            let access = if kind.direction() == sends {
                "write"
            } else {
                "read"
            };
            format!("topic {access} devices/{org}/{device}/{kind}")
        })
        .collect()
}

/// Mosquitto trims blanks around a topic in its ACL file, so an id that starts or ends with
/// one would silently become another topic.
fn acl_safe(id: &str, what: &str) -> Result<(), String> {
    if id.trim() != id {
        return Err(format!(
            "{what}: id {id:?} starts or ends with a blank, which Mosquitto's ACL file cannot hold"
        ));
    }
    Ok(())
}

/// Mosquitto's password file separates the username from the hash with `:`, and its ACL file
/// trims blanks.
fn username(name: &str, what: &str) -> Result<String, String> {
    if name.is_empty()
        || name.contains(':')
        || name.trim() != name
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "{what}: username {name:?} cannot be used: it must be non-empty, without ':', \
             control characters, or blanks at either end"
        ));
    }
    Ok(name.to_string())
}

fn hash(
    password: Option<&str>,
    hash: Option<&str>,
    policy: Policy,
    what: &str,
) -> Result<Option<String>, String> {
    if policy.auth == Auth::Certificate {
        return match (password, hash) {
            (None, None) => Ok(None),
            _ => Err(format!(
                "{what}: --auth certificate uses no passwords: remove password and password_hash"
            )),
        };
    }
    match (password, hash) {
        (Some(_), Some(_)) => Err(format!("{what}: give password or password_hash, not both")),
        (None, None) => Err(format!("{what}: password or password_hash is missing")),
        (None, Some(hash)) => check_hash(hash, policy)
            .map(|()| Some(hash.to_string()))
            .map_err(|e| format!("{what}: password_hash {}: {e}", shorten(hash))),
        (Some(""), None) => Err(format!("{what}: the password is empty")),
        (Some(password), None) => mosquitto_hash(password)
            .map(Some)
            .map_err(|e| format!("{what}: {e}")),
    }
}

/// A hash as Mosquitto writes it, nothing more: `$7$<iterations>$<salt>$<hash>` (PBKDF2-HMAC-
/// SHA512, at least Mosquitto's 101 iterations, a 12-byte salt and a 64-byte hash in standard
/// base64), or, when allowed, `$6$<salt>$<hash>` (one round of SHA-512). Anything else could
/// carry a newline, and a second line of the password file is a second user.
fn check_hash(hash: &str, policy: Policy) -> Result<(), String> {
    let decoded = |field: &str, bytes: usize, name: &str| match STANDARD.decode(field) {
        Ok(raw) if raw.len() == bytes => Ok(()),
        _ => Err(format!(
            "its {name} is not {bytes} bytes of standard base64"
        )),
    };
    if let Some(rest) = hash.strip_prefix("$7$") {
        let parts: Vec<&str> = rest.split('$').collect();
        let [iterations, salt, digest] = parts[..] else {
            return Err("expected $7$<iterations>$<salt>$<hash>".into());
        };
        match iterations.parse::<u32>() {
            Ok(n) if n >= FEWEST_ITERATIONS && iterations.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => {
                return Err(format!(
                    "{iterations:?} iterations: expected a number, at least {FEWEST_ITERATIONS}"
                ));
            }
        }
        decoded(salt, 12, "salt")?;
        return decoded(digest, 64, "hash");
    }
    if let Some(rest) = hash.strip_prefix("$6$") {
        if !policy.allow_sha512_hashes {
            return Err(
                "a $6$ hash is one round of SHA-512, fast to guess: give the password (dese acl \
                 writes a $7$ hash) or pass --allow-sha512-hashes"
                    .into(),
            );
        }
        let parts: Vec<&str> = rest.split('$').collect();
        let [salt, digest] = parts[..] else {
            return Err("expected $6$<salt>$<hash>".into());
        };
        decoded(salt, 12, "salt")?;
        return decoded(digest, 64, "hash");
    }
    Err("not a Mosquitto hash ($7$..., or $6$... with --allow-sha512-hashes)".into())
}

/// A registry value as an error message shows it: escaped, and cut after 40 characters.
fn shorten(text: &str) -> String {
    let cut: String = text.chars().take(40).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!("\"{}{more}\"", dese_protocol::Printable(&cut))
}

/// `$7$10000$<salt>$<hash>`: PBKDF2-HMAC-SHA512 with a 12-byte random salt, in
/// `mosquitto_passwd`'s format, with more iterations ([`ITERATIONS`]).
fn mosquitto_hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "the system's random generator failed".to_string())?;
    let mut out = [0u8; 64];
    let iterations = NonZeroU32::new(ITERATIONS).ok_or("zero iterations")?;
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        &salt,
        password.as_bytes(),
        &mut out,
    );
    Ok(format!(
        "$7${ITERATIONS}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(out)
    ))
}

/// Writes the files and returns their names.
fn write_files(
    dir: &Path,
    users: &[User],
    auth: Auth,
    listener: &Listener,
    broker_group: &str,
) -> Result<Vec<&'static str>, Failure> {
    let io = |path: &Path, e: std::io::Error| {
        Failure::new(Exit::Io, format!("cannot write {}: {e}", path.display()))
    };
    let secret = Mode::secret(broker_group)?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut passwd = String::new();
    if auth == Auth::Certificate {
        passwd.push_str(
            "# Generated by `dese acl --auth certificate`: no passwords. Clients authenticate \
             with certificates on the TLS listener; a client on any other listener is refused \
             whatever username and password it gives.\n",
        );
    }
    let mut acl = String::from(
        "# Generated by `dese acl`; edit the registry and run it again instead of this file.\n\
         # Anonymous clients get nothing: there are no rules before the first user.\n",
    );
    for user in users {
        if let Some(hash) = &user.hash {
            let _ = writeln!(passwd, "{}:{hash}", user.name);
        }
        let _ = writeln!(acl, "\n# {}\nuser {}", user.what, user.name);
        for rule in &user.rules {
            let _ = writeln!(acl, "{rule}");
        }
    }
    let dir_abs = std::path::absolute(dir).map_err(|e| io(dir, e))?;
    let conf = broker_conf(&dir_abs, auth, listener);
    let files = [
        ("passwd", passwd, secret),
        ("acl", acl, secret),
        ("dese.conf", conf, Mode::Public),
    ];
    for (name, text, mode) in &files {
        let path = dir.join(name);
        write_atomically(&path, text, *mode).map_err(|e| io(&path, e))?;
    }
    Ok(files.map(|(name, _, _)| name).to_vec())
}

/// `dese.conf`: the files, and the broker settings the SDK's delivery promise relies on, each
/// with the reason (docs/backend.md and docs/security.md say more).
fn broker_conf(dir: &Path, auth: Auth, listener: &Listener) -> String {
    let mut conf = format!(
        "\
# Generated by `dese acl`: include this in mosquitto.conf (include_dir, or copy the lines in).
allow_anonymous false
password_file {passwd}
acl_file {acl}

# A DESE backend acknowledges a message only once it has stored it, and the broker keeps what
# it has not acknowledged. These settings make sure the broker does keep it, and that no message
# can stall the backend.
#
# QoS 1 messages kept for a client that is away or behind (a backend's persistent session).
# Mosquitto's default, 1000, is three seconds of readings from 10,000 devices; beyond it the
# broker drops QoS 1 messages without a word. This keeps almost an hour of such a fleet; bound
# the memory it may take with max_queued_bytes if you need to.
max_queued_messages 1000000
# Messages sent to a client ahead of its acknowledgements. A backend acknowledges after each
# database commit, so this bounds its batches (Mosquitto's default is 20); the reference
# backend holds up to 4,096 unconfirmed, two batches of 2,048.
max_inflight_messages 4096
# The largest payload accepted: larger ones are refused here; smaller ones that are still over
# the protocol's 16 KiB reach the backend, which refuses and counts them. The SDK's clients
# take packets this large, so that no message the broker forwards can stall them.
message_size_limit {limit}
# Small packets go out at once: without it a command's round trip waits for Nagle's algorithm.
set_tcp_nodelay true
",
        passwd = dir.join("passwd").display(),
        acl = dir.join("acl").display(),
        limit = dese_transport::BROKER_MESSAGE_SIZE_LIMIT,
    );
    let address = match &listener.bind {
        Some(bind) => format!("{} {bind}", listener.port),
        None => listener.port.to_string(),
    };
    let certificates = auth == Auth::Certificate;
    let what = match (&listener.tls, certificates) {
        (None, _) => "",
        (Some(_), false) => ", with TLS so that passwords never travel in clear",
        (Some(_), true) => {
            ", with TLS: every client shows a certificate the CA signed, and its common name is \
             its username. The password file holds no one, so a client on any other listener \
             is refused"
        }
    };
    let _ = write!(
        conf,
        "
# The broker's listener{what}. This file defines it: remove the listener lines of
# mosquitto.conf (a listener's own settings must follow its `listener` line in the same file).
listener {address}
# The client id is the username: no credential can take over the connection (and the session)
# of another device or backend by using its client id. Every backend instance and every tool
# needs a user of its own.
use_username_as_clientid true
"
    );
    if let Some(tls) = &listener.tls {
        let _ = write!(
            conf,
            "cafile {ca}
certfile {cert}
keyfile {key}
tls_version tlsv1.2
require_certificate {certificates}
",
            ca = tls.ca.display(),
            cert = tls.cert.display(),
            key = tls.key.display(),
        );
        if certificates {
            conf.push_str("use_identity_as_username true\n");
        }
    }
    conf
}

/// Who may read a generated file.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Anyone (dese.conf: paths and settings, no secret).
    Public,
    /// The owner, and the broker's group when there is one (the password file and the ACL).
    Secret { group: Option<u32> },
}

impl Mode {
    /// Run as root, the secret files are root's and readable by the broker's group (Mosquitto
    /// reads them after it dropped to its own user); otherwise the invoking user's alone.
    fn secret(group: &str) -> Result<Self, Failure> {
        if !running_as_root() {
            return Ok(Self::Secret { group: None });
        }
        match group_id(group) {
            Some(gid) => Ok(Self::Secret { group: Some(gid) }),
            None => Err(Failure::usage(format!(
                "there is no group {group:?} for the broker to read the password file as \
                 (--broker-group; Debian's mosquitto package makes `mosquitto`)"
            ))),
        }
    }
}

/// Whether this process runs as root (Linux: from /proc).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

/// A group's id, from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let _password = fields.next()?;
        fields.next()?.parse().ok()
    })
}

/// Writes through a temporary file and a rename, so that a broker reloading meanwhile never
/// reads half a file; a secret file has its mode and group before it holds anything.
fn write_atomically(path: &Path, text: &str, mode: Mode) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    let bits = match mode {
        Mode::Public => 0o644,
        Mode::Secret { group: Some(_) } => 0o640,
        Mode::Secret { group: None } => 0o600,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never more open than asked, even for a moment.
        options.mode(bits & 0o600);
    }
    let mut file = options.open(&tmp)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Mode::Secret { group: Some(gid) } = mode {
            std::os::unix::fs::fchown(&file, None, Some(gid))?;
        }
        // The mode asked for at creation is cut by the umask (a hardened 077 would make the
        // broker's group unable to read): set it outright, once the group is right.
        file.set_permissions(std::fs::Permissions::from_mode(bits))?;
    }
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORDS: Policy = Policy {
        auth: Auth::Password,
        allow_sha512_hashes: false,
    };

    fn registry(text: &str) -> Result<Vec<User>, String> {
        registry_with(text, PASSWORDS)
    }

    fn registry_with(text: &str, policy: Policy) -> Result<Vec<User>, String> {
        users(&toml::from_str(text).map_err(|e| e.to_string())?, policy)
    }

    #[test]
    fn each_device_gets_literal_rules_for_its_own_topics_only() {
        let users = registry("[[device]]\norg = \"acme\"\ndevice = \"pool 1\"\npassword = \"x\"\n")
            .unwrap();
        assert_eq!(users[0].name, "acme/pool 1");
        assert_eq!(
            users[0].rules,
            [
                "topic write devices/acme/pool 1/telemetry",
                "topic read devices/acme/pool 1/commands",
                "topic write devices/acme/pool 1/command_response",
                "topic write devices/acme/pool 1/status",
                "topic read devices/acme/pool 1/config",
                "topic write devices/acme/pool 1/alert",
            ]
        );
        assert!(users[0].hash.as_deref().unwrap().starts_with("$7$10000$"));
    }

    #[test]
    fn registry_mistakes_are_named() {
        let cases = [
            (
                "[[device]]\norg = \"acme\"\ndevice = \"a\"\n",
                "password or password_hash is missing",
            ),
            (
                "[[device]]\norg = \"acme\"\ndevice = \"a/b\"\npassword = \"x\"\n",
                "device[0] (acme/a/b): device",
            ),
            (
                "[[device]]\norg = \"acme\"\ndevice = \"a\"\npassword = \"x\"\nusername = \"a:b\"\n",
                "username \"a:b\" cannot be used",
            ),
            (
                "[[device]]\norg = \"acme\"\ndevice = \"a\"\npassword = \"x\"\n[[device]]\norg = \"acme\"\ndevice = \"a\"\npassword = \"y\"\n",
                "listed twice",
            ),
            (
                "[[backend]]\nusername = \"acme/a\"\npassword = \"x\"\n[[device]]\norg = \"acme\"\ndevice = \"a\"\npassword = \"y\"\n",
                "used twice",
            ),
            (
                "[[backend]]\nusername = \"b\"\npassword_hash = \"plain\"\n",
                "not a Mosquitto hash",
            ),
            (
                "[[backend]]\nusername = \"b\"\npassword = \"x\"\norgs = []\n",
                "orgs is empty",
            ),
            (
                "[[device]]\norg = \"acme\"\ndevice = \" a\"\npassword = \"x\"\n",
                "starts or ends with a blank",
            ),
            ("[[devices]]\norg = \"acme\"\n", "unknown field `devices`"),
        ];
        for (text, expected) in cases {
            let err = registry(text).err().unwrap_or_default();
            assert!(
                err.contains(expected),
                "{text:?}: {err:?} should say {expected:?}"
            );
        }
    }

    #[test]
    fn the_broker_settings_are_deliberate() {
        let plain = Listener {
            port: 1883,
            bind: None,
            tls: None,
        };
        let conf = broker_conf(Path::new("/etc/mosquitto/dese"), Auth::Password, &plain);
        for line in [
            "allow_anonymous false",
            "use_username_as_clientid true",
            "listener 1883",
            "password_file /etc/mosquitto/dese/passwd",
            "acl_file /etc/mosquitto/dese/acl",
            "max_queued_messages 1000000",
            "max_inflight_messages 4096",
            "message_size_limit 262144",
            "set_tcp_nodelay true",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line:?} in:\n{conf}");
        }
    }

    // A hash is Mosquitto's format exactly: a newline cannot add a user to the password file,
    // a $6$ hash needs to be asked for, and Mosquitto's 101 iterations are the fewest.
    #[test]
    fn password_hashes_are_validated_in_full() {
        let good = mosquitto_hash("s3cret").unwrap();
        let entry = |hash: &str| {
            format!(
                "[[backend]]\nusername = \"b\"\npassword_hash = {}\n",
                toml_string(hash)
            )
        };
        assert_eq!(
            registry(&entry(&good)).unwrap()[0].hash.as_deref(),
            Some(good.as_str())
        );
        let salt = STANDARD.encode([7u8; 12]);
        let digest = STANDARD.encode([9u8; 64]);
        let sha512 = format!("$6${salt}${digest}");
        let cases = [
            (
                format!("{good}\nintruder:{good}"),
                "expected $7$<iterations>",
            ),
            (format!("{good}\n"), "hash is not 64 bytes"),
            (format!("$7$100${salt}${digest}"), "at least 101"),
            (format!("$7$+101${salt}${digest}"), "at least 101"),
            (
                format!("$7$101${salt}"),
                "expected $7$<iterations>$<salt>$<hash>",
            ),
            (format!("$7$101$!!${digest}"), "salt is not 12 bytes"),
            (sha512.clone(), "--allow-sha512-hashes"),
            ("$2y$10$abc".to_string(), "not a Mosquitto hash"),
        ];
        for (hash, expected) in cases {
            let error = registry(&entry(&hash)).err().unwrap_or_default();
            assert!(error.contains(expected), "{hash:?}: {error}");
            assert!(!error.contains('\n'), "the message is one line: {error:?}");
        }
        let allowed = Policy {
            allow_sha512_hashes: true,
            ..PASSWORDS
        };
        assert!(registry_with(&entry(&sha512), allowed).is_ok());
    }

    fn toml_string(text: &str) -> String {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('\n', "\\n"))
    }

    // Certificate mode: no passwords in the registry, none in the files, and a TLS listener
    // that requires certificates and takes the username from them.
    #[test]
    fn certificate_mode_uses_no_passwords() {
        let certificates = Policy {
            auth: Auth::Certificate,
            ..PASSWORDS
        };
        let users = registry_with(
            "[[device]]\norg = \"acme\"\ndevice = \"pool-1\"\n[[backend]]\nusername = \"ingest\"\n",
            certificates,
        )
        .unwrap();
        assert!(users.iter().all(|u| u.hash.is_none()));
        let error = registry_with(
            "[[device]]\norg = \"acme\"\ndevice = \"pool-1\"\npassword = \"x\"\n",
            certificates,
        )
        .err()
        .unwrap_or_default();
        assert!(error.contains("uses no passwords"), "{error}");
        let listener = Listener {
            port: 8883,
            bind: Some("10.0.0.5".into()),
            tls: Some(TlsFiles {
                ca: "/etc/dese/ca.pem".into(),
                cert: "/etc/dese/broker.pem".into(),
                key: "/etc/dese/broker.key".into(),
            }),
        };
        let conf = broker_conf(Path::new("/etc/dese"), Auth::Certificate, &listener);
        for line in [
            "listener 8883 10.0.0.5",
            "cafile /etc/dese/ca.pem",
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
            "use_username_as_clientid true",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line:?} in:\n{conf}");
        }
        let conf = broker_conf(Path::new("/etc/dese"), Auth::Password, &listener);
        assert!(conf.lines().any(|l| l == "require_certificate false"));
        assert!(!conf.contains("use_identity_as_username"));
    }

    #[test]
    fn a_backend_limited_to_orgs_gets_rules_for_those_orgs() {
        let users =
            registry("[[backend]]\nusername = \"b\"\npassword = \"x\"\norgs = [\"acme\"]\n")
                .unwrap();
        assert!(
            users[0]
                .rules
                .contains(&"topic read devices/acme/+/telemetry".to_string())
        );
        assert!(
            users[0]
                .rules
                .contains(&"topic write devices/acme/+/commands".to_string())
        );
        assert_eq!(users[0].rules.len(), 6);
    }
}
