//! A strict fake of an OAuth 1.0a protected resource (RFC 5849), for the
//! `oauth1` kind. Every path and method is a resource; a request is let
//! through when its signature verifies by this file's own reading of §3.4:
//!
//! - protocol parameters from `Authorization: OAuth …` (§3.5.1, values
//!   percent-encoded per §3.6, `realm` not signed), or from an
//!   `application/x-www-form-urlencoded` body (§3.5.2) or the query (§3.5.3),
//!   never from two of them;
//! - signature base string (§3.4.1): the method uppercased, the base string
//!   URI from `Config::scheme` and the `Host` the client addressed (lowercase,
//!   default port dropped, no query), and the query, form body and protocol
//!   parameters (not `oauth_signature`) decoded, re-encoded per §3.6, sorted
//!   by name then value;
//! - HMAC-SHA1 (§3.4.2), HMAC-SHA256 (the same construction with SHA-256),
//!   PLAINTEXT (§3.4.4), keyed `encode(consumer secret)&encode(token secret)`;
//! - known consumer, token bound to it (or none, when `Config::allow_no_token`),
//!   `oauth_version` absent or `1.0`, timestamp within `Config::window` of the
//!   fake's clock, nonce unused for (consumer, token, timestamp).
//!
//! Refusals name the problem as the OAuth Problem Reporting extension does
//! (`signature_invalid`, `nonce_used`, `timestamp_refused`,
//! `consumer_key_unknown`, …) in a JSON body and the `WWW-Authenticate`
//! challenge; the body also carries the base string the fake computed
//! (`debug_base_string`) so a failing test shows what was signed. Status per
//! RFC 5849 §3.2: 400 for a missing, repeated or unsupported parameter, 401
//! for the credentials, signature, timestamp and nonce.
//!
//! Nothing here is shared with the `oauth1` kind; RFC 5849's own examples pin
//! this file (see the tests).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::{serve_with, Body, Recorded};

/// The demo consumer and token. Keys are 20–30 ASCII letters and digits,
/// which oauthlib's default validator insists on; the secrets hold
/// characters §3.6 must encode in the signing key.
pub const DEMO_CONSUMER_KEY: &str = "csDemoConsumerKey0000001";
pub const DEMO_CONSUMER_SECRET: &str = "demo consumer&secret+1/é";
pub const DEMO_TOKEN: &str = "csDemoAccessToken00000001";
pub const DEMO_TOKEN_SECRET: &str = "demo~token%secret=2";
pub const DEMO_REALM: &str = "countersign-fake";

/// The signature methods of RFC 5849 §3.4 (and HMAC-SHA256, as deployed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureMethod {
    HmacSha1,
    HmacSha256,
    Plaintext,
}

impl SignatureMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMethod::HmacSha1 => "HMAC-SHA1",
            SignatureMethod::HmacSha256 => "HMAC-SHA256",
            SignatureMethod::Plaintext => "PLAINTEXT",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::HmacSha1, Self::HmacSha256, Self::Plaintext]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Client credentials (§1.1).
#[derive(Clone)]
pub struct Consumer {
    pub key: String,
    pub secret: String,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Token credentials, issued to one consumer.
#[derive(Clone)]
pub struct Token {
    pub consumer: String,
    pub token: String,
    pub secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("consumer", &self.consumer)
            .field("token", &self.token)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub consumers: Vec<Consumer>,
    pub tokens: Vec<Token>,
    /// Whether a request signed with the consumer's credentials alone
    /// (no `oauth_token`) is let through.
    pub allow_no_token: bool,
    /// The signature methods accepted.
    pub methods: Vec<SignatureMethod>,
    /// The scheme clients address the fake by (`http`, or `https` behind TLS
    /// or a TLS-terminating proxy): the base string URI's scheme.
    pub scheme: String,
    /// Accepted difference between `oauth_timestamp` and the fake's clock, both ways.
    pub window: Duration,
    /// The realm in `WWW-Authenticate` challenges.
    pub realm: String,
    /// Largest request body read; past it, 413.
    pub max_body: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            consumers: vec![Consumer {
                key: DEMO_CONSUMER_KEY.into(),
                secret: DEMO_CONSUMER_SECRET.into(),
            }],
            tokens: vec![Token {
                consumer: DEMO_CONSUMER_KEY.into(),
                token: DEMO_TOKEN.into(),
                secret: DEMO_TOKEN_SECRET.into(),
            }],
            allow_no_token: false,
            methods: vec![
                SignatureMethod::HmacSha1,
                SignatureMethod::HmacSha256,
                SignatureMethod::Plaintext,
            ],
            scheme: "http".into(),
            window: Duration::from_secs(300),
            realm: DEMO_REALM.into(),
            max_body: 16 << 20,
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Every request (control endpoints excluded).
    pub requests: u64,
    pub accepted: u64,
    /// Refusals by `oauth_problem`.
    pub problems: BTreeMap<String, u64>,
    /// By signature method, of the accepted requests.
    pub methods: BTreeMap<String, u64>,
    /// The last 200 requests, oldest first.
    pub recent: Vec<Recorded>,
}

struct State {
    /// (consumer, token, timestamp, nonce) of every accepted request whose
    /// timestamp is still inside the window.
    nonces: HashSet<(String, String, u64, String)>,
    /// Seconds the fake's clock is ahead of the real one (tests set it).
    clock_offset: i64,
    stats: Stats,
}

struct Inner {
    cfg: Config,
    state: Mutex<State>,
}

#[derive(Clone)]
pub struct Fake {
    inner: Arc<Inner>,
}

/// Where the protocol parameters came from (§3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Header,
    Body,
    Query,
}

/// A refusal, as the Problem Reporting extension names it.
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    problem: &'static str,
    advice: String,
    /// One of the extension's extra parameters (`oauth_parameters_absent`, …).
    extra: Option<(&'static str, String)>,
    base_string: Option<String>,
}

fn problem(status: StatusCode, problem: &'static str, advice: impl Into<String>) -> Problem {
    Problem {
        status,
        problem,
        advice: advice.into(),
        extra: None,
        base_string: None,
    }
}

fn rejected(advice: impl Into<String>) -> Problem {
    problem(StatusCode::BAD_REQUEST, "parameter_rejected", advice)
}

/// What a verified request was.
struct Verified {
    consumer: String,
    token: Option<String>,
    method: SignatureMethod,
    realm: Option<String>,
    base_string: String,
}

impl Fake {
    pub fn new(cfg: Config) -> Self {
        Fake {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(State {
                    nonces: HashSet::new(),
                    clock_offset: 0,
                    stats: Stats::default(),
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.state().stats.clone()
    }

    /// Sets the fake's clock to this Unix time (it then runs on from there).
    pub fn set_clock(&self, unix_seconds: i64) {
        let real = real_unix();
        self.state().clock_offset = unix_seconds - real;
    }

    /// The fake's clock, Unix seconds.
    pub fn now(&self) -> i64 {
        real_unix() + self.state().clock_offset
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
        let body = match Limited::new(body, self.inner.cfg.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        let verdict = self.verify(&parts, &body);
        let resp = {
            let mut st = self.state();
            st.stats.requests += 1;
            match &verdict {
                Ok(v) => {
                    st.stats.accepted += 1;
                    *st.stats
                        .methods
                        .entry(v.method.as_str().to_string())
                        .or_default() += 1;
                }
                Err(p) => *st.stats.problems.entry(p.problem.to_string()).or_default() += 1,
            }
            drop(st);
            match verdict {
                Ok(v) => self.accepted(&parts, &body, v),
                Err(p) => self.refused(p),
            }
        };
        let rec = Recorded::new(&parts, &body, resp.status().as_u16());
        let mut st = self.state();
        st.stats.recent.push(rec);
        if st.stats.recent.len() > 200 {
            st.stats.recent.remove(0);
        }
        resp
    }

    fn control(&self, parts: &http::request::Parts) -> Response<Body> {
        let query = parts.uri.query().unwrap_or("");
        let arg = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<i64>().ok())
        };
        match (parts.uri.path(), &parts.method) {
            ("/_fake/stats", &Method::GET) => json_answer(
                StatusCode::OK,
                serde_json::to_value(self.stats()).unwrap_or_default(),
            ),
            ("/_fake/clock", &Method::POST) => {
                if let Some(now) = arg("now") {
                    self.set_clock(now);
                } else if let Some(by) = arg("advance_s") {
                    self.state().clock_offset += by;
                } else {
                    return plain(StatusCode::BAD_REQUEST, "give now=UNIX or advance_s=N");
                }
                json_answer(StatusCode::OK, serde_json::json!({ "now": self.now() }))
            }
            _ => plain(StatusCode::NOT_FOUND, "unknown control endpoint"),
        }
    }

    fn accepted(&self, parts: &http::request::Parts, body: &[u8], v: Verified) -> Response<Body> {
        json_answer(
            StatusCode::OK,
            serde_json::json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "body_length": body.len(),
                "body_sha256": hex::encode(Sha256::digest(body)),
                "consumer_key": v.consumer,
                "token": v.token,
                "signature_method": v.method.as_str(),
                "realm": v.realm,
                "base_string": v.base_string,
            }),
        )
    }

    fn refused(&self, p: Problem) -> Response<Body> {
        let mut body = serde_json::json!({
            "oauth_problem": p.problem,
            "oauth_problem_advice": p.advice,
        });
        if let Some((name, value)) = &p.extra {
            body[*name] = value.clone().into();
        }
        if let Some(b) = &p.base_string {
            body["debug_base_string"] = b.clone().into();
        }
        let mut r = json_answer(p.status, body);
        let challenge = format!(
            "OAuth realm=\"{}\", oauth_problem=\"{}\"",
            self.inner.cfg.realm, p.problem
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }

    fn verify(&self, parts: &http::request::Parts, body: &[u8]) -> Result<Verified, Problem> {
        let cfg = &self.inner.cfg;
        let request = collect(parts, body)?;
        let base_string = signature_base_string(
            parts.method.as_str(),
            &base_string_uri(&cfg.scheme, &request.host, parts.uri.path()),
            &request.signed,
        );
        let with_base = |mut p: Problem| {
            p.base_string = Some(base_string.clone());
            p
        };
        let o = &request.oauth;
        let mut absent: Vec<&str> = [
            "oauth_consumer_key",
            "oauth_signature_method",
            "oauth_signature",
            "oauth_timestamp",
            "oauth_nonce",
        ]
        .into_iter()
        .filter(|n| o.get(*n).is_none_or(|v| v.is_empty()))
        .collect();
        let token = o.get("oauth_token").filter(|t| !t.is_empty()).cloned();
        if token.is_none() && !cfg.allow_no_token {
            absent.push("oauth_token");
        }
        if !absent.is_empty() {
            return Err(with_base(Problem {
                extra: Some(("oauth_parameters_absent", absent.join("&"))),
                ..problem(
                    StatusCode::BAD_REQUEST,
                    "parameter_absent",
                    format!("missing {}", absent.join(", ")),
                )
            }));
        }
        let get = |n: &str| o.get(n).cloned().unwrap_or_default();
        if let Some(v) = o.get("oauth_version").filter(|v| *v != "1.0") {
            return Err(with_base(Problem {
                extra: Some(("oauth_acceptable_versions", "1.0-1.0".into())),
                ..problem(
                    StatusCode::BAD_REQUEST,
                    "version_rejected",
                    format!("oauth_version {v:?}; only 1.0 (or none) is accepted"),
                )
            }));
        }
        let method_name = get("oauth_signature_method");
        let Some(method) = SignatureMethod::parse(&method_name).filter(|m| cfg.methods.contains(m))
        else {
            return Err(with_base(problem(
                StatusCode::BAD_REQUEST,
                "signature_method_rejected",
                format!("oauth_signature_method {method_name:?} is not accepted here"),
            )));
        };
        let consumer_key = get("oauth_consumer_key");
        let Some(consumer) = cfg.consumers.iter().find(|c| c.key == consumer_key) else {
            return Err(with_base(problem(
                StatusCode::UNAUTHORIZED,
                "consumer_key_unknown",
                format!("consumer key {consumer_key:?} is not known"),
            )));
        };
        let token_secret = match &token {
            None => "",
            Some(t) => match cfg.tokens.iter().find(|k| k.token == *t) {
                Some(k) if k.consumer == consumer.key => k.secret.as_str(),
                Some(_) => {
                    return Err(with_base(problem(
                        StatusCode::UNAUTHORIZED,
                        "token_rejected",
                        "the token was issued to another consumer",
                    )))
                }
                None => {
                    return Err(with_base(problem(
                        StatusCode::UNAUTHORIZED,
                        "token_rejected",
                        format!("token {t:?} is not known"),
                    )))
                }
            },
        };
        let now = self.now();
        let window = cfg.window.as_secs() as i64;
        let ts_text = get("oauth_timestamp");
        // §3.3: a positive integer, in seconds.
        let ts = ts_text
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| ts_text.parse::<u64>().ok())
            .flatten()
            .filter(|t| *t > 0 && (*t as i128 - now as i128).abs() <= window as i128);
        let Some(ts) = ts else {
            return Err(with_base(Problem {
                extra: Some((
                    "oauth_acceptable_timestamps",
                    format!("{}-{}", now - window, now + window),
                )),
                ..problem(
                    StatusCode::UNAUTHORIZED,
                    "timestamp_refused",
                    format!("oauth_timestamp {ts_text:?} is not within {window} s of {now}"),
                )
            }));
        };
        let key = signing_key(&consumer.secret, token_secret);
        let expected = sign(method, &key, &base_string);
        if !same_bytes(expected.as_bytes(), get("oauth_signature").as_bytes()) {
            return Err(with_base(problem(
                StatusCode::UNAUTHORIZED,
                "signature_invalid",
                format!(
                    "{} over debug_base_string with the registered secrets does not match",
                    method.as_str()
                ),
            )));
        }
        let nonce = (
            consumer.key.clone(),
            token.clone().unwrap_or_default(),
            ts,
            get("oauth_nonce"),
        );
        {
            let mut st = self.state();
            let oldest = (now - window).max(0) as u64;
            st.nonces.retain(|n| n.2 >= oldest);
            if !st.nonces.insert(nonce) {
                drop(st);
                return Err(with_base(problem(
                    StatusCode::UNAUTHORIZED,
                    "nonce_used",
                    "this nonce was already used with this consumer, token and timestamp",
                )));
            }
        }
        Ok(Verified {
            consumer: consumer.key.clone(),
            token,
            method,
            realm: request.realm,
            base_string,
        })
    }
}

fn real_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A request's parameters as §3.4.1.3 and §3.5 read them.
struct Collected {
    /// The host (and port) the client addressed.
    host: String,
    /// Every signed parameter, decoded: query, form body, protocol
    /// parameters except `oauth_signature` and `realm`.
    signed: Vec<(Vec<u8>, Vec<u8>)>,
    /// The protocol parameters, decoded (`oauth_signature` included).
    oauth: BTreeMap<String, String>,
    realm: Option<String>,
}

fn collect(parts: &http::request::Parts, body: &[u8]) -> Result<Collected, Problem> {
    let host = match parts.headers.get(header::HOST) {
        Some(h) => h
            .to_str()
            .map_err(|_| rejected("Host is not visible ASCII"))?
            .to_string(),
        None => parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| rejected("no Host header: the base string URI needs it"))?,
    };
    let query = parse_form(parts.uri.query().unwrap_or("").as_bytes())
        .map_err(|e| rejected(format!("query: {e}")))?;
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let form = if is_form {
        parse_form(body).map_err(|e| rejected(format!("form body: {e}")))?
    } else {
        Vec::new()
    };
    let mut auth = parts.headers.get_all(header::AUTHORIZATION).iter();
    let header_params = match (auth.next(), auth.next()) {
        (Some(_), Some(_)) => return Err(rejected("more than one Authorization header")),
        (Some(v), None) => {
            let v = v
                .to_str()
                .map_err(|_| rejected("Authorization is not visible ASCII"))?;
            parse_oauth_header(v)?
        }
        (None, _) => None,
    };
    let is_oauth = |p: &(Vec<u8>, Vec<u8>)| p.0.starts_with(b"oauth_");
    let mut sources = Vec::new();
    if header_params.is_some() {
        sources.push(Source::Header);
    }
    if form.iter().any(is_oauth) {
        sources.push(Source::Body);
    }
    if query.iter().any(is_oauth) {
        sources.push(Source::Query);
    }
    let source = match sources.as_slice() {
        [] => {
            return Err(Problem {
                extra: Some(("oauth_parameters_absent", "oauth_consumer_key".into())),
                ..problem(
                    StatusCode::UNAUTHORIZED,
                    "parameter_absent",
                    "no OAuth protocol parameters in the Authorization header, body or query",
                )
            })
        }
        [one] => *one,
        _ => {
            return Err(rejected(format!(
                "protocol parameters in more than one place ({sources:?}); RFC 5849 §3.5 allows one"
            )))
        }
    };
    let (protocol, realm) = match (source, header_params) {
        (Source::Header, Some((params, realm))) => (params, realm),
        (Source::Body, _) => (form.iter().filter(|p| is_oauth(p)).cloned().collect(), None),
        _ => (
            query.iter().filter(|p| is_oauth(p)).cloned().collect(),
            None,
        ),
    };
    let mut oauth = BTreeMap::new();
    for (name, value) in &protocol {
        let name = String::from_utf8(name.clone())
            .map_err(|_| rejected("a protocol parameter name is not UTF-8"))?;
        let value = String::from_utf8(value.clone())
            .map_err(|_| rejected(format!("{name} is not UTF-8")))?;
        if oauth.insert(name.clone(), value).is_some() {
            return Err(Problem {
                extra: Some(("oauth_parameters_rejected", name.clone())),
                ..rejected(format!("{name} is given more than once (RFC 5849 §3.2)"))
            });
        }
    }
    // §3.4.1.3.1: query, body, then the header's protocol parameters; the
    // body and query ones are already in.
    let mut signed: Vec<(Vec<u8>, Vec<u8>)> = query.into_iter().chain(form).collect();
    if source == Source::Header {
        signed.extend(protocol);
    }
    signed.retain(|(n, _)| n != b"oauth_signature");
    Ok(Collected {
        host,
        signed,
        oauth,
        realm,
    })
}

/// §3.5.1: `OAuth realm="…", oauth_x="…", …`. `None` when the header is
/// another scheme. Values must be §3.6-encoded; `realm` is kept apart.
#[allow(clippy::type_complexity)]
fn parse_oauth_header(
    value: &str,
) -> Result<Option<(Vec<(Vec<u8>, Vec<u8>)>, Option<String>)>, Problem> {
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("oauth") {
        return Ok(None);
    }
    let mut params = Vec::new();
    let mut realm = None;
    let mut s = rest.trim_start_matches([' ', '\t']);
    while !s.is_empty() {
        let eq = s
            .find('=')
            .ok_or_else(|| rejected("Authorization: a parameter without '='"))?;
        let name = s[..eq].trim_end_matches([' ', '\t']);
        let after = s[eq + 1..].trim_start_matches([' ', '\t']);
        let inner = after.strip_prefix('"').ok_or_else(|| {
            rejected(format!(
                "Authorization: {name} is not a quoted string (RFC 5849 §3.5.1)"
            ))
        })?;
        let close = inner
            .find('"')
            .ok_or_else(|| rejected(format!("Authorization: {name} has no closing quote")))?;
        let raw = &inner[..close];
        s = inner[close + 1..].trim_start_matches([' ', '\t']);
        if let Some(next) = s.strip_prefix(',') {
            s = next.trim_start_matches([' ', '\t']);
        } else if !s.is_empty() {
            return Err(rejected(
                "Authorization: parameters must be separated by ','",
            ));
        }
        if name == "realm" {
            if realm.replace(raw.to_string()).is_some() {
                return Err(rejected("Authorization: realm given twice"));
            }
            continue;
        }
        let name = pct_decode_strict(name)
            .map_err(|e| rejected(format!("Authorization: a parameter name {e}")))?;
        if !name.starts_with(b"oauth_") {
            return Err(rejected(format!(
                "Authorization: {} is not a protocol parameter; only oauth_* and realm go there",
                String::from_utf8_lossy(&name)
            )));
        }
        let value = pct_decode_strict(raw).map_err(|e| {
            rejected(format!(
                "Authorization: {} {e}",
                String::from_utf8_lossy(&name)
            ))
        })?;
        params.push((name, value));
    }
    Ok(Some((params, realm)))
}

/// Decodes a §3.6-encoded header value: only unreserved characters and
/// `%XX` may appear (a raw `+` or `/` means the client skipped the encoding).
fn pct_decode_strict(s: &str) -> Result<Vec<u8>, &'static str> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) else {
                    return Err("has a % not followed by two hex digits");
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            c if is_unreserved(c) => {
                out.push(c);
                i += 1;
            }
            _ => return Err("is not percent-encoded per RFC 5849 §3.6"),
        }
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` pairs as §3.4.1.3.1 reads them (W3C
/// HTML 4.0 §17.13.4): `+` is a space, a pair without `=` has an empty
/// value; bytes, not text, so nothing is lost before re-encoding.
#[allow(clippy::type_complexity)]
fn parse_form(s: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, &'static str> {
    let decode = |part: &[u8]| -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
                    let (Some(hi), Some(lo)) = (hex(part.get(i + 1)), hex(part.get(i + 2))) else {
                        return Err("a % not followed by two hex digits");
                    };
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        Ok(out)
    };
    let mut out = Vec::new();
    for pair in s.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (n, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        out.push((decode(n)?, decode(v)?));
    }
    Ok(out)
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// §3.6: UTF-8 octets, unreserved characters kept, the rest `%XX` in uppercase hex.
fn encode(s: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3);
    for &c in s {
        if is_unreserved(c) {
            out.push(c as char);
        } else {
            out.push('%');
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 15) as usize] as char);
        }
    }
    out
}

/// §3.4.1.2: scheme and host lowercase, the scheme's default port dropped,
/// the path as the client sent it, no query.
fn base_string_uri(scheme: &str, host: &str, path: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    // The port follows the last ':' after any IPv6 literal's ']'.
    let (name, port) = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => (&host[..i], Some(&host[i + 1..])),
        _ => (host.as_str(), None),
    };
    let default = match scheme.as_str() {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    };
    let authority = match port {
        Some(p) if Some(p) != default && !p.is_empty() => format!("{name}:{p}"),
        _ => name.to_string(),
    };
    let path = if path.is_empty() { "/" } else { path };
    format!("{scheme}://{authority}{path}")
}

/// §3.4.1.3.2: encode each name and value, sort by name then value, join.
fn normalize_parameters(params: &[(Vec<u8>, Vec<u8>)]) -> String {
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(n, v)| (encode(n), encode(v))).collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// §3.4.1.1.
fn signature_base_string(method: &str, base_uri: &str, params: &[(Vec<u8>, Vec<u8>)]) -> String {
    format!(
        "{}&{}&{}",
        encode(method.to_ascii_uppercase().as_bytes()),
        encode(base_uri.as_bytes()),
        encode(normalize_parameters(params).as_bytes())
    )
}

/// §3.4.2 / §3.4.4: `encode(consumer secret)&encode(token secret)`.
fn signing_key(consumer_secret: &str, token_secret: &str) -> String {
    format!(
        "{}&{}",
        encode(consumer_secret.as_bytes()),
        encode(token_secret.as_bytes())
    )
}

/// The `oauth_signature` value (decoded) the request must carry.
fn sign(method: SignatureMethod, key: &str, base_string: &str) -> String {
    match method {
        SignatureMethod::HmacSha1 => {
            // new_from_slice accepts keys of any length for HMAC.
            let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key.as_bytes()) else {
                return String::new();
            };
            mac.update(base_string.as_bytes());
            base64(&mac.finalize().into_bytes())
        }
        SignatureMethod::HmacSha256 => {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
                return String::new();
            };
            mac.update(base_string.as_bytes());
            base64(&mac.finalize().into_bytes())
        }
        SignatureMethod::Plaintext => key.to_string(),
    }
}

/// RFC 4648 §4 base64 with padding (§3.4.2: the digest is base64-encoded).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let mut n = [0u8; 3];
        n[..chunk.len()].copy_from_slice(chunk);
        let v = u32::from(n[0]) << 16 | u32::from(n[1]) << 8 | u32::from(n[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_answer(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
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

#[cfg(test)]
mod tests;
