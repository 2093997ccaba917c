//! Strict fakes of the upstream APIs, for `countersign demo`, for tests, and
//! for teams testing the services behind the gateway (`countersign fake KIND`).
//!
//! A fake enforces what its API document says (signatures, cookies, sessions,
//! limits, payload sizes) and answers with the documented errors. Its checking
//! code is written from the document, separately from the gateway's signing
//! code in `src/kinds/`, and shares none of it: nothing outside `crate::fake`
//! is used here, so a test where both sides agree proves something.

pub mod aws;
pub mod cli;
pub mod exchanges;
mod lenient;
pub mod oauth1;
pub mod oauth2;
pub mod teamdrive;
pub mod tts;
pub mod utilsio;
pub mod xrtc;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

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

/// What every fake answers with.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A request a fake received, for tests and `/_fake/stats`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recorded {
    /// "HTTP/1.1" or "HTTP/2.0": what the client negotiated.
    pub version: String,
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub status: u16,
}

impl Recorded {
    pub fn new(parts: &http::request::Parts, body: &[u8], status: u16) -> Self {
        Recorded {
            version: format!("{:?}", parts.version),
            method: parts.method.to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
            status,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a fake received: counts and the last 200 requests, for tests and `/_fake/stats`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Journal {
    pub requests: u64,
    /// Requests the fake refused (signature, timestamp, parameters, ...).
    pub rejected: u64,
    /// Oldest first.
    pub recent: Vec<Recorded>,
}

impl Journal {
    pub fn record(&mut self, rec: Recorded, rejected: bool) {
        self.requests += 1;
        self.rejected += u64::from(rejected);
        self.recent.push(rec);
        if self.recent.len() > 200 {
            self.recent.remove(0);
        }
    }
}

/// Accepts connections (HTTP/1.1 and h2, TLS when configured) and answers
/// each request with `handler(peer_ip, request)` until `shutdown` resolves.
pub async fn serve_with<F, Fut>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handler: F,
) -> std::io::Result<()>
where
    F: Fn(IpAddr, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(20)).await; continue; }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let ip = peer.ip();
            let svc = service_fn(move |req| {
                let h = handler.clone();
                async move { Ok::<_, Infallible>(h(ip, req).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            match acceptor {
                Some(a) => {
                    if let Ok(tls) = a.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}
