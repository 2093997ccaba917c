//! The request pipeline, top to bottom: route -> caller check -> plan ->
//! body (buffered and capped only where the kind needs it) -> session ->
//! rate permit + quota unit -> sign -> forward -> inspect (relogin and replay
//! once) -> stream back. Every countersign error becomes a response in
//! `error.rs`; upstream answers pass through unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::gateway::{token_digest, Gateway, Route, Snapshot};
use crate::headers;
use crate::kinds::{Buffered, Forward, Need, Outgoing, Plan, Then};
use crate::metrics;
use crate::session::{LoginAttempt, SessionSlot};
use crate::upstream::UpBody;

/// What the caller gets back: our own small bodies, or the upstream's stream.
pub type RespBody = Either<Full<Bytes>, UpBody>;

/// Error bodies worth reading to recognise an expired session are small.
const PEEK_MAX: u64 = 64 * 1024;

/// The tower service hyper drives, one clone per connection.
#[derive(Clone)]
pub struct GatewayService(pub Arc<Gateway>);

impl tower::Service<Request<Incoming>> for GatewayService {
    type Response = Response<RespBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let gw = self.0.clone();
        Box::pin(async move { Ok(with_header_map(handle(&gw, req).await)) })
    }
}

/// hyper writes an answer from its map: header lines kept as they came
/// (`upstream::RawHeaders`) go into it first.
fn with_header_map(resp: Response<RespBody>) -> Response<RespBody> {
    let (mut parts, mut body) = resp.into_parts();
    if let Either::Right(up) = &mut body {
        crate::upstream::headers_into_map(&mut parts.headers, up);
    }
    Response::from_parts(parts, body)
}

/// What happened to one request, for its log line and metrics.
struct Trace {
    client: Option<String>,
    upstream_status: Option<u16>,
    login: LoginAttempt,
    replayed: bool,
}

/// A caller's request body: hyper's stream, or one read whole by the
/// server's HTTP/1 fast path.
pub trait CallerBody:
    http_body::Body<Data = Bytes, Error: Into<crate::upstream::BoxError>> + Send + Sync + 'static
{
}

impl<B> CallerBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<crate::upstream::BoxError>>
        + Send
        + Sync
        + 'static
{
}

pub async fn handle<B: CallerBody>(gw: &Gateway, req: Request<B>) -> Response<RespBody> {
    let started = Instant::now();
    let snap = gw.snapshot.load_full();
    let method = req.method().clone();
    // A clone shares the URI's bytes: the route and path for the log line
    // borrow from it, with no allocation per request.
    let uri = req.uri().clone();
    let (route_name, path_for_log) = split_route(uri.path());
    let mut trace = Trace {
        client: None,
        upstream_status: None,
        login: LoginAttempt::None,
        replayed: false,
    };
    let known = snap.route(route_name);
    // Hostile shapes are refused before routing: an absolute-form URI's path
    // says nothing about which route the caller meant.
    let result = match (
        headers::check_form(&method, req.uri(), req.version()),
        known,
    ) {
        (Err(e), _) => Err(e),
        (Ok(()), None) => Err(ProxyError::UnknownRoute(route_name.to_string())),
        (Ok(()), Some(route)) => forward(&snap, route, req, started, &mut trace).await,
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(route = %route_name, code = e.code(), error = %e, "countersign error");
            e.into_response(route_name).map(Either::Left)
        }
    };
    let took = started.elapsed();
    record(gw, known.map(|r| r.as_ref()), &resp, &trace, took);
    tracing::info!(
        client = trace.client.as_deref().unwrap_or("-"),
        route = %route_name,
        method = %method,
        path = %path_for_log,
        status = resp.status().as_u16(),
        upstream_status = trace.upstream_status,
        error = resp.headers().get("x-countersign-error").and_then(|v| v.to_str().ok()),
        duration_ms = took.as_secs_f64() * 1000.0,
        login = trace.login.as_str(),
        replay = trace.replayed,
        "request"
    );
    resp
}

fn record(
    gw: &Gateway,
    known: Option<&Route>,
    resp: &Response<RespBody>,
    trace: &Trace,
    took: std::time::Duration,
) {
    let m = &gw.metrics;
    // An unknown route name is the caller's text: never a label value.
    let route = known.map_or("", |r| r.name.as_str());
    // The common answer uses the route's own handles: no label lookup.
    if let Some(r) = known {
        r.metrics.duration.observe(took.as_secs_f64());
        if resp.status() == StatusCode::OK && !trace.replayed && trace.login == LoginAttempt::None {
            r.metrics.ok.inc();
            return;
        }
    } else {
        m.duration
            .get_or_create(&metrics::route(route))
            .observe(took.as_secs_f64());
    }
    let label = metrics::route(route);
    m.requests
        .get_or_create(&metrics::RouteStatus {
            route: route.to_string(),
            status: resp.status().as_u16(),
        })
        .inc();
    if trace.replayed {
        m.replays.get_or_create(&label).inc();
    }
    if trace.login != LoginAttempt::None {
        let result = trace.login.as_str();
        m.logins
            .get_or_create(&metrics::RouteResult {
                route: route.to_string(),
                result,
            })
            .inc();
    }
    let code = resp
        .headers()
        .get("x-countersign-error")
        .and_then(|v| v.to_str().ok());
    let class = match code {
        Some("rate_limited") | Some("quota_exhausted") => {
            m.rate_limited.get_or_create(&label).inc();
            None
        }
        Some("upstream_unreachable") => Some("unreachable"),
        Some("upstream_timeout") => Some("timeout"),
        Some("login_failed") => Some("login_failed"),
        Some("login_throttled") => Some("login_throttled"),
        Some("key_rotation_failed") => Some("key_rotation"),
        _ => None,
    };
    if let Some(class) = class {
        m.upstream_errors
            .get_or_create(&metrics::RouteClass {
                route: route.to_string(),
                class,
            })
            .inc();
    }
}

/// `/xrtc/v1/item/get` -> (`xrtc`, `/v1/item/get`); `/xrtc` -> (`xrtc`, `/`).
fn split_route(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.find('/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, "/"),
    }
}

/// The caller's token, when `[clients.*]` are configured: 401 without a known
/// token, 403 for a route the client may not use.
fn check_client(
    snap: &Snapshot,
    route: &str,
    headers: &HeaderMap,
) -> Result<Option<String>, ProxyError> {
    if snap.clients.is_empty() {
        return Ok(None);
    }
    let token = headers
        .get("x-countersign-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .ok_or(ProxyError::UnauthorizedClient)?;
    let digest = token_digest(token.trim());
    // Compare against every client, in constant time per comparison, so
    // timing reveals neither which client matched nor how much of a token did.
    let mut found = None;
    for c in &snap.clients {
        let diff = c
            .token_digest
            .iter()
            .zip(digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            found = Some(c);
        }
    }
    let client = found.ok_or(ProxyError::UnauthorizedClient)?;
    if !client.routes.iter().any(|r| r == route) {
        return Err(ProxyError::ForbiddenRoute(client.name.clone()));
    }
    Ok(Some(client.name.clone()))
}

async fn forward<B: CallerBody>(
    snap: &Snapshot,
    route: &Route,
    req: Request<B>,
    started: Instant,
    trace: &mut Trace,
) -> Result<Response<RespBody>, ProxyError> {
    let deadline = started + route.upstream.request_timeout;
    let (parts, body) = req.into_parts();
    trace.client = check_client(snap, &route.name, &parts.headers)?;
    let kind = route.kind.as_ref();
    // One path, both to classify the call and to forward it.
    let (_, raw_rest) = split_route(parts.uri.path());
    let rest = headers::canonical_path(raw_rest, kind.embeds_urls())?;
    let rest = rest.as_ref();
    let path_and_query_of = || match parts.uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let mut path_and_query = path_and_query_of();
    if let Some(prepare) = kind.prepare() {
        prepare.await?;
    }
    let Forward {
        session: need,
        buffer_body,
        alt_upstream,
        then,
    } = match kind.plan(&parts.method, rest, &parts.headers)? {
        Plan::Local(resp) => return Ok(resp.map(Either::Left)),
        Plan::LocalWithSession => {
            let slot = route.session.as_ref().ok_or_else(|| {
                ProxyError::Internal("a local answer needs a session slot".into())
            })?;
            ensure(slot, route, deadline, trace).await?;
            return Ok(kind.answer_with_session().map(Either::Left));
        }
        Plan::Forward(f) => f,
    };
    let session_slot = match need {
        Need::Nothing => None,
        Need::Session => route.session.as_ref(),
        Need::SessionIfHeld(answer) => match &route.session {
            Some(slot) if slot.is_held() => Some(slot),
            _ => return Ok(answer.map(Either::Left)),
        },
    };
    let upstream = match (&route.alt_upstream, alt_upstream) {
        (Some(alt), true) => alt,
        _ => &route.upstream,
    };
    let strip_auth = !snap.clients.is_empty();
    let mut base_headers = headers::outgoing(&parts.headers, kind.owned_headers(), strip_auth);
    let declared = headers::content_length(&parts.headers);
    if declared.is_some_and(|n| n > snap.max_body) {
        return Err(ProxyError::BodyTooLarge(snap.max_body));
    }
    let (body, mut stream) = if buffer_body {
        let bytes = whole(body, snap.max_body).await?;
        (Some(bytes), None)
    } else {
        (
            None,
            Some(Limited::new(body, snap.max_body as usize).boxed()),
        )
    };

    // A request its kind cannot sign (a body that does not parse) must not
    // cost a login first: on a cold session, sign a throwaway copy.
    if session_slot.is_some_and(|slot| !slot.is_held()) {
        let mut trial = Outgoing {
            method: parts.method.clone(),
            path_and_query: path_and_query.clone(),
            headers: base_headers.clone(),
            body: body.clone(),
        };
        kind.sign(&mut trial, Some(&crate::secret::Secret::new("-")))?;
    }
    loop {
        let session = match session_slot {
            Some(slot) => Some(ensure(slot, route, deadline, trace).await?),
            None => None,
        };
        route.limits.acquire(deadline).await?;
        // The first try takes the path and headers; the one replay (rare)
        // builds them again from the caller's request rather than every
        // request keeping a copy.
        if trace.replayed {
            path_and_query = path_and_query_of();
            base_headers = headers::outgoing(&parts.headers, kind.owned_headers(), strip_auth);
        }
        let mut out = Outgoing {
            method: parts.method.clone(),
            path_and_query: std::mem::take(&mut path_and_query),
            headers: std::mem::take(&mut base_headers),
            body: body.clone(),
        };
        kind.sign(&mut out, session.as_ref().map(|s| &s.value))?;
        if let (Some(slot), Some(s)) = (session_slot, &session) {
            slot.touch(s.generation);
        }
        let sent = matches!(then, Then::Inspect).then(|| out.clone());
        let resp = upstream
            .send(out, stream.take(), deadline)
            .await
            .map_err(|e| match e {
                ProxyError::BodyTooLarge(_) => ProxyError::BodyTooLarge(snap.max_body),
                e => e,
            })?;
        trace.upstream_status = Some(resp.status().as_u16());
        let (mut head, mut body_in) = resp.into_parts();
        // A plain success's header lines may pass on as they came: nothing
        // below reads them (h1's `NOTABLE` names the ones that would). Any
        // other answer is looked at through the map.
        if !head.status.is_success() || matches!(then, Then::Inspect) {
            crate::upstream::headers_into_map(&mut head.headers, &mut body_in);
        }
        if let Some(hold) = route.limits.observe(head.status, &head.headers).await {
            tracing::warn!(route = %route.name, hold_s = hold.as_secs_f64(), "upstream asked to slow down; holding the route's requests");
        }
        headers::strip_response(&mut head.headers);
        let mut peeked = None;
        let mut unread = Some(body_in);
        if let (Some(slot), Some(s)) = (session_slot, &session) {
            // Read a small error body when the kind needs it to recognise an expiry.
            let small = unread
                .as_ref()
                .and_then(|b| b.size_hint().upper())
                .is_some_and(|n| n <= PEEK_MAX);
            if small && kind.peek_body(head.status) {
                peeked = Some(read_all(unread.take(), route, deadline, PEEK_MAX as usize).await?);
            }
            let expired = kind.session_expired(head.status, &head.headers, peeked.as_deref());
            // Replay only when the body is still in hand (buffered) and only once.
            if expired && !trace.replayed && body.is_some() {
                slot.invalidate(s.generation).await;
                trace.replayed = true;
                tracing::debug!(route = %route.name, "session rejected upstream; logging in again to replay once");
                continue;
            }
            if expired {
                slot.invalidate(s.generation).await;
            } else if let Some(v) = kind.observe(&mut head.headers, Some(&s.value)) {
                slot.update(s.generation, v);
            }
        }
        if head.status.is_success() {
            match (&then, sent) {
                (Then::ClearSession, _) => {
                    if let Some(slot) = &route.session {
                        slot.clear().await;
                    }
                }
                (Then::Inspect, Some(sent)) => {
                    let bytes = match peeked.take() {
                        Some(b) => b,
                        None => read_all(unread.take(), route, deadline, INSPECT_MAX).await?,
                    };
                    let mut answer = Buffered {
                        status: head.status,
                        headers: std::mem::take(&mut head.headers),
                        body: bytes,
                    };
                    kind.inspect(&sent, &mut answer).await?;
                    head.headers = answer.headers;
                    // The kind may have rewritten the body: hyper sets the new length.
                    head.headers.remove(http::header::CONTENT_LENGTH);
                    peeked = Some(answer.body);
                }
                _ => {}
            }
        }
        let body_out = match (peeked, unread) {
            (_, Some(stream)) => Either::Right(stream),
            (bytes, None) => Either::Left(Full::new(bytes.unwrap_or_default())),
        };
        return Ok(Response::from_parts(head, body_out));
    }
}

/// Answers a kind inspects whole (key rotations) are small; a bigger one is refused.
const INSPECT_MAX: usize = 1024 * 1024;

/// The held session, logging in first if needed; records the login for the log line.
async fn ensure(
    slot: &SessionSlot,
    route: &Route,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<crate::session::Session, ProxyError> {
    let mut attempt = LoginAttempt::None;
    let s = slot
        .ensure(
            deadline,
            route.kind.as_ref(),
            &route.upstream,
            &route.limits,
            &mut attempt,
        )
        .await;
    if attempt != LoginAttempt::None {
        trace.login = attempt;
    }
    s
}

async fn read_all(
    body: Option<UpBody>,
    route: &Route,
    deadline: Instant,
    max: usize,
) -> Result<Bytes, ProxyError> {
    let Some(body) = body else {
        return Ok(Bytes::new());
    };
    Ok(
        tokio::time::timeout_at(deadline, Limited::new(body, max).collect())
            .await
            .map_err(|_| ProxyError::UpstreamTimeout(route.upstream.request_timeout))?
            .map_err(|e| ProxyError::UpstreamUnreachable(format!("reading the answer: {e}")))?
            .to_bytes(),
    )
}

/// The caller's body, whole, up to `max` bytes. The fast path's body is one
/// buffer already: it is taken as it is, with no list to collect it into.
async fn whole<B: CallerBody>(body: B, max: u64) -> Result<Bytes, ProxyError> {
    let mut body = std::pin::pin!(Limited::new(body, max as usize));
    let mut first = Bytes::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(e, max))?;
        if let Ok(data) = frame.into_data() {
            if !data.is_empty() {
                first = data;
                break;
            }
        }
    }
    if body.is_end_stream() {
        return Ok(first);
    }
    let rest = body
        .collect()
        .await
        .map_err(|e| body_error(e, max))?
        .to_bytes();
    if first.is_empty() {
        return Ok(rest);
    }
    let mut all = bytes::BytesMut::with_capacity(first.len() + rest.len());
    all.extend_from_slice(&first);
    all.extend_from_slice(&rest);
    Ok(all.freeze())
}

fn body_error(e: Box<dyn std::error::Error + Send + Sync>, max: u64) -> ProxyError {
    if e.is::<http_body_util::LengthLimitError>() {
        ProxyError::BodyTooLarge(max)
    } else {
        ProxyError::BadRequestBody(format!("the request body could not be read: {e}"))
    }
}

/// A response countersign makes itself (e.g. a kind answering locally).
pub fn local_json(
    status: StatusCode,
    headers: Vec<(HeaderName, String)>,
    body: String,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            resp.headers_mut().append(name, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_is_read_whole_however_it_is_framed() {
        use http_body::Frame;
        type Chunks = Vec<Result<Frame<Bytes>, std::io::Error>>;
        let stream =
            |frames: Chunks| http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let data = |s: &'static str| Ok(Frame::data(Bytes::from_static(s.as_bytes())));
        // One buffer, as the fast path hands it: the same bytes, not a copy.
        let one = Bytes::from_static(b"hello");
        let got = whole(Full::new(one.clone()), 100).await.unwrap();
        assert_eq!(got.as_ptr(), one.as_ptr());
        // Several frames, empty ones and trailers among them.
        let frames = vec![
            data(""),
            data("he"),
            data("ll"),
            Ok(Frame::trailers(HeaderMap::new())),
            data("o"),
        ];
        assert_eq!(whole(stream(frames), 100).await.unwrap(), "hello");
        assert_eq!(whole(Full::new(Bytes::new()), 100).await.unwrap(), "");
        // Over the limit, in one frame or in several.
        let e = whole(Full::new(Bytes::from_static(b"0123456789")), 4).await;
        assert_eq!(e.err().map(|e| e.code()), Some("body_too_large"));
        let e = whole(stream(vec![data("012"), data("345")]), 4).await;
        assert_eq!(e.err().map(|e| e.code()), Some("body_too_large"));
        // A body that fails is the caller's error, not a hang or a panic.
        let broken = stream(vec![data("a"), Err(std::io::Error::other("reset"))]);
        let e = whole(broken, 100).await;
        assert_eq!(e.err().map(|e| e.code()), Some("bad_request_body"));
    }

    #[test]
    fn splits_route_and_rest() {
        assert_eq!(split_route("/xrtc/v1/item/get"), ("xrtc", "/v1/item/get"));
        assert_eq!(split_route("/xrtc"), ("xrtc", "/"));
        assert_eq!(split_route("/xrtc/"), ("xrtc", "/"));
        assert_eq!(split_route("/"), ("", "/"));
    }
}
