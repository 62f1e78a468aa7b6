//! The chain rules of `dese_esp32c3::x509` on real certificates, as a CA tool makes them
//! (rcgen, what the test kit signs with): which may sign other certificates.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

use dese_esp32c3::x509::{SignerError, may_sign_certificates};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A certificate with these constraints and key usages, signed by itself (the rules read the
/// extensions only; who signed is embedded-tls's check).
fn certificate(is_ca: IsCa, usages: &[KeyUsagePurpose]) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["broker.example".to_string()]).unwrap();
    params.is_ca = is_ca;
    params.key_usages = usages.to_vec();
    params
        .distinguished_name
        .push(DnType::CommonName, "DESE x509 test");
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn cas_may_sign_and_other_certificates_may_not() {
    let unconstrained = || IsCa::Ca(BasicConstraints::Unconstrained);
    assert_eq!(
        may_sign_certificates(&certificate(unconstrained(), &[])),
        Ok(())
    );
    assert_eq!(
        may_sign_certificates(&certificate(
            unconstrained(),
            &[KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
        )),
        Ok(())
    );
    assert_eq!(
        may_sign_certificates(&certificate(
            IsCa::Ca(BasicConstraints::Constrained(0)),
            &[KeyUsagePurpose::KeyCertSign]
        )),
        Ok(()),
        "a path length after cA"
    );
    assert_eq!(
        may_sign_certificates(&certificate(
            unconstrained(),
            &[KeyUsagePurpose::DigitalSignature]
        )),
        Err(SignerError::NoCertificateSigning),
        "a CA whose key may not sign certificates"
    );
    assert_eq!(
        may_sign_certificates(&certificate(IsCa::NoCa, &[])),
        Err(SignerError::NotCa),
        "a server certificate: no basic constraints"
    );
    assert_eq!(
        may_sign_certificates(&certificate(
            IsCa::ExplicitNoCa,
            &[KeyUsagePurpose::KeyCertSign]
        )),
        Err(SignerError::NotCa),
        "cA: FALSE, whatever its key usage says"
    );
}

// Every prefix of a real certificate is refused (the reader never takes a cut certificate for a
// CA), and every single byte flipped gives an answer, never a panic.
#[test]
fn a_real_certificate_cut_or_damaged_is_never_a_panic() {
    let good = certificate(IsCa::Ca(BasicConstraints::Unconstrained), &[]);
    assert_eq!(may_sign_certificates(&good), Ok(()));
    for end in 0..good.len() {
        assert!(may_sign_certificates(&good[..end]).is_err(), "cut at {end}");
    }
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0xff;
        let _ = may_sign_certificates(&bad);
    }
}
