//! The way out: rustls with the system's roots plus the route's `ca_file`,
//! HTTP/1.1 or HTTP/2 as the upstream's ALPN offers, connect and request
//! timeouts, and every failure classified as a countersign error.
//!
//! Connections are kept per worker thread, so that with thread-per-core
//! workers a request and its upstream connection never cross threads.
//! Buffered requests over HTTP/1.1 go through `h1`, driven by the sending
//! task itself; a streamed request body, or an upstream that picks HTTP/2,
//! goes through a pooled hyper-util client.

mod h1;

pub use h1::RawHeaders;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
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
use crate::vocab::{BodyOverLimit, BodyTimedOut, Buffered, Outgoing};

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

/// Why a request got no answer head from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the request path is not valid: {0}")]
    BadPath(String),
    #[error("{what}")]
    Unreachable {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("no answer within request_timeout ({}s)", .0.as_secs_f64())]
    Timeout(Duration),
    /// The upstream was silent past `read_timeout` once the request was sent.
    #[error("no answer head within read_timeout ({}s) of the request", .0.as_secs_f64())]
    ReadTimeout(Duration),
    /// The caller's streamed body went over `max_body` on the way.
    #[error("the request body exceeds max_body ({0} bytes)")]
    BodyTooLarge(u64),
    /// The caller's streamed body stalled past `body_read_timeout` on the way.
    #[error("the request body did not arrive within body_read_timeout ({}s)", .0.as_secs_f64())]
    BodyTimeout(Duration),
}

impl SendError {
    fn unreachable(what: impl Into<String>) -> Self {
        SendError::Unreachable {
            what: what.into(),
            source: None,
        }
    }
}

impl From<SendError> for ProxyError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::BadPath(_) => ProxyError::BadRequest(e.to_string()),
            SendError::Unreachable { what, source } => ProxyError::UpstreamUnreachable {
                what,
                source: source.map(Arc::from),
            },
            SendError::Timeout(d) => ProxyError::UpstreamTimeout(d),
            SendError::ReadTimeout(d) => ProxyError::UpstreamReadTimeout(d),
            SendError::BodyTooLarge(max) => ProxyError::BodyTooLarge(max),
            SendError::BodyTimeout(d) => ProxyError::BodyTimeout(d),
        }
    }
}

type Pool = Client<HttpsConnector<HttpConnector>, OutBody>;

/// Idle connections are dropped after this long, like hyper-util's pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per thread and upstream; more are closed.
const MAX_IDLE: usize = 256;

/// Idle HTTP/1 connections to one upstream, one list per thread, most
/// recently used last.
#[derive(Clone, Default)]
pub struct IdleConns(Arc<thread_local::ThreadLocal<RefCell<Vec<h1::Conn>>>>);

impl IdleConns {
    /// The most recently used connection that is still open, if any.
    fn take(&self) -> Option<h1::Conn> {
        let list = self.0.get()?;
        let mut list = list.try_borrow_mut().ok()?;
        while let Some(mut conn) = list.pop() {
            let fresh = conn.idle_since.is_some_and(|t| t.elapsed() < IDLE_TIMEOUT);
            if fresh && conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, mut conn: h1::Conn) {
        let now = Instant::now();
        conn.idle_since = Some(now);
        let Ok(mut list) = self.0.get_or_default().try_borrow_mut() else {
            return;
        };
        // The oldest are first: close those idle for too long.
        let stale = list
            .iter()
            .take_while(|c| c.idle_since.is_some_and(|t| now - t >= IDLE_TIMEOUT))
            .count();
        list.drain(..stale);
        if list.len() < MAX_IDLE {
            list.push(conn);
        }
    }
}

/// What an upstream answer's body is read by, with the route's bound on
/// the upstream's silence between reads (`read_timeout`).
pub struct UpBody {
    inner: Wire,
    silence: Silence,
    /// Where a cut is counted and logged once the answer goes to the caller.
    cut: Option<crate::metrics::AnswerCut>,
}

enum Wire {
    H1(h1::WireBody),
    Hyper(Incoming),
}

/// The upstream went silent mid-body for longer than `read_timeout`: the
/// answer is cut there (the caller sees a truncated transfer).
#[derive(Debug, thiserror::Error)]
#[error("the upstream was silent for {}s mid-answer (read_timeout)", .0.as_secs_f64())]
pub struct ReadTimeout(pub Duration);

/// The silence timer: made only when a read has to wait (an answer that
/// came whole with its head never arms one), moved only when data came
/// since it was last armed.
struct Silence {
    limit: Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Data came since the timer was armed: re-arm it on the next wait.
    moved: bool,
}

impl Silence {
    fn new(limit: Duration) -> Self {
        Silence {
            limit,
            timer: None,
            moved: false,
        }
    }

    /// Called when a read has to wait: whether the silence is over the limit.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        use std::future::Future as _;
        let timer = match &mut self.timer {
            Some(t) => {
                if self.moved {
                    t.as_mut().reset(Instant::now() + self.limit);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(self.limit))),
        };
        self.moved = false;
        timer.as_mut().poll(cx).is_ready()
    }
}

impl UpBody {
    fn new(inner: Wire, read_timeout: Duration) -> Self {
        UpBody {
            inner,
            silence: Silence::new(read_timeout),
            cut: None,
        }
    }

    /// Counts and logs a cut of this answer through `cut` (the pipeline
    /// sets it when the body goes to the caller).
    pub fn report_cut(&mut self, cut: crate::metrics::AnswerCut) {
        self.cut = Some(cut);
    }
}

impl http_body::Body for UpBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Wire::H1(b) => std::pin::Pin::new(b).poll_frame(cx),
            Wire::Hyper(b) => std::pin::Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
        };
        match polled {
            Poll::Pending => {
                if !this.silence.expired(cx) {
                    return Poll::Pending;
                }
                // Dropping the wire closes the upstream connection: it is
                // never reused with an answer half read.
                this.inner = Wire::H1(h1::WireBody::ended());
                if let Some(cut) = this.cut.take() {
                    cut.record();
                }
                Poll::Ready(Some(Err(Box::new(ReadTimeout(this.silence.limit)))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.silence.moved = true;
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Wire::H1(b) => b.is_end_stream(),
            Wire::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.inner {
            Wire::H1(b) => b.size_hint(),
            Wire::Hyper(b) => b.size_hint(),
        }
    }
}

impl UpBody {
    /// The answer's header lines, when `h1` kept them as they came
    /// (`h1::RawHeaders`): whoever takes them writes them or puts them in
    /// the map.
    pub fn take_raw(&mut self) -> Option<RawHeaders> {
        match &mut self.inner {
            Wire::H1(b) => b.take_raw(),
            Wire::Hyper(_) => None,
        }
    }
}

/// Puts the header lines an answer kept as they came into its map, for
/// whatever reads or writes the map (hyper's server, a HEAD answer, the
/// pipeline's inspection of an answer that is not a plain success).
pub fn headers_into_map(headers: &mut http::HeaderMap, body: &mut UpBody) {
    if let Some(raw) = body.take_raw() {
        // Empty in practice (a raw head has no map yet); `extend` keeps
        // every value of a repeated name either way.
        headers.extend(raw.into_map());
    }
}

/// Why no HTTP/1 connection came: the upstream chose HTTP/2, or a failure.
enum Connect {
    ChoseH2,
    Failed(SendError),
}

pub struct Upstream {
    /// TLS and TCP settings, cloned into each thread's hyper-util pool.
    connector: HttpsConnector<HttpConnector>,
    /// One hyper-util pool per thread that sends: its connections are driven
    /// by that thread's runtime, so waking them never needs another thread.
    pools: thread_local::ThreadLocal<Pool>,
    /// Idle connections for `h1`.
    idle: IdleConns,
    /// rustls for `h1` over `https`, offering h2 and http/1.1 like hyper-util.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// Set once an upstream picks HTTP/2: from then on hyper-util carries it.
    h2: AtomicBool,
    /// "host:port", for connecting.
    addr: String,
    connect_timeout: Duration,
    /// Scheme and authority of the upstream, parsed once.
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The upstream URL's own path, without the trailing '/'.
    base_path: String,
    pub request_timeout: Duration,
    /// The longest silence from the upstream once a request is sent.
    pub read_timeout: Duration,
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
    /// The route's upstream.
    pub fn new<K>(route: &RouteConfig<K>) -> Result<Self, UpstreamError> {
        Upstream::at(route, &route.upstream, &route.base_path)
    }

    /// Another upstream of the route (an endpoint of its kind), with the
    /// route's timeouts and trust roots.
    pub fn at<K>(
        route: &RouteConfig<K>,
        origin: &Uri,
        base_path: &str,
    ) -> Result<Self, UpstreamError> {
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
        let mut h1_tls = tls.clone();
        h1_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
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
        let (scheme, authority) = match (origin.scheme(), origin.authority()) {
            (Some(s), Some(a)) => (s.clone(), a.clone()),
            _ => {
                return Err(UpstreamError::Tls(format!(
                    "upstream {origin} has no scheme or host"
                )))
            }
        };
        let https_scheme = scheme == http::uri::Scheme::HTTPS;
        let port = authority
            .port_u16()
            .unwrap_or(if https_scheme { 443 } else { 80 });
        let host = authority.host();
        let tls = if https_scheme {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(bare.to_string())
                .map_err(|e| UpstreamError::Tls(format!("upstream host {host}: {e}")))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(h1_tls)), name))
        } else {
            None
        };
        Ok(Upstream {
            addr: format!("{host}:{port}"),
            tls,
            idle: IdleConns::default(),
            h2: AtomicBool::new(false),
            connect_timeout: route.connect_timeout,
            scheme,
            authority,
            connector: https,
            pools: thread_local::ThreadLocal::new(),
            base_path: base_path.to_string(),
            request_timeout: route.request_timeout,
            read_timeout: route.read_timeout,
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

    /// The request path below the upstream's base path, checked.
    fn path_and_query(&self, path_and_query: String) -> Result<PathAndQuery, SendError> {
        if self.base_path.is_empty() {
            PathAndQuery::from_maybe_shared(Bytes::from(path_and_query))
                .map_err(|e| SendError::BadPath(e.to_string()))
        } else {
            let full = format!("{}{}", self.base_path, path_and_query);
            PathAndQuery::try_from(full.as_str())
                .map_err(|_| SendError::BadPath(format!("\"{path_and_query}\"")))
        }
    }

    /// Sends one request and returns as soon as the response head arrives.
    /// `stream` is the caller's body when the kind did not buffer it.
    pub async fn send(
        &self,
        mut out: Outgoing,
        stream: Option<BoxBody<Bytes, BoxError>>,
        deadline: Instant,
    ) -> Result<Response<UpBody>, SendError> {
        let pq = self.path_and_query(std::mem::take(&mut out.path_and_query))?;
        if stream.is_none() && !self.h2.load(Ordering::Relaxed) {
            let req = h1::encode(&out, self.authority.as_str(), pq.as_str());
            // Each step is bounded inside: connecting by the deadline,
            // the answer head by the deadline and `read_timeout`.
            match self.send_h1(&req, deadline).await {
                Ok(resp) => {
                    let silence = self.read_timeout;
                    return Ok(resp.map(|b| UpBody::new(Wire::H1(b), silence)));
                }
                Err(Connect::Failed(e)) => return Err(e),
                Err(Connect::ChoseH2) => {}
            }
        }
        // Boxed: streamed bodies and HTTP/2 upstreams are the rare case, and
        // hyper-util's future is large.
        Box::pin(self.send_pooled(out, stream, pq, deadline)).await
    }

    /// Through hyper-util's pooled client: a streamed body, or HTTP/2.
    async fn send_pooled(
        &self,
        out: Outgoing,
        stream: Option<BoxBody<Bytes, BoxError>>,
        pq: PathAndQuery,
        deadline: Instant,
    ) -> Result<Response<UpBody>, SendError> {
        let body = match (out.body, stream) {
            (Some(b), _) => Either::Left(Full::new(b)),
            (None, Some(s)) => Either::Right(s),
            (None, None) => Either::Left(Full::new(Bytes::new())),
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(pq);
        let uri = Uri::from_parts(parts).map_err(|e| SendError::BadPath(e.to_string()))?;
        let mut req = Request::new(body);
        *req.method_mut() = out.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = out.headers;
        // A streamed body's end is not seen here: the head's silence is
        // counted from the start of the request, which a caller's own body
        // bound (`body_read_timeout`) keeps short.
        let silent_by = Instant::now() + self.read_timeout;
        match tokio::time::timeout_at(deadline.min(silent_by), self.pool().request(req)).await {
            Err(_) if silent_by < deadline => Err(SendError::ReadTimeout(self.read_timeout)),
            Err(_) => Err(SendError::Timeout(self.request_timeout)),
            Ok(Ok(resp)) => {
                let silence = self.read_timeout;
                Ok(resp.map(|b| UpBody::new(Wire::Hyper(b), silence)))
            }
            Ok(Err(e)) => Err(classify(e, self.request_timeout)),
        }
    }

    /// One HTTP/1.1 exchange on an idle connection or a new one. A reused
    /// connection the upstream closed before answering gets one retry on a
    /// new connection, when resending is safe (see `h1::exchange`).
    async fn send_h1(
        &self,
        req: &h1::Encoded,
        deadline: Instant,
    ) -> Result<Response<h1::WireBody>, Connect> {
        let limits = h1::Limits {
            deadline,
            silence: self.read_timeout,
        };
        let conn = match self.idle.take() {
            Some(c) => c,
            None => self.connect_by(deadline).await?,
        };
        match h1::exchange(conn, req, self.idle.clone(), limits).await {
            Ok(resp) => Ok(resp),
            Err(e) if e.retryable => {
                tracing::debug!(upstream = %self.authority, error = %e.message, "idle upstream connection was closed; retrying on a new one");
                let conn = self.connect_by(deadline).await?;
                h1::exchange(conn, req, self.idle.clone(), limits)
                    .await
                    .map_err(|e| Connect::Failed(self.exchange_error(e)))
            }
            Err(e) => Err(Connect::Failed(self.exchange_error(e))),
        }
    }

    fn exchange_error(&self, e: h1::ExchangeError) -> SendError {
        match e.timeout {
            Some(h1::Bound::Deadline) => SendError::Timeout(self.request_timeout),
            Some(h1::Bound::Silence) => SendError::ReadTimeout(self.read_timeout),
            None => SendError::unreachable(e.message),
        }
    }

    /// [`Upstream::connect`], by the request's deadline.
    async fn connect_by(&self, deadline: Instant) -> Result<h1::Conn, Connect> {
        match tokio::time::timeout_at(deadline, self.connect()).await {
            Ok(c) => c,
            Err(_) => Err(Connect::Failed(SendError::Timeout(self.request_timeout))),
        }
    }

    /// A new connection: resolve, TCP within `connect_timeout` (each address
    /// in turn), then TLS for `https`.
    async fn connect(&self) -> Result<h1::Conn, Connect> {
        let failed = |m: String| Connect::Failed(SendError::unreachable(m));
        let addrs = tokio::net::lookup_host(self.addr.as_str())
            .await
            .map_err(|e| failed(format!("cannot resolve {}: {e}", self.addr)))?;
        let mut last = format!("{} resolves to no address", self.addr);
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
                .await
            {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => return Err(Connect::Failed(SendError::Timeout(self.request_timeout))),
            }
        }
        let Some(tcp) = tcp else {
            return Err(failed(format!("cannot connect: {last}")));
        };
        let _ = tcp.set_nodelay(true);
        let Some((tls, name)) = &self.tls else {
            return Ok(h1::Conn::new(h1::Stream::Tcp(tcp)));
        };
        let tls = tls
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| failed(format!("cannot connect: TLS: {e}")))?;
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            tracing::debug!(upstream = %self.authority, "upstream chose HTTP/2; using the multiplexing client");
            self.h2.store(true, Ordering::Relaxed);
            return Err(Connect::ChoseH2);
        }
        Ok(h1::Conn::new(h1::Stream::Tls(Box::new(tls))))
    }

    /// Sends and reads the whole answer (logins and other small control calls).
    pub async fn send_buffered(
        &self,
        out: Outgoing,
        deadline: Instant,
        max: usize,
    ) -> Result<Buffered, SendError> {
        let resp = self.send(out, None, deadline).await?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout_at(deadline, Limited::new(body, max).collect())
            .await
            .map_err(|_| SendError::Timeout(self.request_timeout))?
            .map_err(|e| match e.downcast_ref::<ReadTimeout>() {
                Some(t) => SendError::ReadTimeout(t.0),
                None => SendError::Unreachable {
                    what: format!("reading the answer: {e}"),
                    source: Some(e),
                },
            })?
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
fn classify(e: hyper_util::client::legacy::Error, timeout: Duration) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut last = e.to_string();
    while let Some(s) = source {
        if let Some(over) = s.downcast_ref::<BodyOverLimit>() {
            return SendError::BodyTooLarge(over.0);
        }
        if let Some(t) = s.downcast_ref::<BodyTimedOut>() {
            return SendError::BodyTimeout(t.0);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return SendError::Timeout(timeout);
            }
        }
        last = s.to_string();
        source = s.source();
    }
    let what = if e.is_connect() {
        format!("cannot connect: {last}")
    } else {
        last
    };
    SendError::Unreachable {
        what,
        source: Some(Box::new(e)),
    }
}
