//! AWS Signature Version 4, for any AWS service (and any SigV4 endpoint):
//! static credentials (with an optional session token), or web identity
//! (Kubernetes IRSA and the like): temporary credentials from STS
//! `AssumeRoleWithWebIdentity`, held as the route's session and renewed
//! five minutes before they expire.
//!
//! What is signed is what is sent: the caller's `Authorization`,
//! `X-Amz-Date`, `X-Amz-Security-Token` and `X-Amz-Content-Sha256` are
//! dropped, the path and query are re-encoded canonically (each part
//! decoded, then percent-encoded with only RFC 3986 unreserved characters
//! kept), and then the request is signed (`sigv4.rs`). S3 signs the path as
//! sent; every other service normalised and encoded twice.
//!
//! Why the signer is written here rather than taken from `aws-sigv4`:
//! `explain` and the tests need the canonical request and the string to
//! sign, which `aws-sigv4` does not expose; the path and query rules above
//! are countersign's own either way; and the signature itself is a short
//! HMAC chain, pinned here by the whole AWS suite.

pub mod sigv4;
mod sts;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use http::header::{AUTHORIZATION, EXPECT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use super::{BuildEnv, KindRef, KindRow, KindSettings};
use crate::config::{KindDefaults, Section};
use crate::error::ProxyError;
use crate::secret::Secret;
use crate::upstream::Upstream;
use crate::vocab::{
    fingerprint, identity, Credential, Forward, Kind, LoginChannel, Need, Outgoing, Plan, Then,
};
use sigv4::{Signable, UriRules};

pub const ROW: KindRow = KindRow {
    name: "aws",
    defaults: KindDefaults {
        rate_limit: None,
        quota_per_month: None,
        // Web identity: temporary credentials are the session (static
        // credentials never use it).
        has_session: true,
        shared_session: true,
        session_idle: Duration::from_secs(365 * 86_400),
        login_interval: Duration::from_secs(1),
    },
    parse: |s| Settings::parse(s).map(|k| Arc::new(k) as KindRef),
};

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
const X_AMZ_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
static OWNED: [HeaderName; 5] = [AUTHORIZATION, X_AMZ_DATE, X_AMZ_TOKEN, X_AMZ_SHA256, EXPECT];
/// Headers left out of the signature, as the AWS SDKs leave them out: an
/// intermediary may change them.
const UNSIGNED: &[&str] = &[
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "transfer-encoding",
];
/// STS issues credentials for at least 15 minutes; new ones 5 minutes early.
const RENEW_BEFORE: Duration = Duration::from_secs(300);
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

#[derive(Debug, Clone)]
pub enum Credentials {
    Static {
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
    WebIdentity {
        role_arn: String,
        token_file: std::path::PathBuf,
        session_name: String,
        /// STS's origin.
        sts_endpoint: (Uri, String),
    },
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The signing name (`s3`, `dynamodb`, `execute-api`, …).
    pub service: String,
    pub region: String,
    pub credentials: Credentials,
    /// `payload = "signed"`: the body's SHA-256 (buffered); else `UNSIGNED-PAYLOAD` (streamed).
    pub sign_payload: bool,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Settings {
    pub fn parse(s: &mut Section<'_>) -> Option<Settings> {
        let service: Option<String> = s.required("service");
        if service.as_deref().is_some_and(|v| !is_name(v)) {
            s.problem(
                "service",
                "must be an AWS signing name: lower-case letters, digits and '-' (s3, dynamodb, execute-api)",
            );
        }
        let region: Option<String> = s.required("region");
        if region.as_deref().is_some_and(|v| !is_name(v)) {
            s.problem(
                "region",
                "must be an AWS region: lower-case letters, digits and '-' (us-east-1)",
            );
        }
        let sign_payload = match s.get::<String>("payload").as_deref() {
            None | Some("signed") => true,
            Some("unsigned") => false,
            Some(other) => {
                s.problem(
                    "payload",
                    format!("\"{other}\" is neither \"signed\" nor \"unsigned\""),
                );
                true
            }
        };
        let credentials = match (s.has("access_key_id"), s.has("role_arn")) {
            (true, true) => {
                s.problem(
                    "role_arn",
                    "give static credentials (access_key_id) or web identity (role_arn), not both",
                );
                None
            }
            (false, false) => {
                s.problem(
                    "access_key_id",
                    "is required (or role_arn and web_identity_token_file for web identity)",
                );
                None
            }
            (true, false) => parse_static(s),
            (false, true) => parse_web_identity(s, region.as_deref()),
        };
        Some(Settings {
            service: service?,
            region: region?,
            credentials: credentials?,
            sign_payload,
        })
    }
}

fn parse_static(s: &mut Section<'_>) -> Option<Credentials> {
    let access_key_id: Option<String> = s.required("access_key_id");
    if access_key_id
        .as_deref()
        .is_some_and(|k| k.len() < 16 || !k.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        s.problem(
            "access_key_id",
            "does not look like an AWS access key id (16 or more letters and digits, e.g. AKIA…)",
        );
    }
    let secret_access_key = s.secret("secret_access_key", true);
    let session_token = s.secret("session_token", false);
    Some(Credentials::Static {
        access_key_id: access_key_id?,
        secret_access_key: secret_access_key?,
        session_token,
    })
}

fn parse_web_identity(s: &mut Section<'_>, region: Option<&str>) -> Option<Credentials> {
    let role_arn: Option<String> = s.required("role_arn");
    if role_arn.as_deref().is_some_and(|a| !a.starts_with("arn:")) {
        s.problem(
            "role_arn",
            "must be an ARN (arn:aws:iam::ACCOUNT:role/NAME)",
        );
    }
    let token_file: Option<std::path::PathBuf> = s.required("web_identity_token_file");
    if let Some(p) = &token_file {
        if !p.is_file() {
            s.problem(
                "web_identity_token_file",
                format!("file {} not found", p.display()),
            );
        }
    }
    let session_name: String = s
        .get("role_session_name")
        .unwrap_or_else(|| "countersign".to_string());
    let sts = s
        .get::<String>("sts_endpoint")
        .or_else(|| region.map(|r| format!("https://sts.{r}.amazonaws.com")));
    let sts_endpoint = sts.and_then(|u| {
        crate::config::parse_upstream(&u)
            .map_err(|m| s.problem("sts_endpoint", m))
            .ok()
    });
    Some(Credentials::WebIdentity {
        role_arn: role_arn?,
        token_file: token_file?,
        session_name,
        sts_endpoint: sts_endpoint?,
    })
}

impl KindSettings for Settings {
    fn build(&self, env: &BuildEnv<'_>) -> Result<Arc<dyn Kind>, String> {
        let sts = match &self.credentials {
            Credentials::WebIdentity { sts_endpoint, .. } => Some(
                Upstream::at(env.route, &sts_endpoint.0, &sts_endpoint.1)
                    .map_err(|e| e.to_string())?,
            ),
            Credentials::Static { .. } => None,
        };
        let host = env
            .route
            .upstream
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        Ok(Arc::new(Aws {
            settings: self.clone(),
            host,
            origin: env.route.upstream.to_string(),
            base_path: env.route.base_path.clone(),
            rules: if self.service == "s3" {
                UriRules::S3
            } else {
                UriRules::GENERAL
            },
            sts,
            key_cache: Mutex::new(None),
        }))
    }
}

pub struct Aws {
    settings: Settings,
    /// The `Host` the request is sent with (signed).
    host: String,
    /// The upstream's origin, for the credential identity.
    origin: String,
    /// The upstream URL's own path, signed as part of the path.
    base_path: String,
    rules: UriRules,
    /// STS, for web identity.
    sts: Option<Upstream>,
    /// The day's signing key for the credentials in use: (date, access key
    /// id, key), so most requests compute one HMAC, not five.
    key_cache: Mutex<Option<(String, String, [u8; 32])>>,
}

/// The credentials a request is signed with.
struct Keys<'a> {
    access_key_id: &'a str,
    secret: &'a str,
    token: Option<&'a str>,
}

/// What a temporary credential looks like when `explain` signs without one.
const PLACEHOLDER_KEYS: Keys<'static> = Keys {
    access_key_id: "ASIA-FROM-STS",
    secret: "secret-from-sts",
    token: Some("token-from-sts"),
};

impl Aws {
    fn web_identity(&self) -> bool {
        matches!(self.settings.credentials, Credentials::WebIdentity { .. })
    }

    fn keys<'a>(&'a self, session: Option<&'a Secret>) -> Result<Keys<'a>, ProxyError> {
        match &self.settings.credentials {
            Credentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => Ok(Keys {
                access_key_id,
                secret: secret_access_key.expose(),
                token: session_token.as_ref().map(Secret::expose),
            }),
            Credentials::WebIdentity { .. } => {
                let held = session.ok_or_else(|| {
                    ProxyError::Internal("web identity needs its temporary credentials".into())
                })?;
                Ok(sts::unpack(held.expose()).unwrap_or(PLACEHOLDER_KEYS))
            }
        }
    }

    fn signing_key(&self, keys: &Keys<'_>, date: &str) -> [u8; 32] {
        let mut cache = self.key_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((d, id, key)) = cache.as_ref() {
            if d == date && id == keys.access_key_id {
                return *key;
            }
        }
        let key = sigv4::signing_key(
            keys.secret,
            date,
            &self.settings.region,
            &self.settings.service,
        );
        *cache = Some((date.to_string(), keys.access_key_id.to_string(), key));
        key
    }

    /// The headers to sign, as they will be sent: `host` first, then the
    /// outgoing ones but those an intermediary may change. (A value that
    /// is not visible ASCII is signed as its UTF-8 reading; `lossy` holds it.)
    fn signed_headers<'a>(
        &'a self,
        headers: &'a HeaderMap,
        lossy: &'a mut Vec<String>,
    ) -> Vec<(&'a str, &'a str)> {
        // Values that are not visible ASCII are rare: only then are their
        // UTF-8 readings made (in order, one per such value).
        if headers.values().any(|v| v.to_str().is_err()) {
            *lossy = headers
                .values()
                .filter(|v| v.to_str().is_err())
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
        }
        let mut list = Vec::with_capacity(headers.len() + 1);
        list.push(("host", self.host.as_str()));
        let mut next_lossy = lossy.iter();
        for (name, value) in headers {
            let value = match value.to_str() {
                Ok(v) => v,
                Err(_) => next_lossy.next().map_or("", String::as_str),
            };
            if UNSIGNED.contains(&name.as_str()) {
                continue;
            }
            list.push((name.as_str(), value));
        }
        list
    }

    /// The canonical request and string to sign of a signed request (for
    /// `explain`), and its scope.
    fn signature_parts(&self, out: &Outgoing) -> Option<(String, String)> {
        let amz_date = out.headers.get(&X_AMZ_DATE)?.to_str().ok()?.to_string();
        let payload = out.headers.get(&X_AMZ_SHA256)?.to_str().ok()?.to_string();
        let (path, query) = split(&out.path_and_query);
        let full_path = format!("{}{path}", self.base_path);
        let mut lossy = Vec::new();
        let headers = self.signed_headers(&out.headers, &mut lossy);
        let req = Signable {
            method: out.method.as_str(),
            path: &full_path,
            query,
            headers: &headers,
            payload_hash: &payload,
        };
        let (canonical, _) = sigv4::canonical_request(&req, self.rules);
        let scope = sigv4::scope(
            &amz_date[..8],
            &self.settings.region,
            &self.settings.service,
        );
        let sts = sigv4::string_to_sign(&amz_date, &scope, &canonical);
        Some((canonical, sts))
    }
}

fn split(pq: &str) -> (&str, &str) {
    pq.split_once('?').unwrap_or((pq, ""))
}

/// The path re-encoded canonically: each segment decoded, then encoded with
/// only unreserved characters kept (so S3 decodes exactly the key signed).
fn canonical_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        sigv4::push_reencoded(&mut out, segment);
    }
    out
}

/// The query re-encoded canonically, parameters in the order they came; a
/// `+` is a literal plus (sent as `%2B`).
fn canonical_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 8);
    for (i, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((n, v)) => {
                sigv4::push_reencoded(&mut out, n);
                out.push('=');
                sigv4::push_reencoded(&mut out, v);
            }
            None => sigv4::push_reencoded(&mut out, pair),
        }
    }
    out
}

/// `20150830T123600Z` for `t` (written digit by digit: this is on every
/// request, and `format!` with padding was a visible share of signing).
fn amz_date(t: SystemTime) -> String {
    fn two(out: &mut String, n: u8) {
        out.push(char::from(b'0' + n / 10 % 10));
        out.push(char::from(b'0' + n % 10));
    }
    let t = time::OffsetDateTime::from(t);
    let year = u16::try_from(t.year()).unwrap_or(0).min(9999);
    let mut out = String::with_capacity(16);
    two(&mut out, (year / 100) as u8);
    two(&mut out, (year % 100) as u8);
    two(&mut out, u8::from(t.month()));
    two(&mut out, t.day());
    out.push('T');
    two(&mut out, t.hour());
    two(&mut out, t.minute());
    two(&mut out, t.second());
    out.push('Z');
    out
}

fn header(value: &str) -> Result<HeaderValue, ProxyError> {
    HeaderValue::from_str(value)
        .map_err(|_| ProxyError::Internal("an AWS signing value is not a valid header".into()))
}

impl Kind for Aws {
    fn credential_id(&self) -> String {
        let s = &self.settings;
        let (who, secret) = match &s.credentials {
            Credentials::Static {
                access_key_id,
                secret_access_key,
                ..
            } => (access_key_id.clone(), fingerprint(secret_access_key)),
            Credentials::WebIdentity {
                role_arn,
                token_file,
                session_name,
                sts_endpoint,
            } => (
                format!("{role_arn} {session_name} {}", sts_endpoint.0),
                token_file.display().to_string(),
            ),
        };
        identity(
            "aws",
            &[
                &s.service,
                &s.region,
                &self.origin,
                &self.base_path,
                &who,
                &secret,
            ],
        )
    }

    fn owned_headers(&self) -> &[HeaderName] {
        &OWNED
    }

    fn plan(&self, _: &Method, _: &str, headers: &HeaderMap) -> Result<Plan, ProxyError> {
        // Signed payloads are hashed: buffered. Unsigned ones stream with
        // their Content-Length; without one (chunked), the body is read to
        // learn it, since S3 refuses chunked uploads. A body the HTTP/1
        // fast path read whole has no length in the map: it is in memory.
        let buffer =
            self.settings.sign_payload || crate::headers::content_length(headers).is_none();
        Ok(Plan::Forward(Forward {
            session: if self.web_identity() {
                Need::Session
            } else {
                Need::Nothing
            },
            buffer_body: buffer,
            endpoint: 0,
            then: Then::Pass,
        }))
    }

    fn login<'a>(
        &'a self,
        channel: &'a dyn LoginChannel,
    ) -> BoxFuture<'a, Result<Credential, ProxyError>> {
        Box::pin(async move {
            let (
                Credentials::WebIdentity {
                    role_arn,
                    token_file,
                    session_name,
                    ..
                },
                Some(sts_upstream),
            ) = (&self.settings.credentials, &self.sts)
            else {
                return Err(ProxyError::Internal(
                    "static AWS credentials need no login".into(),
                ));
            };
            let fetched = sts::assume_role_with_web_identity(
                sts_upstream,
                role_arn,
                token_file,
                session_name,
                channel.deadline(),
            )
            .await?;
            Ok(Credential::expiring(
                fetched.value,
                fetched.expires_in,
                RENEW_BEFORE,
            ))
        })
    }

    fn sign(&self, out: &mut Outgoing, session: Option<&Secret>) -> Result<(), ProxyError> {
        let keys = self.keys(session)?;
        let (path, query) = split(&out.path_and_query);
        let path = canonical_path(path);
        let query = canonical_query(query);
        out.path_and_query = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let payload = match (&out.body, self.settings.sign_payload) {
            (Some(body), true) => sigv4::payload_hash(body),
            _ => UNSIGNED_PAYLOAD.to_string(),
        };
        let now = amz_date(SystemTime::now());
        out.headers.insert(X_AMZ_DATE, header(&now)?);
        out.headers.insert(X_AMZ_SHA256, header(&payload)?);
        if let Some(token) = keys.token {
            out.headers.insert(X_AMZ_TOKEN, header(token)?);
        }
        let (path, query) = split(&out.path_and_query);
        let full_path = format!("{}{path}", self.base_path);
        let mut lossy = Vec::new();
        let headers = self.signed_headers(&out.headers, &mut lossy);
        let req = Signable {
            method: out.method.as_str(),
            path: &full_path,
            query,
            headers: &headers,
            payload_hash: &payload,
        };
        let (canonical, signed) = sigv4::canonical_request(&req, self.rules);
        let date = &now[..8];
        let scope = sigv4::scope(date, &self.settings.region, &self.settings.service);
        let sts = sigv4::string_to_sign(&now, &scope, &canonical);
        let signature = sigv4::signature(&self.signing_key(&keys, date), &sts);
        let mut auth = String::with_capacity(
            80 + keys.access_key_id.len() + scope.len() + signed.len() + signature.len(),
        );
        for part in [
            "AWS4-HMAC-SHA256 Credential=",
            keys.access_key_id,
            "/",
            &scope,
            ", SignedHeaders=",
            &signed,
            ", Signature=",
            &signature,
        ] {
            auth.push_str(part);
        }
        out.headers.insert(AUTHORIZATION, header(&auth)?);
        Ok(())
    }

    fn peek_body(&self, status: StatusCode) -> bool {
        self.web_identity()
            && (status == StatusCode::FORBIDDEN || status == StatusCode::BAD_REQUEST)
    }

    fn session_expired(&self, status: StatusCode, _: &HeaderMap, body: Option<&[u8]>) -> bool {
        // Temporary credentials the service says have expired (S3's XML
        // `ExpiredToken`, the JSON services' `ExpiredTokenException`).
        self.web_identity()
            && (status == StatusCode::FORBIDDEN || status == StatusCode::BAD_REQUEST)
            && body.is_some_and(|b| {
                memchr::memmem::find(b, b"ExpiredToken").is_some()
                    || memchr::memmem::find(b, b"InvalidToken").is_some()
            })
    }

    fn login_request(&self) -> Option<Outgoing> {
        match &self.settings.credentials {
            Credentials::WebIdentity {
                role_arn,
                session_name,
                ..
            } => Some(sts::request(
                role_arn,
                session_name,
                "<web identity token from the token file>",
            )),
            Credentials::Static { .. } => None,
        }
    }

    fn login_origin(&self) -> Option<String> {
        match &self.settings.credentials {
            Credentials::WebIdentity { sts_endpoint, .. } => Some(format!(
                "{}{}",
                sts_endpoint.0.to_string().trim_end_matches('/'),
                sts_endpoint.1
            )),
            Credentials::Static { .. } => None,
        }
    }

    fn secrets(&self) -> Vec<(&'static str, Secret)> {
        match &self.settings.credentials {
            Credentials::Static {
                secret_access_key,
                session_token,
                ..
            } => {
                let mut all = vec![("secret_access_key", secret_access_key.clone())];
                if let Some(t) = session_token {
                    all.push(("session_token", t.clone()));
                }
                all
            }
            Credentials::WebIdentity { .. } => Vec::new(),
        }
    }

    fn signature_inputs(&self, out: &Outgoing) -> Vec<(String, String)> {
        match self.signature_parts(out) {
            Some((canonical, sts)) => vec![
                ("canonical request".into(), format!("\n{canonical}\n")),
                ("string to sign".into(), format!("\n{sts}\n")),
            ],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_are_re_encoded_as_s3_decodes_them() {
        assert_eq!(canonical_path("/b/a%20b+c"), "/b/a%20b%2Bc");
        assert_eq!(canonical_path("/b/%7Ex%2fy"), "/b/~x%2Fy");
        assert_eq!(
            canonical_path("/b/caf%C3%A9/(1)*'"),
            "/b/caf%C3%A9/%281%29%2A%27"
        );
        assert_eq!(canonical_path("/"), "/");
        assert_eq!(
            canonical_query("list-type=2&prefix=r%26d%2F&x=a+b&acl"),
            "list-type=2&prefix=r%26d%2F&x=a%2Bb&acl"
        );
    }

    #[test]
    fn amz_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(t), "20150830T123600Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(amz_date(t), "20991231T235959Z");
        assert_eq!(amz_date(SystemTime::UNIX_EPOCH), "19700101T000000Z");
    }
}
