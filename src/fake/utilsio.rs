//! A strict fake of the utilsio API (`utilsio-api.txt`): every request needs
//! `appId` in the query, `X-utilsio-Timestamp` within the window and
//! `X-utilsio-Signature` = hex HMAC-SHA256 over
//! `{deviceId}-{appId}-{timestamp}[-{sorted subscriptionIds}]`, keyed with the
//! app's hex key string. Errors are the document's:
//! `{"success":false,"error":"…"}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use sha2::Sha256;
use tokio::net::TcpListener;

use super::{serve_with, Body, Recorded};

#[derive(Clone, Debug)]
pub struct Config {
    /// (appId, hex key string) pairs.
    pub apps: Vec<(String, String)>,
    /// Accepted clock difference, both ways.
    pub window: Duration,
    /// Timestamps in milliseconds instead of the documented seconds.
    pub timestamp_ms: bool,
    /// Where the API lives, as in `https://utilsio.dev/api/v1`.
    pub base_path: String,
}

/// The demo app: key derived from the demo secret and salt (see `app_from_secret`).
pub const DEMO_APP: &str = "demo-app";
pub const DEMO_SECRET: &str = "utilsio-demo-app-secret";
pub const DEMO_SALT: &str = "8f3a1c9e5b7d2f40a6c8e1b3d5f70921";

impl Default for Config {
    fn default() -> Self {
        Config {
            apps: vec![app_from_secret(DEMO_APP, DEMO_SECRET, DEMO_SALT).unwrap_or_default()],
            window: Duration::from_secs(300),
            timestamp_ms: false,
            base_path: "/api/v1".into(),
        }
    }
}

/// The app's key as utilsio's SDK derives it: hex(scrypt(secret, unhex(salt), 2^14, 8, 1, 32)).
pub fn app_from_secret(app_id: &str, secret: &str, salt_hex: &str) -> Option<(String, String)> {
    let salt = hex::decode(salt_hex).ok()?;
    let params = scrypt::Params::new(14, 8, 1, 32).ok()?;
    let mut key = [0u8; 32];
    scrypt::scrypt(secret.as_bytes(), &salt, &params, &mut key).ok()?;
    Some((app_id.to_string(), hex::encode(key)))
}

pub type Stats = super::Journal;

#[derive(Clone)]
pub struct Fake {
    cfg: Arc<Config>,
    stats: Arc<Mutex<Stats>>,
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    answer(
        status,
        serde_json::json!({ "success": false, "error": message }),
    )
}

fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn text_of(v: &serde_json::Value) -> Option<String> {
    v.as_str()
        .map(String::from)
        .or_else(|| v.as_number().map(|n| n.to_string()))
}

impl Fake {
    pub fn new(cfg: Config) -> Self {
        Fake {
            cfg: Arc::new(cfg),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        serve_with(listener, tls, shutdown, move |_, req| {
            let fake = self.clone();
            async move { fake.handle(req).await }
        })
        .await
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if parts.method == Method::GET && parts.uri.path() == "/_fake/stats" {
            return answer(
                StatusCode::OK,
                serde_json::to_value(self.stats()).unwrap_or_default(),
            );
        }
        let body = match Limited::new(body, 64 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
        };
        let resp = self.check_and_answer(&parts, &body);
        let rejected =
            resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::BAD_REQUEST;
        let rec = Recorded::new(&parts, &body, resp.status().as_u16());
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(rec, rejected);
        resp
    }

    fn check_and_answer(&self, parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
        let Some(path) = parts.uri.path().strip_prefix(self.cfg.base_path.as_str()) else {
            return error(StatusCode::NOT_FOUND, "Not found");
        };
        if path != "/subscription" {
            return error(StatusCode::NOT_FOUND, "Not found");
        }
        if parts.method != Method::GET && parts.method != Method::DELETE {
            return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
        }
        let query = parts.uri.query().unwrap_or("");
        let header = |n: &str| {
            parts
                .headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let (Some(ts), Some(sig)) = (header("x-utilsio-timestamp"), header("x-utilsio-signature"))
        else {
            return error(
                StatusCode::UNAUTHORIZED,
                "X-utilsio-Signature and X-utilsio-Timestamp headers are required",
            );
        };
        let Some(app_id) = param(query, "appId") else {
            return error(StatusCode::BAD_REQUEST, "appId is required");
        };
        let Some((_, key)) = self.cfg.apps.iter().find(|(a, _)| *a == app_id) else {
            return error(StatusCode::UNAUTHORIZED, "Invalid signature");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let (now, window) = if self.cfg.timestamp_ms {
            (now.as_millis() as i128, self.cfg.window.as_millis() as i128)
        } else {
            (now.as_secs() as i128, self.cfg.window.as_secs() as i128)
        };
        let fresh = ts.parse::<i128>().is_ok_and(|t| (t - now).abs() <= window);
        if !fresh {
            return error(StatusCode::UNAUTHORIZED, "Invalid or expired timestamp");
        }
        let json: serde_json::Value = if body.is_empty() {
            serde_json::Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => return error(StatusCode::BAD_REQUEST, "Invalid JSON body"),
            }
        };
        let Some(device) = param(query, "deviceId").or_else(|| text_of(&json["deviceId"])) else {
            return error(StatusCode::BAD_REQUEST, "deviceId is required");
        };
        let mut message = format!("{device}-{app_id}-{ts}");
        let mut ids: Vec<String> = Vec::new();
        if parts.method == Method::DELETE {
            let Some(list) = json["subscriptionIds"].as_array() else {
                return error(StatusCode::BAD_REQUEST, "subscriptionIds is required");
            };
            ids = list.iter().filter_map(text_of).collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            message.push('-');
            message.push_str(&sorted.join(","));
        }
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "bad key");
        };
        mac.update(message.as_bytes());
        // verify_slice compares in constant time; the signature must be lowercase hex.
        let ok = sig.bytes().all(|b| !b.is_ascii_uppercase())
            && hex::decode(&sig).is_ok_and(|raw| mac.verify_slice(&raw).is_ok());
        if !ok {
            return error(StatusCode::UNAUTHORIZED, "Invalid signature");
        }
        if parts.method == Method::DELETE {
            answer(
                StatusCode::OK,
                serde_json::json!({ "success": true, "cancelled": ids }),
            )
        } else {
            answer(
                StatusCode::OK,
                serde_json::json!({ "success": true, "subscription": { "deviceId": device, "plan": "pro", "active": true } }),
            )
        }
    }
}
