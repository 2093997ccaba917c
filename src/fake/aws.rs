//! A strict fake of AWS for the `aws` kind: SigV4 verified from the request
//! as received (`sigv4.rs`, pinned by the vendored aws-c-auth suite), S3
//! object calls in path style (`s3.rs`), a DynamoDB-style JSON API
//! (`dynamo.rs`) and STS `AssumeRoleWithWebIdentity` (`sts.rs`), sharing one
//! credential table so credentials STS issues work on S3 and the JSON API.
//!
//! One fake, one region, three routes, chosen per request:
//! - STS: `/` with an `Action` parameter (query, or a form body) and no
//!   `X-Amz-Target`. Unsigned, as in AWS; any signature is ignored.
//! - The JSON API: any request with `X-Amz-Target`; signing name
//!   [`Config::json_service`] (`dynamodb`), general URI rules.
//! - Everything else: S3 path-style calls; signing name [`Config::service`]
//!   (`s3`, hence S3's URI rule and required `x-amz-content-sha256`).
//!
//! Stricter than AWS where the `aws` kind's contract is at stake: every
//! `x-amz-*` header must be signed on both routes (S3's HeadersNotSigned
//! rule; `x-amz-security-token` may be exempted, [`Config::allow_unsigned_token`]),
//! and on the JSON route an `x-amz-content-sha256`, when sent, must be the
//! body's hash. `aws-chunked` payloads (`STREAMING-…`, what botocore sends
//! for PutObject over HTTPS unless `request_checksum_calculation` is
//! `when_required`) are refused with 501, a PUT without `Content-Length`
//! with 411, as S3 does.
//!
//! Errors are AWS's shapes: S3 XML `<Error><Code>…`, JSON
//! `{"__type":…,"message":…}` (400, as DynamoDB answers), STS
//! `<ErrorResponse><Error><Type>Sender</Type>…`. `GET /_fake/stats` shows
//! the journal, STS calls, authentication failures and the last refusal's
//! precise reason (AWS's own messages are deliberately vaguer).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use countersign::fake::aws::{Config, Fake};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let fake = Fake::new(Config::default());
//! tokio::spawn(fake.clone().serve(listener, None, std::future::pending()));
//! # Ok(()) }
//! ```

mod auth;
mod codec;
mod dynamo;
mod s3;
mod sigv4;
mod sts;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use rand::distr::{Alphanumeric, SampleString};
use tokio::net::TcpListener;

use super::{serve_with, Body, Journal, Recorded};
use auth::{Denial, Entry, Policy};
use sigv4::{Received, UriRule};

/// The demo access key (AKIA-style: long-term credentials).
pub const DEMO_ACCESS_KEY_ID: &str = "AKIACOUNTERSIGNDEMO1";
/// The demo secret: 40 characters, with the `/` and `+` real secrets carry.
pub const DEMO_SECRET_ACCESS_KEY: &str = "cSdemo/Secret+AccessKey0123456789abcdefX";
pub const DEMO_REGION: &str = "us-east-1";
/// A role the demo web identity token may assume through STS.
pub const DEMO_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/countersign-demo";
pub const DEMO_WEB_IDENTITY_TOKEN: &str = "countersign-demo-web-identity-token";

/// Long-term (or fixed temporary) credentials the fake accepts.
#[derive(Clone)]
pub struct StaticCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When set, requests must carry it in a signed `x-amz-security-token`.
    pub session_token: Option<String>,
}

/// A web identity token STS exchanges for credentials of one role.
#[derive(Clone)]
pub struct WebIdentity {
    pub role_arn: String,
    pub token: String,
}

#[derive(Clone)]
pub struct Config {
    pub region: String,
    /// Signing name of the S3 route (requests without `X-Amz-Target`).
    pub service: String,
    /// Signing name of the JSON route (requests with `X-Amz-Target`).
    pub json_service: String,
    pub credentials: Vec<StaticCredential>,
    /// (role ARN, token) pairs `AssumeRoleWithWebIdentity` accepts.
    pub web_identities: Vec<WebIdentity>,
    /// Life of credentials STS issues (a `DurationSeconds` is validated, not used).
    pub credential_lifetime: Duration,
    /// Accepted distance between `x-amz-date` and the fake's clock, both ways.
    pub skew: Duration,
    /// A fixed clock for tests (`Fake::set_clock` moves it); `None`: the system clock.
    pub clock: Option<SystemTime>,
    /// Accept an `x-amz-security-token` left out of the signature (AWS IoT
    /// style; aws-c-auth's `omit_session_token`). Off: it must be signed.
    pub allow_unsigned_token: bool,
    /// Largest request body read; a larger one is refused with 413.
    pub max_body: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: DEMO_REGION.into(),
            service: "s3".into(),
            json_service: "dynamodb".into(),
            credentials: vec![StaticCredential {
                access_key_id: DEMO_ACCESS_KEY_ID.into(),
                secret_access_key: DEMO_SECRET_ACCESS_KEY.into(),
                session_token: None,
            }],
            web_identities: vec![WebIdentity {
                role_arn: DEMO_ROLE_ARN.into(),
                token: DEMO_WEB_IDENTITY_TOKEN.into(),
            }],
            credential_lifetime: Duration::from_secs(3600),
            skew: Duration::from_secs(15 * 60),
            clock: None,
            allow_unsigned_token: false,
            max_body: 16 << 20,
        }
    }
}

impl std::fmt::Debug for StaticCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl std::fmt::Debug for WebIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebIdentity")
            .field("role_arn", &self.role_arn)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("region", &self.region)
            .field("service", &self.service)
            .field("json_service", &self.json_service)
            .field("credentials", &self.credentials)
            .field("web_identities", &self.web_identities)
            .field("credential_lifetime", &self.credential_lifetime)
            .field("skew", &self.skew)
            .field("clock", &self.clock)
            .field("allow_unsigned_token", &self.allow_unsigned_token)
            .field("max_body", &self.max_body)
            .finish()
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Every request; `rejected` counts refusals (authentication, malformed
    /// or unsupported requests, STS refusals), not answers about state
    /// such as `NoSuchKey`.
    #[serde(flatten)]
    pub journal: Journal,
    /// `AssumeRoleWithWebIdentity` calls, accepted or not.
    pub sts_calls: u64,
    /// Credentials STS issued.
    pub sts_issued: u64,
    /// Requests refused by SigV4 authentication (signature, clock, key, token, payload hash).
    pub auth_failures: u64,
    /// The precise reason of the last refusal.
    pub last_rejection: Option<String>,
}

/// An answer and, when it refuses the request, why.
struct Reply {
    resp: Response<Body>,
    /// `Some` for a refusal: the precise reason for the stats.
    refusal: Option<String>,
    auth_failure: bool,
}

impl Reply {
    fn ok(resp: Response<Body>) -> Self {
        Reply {
            resp,
            refusal: None,
            auth_failure: false,
        }
    }

    fn refused(resp: Response<Body>, reason: impl Into<String>) -> Self {
        Reply {
            resp,
            refusal: Some(reason.into()),
            auth_failure: false,
        }
    }

    fn denied(resp: Response<Body>, denial: &Denial) -> Self {
        Reply {
            resp,
            refusal: Some(denial.reason()),
            auth_failure: true,
        }
    }
}

fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// AWS request ids: 16 uppercase alphanumerics, as S3 prints them.
fn request_id() -> String {
    Alphanumeric
        .sample_string(&mut rand::rng(), 16)
        .to_ascii_uppercase()
}

/// Keeps session and web identity tokens out of the journal (and so out of
/// `/_fake/stats`); their presence stays visible.
fn redact(rec: &mut Recorded) {
    for (name, value) in &mut rec.headers {
        if name == "x-amz-security-token" {
            *value = "<redacted>".into();
        }
    }
    for text in [&mut rec.body, &mut rec.path_and_query] {
        if let Some(start) = text.find("WebIdentityToken=") {
            let from = start + "WebIdentityToken=".len();
            let to = text[from..].find('&').map_or(text.len(), |i| from + i);
            text.replace_range(from..to, "<redacted>");
        }
    }
}

/// Everything behind the fake's one lock.
#[derive(Default)]
struct State {
    /// Static credentials and those STS issued (kept after expiry, so a late
    /// request gets `ExpiredToken` rather than `InvalidAccessKeyId`).
    credentials: HashMap<String, Entry>,
    s3: s3::Store,
    tables: dynamo::Tables,
    stats: Stats,
    /// The fixed clock, when tests pin one.
    clock: Option<SystemTime>,
}

#[derive(Clone)]
pub struct Fake {
    cfg: Arc<Config>,
    state: Arc<Mutex<State>>,
}

impl Fake {
    pub fn new(cfg: Config) -> Self {
        let credentials = cfg
            .credentials
            .iter()
            .map(|c| {
                let entry = Entry {
                    secret: c.secret_access_key.clone(),
                    token: c.session_token.clone(),
                    expires: None,
                };
                (c.access_key_id.clone(), entry)
            })
            .collect();
        let state = State {
            credentials,
            clock: cfg.clock,
            ..State::default()
        };
        Fake {
            cfg: Arc::new(cfg),
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Pins (or with `None` releases) the fake's clock: `x-amz-date` skew and
    /// credential expiry are judged by it.
    pub fn set_clock(&self, now: Option<SystemTime>) {
        self.lock().clock = now;
    }

    fn now(&self) -> SystemTime {
        self.lock().clock.unwrap_or_else(SystemTime::now)
    }

    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        serve_with(listener, tls, shutdown, move |_, req| {
            let fake = self.clone();
            async move { fake.handle(req).await }
        })
        .await
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if parts.method == Method::GET && parts.uri.path() == "/_fake/stats" {
            let json = serde_json::to_vec(&self.stats()).unwrap_or_default();
            return response(StatusCode::OK, "application/json", json);
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let body = match declared {
            Some(n) if n > self.cfg.max_body as u64 => None,
            _ => Limited::new(body, self.cfg.max_body)
                .collect()
                .await
                .ok()
                .map(|b| b.to_bytes()),
        };
        self.answer(&parts, body)
    }

    /// Routes one request whose body was read (`None`: it was too large) and
    /// records it.
    fn answer(&self, parts: &http::request::Parts, body: Option<Bytes>) -> Response<Body> {
        let reply = match &body {
            Some(body) => self.route(parts, body),
            None => Reply::refused(
                s3::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "EntityTooLarge",
                    "Your proposed upload exceeds the maximum allowed size",
                    &[("MaxSizeAllowed", self.cfg.max_body.to_string())],
                ),
                format!("body over {} bytes", self.cfg.max_body),
            ),
        };
        let body = body.unwrap_or_default();
        // The journal keeps the start of a body: objects may be megabytes.
        let mut rec = Recorded::new(
            parts,
            &body[..body.len().min(4096)],
            reply.resp.status().as_u16(),
        );
        redact(&mut rec);
        let mut state = self.lock();
        let stats = &mut state.stats;
        stats.journal.record(rec, reply.refusal.is_some());
        stats.auth_failures += u64::from(reply.auth_failure);
        if reply.refusal.is_some() {
            stats.last_rejection = reply.refusal;
        }
        reply.resp
    }

    fn route(&self, parts: &http::request::Parts, body: &Bytes) -> Reply {
        let mut headers: Vec<(String, Vec<u8>)> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        // HTTP/2 carries the host as :authority, which SigV4 signs as `host`.
        if !parts.headers.contains_key(header::HOST) {
            if let Some(a) = parts.uri.authority() {
                headers.push(("host".into(), a.as_str().as_bytes().to_vec()));
            }
        }
        let req = Received {
            method: parts.method.as_str(),
            path: parts.uri.path().as_bytes(),
            query: parts.uri.query().unwrap_or("").as_bytes(),
            headers: &headers,
            body,
        };
        if let Some(params) = sts::params(&req) {
            return self.sts(&params);
        }
        if req.values("x-amz-target").next().is_some() {
            if let Err(d) = self.authenticate(&req, &self.cfg.json_service) {
                return Reply::denied(dynamo::denial(&d), &d);
            }
            let now = self.now();
            return dynamo::handle(&mut self.lock().tables, &req, now);
        }
        if let Err(d) = self.authenticate(&req, &self.cfg.service) {
            return Reply::denied(s3::denial(&d, &req), &d);
        }
        let now = self.now();
        s3::handle(&mut self.lock().s3, &req, &self.cfg, now)
    }

    fn authenticate(&self, req: &Received<'_>, service: &str) -> Result<(), Denial> {
        let now = self.now();
        let policy = Policy {
            region: &self.cfg.region,
            service,
            rule: UriRule::for_service(service),
            skew: self.cfg.skew,
            now,
            allow_unsigned_token: self.cfg.allow_unsigned_token,
        };
        auth::authenticate(req, &policy, |akid| {
            self.lock().credentials.get(akid).cloned()
        })
    }

    fn sts(&self, params: &[(String, String)]) -> Reply {
        let now = self.now();
        self.lock().stats.sts_calls += 1;
        let call = match sts::validate(params, &self.cfg.web_identities) {
            Ok(call) => call,
            Err(e) => {
                let reason = format!("STS {}: {}", e.code, e.message);
                return Reply::refused(sts::error(&e), reason);
            }
        };
        let issued = sts::Issued::new(now + self.cfg.credential_lifetime);
        let mut state = self.lock();
        // Expired credentials are remembered for an hour, then forgotten.
        let forget = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
        state
            .credentials
            .retain(|_, e| e.expires.is_none_or(|x| x > forget));
        state.credentials.insert(
            issued.access_key_id.clone(),
            Entry {
                secret: issued.secret_access_key.clone(),
                token: Some(issued.session_token.clone()),
                expires: Some(issued.expiration),
            },
        );
        state.stats.sts_issued += 1;
        Reply::ok(sts::success(&call, &issued))
    }
}
