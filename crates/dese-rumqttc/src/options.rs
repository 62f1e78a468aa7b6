//! Where and how to connect.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// How to reach the broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The broker's host.
    pub host: String,
    /// The broker's port.
    pub port: u16,
    /// Username and password, when the broker wants them.
    pub credentials: Option<(String, String)>,
    /// The largest packet sent or received. rumqttc's own default is 10 KiB; a DESE message is
    /// at most 16 KiB (the decoder's limit), so the default here is 20 KiB.
    pub max_packet_size: usize,
    /// TCP_NODELAY (on by default): without it, small packets wait for Nagle's algorithm and a
    /// command's round trip on loopback grows by tens of milliseconds (`benches/round_trip.rs`
    /// measures both).
    pub tcp_nodelay: bool,
    secure: bool,
    tls: Option<Tls>,
}

#[derive(Debug, Clone)]
struct Tls {
    roots: Vec<CertificateDer<'static>>,
    client: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    config: Arc<ClientConfig>,
}

impl BrokerOptions {
    /// Reads `mqtt://host[:port]` (port 1883 by default) or `mqtts://host[:port]` (TLS, port
    /// 8883 by default; give the CA with [`BrokerOptions::with_ca`]).
    ///
    /// ```
    /// use dese_rumqttc::BrokerOptions;
    ///
    /// let options = BrokerOptions::parse("mqtt://127.0.0.1:1884")?;
    /// assert_eq!((options.host.as_str(), options.port), ("127.0.0.1", 1884));
    /// assert_eq!(BrokerOptions::parse("mqtts://broker.example")?.port, 8883);
    /// assert!(BrokerOptions::parse("http://example").is_err());
    /// # Ok::<(), dese_rumqttc::Error>(())
    /// ```
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
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => match port.parse() {
                Ok(port) => (host, port),
                Err(_) => return fail("the port is not a number from 1 to 65535"),
            },
            None => (rest, default_port),
        };
        if host.is_empty() || rest.contains('/') {
            return fail("expected mqtt://host:port or mqtts://host:port");
        }
        Ok(Self {
            host: host.to_string(),
            port,
            credentials: None,
            max_packet_size: 20 * 1024,
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
    pub fn with_ca(mut self, pem_file: impl AsRef<Path>) -> Result<Self, Error> {
        let path = pem_file.as_ref();
        let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::tls(format!("cannot read the CA file {}: {e}", path.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| Error::tls(format!("cannot read the CA file {}: {e}", path.display())))?;
        if roots.is_empty() {
            return Err(Error::tls(format!(
                "no certificate in the CA file {}",
                path.display()
            )));
        }
        let client = self.tls.take().and_then(|t| t.client);
        self.tls = Some(Tls::build(roots, client)?);
        Ok(self)
    }

    /// Authenticates with a client certificate (PEM chain and PEM private key); needs
    /// [`BrokerOptions::with_ca`] first.
    pub fn with_client_cert(
        mut self,
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let Some(tls) = self.tls.take() else {
            return Err(Error::tls(
                "give the CA (with_ca) before the client certificate".into(),
            ));
        };
        let (cert, key) = (cert_file.as_ref(), key_file.as_ref());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| Error::tls(format!("cannot read {}: {e}", cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| Error::tls(format!("cannot read {}: {e}", cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::tls(format!("cannot read {}: {e}", key.display())))?;
        self.tls = Some(Tls::build(tls.roots, Some((chain, Arc::new(key))))?);
        Ok(self)
    }

    /// The rustls configuration, for `mqtts://`; an error when TLS is asked for without a CA.
    pub(crate) fn tls_config(&self) -> Result<Option<Arc<ClientConfig>>, Error> {
        match (&self.tls, self.secure) {
            (Some(tls), true) => Ok(Some(tls.config.clone())),
            (None, true) => Err(Error::tls(
                "mqtts:// needs a CA: BrokerOptions::with_ca".into(),
            )),
            (_, false) => Ok(None),
        }
    }
}

impl Tls {
    fn build(
        roots: Vec<CertificateDer<'static>>,
        client: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    ) -> Result<Self, Error> {
        let mut store = rustls::RootCertStore::empty();
        for root in &roots {
            store
                .add(root.clone())
                .map_err(|e| Error::tls(format!("unusable CA certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::tls(e.to_string()))?
            .with_root_certificates(store);
        let config = match &client {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| Error::tls(format!("unusable client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            roots,
            client,
            config: Arc::new(config),
        })
    }
}
