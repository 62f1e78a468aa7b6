//! Builds the Eclipse Paho C library (the source that `paho-mqtt-sys` 0.11.0 ships, Paho C
//! 1.3.16) with one fix, and points the linker at it.
//!
//! The fix: when the socket write of a QoS 1 or 2 PUBLISH fails (the broker went away a moment
//! earlier), Paho C frees the command's topic and payload although the in-flight message it has
//! just stored owns the same two buffers; cleaning the session (at the disconnect that follows)
//! frees them again and the process aborts with "free(): double free detected". A broker restart
//! while a device streams telemetry is enough (upstream: eclipse-paho/paho.mqtt.c issues 1621 and
//! 1622, open). The fix hands both buffers to the stored message before the command is freed.
//!
//! A second change makes every TLS connection TLS 1.2 or later: with OpenSSL 1.1 or later, Paho C
//! ignores its `sslVersion` option and takes whatever versions the system's OpenSSL
//! configuration allows.
//!
//! A third makes a silent link noticed 1.5 keepalive periods after the last packet received,
//! as the keepalive promises, instead of about 2.5.
//!
//! `paho-mqtt-sys` is used without its `bundled` feature, so it only asks the linker for
//! `paho-mqtt3as`; this script provides that library. The Paho C source is found next to this
//! package (a registry or `cargo vendor` layout), in cargo's registry, or at
//! `DESE_PAHO_C_SOURCE` (a `paho.mqtt.c` directory of version 1.3.16).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// The package that ships the Paho C source, and the source's version.
const SYS_PACKAGE: &str = "paho-mqtt-sys";
const SYS_VERSION: &str = "0.11.0";
const PAHO_C_VERSION: &str = "1.3.16";

/// A change to the Paho C source: the file, text that must occur exactly once, and the text
/// that goes before it, after it or instead of it.
struct Patch {
    file: &'static str,
    anchor: &'static str,
    text: &'static str,
    place: Place,
}

enum Place {
    Before,
    After,
    Instead,
}

const PATCHES: [Patch; 4] = [
    // The double free (issue 1621).
    Patch {
        file: "src/MQTTAsyncUtils.c",
        anchor: "\t\tfree(p); /* should this be done if the write isn't complete? */\n",
        text: "\t\tif (command->command.details.pub.qos > 0 && rc == SOCKET_ERROR)
\t\t{
\t\t\t/* dese-paho: the in-flight message stored by MQTTProtocol_startPublish owns these
\t\t\t   buffers now; freeing them with the command frees them twice (issue 1621). */
\t\t\tcommand->command.details.pub.payload = NULL;
\t\t\tcommand->command.details.pub.destinationName = NULL;
\t\t}
",
        place: Place::Before,
    },
    // TLS 1.2 at least.
    Patch {
        file: "src/SSLSocket.c",
        anchor: "\t\tnet->ctx = SSL_CTX_new(TLS_client_method());\n",
        text: "\t\t/* dese-paho: TLS 1.2 or later, whatever the system's OpenSSL allows. */
\t\tif (net->ctx != NULL)
\t\t\tSSL_CTX_set_min_proto_version(net->ctx, TLS1_2_VERSION);
",
        place: Place::After,
    },
    // A silent link noticed 1.5 keepalive periods after the last packet received: a ping is
    // due when nothing was received for a keepalive period (not only when nothing was sent),
    // and the link is closed when, with that ping outstanding, nothing was received for 1.5.
    // Paho C pinged only after a period without sending and waited 1.5 periods from the ping:
    // a device streaming readings into a dead link noticed after about 2.5 periods.
    Patch {
        file: "src/MQTTProtocolClient.c",
        anchor: "\t\t\tif (MQTTTime_difftime(now, client->net.lastPing) >= (DIFF_TIME_TYPE)(client->keepAliveInterval * 1500) &&
\t\t\t\t/* if last received is more recent, we could be receiving a large packet */
\t\t\t\tMQTTTime_difftime(now, client->net.lastReceived) >= (DIFF_TIME_TYPE)(client->keepAliveInterval * 1500))
",
        text: "\t\t\t/* dese-paho: nothing received for 1.5 keepalive periods with a ping outstanding. */
\t\t\tif (MQTTTime_difftime(now, client->net.lastReceived) >= (DIFF_TIME_TYPE)(client->keepAliveInterval * 1500))
",
        place: Place::Instead,
    },
    Patch {
        file: "src/MQTTProtocolClient.c",
        anchor: "\t\telse if (MQTTTime_difftime(now, client->net.lastSent) >= (DIFF_TIME_TYPE)(client->keepAliveInterval * 1000))
",
        text: "\t\telse if (MQTTTime_difftime(now, client->net.lastSent) >= (DIFF_TIME_TYPE)(client->keepAliveInterval * 1000) ||
\t\t\t/* dese-paho: also after a keepalive period without receiving anything. */
\t\t\tMQTTTime_difftime(now, client->net.lastReceived) >= (DIFF_TIME_TYPE)(client->keepAliveInterval * 1000))
",
        place: Place::Instead,
    },
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DESE_PAHO_C_SOURCE");
    if let Err(problem) = build() {
        panic!("dese-paho: {problem}");
    }
}

fn build() -> Result<(), String> {
    let source = locate()?;
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let tree = out.join("paho.mqtt.c");
    if tree.exists() {
        fs::remove_dir_all(&tree).map_err(|e| format!("{}: {e}", tree.display()))?;
    }
    copy_tree(&source, &tree)?;
    for change in &PATCHES {
        patch(&tree, change)?;
    }

    let mut config = cmake::Config::new(&tree);
    config
        .define("CMAKE_C_STANDARD", "99")
        .define("PAHO_BUILD_SHARED", "off")
        .define("PAHO_BUILD_STATIC", "on")
        .define("PAHO_BUILD_DOCUMENTATION", "off")
        .define("PAHO_BUILD_SAMPLES", "off")
        .define("PAHO_ENABLE_TESTING", "off")
        .define("PAHO_HIGH_PERFORMANCE", "on")
        .define("PAHO_WITH_SSL", "on")
        .define("PAHO_WITH_UNIX_SOCKETS", "on");
    // openssl-sys knows where OpenSSL is (a vendored build, or OPENSSL_DIR); tell cmake too.
    if let Some(root) = env::var_os("DEP_OPENSSL_INCLUDE")
        .as_deref()
        .and_then(|include| Path::new(include).parent())
    {
        config.define("OPENSSL_ROOT_DIR", root);
    }
    let installed = config.build();
    let library = ["lib", "lib64"]
        .iter()
        .map(|dir| installed.join(dir))
        .find(|dir| dir.join("libpaho-mqtt3as.a").exists())
        .ok_or_else(|| {
            format!(
                "cmake built Paho C in {} but libpaho-mqtt3as.a is not there",
                installed.display()
            )
        })?;
    println!("cargo:rustc-link-search=native={}", library.display());
    Ok(())
}

/// The `paho.mqtt.c` directory of `paho-mqtt-sys` 0.11.0.
fn locate() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("DESE_PAHO_C_SOURCE") {
        let dir = PathBuf::from(dir);
        return if is_paho_c(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "DESE_PAHO_C_SOURCE={} is not a Paho C {PAHO_C_VERSION} source directory",
                dir.display()
            ))
        };
    }
    let mut tried = Vec::new();
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    if let Some(parent) = manifest.parent() {
        // A registry or a `cargo vendor` directory holds both packages side by side.
        tried.push(parent.join(format!("{SYS_PACKAGE}-{SYS_VERSION}")));
        tried.push(parent.join(SYS_PACKAGE));
    }
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    if let Some(registries) = cargo_home.map(|home| home.join("registry").join("src")) {
        if let Ok(entries) = fs::read_dir(&registries) {
            for entry in entries.flatten() {
                tried.push(entry.path().join(format!("{SYS_PACKAGE}-{SYS_VERSION}")));
            }
        }
    }
    tried
        .iter()
        .map(|package| package.join("paho.mqtt.c"))
        .find(|dir| is_paho_c(dir))
        .ok_or_else(|| {
            let places: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
            format!(
                "the Paho C source of {SYS_PACKAGE} {SYS_VERSION} was not found (looked in: {}); \
                 set DESE_PAHO_C_SOURCE to its paho.mqtt.c directory",
                places.join(", ")
            )
        })
}

/// Whether `dir` is the Paho C source of the expected version.
fn is_paho_c(dir: &Path) -> bool {
    let part = |name: &str| {
        fs::read_to_string(dir.join(name))
            .map(|text| text.trim().to_string())
            .unwrap_or_default()
    };
    let version = format!(
        "{}.{}.{}",
        part("version.major"),
        part("version.minor"),
        part("version.patch")
    );
    version == PAHO_C_VERSION && PATCHES.iter().all(|change| dir.join(change.file).is_file())
}

/// Applies a change. The anchor must occur exactly once, so a different source fails the
/// build instead of building without the change.
fn patch(tree: &Path, change: &Patch) -> Result<(), String> {
    let file = tree.join(change.file);
    let text = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    if text.matches(change.anchor).count() != 1 {
        return Err(format!(
            "{}: the line a change goes beside is not there exactly once; this Paho C is not \
             the expected {PAHO_C_VERSION}",
            file.display()
        ));
    }
    let changed = match change.place {
        Place::Before => format!("{}{}", change.text, change.anchor),
        Place::After => format!("{}{}", change.anchor, change.text),
        Place::Instead => change.text.to_string(),
    };
    let fixed = text.replacen(change.anchor, &changed, 1);
    fs::write(&file, fixed).map_err(|e| format!("{}: {e}", file.display()))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}
