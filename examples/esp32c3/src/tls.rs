//! MQTT over TLS 1.3: [embedded-tls](https://crates.io/crates/embedded-tls) between the loop
//! and any [`Network`], with the broker's certificate checked against one CA fixed at build
//! time, and its name against the broker's host name.
//!
//! What is checked, on every connection: the broker's certificate chain up to the CA (each
//! certificate's signature by the next, ECDSA P-256 with SHA-256), the broker's proof that it
//! holds the certificate's key, the host name against the certificate's DNS names (its subject
//! alternative names and its common name; `*.` wildcards), and, once the wall clock is set by
//! SNTP, each certificate's validity dates; and, read by this firmware since embedded-tls does
//! not ([`crate::x509`]), that every certificate that signs another in the chain is a CA whose
//! key usage allows it. What is not checked, and this firmware therefore cannot promise
//! (docs/firmware.md says the same): path length constraints, IP addresses in the certificate
//! (name the broker by a DNS name), revocation, and RSA or P-384 certificates (the broker needs
//! an ECDSA P-256 certificate). Only TLS 1.3 with
//! TLS_AES_128_GCM_SHA256 and the P-256 key exchange is spoken.
//!
//! embedded-tls's `read` is not cancel safe (a record half read is lost), and the loop cancels
//! reads whenever a timer fires; [`WholeRecords`] below it hands it only records that have
//! arrived whole, so that its read either completes at once or waits before taking anything.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use dese_protocol::Timestamp;
use embedded_io_async::{ErrorType, Read, Write};
use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CertificateEntryRef, CertificateRef, CertificateVerifyRef,
    CryptoProvider, CryptoRngCore, TlsCipherSuite, TlsClock, TlsConfig, TlsConnection, TlsContext,
    TlsError, TlsVerifier,
};

use crate::client::Network;

/// The largest TLS record a broker may send: 16 KiB of data and its overhead.
pub const READ_BUFFER: usize = 16_640;
/// The records the device writes (its packets are far smaller; a larger write is split).
pub const WRITE_BUFFER: usize = 4096;
/// Room for the broker's certificate chain, kept until its signature is checked.
const CHAIN: usize = 4096;
/// A TLS record's header: type, version, length.
const RECORD_HEADER: usize = 5;
/// The largest record [`WholeRecords`] holds: header and [`READ_BUFFER`].
pub const RECORD_BUFFER: usize = RECORD_HEADER + READ_BUFFER;
/// The longest broker name embedded-tls checks a certificate against.
pub const SERVER_NAME_MAX: usize = 64;

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
#[non_exhaustive]
pub enum TlsConnectError<E> {
    /// The network below: DNS, TCP.
    Network(E),
    /// The handshake failed: most often a certificate the CA did not sign
    /// (`InvalidCertificate`, `InvalidSignature`), a name that does not match or a certificate
    /// out of its validity dates (`InvalidCertificate`), or a broker that does not speak
    /// TLS 1.3.
    Handshake(TlsError),
    /// The broker's name is longer than embedded-tls checks ([`SERVER_NAME_MAX`] bytes).
    NameTooLong,
}

impl<E: fmt::Debug> fmt::Display for TlsConnectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network(error) => write!(f, "{error:?}"),
            Self::Handshake(error) => write!(f, "TLS handshake failed: {error:?}"),
            Self::NameTooLong => write!(
                f,
                "the broker's name is longer than {SERVER_NAME_MAX} bytes, which TLS cannot check"
            ),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for TlsConnectError<E> {}

/// Below TLS: hands the reader only TLS records that have arrived whole (and the bytes behind a
/// record whose length is beyond the buffer, for TLS to refuse). Its `read` keeps what it has
/// received in itself, not in the future, so cancelling it loses nothing; and a TLS read above
/// it never waits half way through a record.
pub struct WholeRecords<'b, T> {
    inner: T,
    buf: &'b mut [u8],
    start: usize,
    end: usize,
    /// Bytes from `start` that belong to records received whole.
    ready: usize,
}

impl<'b, T> WholeRecords<'b, T> {
    /// Records from `inner`, held in `buf` ([`RECORD_BUFFER`] bytes hold the largest).
    pub fn new(inner: T, buf: &'b mut [u8]) -> Self {
        Self {
            inner,
            buf,
            start: 0,
            end: 0,
            ready: 0,
        }
    }

    /// How many bytes from `start` are whole records, or a record too long for the buffer.
    fn whole(&self) -> usize {
        let held = &self.buf[self.start..self.end];
        let Some(header) = held.get(..RECORD_HEADER) else {
            return 0;
        };
        let record = RECORD_HEADER + usize::from(u16::from_be_bytes([header[3], header[4]]));
        if record <= held.len() {
            record
        } else if record > self.buf.len() {
            held.len()
        } else {
            0
        }
    }
}

impl<T: ErrorType> ErrorType for WholeRecords<'_, T> {
    type Error = T::Error;
}

impl<T: Read> Read for WholeRecords<'_, T> {
    async fn read(&mut self, out: &mut [u8]) -> Result<usize, T::Error> {
        loop {
            if self.ready == 0 {
                self.ready = self.whole();
            }
            if self.ready > 0 {
                let n = out.len().min(self.ready);
                out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                self.ready -= n;
                if self.start == self.end {
                    (self.start, self.end) = (0, 0);
                }
                return Ok(n);
            }
            if self.end == self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            let n = self.inner.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Ok(0);
            }
            self.end += n;
        }
    }
}

impl<T: Write> Write for WholeRecords<'_, T> {
    async fn write(&mut self, data: &[u8]) -> Result<usize, T::Error> {
        self.inner.write(data).await
    }

    async fn flush(&mut self) -> Result<(), T::Error> {
        self.inner.flush().await
    }
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
    records: Vec<u8>,
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
    /// checked). Takes 36.5 KiB of heap for the record buffers (16.25 KiB to decrypt, 16.25 KiB
    /// to hold a record until it has arrived whole, 4 KiB to write).
    pub fn new(inner: N, ca: &'c [u8], server_name: &'c str, rng: R, wall: T) -> Self {
        Self {
            inner,
            ca,
            server_name,
            rng,
            wall,
            read: vec![0; READ_BUFFER],
            write: vec![0; WRITE_BUFFER],
            records: vec![0; RECORD_BUFFER],
        }
    }
}

/// What embedded-tls asks of its caller: randomness, and the certificate check.
struct Provider<'p, R> {
    rng: &'p mut R,
    verifier: SignersAreCas<CertVerifier<'p, Aes128GcmSha256, WallTime, CHAIN>>,
}

/// embedded-tls's check of the chain, after this firmware's own: every certificate of the chain
/// but the broker's signs the one before it, so each must be a CA allowed to sign certificates
/// ([`crate::x509::may_sign_certificates`]).
struct SignersAreCas<V>(V);

impl<V: TlsVerifier<Aes128GcmSha256>> TlsVerifier<Aes128GcmSha256> for SignersAreCas<V> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        self.0.set_hostname_verification(hostname)
    }

    fn verify_certificate(
        &mut self,
        transcript: &<Aes128GcmSha256 as TlsCipherSuite>::Hash,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        for signer in cert.entries.iter().skip(1) {
            let CertificateEntryRef::X509(der) = signer else {
                return Err(TlsError::InvalidCertificate);
            };
            crate::x509::may_sign_certificates(der).map_err(|_| TlsError::InvalidCertificate)?;
        }
        self.0.verify_certificate(transcript, cert)
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        self.0.verify_signature(verify)
    }
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
        = TlsConnection<'a, WholeRecords<'a, N::Connection<'a>>, Aes128GcmSha256>
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
            records,
        } = self;
        if server_name.len() > SERVER_NAME_MAX {
            return Err(TlsConnectError::NameTooLong);
        }
        let tcp = inner.connect().await.map_err(TlsConnectError::Network)?;
        // Read after connecting: the network may have set the clock (SNTP) on the way.
        let seconds = wall()
            .and_then(|utc| u32::try_from(utc.unix_seconds()).ok())
            .unwrap_or(0);
        UNIX_SECONDS.store(seconds, Ordering::Relaxed);
        let tcp = WholeRecords::new(tcp, records.as_mut_slice());
        let mut tls = TlsConnection::new(tcp, read.as_mut_slice(), write.as_mut_slice());
        let config = TlsConfig::new().with_server_name(server_name);
        let provider = Provider {
            rng,
            verifier: SignersAreCas(CertVerifier::new(Certificate::X509(*ca))),
        };
        tls.open(TlsContext::new(&config, provider))
            .await
            .map_err(TlsConnectError::Handshake)?;
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};

    /// A reader that hands out its chunks one per read, and waits (forever) where a chunk is
    /// `None`, until the test takes the wait away.
    struct Chunks(VecDeque<Option<Vec<u8>>>);

    impl ErrorType for Chunks {
        type Error = core::convert::Infallible;
    }

    impl Read for Chunks {
        async fn read(&mut self, out: &mut [u8]) -> Result<usize, Self::Error> {
            match self.0.front() {
                Some(None) => core::future::pending().await,
                Some(Some(_)) => {
                    let Some(Some(chunk)) = self.0.pop_front() else {
                        unreachable!()
                    };
                    out[..chunk.len()].copy_from_slice(&chunk);
                    Ok(chunk.len())
                }
                None => Ok(0),
            }
        }
    }

    fn record(body: &[u8]) -> Vec<u8> {
        let mut r = vec![23, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        let mut future = pin!(future);
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    // A read cancelled while a record is half there loses nothing: the next read starts with
    // the record's header.
    #[test]
    fn a_cancelled_read_loses_no_byte_of_a_half_received_record() {
        let whole = record(b"hello, broker");
        let (first, rest) = whole.split_at(7);
        let mut chunks = Chunks(VecDeque::from([Some(first.to_vec()), None]));
        let mut buf = [0u8; RECORD_BUFFER];
        let mut records = WholeRecords::new(&mut chunks, &mut buf);
        let mut out = [0u8; RECORD_HEADER];
        assert!(
            poll_once(records.read(&mut out)).is_pending(),
            "half a record"
        );
        // The timer fired, the read was dropped; the rest arrives.
        records.inner.0 = VecDeque::from([Some(rest.to_vec())]);
        let n = embassy_futures::block_on(records.read(&mut out)).unwrap();
        assert_eq!(&out[..n], &whole[..RECORD_HEADER]);
        let mut body = [0u8; 64];
        let n = embassy_futures::block_on(records.read(&mut body)).unwrap();
        assert_eq!(&body[..n], b"hello, broker");
    }

    #[test]
    fn records_are_handed_out_one_at_a_time_and_only_whole() {
        let (a, b) = (record(b"one"), record(b"second record"));
        let mut stream = a.clone();
        stream.extend_from_slice(&b[..4]);
        let mut chunks = Chunks(VecDeque::from([Some(stream), Some(b[4..].to_vec())]));
        let mut buf = [0u8; RECORD_BUFFER];
        let mut records = WholeRecords::new(&mut chunks, &mut buf);
        let mut out = [0u8; 64];
        let n = embassy_futures::block_on(records.read(&mut out)).unwrap();
        assert_eq!(
            &out[..n],
            a.as_slice(),
            "the first record, not the start of the second"
        );
        let n = embassy_futures::block_on(records.read(&mut out)).unwrap();
        assert_eq!(&out[..n], b.as_slice());
        assert_eq!(
            embassy_futures::block_on(records.read(&mut out)).unwrap(),
            0,
            "end"
        );
    }
}
