//! MQTT over TLS 1.3: [embedded-tls](https://crates.io/crates/embedded-tls) between the loop
//! and any [`Network`], with the broker's certificate checked against one CA fixed at build
//! time, and its name against the broker's host name.
//!
//! What is checked, on every connection: the broker's certificate chain up to the CA (each
//! certificate's signature by the next, ECDSA P-256 with SHA-256), the broker's proof that it
//! holds the certificate's key, the host name against the certificate's DNS names (its subject
//! alternative names, else its common name; `*.` wildcards), and, once the wall clock is set by
//! SNTP, each certificate's validity dates. What embedded-tls does not check, and this firmware
//! therefore cannot promise (docs/firmware.md says the same): the intermediate certificates'
//! basic constraints and key usage (a leaf certificate of the CA's could sign another), IP
//! addresses in the certificate (name the broker by a DNS name), revocation, and RSA or P-384
//! certificates (the broker needs an ECDSA P-256 certificate). Only TLS 1.3 with
//! TLS_AES_128_GCM_SHA256 and the P-256 key exchange is spoken.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use dese_protocol::Timestamp;
use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CryptoProvider, CryptoRngCore, TlsClock, TlsConfig,
    TlsConnection, TlsContext, TlsError, TlsVerifier,
};

use crate::client::Network;

/// The largest TLS record a broker may send: 16 KiB of data and its overhead.
pub const READ_BUFFER: usize = 16_640;
/// The records the device writes (its packets are far smaller; a larger write is split).
pub const WRITE_BUFFER: usize = 4096;
/// Room for the broker's certificate chain, kept until its signature is checked.
const CHAIN: usize = 4096;

/// The wall clock in seconds since 1970 (0: not known), as embedded-tls asks for it: through a
/// function without a receiver, so [`Tls::connect`](Network::connect) stores it here before
/// each handshake. One wall clock per program.
static UNIX_SECONDS: AtomicU32 = AtomicU32::new(0);

struct WallTime;

impl TlsClock for WallTime {
    fn now() -> Option<u64> {
        match UNIX_SECONDS.load(Ordering::Relaxed) {
            0 => None,
            seconds => Some(u64::from(seconds)),
        }
    }
}

/// Why a TLS connection could not be opened.
#[derive(Debug)]
pub enum TlsConnectError<E> {
    /// The network below: DNS, TCP.
    Network(E),
    /// The handshake failed: most often a certificate the CA did not sign
    /// (`InvalidCertificate`, `InvalidSignature`), a name that does not match
    /// (`InvalidCertificate`), or a broker that does not speak TLS 1.3.
    Handshake(TlsError),
}

/// A [`Network`] whose connections are TLS 1.3 over those of `N`.
pub struct Tls<'c, N, R, T> {
    inner: N,
    ca: &'c [u8],
    server_name: &'c str,
    rng: R,
    wall: T,
    read: Vec<u8>,
    write: Vec<u8>,
}

impl<N: fmt::Debug, R, T> fmt::Debug for Tls<'_, N, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("inner", &self.inner)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl<'c, N, R, T> Tls<'c, N, R, T>
where
    N: Network,
    R: CryptoRngCore,
    T: FnMut() -> Option<Timestamp>,
{
    /// TLS over `inner` to the broker `server_name` (its DNS name, as its certificate names it),
    /// trusting the CA certificate `ca` (DER) and nothing else. `rng` must be a cryptographic
    /// random source (on the ESP32-C3, the hardware RNG while the radio runs); `wall` gives the
    /// UTC time once it is known (`None` before SNTP answers: the validity dates are then not
    /// checked). Takes 16.25 KiB + 4 KiB of heap for the record buffers.
    pub fn new(inner: N, ca: &'c [u8], server_name: &'c str, rng: R, wall: T) -> Self {
        Self {
            inner,
            ca,
            server_name,
            rng,
            wall,
            read: vec![0; READ_BUFFER],
            write: vec![0; WRITE_BUFFER],
        }
    }
}

/// What embedded-tls asks of its caller: randomness, and the certificate check.
struct Provider<'p, R> {
    rng: &'p mut R,
    verifier: CertVerifier<'p, Aes128GcmSha256, WallTime, CHAIN>,
}

impl<R: CryptoRngCore> CryptoProvider for Provider<'_, R> {
    type CipherSuite = Aes128GcmSha256;
    // No client certificate: the device authenticates with its MQTT user and password.
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut self.verifier)
    }
}

impl<N, R, T> Network for Tls<'_, N, R, T>
where
    N: Network,
    R: CryptoRngCore,
    T: FnMut() -> Option<Timestamp>,
{
    type Connection<'a>
        = TlsConnection<'a, N::Connection<'a>, Aes128GcmSha256>
    where
        Self: 'a;
    type Error = TlsConnectError<N::Error>;

    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error> {
        let Self {
            inner,
            ca,
            server_name,
            rng,
            wall,
            read,
            write,
        } = self;
        let seconds = wall()
            .and_then(|utc| u32::try_from(utc.unix_seconds()).ok())
            .unwrap_or(0);
        UNIX_SECONDS.store(seconds, Ordering::Relaxed);
        let tcp = inner.connect().await.map_err(TlsConnectError::Network)?;
        let mut tls = TlsConnection::new(tcp, read.as_mut_slice(), write.as_mut_slice());
        let config = TlsConfig::new().with_server_name(server_name);
        let provider = Provider {
            rng,
            verifier: CertVerifier::new(Certificate::X509(*ca)),
        };
        tls.open(TlsContext::new(&config, provider))
            .await
            .map_err(TlsConnectError::Handshake)?;
        Ok(tls)
    }
}
