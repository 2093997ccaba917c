//! Strict fakes of the upstream APIs, for `countersign demo`, for tests, and
//! for teams testing the services behind the gateway (`countersign fake KIND`).
//!
//! A fake enforces what its API document says (signatures, cookies, sessions,
//! limits, payload sizes) and answers with the documented errors. Its checking
//! code is written from the document, separately from the gateway's signing
//! code in `src/kinds/`, and shares none of it: nothing outside `crate::fake`
//! is used here, so a test where both sides agree proves something.

mod lenient;
pub mod xrtc;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// A TLS server config from PEM files, offering h2 and http/1.1 by ALPN.
pub fn tls_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<rustls::ServerConfig>, FakeError> {
    let err = |p: &Path, reason: String| FakeError::Cert {
        path: p.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_pem)
        .map_err(|e| err(cert_pem, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert_pem, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|e| err(key_pem, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FakeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| FakeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
