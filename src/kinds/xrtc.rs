//! XRTC (`xrtc-api.txt`): a cookie session from `POST /v1/auth/login`
//! (JSESSIONID and AWSALBAPP-0, bound to our IP), at most one login per
//! LOGIN_TIMEOUT per API key, sessions dead after 60 s unused, 401 / error
//! 10011 for a dead session, 20 requests/s per key and 1,000,000 a month per
//! account. Bodies go upstream byte for byte: XRTC takes non-standard JSON
//! (`{items:[…]}`), so nothing here parses or re-encodes a caller's body.

use std::time::Duration;

use futures_util::future::BoxFuture;
use http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::{BuildEnv, KindRef, KindRow, KindSettings};
use crate::config::{KindDefaults, RateLimit, Section};
use crate::error::ProxyError;
use crate::headers::is_call;
use crate::secret::Secret;
use crate::vocab::{
    fingerprint, identity, local_json, now_ms, safe_id, Credential, Kind, LoginChannel, Outgoing,
    Plan,
};

pub const ROW: KindRow = KindRow {
    name: "xrtc",
    defaults: DEFAULTS,
    parse: |s| Settings::parse(s).map(|k| std::sync::Arc::new(k) as KindRef),
};

pub const DEFAULTS: KindDefaults = KindDefaults {
    rate_limit: Some(RateLimit {
        per_second: 20.0,
        burst: 20,
        wait: Duration::from_secs(5),
    }),
    quota_per_month: Some(1_000_000),
    has_session: true,
    // The API binds cookies to the client's address: each replica logs in itself.
    shared_session: false,
    session_idle: Duration::from_secs(60),
    login_interval: Duration::from_secs(5),
};

const LOGIN_PATH: &str = "/v1/auth/login";
const REGISTRATION: &str = "/v1/auth/registration";
const OWNED: &[HeaderName] = &[COOKIE];
/// What a caller's own login gets instead of the real session cookie.
const PLACEHOLDER_COOKIE: &str = "JSESSIONID=held-by-countersign; Path=/";

#[derive(Debug, Clone)]
pub struct Settings {
    pub account_id: String,
    pub api_key: Secret,
}

impl Settings {
    pub fn parse(s: &mut Section<'_>) -> Option<Settings> {
        let account_id: Option<String> = s.required("account_id");
        if account_id.as_deref().is_some_and(str::is_empty) {
            s.problem("account_id", "must not be empty");
        }
        let api_key = s.secret("api_key", true);
        Some(Settings {
            account_id: account_id?,
            api_key: api_key?,
        })
    }
}

impl KindSettings for Settings {
    fn build(&self, _: &BuildEnv<'_>) -> Result<std::sync::Arc<dyn Kind>, String> {
        Ok(std::sync::Arc::new(Xrtc::new(self.clone())))
    }
}

pub struct Xrtc {
    settings: Settings,
}

impl Xrtc {
    pub fn new(settings: Settings) -> Self {
        Xrtc { settings }
    }
}

impl Kind for Xrtc {
    fn credential_id(&self) -> String {
        // Login spacing and the rate limit are per API key.
        identity(
            "xrtc",
            &[
                &self.settings.account_id,
                &fingerprint(&self.settings.api_key),
            ],
        )
    }

    fn quota_id(&self) -> String {
        // XRTC's monthly limit is per account, whichever of its keys is used.
        identity("xrtc", &[&self.settings.account_id])
    }

    fn legacy_credential_id(&self) -> Option<String> {
        Some(format!(
            "xrtc-{}-{}",
            safe_id(&self.settings.account_id),
            fingerprint(&self.settings.api_key)
        ))
    }

    fn legacy_quota_id(&self) -> Option<String> {
        Some(format!("xrtc-{}", safe_id(&self.settings.account_id)))
    }

    fn owned_headers(&self) -> &[HeaderName] {
        OWNED
    }

    fn plan(&self, method: &Method, path: &str, _: &HeaderMap) -> Result<Plan, ProxyError> {
        // Any spelling a lenient upstream router takes for the login is the
        // login (the path is canonical already: escapes decoded).
        if is_call(path, LOGIN_PATH) && method == Method::POST {
            // The caller's login is answered here: countersign holds the real session.
            let body = format!("{{\"servertimestamp\":{}}}", now_ms());
            return Ok(Plan::Local(Box::new(local_json(
                StatusCode::OK,
                vec![
                    (SET_COOKIE, PLACEHOLDER_COOKIE.into()),
                    (SET_COOKIE, "AWSALBAPP-0=held-by-countersign; Path=/".into()),
                ],
                body,
            ))));
        }
        if path
            .get(..REGISTRATION.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(REGISTRATION))
        {
            return Ok(Plan::forward(false, false));
        }
        // Bodies are at most 1 kB upstream: keep them for a replay.
        Ok(Plan::forward(true, true))
    }

    fn login<'a>(
        &'a self,
        channel: &'a dyn LoginChannel,
    ) -> BoxFuture<'a, Result<Credential, ProxyError>> {
        Box::pin(async move {
            let request = self
                .login_request()
                .ok_or_else(|| ProxyError::Internal("xrtc has a login request".into()))?;
            let answer = channel.send(request).await?;
            if !answer.status.is_success() {
                return Err(ProxyError::LoginFailed(upstream_error_text(
                    answer.status,
                    &answer.body,
                )));
            }
            let jar = merge_cookies("", &answer.headers);
            if !jar.split("; ").any(|c| c.starts_with("JSESSIONID=")) {
                return Err(ProxyError::LoginFailed(
                    "the login answer set no JSESSIONID cookie".into(),
                ));
            }
            Ok(Credential::held(Secret::new(jar)))
        })
    }

    fn login_request(&self) -> Option<Outgoing> {
        let body = serde_json::json!({
            "accountid": self.settings.account_id,
            "apikey": self.settings.api_key.expose(),
        })
        .to_string();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(crate::USER_AGENT));
        Some(Outgoing::post(LOGIN_PATH, headers, body))
    }

    fn secrets(&self) -> Vec<(&'static str, Secret)> {
        vec![("api_key", self.settings.api_key.clone())]
    }

    fn sign(&self, out: &mut Outgoing, session: Option<&Secret>) -> Result<(), ProxyError> {
        if let Some(jar) = session {
            let value = HeaderValue::from_str(jar.expose())
                .map_err(|_| ProxyError::Internal("held cookie is not a valid header".into()))?;
            out.headers.insert(COOKIE, value);
        }
        Ok(())
    }

    fn peek_body(&self, status: StatusCode) -> bool {
        status.is_client_error()
    }

    fn session_expired(&self, status: StatusCode, _: &HeaderMap, body: Option<&[u8]>) -> bool {
        status == StatusCode::UNAUTHORIZED || body.is_some_and(|b| error_code(b) == Some(10011))
    }

    fn screen_answer(&self, headers: &mut HeaderMap, _session: Option<&Secret>) -> Option<Secret> {
        // Only countersign's own login answer sets the held session's
        // cookies: a `Set-Cookie` on any other answer (which a caller can
        // steer, e.g. a login under another spelling behind a decoding
        // front) never replaces them, and never reaches the caller either.
        headers.remove(SET_COOKIE);
        None
    }
}

/// `errorcode` of an XRTC error body, if it is one.
fn error_code(body: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.get("errorcode")?.as_i64()
}

/// The upstream's own words for a failed login, for `login_failed`.
fn upstream_error_text(status: StatusCode, body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    match err {
        Some(e) => format!(
            "upstream answered {} with error {} ({})",
            status.as_u16(),
            e.get("errorcode")
                .map(|c| c.to_string())
                .unwrap_or_default(),
            e.get("errormessage")
                .and_then(|m| m.as_str())
                .unwrap_or("no message")
        ),
        None => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            format!("upstream answered {}: {text}", status.as_u16())
        }
    }
}

/// Applies the `Set-Cookie` headers to a jar written as a `Cookie` header
/// (`a=1; b=2`): each sets or replaces one name (RFC 6265 §5.2: the pair is
/// what precedes the first ';', split at the first '=').
pub fn merge_cookies(jar: &str, headers: &HeaderMap) -> String {
    let mut pairs: Vec<(String, String)> = jar
        .split("; ")
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for v in headers.get_all(SET_COOKIE) {
        let Ok(text) = v.to_str() else { continue };
        let pair = text.split(';').next().unwrap_or("");
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            continue;
        }
        match pairs.iter_mut().find(|(n, _)| n == name) {
            Some(p) => p.1 = value.to_string(),
            None => pairs.push((name.to_string(), value.to_string())),
        }
    }
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_cookies(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SET_COOKIE, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn jar_from_login_and_refresh() {
        let h = set_cookies(&[
            "JSESSIONID=ABC123; Path=/; HttpOnly",
            "AWSALBAPP-0=xyz==; Expires=Tue, 01 Dec 2026 00:00:00 GMT; Path=/",
        ]);
        let jar = merge_cookies("", &h);
        assert_eq!(jar, "JSESSIONID=ABC123; AWSALBAPP-0=xyz==");
        let h = set_cookies(&["AWSALBAPP-0=new; Path=/"]);
        assert_eq!(
            merge_cookies(&jar, &h),
            "JSESSIONID=ABC123; AWSALBAPP-0=new"
        );
    }

    #[test]
    fn expiry_is_401_or_10011() {
        let x = Xrtc::new(Settings {
            account_id: "AC1".into(),
            api_key: Secret::new("k"),
        });
        let h = HeaderMap::new();
        assert!(x.session_expired(StatusCode::UNAUTHORIZED, &h, None));
        let body = br#"{"error":{"errorgroup":4,"errorcode":10011,"errormessage":"Server session denied"}}"#;
        assert!(x.session_expired(StatusCode::BAD_REQUEST, &h, Some(body)));
        let other = br#"{"error":{"errorgroup":6,"errorcode":30,"errormessage":"x"}}"#;
        assert!(!x.session_expired(StatusCode::BAD_REQUEST, &h, Some(other)));
        assert!(!x.session_expired(StatusCode::OK, &h, None));
    }

    #[test]
    fn identities_hold_no_secret() {
        let x = Xrtc::new(Settings {
            account_id: "AC0987654321012345".into(),
            api_key: Secret::new("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        });
        let id = x.credential_id();
        assert!(id.starts_with("xrtc-"));
        assert!(!id.contains("xxxxxxxx") && !id.contains("AC0987"));
        assert_ne!(x.quota_id(), id);
        // 0.1's, for the migration.
        let legacy = x.legacy_credential_id().unwrap();
        assert!(legacy.starts_with("xrtc-AC0987654321012345-"), "{legacy}");
        assert_eq!(x.legacy_quota_id().unwrap(), "xrtc-AC0987654321012345");
    }

    /// 0.1 mapped `.` and `_` alike: two accounts were one identity.
    #[test]
    fn accounts_0_1_could_not_tell_apart_are_two_identities() {
        let x = |account: &str| {
            Xrtc::new(Settings {
                account_id: account.into(),
                api_key: Secret::new("k"),
            })
        };
        assert_eq!(x("AC.1").legacy_quota_id(), x("AC_1").legacy_quota_id());
        assert_ne!(x("AC.1").quota_id(), x("AC_1").quota_id());
        assert_ne!(x("AC.1").credential_id(), x("AC_1").credential_id());
    }
}
