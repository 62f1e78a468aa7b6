//! Where and how to connect, the same for every transport.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// The `message_size_limit` the broker configuration of this SDK sets (`dese acl`), and what
/// the operator docs recommend: 256 KiB. The broker refuses larger payloads; smaller ones that
/// are still over the decoder's 16 KiB reach the backend, which refuses and counts them.
pub const BROKER_MESSAGE_SIZE_LIMIT: usize = 256 * 1024;

/// A PUBLISH with a payload of [`BROKER_MESSAGE_SIZE_LIMIT`]: the payload, the topic (at most
/// 65,535 bytes and its 2-byte length), the packet id, and room for the fixed header.
const MAX_INCOMING_PACKET: usize = BROKER_MESSAGE_SIZE_LIMIT + 65_535 + 2 + 2 + 5;

/// How to reach the broker.
///
/// ```
/// use dese_transport::BrokerOptions;
///
/// let options = BrokerOptions::parse("mqtt://127.0.0.1:1884")?;
/// assert_eq!((options.host.as_str(), options.port), ("127.0.0.1", 1884));
/// assert_eq!(BrokerOptions::parse("mqtts://broker.example")?.port, 8883);
/// assert!(BrokerOptions::parse("http://example").is_err());
/// # Ok::<(), dese_transport::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerOptions {
    /// The broker's host.
    pub host: String,
    /// The broker's port.
    pub port: u16,
    /// Username and password, when the broker wants them.
    pub credentials: Option<(String, String)>,
    /// The largest packet sent, where the MQTT client lets it be set (rumqttc: its own default
    /// is 10 KiB). A DESE message is at most 16 KiB (the decoder's limit), so the default here
    /// is 20 KiB.
    pub max_packet_size: usize,
    /// The largest packet received, where the MQTT client lets it be set (rumqttc). Far above
    /// the decoder's 16 KiB on purpose: an oversized message must reach the engine, to be
    /// refused with its reason and acknowledged, never stall the client. The default,
    /// [`BROKER_MESSAGE_SIZE_LIMIT`] plus the largest topic and the headers, takes any message a
    /// broker configured with that `message_size_limit` forwards.
    pub max_incoming_packet_size: usize,
    /// TCP_NODELAY (on by default): without it, small packets wait for Nagle's algorithm and a
    /// command's round trip on loopback grows by tens of milliseconds. The paho C library
    /// always sets it.
    pub tcp_nodelay: bool,
    secure: bool,
    tls: Option<TlsFiles>,
}

/// The password never shows: a `{:?}` of the options in a log must not leak it.
///
/// ```
/// use dese_transport::BrokerOptions;
///
/// let options = BrokerOptions::parse("mqtt://127.0.0.1")?.with_credentials("acme/pool-1", "s3cret");
/// let shown = format!("{options:?}");
/// assert!(shown.contains("acme/pool-1") && !shown.contains("s3cret"));
/// # Ok::<(), dese_transport::Error>(())
/// ```
impl std::fmt::Debug for BrokerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let credentials = self
            .credentials
            .as_ref()
            .map(|(user, _)| (user.as_str(), "<hidden>"));
        f.debug_struct("BrokerOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &credentials)
            .field("max_packet_size", &self.max_packet_size)
            .field("max_incoming_packet_size", &self.max_incoming_packet_size)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("secure", &self.secure)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The PEM files of a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificates trusted to sign the broker's certificate (and only them).
    pub ca: PathBuf,
    /// A client certificate chain and its private key, for brokers that ask for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl BrokerOptions {
    /// Reads `mqtt://host[:port]` (port 1883 by default) or `mqtts://host[:port]` (TLS, port
    /// 8883 by default; give the CA with [`BrokerOptions::with_ca`]). An IPv6 address goes in
    /// brackets, as in any URL: `mqtt://[::1]:1883`.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let fail = |reason| {
            Err(Error::BrokerUrl {
                url: url.to_string(),
                reason,
            })
        };
        let (rest, secure, default_port) = match url.split_once("://") {
            Some(("mqtt", rest)) => (rest, false, 1883),
            Some(("mqtts", rest)) => (rest, true, 8883),
            _ => return fail("expected mqtt://host:port or mqtts://host:port"),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.strip_prefix('[') {
            // An IPv6 literal: `[::1]` or `[::1]:1883`; the host is what the brackets hold.
            Some(bracketed) => match bracketed.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, port)) => match port.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return fail("expected mqtt://[address]:port after an IPv6 address"),
                },
                None => return fail("an IPv6 address's '[' has no ']'"),
            },
            None => match rest.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return fail("an IPv6 address goes in brackets: mqtt://[::1]:1883");
                }
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let port = match port.map(str::parse::<u16>) {
            None => default_port,
            Some(Ok(port)) if port > 0 => port,
            Some(_) => return fail("the port is not a number from 1 to 65535"),
        };
        if host.is_empty() || rest.contains('/') {
            return fail("expected mqtt://host:port or mqtts://host:port");
        }
        if rest.starts_with('[') && host.parse::<std::net::Ipv6Addr>().is_err() {
            return fail("the brackets hold no IPv6 address");
        }
        Ok(Self {
            host: host.to_string(),
            port,
            credentials: None,
            max_packet_size: 20 * 1024,
            max_incoming_packet_size: MAX_INCOMING_PACKET,
            tcp_nodelay: true,
            secure,
            tls: None,
        })
    }

    /// Adds a username and password.
    #[must_use]
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }

    /// Trusts the CA certificates in this PEM file (and only them) for an `mqtts://` broker.
    /// The file must hold at least one PEM certificate. On an `mqtt://` URL it is an error: the
    /// connection would be plaintext, the password sent in clear, while the caller believed
    /// it protected.
    pub fn with_ca(mut self, pem_file: impl AsRef<Path>) -> Result<Self, Error> {
        let path = pem_file.as_ref();
        if !self.secure {
            return Err(Error::tls(format!(
                "a CA ({}) was given for a plaintext mqtt:// broker: use mqtts:// to connect \
                 with TLS",
                path.display()
            )));
        }
        require_pem(path, "CERTIFICATE")?;
        let client = self.tls.take().and_then(|t| t.client);
        self.tls = Some(TlsFiles {
            ca: path.to_path_buf(),
            client,
        });
        Ok(self)
    }

    /// Authenticates with a client certificate (PEM chain and PEM private key); needs
    /// [`BrokerOptions::with_ca`] first (and so `mqtts://`).
    pub fn with_client_cert(
        mut self,
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let Some(tls) = self.tls.as_mut() else {
            let why = if self.secure {
                "give the CA (with_ca) before the client certificate"
            } else {
                "a client certificate was given for a plaintext mqtt:// broker: use mqtts://"
            };
            return Err(Error::tls(why));
        };
        let (cert, key) = (cert_file.as_ref(), key_file.as_ref());
        require_pem(cert, "CERTIFICATE")?;
        require_pem(key, "PRIVATE KEY")?;
        tls.client = Some((cert.to_path_buf(), key.to_path_buf()));
        Ok(self)
    }

    /// Everything at once, as a command line gives it: the URL, then the credentials, the CA
    /// and the client certificate when given (each checked as its own method checks it). An
    /// `mqtts://` URL without a CA is refused here, before any connection.
    pub fn from_parts(
        url: &str,
        credentials: Option<(&str, &str)>,
        ca: Option<&Path>,
        client_cert: Option<(&Path, &Path)>,
    ) -> Result<Self, Error> {
        let mut options = Self::parse(url)?;
        if let Some((username, password)) = credentials {
            options = options.with_credentials(username, password);
        }
        if let Some(ca) = ca {
            options = options.with_ca(ca)?;
        }
        if let Some((cert, key)) = client_cert {
            if !options.secure {
                return Err(Error::tls(format!(
                    "{url}: a client certificate was given for a plaintext broker: use mqtts://"
                )));
            }
            options = options.with_client_cert(cert, key)?;
        }
        if options.secure && options.tls.is_none() {
            return Err(Error::tls(format!(
                "{url} asks for TLS: give the broker's CA certificate"
            )));
        }
        Ok(options)
    }

    /// Whether the URL asked for TLS (`mqtts://`).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The TLS files for an `mqtts://` broker; an error when TLS is asked for without a CA.
    /// `None` for `mqtt://`.
    pub fn tls(&self) -> Result<Option<&TlsFiles>, Error> {
        match (&self.tls, self.secure) {
            (Some(tls), true) => Ok(Some(tls)),
            (None, true) => Err(Error::tls("mqtts:// needs a CA: BrokerOptions::with_ca")),
            (_, false) => Ok(None),
        }
    }

    /// `host:port`, for logs.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Checks that `path` can be read and holds a PEM block whose label ends with `label`.
fn require_pem(path: &Path, label: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::tls(format!("cannot read {}: {e}", path.display())))?;
    let found = text.lines().any(|line| {
        line.strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|name| name.ends_with(label))
    });
    if found {
        Ok(())
    } else {
        Err(Error::tls(format!("no PEM {label} in {}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn urls() {
        for bad in [
            "",
            "mqtt://",
            "mqtt://:1883",
            "tcp://h:1",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://h/x",
            "mqtt://::1:1883",
            "mqtt://[::1",
            "mqtt://[::1]1883",
            "mqtt://[broker]:1883",
            "mqtt://[::1]:0",
        ] {
            let error = BrokerOptions::parse(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
        }
        let options = BrokerOptions::parse("mqtt://broker.local/").unwrap();
        assert_eq!(
            (options.address(), options.is_secure()),
            ("broker.local:1883".into(), false)
        );
        assert!(options.tls().unwrap().is_none());
        for (url, address) in [
            ("mqtt://[::1]:1884", "[::1]:1884"),
            ("mqtts://[fe80::1]", "[fe80::1]:8883"),
        ] {
            let options = BrokerOptions::parse(url).unwrap();
            assert_eq!(options.address(), address, "{url}");
            assert!(
                !options.host.starts_with('['),
                "the host without its brackets"
            );
        }
    }

    #[test]
    fn tls_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("dese-options-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let junk = dir.join("junk.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(&junk, "not a certificate").unwrap();
        let secure = BrokerOptions::parse("mqtts://127.0.0.1").unwrap();
        assert_eq!(secure.tls().unwrap_err().kind(), ErrorKind::Tls);
        assert_eq!(
            secure.clone().with_ca(&junk).unwrap_err().kind(),
            ErrorKind::Tls
        );
        assert_eq!(
            secure
                .clone()
                .with_ca(dir.join("absent"))
                .unwrap_err()
                .kind(),
            ErrorKind::Tls
        );
        let error = secure.clone().with_client_cert(&ca, &ca).unwrap_err();
        assert!(error.to_string().contains("with_ca"), "{error}");
        let with_ca = secure.with_ca(&ca).unwrap();
        assert_eq!(with_ca.tls().unwrap().unwrap().ca, ca);
        let error = with_ca.with_client_cert(&ca, &junk).unwrap_err();
        assert!(error.to_string().contains("PRIVATE KEY"), "{error}");

        // TLS files with a plaintext URL: refused, never a plaintext connection.
        let plain = BrokerOptions::parse("mqtt://127.0.0.1").unwrap();
        let error = plain.clone().with_ca(&ca).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Tls);
        assert!(error.to_string().contains("use mqtts://"), "{error}");
        assert_eq!(
            plain.with_client_cert(&ca, &ca).unwrap_err().kind(),
            ErrorKind::Tls
        );
        for (ca_file, cert) in [
            (Some(ca.as_path()), None),
            (None, Some((ca.as_path(), ca.as_path()))),
        ] {
            let error =
                BrokerOptions::from_parts("mqtt://h", Some(("u", "p")), ca_file, cert).unwrap_err();
            assert!(error.to_string().contains("mqtts://"), "{error}");
        }
        let error = BrokerOptions::from_parts("mqtts://h", None, None, None).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Tls);
        assert!(error.to_string().contains("CA certificate"), "{error}");
        let error = BrokerOptions::from_parts("mqtts://h", None, Some(&junk), None).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Tls);
        let all =
            BrokerOptions::from_parts("mqtts://h", Some(("u", "p")), Some(&ca), None).unwrap();
        assert_eq!(all.credentials, Some(("u".into(), "p".into())));
        assert_eq!(all.tls().unwrap().unwrap().ca, ca);
        let _ = std::fs::remove_dir_all(dir);
    }
}
