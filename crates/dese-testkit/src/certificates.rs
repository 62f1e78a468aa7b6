//! Certificates of a test's own: a CA and what it signs, for TLS listeners and clients.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

/// A CA, and a server certificate it signed for 127.0.0.1 and localhost; writes
/// `{name}-ca.pem`, `{name}-server.pem`, `{name}-server.key` into `dir` and returns their paths.
pub fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca = TestCa::new(dir, name);
    let (cert, key) = ca.server(&format!("{name}-server"), &["localhost"], true, false);
    (ca.path.clone(), cert, key)
}

/// A certificate authority of a test's own, writing what it signs as PEM files into `dir`.
pub struct TestCa {
    dir: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
    /// PEM of this signer's certificate and of those between it and the root, appended to what
    /// it signs (empty for a root): the chain a server sends.
    chain: String,
    /// `{name}-ca.pem`: the CA's certificate.
    pub path: PathBuf,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/{name}-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("rcgen: making a test certificate");
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("rcgen: making a test certificate");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("DESE test CA {name}"));
        let cert = params
            .self_signed(&key)
            .expect("rcgen: making a test certificate");
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).expect("writing a test certificate");
        Self {
            dir: dir.to_path_buf(),
            cert,
            key,
            chain: String::new(),
            path,
        }
    }

    /// A certificate this CA signs that signs others in turn, written to `dir/{name}-ca.pem`:
    /// an intermediate CA when `ca`; when not, a certificate without the right to sign (basic
    /// constraints `cA: FALSE`), whose signatures a verifier must refuse. What it signs is
    /// written with the chain up to the root, as a server sends it.
    pub fn signer(&self, name: &str, ca: bool) -> Self {
        let key = KeyPair::generate().expect("rcgen: making a test certificate");
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("rcgen: making a test certificate");
        params.is_ca = if ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params
            .distinguished_name
            .push(DnType::CommonName, format!("DESE test signer {name}"));
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("rcgen: making a test certificate");
        let path = self.dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).expect("writing a test certificate");
        let chain = format!("{}{}", cert.pem(), self.chain);
        Self {
            dir: self.dir.clone(),
            cert,
            key,
            chain,
            path,
        }
    }

    /// The CA's certificate in DER, for a client that takes it so (embedded-tls).
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// A server certificate for `hosts` (and 127.0.0.1 when `loopback`), expired a year ago
    /// when `expired`; returns the certificate's and the key's paths, `{file}.pem`, `{file}.key`.
    pub fn server(
        &self,
        file: &str,
        hosts: &[&str],
        loopback: bool,
        expired: bool,
    ) -> (PathBuf, PathBuf) {
        let names: Vec<String> = hosts.iter().map(|h| (*h).to_string()).collect();
        let mut params = CertificateParams::new(names).expect("rcgen: making a test certificate");
        if loopback {
            params.subject_alt_names.push(SanType::IpAddress(
                "127.0.0.1"
                    .parse()
                    .expect("rcgen: making a test certificate"),
            ));
        }
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.sign(file, params)
    }

    /// A client certificate whose common name is `identity` (what Mosquitto's
    /// `use_identity_as_username` takes as the username).
    pub fn client(&self, file: &str, identity: &str) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("rcgen: making a test certificate");
        params
            .distinguished_name
            .push(DnType::CommonName, identity.to_string());
        self.sign(file, params)
    }

    fn sign(&self, file: &str, params: CertificateParams) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("rcgen: making a test certificate");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("rcgen: making a test certificate");
        let paths = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&paths.0, format!("{}{}", cert.pem(), self.chain))
            .expect("writing a test certificate");
        std::fs::write(&paths.1, key.serialize_pem()).expect("writing a test key");
        paths
    }
}
