//! The one place where countersign's own errors become responses:
//! status + `x-countersign-error: <code>` + `{"error":{"code","message","route"}}`
//! (README, "Errors"). Upstream errors never pass through here: they reach
//! the caller unchanged.
//!
//! The modules below the pipeline have small error enums of their own
//! (`upstream::SendError`, `session::LoginError`, `limits::LimitError`,
//! `state::StateError`), each converted into a [`ProxyError`] with `From`
//! where it is defined, its source kept. A [`ProxyError`] is classified once
//! here: who can fix it ([`ProxyError::class`]) and which metric counts it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The underlying error of a failure, kept for logs (`{:#}` shows the chain).
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

/// Who can fix an error (pingora's error source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The caller's request or credentials: 4xx.
    Caller,
    /// The upstream, or the way to it (including its login): 5xx.
    Upstream,
    /// countersign itself or its state store.
    Internal,
}

/// The `class` label of `countersign_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamClass {
    Unreachable,
    Timeout,
    LoginFailed,
    LoginThrottled,
    KeyRotation,
}

impl UpstreamClass {
    pub fn label(self) -> &'static str {
        match self {
            UpstreamClass::Unreachable => "unreachable",
            UpstreamClass::Timeout => "timeout",
            UpstreamClass::LoginFailed => "login_failed",
            UpstreamClass::LoginThrottled => "login_throttled",
            UpstreamClass::KeyRotation => "key_rotation",
        }
    }
}

/// An error made by countersign, classified by who can fix it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("no route is named \"{0}\"; the first path segment must be a configured route")]
    UnknownRoute(String),
    #[error("missing or unknown client token; send Authorization: Bearer <token> or x-countersign-token")]
    UnauthorizedClient,
    #[error("client \"{0}\" may not use this route")]
    ForbiddenRoute(String),
    #[error("request body exceeds max_body ({0} bytes)")]
    BodyTooLarge(u64),
    #[error("{0}")]
    BadRequest(String),
    /// A request whose framing cannot be trusted (RFC 9112: no `Host` in
    /// HTTP/1.1, two `Host` fields, `chunked` applied twice): refused, and
    /// its connection closed, since where its body ends is in doubt.
    #[error("{0}")]
    BadFraming(String),
    #[error("{0}")]
    BadRequestBody(String),
    #[error("the request body did not arrive within {}s of its head (body_read_timeout)", .0.as_secs_f64())]
    BodyTimeout(Duration),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("rate limit reached: a permit would take longer than the route's wait; retry after {}s", secs(*.0))]
    RateLimited(Duration),
    #[error("monthly quota of {limit} requests is used up; it renews at the start of the next UTC month")]
    QuotaExhausted { limit: u64, retry_after: Duration },
    #[error("login to the upstream failed: {0}")]
    LoginFailed(String),
    #[error("the next login is not allowed before {}s (login_interval), past this request's deadline", secs(*.0))]
    LoginThrottled(Duration),
    #[error("upstream unreachable: {what}")]
    UpstreamUnreachable {
        /// What failed, in words an operator can act on.
        what: String,
        #[source]
        source: Option<Source>,
    },
    #[error("upstream did not answer within {}s (request_timeout)", .0.as_secs_f64())]
    UpstreamTimeout(Duration),
    #[error("upstream was silent for {}s after the request was sent (read_timeout)", .0.as_secs_f64())]
    UpstreamReadTimeout(Duration),
    #[error("key rotation: {0}")]
    KeyRotation(String),
    #[error("state store failed: {0}")]
    State(#[source] Source),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::UnknownRoute(_) => "unknown_route",
            ProxyError::UnauthorizedClient => "unauthorized_client",
            ProxyError::ForbiddenRoute(_) => "forbidden_route",
            ProxyError::BodyTooLarge(_) => "body_too_large",
            ProxyError::BadRequest(_) | ProxyError::BadFraming(_) => "bad_request",
            ProxyError::BodyTimeout(_) => "body_timeout",
            ProxyError::BadRequestBody(_) => "bad_request_body",
            ProxyError::MethodNotAllowed(_) => "method_not_allowed",
            ProxyError::RateLimited(_) => "rate_limited",
            ProxyError::QuotaExhausted { .. } => "quota_exhausted",
            ProxyError::LoginFailed(_) => "login_failed",
            ProxyError::LoginThrottled(_) => "login_throttled",
            ProxyError::UpstreamUnreachable { .. } => "upstream_unreachable",
            ProxyError::UpstreamTimeout(_) | ProxyError::UpstreamReadTimeout(_) => {
                "upstream_timeout"
            }
            ProxyError::KeyRotation(_) => "key_rotation_failed",
            ProxyError::State(_) => "state_unavailable",
            ProxyError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownRoute(_) => StatusCode::NOT_FOUND,
            ProxyError::UnauthorizedClient => StatusCode::UNAUTHORIZED,
            ProxyError::ForbiddenRoute(_) => StatusCode::FORBIDDEN,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRequest(_)
            | ProxyError::BadFraming(_)
            | ProxyError::BadRequestBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::RateLimited(_) | ProxyError::QuotaExhausted { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ProxyError::LoginFailed(_)
            | ProxyError::UpstreamUnreachable { .. }
            | ProxyError::KeyRotation(_) => StatusCode::BAD_GATEWAY,
            ProxyError::LoginThrottled(_) | ProxyError::State(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamTimeout(_) | ProxyError::UpstreamReadTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// An upstream that could not be reached or read, with what failed.
    pub fn unreachable(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ProxyError {
        let source: Box<dyn std::error::Error + Send + Sync> = source.into();
        let what = format!("{}: {source}", what.into());
        ProxyError::UpstreamUnreachable {
            what,
            source: Some(Arc::from(source)),
        }
    }

    /// Who can fix it.
    pub fn class(&self) -> Class {
        match self {
            ProxyError::UnknownRoute(_)
            | ProxyError::UnauthorizedClient
            | ProxyError::ForbiddenRoute(_)
            | ProxyError::BodyTooLarge(_)
            | ProxyError::BadRequest(_)
            | ProxyError::BadFraming(_)
            | ProxyError::BadRequestBody(_)
            | ProxyError::BodyTimeout(_)
            | ProxyError::MethodNotAllowed(_)
            | ProxyError::RateLimited(_)
            | ProxyError::QuotaExhausted { .. } => Class::Caller,
            ProxyError::LoginFailed(_)
            | ProxyError::LoginThrottled(_)
            | ProxyError::UpstreamUnreachable { .. }
            | ProxyError::UpstreamTimeout(_)
            | ProxyError::UpstreamReadTimeout(_)
            | ProxyError::KeyRotation(_) => Class::Upstream,
            ProxyError::State(_) | ProxyError::Internal(_) => Class::Internal,
        }
    }

    /// The class it counts under in `countersign_upstream_errors_total`, if any.
    pub fn upstream_class(&self) -> Option<UpstreamClass> {
        Some(match self {
            ProxyError::UpstreamUnreachable { .. } => UpstreamClass::Unreachable,
            ProxyError::UpstreamTimeout(_) | ProxyError::UpstreamReadTimeout(_) => {
                UpstreamClass::Timeout
            }
            ProxyError::LoginFailed(_) => UpstreamClass::LoginFailed,
            ProxyError::LoginThrottled(_) => UpstreamClass::LoginThrottled,
            ProxyError::KeyRotation(_) => UpstreamClass::KeyRotation,
            _ => return None,
        })
    }

    /// Counted in `countersign_rate_limited_total`.
    pub fn is_rate_limit(&self) -> bool {
        matches!(
            self,
            ProxyError::RateLimited(_) | ProxyError::QuotaExhausted { .. }
        )
    }

    /// The cut-off it is counted as (`countersign_cutoffs_total{reason}`)
    /// and logged as (`cutoff=`), if it is one.
    pub fn cutoff(&self) -> Option<crate::metrics::Cutoff> {
        use crate::metrics::Cutoff;
        match self {
            ProxyError::BadFraming(_) => Some(Cutoff::BadFraming),
            ProxyError::BodyTimeout(_) => Some(Cutoff::BodyTimeout),
            ProxyError::UpstreamReadTimeout(_) => Some(Cutoff::UpstreamReadTimeout),
            _ => None,
        }
    }

    /// Whether the caller may try again later with the same request (pingora's retry class).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProxyError::RateLimited(d)
            | ProxyError::LoginThrottled(d)
            | ProxyError::QuotaExhausted { retry_after: d, .. } => Some(*d),
            _ => None,
        }
    }

    /// The response the caller sees. `route` is empty when no route was matched.
    pub fn into_response(&self, route: &str) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string(), "route": route }
        });
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("x-countersign-error", HeaderValue::from_static(self.code()));
        if let Some(d) = self.retry_after() {
            h.insert(RETRY_AFTER, HeaderValue::from(secs(d)));
        }
        // The body's end is unknown (a stalled body, doubtful framing): the
        // connection cannot carry another request.
        if matches!(self, ProxyError::BodyTimeout(_) | ProxyError::BadFraming(_)) {
            h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// Whole seconds for Retry-After: rounded up, at least 1.
pub fn secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn error_response_shape() {
        let e = ProxyError::RateLimited(Duration::from_millis(1500));
        let r = e.into_response("xrtc");
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["x-countersign-error"], "rate_limited");
        assert_eq!(r.headers()["retry-after"], "2");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "rate_limited");
        assert_eq!(v["error"]["route"], "xrtc");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry after 2s"));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(secs(Duration::ZERO), 1);
        assert_eq!(secs(Duration::from_secs(3)), 3);
        assert_eq!(secs(Duration::from_millis(3001)), 4);
    }
}
