//! A strict fake of the Coinbase Exchange REST API's private endpoints
//! (API-key authentication), written from the document:
//! <https://docs.cdp.coinbase.com/exchange/rest-api/authentication>
//! (statuses and the error shape from
//! <https://docs.cdp.coinbase.com/exchange/rest-api/requests>).
//!
//! - Headers `CB-ACCESS-KEY`, `CB-ACCESS-SIGN`, `CB-ACCESS-TIMESTAMP`,
//!   `CB-ACCESS-PASSPHRASE`, all required.
//! - `CB-ACCESS-SIGN` = base64(HMAC-SHA256(base64-decoded secret,
//!   timestamp + method + requestPath + body)): the timestamp exactly as the
//!   header carries it, the method as sent (upper case), requestPath the
//!   request target's path and query exactly as received (`/orders?status=open`),
//!   the body exactly as received (empty for a GET).
//! - `CB-ACCESS-TIMESTAMP`: seconds since the Unix epoch, decimals allowed,
//!   within 30 s of the server's clock.
//! - Errors are `{"message": …}`: 401 for `Invalid API Key`,
//!   `request timestamp expired`, `Invalid Passphrase`, `invalid signature`
//!   (the document's "401 Unauthorized -- Invalid API Key"); 400 for a missing
//!   header, a timestamp that is not a number, a bad body.
//!
//! Endpoints: `GET /time` (public), `GET /accounts`, `GET /orders`,
//! `POST /orders` (JSON), plus `GET /_fake/stats`.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;

use super::{header_text, iso8601_ms, received, same, Answer, Clock, Exchange, Stats};
use crate::fake::{Body, Recorded};

pub const DEMO_KEY: &str = "5f3ac5d1e2b84c07a9d6f1e0b3c2d4a7";
/// base64(SHA-512("countersign coinbase demo secret")): 64 bytes, as Coinbase's secrets are.
pub const DEMO_SECRET: &str =
    "ziqrTBkToQM58CG6rjqHa7Dcoefhq1SeKL0dWaraD09qMsWm8WcLFDpVAIs9agWN7pA7XP4bZCmn8wRQeWap3Q==";
pub const DEMO_PASSPHRASE: &str = "demo-passphrase";

/// An API key the fake accepts.
#[derive(Clone)]
pub struct ApiKey {
    pub key: String,
    /// Base64, as Coinbase hands it out; the HMAC key is its decoded bytes.
    pub secret: String,
    pub passphrase: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .field("passphrase", &"[redacted]")
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub keys: Vec<ApiKey>,
    /// The API service time.
    pub clock: Clock,
    /// How far a timestamp may be from the service time, either way (30 s).
    pub window: Duration,
    /// Largest body read; past it, 413.
    pub max_body: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keys: vec![ApiKey {
                key: DEMO_KEY.into(),
                secret: DEMO_SECRET.into(),
                passphrase: DEMO_PASSPHRASE.into(),
            }],
            clock: Clock::default(),
            window: Duration::from_secs(30),
            max_body: 64 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct Fake {
    cfg: Arc<Config>,
    stats: Arc<Mutex<Stats>>,
    /// Numbers the ids of new orders.
    next_order: Arc<AtomicU64>,
}

#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Accounts,
    ListOrders,
    NewOrder,
}

fn refuse(status: StatusCode, message: &str) -> Answer {
    Answer::refuse(status, json!({ "message": message }), message)
}

/// Seconds since the epoch with optional decimals, in microseconds (digits past the sixth ignored).
fn timestamp_micros(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 12 || !digits(whole) || !digits(frac) {
        return None;
    }
    if s.contains('.') && frac.is_empty() {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let micros: i64 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
    Some(whole * 1_000_000 + micros)
}

impl Fake {
    pub fn new(cfg: Config) -> Self {
        Fake {
            cfg: Arc::new(cfg),
            stats: Arc::default(),
            next_order: Arc::new(AtomicU64::new(1)),
        }
    }

    fn stats_lock(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.stats_lock().clone()
    }

    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        super::serve(self, listener, tls, shutdown).await
    }

    /// Answers one request, as `serve` does; any body type, so tests can call it directly.
    pub async fn respond<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        super::respond(self, req).await
    }

    fn check(&self, parts: &http::request::Parts, body: &[u8]) -> Answer {
        let endpoint = match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/time") => {
                let ms = self.cfg.clock.now_ms();
                return Answer::ok(json!({ "iso": iso8601_ms(ms), "epoch": ms as f64 / 1000.0 }));
            }
            (&Method::GET, "/accounts") => Endpoint::Accounts,
            (&Method::GET, "/orders") => Endpoint::ListOrders,
            (&Method::POST, "/orders") => Endpoint::NewOrder,
            (_, "/time" | "/accounts" | "/orders") => {
                return refuse(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
            }
            _ => return refuse(StatusCode::NOT_FOUND, "NotFound"),
        };
        if let Err(refusal) = self.authenticate(parts, body) {
            return refusal;
        }
        self.serve_endpoint(endpoint, parts, body)
    }

    fn authenticate(&self, parts: &http::request::Parts, body: &[u8]) -> Result<(), Answer> {
        let mut got = Vec::new();
        for name in [
            "CB-ACCESS-KEY",
            "CB-ACCESS-SIGN",
            "CB-ACCESS-TIMESTAMP",
            "CB-ACCESS-PASSPHRASE",
        ] {
            match header_text(parts, name).filter(|v| !v.is_empty()) {
                Some(v) => got.push(v),
                None => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        &format!("{name} header is required"),
                    ))
                }
            }
        }
        let (key, sign, timestamp, passphrase) = (got[0], got[1], got[2], got[3]);
        let Some(account) = self.cfg.keys.iter().find(|k| k.key == key) else {
            return Err(refuse(StatusCode::UNAUTHORIZED, "Invalid API Key"));
        };
        let Some(ts) = timestamp_micros(timestamp) else {
            return Err(refuse(StatusCode::BAD_REQUEST, "invalid timestamp"));
        };
        let window = self.cfg.window.as_micros() as i64;
        if (ts - self.cfg.clock.now_micros()).abs() > window {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "request timestamp expired",
            ));
        }
        if !same(passphrase.as_bytes(), account.passphrase.as_bytes()) {
            return Err(refuse(StatusCode::UNAUTHORIZED, "Invalid Passphrase"));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let Ok(secret) = b64.decode(&account.secret) else {
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the fake's secret for this key is not base64",
            ));
        };
        let request_path = parts.uri.path_and_query().map_or("", |p| p.as_str());
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret) else {
            return Err(refuse(StatusCode::UNAUTHORIZED, "invalid signature"));
        };
        mac.update(timestamp.as_bytes());
        mac.update(parts.method.as_str().as_bytes());
        mac.update(request_path.as_bytes());
        mac.update(body);
        let valid = b64
            .decode(sign)
            .is_ok_and(|raw| mac.verify_slice(&raw).is_ok());
        if !valid {
            return Err(refuse(StatusCode::UNAUTHORIZED, "invalid signature"));
        }
        Ok(())
    }

    fn serve_endpoint(
        &self,
        endpoint: Endpoint,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Answer {
        match endpoint {
            Endpoint::Accounts => Answer::ok(json!([
                {
                    "id": "7d0f7d8e-dd34-4d9c-a846-06f431c381ba",
                    "currency": "BTC",
                    "balance": "1.2500000000000000",
                    "hold": "0.0000000000000000",
                    "available": "1.25",
                    "profile_id": "8058d771-2d88-4f0f-ab6e-299c153d4308",
                    "trading_enabled": true
                },
                {
                    "id": "a1a2b3c4-0000-4000-8000-000000000002",
                    "currency": "USD",
                    "balance": "1000.0000000000000000",
                    "hold": "0.0000000000000000",
                    "available": "1000",
                    "profile_id": "8058d771-2d88-4f0f-ab6e-299c153d4308",
                    "trading_enabled": true
                }
            ])),
            Endpoint::ListOrders => Answer::ok(json!([])),
            Endpoint::NewOrder => {
                let Ok(Value::Object(order)) = serde_json::from_slice::<Value>(body) else {
                    return refuse(StatusCode::BAD_REQUEST, "Invalid request format");
                };
                let text = |name: &str| {
                    order
                        .get(name)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                };
                let Some(product) = text("product_id") else {
                    return refuse(StatusCode::BAD_REQUEST, "product_id is required");
                };
                let Some(side) = text("side").filter(|s| *s == "buy" || *s == "sell") else {
                    return refuse(StatusCode::BAD_REQUEST, "side must be buy or sell");
                };
                let n = self.next_order.fetch_add(1, Ordering::Relaxed);
                Answer::ok(json!({
                    "id": format!("00000000-0000-4000-8000-{n:012x}"),
                    "price": text("price").unwrap_or("0"),
                    "size": text("size").unwrap_or("0"),
                    "product_id": product,
                    "profile_id": "8058d771-2d88-4f0f-ab6e-299c153d4308",
                    "side": side,
                    "type": text("type").unwrap_or("limit"),
                    "time_in_force": text("time_in_force").unwrap_or("GTC"),
                    "post_only": false,
                    "created_at": iso8601_ms(self.cfg.clock.now_ms()),
                    "fill_fees": "0.0000000000000000",
                    "filled_size": "0.00000000",
                    "executed_value": "0.0000000000000000",
                    "status": "pending",
                    "settled": false,
                    "received": received(parts, body),
                }))
            }
        }
    }
}

impl Exchange for Fake {
    fn max_body(&self) -> usize {
        self.cfg.max_body
    }

    fn stats_json(&self) -> serde_json::Value {
        serde_json::to_value(self.stats()).unwrap_or_default()
    }

    fn too_large(&self) -> Answer {
        refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    }

    fn answer(&self, parts: &http::request::Parts, body: &[u8]) -> Answer {
        self.check(parts, body)
    }

    fn record(&self, rec: Recorded, answer: &Answer) {
        self.stats_lock().record(rec, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{reply, request, Reply};
    use super::*;

    // Known answers computed from the document's procedure, apart from this code:
    //
    //   import hmac, hashlib, base64
    //   key = base64.b64decode(DEMO_SECRET)
    //   def cb(ts, method, path, body=""):
    //       return base64.b64encode(hmac.new(key, (ts+method+path+body).encode(),
    //                                        hashlib.sha256).digest()).decode()
    //   cb("1700000000", "GET", "/accounts")
    //   cb("1700000000", "GET", "/orders?status=open&limit=2")
    //   cb("1700000000.123", "POST", "/orders", ORDER)
    const GET_ACCOUNTS_SIG: &str = "0I0MBYPwiEVnPR8qbxQuLovQdQQhtAeNQW23J6X1DXw=";
    const GET_ORDERS_SIG: &str = "8vQf6ykvp0tfh2zNuoi9GPo8a8FzeVcQ1LYhdj97fnQ=";
    const POST_ORDER_SIG: &str = "hpmXl3j54Yzdl2xxP7pxLXHVq7MIWir/ISfsFJgwFFU=";
    const ORDER: &str = r#"{"size":"0.01","price":"0.100","side":"buy","product_id":"BTC-USD"}"#;
    const TS_MS: i64 = 1_700_000_000_000;

    fn fake_at(unix_ms: i64) -> Fake {
        Fake::new(Config {
            clock: Clock::Fixed { unix_ms },
            ..Config::default()
        })
    }

    async fn call(
        f: &Fake,
        method: &str,
        uri: &str,
        ts: &str,
        sig: &str,
        passphrase: &str,
        body: &str,
    ) -> Reply {
        let headers = [
            ("CB-ACCESS-KEY", DEMO_KEY),
            ("CB-ACCESS-SIGN", sig),
            ("CB-ACCESS-TIMESTAMP", ts),
            ("CB-ACCESS-PASSPHRASE", passphrase),
            ("content-type", "application/json"),
        ];
        reply(f.respond(request(method, uri, &headers, body)).await).await
    }

    /// Test-side signer, for requests that are not pinned.
    fn sign(ts: &str, method: &str, path: &str, body: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut mac = Hmac::<Sha256>::new_from_slice(&b64.decode(DEMO_SECRET).unwrap()).unwrap();
        mac.update(format!("{ts}{method}{path}{body}").as_bytes());
        b64.encode(mac.finalize().into_bytes())
    }

    fn assert_message(r: &Reply, status: StatusCode, message: &str) {
        assert_eq!(r.status, status, "{}", r.json);
        assert_eq!(r.json["message"], message, "{}", r.json);
    }

    #[tokio::test]
    async fn known_answers_are_accepted() {
        let f = fake_at(TS_MS);
        let r = call(
            &f,
            "GET",
            "/accounts",
            "1700000000",
            GET_ACCOUNTS_SIG,
            DEMO_PASSPHRASE,
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json[0]["currency"], "BTC");
        let r = call(
            &f,
            "GET",
            "/orders?status=open&limit=2",
            "1700000000",
            GET_ORDERS_SIG,
            DEMO_PASSPHRASE,
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let r = call(
            &f,
            "POST",
            "/orders",
            "1700000000.123",
            POST_ORDER_SIG,
            DEMO_PASSPHRASE,
            ORDER,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["product_id"], "BTC-USD");
        assert_eq!(r.json["status"], "pending");
        assert_eq!(r.json["received"]["body"], ORDER);
        assert_eq!(r.json["received"]["method"], "POST");
        assert_eq!(f.stats().accepted, 3);
        assert_eq!(f.stats().journal.recent[2].body, ORDER);
    }

    #[tokio::test]
    async fn a_one_byte_tamper_of_path_query_body_or_timestamp_is_refused() {
        let f = fake_at(TS_MS);
        let cases = [
            ("GET", "/Accounts", "1700000000", GET_ACCOUNTS_SIG, ""),
            ("GET", "/orders", "1700000000", GET_ACCOUNTS_SIG, ""),
            (
                "GET",
                "/orders?status=open&limit=3",
                "1700000000",
                GET_ORDERS_SIG,
                "",
            ),
            (
                "GET",
                "/orders?status=open&limit=2&",
                "1700000000",
                GET_ORDERS_SIG,
                "",
            ),
            ("GET", "/orders", "1700000000", GET_ORDERS_SIG, ""),
            ("GET", "/accounts", "1700000001", GET_ACCOUNTS_SIG, ""),
            ("POST", "/orders", "1700000000.124", POST_ORDER_SIG, ORDER),
            (
                "POST",
                "/orders",
                "1700000000.123",
                POST_ORDER_SIG,
                &ORDER.replace("0.01", "0.02"),
            ),
            (
                "POST",
                "/orders",
                "1700000000.123",
                POST_ORDER_SIG,
                &ORDER.replace(',', ", "),
            ),
        ];
        for (method, uri, ts, sig, body) in cases {
            let r = call(&f, method, uri, ts, sig, DEMO_PASSPHRASE, body).await;
            if uri == "/Accounts" {
                // The path is signed, but an unknown path is not found first.
                assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
                continue;
            }
            assert_message(&r, StatusCode::UNAUTHORIZED, "invalid signature");
        }
        // The signature of another method.
        let r = call(
            &f,
            "POST",
            "/accounts",
            "1700000000",
            GET_ACCOUNTS_SIG,
            DEMO_PASSPHRASE,
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        let stats = f.stats();
        assert_eq!(stats.accepted, 0);
        assert_eq!(stats.refused, 10);
    }

    #[tokio::test]
    async fn timestamps_must_be_within_thirty_seconds_either_way() {
        for (clock, ok) in [
            (TS_MS + 30_000, true),
            (TS_MS + 30_001, false),
            (TS_MS - 30_000, true),
            (TS_MS - 30_001, false),
        ] {
            let r = call(
                &fake_at(clock),
                "GET",
                "/accounts",
                "1700000000",
                GET_ACCOUNTS_SIG,
                DEMO_PASSPHRASE,
                "",
            )
            .await;
            if ok {
                assert_eq!(r.status, StatusCode::OK, "{clock}: {}", r.json);
            } else {
                assert_message(&r, StatusCode::UNAUTHORIZED, "request timestamp expired");
            }
        }
        // The system clock, with a fresh timestamp and a stale one.
        let f = Fake::new(Config::default());
        let now = Clock::default().now_ms();
        let fresh = format!("{}.{:03}", now / 1000, now % 1000);
        let r = call(
            &f,
            "GET",
            "/accounts",
            &fresh,
            &sign(&fresh, "GET", "/accounts", ""),
            DEMO_PASSPHRASE,
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let stale = (now / 1000 - 31).to_string();
        let r = call(
            &f,
            "GET",
            "/accounts",
            &stale,
            &sign(&stale, "GET", "/accounts", ""),
            DEMO_PASSPHRASE,
            "",
        )
        .await;
        assert_message(&r, StatusCode::UNAUTHORIZED, "request timestamp expired");
        let r = call(
            &f,
            "GET",
            "/accounts",
            "soon",
            GET_ACCOUNTS_SIG,
            DEMO_PASSPHRASE,
            "",
        )
        .await;
        assert_message(&r, StatusCode::BAD_REQUEST, "invalid timestamp");
    }

    #[tokio::test]
    async fn key_passphrase_and_headers_are_checked() {
        let f = fake_at(TS_MS);
        let r = call(
            &f,
            "GET",
            "/accounts",
            "1700000000",
            GET_ACCOUNTS_SIG,
            "demo-passphrasE",
            "",
        )
        .await;
        assert_message(&r, StatusCode::UNAUTHORIZED, "Invalid Passphrase");
        assert_eq!(
            f.stats().last_refusal.as_deref(),
            Some("Invalid Passphrase")
        );
        let headers = [
            ("CB-ACCESS-KEY", "0000"),
            ("CB-ACCESS-SIGN", GET_ACCOUNTS_SIG),
            ("CB-ACCESS-TIMESTAMP", "1700000000"),
            ("CB-ACCESS-PASSPHRASE", DEMO_PASSPHRASE),
        ];
        let r = reply(f.respond(request("GET", "/accounts", &headers, "")).await).await;
        assert_message(&r, StatusCode::UNAUTHORIZED, "Invalid API Key");
        let r = reply(
            f.respond(request("GET", "/accounts", &headers[1..], ""))
                .await,
        )
        .await;
        assert_message(
            &r,
            StatusCode::BAD_REQUEST,
            "CB-ACCESS-KEY header is required",
        );
        let r = reply(
            f.respond(request("GET", "/accounts", &headers[..3], ""))
                .await,
        )
        .await;
        assert_message(
            &r,
            StatusCode::BAD_REQUEST,
            "CB-ACCESS-PASSPHRASE header is required",
        );
        // The public time endpoint needs nothing.
        let r = reply(f.respond(request("GET", "/time", &[], "")).await).await;
        assert_eq!(r.json["iso"], "2023-11-14T22:13:20.000Z");
    }

    #[tokio::test]
    async fn orders_need_a_json_body_with_product_and_side() {
        let f = fake_at(TS_MS);
        for (body, message) in [
            ("product_id=BTC-USD", "Invalid request format"),
            (r#"{"side":"buy"}"#, "product_id is required"),
            (
                r#"{"product_id":"BTC-USD","side":"hold"}"#,
                "side must be buy or sell",
            ),
        ] {
            let sig = sign("1700000000", "POST", "/orders", body);
            let r = call(
                &f,
                "POST",
                "/orders",
                "1700000000",
                &sig,
                DEMO_PASSPHRASE,
                body,
            )
            .await;
            assert_message(&r, StatusCode::BAD_REQUEST, message);
        }
    }

    #[tokio::test]
    async fn bodies_are_bounded_and_secrets_stay_out_of_debug() {
        let f = Fake::new(Config {
            max_body: 8,
            ..Config::default()
        });
        let r = call(&f, "POST", "/orders", "1", "x", DEMO_PASSPHRASE, ORDER).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        let shown = format!("{:?}", Config::default());
        assert!(shown.contains(DEMO_KEY), "{shown}");
        assert!(
            !shown.contains(DEMO_SECRET) && !shown.contains(DEMO_PASSPHRASE),
            "{shown}"
        );
    }
}
