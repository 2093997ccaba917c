//! utilsio (`utilsio-api.txt`, facts from its official SDK, in the README's utilsio section):
//! every request carries `X-utilsio-Timestamp` (Unix seconds; `timestamp_unit
//! = "ms"` switches) and `X-utilsio-Signature` = lowercase hex
//! HMAC-SHA256(key, `{deviceId}-{appId}-{timestamp}[-{additionalData}]`).
//! The key is the ASCII hex string `app_hash`, or derived once at startup as
//! hex(scrypt(app_secret, hex-decoded app_salt, N=16384, r=8, p=1, 32 bytes)).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::Sha256;

use super::{BuildEnv, KindRef, KindRow, KindSettings};
use crate::config::{KindDefaults, Section};
use crate::error::ProxyError;
use crate::secret::Secret;
use crate::vocab::{fingerprint, identity, now_ms, Kind, Outgoing, Plan};

pub const ROW: KindRow = KindRow {
    name: "utilsio",
    defaults: KindDefaults::PLAIN,
    parse: |s| Settings::parse(s).map(|k| std::sync::Arc::new(k) as KindRef),
};

static TIMESTAMP: HeaderName = HeaderName::from_static("x-utilsio-timestamp");
static SIGNATURE: HeaderName = HeaderName::from_static("x-utilsio-signature");
/// How a caller names the device when it does not put it in the query or body.
const DEVICE_HEADER: &str = "x-utilsio-device-id";
static OWNED: [HeaderName; 2] = [
    HeaderName::from_static("x-utilsio-timestamp"),
    HeaderName::from_static("x-utilsio-signature"),
];

#[derive(Debug, Clone)]
pub enum KeySource {
    /// The hex HMAC key itself.
    Hash(Secret),
    /// Derived at startup with scrypt.
    Derive { secret: Secret, salt: Secret },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub app_id: String,
    pub key: KeySource,
    pub timestamp_ms: bool,
}

impl Settings {
    pub fn parse(s: &mut Section<'_>) -> Option<Settings> {
        let app_id: Option<String> = s.required("app_id");
        let hash = s.secret("app_hash", false);
        let secret = s.secret("app_secret", false);
        let salt = s.secret("app_salt", false);
        let timestamp_ms = match s.get::<String>("timestamp_unit").as_deref() {
            None | Some("s") => false,
            Some("ms") => true,
            Some(_) => {
                s.problem("timestamp_unit", "must be \"s\" or \"ms\"");
                false
            }
        };
        if let Some(salt) = &salt {
            // Never echo the salt: it is a secret too.
            if hex::decode(salt.expose()).is_err() {
                s.problem("app_salt", "must be hex (the SDK hex-decodes the salt)");
            }
        }
        let key = match (hash, secret, salt) {
            (Some(h), None, None) => Some(KeySource::Hash(h)),
            (None, Some(secret), Some(salt)) => Some(KeySource::Derive { secret, salt }),
            (None, Some(_), None) => {
                s.problem("app_salt", "is required with app_secret");
                None
            }
            (None, None, Some(_)) => {
                s.problem("app_secret", "is required with app_salt");
                None
            }
            (None, None, None) => {
                s.problem("app_hash", "is required (or app_secret and app_salt)");
                None
            }
            (Some(_), _, _) => {
                s.problem(
                    "app_hash",
                    "give either app_hash or app_secret + app_salt, not both",
                );
                None
            }
        };
        Some(Settings {
            app_id: app_id?,
            key: key?,
            timestamp_ms,
        })
    }
}

/// hex(scrypt(secret, salt, N=16384, r=8, p=1, 32 bytes)), as the SDK derives the key.
pub fn derive_key(secret: &Secret, salt_hex: &Secret) -> Result<Secret, String> {
    let salt = hex::decode(salt_hex.expose()).map_err(|_| "app_salt is not hex".to_string())?;
    let params = scrypt::Params::new(14, 8, 1, 32).map_err(|e| e.to_string())?;
    let mut out = [0u8; 32];
    scrypt::scrypt(secret.expose().as_bytes(), &salt, &params, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(Secret::new(hex::encode(out)))
}

impl KindSettings for Settings {
    fn build(&self, _: &BuildEnv<'_>) -> Result<std::sync::Arc<dyn Kind>, String> {
        Ok(std::sync::Arc::new(Utilsio::new(self.clone())?))
    }
}

pub struct Utilsio {
    app_id: String,
    /// The HMAC key: the ASCII hex string, used as bytes.
    key: Secret,
    timestamp_ms: bool,
}

impl Utilsio {
    /// Derives the key when needed: ~50 ms optimised, so it is logged, once per (re)load.
    pub fn new(settings: Settings) -> Result<Self, String> {
        let key = match &settings.key {
            KeySource::Hash(h) => h.clone(),
            KeySource::Derive { secret, salt } => {
                let started = Instant::now();
                tracing::info!(app_id = %settings.app_id, "deriving the utilsio HMAC key (scrypt N=16384); the listener opens after this");
                let key = derive_key(secret, salt)?;
                tracing::info!(app_id = %settings.app_id, ms = started.elapsed().as_millis() as u64, "utilsio key derived");
                key
            }
        };
        Ok(Utilsio {
            app_id: settings.app_id,
            key,
            timestamp_ms: settings.timestamp_ms,
        })
    }

    /// Signs `out` as [`Kind::sign`] does, at timestamp `ts` (seconds, or
    /// ms with `timestamp_unit = "ms"`): tests pin the clock with it.
    pub fn sign_at(&self, out: &mut Outgoing, ts: u64) -> Result<(), ProxyError> {
        let from_header = out
            .headers
            .remove(DEVICE_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let from_query = query_param(&out.path_and_query, "deviceId");
        let from_body = json_body(out).and_then(|m| m.get("deviceId").and_then(scalar));
        let mut found = [&from_header, &from_query, &from_body]
            .into_iter()
            .flatten();
        let device = found.next().cloned().ok_or_else(|| {
            ProxyError::BadRequestBody(
                "utilsio needs a deviceId: send the x-utilsio-device-id header, a deviceId query parameter or a JSON body deviceId".into(),
            )
        })?;
        if found.any(|d| *d != device) {
            return Err(ProxyError::BadRequestBody(
                "the deviceId in the x-utilsio-device-id header, query and body disagree".into(),
            ));
        }
        match query_param(&out.path_and_query, "appId") {
            None => append_param(&mut out.path_and_query, "appId", &self.app_id),
            Some(a) if a == self.app_id => {}
            Some(_) => {
                return Err(ProxyError::BadRequest(
                    "the appId query parameter differs from this route's app_id".into(),
                ))
            }
        }
        if from_query.is_none() && from_body.is_none() {
            // Let the upstream see what was signed.
            append_param(&mut out.path_and_query, "deviceId", &device);
        }
        let extra = additional_data(out)?;
        let message = signing_message(&device, &self.app_id, ts, extra.as_deref());
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .map_err(|_| ProxyError::Internal("HMAC key".into()))?;
        mac.update(message.as_bytes());
        let sig = crate::canonical::hex(&mac.finalize().into_bytes());
        out.headers.insert(&TIMESTAMP, HeaderValue::from(ts));
        out.headers.insert(
            &SIGNATURE,
            HeaderValue::from_str(&sig)
                .map_err(|_| ProxyError::Internal("signature header".into()))?,
        );
        Ok(())
    }

    fn timestamp(&self) -> u64 {
        let ms = now_ms();
        if self.timestamp_ms {
            ms
        } else {
            Duration::from_millis(ms).as_secs()
        }
    }
}

/// The JSON body, when there is one and it is an object.
fn json_body(out: &Outgoing) -> Option<serde_json::Map<String, serde_json::Value>> {
    let body = out.body.as_ref().filter(|b| !b.is_empty())?;
    match serde_json::from_slice(body).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn query_param(pq: &str, name: &str) -> Option<String> {
    let query = pq.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn append_param(pq: &mut String, name: &str, value: &str) {
    let pair = form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish();
    pq.push(if pq.contains('?') { '&' } else { '?' });
    pq.push_str(&pair);
}

/// `DELETE /subscription`: the body's subscriptionIds, sorted, joined with ','.
fn additional_data(out: &Outgoing) -> Result<Option<String>, ProxyError> {
    let path = out.path_and_query.split('?').next().unwrap_or("");
    if out.method != Method::DELETE || path.trim_end_matches('/') != "/subscription" {
        return Ok(None);
    }
    let ids = json_body(out)
        .and_then(|m| m.get("subscriptionIds").and_then(|v| v.as_array().cloned()))
        .ok_or_else(|| {
            ProxyError::BadRequestBody(
                "DELETE /subscription needs a JSON body with a subscriptionIds array".into(),
            )
        })?;
    let mut ids: Vec<String> = ids.iter().filter_map(scalar).collect();
    // Code point order; the SDK's JavaScript sort differs only for ids
    // mixing characters above U+FFFF with U+E000..U+FFFF.
    ids.sort();
    Ok(Some(ids.join(",")))
}

impl Kind for Utilsio {
    fn credential_id(&self) -> String {
        identity("utilsio", &[&self.app_id, &fingerprint(&self.key)])
    }

    fn legacy_credential_id(&self) -> Option<String> {
        let app: String = self
            .app_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Some(format!("utilsio-{app}-{}", fingerprint(&self.key)))
    }

    fn owned_headers(&self) -> &[HeaderName] {
        &OWNED
    }

    fn plan(&self, _: &Method, _: &str, _: &HeaderMap) -> Result<Plan, ProxyError> {
        // The deviceId and subscriptionIds may be in the body: keep it (small JSON).
        Ok(Plan::forward(false, true))
    }

    fn secrets(&self) -> Vec<(&'static str, Secret)> {
        vec![("utilsio key", self.key.clone())]
    }

    fn sign(&self, out: &mut Outgoing, _: Option<&Secret>) -> Result<(), ProxyError> {
        self.sign_at(out, self.timestamp())
    }

    fn signature_inputs(&self, out: &Outgoing) -> Vec<(String, String)> {
        let device = query_param(&out.path_and_query, "deviceId")
            .or_else(|| json_body(out).and_then(|m| m.get("deviceId").and_then(scalar)));
        let ts = out
            .headers
            .get(&TIMESTAMP)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        match (device, ts, additional_data(out)) {
            (Some(d), Some(ts), Ok(extra)) => vec![(
                "HMAC-SHA256 message".into(),
                signing_message(&d, &self.app_id, ts, extra.as_deref()),
            )],
            _ => Vec::new(),
        }
    }
}

pub fn signing_message(device: &str, app: &str, ts: u64, extra: Option<&str>) -> String {
    match extra {
        Some(e) => format!("{device}-{app}-{ts}-{e}"),
        None => format!("{device}-{app}-{ts}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers computed once with CPython:
    //   key = hashlib.scrypt(b"utilsio-demo-app-secret", salt=bytes.fromhex("8f3a1c9e5b7d2f40a6c8e1b3d5f70921"),
    //                        n=16384, r=8, p=1, dklen=32).hex()
    //   hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()
    const KEY: &str = "bdc25db2da0df437590e8110c487a6573984092daf06f3fbb37509d2f844dc4b";

    fn hmac_hex(key: &str, msg: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(msg.as_bytes());
        crate::canonical::hex(&mac.finalize().into_bytes())
    }

    #[test]
    fn scrypt_key_matches_cpython() {
        let key = derive_key(
            &Secret::new("utilsio-demo-app-secret"),
            &Secret::new("8f3a1c9e5b7d2f40a6c8e1b3d5f70921"),
        )
        .unwrap();
        assert_eq!(key.expose(), KEY);
    }

    #[test]
    fn signatures_match_cpython() {
        for (msg, sig) in [
            (
                "device-42-app-7-1795399000",
                "08c52f574e4ecae6ddeff337ab4f50fa3c4ef033ee5fc4fe9f6dab65d949fa05",
            ),
            (
                "device-42-app-7-1795399000-sub_a,sub_b,sub_c",
                "f0c5d9658416d70a7ec69e94f0b393138ad8b7367c5b8561d0d603141e3ef4a9",
            ),
            (
                "device-42-app-7-1795399000123",
                "ab8465ccd4541d81f375fbb713cd0853582be1676c45d5e0704573d880b020e9",
            ),
        ] {
            assert_eq!(hmac_hex(KEY, msg), sig, "{msg}");
        }
        // app_hash used directly:
        let h = "4d7a1f0c2b9e8d6a5f3c1e0b7a9d8c6f4e2a1b3c5d7e9f0a2b4c6d8e0f1a3b5c";
        assert_eq!(
            hmac_hex(h, "dev-1-app-9-1700000000"),
            "2495cd75cc871f18ba4af9de552ab007a03c8f7bc921d8bcb65df264aee5d066"
        );
        assert_eq!(
            signing_message("device-42", "app-7", 1795399000, Some("sub_a,sub_b,sub_c")),
            "device-42-app-7-1795399000-sub_a,sub_b,sub_c"
        );
    }

    fn kind() -> Utilsio {
        Utilsio {
            app_id: "app-7".into(),
            key: Secret::new(KEY),
            timestamp_ms: false,
        }
    }

    fn out(method: Method, pq: &str, body: &str) -> Outgoing {
        Outgoing {
            method,
            path_and_query: pq.into(),
            headers: HeaderMap::new(),
            body: Some(bytes::Bytes::from(body.to_string())),
        }
    }

    #[test]
    fn sign_adds_app_id_device_and_a_verifiable_signature() {
        let k = kind();
        let mut o = out(Method::GET, "/subscription", "");
        o.headers
            .insert(DEVICE_HEADER, HeaderValue::from_static("device 42"));
        k.sign(&mut o, None).unwrap();
        assert_eq!(
            o.path_and_query,
            "/subscription?appId=app-7&deviceId=device+42"
        );
        assert!(!o.headers.contains_key(DEVICE_HEADER));
        let ts: u64 = o.headers[&TIMESTAMP].to_str().unwrap().parse().unwrap();
        assert!(
            ts > 1_600_000_000 && ts < 10_000_000_000,
            "seconds, not ms: {ts}"
        );
        let expect = hmac_hex(KEY, &format!("device 42-app-7-{ts}"));
        assert_eq!(o.headers[&SIGNATURE], expect.as_str());
    }

    #[test]
    fn delete_subscription_signs_sorted_ids() {
        let k = kind();
        let mut o = out(
            Method::DELETE,
            "/subscription?deviceId=d1",
            r#"{"subscriptionIds":["sub_c","sub_a",7]}"#,
        );
        k.sign(&mut o, None).unwrap();
        let ts = o.headers[&TIMESTAMP].to_str().unwrap();
        assert_eq!(
            o.headers[&SIGNATURE],
            hmac_hex(KEY, &format!("d1-app-7-{ts}-7,sub_a,sub_c")).as_str()
        );
        let mut o = out(Method::DELETE, "/subscription?deviceId=d1", "{}");
        assert_eq!(k.sign(&mut o, None).unwrap_err().code(), "bad_request_body");
    }

    #[test]
    fn device_id_must_exist_and_agree() {
        let k = kind();
        let mut o = out(Method::GET, "/subscription", "");
        assert_eq!(k.sign(&mut o, None).unwrap_err().code(), "bad_request_body");
        let mut o = out(
            Method::GET,
            "/subscription?deviceId=a",
            r#"{"deviceId":"b"}"#,
        );
        assert_eq!(k.sign(&mut o, None).unwrap_err().code(), "bad_request_body");
        let mut o = out(Method::GET, "/subscription?deviceId=a&appId=other", "");
        assert_eq!(k.sign(&mut o, None).unwrap_err().code(), "bad_request");
        let mut o = out(
            Method::GET,
            "/subscription?deviceId=a",
            r#"{"deviceId":"a"}"#,
        );
        k.sign(&mut o, None).unwrap();
        assert_eq!(o.path_and_query, "/subscription?deviceId=a&appId=app-7");
    }
}
