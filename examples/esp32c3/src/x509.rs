//! What embedded-tls does not read in a certificate, read here: whether it may sign other
//! certificates.
//!
//! A broker's chain is its own certificate, then each certificate that signed the one before it.
//! embedded-tls checks every signature up to the CA, but not whether each signer was allowed to
//! sign: without that check, any certificate the CA issued (a device's, another server's) could
//! sign a certificate for the broker's name. [`may_sign_certificates`] applies RFC 5280's two
//! rules to a signer: its basic constraints say it is a CA, and its key usage, when it states
//! one, includes signing certificates. It reads DER with bounds checks only, and never panics
//! on malformed input.

use core::fmt;

/// Why a certificate may not sign other certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerError {
    /// Not a DER certificate this reader can walk, or one that repeats one of the two
    /// extensions it reads.
    Malformed,
    /// No basic constraints extension, or one that does not say `cA: TRUE`.
    NotCa,
    /// A key usage extension without `keyCertSign`.
    NoCertificateSigning,
}

impl fmt::Display for SignerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "a certificate of the chain is not DER this firmware can read",
            Self::NotCa => "a certificate of the chain signs another but is not a CA",
            Self::NoCertificateSigning => {
                "a certificate of the chain signs another but its key usage does not allow it"
            }
        })
    }
}

/// DER tags this reader meets.
const SEQUENCE: u8 = 0x30;
const BOOLEAN: u8 = 0x01;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
/// `[3] EXPLICIT`: the extensions of a TBSCertificate.
const EXTENSIONS: u8 = 0xa3;

/// id-ce-basicConstraints (2.5.29.19) and id-ce-keyUsage (2.5.29.15), as DER encodes them.
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// keyCertSign is bit 5 of KeyUsage, counted from the first byte's most significant bit.
const KEY_CERT_SIGN: u8 = 0x80 >> 5;

/// Whether the certificate `der` may sign other certificates: a CA by its basic constraints,
/// and with `keyCertSign` in its key usage when it has one.
pub fn may_sign_certificates(der: &[u8]) -> Result<(), SignerError> {
    // Each at most once (RFC 5280 forbids a repeated extension): with two, a reader that takes
    // the first and one that takes the last would judge the same certificate differently.
    let mut ca = None;
    let mut key_usage_allows = None;
    let mut extensions = extensions(der)?;
    while let Some((id, value)) = extensions.next()? {
        let (seen, judged) = if id == BASIC_CONSTRAINTS {
            (&mut ca, basic_constraints_say_ca(value)?)
        } else if id == KEY_USAGE {
            (&mut key_usage_allows, key_usage_has_cert_sign(value)?)
        } else {
            continue;
        };
        if seen.replace(judged).is_some() {
            return Err(SignerError::Malformed);
        }
    }
    if ca != Some(true) {
        Err(SignerError::NotCa)
    } else if key_usage_allows == Some(false) {
        Err(SignerError::NoCertificateSigning)
    } else {
        Ok(())
    }
}

/// The certificate's extensions, as (OID, value) pairs; none for a certificate without any.
fn extensions(der: &[u8]) -> Result<Extensions<'_>, SignerError> {
    let certificate = Der(der).expect(SEQUENCE)?;
    let mut tbs = Der(Der(certificate).expect(SEQUENCE)?);
    // version, serial, signature, issuer, validity, subject, key, and the optional unique ids:
    // the extensions, when present, come last.
    while let Some((tag, value)) = tbs.next()? {
        if tag == EXTENSIONS {
            return Ok(Extensions(Der(Der(value).expect(SEQUENCE)?)));
        }
    }
    Ok(Extensions(Der(&[])))
}

/// The extensions of a certificate, one by one.
struct Extensions<'a>(Der<'a>);

/// An extension's OID and the content of its `extnValue`.
type Extension<'a> = (&'a [u8], &'a [u8]);

impl<'a> Extensions<'a> {
    /// The next extension's OID and the content of its `extnValue`; `None` after the last.
    fn next(&mut self) -> Result<Option<Extension<'a>>, SignerError> {
        let Some((tag, extension)) = self.0.next()? else {
            return Ok(None);
        };
        if tag != SEQUENCE {
            return Err(SignerError::Malformed);
        }
        let mut fields = Der(extension);
        let id = fields.expect(OID)?;
        let (mut tag, mut value) = fields.next()?.ok_or(SignerError::Malformed)?;
        if tag == BOOLEAN {
            // `critical`: the two extensions read here are read whatever it says.
            (tag, value) = fields.next()?.ok_or(SignerError::Malformed)?;
        }
        if tag != OCTET_STRING {
            return Err(SignerError::Malformed);
        }
        Ok(Some((id, value)))
    }
}

/// `BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }`.
fn basic_constraints_say_ca(value: &[u8]) -> Result<bool, SignerError> {
    let mut fields = Der(Der(value).expect(SEQUENCE)?);
    Ok(match fields.next()? {
        Some((BOOLEAN, flag)) => flag.first().is_some_and(|b| *b != 0),
        _ => false,
    })
}

/// `KeyUsage ::= BIT STRING`: the first byte counts the unused bits, the bits follow.
fn key_usage_has_cert_sign(value: &[u8]) -> Result<bool, SignerError> {
    let bits = Der(value).expect(BIT_STRING)?;
    Ok(bits.get(1).is_some_and(|first| first & KEY_CERT_SIGN != 0))
}

/// DER still to read.
#[derive(Clone, Copy)]
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next element's tag and content; `None` at the end.
    fn next(&mut self) -> Result<Option<(u8, &'a [u8])>, SignerError> {
        let Some((&tag, rest)) = self.0.split_first() else {
            return Ok(None);
        };
        let (&first, mut rest) = rest.split_first().ok_or(SignerError::Malformed)?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            // Long form: at most four length bytes (no certificate is 4 GiB).
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err(SignerError::Malformed);
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |length, b| (length << 8) | usize::from(*b))
        };
        if rest.len() < length {
            return Err(SignerError::Malformed);
        }
        let (content, after) = rest.split_at(length);
        self.0 = after;
        Ok(Some((tag, content)))
    }

    /// The next element's content, which must carry `tag`.
    fn expect(&mut self, tag: u8) -> Result<&'a [u8], SignerError> {
        match self.next()? {
            Some((found, content)) if found == tag => Ok(content),
            _ => Err(SignerError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLV with a short length (under 128 bytes of content).
    fn tlv(tag: u8, content: &[u8]) -> alloc::vec::Vec<u8> {
        assert!(content.len() < 0x80, "a short length only");
        let mut out = alloc::vec![tag, u8::try_from(content.len()).unwrap()];
        out.extend_from_slice(content);
        out
    }

    /// A certificate shape with these extensions (the fields before them as placeholders; the
    /// signature after the TBS is left out, as the reader stops at the extensions).
    fn certificate(extensions: &[alloc::vec::Vec<u8>]) -> alloc::vec::Vec<u8> {
        let mut tbs = alloc::vec::Vec::new();
        tbs.extend(tlv(0x02, &[1])); // serial
        tbs.extend(tlv(SEQUENCE, &[])); // signature algorithm
        tbs.extend(tlv(SEQUENCE, &[])); // issuer
        if !extensions.is_empty() {
            let all: alloc::vec::Vec<u8> = extensions.concat();
            tbs.extend(tlv(EXTENSIONS, &tlv(SEQUENCE, &all)));
        }
        tlv(SEQUENCE, &tlv(SEQUENCE, &tbs))
    }

    fn extension(id: &[u8], critical: bool, value: &[u8]) -> alloc::vec::Vec<u8> {
        let mut fields = tlv(OID, id);
        if critical {
            fields.extend(tlv(BOOLEAN, &[0xff]));
        }
        fields.extend(tlv(OCTET_STRING, value));
        tlv(SEQUENCE, &fields)
    }

    fn ca(flag: Option<u8>) -> alloc::vec::Vec<u8> {
        let content = flag.map(|f| tlv(BOOLEAN, &[f])).unwrap_or_default();
        extension(BASIC_CONSTRAINTS, true, &tlv(SEQUENCE, &content))
    }

    fn usage(first: u8) -> alloc::vec::Vec<u8> {
        extension(KEY_USAGE, true, &tlv(BIT_STRING, &[1, first]))
    }

    #[test]
    fn a_ca_may_sign_and_anything_else_may_not() {
        assert_eq!(
            may_sign_certificates(&certificate(&[ca(Some(0xff))])),
            Ok(())
        );
        assert_eq!(
            may_sign_certificates(&certificate(&[ca(Some(0xff)), usage(KEY_CERT_SIGN | 0x02)])),
            Ok(())
        );
        assert_eq!(
            may_sign_certificates(&certificate(&[])),
            Err(SignerError::NotCa),
            "no extensions"
        );
        assert_eq!(
            may_sign_certificates(&certificate(&[ca(None)])),
            Err(SignerError::NotCa),
            "cA left at its default, false"
        );
        assert_eq!(
            may_sign_certificates(&certificate(&[ca(Some(0))])),
            Err(SignerError::NotCa)
        );
        assert_eq!(
            may_sign_certificates(&certificate(&[usage(KEY_CERT_SIGN)])),
            Err(SignerError::NotCa),
            "key usage alone does not make a CA"
        );
        assert_eq!(
            may_sign_certificates(&certificate(&[ca(Some(0xff)), usage(0x80)])),
            Err(SignerError::NoCertificateSigning),
            "a CA whose key may only sign data"
        );
        assert_eq!(
            may_sign_certificates(&certificate(&[ca(Some(0)), ca(Some(0xff))])),
            Err(SignerError::Malformed),
            "basic constraints twice"
        );
        assert_eq!(
            may_sign_certificates(&certificate(&[
                ca(Some(0xff)),
                usage(KEY_CERT_SIGN),
                usage(0x80)
            ])),
            Err(SignerError::Malformed),
            "key usage twice"
        );
    }

    // Every prefix of a valid certificate, and every byte flipped: an error or an answer, never
    // a panic; the whole certificate with one byte cut is never taken for a CA by accident.
    #[test]
    fn malformed_der_is_refused_without_panicking() {
        let good = certificate(&[ca(Some(0xff)), usage(KEY_CERT_SIGN)]);
        for end in 0..good.len() {
            assert!(may_sign_certificates(&good[..end]).is_err(), "cut at {end}");
        }
        for at in 0..good.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] ^= flip;
                let _ = may_sign_certificates(&bad);
            }
        }
        assert_eq!(
            may_sign_certificates(&[SEQUENCE, 0x85, 1, 2, 3, 4, 5]),
            Err(SignerError::Malformed),
            "a five-byte length"
        );
        assert_eq!(
            may_sign_certificates(&[SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(SignerError::Malformed),
            "a length beyond the input"
        );
    }
}
