//! The request as it will be sent, a whole answer, and countersign's own answers.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Response, StatusCode};
use http_body_util::Full;

/// The request as it will be sent, before the kind signs it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: Method,
    /// Path relative to the upstream's base path, starting with '/', plus `?query`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    /// The buffered body when the plan asked for one; `None` means it streams.
    pub body: Option<Bytes>,
}

impl Outgoing {
    /// A POST with a body and headers (logins and other calls a kind makes itself).
    pub fn post(path: &str, headers: HeaderMap, body: impl Into<Bytes>) -> Outgoing {
        Outgoing {
            method: Method::POST,
            path_and_query: path.to_string(),
            headers,
            body: Some(body.into()),
        }
    }
}

/// A response the pipeline already holds entirely (login answers, peeked errors).
pub struct Buffered {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What a login gives the session machinery to hold: the value (a cookie
/// jar, a session id, a token, credentials), and for what it is issued.
#[derive(Debug, Clone)]
pub struct Credential {
    pub value: crate::secret::Secret,
    /// The upstream says it stops working after this (OAuth `expires_in`,
    /// STS `Expiration`); `None`: until the upstream rejects it.
    pub expires_in: Option<std::time::Duration>,
    /// The first request after this renews it (one renewal at a time; the
    /// others keep using it while it is still valid).
    pub renew_in: Option<std::time::Duration>,
}

impl Credential {
    /// A value held until the upstream rejects it (or it goes idle).
    pub fn held(value: crate::secret::Secret) -> Self {
        Credential {
            value,
            expires_in: None,
            renew_in: None,
        }
    }

    /// A value that expires in `expires_in`, renewed `refresh_before` ahead
    /// of that; at half its life when it lives no longer than that.
    pub fn expiring(
        value: crate::secret::Secret,
        expires_in: std::time::Duration,
        refresh_before: std::time::Duration,
    ) -> Self {
        let renew_in = if expires_in > refresh_before {
            expires_in - refresh_before
        } else {
            expires_in / 2
        };
        Credential {
            value,
            expires_in: Some(expires_in),
            renew_in: Some(renew_in),
        }
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

/// A caller's streamed body went over `max_body` (the limit, in bytes):
/// the error its stream ends with, so the upstream client can tell it from
/// a failure of the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("the request body exceeds max_body ({0} bytes)")]
pub struct BodyOverLimit(pub u64);

/// The caller's body did not arrive whole within `body_read_timeout` of
/// its head: the caller's failure, a 408, wherever it is found.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}s (body_read_timeout)", .0.as_secs_f64())]
pub struct BodyTimedOut(pub std::time::Duration);
