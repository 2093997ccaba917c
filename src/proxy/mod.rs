//! The request pipeline. [`handle`] finds the route, runs the phases of
//! [`phases`] and writes the request's log line and metrics; every
//! countersign error becomes a response in `error.rs`; upstream answers
//! pass through unchanged.
//!
//! The phases, in order (each a plain async fn in `phases.rs`):
//! `admit` (client token, canonical path) → `plan` (the kind classifies the
//! call) → `read_body` (buffered and capped only where the kind needs it) →
//! `attempt` (session, rate permit + quota unit, sign, send) → `classify`
//! (an expired session means [`phases::Outcome::Replay`], once) → `finish`
//! (clear the session, or let the kind inspect the answer) → stream back.

mod access;
mod body;
mod phases;

pub use access::{set_sink, AccessFormat, AccessSink};
pub use body::CallerBody;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use tokio::time::Instant;

use crate::error::{ProxyError, UpstreamClass};
use crate::gateway::{Gateway, Route};
use crate::headers;
use crate::metrics;
use crate::session::LoginAttempt;
use crate::upstream::UpBody;

/// What the caller gets back: our own small bodies, or the upstream's stream.
pub type RespBody = Either<Full<Bytes>, UpBody>;

/// The tower service hyper drives, one clone per connection.
#[derive(Clone)]
pub struct GatewayService(pub Arc<Gateway>);

impl<B: CallerBody> tower::Service<Request<B>> for GatewayService {
    type Response = Response<RespBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
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

/// A request the server refused before the pipeline could read it (its
/// body did not arrive in time, its framing is in doubt), carried as a
/// request extension: [`handle`] answers it with this error, logged and
/// counted like any other, without routing it.
#[derive(Clone, Debug)]
pub struct Refused(pub ProxyError);

/// What happened to one request, for its log line and metrics.
#[derive(Debug)]
pub(crate) struct RequestLog {
    pub client: Option<String>,
    pub upstream_status: Option<u16>,
    pub login: LoginAttempt,
    pub replayed: bool,
    /// The bound that cut the request short, if one did.
    pub cutoff: Option<metrics::Cutoff>,
}

impl RequestLog {
    /// This record's fields on the access line: one `key=value` each.
    fn access_fields(&self, line: &mut access::Line<'_>) {
        line.str("client", self.client.as_deref().unwrap_or("-"));
        line.opt_num("upstream_status", self.upstream_status.map(u64::from));
        line.str("login", self.login.as_str());
        line.bool("replay", self.replayed);
        line.opt_str("cutoff", self.cutoff.map(metrics::Cutoff::as_str));
    }
}

/// Serves one request: the route's phases, then the log line and metrics.
pub async fn handle<B: CallerBody>(gw: &Gateway, req: Request<B>) -> Response<RespBody> {
    let started = Instant::now();
    let snap = gw.snapshot.load_full();
    let method = req.method().clone();
    // A clone shares the URI's bytes: the route and path for the log line
    // borrow from it, with no allocation per request.
    let uri = req.uri().clone();
    let (route_name, path_for_log) = split_route(uri.path());
    let mut log = RequestLog {
        client: None,
        upstream_status: None,
        login: LoginAttempt::None,
        replayed: false,
        cutoff: None,
    };
    let known = snap.route(route_name);
    // Hostile shapes are refused before routing: an absolute-form URI's path
    // says nothing about which route the caller meant.
    let admitted = match req.extensions().get::<Refused>() {
        Some(Refused(e)) => Err(e.clone()),
        None => headers::check_form(&method, req.uri(), req.version()),
    };
    let result = match (admitted, known) {
        (Err(e), _) => {
            log.cutoff = e.cutoff();
            Err(e)
        }
        (Ok(()), None) => Err(ProxyError::UnknownRoute(route_name.to_string())),
        (Ok(()), Some(route)) => phases::run(&snap, route, req, started, &mut log).await,
    };
    let (resp, error) = match result {
        Ok(r) => (r, None),
        Err(e) => {
            tracing::debug!(route = %route_name, code = e.code(), error = %e, "countersign error");
            (e.into_response(route_name).map(Either::Left), Some(e))
        }
    };
    let took = started.elapsed();
    record(
        gw,
        known.map(|r| r.as_ref()),
        &resp,
        error.as_ref(),
        &log,
        took,
    );
    access::emit(|line| {
        line.str("route", route_name);
        line.str("method", method.as_str());
        line.str("path", path_for_log);
        line.num("status", u64::from(resp.status().as_u16()));
        line.opt_str("error", error.as_ref().map(ProxyError::code));
        line.millis("duration_ms", took);
        log.access_fields(line);
    });
    resp
}

/// The request's metrics; an error is classified once, by [`ProxyError`].
fn record(
    gw: &Gateway,
    known: Option<&Route>,
    resp: &Response<RespBody>,
    error: Option<&ProxyError>,
    log: &RequestLog,
    took: std::time::Duration,
) {
    let m = &gw.metrics;
    if let Some(c) = log.cutoff {
        m.cutoff(c);
    }
    // An unknown route name is the caller's text: never a label value.
    let route = known.map_or("", |r| r.name.as_str());
    // The common answer uses the route's own handles: no label lookup.
    if let Some(r) = known {
        r.metrics.duration.observe(took.as_secs_f64());
        if resp.status() == StatusCode::OK && !log.replayed && log.login == LoginAttempt::None {
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
    if log.replayed {
        m.replays.get_or_create(&label).inc();
    }
    if log.login != LoginAttempt::None {
        m.logins
            .get_or_create(&metrics::RouteResult {
                route: route.to_string(),
                result: log.login.as_str(),
            })
            .inc();
    }
    let Some(error) = error else { return };
    if error.is_rate_limit() {
        m.rate_limited.get_or_create(&label).inc();
    }
    if let Some(class) = error.upstream_class() {
        m.upstream_errors
            .get_or_create(&metrics::RouteClass {
                route: route.to_string(),
                class: UpstreamClass::label(class),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_route_and_rest() {
        assert_eq!(split_route("/xrtc/v1/item/get"), ("xrtc", "/v1/item/get"));
        assert_eq!(split_route("/xrtc"), ("xrtc", "/"));
        assert_eq!(split_route("/xrtc/"), ("xrtc", "/"));
        assert_eq!(split_route("/"), ("", "/"));
    }
}
