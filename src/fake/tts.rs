//! A strict fake of the TTS Utility Server (`tts-utility-server-api.txt`)
//! and of its spider host. It checks what the document demands: the
//! `TTS-Utility-Client/` User-Agent, `x-tts-cc-access-key`, `client_ver`,
//! the JSON checksum (its own `json.loads` and `json.dumps(sort_keys=True)`
//! below, plain and slow, written from the language's documented behaviour
//! and sharing no code with the signer in `crate::canonical`), the
//! member's credentials, one active session per member, `session-id` +
//! `member-email` on authenticated calls, idle expiry, and a request-rate
//! window answered with 429 + `Retry-After` + `X-RateLimit-*`. Errors are
//! the document's texts. Rotations really change the access key and secret.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::{serve_with, Body, Recorded};

/// How rotate_* answers carry the new key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateAnswer {
    /// `{"message": …, "access_key" | "secret_key": NEW}`
    Json,
    /// The bare key as the whole body.
    Bare,
    /// A sentence without the key (countersign must fail loudly).
    NoKey,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub identifier: String,
    pub email: String,
    pub password: String,
    pub access_key: String,
    pub secret: Option<String>,
    /// A session unused this long is expired.
    pub session_idle: Duration,
    /// Two logins closer than this are counted as violations.
    pub login_interval: Duration,
    /// At most this many requests per window, then 429.
    pub rate: Option<(u64, Duration)>,
    pub rotate_answer: RotateAnswer,
}

pub const DEMO_IDENTIFIER: &str = "www.example.com";
pub const DEMO_EMAIL: &str = "demo@example.com";
pub const DEMO_PASSWORD: &str = "tts-demo-password";
pub const DEMO_ACCESS_KEY: &str = "tts-demo-access-key-0001";
pub const DEMO_SECRET: &str = "tts-demo-secret-0001";

impl Default for Config {
    fn default() -> Self {
        Config {
            identifier: DEMO_IDENTIFIER.into(),
            email: DEMO_EMAIL.into(),
            password: DEMO_PASSWORD.into(),
            access_key: DEMO_ACCESS_KEY.into(),
            secret: Some(DEMO_SECRET.into()),
            session_idle: Duration::from_secs(43_200 * 60),
            login_interval: Duration::from_secs(5),
            rate: None,
            rotate_answer: RotateAnswer::Json,
        }
    }
}

/// Counters and keys, for tests and `/_fake/stats`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    pub journal: super::Journal,
    pub logins: u64,
    /// Logins closer than `login_interval` to the previous one.
    pub login_spacing_violations: u64,
    pub terminations: u64,
    /// Requests answered 429.
    pub rate_limited: u64,
    /// Requests that carried a session the fake had already dropped.
    pub expired_session_uses: u64,
}

struct Held {
    id: String,
    last_used: Instant,
}

struct State {
    access_key: String,
    secret: Option<String>,
    session: Option<Held>,
    last_login: Option<Instant>,
    window: (Instant, u64),
    stats: Stats,
}

#[derive(Clone)]
pub struct Fake {
    cfg: Arc<Config>,
    state: Arc<Mutex<State>>,
}

type Answer = (StatusCode, String);

fn text(status: StatusCode, t: &str) -> Answer {
    (status, t.to_string())
}

fn respond((status, body): Answer) -> Response<Body> {
    let json = body.starts_with('{');
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        }),
    );
    r
}

const ACTIVE: &str = "Active login session found, please logout existing session, else you can force terminate all active sessions.";
const EXPIRED: &str = "Session expired";
const ACTIONS: &[&str] = &[
    "liveLogs",
    "hitLog",
    "fetchStats",
    "addSitemap",
    "updateSitemap",
    "updateTTL",
];
const SPIDER_ACTIONS: &[&str] = &[
    "deleteCache",
    "purge",
    "fetchCustomerOrders",
    "getWarmupCacheStatus",
];

impl Fake {
    pub fn new(cfg: Config) -> Self {
        let state = State {
            access_key: cfg.access_key.clone(),
            secret: cfg.secret.clone(),
            session: None,
            last_login: None,
            window: (Instant::now(), 0),
            stats: Stats::default(),
        };
        Fake {
            cfg: Arc::new(cfg),
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub fn access_key(&self) -> String {
        self.lock().access_key.clone()
    }

    pub fn secret(&self) -> Option<String> {
        self.lock().secret.clone()
    }

    /// Drops the member's session, as an idle expiry would.
    pub fn kill_sessions(&self) {
        self.lock().session = None;
    }

    /// Another client logs in as the member: the next login finds it active.
    pub fn open_foreign_session(&self) {
        self.lock().session = Some(Held {
            id: random_id(),
            last_used: Instant::now(),
        });
    }

    /// Serves the main API.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_as(false, listener, tls, shutdown).await
    }

    /// Serves the spider host (`HEAD /https://…` health checks).
    pub async fn serve_spider(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_as(true, listener, tls, shutdown).await
    }

    async fn serve_as(
        self,
        spider: bool,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        serve_with(listener, tls, shutdown, move |_, req| {
            let fake = self.clone();
            async move { fake.handle(req, spider).await }
        })
        .await
    }

    async fn handle(&self, req: Request<Incoming>, spider: bool) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if parts.method == Method::GET && parts.uri.path() == "/_fake/stats" {
            let stats = serde_json::to_string(&self.stats()).unwrap_or_default();
            return respond((StatusCode::OK, stats));
        }
        let body = match Limited::new(body, 1024 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return respond(text(StatusCode::PAYLOAD_TOO_LARGE, "Request too large")),
        };
        let mut st = self.lock();
        let limit_headers = self.count(&mut st);
        let (status, answer) = match &limit_headers {
            Some((_, _, _, Some(retry))) => {
                st.stats.rate_limited += 1;
                let mut r = respond(text(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded"));
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry));
                (StatusCode::TOO_MANY_REQUESTS, r)
            }
            _ => {
                let a = if spider {
                    self.spider(&mut st, &parts)
                } else {
                    self.api(&mut st, &parts, &body)
                };
                (a.0, respond(a))
            }
        };
        let mut answer = answer;
        if let Some((limit, remaining, reset, _)) = limit_headers {
            let h = answer.headers_mut();
            h.insert("x-ratelimit-limit", HeaderValue::from(limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
            h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        }
        let rejected = status.is_client_error();
        st.stats
            .journal
            .record(Recorded::new(&parts, &body, status.as_u16()), rejected);
        answer
    }

    /// Counts the request in the rate window: (limit, remaining, reset unix
    /// seconds, Some(retry-after seconds) when over the limit).
    fn count(&self, st: &mut State) -> Option<(u64, u64, u64, Option<u64>)> {
        let (max, window) = self.cfg.rate?;
        let now = Instant::now();
        if now.duration_since(st.window.0) >= window {
            st.window = (now, 0);
        }
        let left = window.saturating_sub(now.duration_since(st.window.0));
        let reset = unix_now() + left.as_secs_f64().ceil() as u64;
        if st.window.1 >= max {
            return Some((
                max,
                0,
                reset,
                Some(left.as_secs_f64().ceil().max(1.0) as u64),
            ));
        }
        st.window.1 += 1;
        Some((max, max - st.window.1, reset, None))
    }

    fn spider(&self, st: &mut State, parts: &http::request::Parts) -> Answer {
        if parts.method != Method::HEAD || !parts.uri.path().starts_with("/https://") {
            return text(StatusCode::NOT_FOUND, "Not found");
        }
        if header_of(parts, "x-tts-cc-access-key").as_deref() != Some(st.access_key.as_str()) {
            return text(StatusCode::UNAUTHORIZED, "Access key not found");
        }
        text(StatusCode::OK, "")
    }

    fn api(&self, st: &mut State, parts: &http::request::Parts, body: &[u8]) -> Answer {
        if parts.method != Method::POST {
            return text(StatusCode::NOT_FOUND, "Not found");
        }
        let ua = header_of(parts, "user-agent").unwrap_or_default();
        if !ua.starts_with("TTS-Utility-Client/") {
            return text(StatusCode::BAD_REQUEST, "Invalid User-Agent");
        }
        if header_of(parts, "x-tts-cc-access-key").as_deref() != Some(st.access_key.as_str()) {
            return text(StatusCode::UNAUTHORIZED, "Access key not found");
        }
        if header_of(parts, "client_ver").is_none_or(|v| v.is_empty()) {
            return text(StatusCode::BAD_REQUEST, "client_ver header is required");
        }
        let fields = match read_fields(parts, body) {
            Ok(f) => f,
            Err(a) => return a,
        };
        let field = |n: &str| get(&fields, n);
        if field("identifire") != self.cfg.identifier || field("client_ver").is_empty() {
            return text(
                StatusCode::BAD_REQUEST,
                "Invalid parameters: identifire and client_ver are required",
            );
        }
        if let Some(secret) = &st.secret {
            if field("secret") != secret {
                return text(StatusCode::UNAUTHORIZED, "Invalid credentials");
            }
        }
        let path = parts.uri.path();
        if let Some(site) = path.strip_prefix("/https://") {
            if let Err(a) = self.authenticated(st, parts) {
                return a;
            }
            let action = field("action");
            if !SPIDER_ACTIONS.contains(&action) {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Invalid parameters: unknown action",
                );
            }
            return json_answer(
                serde_json::json!({ "action": action, "url": format!("https://{site}"), "status": "ok" }),
            );
        }
        let rest = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(self.cfg.identifier.as_str()));
        match rest {
            Some("") | Some("/") => {
                if let Err(a) = self.authenticated(st, parts) {
                    return a;
                }
                let action = field("action");
                if !ACTIONS.contains(&action) {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "Invalid parameters: unknown action",
                    );
                }
                json_answer(serde_json::json!({ "action": action, "status": "ok", "data": [] }))
            }
            Some(r) => match r.strip_prefix("/customers/") {
                Some(call) => self.customers(st, parts, call, &fields),
                None => text(StatusCode::NOT_FOUND, "Not found"),
            },
            None => text(StatusCode::NOT_FOUND, "Not found"),
        }
    }

    fn customers(
        &self,
        st: &mut State,
        parts: &http::request::Parts,
        call: &str,
        fields: &HashMap<String, String>,
    ) -> Answer {
        let field = |n: &str| get(fields, n);
        let member_ok =
            field("email_id") == self.cfg.email && field("password") == self.cfg.password;
        match call {
            "member_login" => {
                if !member_ok {
                    return text(StatusCode::UNAUTHORIZED, "Invalid credentials");
                }
                self.expire_idle(st);
                if st.session.is_some() {
                    return text(StatusCode::FORBIDDEN, ACTIVE);
                }
                let now = Instant::now();
                if st
                    .last_login
                    .is_some_and(|t| now.duration_since(t) < self.cfg.login_interval)
                {
                    st.stats.login_spacing_violations += 1;
                }
                st.last_login = Some(now);
                st.stats.logins += 1;
                let id = random_id();
                st.session = Some(Held {
                    id: id.clone(),
                    last_used: now,
                });
                json_answer(serde_json::json!({
                    "session_id": id,
                    "user_type": "client",
                    "message": "Logged-in successful, inactive session time-out is 43200 minutes.",
                }))
            }
            "terminate_session" => {
                if !member_ok {
                    return text(StatusCode::UNAUTHORIZED, "Invalid credentials");
                }
                st.session = None;
                st.stats.terminations += 1;
                text(
                    StatusCode::OK,
                    "Terminated active session, please relogin to continue.",
                )
            }
            "reset_password" => {
                if field("email_id") != self.cfg.email {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "Invalid parameters: unknown email_id",
                    );
                }
                text(StatusCode::OK, "Password reset successfully, and new password has been emailed to your registered email id.")
            }
            _ => {
                if let Err(a) = self.authenticated(st, parts) {
                    return a;
                }
                self.member_call(st, call, fields)
            }
        }
    }

    fn member_call(&self, st: &mut State, call: &str, fields: &HashMap<String, String>) -> Answer {
        let field = |n: &str| get(fields, n);
        let rotated = |what: &str, new: &str| match self.cfg.rotate_answer {
            RotateAnswer::Json => {
                json_answer(serde_json::json!({ "message": format!("{what} rotated"), what: new }))
            }
            RotateAnswer::Bare => text(StatusCode::OK, new),
            RotateAnswer::NoKey => text(StatusCode::OK, "Key rotated successfully."),
        };
        match call {
            "member_logout" => {
                st.session = None;
                text(
                    StatusCode::OK,
                    "Logged-out active session, please relogin to continue.",
                )
            }
            "get_users" => json_answer(
                serde_json::json!({ "users": [{ "email_id": self.cfg.email, "user_type": "client" }] }),
            ),
            "rotate_access_key" => {
                st.access_key = format!("AK-{}", random_id());
                rotated("access_key", &st.access_key.clone())
            }
            "rotate_secret_key" => {
                let new = format!("SK-{}", random_id());
                st.secret = Some(new.clone());
                rotated("secret_key", &new)
            }
            "push_access_key" | "push_secret_key" => {
                let name = if call == "push_access_key" {
                    "new_access_key"
                } else {
                    "new_secret_key"
                };
                let new = field(name).to_string();
                if new.is_empty() {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "Invalid parameters: the new key is required",
                    );
                }
                if call == "push_access_key" {
                    st.access_key = new.clone();
                } else {
                    st.secret = Some(new.clone());
                }
                json_answer(serde_json::json!({ "message": "The key has been updated", name: new }))
            }
            _ => text(StatusCode::NOT_FOUND, "Not found"),
        }
    }

    fn expire_idle(&self, st: &mut State) {
        if st
            .session
            .as_ref()
            .is_some_and(|h| h.last_used.elapsed() >= self.cfg.session_idle)
        {
            st.session = None;
        }
    }

    /// `session-id` + `member-email` of the live session.
    fn authenticated(&self, st: &mut State, parts: &http::request::Parts) -> Result<(), Answer> {
        self.expire_idle(st);
        let id = header_of(parts, "session-id").unwrap_or_default();
        let email = header_of(parts, "member-email").unwrap_or_default();
        if id.is_empty() || email != self.cfg.email {
            return Err(text(StatusCode::UNAUTHORIZED, "Invalid credentials"));
        }
        match st.session.as_mut() {
            Some(h) if h.id == id => {
                h.last_used = Instant::now();
                Ok(())
            }
            _ => {
                st.stats.expired_session_uses += 1;
                Err(text(StatusCode::UNAUTHORIZED, EXPIRED))
            }
        }
    }
}

fn get<'a>(fields: &'a HashMap<String, String>, name: &str) -> &'a str {
    fields.get(name).map(String::as_str).unwrap_or("")
}

fn json_answer(v: serde_json::Value) -> Answer {
    (StatusCode::OK, v.to_string())
}

fn header_of(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

fn random_id() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The body's fields as text. JSON bodies must carry a valid checksum and
/// the JSON-only fields.
fn read_fields(
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<HashMap<String, String>, Answer> {
    let ct = header_of(parts, "content-type").unwrap_or_default();
    if ct.starts_with("application/x-www-form-urlencoded") {
        return Ok(form_urlencoded::parse(body).into_owned().collect());
    }
    if !ct.starts_with("application/json") {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/json or application/x-www-form-urlencoded",
        ));
    }
    let Some(PyValue::Dict(mut map)) = std::str::from_utf8(body).ok().and_then(py_loads) else {
        return Err(text(StatusCode::BAD_REQUEST, "Invalid JSON"));
    };
    let Some(PyValue::Str(sum)) = map.remove("checksum") else {
        return Err(text(StatusCode::BAD_REQUEST, "Invalid checksum"));
    };
    let canonical = py_dumps(&PyValue::Dict(map.clone()));
    if hex::encode(Sha256::digest(canonical.as_bytes())) != sum {
        return Err(text(StatusCode::BAD_REQUEST, "Invalid checksum"));
    }
    for required in ["ip_address", "mac_address"] {
        if !matches!(map.get(required), Some(PyValue::Str(s)) if !s.is_empty()) {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "Invalid parameters: ip_address and mac_address are required",
            ));
        }
    }
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let t = match v {
                PyValue::Str(s) => s,
                other => py_dumps(&other),
            };
            (k, t)
        })
        .collect())
}

/// A JSON value as CPython's `json.loads` holds it. Written from the
/// language's documented behaviour for this verifier alone; speed does not
/// matter here, being plainly right does.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    Null,
    Bool(bool),
    /// A Python int: exact at any size, as its decimal digits.
    Int(String),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    /// A dict with its keys in code point order (what `sort_keys` prints):
    /// a repeated key's later value replaces the earlier one, as in CPython.
    Dict(BTreeMap<String, PyValue>),
}

/// `json.loads(text)`; `None` where CPython raises (and for lone surrogate
/// escapes, which a Rust string cannot hold).
pub fn py_loads(text: &str) -> Option<PyValue> {
    let chars: Vec<char> = text.chars().collect();
    let mut at = 0;
    let v = py_value(&chars, &mut at)?;
    skip_ws(&chars, &mut at);
    (at == chars.len()).then_some(v)
}

fn skip_ws(c: &[char], at: &mut usize) {
    while matches!(c.get(*at), Some(' ' | '\t' | '\n' | '\r')) {
        *at += 1;
    }
}

fn eat(c: &[char], at: &mut usize, word: &str) -> bool {
    let n = word.chars().count();
    let ok = c
        .get(*at..*at + n)
        .is_some_and(|s| s.iter().copied().eq(word.chars()));
    if ok {
        *at += n;
    }
    ok
}

fn py_value(c: &[char], at: &mut usize) -> Option<PyValue> {
    skip_ws(c, at);
    for (word, v) in [
        ("null", PyValue::Null),
        ("true", PyValue::Bool(true)),
        ("false", PyValue::Bool(false)),
        ("NaN", PyValue::Float(f64::NAN)),
        ("Infinity", PyValue::Float(f64::INFINITY)),
        ("-Infinity", PyValue::Float(f64::NEG_INFINITY)),
    ] {
        if eat(c, at, word) {
            return Some(v);
        }
    }
    match c.get(*at)? {
        '"' => py_string(c, at).map(PyValue::Str),
        '[' => {
            *at += 1;
            let mut items = Vec::new();
            skip_ws(c, at);
            if eat(c, at, "]") {
                return Some(PyValue::List(items));
            }
            loop {
                items.push(py_value(c, at)?);
                skip_ws(c, at);
                if eat(c, at, "]") {
                    return Some(PyValue::List(items));
                }
                if !eat(c, at, ",") {
                    return None;
                }
            }
        }
        '{' => {
            *at += 1;
            let mut dict = BTreeMap::new();
            skip_ws(c, at);
            if eat(c, at, "}") {
                return Some(PyValue::Dict(dict));
            }
            loop {
                skip_ws(c, at);
                if c.get(*at) != Some(&'"') {
                    return None;
                }
                let key = py_string(c, at)?;
                skip_ws(c, at);
                if !eat(c, at, ":") {
                    return None;
                }
                dict.insert(key, py_value(c, at)?);
                skip_ws(c, at);
                if eat(c, at, "}") {
                    return Some(PyValue::Dict(dict));
                }
                if !eat(c, at, ",") {
                    return None;
                }
            }
        }
        _ => py_number(c, at),
    }
}

/// CPython's NUMBER_RE, `(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?`: an
/// int when there is neither fraction nor exponent, else `float(text)`.
fn py_number(c: &[char], at: &mut usize) -> Option<PyValue> {
    let start = *at;
    let digits = |at: &mut usize| {
        let from = *at;
        while c.get(*at).is_some_and(char::is_ascii_digit) {
            *at += 1;
        }
        *at - from
    };
    eat(c, at, "-");
    if !eat(c, at, "0") && digits(at) == 0 {
        return None;
    }
    let int_end = *at;
    if c.get(*at) == Some(&'.') && c.get(*at + 1).is_some_and(char::is_ascii_digit) {
        *at += 1;
        digits(at);
    }
    if matches!(c.get(*at), Some('e' | 'E')) {
        let mut e = *at + 1;
        if matches!(c.get(e), Some('+' | '-')) {
            e += 1;
        }
        if digits(&mut e) > 0 {
            *at = e;
        }
    }
    let text: String = c[start..*at].iter().collect();
    if *at == int_end {
        // int("-0") is 0.
        let text = if text == "-0" { "0".to_string() } else { text };
        Some(PyValue::Int(text))
    } else {
        // Rust's parse rounds correctly, as float() does; 1e400 is inf.
        text.parse().ok().map(PyValue::Float)
    }
}

fn py_string(c: &[char], at: &mut usize) -> Option<String> {
    *at += 1;
    let mut out = String::new();
    loop {
        let ch = *c.get(*at)?;
        *at += 1;
        match ch {
            '"' => return Some(out),
            '\\' => {
                let esc = *c.get(*at)?;
                *at += 1;
                out.push(match esc {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'u' => {
                        let hi = hex4(c, at)?;
                        let lo = if (0xD800..0xDC00).contains(&hi)
                            && c.get(*at) == Some(&'\\')
                            && c.get(*at + 1) == Some(&'u')
                        {
                            let mut after = *at + 2;
                            hex4(c, &mut after)
                                .filter(|lo| (0xDC00..0xE000).contains(lo))
                                .map(|lo| (lo, after))
                        } else {
                            None
                        };
                        match lo {
                            Some((lo, after)) => {
                                *at = after;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                            }
                            None => char::from_u32(hi)?,
                        }
                    }
                    _ => return None,
                });
            }
            c if (c as u32) < 0x20 => return None,
            c => out.push(c),
        }
    }
}

fn hex4(c: &[char], at: &mut usize) -> Option<u32> {
    let digits: String = c.get(*at..*at + 4)?.iter().collect();
    if !digits.chars().all(|d| d.is_ascii_hexdigit()) {
        return None;
    }
    *at += 4;
    u32::from_str_radix(&digits, 16).ok()
}

/// Python's `json.dumps(v, sort_keys=True)`: `", "` and `": "`, keys in
/// code point order (the dict is kept so), `ensure_ascii` escapes, floats
/// as `repr`.
pub fn py_dumps(v: &PyValue) -> String {
    match v {
        PyValue::Null => "null".into(),
        PyValue::Bool(b) => b.to_string(),
        PyValue::Int(digits) => digits.clone(),
        PyValue::Float(f) => py_float(*f),
        PyValue::Str(s) => py_str(s),
        PyValue::List(a) => format!(
            "[{}]",
            a.iter().map(py_dumps).collect::<Vec<_>>().join(", ")
        ),
        PyValue::Dict(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", py_str(k), py_dumps(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `float.__repr__`, with json's spellings of the non-finite values. repr
/// prints the shortest digits that read back as the same double: tried
/// here from 1 to 17 significant digits, each correctly rounded (ties to
/// even, as CPython), the first that reads back wins. Then Python's layout:
/// positional from 1e-4 up to 1e16, else `d.ddde±XX`.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = (0..17)
        .map(|p| format!("{:.*e}", p, f.abs()))
        .find(|s| s.parse::<f64>() == Ok(f.abs()))
        .unwrap_or_else(|| format!("{:e}", f.abs()));
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.trim_end_matches('0') {
        "" => "0",
        d => d,
    };
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
        } else if digits.len() <= point as usize {
            format!(
                "{sign}{digits}{}.0",
                "0".repeat(point as usize - digits.len())
            )
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{sign}{int}.{frac}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{rest}e{esign}{:02}", exp.abs())
    }
}

fn py_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The signer's known answers (data only: no code is shared).
    include!("../canonical/pyjson_known.rs");

    fn dumps(text: &str) -> String {
        py_dumps(&py_loads(text).unwrap_or_else(|| panic!("does not load: {text}")))
    }

    /// Every answer CPython gave for the signer is this verifier's answer too.
    #[test]
    fn py_dumps_matches_cpython_known_answers() {
        assert_eq!(KNOWN.len(), 44);
        for (body, want, sum) in KNOWN {
            let text = dumps(body);
            assert_eq!(&text, want, "{body}");
            assert_eq!(hex::encode(Sha256::digest(text.as_bytes())), *sum, "{body}");
        }
    }

    /// More answers printed by CPython 3 (`json.dumps(v, sort_keys=True)`).
    #[test]
    fn py_dumps_matches_cpython() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"b":1,"a":[1.5,-0.0,1e16,1e-5,0.0001,123456789.125]}"#,
                r#"{"a": [1.5, -0.0, 1e+16, 1e-05, 0.0001, 123456789.125], "b": 1}"#,
            ),
            (
                r#"{"é":"€😀","A":"\u0000\u007f\"\\/"}"#,
                r#"{"A": "\u0000\u007f\"\\/", "\u00e9": "\u20ac\ud83d\ude00"}"#,
            ),
            (
                r#"{"x":{"z":null,"y":true},"n":-12}"#,
                r#"{"n": -12, "x": {"y": true, "z": null}}"#,
            ),
            (
                "[9999999999999998.0, 4.9406564584124654e-324, 1.7976931348623159e308, 9007199254740993.0, 1234567890123456.7, 9.999999999999999e-5, 1e23, -1.0e-10, 0.1e-299, 864140230362545.204014, 0.30000000000000004]",
                "[9999999999999998.0, 5e-324, Infinity, 9007199254740992.0, 1234567890123456.8, 9.999999999999999e-05, 1e+23, -1e-10, 1e-300, 864140230362545.2, 0.30000000000000004]",
            ),
            ("NaN", "NaN"),
            ("[-Infinity, -0]", "[-Infinity, 0]"),
        ];
        for (input, want) in cases {
            assert_eq!(&dumps(input), want, "{input}");
        }
    }

    #[test]
    fn py_loads_refuses_what_cpython_refuses() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{'a':1}",
            "01",
            "1.",
            "-",
            "[1] x",
            r#""abc"#,
            "\"\u{1}\"",
            r#""\x""#,
            r#""\u12""#,
            r#""\ud800""#,
        ] {
            assert_eq!(py_loads(bad), None, "{bad:?}");
        }
    }
}
