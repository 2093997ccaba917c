//! The phases of one request on its route, each a plain async fn, in the
//! order [`run`] calls them. The one replay is an explicit branch of `run`.

use std::borrow::Cow;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderMap, Request, Response};
use http_body::Body as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Full, Limited};
use tokio::time::Instant;

use super::body::{read_all, whole, CallerBody};
use super::{split_route, RequestLog, RespBody};
use crate::error::ProxyError;
use crate::gateway::{token_digest, Route, Snapshot};
use crate::headers;
use crate::secret::Secret;
use crate::session::{LoginAttempt, Session, SessionSlot};
use crate::upstream::{BoxError, UpBody, Upstream};
use crate::vocab::{BodyOverLimit, Buffered, Forward, Need, Outgoing, Plan, Then, Transport};

/// Error bodies worth reading to recognise an expired session are small.
const PEEK_MAX: u64 = 64 * 1024;
/// Answers a kind inspects whole (key rotations) are small; a bigger one is refused.
const INSPECT_MAX: usize = 1024 * 1024;
/// Login answers are small; a bigger one is refused rather than held.
const LOGIN_BODY_MAX: usize = 256 * 1024;

/// The route's phases for one request. An error that is a cut-off (a body
/// that did not come in time, an upstream silent past `read_timeout`) is
/// noted for the log line and the metrics where it can arise: reading the
/// body, and each exchange with the upstream.
pub(super) async fn run<B: CallerBody>(
    snap: &Snapshot,
    route: &Route,
    req: Request<B>,
    started: Instant,
    log: &mut RequestLog,
) -> Result<Response<RespBody>, ProxyError> {
    let deadline = started + route.upstream().request_timeout;
    let (parts, body) = req.into_parts();
    let call = admit(snap, route, &parts, log)?;
    let forward = match plan(route, &parts, &call, deadline, log).await? {
        Planned::Answer(resp) => return Ok(resp.map(Either::Left)),
        Planned::Forward(f) => f,
    };
    let slot = match session_for(route, forward.session) {
        Ok(slot) => slot,
        Err(answer) => return Ok(answer.map(Either::Left)),
    };
    let ctx = Ctx {
        route,
        parts: &parts,
        call: &call,
        upstream: &route.upstreams[forward.endpoint.min(route.upstreams.len() - 1)],
        slot,
        then: &forward.then,
        deadline,
        strip_auth: !snap.clients.is_empty(),
    };
    let mut body = read_body(snap, &parts, body, forward.buffer_body)
        .await
        .map_err(|e| noted(log, e))?;
    check_signable(&ctx, &body)?;
    // The exchange is filled in place by the phases (answers are large:
    // moving them from phase to phase cost more than the phases).
    let mut ex = Exchange::default();
    attempt(&ctx, &mut body, &mut ex, log)
        .await
        .map_err(|e| noted(log, e))?;
    let outcome = classify(&ctx, &mut ex, body.replayable(), log)
        .await
        .map_err(|e| noted(log, e))?;
    if outcome == Outcome::Replay {
        // The session was rejected: one new login, one replay, before any
        // byte reached the caller. A second rejection goes to the caller.
        log.replayed = true;
        tracing::debug!(route = %route.name, "session rejected upstream; logging in again to replay once");
        attempt(&ctx, &mut body, &mut ex, log)
            .await
            .map_err(|e| noted(log, e))?;
        classify(&ctx, &mut ex, false, log)
            .await
            .map_err(|e| noted(log, e))?;
    }
    finish(&ctx, ex).await.map_err(|e| noted(log, e))
}

/// Notes a cut-off for the log line and the metrics.
fn noted(log: &mut RequestLog, e: ProxyError) -> ProxyError {
    log.cutoff = e.cutoff();
    e
}

/// What every phase after `plan` reads.
struct Ctx<'a> {
    route: &'a Route,
    parts: &'a Parts,
    call: &'a Call<'a>,
    /// The upstream the plan picked (the route's, or one of the kind's endpoints).
    upstream: &'a Upstream,
    slot: Option<&'a SessionSlot>,
    then: &'a Then,
    deadline: Instant,
    /// With `[clients]`, the caller's `Authorization` is its token to us.
    strip_auth: bool,
}

/// A call admitted to its route: the canonical path it names, which is both
/// classified and forwarded.
struct Call<'a> {
    rest: Cow<'a, str>,
}

impl Call<'_> {
    fn path_and_query(&self, parts: &Parts) -> String {
        match parts.uri.query() {
            Some(q) => format!("{}?{q}", self.rest),
            None => self.rest.to_string(),
        }
    }
}

/// The caller's token (when `[clients.*]` exist) and the canonical path.
fn admit<'a>(
    snap: &Snapshot,
    route: &Route,
    parts: &'a Parts,
    log: &mut RequestLog,
) -> Result<Call<'a>, ProxyError> {
    log.client = check_client(snap, &route.name, &parts.headers)?;
    let (_, raw_rest) = split_route(parts.uri.path());
    let rest = headers::canonical_path(raw_rest, route.kind.embeds_urls())?;
    Ok(Call { rest })
}

/// The caller's token: 401 without a known token, 403 for a route the
/// client may not use.
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

enum Planned {
    /// countersign answers itself.
    Answer(Box<Response<Full<Bytes>>>),
    Forward(Forward),
}

/// The kind classifies the call (after any work it must finish first).
async fn plan(
    route: &Route,
    parts: &Parts,
    call: &Call<'_>,
    deadline: Instant,
    log: &mut RequestLog,
) -> Result<Planned, ProxyError> {
    let kind = route.kind.as_ref();
    if let Some(prepare) = kind.prepare() {
        prepare.await?;
    }
    match kind.plan(&parts.method, &call.rest, &parts.headers)? {
        Plan::Local(resp) => Ok(Planned::Answer(resp)),
        Plan::LocalWithSession => {
            let slot = route.session.as_deref().ok_or_else(|| {
                ProxyError::Internal("a local answer needs a session slot".into())
            })?;
            ensure_session(slot, route, deadline, log).await?;
            Ok(Planned::Answer(Box::new(kind.answer_with_session())))
        }
        Plan::Forward(f) => Ok(Planned::Forward(f)),
    }
}

/// The session slot the plan needs, or the answer it gives without one.
fn session_for(
    route: &Route,
    need: Need,
) -> Result<Option<&SessionSlot>, Box<Response<Full<Bytes>>>> {
    match need {
        Need::Nothing => Ok(None),
        Need::Session => Ok(route.session.as_deref()),
        Need::SessionIfHeld(answer) => match route.session.as_deref() {
            Some(slot) if slot.is_held() => Ok(Some(slot)),
            _ => Err(answer),
        },
    }
}

/// The caller's body as the plan needs it.
enum InBody {
    /// Read whole (a signature covers it, or it may be replayed).
    Buffered(Bytes),
    /// Streamed upstream, capped at `max_body`; taken by the first attempt.
    Streamed(Option<BoxBody<Bytes, BoxError>>),
}

impl InBody {
    fn replayable(&self) -> bool {
        matches!(self, InBody::Buffered(_))
    }
}

/// A declared length over `max_body` is refused before anything is read;
/// a buffered body is read whole, a streamed one capped on the way.
async fn read_body<B: CallerBody>(
    snap: &Snapshot,
    parts: &Parts,
    body: B,
    buffer: bool,
) -> Result<InBody, ProxyError> {
    if headers::content_length(&parts.headers).is_some_and(|n| n > snap.max_body) {
        return Err(ProxyError::BodyTooLarge(snap.max_body));
    }
    if buffer {
        return Ok(InBody::Buffered(whole(body, snap.max_body).await?));
    }
    let max = snap.max_body;
    let limited = Limited::new(body, max as usize)
        .map_err(move |e| -> BoxError {
            if e.is::<http_body_util::LengthLimitError>() {
                Box::new(BodyOverLimit(max))
            } else {
                e
            }
        })
        .boxed();
    Ok(InBody::Streamed(Some(limited)))
}

/// The request as it goes upstream, before the kind signs it.
fn outgoing(ctx: &Ctx<'_>, body: Option<Bytes>) -> Outgoing {
    Outgoing {
        method: ctx.parts.method.clone(),
        path_and_query: ctx.call.path_and_query(ctx.parts),
        headers: headers::outgoing(
            &ctx.parts.headers,
            ctx.route.kind.owned_headers(),
            ctx.strip_auth,
        ),
        body,
    }
}

/// A request its kind cannot sign (a body that does not parse) must not
/// cost a login first: on a cold session, sign a throwaway copy.
fn check_signable(ctx: &Ctx<'_>, body: &InBody) -> Result<(), ProxyError> {
    if ctx.slot.is_none_or(|slot| slot.is_held()) {
        return Ok(());
    }
    let buffered = match body {
        InBody::Buffered(b) => Some(b.clone()),
        InBody::Streamed(_) => None,
    };
    let mut trial = outgoing(ctx, buffered);
    ctx.route.kind.sign(&mut trial, Some(&Secret::new("-")))
}

/// One exchange with the upstream, filled in place: the answer's head (and
/// its body, on the wire or read), the session the request carried, and
/// the request itself where the kind inspects the answer.
#[derive(Default)]
struct Exchange {
    head: Option<http::response::Parts>,
    /// The body still on the wire.
    unread: Option<UpBody>,
    /// The body when it was read (a peeked error, an inspected answer).
    read: Option<Bytes>,
    session: Option<Session>,
    request: Option<Outgoing>,
}

/// Session, rate permit and quota unit, signature, send: one attempt.
async fn attempt(
    ctx: &Ctx<'_>,
    body: &mut InBody,
    ex: &mut Exchange,
    log: &mut RequestLog,
) -> Result<(), ProxyError> {
    let route = ctx.route;
    ex.session = match ctx.slot {
        Some(slot) => Some(ensure_session(slot, route, ctx.deadline, log).await?),
        None => None,
    };
    // `max_in_flight`: held until the answer's head is in, so requests
    // signed in turn reach the upstream in turn (nonces that must increase).
    let _turn = match &route.in_flight {
        Some(slots) => Some(
            tokio::time::timeout_at(ctx.deadline, slots.clone().acquire_owned())
                .await
                .map_err(|_| ProxyError::UpstreamTimeout(ctx.upstream.request_timeout))?
                .map_err(|_| ProxyError::Internal("the route's in-flight limit closed".into()))?,
        ),
        None => None,
    };
    route.limits.acquire(ctx.deadline).await?;
    let (buffered, stream) = match body {
        InBody::Buffered(b) => (Some(b.clone()), None),
        InBody::Streamed(s) => (None, s.take()),
    };
    let mut out = outgoing(ctx, buffered);
    // Timestamps are read now, after any wait for a session or a permit.
    let held = ex.session.as_ref().map(|s| &s.value);
    if route.kind.signs_async() {
        route.kind.sign_async(&mut out, held).await?;
    } else {
        route.kind.sign(&mut out, held)?;
    }
    if let (Some(slot), Some(s)) = (ctx.slot, &ex.session) {
        slot.touch(s.generation);
    }
    ex.request = matches!(ctx.then, Then::Inspect).then(|| out.clone());
    let (head, body) = ctx
        .upstream
        .send(out, stream, ctx.deadline)
        .await?
        .into_parts();
    log.upstream_status = Some(head.status.as_u16());
    ex.head = Some(head);
    ex.unread = Some(body);
    ex.read = None;
    Ok(())
}

/// What an answer means for the request.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The answer goes to the caller (after [`finish`]).
    Done,
    /// The upstream rejected the held session: log in again and send once more.
    Replay,
}

/// Reads what the answer says about the session and the route's limits;
/// an expired session means a replay when one is still allowed.
async fn classify(
    ctx: &Ctx<'_>,
    ex: &mut Exchange,
    replay_allowed: bool,
    log: &mut RequestLog,
) -> Result<Outcome, ProxyError> {
    let route = ctx.route;
    let kind = route.kind.as_ref();
    let (Some(head), Some(body)) = (ex.head.as_mut(), ex.unread.as_mut()) else {
        return Err(ProxyError::Internal("classify before attempt".into()));
    };
    // A plain success's header lines may pass on as they came: nothing
    // below reads them (h1's `NOTABLE` names the ones that would). Any
    // other answer is looked at through the map.
    if !head.status.is_success() || matches!(ctx.then, Then::Inspect) {
        crate::upstream::headers_into_map(&mut head.headers, body);
    }
    if let Some(hold) = route.limits.heed(head.status, &head.headers).await {
        tracing::warn!(route = %route.name, hold_s = hold.as_secs_f64(), "upstream asked to slow down; holding the route's requests");
    }
    headers::strip_response(&mut head.headers);
    let held = ex.session.as_ref().map(|s| &s.value);
    if let (Some(slot), Some(s)) = (ctx.slot, &ex.session) {
        // Read a small error body when the kind needs it to recognise an expiry.
        let small = body.size_hint().upper().is_some_and(|n| n <= PEEK_MAX);
        if small && kind.peek_body(head.status) {
            let timeout = ctx.upstream.request_timeout;
            let peeked = read_all(ex.unread.take(), ctx.deadline, timeout, PEEK_MAX as usize);
            ex.read = Some(peeked.await?);
        }
        let Some(head) = ex.head.as_mut() else {
            return Err(ProxyError::Internal("classify lost the head".into()));
        };
        if kind.session_expired(head.status, &head.headers, ex.read.as_deref()) {
            slot.invalidate(s.generation).await;
            if replay_allowed && !log.replayed {
                return Ok(Outcome::Replay);
            }
        } else if let Some(v) = kind.screen_answer(&mut head.headers, held) {
            slot.update(s.generation, v);
        }
    } else {
        kind.screen_answer(&mut head.headers, held);
    }
    Ok(Outcome::Done)
}

/// What a successful answer does to the route (a logout clears the
/// session; a key rotation is stored by the kind), then the response.
async fn finish(ctx: &Ctx<'_>, mut ex: Exchange) -> Result<Response<RespBody>, ProxyError> {
    let Some(mut head) = ex.head.take() else {
        return Err(ProxyError::Internal("finish before attempt".into()));
    };
    if head.status.is_success() {
        match (ctx.then, ex.request.take()) {
            (Then::ClearSession, _) => {
                if let Some(slot) = &ctx.route.session {
                    slot.clear().await;
                }
            }
            (Then::Inspect, Some(request)) => {
                let bytes = match ex.read.take() {
                    Some(b) => b,
                    None => {
                        let timeout = ctx.upstream.request_timeout;
                        read_all(ex.unread.take(), ctx.deadline, timeout, INSPECT_MAX).await?
                    }
                };
                let mut whole = Buffered {
                    status: head.status,
                    headers: std::mem::take(&mut head.headers),
                    body: bytes,
                };
                ctx.route.kind.inspect(&request, &mut whole).await?;
                head.headers = whole.headers;
                // The kind may have rewritten the body: the writer sets the new length.
                head.headers.remove(http::header::CONTENT_LENGTH);
                ex.read = Some(whole.body);
            }
            _ => {}
        }
    }
    let body = match (ex.read, ex.unread) {
        (_, Some(mut stream)) => {
            // Cut mid-body for the upstream's silence, it is counted there.
            stream.report_cut(ctx.route.metrics.answer_cut.clone());
            Either::Right(stream)
        }
        (bytes, None) => Either::Left(Full::new(bytes.unwrap_or_default())),
    };
    Ok(Response::from_parts(head, body))
}

/// The held session, logging in first if needed; records the login for the log line.
async fn ensure_session(
    slot: &SessionSlot,
    route: &Route,
    deadline: Instant,
    log: &mut RequestLog,
) -> Result<Session, ProxyError> {
    let mut login = LoginAttempt::None;
    let session = slot
        .ensure(
            deadline,
            route.kind.as_ref(),
            &RouteTransport(route),
            &mut login,
        )
        .await;
    if login != LoginAttempt::None {
        log.login = login;
    }
    Ok(session?)
}

/// How a login's requests reach the route's upstream: its rate permit and
/// quota first, like every request sent upstream.
struct RouteTransport<'a>(&'a Route);

impl Transport for RouteTransport<'_> {
    fn send(
        &self,
        out: Outgoing,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<Buffered, ProxyError>> {
        let route = self.0;
        Box::pin(async move {
            route.limits.acquire(deadline).await?;
            let answer = route
                .upstream()
                .send_buffered(out, deadline, LOGIN_BODY_MAX)
                .await?;
            route.limits.heed(answer.status, &answer.headers).await;
            Ok(answer)
        })
    }
}
