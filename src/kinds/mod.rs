//! The upstream kinds: one file per API. A kind is data (its parsed settings)
//! plus a few hooks the request pipeline calls ([`Kind`]); everything shared
//! (sessions, limits, forwarding, errors) lives outside this folder, so adding
//! an API means one new file here and its fake in `src/fake/`.

pub mod teamdrive;
pub mod tts;
pub mod tts_body;
pub mod utilsio;
pub mod xrtc;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, Method, Response, StatusCode};
use http_body_util::Full;

use crate::config::{RateLimit, Section};
use crate::error::ProxyError;
use crate::keys::Keyring;
use crate::secret::Secret;
use crate::session::LoginCtx;

/// Every kind's name, as written in `kind = "..."`.
pub const NAMES: &[&str] = &["xrtc", "tts", "utilsio", "teamdrive"];

/// Parsed per-kind settings of a route.
#[derive(Debug, Clone)]
pub enum KindConfig {
    Xrtc(xrtc::Settings),
    Tts(Box<tts::Settings>),
    Utilsio(utilsio::Settings),
    Teamdrive(teamdrive::Settings),
}

impl KindConfig {
    pub fn name(&self) -> &'static str {
        match self {
            KindConfig::Xrtc(_) => "xrtc",
            KindConfig::Tts(_) => "tts",
            KindConfig::Utilsio(_) => "utilsio",
            KindConfig::Teamdrive(_) => "teamdrive",
        }
    }

    /// A second upstream some requests go to (TTS's `spider_upstream`).
    /// As (origin, base path), like the route's own `upstream`.
    pub fn alt_upstream(&self) -> Option<&(http::Uri, String)> {
        match self {
            KindConfig::Tts(s) => s.spider_upstream.as_ref(),
            _ => None,
        }
    }
}

/// What a kind implies when the route does not say otherwise (DESIGN §2).
#[derive(Debug, Clone, Copy)]
pub struct KindDefaults {
    pub rate_limit: Option<RateLimit>,
    pub quota_per_month: Option<u64>,
    pub has_session: bool,
    /// With a shared state store, one session serves every replica (the
    /// upstream allows one per credential); otherwise each replica holds its own.
    pub shared_session: bool,
    /// `session_idle` when the route does not set it.
    pub session_idle: Duration,
}

pub fn defaults_for(kind: &str) -> Option<KindDefaults> {
    match kind {
        "xrtc" => Some(xrtc::DEFAULTS),
        "tts" => Some(tts::DEFAULTS),
        "utilsio" => Some(utilsio::DEFAULTS),
        "teamdrive" => Some(teamdrive::DEFAULTS),
        _ => None,
    }
}

/// Reads the kind's own keys from the route table.
pub fn parse(kind: &str, s: &mut Section<'_>) -> Option<KindConfig> {
    match kind {
        "xrtc" => xrtc::Settings::parse(s).map(KindConfig::Xrtc),
        "tts" => tts::Settings::parse(s).map(|t| KindConfig::Tts(Box::new(t))),
        "utilsio" => utilsio::Settings::parse(s).map(KindConfig::Utilsio),
        "teamdrive" => teamdrive::Settings::parse(s).map(KindConfig::Teamdrive),
        _ => None,
    }
}

/// The kind's hooks for a route. Fails only where startup work can (a key
/// derivation). Rotatable keys come from `keyring`, so they outlive reloads.
pub fn build(config: &KindConfig, keyring: &Keyring) -> Result<std::sync::Arc<dyn Kind>, String> {
    Ok(match config {
        KindConfig::Xrtc(s) => std::sync::Arc::new(xrtc::Xrtc::new(s.clone())),
        KindConfig::Tts(s) => std::sync::Arc::new(tts::Tts::new((**s).clone(), keyring)),
        KindConfig::Utilsio(s) => std::sync::Arc::new(utilsio::Utilsio::new(s.clone())?),
        KindConfig::Teamdrive(s) => std::sync::Arc::new(teamdrive::Teamdrive::new(s.clone())),
    })
}

/// What a request needs before it can be forwarded.
pub enum Plan {
    /// countersign answers the caller itself (e.g. XRTC's own login call).
    Local(Response<Full<Bytes>>),
    /// countersign answers once a session is held ([`Kind::answer_with_session`]),
    /// e.g. a caller's own TTS login, which must never see the real session.
    LocalWithSession,
    Forward(Forward),
}

impl Plan {
    /// The common case: to the main upstream, nothing done with the answer.
    pub fn forward(session: bool, buffer_body: bool) -> Plan {
        Plan::Forward(Forward {
            session: if session {
                Need::Session
            } else {
                Need::Nothing
            },
            buffer_body,
            alt_upstream: false,
            then: Then::Pass,
        })
    }
}

pub struct Forward {
    pub session: Need,
    /// Buffer the body (up to `max_body`): a signature covers it, or it may be replayed.
    pub buffer_body: bool,
    /// Send to the kind's second upstream ([`KindConfig::alt_upstream`]).
    pub alt_upstream: bool,
    pub then: Then,
}

/// What a request needs of the held session.
pub enum Need {
    Nothing,
    /// Carries the held session; log in first if there is none.
    Session,
    /// Carries the held session if there is one; otherwise this answer is
    /// given without sending anything (a logout with nothing to log out).
    SessionIfHeld(Response<Full<Bytes>>),
}

/// What happens after a successful (2xx) answer.
pub enum Then {
    Pass,
    /// The call ended the upstream session: drop the held one.
    ClearSession,
    /// The kind reads the whole answer and may act on it and rewrite it
    /// ([`Kind::inspect`]) before the caller sees it.
    Inspect,
}

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

/// A response the pipeline already holds entirely (login answers, peeked errors).
pub struct Buffered {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The hooks of an upstream API.
pub trait Kind: Send + Sync + 'static {
    /// Who logins, login spacing and the rate limit belong to: one per credential,
    /// derived from non-secret fields and a short hash, never the secret itself.
    fn credential_id(&self) -> String;

    /// Who the monthly quota counts against (XRTC: the account).
    fn quota_id(&self) -> String {
        self.credential_id()
    }

    /// Headers this kind sets; any the caller sent are removed first.
    fn owned_headers(&self) -> &'static [HeaderName];

    /// Whether this API defines paths that embed a URL (`/https://site/…`),
    /// whose `//` after the scheme is then not refused as an empty segment.
    fn embeds_urls(&self) -> bool {
        false
    }

    /// Classifies the request (method, canonical path after the route
    /// prefix, headers). Special calls are recognised with
    /// [`crate::headers::is_call`], as a lenient upstream router would.
    fn plan(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<Plan, ProxyError>;

    /// Logs in and returns the session value to hold (a cookie header, a session id).
    /// `ctx` sends through the route's limits; login spacing is already done.
    fn login<'a>(&'a self, ctx: &'a LoginCtx<'a>) -> BoxFuture<'a, Result<Secret, ProxyError>>;

    /// Adds credentials and signatures. Called afresh for every attempt, so a
    /// replay carries new timestamps and the new session.
    fn sign(&self, out: &mut Outgoing, session: Option<&Secret>) -> Result<(), ProxyError>;

    /// Whether the body of a response with this status must be read to tell
    /// an expired session (small error bodies only).
    fn peek_body(&self, _status: StatusCode) -> bool {
        false
    }

    /// Does this response say the held session is dead?
    fn session_expired(&self, status: StatusCode, headers: &HeaderMap, body: Option<&[u8]>)
        -> bool;

    /// The login request, built by the same code the login sends, so that
    /// `explain` shows exactly what goes upstream. `None`: no login.
    fn login_request(&self) -> Option<Outgoing> {
        None
    }

    /// The secrets this kind holds, by config key, so `explain` can redact them.
    fn secrets(&self) -> Vec<(&'static str, Secret)> {
        Vec::new()
    }

    /// The input string of each signature on `out` (an HMAC message, a
    /// canonical body), for `explain`: what to compare when an upstream
    /// rejects a signature.
    fn signature_inputs(&self, _out: &Outgoing) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Work to finish before the first request is signed (loading rotated
    /// keys from the state store). `None` when there is nothing (left) to do.
    fn prepare(&self) -> Option<BoxFuture<'_, Result<(), ProxyError>>> {
        None
    }

    /// The answer for [`Plan::LocalWithSession`], once a session is held.
    fn answer_with_session(&self) -> Response<Full<Bytes>> {
        crate::proxy::local_json(StatusCode::NOT_FOUND, Vec::new(), "{}".into())
    }

    /// For [`Then::Inspect`]: sees the request as sent and the whole
    /// successful answer; may act on it (store a rotated key) and rewrite it.
    /// An error goes to the caller instead of the answer.
    fn inspect<'a>(
        &'a self,
        _sent: &'a Outgoing,
        _answer: &'a mut Buffered,
    ) -> BoxFuture<'a, Result<(), ProxyError>> {
        Box::pin(async { Ok(()) })
    }

    /// Sees the response head before the caller does. Returns a new session value
    /// when the upstream refreshed it (e.g. a re-issued cookie), and may remove
    /// headers that must not reach the caller.
    fn observe(&self, _headers: &mut HeaderMap, _session: Option<&Secret>) -> Option<Secret> {
        None
    }
}

/// Short, stable fingerprint of a secret for identities and state keys: the
/// first 12 hex digits of SHA-256, which reveal nothing usable about the secret.
pub fn fingerprint(secret: &Secret) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.expose().as_bytes());
    hex::encode(&digest[..6])
}

/// Ids from the config are user text; keep state keys and logs to a safe alphabet.
pub fn safe_id(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Milliseconds since the Unix epoch, for timestamps put on the wire.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
