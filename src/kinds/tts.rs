//! TTS Utility Server (`tts-utility-server-api.txt`): an access key header on
//! every call, a session (`session-id` + `member-email`) from
//! `customers/member_login`, one active session per member, JSON bodies
//! carrying a SHA-256 checksum of CPython's `json.dumps(sort_keys=True)`, and
//! access keys and secrets the API itself rotates.
//!
//! URL layout: `/<route>/<identifier>/customers/<call>` and
//! `/<route>/<identifier>` (action calls) go to `upstream`;
//! `/<route>/https://<site>/...` are spider calls: POST to `upstream`, HEAD
//! (the health check) to `spider_upstream` when set.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::Full;

use super::tts_body::{self, Fill, Format};
use super::{BuildEnv, KindRef, KindRow, KindSettings};
use crate::config::{KindDefaults, Section};
use crate::error::ProxyError;
use crate::keys::{check_key, HeldKeys, Keyring};
use crate::secret::Secret;
use crate::vocab::{
    fingerprint, identity, local_json, safe_id, Buffered, Credential, Forward, Kind, LoginChannel,
    Need, Outgoing, Plan, Then,
};

pub const ROW: KindRow = KindRow {
    name: "tts",
    defaults: DEFAULTS,
    parse: |s| Settings::parse(s).map(|k| Arc::new(k) as KindRef),
};

pub const DEFAULTS: KindDefaults = KindDefaults {
    rate_limit: None,
    quota_per_month: None,
    has_session: true,
    // One active session per member: replicas must share it, not fight over it.
    shared_session: true,
    // "inactive session time-out is 43200 minutes" (the login answer).
    session_idle: Duration::from_secs(43_200 * 60),
    login_interval: Duration::from_secs(5),
};

const ACCESS_KEY: HeaderName = HeaderName::from_static("x-tts-cc-access-key");
const CLIENT_VER: HeaderName = HeaderName::from_static("client_ver");
const MODULE: HeaderName = HeaderName::from_static("x-tts-module");
const SESSION_ID: HeaderName = HeaderName::from_static("session-id");
const MEMBER_EMAIL: HeaderName = HeaderName::from_static("member-email");
static OWNED: [HeaderName; 5] = [USER_AGENT, ACCESS_KEY, CLIENT_VER, SESSION_ID, MEMBER_EMAIL];
static OWNED_WITH_MODULE: [HeaderName; 6] = [
    USER_AGENT,
    ACCESS_KEY,
    CLIENT_VER,
    SESSION_ID,
    MEMBER_EMAIL,
    MODULE,
];

const ACTIVE_SESSION: &str = "active login session found";
const SESSION_EXPIRED: &str = "session expired";

#[derive(Debug, Clone)]
pub struct Settings {
    pub identifier: String,
    pub client_ver: String,
    pub user_agent: String,
    pub access_key: Secret,
    pub secret: Option<Secret>,
    pub email: String,
    pub password: Secret,
    pub module: Option<String>,
    pub ip_address: String,
    pub mac_address: String,
    /// (origin, base path) of the spider host, for HEAD health checks.
    pub spider_upstream: Option<(Uri, String)>,
    pub force_login: bool,
    /// Where a rotate_access_key answer carries the new key.
    pub access_key_fields: Vec<String>,
    /// Where a rotate_secret_key answer carries the new secret.
    pub secret_key_fields: Vec<String>,
}

impl Settings {
    pub fn parse(s: &mut Section<'_>) -> Option<Settings> {
        let text = |s: &mut Section<'_>, key: &str| -> Option<String> {
            let v: Option<String> = s.required(key);
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                s.problem(key, "must not be empty");
            }
            v
        };
        let identifier = text(s, "identifier");
        let client_ver = text(s, "client_ver");
        let email = text(s, "email");
        let ip_address = text(s, "ip_address");
        let access_key = s.secret("access_key", true);
        let password = s.secret("password", true);
        let secret = s.secret("secret", false);
        let user_agent: Option<String> = s.get("user_agent");
        let module: Option<String> = s.get("module");
        let mac_address = s.get("mac_address").unwrap_or_else(|| "-".to_string());
        let force_login = s.get("force_login").unwrap_or(true);
        let spider_upstream = s.get::<String>("spider_upstream").and_then(|u| {
            crate::config::parse_upstream(&u)
                .map_err(|m| s.problem("spider_upstream", m))
                .ok()
        });
        let fields = |s: &mut Section<'_>, key: &str, default: [&str; 2]| {
            let v: Vec<String> = s
                .get(key)
                .unwrap_or_else(|| default.iter().map(|d| d.to_string()).collect());
            if v.is_empty() {
                s.problem(key, "must name at least one field");
            }
            v
        };
        let access_key_fields = fields(s, "access_key_fields", ["access_key", "new_access_key"]);
        let secret_key_fields = fields(s, "secret_key_fields", ["secret_key", "new_secret_key"]);
        for (key, value) in [("user_agent", &user_agent), ("module", &module)] {
            if value
                .as_deref()
                .is_some_and(|v| HeaderValue::from_str(v).is_err())
            {
                s.problem(key, "must be a valid header value (no control characters)");
            }
        }
        let client_ver = client_ver?;
        Some(Settings {
            user_agent: user_agent.unwrap_or_else(|| format!("TTS-Utility-Client/{client_ver}")),
            identifier: identifier?,
            client_ver,
            access_key: access_key?,
            secret,
            email: email?,
            password: password?,
            module,
            ip_address: ip_address?,
            mac_address,
            spider_upstream,
            force_login,
            access_key_fields,
            secret_key_fields,
        })
    }
}

/// The calls the kind treats specially, from the path after the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Login,
    Logout,
    Terminate,
    ResetPassword,
    RotateAccessKey,
    RotateSecretKey,
    PushAccessKey,
    PushSecretKey,
    Spider,
    Other,
}

/// The call named by a canonical path, matched as a lenient upstream
/// router would (ASCII case ignored, one trailing '/' too), so that no
/// spelling the upstream takes for a rotation or a login slips past.
fn call_of(path: &str) -> Call {
    let path = path.split('?').next().unwrap_or(path);
    let lower = |p: &str, scheme: &str| {
        p.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    if lower(path, "/https://") || lower(path, "/http://") {
        return Call::Spider;
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segments = path.trim_start_matches('/').split('/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(_), Some(customers), Some(call), None)
            if customers.eq_ignore_ascii_case("customers") =>
        {
            const CALLS: [(&str, Call); 8] = [
                ("member_login", Call::Login),
                ("member_logout", Call::Logout),
                ("terminate_session", Call::Terminate),
                ("reset_password", Call::ResetPassword),
                ("rotate_access_key", Call::RotateAccessKey),
                ("rotate_secret_key", Call::RotateSecretKey),
                ("push_access_key", Call::PushAccessKey),
                ("push_secret_key", Call::PushSecretKey),
            ];
            CALLS
                .iter()
                .find(|(name, _)| call.eq_ignore_ascii_case(name))
                .map_or(Call::Other, |(_, c)| *c)
        }
        _ => Call::Other,
    }
}

impl KindSettings for Settings {
    fn build(&self, env: &BuildEnv<'_>) -> Result<Arc<dyn Kind>, String> {
        let id = env.identity(&credential_id(self));
        Ok(Arc::new(Tts::new(self.clone(), env.keyring, id)))
    }
}

pub struct Tts {
    settings: Settings,
    /// The credential's identity at its upstream ([`BuildEnv::identity`]):
    /// rotated keys are stored under it, and logs name it.
    id: String,
    /// The access key and secret in use: the configured ones until rotated.
    keys: Arc<HeldKeys>,
    /// The settings' header values, made once: user agent, client version,
    /// module, member email (`None` when a setting is not a valid header).
    fixed: [Option<HeaderValue>; 4],
}

impl Tts {
    /// `id`: the credential's identity at the route's upstream.
    pub fn new(settings: Settings, keyring: &Keyring, id: String) -> Self {
        let mut configured = vec![("access_key", settings.access_key.clone())];
        if let Some(secret) = &settings.secret {
            configured.push(("secret", secret.clone()));
        }
        let value = |v: &str| HeaderValue::from_str(v).ok();
        let fixed = [
            value(&settings.user_agent),
            value(&settings.client_ver),
            settings.module.as_deref().and_then(value),
            value(&settings.email),
        ];
        Tts {
            keys: keyring.get(&id, configured),
            id,
            settings,
            fixed,
        }
    }

    /// The headers every call carries.
    fn base_headers(&self, h: &mut HeaderMap) -> Result<(), ProxyError> {
        let invalid = || ProxyError::Internal("a TTS setting is not a valid header".into());
        let [user_agent, client_ver, module, _] = &self.fixed;
        h.insert(USER_AGENT, user_agent.clone().ok_or_else(invalid)?);
        let key = self
            .keys
            .get("access_key")
            .unwrap_or_else(|| self.settings.access_key.clone());
        h.insert(
            ACCESS_KEY,
            HeaderValue::from_str(key.expose()).map_err(|_| invalid())?,
        );
        h.insert(CLIENT_VER, client_ver.clone().ok_or_else(invalid)?);
        if self.settings.module.is_some() {
            h.insert(MODULE, module.clone().ok_or_else(invalid)?);
        }
        Ok(())
    }

    /// Fills and checksums the body of `out` for `call`.
    fn sign_body(&self, out: &mut Outgoing, call: Call) -> Result<(), ProxyError> {
        if out.method == Method::HEAD || out.method == Method::GET {
            return Ok(());
        }
        let body = out.body.clone().unwrap_or_default();
        let secret = self.keys.get("secret");
        // The member's email and password go only where the member logs in or out.
        let member = matches!(call, Call::Login | Call::Terminate);
        let fill = Fill {
            identifier: &self.settings.identifier,
            client_ver: &self.settings.client_ver,
            ip_address: &self.settings.ip_address,
            mac_address: &self.settings.mac_address,
            secret: secret.as_ref().map(Secret::expose),
            email: (member || call == Call::ResetPassword).then_some(self.settings.email.as_str()),
            password: member.then(|| self.settings.password.expose()),
        };
        let (sent, content_type) = match tts_body::format_of(&out.headers, &body) {
            Format::Json => (tts_body::fill_json(&body, &fill)?, "application/json"),
            Format::Form => (
                tts_body::fill_form(&body, &fill),
                "application/x-www-form-urlencoded",
            ),
            Format::Other => return Ok(()),
        };
        out.body = Some(sent);
        out.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(())
    }

    /// A JSON call countersign makes itself (login, terminate_session).
    fn own_call(&self, name: &str) -> Result<Outgoing, ProxyError> {
        let mut out = Outgoing::post(
            &format!("/{}/customers/{name}", self.settings.identifier),
            HeaderMap::new(),
            "",
        );
        out.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // `sign` picks the body's fields by path: the member's for these calls.
        self.sign(&mut out, None)?;
        Ok(out)
    }

    async fn login_once(
        &self,
        channel: &dyn LoginChannel,
    ) -> Result<Result<Secret, Buffered>, ProxyError> {
        let answer = channel.send(self.own_call("member_login")?).await?;
        if answer.status.is_success() {
            let v: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
            if let Some(id) = v
                .as_ref()
                .and_then(|v| v.get("session_id"))
                .and_then(|s| s.as_str())
                .filter(|s| !s.is_empty())
            {
                return Ok(Ok(Secret::new(id)));
            }
        }
        Ok(Err(answer))
    }

    fn rotation(&self, call: Call) -> Option<(&'static str, Rotation<'_>)> {
        match call {
            Call::RotateAccessKey => Some((
                "access_key",
                Rotation::Answer(&self.settings.access_key_fields),
            )),
            Call::RotateSecretKey => {
                Some(("secret", Rotation::Answer(&self.settings.secret_key_fields)))
            }
            Call::PushAccessKey => Some(("access_key", Rotation::Request("new_access_key"))),
            Call::PushSecretKey => Some(("secret", Rotation::Request("new_secret_key"))),
            _ => None,
        }
    }
}

enum Rotation<'a> {
    /// rotate_*: the new key is in the answer, under one of these fields.
    Answer(&'a [String]),
    /// push_*: the new key is the request's field.
    Request(&'static str),
}

/// A pushed key is stored once the upstream accepts it, and then sent on
/// every call: one that cannot be (a line break, a space, 5 KiB) is refused
/// before the push goes out, since the upstream would switch to it and the
/// route would be broken for everyone. Called from `sign`, so a cold
/// session's trial signature refuses it before any login too.
fn check_pushed(out: &Outgoing, field: &str) -> Result<(), ProxyError> {
    let body = out.body.as_deref().unwrap_or_default();
    let format = tts_body::format_of(&out.headers, body);
    let key = tts_body::field(body, format, field).map(zeroize::Zeroizing::new);
    let Some(key) = key else {
        return Err(ProxyError::BadRequestBody(format!(
            "a key push needs the new key in the body's \"{field}\" field; nothing was sent"
        )));
    };
    check_key(&key).map_err(|why| {
        ProxyError::BadRequestBody(format!(
            "the pushed {field} {why}: countersign could not send it afterwards, so nothing was sent"
        ))
    })
}

fn credential_id(s: &Settings) -> String {
    // One session per member: the identity is the member, not the key.
    identity("tts", &[&s.identifier, &s.email])
}

/// 0.1's identity: `a.b` and `a_b` were one member, whatever the upstream.
fn legacy_credential_id(s: &Settings) -> String {
    format!(
        "tts-{}-{}",
        safe_id(&s.identifier),
        fingerprint(&Secret::new(s.email.clone()))
    )
}

/// The upstream's own words, shortened, for `login_failed`.
fn upstream_text(answer: &Buffered) -> String {
    let text = String::from_utf8_lossy(&answer.body);
    let text: String = text.trim().chars().take(300).collect();
    format!("upstream answered {}: {text}", answer.status.as_u16())
}

fn says(body: &[u8], what: &str) -> bool {
    String::from_utf8_lossy(body)
        .to_ascii_lowercase()
        .contains(what)
}

impl Kind for Tts {
    fn credential_id(&self) -> String {
        credential_id(&self.settings)
    }

    fn legacy_credential_id(&self) -> Option<String> {
        Some(legacy_credential_id(&self.settings))
    }

    fn owned_headers(&self) -> &[HeaderName] {
        if self.settings.module.is_some() {
            &OWNED_WITH_MODULE
        } else {
            &OWNED
        }
    }

    fn prepare(&self) -> Option<BoxFuture<'_, Result<(), ProxyError>>> {
        (!self.keys.is_loaded()).then(|| Box::pin(self.keys.load()) as BoxFuture<'_, _>)
    }

    fn endpoints(&self) -> Vec<(Uri, String)> {
        self.settings.spider_upstream.iter().cloned().collect()
    }

    fn embeds_urls(&self) -> bool {
        // Spider calls: `/<route>/https://<site>/…` (the API's own layout).
        true
    }

    fn plan(&self, method: &Method, path: &str, _: &HeaderMap) -> Result<Plan, ProxyError> {
        let call = call_of(path);
        let forward = |session, then| {
            Ok(Plan::Forward(Forward {
                session,
                buffer_body: true,
                endpoint: 0,
                then,
            }))
        };
        match call {
            Call::Spider if method == Method::HEAD => Ok(Plan::Forward(Forward {
                session: Need::Nothing,
                buffer_body: false,
                // The spider host when one is configured ([`Kind::endpoints`]).
                endpoint: usize::from(self.settings.spider_upstream.is_some()),
                then: Then::Pass,
            })),
            Call::Login => Ok(Plan::LocalWithSession),
            Call::Logout => {
                let nothing = local_json(
                    StatusCode::OK,
                    Vec::new(),
                    r#"{"message":"No session is held by countersign; nothing to log out."}"#
                        .into(),
                );
                forward(Need::SessionIfHeld(Box::new(nothing)), Then::ClearSession)
            }
            Call::Terminate => forward(Need::Nothing, Then::ClearSession),
            Call::ResetPassword => forward(Need::Nothing, Then::Pass),
            Call::RotateAccessKey
            | Call::RotateSecretKey
            | Call::PushAccessKey
            | Call::PushSecretKey => forward(Need::Session, Then::Inspect),
            Call::Spider | Call::Other => forward(Need::Session, Then::Pass),
        }
    }

    fn answer_with_session(&self) -> Response<Full<bytes::Bytes>> {
        let body = serde_json::json!({
            "session_id": tts_body::HELD,
            "user_type": "client",
            "message": "Logged-in successful; the session is held by countersign.",
        });
        local_json(StatusCode::OK, Vec::new(), body.to_string())
    }

    fn login<'a>(
        &'a self,
        channel: &'a dyn LoginChannel,
    ) -> BoxFuture<'a, Result<Credential, ProxyError>> {
        Box::pin(async move {
            let answer = match self.login_once(channel).await? {
                Ok(session) => return Ok(Credential::held(session)),
                Err(answer) => answer,
            };
            if !says(&answer.body, ACTIVE_SESSION) {
                return Err(ProxyError::LoginFailed(upstream_text(&answer)));
            }
            if !self.settings.force_login {
                return Err(ProxyError::LoginFailed(format!(
                    "{}; force_login is false, so countersign leaves the other session alone",
                    upstream_text(&answer)
                )));
            }
            tracing::info!(credential = %self.id, "an active session exists upstream; terminating it to log in");
            let terminated = channel.send(self.own_call("terminate_session")?).await?;
            if !terminated.status.is_success() {
                return Err(ProxyError::LoginFailed(format!(
                    "terminating the active session failed: {}",
                    upstream_text(&terminated)
                )));
            }
            channel.space_next_login().await?;
            match self.login_once(channel).await? {
                Ok(session) => Ok(Credential::held(session)),
                Err(answer) => Err(ProxyError::LoginFailed(upstream_text(&answer))),
            }
        })
    }

    fn login_request(&self) -> Option<Outgoing> {
        self.own_call("member_login").ok()
    }

    fn secrets(&self) -> Vec<(&'static str, Secret)> {
        let mut all = vec![
            ("password", self.settings.password.clone()),
            ("access_key", self.settings.access_key.clone()),
        ];
        if let Some(s) = &self.settings.secret {
            all.push(("secret", s.clone()));
        }
        all.extend(self.keys.all());
        all
    }

    fn sign(&self, out: &mut Outgoing, session: Option<&Secret>) -> Result<(), ProxyError> {
        let call = call_of(&out.path_and_query);
        if let Some((_, Rotation::Request(field))) = self.rotation(call) {
            check_pushed(out, field)?;
        }
        self.base_headers(&mut out.headers)?;
        if let Some(id) = session {
            let v = HeaderValue::from_str(id.expose()).map_err(|_| {
                ProxyError::Internal("held session id is not a valid header".into())
            })?;
            out.headers.insert(SESSION_ID, v);
            let email = self.fixed[3]
                .clone()
                .ok_or_else(|| ProxyError::Internal("email is not a valid header".into()))?;
            out.headers.insert(MEMBER_EMAIL, email);
        }
        self.sign_body(out, call)?;
        Ok(())
    }

    fn signature_inputs(&self, out: &Outgoing) -> Vec<(String, String)> {
        let Some(body) = &out.body else {
            return Vec::new();
        };
        let Some(input) = tts_body::checksum_input(body) else {
            return Vec::new();
        };
        vec![("checksum = sha256 of".into(), input)]
    }

    fn peek_body(&self, status: StatusCode) -> bool {
        status.is_client_error()
    }

    fn session_expired(&self, status: StatusCode, _: &HeaderMap, body: Option<&[u8]>) -> bool {
        status == StatusCode::UNAUTHORIZED || body.is_some_and(|b| says(b, SESSION_EXPIRED))
    }

    fn inspect<'a>(
        &'a self,
        sent: &'a Outgoing,
        answer: &'a mut Buffered,
    ) -> BoxFuture<'a, Result<(), ProxyError>> {
        Box::pin(async move {
            let call = call_of(&sent.path_and_query);
            let Some((name, how)) = self.rotation(call) else {
                return Ok(());
            };
            let new_key = match how {
                Rotation::Answer(fields) => tts_body::rotated_key(&answer.body, fields),
                Rotation::Request(field) => {
                    let body = sent.body.clone().unwrap_or_default();
                    tts_body::field(&body, tts_body::format_of(&sent.headers, &body), field)
                }
            };
            let Some(new_key) = new_key else {
                tracing::error!(credential = %self.id, key = name, "the upstream accepted a key change but countersign cannot find the new key; the old one is kept");
                return Err(ProxyError::KeyRotation(format!(
                    "the upstream accepted the {name} change, but countersign found no new key in it (looked for a JSON field {} or a bare token); the old key is kept, so later calls may fail until the config holds the new one",
                    match how {
                        Rotation::Answer(fields) => fields.join(" / "),
                        Rotation::Request(field) => format!("\"{field}\" in the request"),
                    }
                )));
            };
            self.keys
                .replace(name, Secret::new(new_key.clone()))
                .await?;
            answer.body = tts_body::redact_key(&answer.body, &new_key);
            Ok(())
        })
    }
}

#[cfg(test)]
#[path = "tts_tests.rs"]
mod tests;
