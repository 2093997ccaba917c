//! The way out: pooled hyper-util clients per route (the connector built once,
//! at config load; one pool per worker thread, so that with thread-per-core
//! workers a request and its upstream connection never cross threads),
//! rustls with the system's roots plus the route's `ca_file`, HTTP/1.1 or
//! HTTP/2 as the upstream's ALPN offers, connect and request timeouts, and
//! every failure classified as a countersign error.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use tokio::time::Instant;

use crate::config::RouteConfig;
use crate::error::ProxyError;
use crate::kinds::{Buffered, Outgoing};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body going upstream: buffered, or the caller's stream capped at `max_body`.
pub type OutBody = Either<Full<Bytes>, BoxBody<Bytes, BoxError>>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("routes.{route}: {reason}")]
    Kind { route: String, reason: String },
}

type Pool = Client<HttpsConnector<HttpConnector>, OutBody>;

pub struct Upstream {
    /// TLS and TCP settings, cloned into each thread's pool.
    connector: HttpsConnector<HttpConnector>,
    /// One pool per thread that sends: its connections are driven by that
    /// thread's runtime, so waking them never needs another thread.
    pools: thread_local::ThreadLocal<Pool>,
    /// Scheme and authority of the upstream, parsed once.
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The upstream URL's own path, without the trailing '/'.
    base_path: String,
    pub request_timeout: Duration,
}

/// Loading the system's roots reads files; do it once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system trust roots loaded");
            Arc::new(roots)
        })
        .clone()
}

impl Upstream {
    pub fn new(route: &RouteConfig) -> Result<Self, UpstreamError> {
        let mut roots = (*system_roots()).clone();
        if let Some(path) = &route.ca_file {
            let err = |reason: String| UpstreamError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?;
            if certs.is_empty() {
                return Err(err("holds no PEM certificate".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| err(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(route.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let (scheme, authority) = match (route.upstream.scheme(), route.upstream.authority()) {
            (Some(s), Some(a)) => (s.clone(), a.clone()),
            _ => {
                return Err(UpstreamError::Tls(format!(
                    "upstream {} has no scheme or host",
                    route.upstream
                )))
            }
        };
        Ok(Upstream {
            scheme,
            authority,
            connector: https,
            pools: thread_local::ThreadLocal::new(),
            base_path: route.base_path.clone(),
            request_timeout: route.request_timeout,
        })
    }

    fn pool(&self) -> &Pool {
        self.pools.get_or(|| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .build(self.connector.clone())
        })
    }

    /// The upstream URI for a request path: the parsed scheme and authority
    /// are reused; only the path is checked.
    fn uri(&self, path_and_query: String) -> Result<Uri, ProxyError> {
        let bad =
            |pq: &str| ProxyError::BadRequest(format!("\"{pq}\" is not a valid request path"));
        let pq = if self.base_path.is_empty() {
            http::uri::PathAndQuery::from_maybe_shared(Bytes::from(path_and_query)).map_err(
                |e| ProxyError::BadRequest(format!("the request path is not valid: {e}")),
            )?
        } else {
            let full = format!("{}{}", self.base_path, path_and_query);
            http::uri::PathAndQuery::try_from(full.as_str()).map_err(|_| bad(&path_and_query))?
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).map_err(|e| ProxyError::BadRequest(e.to_string()))
    }

    /// Sends one request and returns as soon as the response head arrives.
    /// `stream` is the caller's body when the kind did not buffer it.
    pub async fn send(
        &self,
        out: Outgoing,
        stream: Option<BoxBody<Bytes, BoxError>>,
        deadline: Instant,
    ) -> Result<Response<Incoming>, ProxyError> {
        let uri = self.uri(out.path_and_query)?;
        let body = match (out.body, stream) {
            (Some(b), _) => Either::Left(Full::new(b)),
            (None, Some(s)) => Either::Right(s),
            (None, None) => Either::Left(Full::new(Bytes::new())),
        };
        let mut req = Request::new(body);
        *req.method_mut() = out.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = out.headers;
        match tokio::time::timeout_at(deadline, self.pool().request(req)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout(self.request_timeout)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(&e, self.request_timeout)),
        }
    }

    /// Sends and reads the whole answer (logins and other small control calls).
    pub async fn send_buffered(
        &self,
        out: Outgoing,
        deadline: Instant,
        max: usize,
    ) -> Result<Buffered, ProxyError> {
        let resp = self.send(out, None, deadline).await?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout_at(deadline, Limited::new(body, max).collect())
            .await
            .map_err(|_| ProxyError::UpstreamTimeout(self.request_timeout))?
            .map_err(|e| ProxyError::UpstreamUnreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Buffered {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Maps a client error to who is at fault: a body over `max_body` is the
/// caller's; a connect timeout is a timeout; everything else is "unreachable".
fn classify(e: &hyper_util::client::legacy::Error, timeout: Duration) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        if let Some(limit) = s.downcast_ref::<http_body_util::LengthLimitError>() {
            let _ = limit;
            return ProxyError::BodyTooLarge(0);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return ProxyError::UpstreamTimeout(timeout);
            }
        }
        last = s.to_string();
        source = s.source();
    }
    if e.is_connect() {
        ProxyError::UpstreamUnreachable(format!("cannot connect: {last}"))
    } else {
        ProxyError::UpstreamUnreachable(last)
    }
}
