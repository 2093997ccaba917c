//! A strict fake of the OKX v5 REST API's private endpoints, written from the
//! document: <https://www.okx.com/docs-v5/en/#overview-rest-authentication>
//! (error codes from <https://www.okx.com/docs-v5/en/#error-code-rest-api-public>).
//!
//! - Headers `OK-ACCESS-KEY`, `OK-ACCESS-SIGN`, `OK-ACCESS-TIMESTAMP`,
//!   `OK-ACCESS-PASSPHRASE`, all required (50103, 50106, 50107, 50104).
//! - `OK-ACCESS-SIGN` = base64(HMAC-SHA256(SecretKey as UTF-8,
//!   timestamp + method + requestPath + body)): the timestamp exactly as the
//!   header carries it, the method upper case, requestPath the path with the
//!   query ("GET request parameters are counted as requestPath"), exactly as
//!   received, the body exactly as received (empty for a GET).
//! - `OK-ACCESS-TIMESTAMP`: ISO 8601 UTC with milliseconds,
//!   `2020-12-08T09:08:57.715Z`; another form is 50112; more than 30 s from
//!   the server's clock is `50102 Timestamp request expired`.
//! - Errors are `{"code":"50113","msg":"Invalid Sign","data":[]}` with HTTP
//!   401 for the authentication codes (50102 to 50113, 50105 for a wrong
//!   passphrase, 50111 for an unknown key), 400 for a bad body (50000, 50002,
//!   50006, 50014).
//!
//! Endpoints: `GET /api/v5/public/time` (public), `GET /api/v5/account/balance`,
//! `POST /api/v5/trade/order` (JSON), plus `GET /_fake/stats`.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;

use super::{header_text, parse_iso8601_ms, received, same, Answer, Clock, Exchange, Stats};
use crate::fake::{Body, Recorded};

pub const DEMO_API_KEY: &str = "5e0c6f1a-7d2b-4c3e-9f8a-1b2c3d4e5f60";
/// The document's example SecretKey.
pub const DEMO_SECRET_KEY: &str = "22582BD0CFF14C41EDBF1AB98506286D";
pub const DEMO_PASSPHRASE: &str = "Demo-Passphrase-1";

/// An API key the fake accepts.
#[derive(Clone)]
pub struct ApiKey {
    pub key: String,
    /// The HMAC key, used as its UTF-8 bytes (not decoded).
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
    /// The server's clock.
    pub clock: Clock,
    /// How far a timestamp may be from the server's clock, either way (30 s).
    pub window: Duration,
    /// Largest body read; past it, 413.
    pub max_body: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keys: vec![ApiKey {
                key: DEMO_API_KEY.into(),
                secret: DEMO_SECRET_KEY.into(),
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
    /// Numbers the `ordId`s of new orders.
    next_order: Arc<AtomicU64>,
}

#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Balance,
    PlaceOrder,
}

fn refuse(status: StatusCode, code: &str, msg: &str) -> Answer {
    Answer::refuse(
        status,
        json!({ "code": code, "msg": msg, "data": [] }),
        format!("{code} {msg}"),
    )
}

fn unauthorized(code: &str, msg: &str) -> Answer {
    refuse(StatusCode::UNAUTHORIZED, code, msg)
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
            (&Method::GET, "/api/v5/public/time") => {
                let ts = self.cfg.clock.now_ms().to_string();
                return Answer::ok(json!({ "code": "0", "msg": "", "data": [{ "ts": ts }] }));
            }
            (&Method::GET, "/api/v5/account/balance") => Endpoint::Balance,
            (&Method::POST, "/api/v5/trade/order") => Endpoint::PlaceOrder,
            (_, "/api/v5/public/time" | "/api/v5/account/balance" | "/api/v5/trade/order") => {
                return refuse(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "405",
                    "Method not allowed (countersign fake)",
                )
            }
            _ => return refuse(StatusCode::NOT_FOUND, "404", "Not found (countersign fake)"),
        };
        if let Err(refusal) = self.authenticate(parts, body) {
            return refusal;
        }
        self.serve_endpoint(endpoint, parts, body)
    }

    fn authenticate(&self, parts: &http::request::Parts, body: &[u8]) -> Result<(), Answer> {
        let mut got = Vec::new();
        for (name, code) in [
            ("OK-ACCESS-KEY", "50103"),
            ("OK-ACCESS-PASSPHRASE", "50104"),
            ("OK-ACCESS-SIGN", "50106"),
            ("OK-ACCESS-TIMESTAMP", "50107"),
        ] {
            match header_text(parts, name).filter(|v| !v.is_empty()) {
                Some(v) => got.push(v),
                None => {
                    return Err(unauthorized(
                        code,
                        &format!("Request header \"{name}\" cannot be empty."),
                    ))
                }
            }
        }
        let (key, passphrase, sign, timestamp) = (got[0], got[1], got[2], got[3]);
        let Some(account) = self.cfg.keys.iter().find(|k| k.key == key) else {
            return Err(unauthorized("50111", "Invalid OK-ACCESS-KEY"));
        };
        let Some(ts) = parse_iso8601_ms(timestamp) else {
            return Err(unauthorized("50112", "Invalid OK-ACCESS-TIMESTAMP"));
        };
        let window = self.cfg.window.as_millis() as i64;
        if (ts - self.cfg.clock.now_ms()).abs() > window {
            return Err(unauthorized("50102", "Timestamp request expired"));
        }
        if !same(passphrase.as_bytes(), account.passphrase.as_bytes()) {
            return Err(unauthorized(
                "50105",
                "Request header \"OK-ACCESS-PASSPHRASE\" incorrect.",
            ));
        }
        let request_path = parts.uri.path_and_query().map_or("", |p| p.as_str());
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(account.secret.as_bytes()) else {
            return Err(unauthorized("50113", "Invalid Sign"));
        };
        mac.update(timestamp.as_bytes());
        mac.update(parts.method.as_str().as_bytes());
        mac.update(request_path.as_bytes());
        mac.update(body);
        let b64 = base64::engine::general_purpose::STANDARD;
        if !b64
            .decode(sign)
            .is_ok_and(|raw| mac.verify_slice(&raw).is_ok())
        {
            return Err(unauthorized("50113", "Invalid Sign"));
        }
        Ok(())
    }

    fn serve_endpoint(
        &self,
        endpoint: Endpoint,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Answer {
        let now = self.cfg.clock.now_ms().to_string();
        let seen = received(parts, body);
        match endpoint {
            Endpoint::Balance => Answer::ok(json!({
                "code": "0",
                "msg": "",
                "data": [{
                    "totalEq": "41624.32",
                    "uTime": now,
                    "details": [
                        { "ccy": "BTC", "eq": "1.25", "cashBal": "1.25", "availBal": "1.25", "frozenBal": "0" },
                        { "ccy": "USDT", "eq": "1000", "cashBal": "1000", "availBal": "1000", "frozenBal": "0" },
                    ],
                }],
                "received": seen,
            })),
            Endpoint::PlaceOrder => {
                let json_type = header_text(parts, header::CONTENT_TYPE.as_str())
                    .and_then(|t| t.split(';').next())
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
                if !json_type {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "50006",
                        "Invalid Content_Type, please use \"application/json\" format.",
                    );
                }
                if body.is_empty() {
                    return refuse(StatusCode::BAD_REQUEST, "50000", "Body can not be empty.");
                }
                let Ok(Value::Object(order)) = serde_json::from_slice::<Value>(body) else {
                    return refuse(StatusCode::BAD_REQUEST, "50002", "Json data format error.");
                };
                let text = |n: &str| {
                    order
                        .get(n)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                };
                for name in ["instId", "tdMode", "side", "ordType", "sz"] {
                    if text(name).is_none() {
                        return refuse(
                            StatusCode::BAD_REQUEST,
                            "50014",
                            &format!("Parameter {name} can not be empty."),
                        );
                    }
                }
                let id = 312_269_865_356_374_016 + self.next_order.fetch_add(1, Ordering::Relaxed);
                Answer::ok(json!({
                    "code": "0",
                    "msg": "",
                    "data": [{
                        "clOrdId": text("clOrdId").unwrap_or(""),
                        "ordId": id.to_string(),
                        "tag": text("tag").unwrap_or(""),
                        "ts": now,
                        "sCode": "0",
                        "sMsg": "Order placed",
                    }],
                    "inTime": format!("{now}000"),
                    "outTime": format!("{now}000"),
                    "received": seen,
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
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "50002",
            "Json data format error.",
        )
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
    //   def ok(ts, method, path, body=""):
    //       return base64.b64encode(hmac.new(DEMO_SECRET_KEY.encode(),
    //           (ts+method+path+body).encode(), hashlib.sha256).digest()).decode()
    //   ok("2020-12-08T09:08:57.715Z", "GET", "/api/v5/account/balance?ccy=BTC")
    //   ok("2020-12-08T09:08:57.715Z", "POST", "/api/v5/trade/order", ORDER)
    const TS: &str = "2020-12-08T09:08:57.715Z";
    const TS_MS: i64 = 1_607_418_537_715;
    const BALANCE: &str = "/api/v5/account/balance?ccy=BTC";
    const BALANCE_SIG: &str = "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=";
    const ORDER: &str = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"2.15","sz":"2"}"#;
    const ORDER_SIG: &str = "iwrdSpN7pm4G4u8+fswZUyH6mOM48+sBF6WvKpj4Dvk=";
    const JSON: (&str, &str) = ("content-type", "application/json");

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
            ("OK-ACCESS-KEY", DEMO_API_KEY),
            ("OK-ACCESS-SIGN", sig),
            ("OK-ACCESS-TIMESTAMP", ts),
            ("OK-ACCESS-PASSPHRASE", passphrase),
            JSON,
        ];
        reply(f.respond(request(method, uri, &headers, body)).await).await
    }

    /// Test-side signer, for requests that are not pinned.
    fn sign(ts: &str, method: &str, path: &str, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(DEMO_SECRET_KEY.as_bytes()).unwrap();
        mac.update(format!("{ts}{method}{path}{body}").as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    fn assert_code(r: &Reply, status: StatusCode, code: &str) {
        assert_eq!(r.status, status, "{}", r.json);
        assert_eq!(r.json["code"], code, "{}", r.json);
        assert_eq!(r.json["data"], json!([]), "{}", r.json);
    }

    #[tokio::test]
    async fn known_answers_are_accepted() {
        let f = fake_at(TS_MS);
        let r = call(&f, "GET", BALANCE, TS, BALANCE_SIG, DEMO_PASSPHRASE, "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["code"], "0");
        assert_eq!(r.json["received"]["query"], "ccy=BTC");
        let r = call(
            &f,
            "POST",
            "/api/v5/trade/order",
            TS,
            ORDER_SIG,
            DEMO_PASSPHRASE,
            ORDER,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["data"][0]["sCode"], "0");
        assert_eq!(r.json["received"]["body"], ORDER);
        assert_eq!(f.stats().accepted, 2);
    }

    #[tokio::test]
    async fn a_one_byte_tamper_of_path_query_body_or_timestamp_is_refused() {
        let f = fake_at(TS_MS);
        let order = "/api/v5/trade/order";
        for (method, uri, ts, sig, body) in [
            (
                "GET",
                "/api/v5/account/balance?ccy=ETH",
                TS,
                BALANCE_SIG,
                "",
            ),
            (
                "GET",
                "/api/v5/account/balance?ccy=BTC&",
                TS,
                BALANCE_SIG,
                "",
            ),
            ("GET", "/api/v5/account/balance", TS, BALANCE_SIG, ""),
            ("GET", BALANCE, "2020-12-08T09:08:57.716Z", BALANCE_SIG, ""),
            ("POST", order, TS, ORDER_SIG, &ORDER.replace("2.15", "2.16")),
            ("POST", order, TS, ORDER_SIG, &ORDER.replace(':', ": ")),
            ("POST", order, "2020-12-08T09:08:58.715Z", ORDER_SIG, ORDER),
            ("POST", "/api/v5/trade/order?", TS, ORDER_SIG, ORDER),
        ] {
            let r = call(&f, method, uri, ts, sig, DEMO_PASSPHRASE, body).await;
            assert_code(&r, StatusCode::UNAUTHORIZED, "50113");
            assert_eq!(r.json["msg"], "Invalid Sign");
        }
        // A one-byte change of the path to another endpoint's.
        let r = call(
            &f,
            "GET",
            "/api/v5/account/balancE?ccy=BTC",
            TS,
            BALANCE_SIG,
            DEMO_PASSPHRASE,
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let stats = f.stats();
        assert_eq!((stats.accepted, stats.refused), (0, 9));
        assert!(stats.last_refusal.is_some());
    }

    #[tokio::test]
    async fn timestamps_must_be_iso_with_milliseconds_within_thirty_seconds() {
        for (clock, ok) in [
            (TS_MS + 30_000, true),
            (TS_MS + 30_001, false),
            (TS_MS - 30_000, true),
            (TS_MS - 30_001, false),
        ] {
            let r = call(
                &fake_at(clock),
                "GET",
                BALANCE,
                TS,
                BALANCE_SIG,
                DEMO_PASSPHRASE,
                "",
            )
            .await;
            if ok {
                assert_eq!(r.status, StatusCode::OK, "{clock}: {}", r.json);
            } else {
                assert_code(&r, StatusCode::UNAUTHORIZED, "50102");
                assert_eq!(r.json["msg"], "Timestamp request expired");
            }
        }
        let f = fake_at(TS_MS);
        for ts in [
            "1607418537715",
            "2020-12-08T09:08:57Z",
            "2020-12-08T09:08:57.715",
        ] {
            let r = call(
                &f,
                "GET",
                BALANCE,
                ts,
                &sign(ts, "GET", BALANCE, ""),
                DEMO_PASSPHRASE,
                "",
            )
            .await;
            assert_code(&r, StatusCode::UNAUTHORIZED, "50112");
        }
        // The system clock.
        let f = Fake::new(Config::default());
        let now = super::super::iso8601_ms(Clock::default().now_ms());
        let r = call(
            &f,
            "GET",
            BALANCE,
            &now,
            &sign(&now, "GET", BALANCE, ""),
            DEMO_PASSPHRASE,
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }

    #[tokio::test]
    async fn key_passphrase_and_headers_are_checked() {
        let f = fake_at(TS_MS);
        let r = call(&f, "GET", BALANCE, TS, BALANCE_SIG, "Demo-Passphrase-2", "").await;
        assert_code(&r, StatusCode::UNAUTHORIZED, "50105");
        let headers = [
            ("OK-ACCESS-KEY", "5e0c6f1a-7d2b-4c3e-9f8a-1b2c3d4e5f61"),
            ("OK-ACCESS-PASSPHRASE", DEMO_PASSPHRASE),
            ("OK-ACCESS-SIGN", BALANCE_SIG),
            ("OK-ACCESS-TIMESTAMP", TS),
        ];
        let r = reply(f.respond(request("GET", BALANCE, &headers, "")).await).await;
        assert_code(&r, StatusCode::UNAUTHORIZED, "50111");
        for (i, code) in ["50103", "50104", "50106", "50107"].into_iter().enumerate() {
            let mut partial = headers.to_vec();
            partial.remove(i);
            let r = reply(f.respond(request("GET", BALANCE, &partial, "")).await).await;
            assert_code(&r, StatusCode::UNAUTHORIZED, code);
        }
        let r = reply(
            f.respond(request("GET", "/api/v5/public/time", &[], ""))
                .await,
        )
        .await;
        assert_eq!(r.json["data"][0]["ts"], TS_MS.to_string());
    }

    #[tokio::test]
    async fn orders_need_json_with_the_mandatory_parameters() {
        let f = fake_at(TS_MS);
        let path = "/api/v5/trade/order";
        let form = "instId=BTC-USDT";
        let headers = [
            ("OK-ACCESS-KEY", DEMO_API_KEY),
            ("OK-ACCESS-PASSPHRASE", DEMO_PASSPHRASE),
            ("OK-ACCESS-SIGN", &*sign(TS, "POST", path, form)),
            ("OK-ACCESS-TIMESTAMP", TS),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let r = reply(f.respond(request("POST", path, &headers, form)).await).await;
        assert_code(&r, StatusCode::BAD_REQUEST, "50006");
        let r = call(
            &f,
            "POST",
            path,
            TS,
            &sign(TS, "POST", path, ""),
            DEMO_PASSPHRASE,
            "",
        )
        .await;
        assert_code(&r, StatusCode::BAD_REQUEST, "50000");
        let r = call(
            &f,
            "POST",
            path,
            TS,
            &sign(TS, "POST", path, "{"),
            DEMO_PASSPHRASE,
            "{",
        )
        .await;
        assert_code(&r, StatusCode::BAD_REQUEST, "50002");
        let body = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market"}"#;
        let r = call(
            &f,
            "POST",
            path,
            TS,
            &sign(TS, "POST", path, body),
            DEMO_PASSPHRASE,
            body,
        )
        .await;
        assert_code(&r, StatusCode::BAD_REQUEST, "50014");
        assert_eq!(r.json["msg"], "Parameter sz can not be empty.");
    }

    #[tokio::test]
    async fn bodies_are_bounded_and_secrets_stay_out_of_debug() {
        let f = Fake::new(Config {
            max_body: 8,
            ..Config::default()
        });
        let r = call(
            &f,
            "POST",
            "/api/v5/trade/order",
            TS,
            "x",
            DEMO_PASSPHRASE,
            ORDER,
        )
        .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        let shown = format!("{:?}", Config::default());
        assert!(shown.contains(DEMO_API_KEY), "{shown}");
        assert!(
            !shown.contains(DEMO_SECRET_KEY) && !shown.contains(DEMO_PASSPHRASE),
            "{shown}"
        );
    }
}
