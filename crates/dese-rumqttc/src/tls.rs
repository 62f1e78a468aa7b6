//! The rustls configuration built from the shared [`TlsFiles`].

use std::sync::Arc;

use dese_transport::{Error, TlsFiles};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Trusts exactly the CA certificates of `files` (rustls with the ring provider), with the
/// client certificate when there is one.
pub(crate) fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, Error> {
    let mut store = rustls::RootCertStore::empty();
    for root in certificates(&files.ca)? {
        store
            .add(root)
            .map_err(|e| Error::tls(format!("unusable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::tls(e.to_string()))?
        .with_root_certificates(store);
    let config = match &files.client {
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::tls(format!("cannot read {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::tls(format!("unusable client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let read = |e: rustls::pki_types::pem::Error| {
        Error::tls(format!("cannot read {}: {e}", path.display()))
    };
    let all: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    if all.is_empty() {
        return Err(Error::tls(format!("no certificate in {}", path.display())));
    }
    Ok(all)
}
