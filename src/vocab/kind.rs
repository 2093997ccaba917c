//! What an upstream API is to the rest of countersign: a few hooks the
//! pipeline calls ([`Kind`]), and the two traits through which a kind's
//! login reaches the machinery below it.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, Method, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

use super::{local_json, Buffered, Credential, Outgoing, Plan};
use crate::error::ProxyError;
use crate::secret::Secret;

/// How a login's requests reach the route's upstream: through the route's
/// rate limit and quota (every request sent upstream takes a permit), within
/// the request's deadline. The pipeline provides it; the session machinery
/// hands it to the kind inside a [`LoginChannel`].
pub trait Transport: Send + Sync {
    /// Sends one request (taking a rate permit and a quota unit) and reads its answer.
    fn send(&self, out: Outgoing, deadline: Instant)
        -> BoxFuture<'_, Result<Buffered, ProxyError>>;
}

/// What a kind's login may do: send requests through the route's limits,
/// and wait for spacing before a second login in the same attempt (TTS's
/// terminate-then-login).
pub trait LoginChannel: Send + Sync {
    /// Sends one request to the route's upstream and reads its whole answer.
    fn send(&self, out: Outgoing) -> BoxFuture<'_, Result<Buffered, ProxyError>>;

    /// For a second login in one attempt: spaces it `login_interval` after
    /// the previous one's completion (now) and records it.
    fn space_next_login(&self) -> BoxFuture<'_, Result<(), ProxyError>>;

    /// When the request that caused this login gives up.
    fn deadline(&self) -> Instant;
}

/// The hooks of an upstream API.
pub trait Kind: Send + Sync + 'static {
    /// Who logins, login spacing, the rate limit and rotated keys belong
    /// to, as the upstream knows it (an account and key, a member), built
    /// with [`super::identity`] from every part that tells two credentials
    /// apart, never revealing a secret. The pipeline adds the route's
    /// upstream ([`super::credential_at`]), so a kind need not; two routes
    /// with one credential at different upstreams are refused at load.
    fn credential_id(&self) -> String;

    /// Who the monthly quota counts against (XRTC: the account); the
    /// pipeline adds the upstream's origin ([`super::quota_at`]).
    fn quota_id(&self) -> String {
        self.credential_id()
    }

    /// The identity 0.1 kept this credential's state under (login times,
    /// rotated keys), which the state is moved from at start. `None` for
    /// kinds that came later: they have no such state.
    fn legacy_credential_id(&self) -> Option<String> {
        None
    }

    /// As [`Kind::legacy_credential_id`], for the quota's counters.
    fn legacy_quota_id(&self) -> Option<String> {
        self.legacy_credential_id()
    }

    /// Headers this kind sets; any the caller sent are removed first.
    fn owned_headers(&self) -> &[HeaderName];

    /// Whether this API defines paths that embed a URL (`/https://site/…`),
    /// whose `//` after the scheme is then not refused as an empty segment.
    fn embeds_urls(&self) -> bool {
        false
    }

    /// Classifies the request (method, canonical path after the route
    /// prefix, headers). Special calls are recognised with
    /// [`crate::headers::is_call`], as a lenient upstream router would.
    fn plan(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<Plan, ProxyError>;

    /// Logs in and returns what to hold (a cookie header, a session id, a
    /// token) and for how long. Login spacing is already done. Only kinds
    /// whose defaults say `has_session` are asked.
    fn login<'a>(
        &'a self,
        _channel: &'a dyn LoginChannel,
    ) -> BoxFuture<'a, Result<Credential, ProxyError>> {
        Box::pin(async { Err(ProxyError::Internal("this kind holds no session".into())) })
    }

    /// Adds credentials and signatures. Called afresh for every attempt, so a
    /// replay carries new timestamps and the new session.
    fn sign(&self, out: &mut Outgoing, session: Option<&Secret>) -> Result<(), ProxyError>;

    /// Whether this kind's signing needs I/O (a nonce kept in the state
    /// store): then requests are signed with [`Kind::sign_async`].
    fn signs_async(&self) -> bool {
        false
    }

    /// Signs like [`Kind::sign`], with the I/O it needs; called instead of
    /// `sign` when [`Kind::signs_async`]. `explain` and the cold-session
    /// trial always use `sign`.
    fn sign_async<'a>(
        &'a self,
        out: &'a mut Outgoing,
        session: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<(), ProxyError>> {
        Box::pin(async move { self.sign(out, session) })
    }

    /// Signs like [`Kind::sign`] and says what each signature was made of,
    /// for `explain`.
    fn sign_explained(
        &self,
        out: &mut Outgoing,
        session: Option<&Secret>,
    ) -> Result<Vec<(String, String)>, ProxyError> {
        self.sign(out, session)?;
        Ok(self.signature_inputs(out))
    }

    /// Whether the body of a response with this status must be read to tell
    /// an expired session (small error bodies only).
    fn peek_body(&self, _status: StatusCode) -> bool {
        false
    }

    /// Does this response say the held session is dead?
    fn session_expired(
        &self,
        _status: StatusCode,
        _headers: &HeaderMap,
        _body: Option<&[u8]>,
    ) -> bool {
        false
    }

    /// The login request, built by the same code the login sends, so that
    /// `explain` shows exactly what goes upstream. `None`: no login.
    fn login_request(&self) -> Option<Outgoing> {
        None
    }

    /// Where [`Kind::login_request`] goes when not to the route's upstream
    /// (an OAuth token endpoint, STS): its origin and base path, for `explain`.
    fn login_origin(&self) -> Option<String> {
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
        local_json(StatusCode::NOT_FOUND, Vec::new(), "{}".into())
    }

    /// For [`super::Then::Inspect`]: sees the request as sent and the whole
    /// successful answer; may act on it (store a rotated key) and rewrite it.
    /// An error goes to the caller instead of the answer.
    fn inspect<'a>(
        &'a self,
        _sent: &'a Outgoing,
        _answer: &'a mut Buffered,
    ) -> BoxFuture<'a, Result<(), ProxyError>> {
        Box::pin(async { Ok(()) })
    }

    /// Sees an answer's head before the caller does, and may remove headers
    /// that must not reach the caller (XRTC's cookies). Returns a new
    /// session value when the upstream refreshed the session in a way the
    /// kind trusts.
    fn screen_answer(&self, _headers: &mut HeaderMap, _session: Option<&Secret>) -> Option<Secret> {
        None
    }

    /// Further upstreams some requests go to (TTS's spider host), as
    /// `(origin, base path)` like the route's own `upstream`; a plan picks
    /// one with [`super::Forward::endpoint`] (0 is the route's upstream,
    /// 1 the first of these).
    fn endpoints(&self) -> Vec<(http::Uri, String)> {
        Vec::new()
    }
}
