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

/// Mosquitto 2's default PBKDF2 iteration count for `$7$` hashes (what `mosquitto_passwd`
/// writes).
const ITERATIONS: u32 = 101;

/// Write a Mosquitto password file and ACL in which every device can only publish its own
/// telemetry, status, command_response and alert, and only subscribe to its own commands and
/// config; backend users read what devices send and write commands and config.
///
/// Mosquitto's `pattern` rules fill one topic level per %u or %c, so they cannot bind an
/// organization and a device together: the ACL has literal rules for each device. Writes
/// DIR/passwd (mode 0600), DIR/acl and DIR/dese.conf (to include in mosquitto.conf: the two
/// files, and the broker settings the SDK relies on: how many messages the broker keeps for a
/// backend, how many it sends ahead of acknowledgements, the largest payload).
/// Run it again after every change to the registry, then reload Mosquitto (SIGHUP).
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
  password = \"s3cret\"              # or password_hash
  # username = \"acme/pool-1\"       # the default: {org}/{device}

Examples:
  dese acl --devices registry.toml --out /etc/mosquitto/dese
  echo 'include_dir /etc/mosquitto/dese' >> /etc/mosquitto/mosquitto.conf   # or copy dese.conf")]
pub(crate) struct Args {
    /// The device registry (TOML)
    #[arg(long, value_name = "FILE")]
    devices: PathBuf,

    /// Where to write passwd, acl and dese.conf (created when missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
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
    hash: String,
    rules: Vec<String>,
    what: String,
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
    let users = users(&registry)
        .map_err(|e| Failure::new(Exit::Failed, format!("{}: {e}", args.devices.display())))?;
    write_files(&args.out, &users)?;
    let devices = registry.device.len();
    println!(
        "wrote {}: {} user(s) ({devices} device(s), {} backend user(s))",
        ["passwd", "acl", "dese.conf"]
            .map(|f| args.out.join(f).display().to_string())
            .join(", "),
        users.len(),
        registry.backend.len()
    );
    Ok(Exit::Ok)
}

fn users(registry: &Registry) -> Result<Vec<User>, String> {
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

fn hash(password: Option<&str>, hash: Option<&str>, what: &str) -> Result<String, String> {
    match (password, hash) {
        (Some(_), Some(_)) => Err(format!("{what}: give password or password_hash, not both")),
        (None, None) => Err(format!("{what}: password or password_hash is missing")),
        (None, Some(hash)) if hash.starts_with("$7$") || hash.starts_with("$6$") => {
            Ok(hash.to_string())
        }
        (None, Some(hash)) => Err(format!(
            "{what}: password_hash {hash:?} is not a Mosquitto hash ($7$... or $6$...)"
        )),
        (Some(""), None) => Err(format!("{what}: the password is empty")),
        (Some(password), None) => mosquitto_hash(password).map_err(|e| format!("{what}: {e}")),
    }
}

/// `$7$101$<salt>$<hash>`: PBKDF2-HMAC-SHA512 with a 12-byte random salt, as
/// `mosquitto_passwd` writes it.
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

fn write_files(dir: &Path, users: &[User]) -> Result<(), Failure> {
    let io = |path: &Path, e: std::io::Error| {
        Failure::new(Exit::Io, format!("cannot write {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut passwd = String::new();
    let mut acl = String::from(
        "# Generated by `dese acl`; edit the registry and run it again instead of this file.\n\
         # Anonymous clients get nothing: there are no rules before the first user.\n",
    );
    for user in users {
        let _ = writeln!(passwd, "{}:{}", user.name, user.hash);
        let _ = writeln!(acl, "\n# {}\nuser {}", user.what, user.name);
        for rule in &user.rules {
            let _ = writeln!(acl, "{rule}");
        }
    }
    let dir_abs = std::path::absolute(dir).map_err(|e| io(dir, e))?;
    let conf = broker_conf(&dir_abs);
    write_atomically(&dir.join("passwd"), &passwd, true).map_err(|e| io(&dir.join("passwd"), e))?;
    write_atomically(&dir.join("acl"), &acl, false).map_err(|e| io(&dir.join("acl"), e))?;
    write_atomically(&dir.join("dese.conf"), &conf, false)
        .map_err(|e| io(&dir.join("dese.conf"), e))?;
    Ok(())
}

/// `dese.conf`: the files, and the broker settings the SDK's delivery promise relies on, each
/// with the reason (docs/backend.md says more).
fn broker_conf(dir: &Path) -> String {
    format!(
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
# database commit, so this bounds its batches (Mosquitto's default is 20).
max_inflight_messages 1000
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
    )
}

/// Writes through a temporary file and a rename, so that a broker reloading meanwhile never
/// reads half a file; `secret` files are readable by their owner only.
fn write_atomically(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(text: &str) -> Result<Vec<User>, String> {
        users(&toml::from_str(text).map_err(|e| e.to_string())?)
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
        assert!(users[0].hash.starts_with("$7$101$"));
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
        let conf = broker_conf(Path::new("/etc/mosquitto/dese"));
        for line in [
            "allow_anonymous false",
            "password_file /etc/mosquitto/dese/passwd",
            "acl_file /etc/mosquitto/dese/acl",
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
            "message_size_limit 262144",
            "set_tcp_nodelay true",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line:?} in:\n{conf}");
        }
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
