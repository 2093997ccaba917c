//! The upstream kinds: one file per API. A kind is data (its parsed settings)
//! plus a few hooks the request pipeline calls ([`Kind`]); everything shared
//! (sessions, limits, forwarding, errors) lives outside this folder, so adding
//! an API means one new file here and its fake in `src/fake/`.

pub mod teamdrive;
pub mod utilsio;
pub mod xrtc;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, Method, Response, StatusCode};
use http_body_util::Full;

use crate::config::{RateLimit, Section};
use crate::error::ProxyError;
use crate::secret::Secret;
use crate::session::LoginCtx;

/// Every kind's name, as written in `kind = "..."`.
pub const NAMES: &[&str] = &["xrtc", "utilsio", "teamdrive"];

/// Parsed per-kind settings of a route.
#[derive(Debug, Clone)]
pub enum KindConfig {
    Xrtc(xrtc::Settings),
    Utilsio(utilsio::Settings),
    Teamdrive(teamdrive::Settings),
}

impl KindConfig {
    pub fn name(&self) -> &'static str {
        match self {
            KindConfig::Xrtc(_) => "xrtc",
            KindConfig::Utilsio(_) => "utilsio",
            KindConfig::Teamdrive(_) => "teamdrive",
        }
    }
}

/// What a kind implies when the route does not say otherwise (DESIGN §2).
#[derive(Debug, Clone, Copy)]
pub struct KindDefaults {
    pub rate_limit: Option<RateLimit>,
    pub quota_per_month: Option<u64>,
    pub has_session: bool,
}

pub fn defaults_for(kind: &str) -> Option<KindDefaults> {
    match kind {
        "xrtc" => Some(xrtc::DEFAULTS),
        "utilsio" => Some(utilsio::DEFAULTS),
        "teamdrive" => Some(teamdrive::DEFAULTS),
        _ => None,
    }
}

/// Reads the kind's own keys from the route table.
pub fn parse(kind: &str, s: &mut Section<'_>) -> Option<KindConfig> {
    match kind {
        "xrtc" => xrtc::Settings::parse(s).map(KindConfig::Xrtc),
        "utilsio" => utilsio::Settings::parse(s).map(KindConfig::Utilsio),
        "teamdrive" => teamdrive::Settings::parse(s).map(KindConfig::Teamdrive),
        _ => None,
    }
}

/// The kind's hooks for a route. Fails only where startup work can (a key derivation).
pub fn build(config: &KindConfig) -> Result<std::sync::Arc<dyn Kind>, String> {
    Ok(match config {
        KindConfig::Xrtc(s) => std::sync::Arc::new(xrtc::Xrtc::new(s.clone())),
        KindConfig::Utilsio(s) => std::sync::Arc::new(utilsio::Utilsio::new(s.clone())?),
        KindConfig::Teamdrive(s) => std::sync::Arc::new(teamdrive::Teamdrive::new(s.clone())),
    })
}

/// What a request needs before it can be forwarded.
pub enum Plan {
    /// countersign answers the caller itself (e.g. XRTC's own login call).
    Local(Response<Full<Bytes>>),
    Forward {
        /// The request carries the held session (log in first if needed).
        session: bool,
        /// Buffer the body (up to `max_body`): a signature covers it, or it may be replayed.
        buffer_body: bool,
    },
}

/// The request as it will be sent, before the kind signs it.
#[derive(Debug)]
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

    /// Classifies the request (method, path after the route prefix, headers).
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

/// Milliseconds since the Unix epoch, for timestamps put on the wire.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
