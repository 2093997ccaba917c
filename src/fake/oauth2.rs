//! A strict fake of an OAuth 2.0 authorization server (token endpoint) and a
//! resource server in one process, for the `oauth2` kind (client credentials,
//! RFC 6749 §4.4; bearer tokens, RFC 6750).
//!
//! - `POST /token` (`Config::token_path`): `grant_type=client_credentials`,
//!   the client authenticated by `client_secret_basic` (HTTP Basic whose id
//!   and secret are each `application/x-www-form-urlencoded` before base64,
//!   §2.3.1: `+` is a space) or `client_secret_post` (form fields), never
//!   both; `scope` within `Config::scopes`; `Config::required_params`
//!   present (else `invalid_request`) and equal (else `invalid_target`).
//!   Answers §5.1 (`Cache-Control: no-store`, `Pragma: no-cache`) or §5.2
//!   errors; `invalid_client` is a 401 with a `Basic` challenge when Basic
//!   was used.
//! - Any other path, any method: the resource. `Authorization: Bearer <token>`
//!   required, expiry enforced by the fake's clock; errors are RFC 6750 §3
//!   challenges. It answers with what it received (method, path, query, body
//!   length and SHA-256) so a test can see the request arrived intact.
//! - `/_fake/stats`, `/_fake/revoke`, `/_fake/token-endpoint?mode=ok|down|error`,
//!   `/_fake/token-latency?ms=N`, `/_fake/clock?advance_ms=N` let tests steer
//!   it; each is also a method on [`Fake`].
//!
//! Nothing here is shared with the `oauth2` kind: the decoding below is
//! written from the RFC, so a test where both sides agree proves something.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::{serve_with, Body, Recorded};

/// The demo client: `countersign demo` and the tests use it.
pub const DEMO_CLIENT_ID: &str = "countersign-demo-client";
pub const DEMO_CLIENT_SECRET: &str = "demo-client-secret-7c1f0e9a";
/// The scopes the demo server knows.
pub const DEMO_SCOPES: &[&str] = &["read", "write"];
pub const DEMO_TOKEN_PATH: &str = "/token";
pub const DEMO_REALM: &str = "countersign-fake";
/// Token lifetime announced as `expires_in` by default.
pub const DEMO_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// How a client may authenticate at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic, id and secret form-encoded first.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// A registered client.
#[derive(Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// A form field the token request must carry with exactly this value
/// (`audience`, `resource`, …): missing is `invalid_request`, another value
/// `invalid_target` (the RFC 8707 code).
#[derive(Clone, Debug)]
pub struct RequiredParam {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub clients: Vec<Client>,
    /// The client authentication methods accepted.
    pub auth_methods: Vec<AuthMethod>,
    pub token_path: String,
    /// Scope tokens a client may ask for; a request naming another is `invalid_scope`.
    pub scopes: Vec<String>,
    pub required_params: Vec<RequiredParam>,
    /// How long a token is good for; `None`: until revoked.
    pub token_lifetime: Option<Duration>,
    /// Whether the answer says `expires_in` (whole seconds of `token_lifetime`);
    /// off, a client learns of expiry only from a 401.
    pub announce_expires_in: bool,
    /// Added to every token request before it is answered, so that concurrent
    /// requests overlap and a missing single-flight shows in `token_in_flight_max`.
    pub token_latency: Duration,
    /// The realm in `WWW-Authenticate` challenges.
    pub realm: String,
    /// Largest resource request body read; past it, 413.
    pub max_body: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clients: vec![Client {
                id: DEMO_CLIENT_ID.into(),
                secret: DEMO_CLIENT_SECRET.into(),
            }],
            auth_methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
            token_path: DEMO_TOKEN_PATH.into(),
            scopes: DEMO_SCOPES.iter().map(|s| s.to_string()).collect(),
            required_params: Vec::new(),
            token_lifetime: Some(DEMO_EXPIRES_IN),
            announce_expires_in: true,
            token_latency: Duration::ZERO,
            realm: DEMO_REALM.into(),
            max_body: 16 << 20,
        }
    }
}

/// What the token endpoint does, switched by tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenEndpoint {
    /// Checks and answers as configured.
    Ok,
    /// 503 with `Connection: close`: the server is not there.
    Down,
    /// §5.2 `invalid_client` for every request: the credentials were revoked.
    Error,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Every request to the token endpoint, whatever its answer.
    pub token_requests: u64,
    pub tokens_issued: u64,
    /// Token requests answered with a §5.2 error or a 503, by `error` code
    /// (`unavailable` for the 503s).
    pub token_errors: BTreeMap<String, u64>,
    /// Token requests being answered now, and the most there ever were at once.
    pub token_in_flight: u64,
    pub token_in_flight_max: u64,
    /// Unix ms (the fake's clock) each token request arrived, oldest first
    /// (the last 10,000).
    pub token_request_times_ms: Vec<u64>,
    /// Requests to the resource, and how many of them were let through.
    pub api_requests: u64,
    pub api_accepted: u64,
    /// Resource requests refused, by reason: `missing`, `malformed`,
    /// `unknown`, `revoked`, `expired`.
    pub api_rejected: BTreeMap<String, u64>,
    /// Requests that carried a token that had expired: a client that renews
    /// before expiry never causes one.
    pub avoidable_rejections: u64,
    /// The last 200 requests (control endpoints excluded), oldest first.
    /// Resource bodies are cut at 4 KiB here.
    pub recent: Vec<Recorded>,
}

struct Issued {
    client: String,
    scope: String,
    /// `None`: good until revoked.
    expires_at: Option<Instant>,
    revoked: bool,
}

struct State {
    tokens: HashMap<String, Issued>,
    mode: TokenEndpoint,
    latency: Duration,
    /// How far the fake's clock is ahead of the real one (tests move it).
    clock_offset: Duration,
    stats: Stats,
}

struct Inner {
    cfg: Config,
    state: Mutex<State>,
    /// Token requests under way; outside the lock so that it counts
    /// requests sleeping in `token_latency`.
    in_flight: AtomicU64,
}

#[derive(Clone)]
pub struct Fake {
    inner: Arc<Inner>,
}

/// Decrements the in-flight count however the token request ends.
struct InFlight<'a>(&'a Inner);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One §5.2 error: the code, its description, and whether Basic was tried
/// (then `invalid_client` is a 401 with a challenge).
struct TokenError {
    code: &'static str,
    description: String,
    basic: bool,
}

fn token_error(code: &'static str, description: impl Into<String>) -> TokenError {
    TokenError {
        code,
        description: description.into(),
        basic: false,
    }
}

impl Fake {
    pub fn new(cfg: Config) -> Self {
        let state = State {
            tokens: HashMap::new(),
            mode: TokenEndpoint::Ok,
            latency: cfg.token_latency,
            clock_offset: Duration::ZERO,
            stats: Stats::default(),
        };
        Fake {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(state),
                in_flight: AtomicU64::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.state().stats.clone();
        s.token_in_flight = self.inner.in_flight.load(Ordering::SeqCst);
        s
    }

    /// Revokes every token issued so far; returns how many were live.
    pub fn revoke_all(&self) -> usize {
        let now = self.now();
        let mut st = self.state();
        let mut live = 0;
        for t in st.tokens.values_mut() {
            live += usize::from(!t.revoked && t.expires_at.is_none_or(|e| now < e));
            t.revoked = true;
        }
        live
    }

    pub fn set_token_endpoint(&self, mode: TokenEndpoint) {
        self.state().mode = mode;
    }

    pub fn set_token_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Moves the fake's clock forward: tokens expire that much sooner.
    pub fn advance_clock(&self, by: Duration) {
        self.state().clock_offset += by;
    }

    /// Tokens neither expired nor revoked.
    pub fn live_tokens(&self) -> usize {
        let now = self.now();
        self.state()
            .tokens
            .values()
            .filter(|t| !t.revoked && t.expires_at.is_none_or(|e| now < e))
            .count()
    }

    fn now(&self) -> Instant {
        Instant::now() + self.state().clock_offset
    }

    fn now_unix_ms(&self) -> u64 {
        let t = SystemTime::now() + self.state().clock_offset;
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        serve_with(listener, tls, shutdown, move |_, req| {
            let fake = self.clone();
            async move { fake.respond(req).await }
        })
        .await
    }

    /// Answers one request, as `serve` does; any body type, so tests can call it directly.
    pub async fn respond<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        if parts.uri.path().starts_with("/_fake/") {
            return self.control(&parts);
        }
        if parts.uri.path() == self.inner.cfg.token_path {
            let body = match Limited::new(body, 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "token request body too large",
                    )
                }
            };
            let resp = self.token(&parts, &body).await;
            self.record(&parts, &body, &resp);
            return resp;
        }
        let (seen, prefix) = match read_hashing(body, self.inner.cfg.max_body).await {
            Ok(r) => r,
            Err(status) => {
                let resp = plain(status, "request body too large or broken");
                self.record(&parts, b"", &resp);
                return resp;
            }
        };
        let resp = self.resource(&parts, &seen);
        self.record(&parts, &prefix, &resp);
        resp
    }

    fn record(&self, parts: &http::request::Parts, body: &[u8], resp: &Response<Body>) {
        let rec = Recorded::new(parts, body, resp.status().as_u16());
        let mut st = self.state();
        st.stats.recent.push(rec);
        if st.stats.recent.len() > 200 {
            st.stats.recent.remove(0);
        }
    }

    fn control(&self, parts: &http::request::Parts) -> Response<Body> {
        let query = parts.uri.query().unwrap_or("");
        let arg = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let post = parts.method == Method::POST;
        match (parts.uri.path(), post) {
            ("/_fake/stats", false) if parts.method == Method::GET => json_answer(
                StatusCode::OK,
                serde_json::to_value(self.stats()).unwrap_or_default(),
            ),
            ("/_fake/revoke", true) => {
                let n = self.revoke_all();
                json_answer(StatusCode::OK, serde_json::json!({ "revoked": n }))
            }
            ("/_fake/token-endpoint", true) => {
                let mode = match arg("mode").as_deref() {
                    Some("ok") => TokenEndpoint::Ok,
                    Some("down") => TokenEndpoint::Down,
                    Some("error") => TokenEndpoint::Error,
                    _ => return plain(StatusCode::BAD_REQUEST, "mode must be ok, down or error"),
                };
                self.set_token_endpoint(mode);
                json_answer(StatusCode::OK, serde_json::json!({ "mode": mode }))
            }
            ("/_fake/token-latency", true) => match arg("ms").and_then(|v| v.parse().ok()) {
                Some(ms) => {
                    self.set_token_latency(Duration::from_millis(ms));
                    json_answer(StatusCode::OK, serde_json::json!({ "latency_ms": ms }))
                }
                None => plain(StatusCode::BAD_REQUEST, "ms must be a whole number"),
            },
            ("/_fake/clock", true) => match arg("advance_ms").and_then(|v| v.parse().ok()) {
                Some(ms) => {
                    self.advance_clock(Duration::from_millis(ms));
                    json_answer(StatusCode::OK, serde_json::json!({ "advanced_ms": ms }))
                }
                None => plain(StatusCode::BAD_REQUEST, "advance_ms must be a whole number"),
            },
            _ => plain(StatusCode::NOT_FOUND, "unknown control endpoint"),
        }
    }

    async fn token(&self, parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
        let inner = &*self.inner;
        let now_ms = self.now_unix_ms();
        let seen = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = InFlight(inner);
        let (mode, latency) = {
            let mut st = self.state();
            st.stats.token_requests += 1;
            st.stats.token_in_flight_max = st.stats.token_in_flight_max.max(seen);
            st.stats.token_request_times_ms.push(now_ms);
            if st.stats.token_request_times_ms.len() > 10_000 {
                st.stats.token_request_times_ms.remove(0);
            }
            (st.mode, st.latency)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let result = match mode {
            TokenEndpoint::Down => {
                self.count_token_error("unavailable");
                let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "token endpoint down");
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
            TokenEndpoint::Error => Err(TokenError {
                basic: parts.headers.contains_key(header::AUTHORIZATION),
                ..token_error(
                    "invalid_client",
                    "client credentials revoked (fake error mode)",
                )
            }),
            TokenEndpoint::Ok => self.grant(parts, body),
        };
        match result {
            Ok(answer) => answer,
            Err(e) => {
                self.count_token_error(e.code);
                self.token_error_answer(&e)
            }
        }
    }

    fn count_token_error(&self, code: &str) {
        *self
            .state()
            .stats
            .token_errors
            .entry(code.to_string())
            .or_default() += 1;
    }

    fn token_error_answer(&self, e: &TokenError) -> Response<Body> {
        let status = if e.code == "invalid_client" && e.basic {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut r = json_answer(
            status,
            serde_json::json!({ "error": e.code, "error_description": e.description }),
        );
        no_store(&mut r);
        if status == StatusCode::UNAUTHORIZED {
            let challenge = format!(
                "Basic realm=\"{}\", charset=\"UTF-8\"",
                self.inner.cfg.realm
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }

    /// RFC 6749 §4.4.2 checks, then §4.4.3 issue.
    fn grant(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<Response<Body>, TokenError> {
        let cfg = &self.inner.cfg;
        let basic_header = parts.headers.contains_key(header::AUTHORIZATION);
        if parts.method != Method::POST {
            return Err(token_error(
                "invalid_request",
                "the token endpoint takes POST only (RFC 6749 §3.2)",
            ));
        }
        let form_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(token_error(
                "invalid_request",
                "Content-Type must be application/x-www-form-urlencoded (RFC 6749 §4.4.2)",
            ));
        }
        let form = parse_form(body).map_err(|why| token_error("invalid_request", why))?;
        let client = self.authenticate(parts, &form).map_err(|mut e| {
            e.basic = e.basic || basic_header;
            e
        })?;
        match form.get("grant_type").map(String::as_str) {
            None => {
                return Err(token_error("invalid_request", "grant_type is missing"));
            }
            Some("client_credentials") => {}
            Some(other) => {
                return Err(token_error(
                    "unsupported_grant_type",
                    format!("grant_type {other:?} is not supported; use client_credentials"),
                ))
            }
        }
        let scope = form.get("scope").cloned().unwrap_or_default();
        if !scope.is_empty() {
            // scope = scope-token *( SP scope-token ) (§3.3): one space between, none around.
            for token in scope.split(' ') {
                if token.is_empty() {
                    return Err(token_error(
                        "invalid_scope",
                        "scope tokens are separated by exactly one space (RFC 6749 §3.3)",
                    ));
                }
                if !cfg.scopes.iter().any(|s| s == token) {
                    return Err(token_error(
                        "invalid_scope",
                        format!("scope {token:?} is not known to this server"),
                    ));
                }
            }
        }
        for p in &cfg.required_params {
            match form.get(&p.name) {
                None => {
                    return Err(token_error(
                        "invalid_request",
                        format!("{} is required", p.name),
                    ))
                }
                Some(v) if *v != p.value => {
                    return Err(token_error(
                        "invalid_target",
                        format!("{} {v:?} is not served here", p.name),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(self.issue(&client, scope))
    }

    /// §2.3.1: exactly one of client_secret_basic and client_secret_post.
    /// Returns the client id.
    fn authenticate(
        &self,
        parts: &http::request::Parts,
        form: &BTreeMap<String, String>,
    ) -> Result<String, TokenError> {
        let cfg = &self.inner.cfg;
        let mut auth = parts.headers.get_all(header::AUTHORIZATION).iter();
        let header_value = auth.next();
        if auth.next().is_some() {
            return Err(token_error(
                "invalid_request",
                "more than one Authorization header",
            ));
        }
        let posted = form.contains_key("client_secret");
        let (id, secret, method) = match header_value {
            Some(v) => {
                let basic_err = |d: &str| TokenError {
                    basic: true,
                    ..token_error("invalid_client", d)
                };
                if posted {
                    return Err(token_error(
                        "invalid_request",
                        "client authenticated twice: Authorization header and client_secret \
                         in the body (RFC 6749 §2.3)",
                    ));
                }
                let v = v
                    .to_str()
                    .map_err(|_| basic_err("Authorization header is not visible ASCII"))?;
                let (id, secret) = decode_basic(v).map_err(basic_err)?;
                if form.get("client_id").is_some_and(|body_id| *body_id != id) {
                    return Err(token_error(
                        "invalid_request",
                        "client_id in the body differs from the one in the Authorization header",
                    ));
                }
                (id, secret, AuthMethod::ClientSecretBasic)
            }
            None if posted => {
                let Some(id) = form.get("client_id") else {
                    return Err(token_error(
                        "invalid_request",
                        "client_secret without client_id",
                    ));
                };
                let secret = form.get("client_secret").cloned().unwrap_or_default();
                (id.clone(), secret, AuthMethod::ClientSecretPost)
            }
            None => {
                return Err(TokenError {
                    // Offer the Basic challenge when Basic is accepted.
                    basic: cfg.auth_methods.contains(&AuthMethod::ClientSecretBasic),
                    ..token_error("invalid_client", "no client authentication")
                });
            }
        };
        let basic = method == AuthMethod::ClientSecretBasic;
        let fail = |d: &str| TokenError {
            basic,
            ..token_error("invalid_client", d)
        };
        if !cfg.auth_methods.contains(&method) {
            return Err(fail(match method {
                AuthMethod::ClientSecretBasic => "client_secret_basic is not accepted here",
                AuthMethod::ClientSecretPost => "client_secret_post is not accepted here",
            }));
        }
        let known = cfg.clients.iter().find(|c| c.id == id);
        // Compare against something either way, so timing says nothing about ids.
        let expected = known.map_or("\u{0}", |c| c.secret.as_str());
        if known.is_none() || !same_bytes(expected.as_bytes(), secret.as_bytes()) {
            return Err(fail("unknown client or wrong secret"));
        }
        Ok(id)
    }

    fn issue(&self, client: &str, scope: String) -> Response<Body> {
        let cfg = &self.inner.cfg;
        let token = new_token();
        let now = self.now();
        let mut answer = serde_json::json!({ "access_token": token, "token_type": "Bearer" });
        if let (Some(life), true) = (cfg.token_lifetime, cfg.announce_expires_in) {
            answer["expires_in"] = life.as_secs().into();
        }
        if !scope.is_empty() {
            answer["scope"] = scope.clone().into();
        }
        {
            let mut st = self.state();
            st.stats.tokens_issued += 1;
            st.tokens.insert(
                token,
                Issued {
                    client: client.to_string(),
                    scope,
                    expires_at: cfg.token_lifetime.map(|l| now + l),
                    revoked: false,
                },
            );
        }
        let mut r = json_answer(StatusCode::OK, answer);
        no_store(&mut r);
        r
    }

    /// RFC 6750 §2.1 and §3.
    fn resource(&self, parts: &http::request::Parts, seen: &Seen) -> Response<Body> {
        let now = self.now();
        let verdict = self.bearer(parts, now);
        let mut st = self.state();
        st.stats.api_requests += 1;
        match verdict {
            Ok((client, scope, expires_in)) => {
                st.stats.api_accepted += 1;
                drop(st);
                json_answer(
                    StatusCode::OK,
                    serde_json::json!({
                        "method": parts.method.as_str(),
                        "path": parts.uri.path(),
                        "query": parts.uri.query(),
                        "body_length": seen.len,
                        "body_sha256": hex::encode(seen.sha256),
                        "client_id": client,
                        "scope": scope,
                        "token_expires_in_ms": expires_in.map(|d| d.as_millis() as u64),
                    }),
                )
            }
            Err(reason) => {
                *st.stats
                    .api_rejected
                    .entry(reason.as_str().to_string())
                    .or_default() += 1;
                if reason == Reject::Expired {
                    st.stats.avoidable_rejections += 1;
                }
                drop(st);
                self.bearer_challenge(reason)
            }
        }
    }

    /// The token's client, scope and remaining life, or why it was refused.
    #[allow(clippy::type_complexity)]
    fn bearer(
        &self,
        parts: &http::request::Parts,
        now: Instant,
    ) -> Result<(String, String, Option<Duration>), Reject> {
        let mut all = parts.headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (all.next(), all.next()) else {
            return Err(if parts.headers.contains_key(header::AUTHORIZATION) {
                Reject::Malformed
            } else {
                Reject::Missing
            });
        };
        let value = value.to_str().map_err(|_| Reject::Malformed)?;
        let Some((scheme, rest)) = value.split_once(' ') else {
            return Err(Reject::Missing);
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            // Another scheme is no attempt at a bearer token (RFC 6750 §3.1).
            return Err(Reject::Missing);
        }
        let token = rest.trim_start_matches(' ');
        if !is_b64token(token) {
            return Err(Reject::Malformed);
        }
        let st = self.state();
        let Some(t) = st.tokens.get(token) else {
            return Err(Reject::Unknown);
        };
        if t.revoked {
            return Err(Reject::Revoked);
        }
        if t.expires_at.is_some_and(|e| now >= e) {
            return Err(Reject::Expired);
        }
        Ok((
            t.client.clone(),
            t.scope.clone(),
            t.expires_at.map(|e| e.saturating_duration_since(now)),
        ))
    }

    fn bearer_challenge(&self, reason: Reject) -> Response<Body> {
        let realm = &self.inner.cfg.realm;
        let (status, challenge, body) = match reason {
            Reject::Missing => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer realm=\"{realm}\""),
                serde_json::json!({ "error": "unauthorized", "error_description": reason.description() }),
            ),
            Reject::Malformed => (
                StatusCode::BAD_REQUEST,
                format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
                    reason.description()
                ),
                serde_json::json!({ "error": "invalid_request", "error_description": reason.description() }),
            ),
            _ => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                    reason.description()
                ),
                serde_json::json!({ "error": "invalid_token", "error_description": reason.description() }),
            ),
        };
        let mut r = json_answer(status, body);
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reject {
    Missing,
    Malformed,
    Unknown,
    Revoked,
    Expired,
}

impl Reject {
    fn as_str(self) -> &'static str {
        match self {
            Reject::Missing => "missing",
            Reject::Malformed => "malformed",
            Reject::Unknown => "unknown",
            Reject::Revoked => "revoked",
            Reject::Expired => "expired",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Reject::Missing => "an access token is required",
            Reject::Malformed => "the Authorization header is not one Bearer b64token",
            Reject::Unknown => "the access token is not one this server issued",
            Reject::Revoked => "the access token was revoked",
            Reject::Expired => "the access token expired",
        }
    }
}

/// What a resource request's body was: its length and digest.
struct Seen {
    len: u64,
    sha256: [u8; 32],
}

/// Reads the whole body, hashing as it goes; keeps the first 4 KiB for the journal.
async fn read_hashing<B>(body: B, max: usize) -> Result<(Seen, Vec<u8>), StatusCode>
where
    B: http_body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut prefix = Vec::new();
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|_| StatusCode::BAD_REQUEST)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len() as u64;
        if len > max as u64 {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        hasher.update(&data);
        let room = 4096usize.saturating_sub(prefix.len());
        prefix.extend_from_slice(&data[..room.min(data.len())]);
    }
    Ok((
        Seen {
            len,
            sha256: hasher.finalize().into(),
        },
        prefix,
    ))
}

fn json_answer(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// RFC 6749 §5.1: token answers must not be cached.
fn no_store(r: &mut Response<Body>) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `ctk.` + random, with every b64token punctuation in it, so a client that
/// re-encodes or trims the token it was given is caught.
fn new_token() -> String {
    let mut rng = rand::rng();
    format!(
        "ctk.{}-{}_~+/=",
        Alphanumeric.sample_string(&mut rng, 20),
        Alphanumeric.sample_string(&mut rng, 20)
    )
}

/// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token request's form body (§4.4.2, Appendix B). Parameters without a
/// value count as absent (§3.1); a parameter given twice is `invalid_request`
/// (§3.2).
fn parse_form(body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let name = form_decode(name).map_err(|e| format!("form body: {e}"))?;
        let value = form_decode(value).map_err(|e| format!("form body: {name}: {e}"))?;
        if value.is_empty() {
            continue;
        }
        if out.insert(name.clone(), value).is_some() {
            return Err(format!("{name} is given more than once (RFC 6749 §3.2)"));
        }
    }
    Ok(out)
}

/// One `application/x-www-form-urlencoded` component: `+` is a space, `%XX`
/// a byte, the result UTF-8. Refuses what no encoder emits: a `%` without two
/// hex digits, a byte outside visible ASCII.
fn form_decode(s: &[u8]) -> Result<String, &'static str> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = s.get(i + 1).copied().and_then(hex);
                let lo = s.get(i + 2).copied().and_then(hex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err("a % not followed by two hex digits");
                };
                out.push(hi << 4 | lo);
                i += 2;
            }
            b @ 0x21..=0x7e => out.push(b),
            _ => return Err("a byte outside visible ASCII that was not percent-encoded"),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded")
}

/// `Basic <base64(form(id) ":" form(secret))>` (RFC 6749 §2.3.1, RFC 7617).
fn decode_basic(value: &str) -> Result<(String, String), &'static str> {
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err("Authorization is not Basic credentials");
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("Authorization scheme is not Basic");
    }
    let raw = base64_decode(rest.trim_start_matches(' '))
        .ok_or("Basic credentials are not base64 (RFC 4648, padded)")?;
    let colon = raw
        .iter()
        .position(|&b| b == b':')
        .ok_or("Basic credentials have no ':'")?;
    let id = form_decode(&raw[..colon]).map_err(|_| {
        "client id in Basic credentials is not application/x-www-form-urlencoded (RFC 6749 §2.3.1)"
    })?;
    let secret = form_decode(&raw[colon + 1..]).map_err(|_| {
        "client secret in Basic credentials is not application/x-www-form-urlencoded \
         (RFC 6749 §2.3.1)"
    })?;
    Ok((id, secret))
}

/// Standard-alphabet base64 with its padding, refusing anything else
/// (missing padding, stray bits, whitespace).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return None;
    }
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let groups = b.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for (i, chunk) in b.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != groups) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        let keep = 3 - pad;
        if bytes[1 + keep..].iter().any(|&x| x != 0) {
            return None; // non-canonical: bits set beyond the last byte
        }
        out.extend_from_slice(&bytes[1..1 + keep]);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
