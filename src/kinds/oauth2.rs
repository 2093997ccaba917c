//! OAuth 2.0 client credentials (RFC 6749 §4.4): countersign fetches an
//! access token from `token_url` with the client's id and secret, holds it
//! as the route's session (one fetch for any number of callers, shared
//! through Redis across replicas), renews it `refresh_before` its expiry,
//! and sends it as `Authorization: Bearer` (RFC 6750 §2.1). A 401 from the
//! upstream means one new token and one replay.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::future::BoxFuture;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use super::{BuildEnv, KindRef, KindRow, KindSettings};
use crate::canonical::pct;
use crate::config::{KindDefaults, Section};
use crate::error::ProxyError;
use crate::secret::Secret;
use crate::upstream::Upstream;
use crate::vocab::{
    fingerprint, identity, Buffered, Credential, Forward, Kind, LoginChannel, Need, Outgoing, Plan,
    Then,
};

pub const ROW: KindRow = KindRow {
    name: "oauth2",
    defaults: KindDefaults {
        rate_limit: None,
        quota_per_month: None,
        has_session: true,
        // One token for every replica: one fetch for all of them.
        shared_session: true,
        // A token does not go idle; it expires.
        session_idle: Duration::from_secs(365 * 86_400),
        login_interval: Duration::from_secs(1),
    },
    parse: |s| Settings::parse(s).map(|k| Arc::new(k) as KindRef),
};

const OWNED: &[HeaderName] = &[AUTHORIZATION];
/// Token answers are small; a bigger one is refused rather than held.
const TOKEN_ANSWER_MAX: usize = 64 * 1024;

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic, id and secret each form-encoded first (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Origin and path of the token endpoint.
    pub token_url: (Uri, String),
    pub client_id: String,
    pub client_secret: Secret,
    pub client_auth: ClientAuth,
    pub scope: Option<String>,
    /// Extra form fields of the token request (`audience`, `resource`, …), in name order.
    pub token_params: Vec<(String, String)>,
    pub refresh_before: Duration,
    /// Bodies up to this size are kept for a replay after a 401.
    pub replay_body_max: u64,
}

impl Settings {
    pub fn parse(s: &mut Section<'_>) -> Option<Settings> {
        let token_url = s.required::<String>("token_url").and_then(|u| {
            crate::config::parse_upstream(&u)
                .map_err(|m| s.problem("token_url", m))
                .ok()
        });
        let client_id: Option<String> = s.required("client_id");
        if client_id.as_deref().is_some_and(str::is_empty) {
            s.problem("client_id", "must not be empty");
        }
        let client_secret = s.secret("client_secret", true);
        let client_auth = match s.get::<String>("client_auth").as_deref() {
            None | Some("basic") => ClientAuth::Basic,
            Some("post") => ClientAuth::Post,
            Some(_) => {
                s.problem(
                    "client_auth",
                    "must be \"basic\" (client_secret_basic) or \"post\" (client_secret_post)",
                );
                ClientAuth::Basic
            }
        };
        let scope: Option<String> = s.get("scope");
        let token_params: std::collections::BTreeMap<String, String> =
            s.get("token_params").unwrap_or_default();
        for name in token_params.keys() {
            if matches!(
                name.as_str(),
                "grant_type" | "scope" | "client_id" | "client_secret"
            ) {
                s.problem(
                    "token_params",
                    format!("\"{name}\" is set by countersign; use its own key"),
                );
            }
        }
        let refresh_before = s
            .duration("refresh_before")
            .unwrap_or(Duration::from_secs(60));
        let replay_body_max = s.size("replay_body_max").unwrap_or(64 * 1024);
        Some(Settings {
            token_url: token_url?,
            client_id: client_id?,
            client_secret: client_secret?,
            client_auth,
            scope: scope.filter(|s| !s.is_empty()),
            token_params: token_params.into_iter().collect(),
            refresh_before,
            replay_body_max,
        })
    }
}

impl KindSettings for Settings {
    fn build(&self, env: &BuildEnv<'_>) -> Result<Arc<dyn Kind>, String> {
        // The token endpoint has the route's timeouts and trust roots; its
        // path goes in each request.
        let endpoint = Upstream::at(env.route, &self.token_url.0, "").map_err(|e| e.to_string())?;
        Ok(Arc::new(OAuth2 {
            settings: self.clone(),
            endpoint,
        }))
    }
}

pub struct OAuth2 {
    settings: Settings,
    /// Where tokens come from (not the route's upstream: a request there
    /// takes no rate permit of the API's).
    endpoint: Upstream,
}

impl OAuth2 {
    /// The client-credentials token request (RFC 6749 §4.4.2).
    fn token_request(&self) -> Outgoing {
        let s = &self.settings;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &s.scope {
            form.append_pair("scope", scope);
        }
        for (name, value) in &s.token_params {
            form.append_pair(name, value);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(crate::USER_AGENT));
        match s.client_auth {
            ClientAuth::Basic => {
                // §2.3.1: each part form-encoded before base64. Space as
                // %20, not '+': decoders that unquote (authlib) agree then.
                let pair = format!(
                    "{}:{}",
                    pct::encode(s.client_id.as_bytes()),
                    pct::encode(s.client_secret.expose().as_bytes())
                );
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                if let Ok(v) = HeaderValue::from_str(&format!("Basic {basic}")) {
                    headers.insert(AUTHORIZATION, v);
                }
            }
            ClientAuth::Post => {
                form.append_pair("client_id", &s.client_id);
                form.append_pair("client_secret", s.client_secret.expose());
            }
        }
        let path = if s.token_url.1.is_empty() {
            "/"
        } else {
            &s.token_url.1
        };
        Outgoing::post(path, headers, form.finish())
    }
}

/// The token endpoint's answer (RFC 6749 §5.1), or its error (§5.2).
fn read_token(answer: &Buffered, refresh_before: Duration) -> Result<Credential, ProxyError> {
    let json: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
    };
    if !answer.status.is_success() {
        let said = match (field("error"), field("error_description")) {
            (Some(e), Some(d)) => format!("{e} ({d})"),
            (Some(e), None) => e.to_string(),
            _ => String::from_utf8_lossy(&answer.body)
                .chars()
                .take(200)
                .collect(),
        };
        return Err(ProxyError::LoginFailed(format!(
            "the token endpoint answered {}: {said}",
            answer.status.as_u16()
        )));
    }
    let token = field("access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ProxyError::LoginFailed("the token endpoint's answer has no access_token".into())
        })?;
    // A token that cannot be a header value would fail every request.
    if HeaderValue::from_str(token).is_err() {
        return Err(ProxyError::LoginFailed(
            "the token endpoint issued a token that is not a valid header value".into(),
        ));
    }
    match field("token_type") {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        other => {
            return Err(ProxyError::LoginFailed(format!(
                "the token endpoint issued a {} token; countersign sends Bearer tokens only",
                other.unwrap_or("untyped")
            )))
        }
    }
    // `expires_in` is a number; some servers send it as a string.
    let expires_in = json
        .as_ref()
        .and_then(|v| v.get("expires_in"))
        .and_then(|e| {
            e.as_u64()
                .or_else(|| e.as_str().and_then(|s| s.trim().parse().ok()))
        });
    let value = Secret::new(token);
    Ok(match expires_in {
        Some(secs) => Credential::expiring(value, Duration::from_secs(secs), refresh_before),
        None => Credential::held(value),
    })
}

impl Kind for OAuth2 {
    fn credential_id(&self) -> String {
        let s = &self.settings;
        let params: Vec<String> = s
            .token_params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut parts = vec![
            s.token_url.0.to_string(),
            s.token_url.1.clone(),
            s.client_id.clone(),
            fingerprint(&s.client_secret),
            s.scope.clone().unwrap_or_default(),
        ];
        parts.extend(params);
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        identity("oauth2", &parts)
    }

    /// 0.1 used the same identity, without the route's upstream.
    fn legacy_credential_id(&self) -> Option<String> {
        Some(self.credential_id())
    }

    fn owned_headers(&self) -> &[HeaderName] {
        OWNED
    }

    fn plan(&self, _: &Method, _: &str, headers: &HeaderMap) -> Result<Plan, ProxyError> {
        // Small bodies are kept for a replay after a 401; larger ones and
        // chunked ones stream, and a 401 on them reaches the caller. (A body
        // the HTTP/1 fast path read whole has no length in the map: it is
        // in memory already, and kept.)
        let keep = match crate::headers::content_length(headers) {
            Some(n) => n <= self.settings.replay_body_max,
            None => !headers.contains_key(http::header::TRANSFER_ENCODING),
        };
        Ok(Plan::Forward(Forward {
            session: Need::Session,
            buffer_body: keep,
            endpoint: 0,
            then: Then::Pass,
        }))
    }

    fn login<'a>(
        &'a self,
        channel: &'a dyn LoginChannel,
    ) -> BoxFuture<'a, Result<Credential, ProxyError>> {
        Box::pin(async move {
            let answer = self
                .endpoint
                .send_buffered(self.token_request(), channel.deadline(), TOKEN_ANSWER_MAX)
                .await
                .map_err(|e| {
                    ProxyError::LoginFailed(format!("the token endpoint cannot be reached: {e}"))
                })?;
            read_token(&answer, self.settings.refresh_before)
        })
    }

    fn sign(&self, out: &mut Outgoing, session: Option<&Secret>) -> Result<(), ProxyError> {
        if let Some(token) = session {
            let v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| ProxyError::Internal("the held token is not a valid header".into()))?;
            out.headers.insert(AUTHORIZATION, v);
        }
        Ok(())
    }

    fn session_expired(&self, status: StatusCode, _: &HeaderMap, _: Option<&[u8]>) -> bool {
        status == StatusCode::UNAUTHORIZED
    }

    fn login_request(&self) -> Option<Outgoing> {
        Some(self.token_request())
    }

    fn login_origin(&self) -> Option<String> {
        Some(
            self.settings
                .token_url
                .0
                .to_string()
                .trim_end_matches('/')
                .to_string(),
        )
    }

    fn secrets(&self) -> Vec<(&'static str, Secret)> {
        let mut all = vec![("client_secret", self.settings.client_secret.clone())];
        // The Basic credential carries the secret base64-encoded.
        if let Some(basic) = self
            .token_request()
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        {
            all.push(("client_secret (Basic credential)", Secret::new(basic)));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Buffered {
        Buffered {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.to_string().into(),
        }
    }

    #[test]
    fn the_rfc_6749_answers_are_read() {
        let before = Duration::from_secs(60);
        // §4.4.3 / §5.1's example answer.
        let ok = answer(
            200,
            r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"example","expires_in":3600}"#,
        );
        let e = read_token(&ok, before).unwrap_err();
        assert!(e.to_string().contains("example token"), "{e}");
        let ok = answer(
            200,
            r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"Bearer","expires_in":3600}"#,
        );
        let c = read_token(&ok, before).unwrap();
        assert_eq!(c.value.expose(), "2YotnFZFEjr1zCsicMWpAA");
        assert_eq!(c.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(c.renew_in, Some(Duration::from_secs(3540)));
        let no_expiry = answer(200, r#"{"access_token":"t","token_type":"bearer"}"#);
        assert_eq!(read_token(&no_expiry, before).unwrap().expires_in, None);
        let as_text = answer(
            200,
            r#"{"access_token":"t","token_type":"Bearer","expires_in":"30"}"#,
        );
        assert_eq!(
            read_token(&as_text, before).unwrap().renew_in,
            Some(Duration::from_secs(15))
        );
        // §5.2's error answer: its error and description reach the caller.
        let err = answer(
            400,
            r#"{"error":"invalid_request","error_description":"Request was missing the 'redirect_uri' parameter."}"#,
        );
        let e = read_token(&err, before).unwrap_err();
        assert_eq!(e.code(), "login_failed");
        assert!(
            e.to_string().contains(
                "400: invalid_request (Request was missing the 'redirect_uri' parameter.)"
            ),
            "{e}"
        );
        let bad = answer(
            200,
            "{\"access_token\":\"a\\nb\",\"token_type\":\"Bearer\"}",
        );
        assert_eq!(read_token(&bad, before).unwrap_err().code(), "login_failed");
    }

    fn settings(auth: ClientAuth) -> Settings {
        Settings {
            token_url: crate::config::parse_upstream("https://auth.example.com/oauth/token")
                .unwrap(),
            client_id: "s6BhdRkqt3".into(),
            client_secret: Secret::new("gX1fBat3bV"),
            client_auth: auth,
            scope: Some("read write".into()),
            token_params: vec![("audience".into(), "https://api.example.com".into())],
            refresh_before: Duration::from_secs(60),
            replay_body_max: 64 * 1024,
        }
    }

    fn kind(s: Settings) -> OAuth2 {
        let route = crate::kinds::from_toml(
            "[routes.r]\nkind = \"xrtc\"\nupstream = \"https://api.example.com\"\naccount_id = \"a\"\napi_key = \"k\"\n",
        )
        .unwrap()
        .routes
        .remove("r")
        .unwrap();
        let endpoint = Upstream::at(&route, &s.token_url.0, "").unwrap();
        OAuth2 {
            settings: s,
            endpoint,
        }
    }

    #[test]
    fn the_token_request_is_rfc_6749_4_4_2() {
        let k = kind(settings(ClientAuth::Basic));
        let req = k.token_request();
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.path_and_query, "/oauth/token");
        // §4.4.2's example credentials, Basic as §2.3.1 encodes them.
        assert_eq!(
            req.headers[AUTHORIZATION],
            "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW"
        );
        assert_eq!(
            req.headers[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            req.body.as_deref().unwrap(),
            b"grant_type=client_credentials&scope=read+write&audience=https%3A%2F%2Fapi.example.com"
        );
        let k = kind(settings(ClientAuth::Post));
        let req = k.token_request();
        assert!(!req.headers.contains_key(AUTHORIZATION));
        assert!(String::from_utf8_lossy(req.body.as_deref().unwrap())
            .ends_with("&client_id=s6BhdRkqt3&client_secret=gX1fBat3bV"));
    }

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        let mut s = settings(ClientAuth::Basic);
        s.client_id = "id:with space".into();
        s.client_secret = Secret::new("p+w%d é");
        let req = kind(s).token_request();
        let header = req.headers[AUTHORIZATION].to_str().unwrap().to_string();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(header.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "id%3Awith%20space:p%2Bw%25d%20%C3%A9"
        );
    }

    #[test]
    fn identities_separate_clients_scopes_and_endpoints_and_hide_the_secret() {
        let a = kind(settings(ClientAuth::Basic)).credential_id();
        let mut other_scope = settings(ClientAuth::Basic);
        other_scope.scope = Some("read".into());
        let mut other_endpoint = settings(ClientAuth::Basic);
        other_endpoint.token_url =
            crate::config::parse_upstream("https://staging-auth.example.com/oauth/token").unwrap();
        assert_ne!(a, kind(other_scope).credential_id());
        assert_ne!(a, kind(other_endpoint).credential_id());
        assert!(!a.contains("gX1fBat3bV") && a.starts_with("oauth2-"));
    }
}
