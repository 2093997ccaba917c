//! A strict fake of the Binance Spot REST API's `SIGNED` endpoints (HMAC
//! keys), written from the document:
//! <https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security>
//! (the same text is `rest-api.md` of github.com/binance/binance-spot-api-docs),
//! errors from <https://developers.binance.com/docs/binance-spot-api-docs/errors>.
//!
//! - The signature payload is the query string concatenated, without
//!   separator, with the request body, both exactly as received, less the
//!   `signature` parameter (it must be the last parameter of the query or of
//!   the body, with the `&` before it); every non-ASCII byte is
//!   percent-encoded (`%XX`) first, as the document requires of a signer.
//! - `signature` = hex HMAC-SHA256(secretKey as UTF-8, payload); "HMAC
//!   signatures are not case-sensitive", so either letter case passes.
//! - `X-MBX-APIKEY` names the key: absent or not alphanumeric is
//!   `-2014 API-key format invalid.`, unknown is `-2015` (both HTTP 401).
//! - `timestamp` in milliseconds (or microseconds: 10^14 and above),
//!   `recvWindow` in milliseconds with up to three decimals (default 5000, at
//!   most 60000); accepted iff `timestamp < serverTime + 1000` and
//!   `serverTime - timestamp <= recvWindow`, else `-1021` (HTTP 400).
//! - A bad signature is `-1022 Signature for this request is not valid.`
//!   (HTTP 400); a missing mandatory parameter `-1102`; a parameter repeated
//!   within the query or within the body `-1101`. A parameter in both the
//!   query and the body: the query's is used, as the document says.
//!
//! Endpoints: `GET /api/v3/time` (public), `GET /api/v3/account`,
//! `POST /api/v3/order`, `POST /api/v3/order/test`, `GET /api/v3/order`,
//! `DELETE /api/v3/order`, plus `GET /_fake/stats`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use sha2::Sha256;
use tokio::net::TcpListener;

use super::{header_text, received, Answer, Clock, Exchange, Stats};
use crate::fake::{Body, Recorded};

/// The document's example API key (its worked example signs with it).
pub const DEMO_API_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
/// The document's example secret key.
pub const DEMO_SECRET_KEY: &str =
    "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

/// An HMAC API key the fake accepts.
#[derive(Clone)]
pub struct ApiKey {
    /// Sent in `X-MBX-APIKEY`.
    pub api_key: String,
    /// The HMAC key, used as its UTF-8 bytes.
    pub secret_key: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("api_key", &self.api_key)
            .field("secret_key", &"[redacted]")
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub keys: Vec<ApiKey>,
    /// The server's clock (`serverTime`).
    pub clock: Clock,
    /// `recvWindow` when the request sends none (the document's 5000 ms).
    pub default_recv_window: Duration,
    /// The largest `recvWindow` accepted (60000 ms).
    pub max_recv_window: Duration,
    /// How far ahead of `serverTime` a timestamp may not reach (1000 ms).
    pub max_ahead: Duration,
    /// Largest body read; past it, 413.
    pub max_body: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keys: vec![ApiKey {
                api_key: DEMO_API_KEY.into(),
                secret_key: DEMO_SECRET_KEY.into(),
            }],
            clock: Clock::default(),
            default_recv_window: Duration::from_millis(5000),
            max_recv_window: Duration::from_millis(60_000),
            max_ahead: Duration::from_millis(1000),
            max_body: 64 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct Fake {
    cfg: Arc<Config>,
    stats: Arc<Mutex<Stats>>,
    /// `orderId`s handed out, so that each new order gets its own.
    next_order_id: Arc<AtomicU64>,
}

#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Account,
    NewOrder { test: bool },
    QueryOrder,
    CancelOrder,
}

fn refuse(status: StatusCode, code: i64, msg: &str) -> Answer {
    Answer::refuse(
        status,
        json!({ "code": code, "msg": msg }),
        format!("{code} {msg}"),
    )
}

fn bad_signature() -> Answer {
    refuse(
        StatusCode::BAD_REQUEST,
        -1022,
        "Signature for this request is not valid.",
    )
}

fn duplicate() -> Answer {
    refuse(
        StatusCode::BAD_REQUEST,
        -1101,
        "Duplicate values for a parameter detected.",
    )
}

fn mandatory(name: &str) -> Answer {
    refuse(
        StatusCode::BAD_REQUEST,
        -1102,
        &format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    )
}

/// Why the `signature` parameter of a query or body cannot be taken out.
enum SignatureError {
    Duplicate,
    NotLast,
}

/// The query or body without its `signature` parameter (and the `&` before
/// it), and that parameter's decoded value. The signature must be the last
/// parameter: what follows it could not be part of what was signed.
fn split_signature(raw: &[u8]) -> Result<(&[u8], Option<String>), SignatureError> {
    if raw.is_empty() {
        return Ok((raw, None));
    }
    let mut found: Option<(usize, String)> = None;
    let (mut start, mut last_start) = (0, 0);
    for piece in raw.split(|&b| b == b'&') {
        if let Some((name, value)) = form_urlencoded::parse(piece).next() {
            if name == "signature" {
                if found.is_some() {
                    return Err(SignatureError::Duplicate);
                }
                found = Some((start, value.into_owned()));
            }
        }
        last_start = start;
        start += piece.len() + 1;
    }
    match found {
        None => Ok((raw, None)),
        Some((at, _)) if at != last_start => Err(SignatureError::NotLast),
        Some((at, sig)) => Ok((&raw[..at.saturating_sub(1)], Some(sig))),
    }
}

/// [`split_signature`], its errors as the API's answers.
fn split(raw: &[u8]) -> Result<(&[u8], Option<String>), Answer> {
    split_signature(raw).map_err(|e| match e {
        SignatureError::Duplicate => duplicate(),
        SignatureError::NotLast => bad_signature(),
    })
}

/// The decoded parameters of a query or body; `None` if one is repeated.
fn params_of(raw: &[u8]) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (name, value) in form_urlencoded::parse(raw) {
        if out.insert(name.into_owned(), value.into_owned()).is_some() {
            return None;
        }
    }
    Some(out)
}

/// "Any non-ASCII character must be percent-encoded before signing."
fn percent_encode_non_ascii(bytes: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii() {
            out.push(b);
        } else {
            out.extend([b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
    out
}

/// A `timestamp` in microseconds: milliseconds, or microseconds from 10^14 on
/// (a millisecond timestamp that large is in the year 5138).
fn timestamp_micros(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = s.parse().ok()?;
    Some(if n >= 100_000_000_000_000 {
        n
    } else {
        n * 1000
    })
}

/// A `recvWindow` ("milliseconds, up to three decimal places") in microseconds.
fn recv_window_micros(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 12 || !digits(whole) || frac.len() > 3 || !digits(frac) {
        return None;
    }
    if s.contains('.') && frac.is_empty() {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = format!("{frac:0<3}").parse().ok()?;
    Some(whole * 1000 + frac)
}

impl Fake {
    pub fn new(cfg: Config) -> Self {
        Fake {
            cfg: Arc::new(cfg),
            stats: Arc::default(),
            next_order_id: Arc::new(AtomicU64::new(1)),
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
        let path = parts.uri.path();
        let endpoint = match (&parts.method, path) {
            (&Method::GET, "/api/v3/time") => {
                return Answer::ok(json!({ "serverTime": self.cfg.clock.now_ms() }))
            }
            (&Method::GET, "/api/v3/account") => Endpoint::Account,
            (&Method::POST, "/api/v3/order") => Endpoint::NewOrder { test: false },
            (&Method::POST, "/api/v3/order/test") => Endpoint::NewOrder { test: true },
            (&Method::GET, "/api/v3/order") => Endpoint::QueryOrder,
            (&Method::DELETE, "/api/v3/order") => Endpoint::CancelOrder,
            (_, "/api/v3/time" | "/api/v3/account" | "/api/v3/order" | "/api/v3/order/test") => {
                return refuse(
                    StatusCode::METHOD_NOT_ALLOWED,
                    -1000,
                    "Method not allowed (countersign fake).",
                )
            }
            _ => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    -1000,
                    "Unknown path (countersign fake).",
                )
            }
        };
        let params = match self.authenticate(parts, body) {
            Ok(p) => p,
            Err(refusal) => return refusal,
        };
        self.serve_endpoint(endpoint, &params, parts, body)
    }

    /// The request's parameters once its key, timestamp and signature pass.
    fn authenticate(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<HashMap<String, String>, Answer> {
        let api_key = header_text(parts, "x-mbx-apikey").unwrap_or("");
        if api_key.is_empty() || !api_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                -2014,
                "API-key format invalid.",
            ));
        }
        let Some(key) = self.cfg.keys.iter().find(|k| k.api_key == api_key) else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                -2015,
                "Invalid API-key, IP, or permissions for action.",
            ));
        };
        let query = parts.uri.query().unwrap_or("").as_bytes();
        let (query_payload, query_sig) = split(query)?;
        let (body_payload, body_sig) = split(body)?;
        let signature = match (query_sig, body_sig) {
            (Some(s), None) | (None, Some(s)) if !s.is_empty() => s,
            (Some(_), Some(_)) => return Err(duplicate()),
            _ => return Err(mandatory("signature")),
        };
        let (Some(query_params), Some(mut params)) =
            (params_of(query_payload), params_of(body_payload))
        else {
            return Err(duplicate());
        };
        // "If a parameter sent in both the query string and request body, the
        // query string parameter will be used."
        params.extend(query_params);

        let Some(ts) = params.get("timestamp").and_then(|t| timestamp_micros(t)) else {
            return Err(mandatory("timestamp"));
        };
        let window = match params.get("recvWindow") {
            None => self.cfg.default_recv_window.as_micros() as i64,
            Some(w) => recv_window_micros(w).ok_or_else(|| mandatory("recvWindow"))?,
        };
        let max = self.cfg.max_recv_window.as_micros() as i64;
        if window > max {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                -1102,
                &format!(
                    "'recvWindow' contains unexpected value. Cannot be greater than {}.",
                    max / 1000
                ),
            ));
        }
        let server = self.cfg.clock.now_micros();
        let ahead = self.cfg.max_ahead.as_micros() as i64;
        if ts >= server + ahead {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                -1021,
                &format!(
                    "Timestamp for this request was {}ms ahead of the server's time.",
                    ahead / 1000
                ),
            ));
        }
        if server - ts > window {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                -1021,
                "Timestamp for this request is outside of the recvWindow.",
            ));
        }

        let mut payload = percent_encode_non_ascii(query_payload);
        payload.extend(percent_encode_non_ascii(body_payload));
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.secret_key.as_bytes()) else {
            return Err(bad_signature());
        };
        mac.update(&payload);
        // hex::decode takes either letter case; verify_slice compares in constant time.
        let valid = hex::decode(&signature).is_ok_and(|raw| mac.verify_slice(&raw).is_ok());
        if !valid {
            return Err(bad_signature());
        }
        Ok(params)
    }

    fn serve_endpoint(
        &self,
        endpoint: Endpoint,
        params: &HashMap<String, String>,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Answer {
        let get = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
        let now = self.cfg.clock.now_ms();
        let seen = received(parts, body);
        match endpoint {
            Endpoint::Account => Answer::ok(json!({
                "makerCommission": 15,
                "takerCommission": 15,
                "buyerCommission": 0,
                "sellerCommission": 0,
                "canTrade": true,
                "canWithdraw": true,
                "canDeposit": true,
                "updateTime": now,
                "accountType": "SPOT",
                "balances": [
                    { "asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000" },
                    { "asset": "LTC", "free": "4763368.68006011", "locked": "0.00000000" },
                ],
                "permissions": ["SPOT"],
                "received": seen,
            })),
            Endpoint::NewOrder { test } => {
                let (Some(symbol), Some(side), Some(kind)) =
                    (get("symbol"), get("side"), get("type"))
                else {
                    let missing = ["symbol", "side", "type"]
                        .into_iter()
                        .find(|n| get(n).is_none())
                        .unwrap_or("symbol");
                    return mandatory(missing);
                };
                if test {
                    return Answer::ok(json!({ "received": seen }));
                }
                let order_id = self.next_order_id.fetch_add(1, Ordering::Relaxed);
                Answer::ok(json!({
                    "symbol": symbol,
                    "orderId": order_id,
                    "orderListId": -1,
                    "clientOrderId": get("newClientOrderId").unwrap_or_else(|| format!("fake{order_id}")),
                    "transactTime": now,
                    "price": get("price").unwrap_or_else(|| "0.00000000".into()),
                    "origQty": get("quantity").unwrap_or_else(|| "0.00000000".into()),
                    "executedQty": "0.00000000",
                    "status": "NEW",
                    "timeInForce": get("timeInForce").unwrap_or_else(|| "GTC".into()),
                    "type": kind,
                    "side": side,
                    "received": seen,
                }))
            }
            Endpoint::QueryOrder | Endpoint::CancelOrder => {
                let Some(symbol) = get("symbol") else {
                    return mandatory("symbol");
                };
                let (order_id, client_id) = (get("orderId"), get("origClientOrderId"));
                if order_id.is_none() && client_id.is_none() {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        -1102,
                        "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
                    );
                }
                let order_id = order_id.and_then(|o| o.parse::<u64>().ok()).unwrap_or(1);
                let cancel = matches!(endpoint, Endpoint::CancelOrder);
                Answer::ok(json!({
                    "symbol": symbol,
                    "orderId": order_id,
                    "orderListId": -1,
                    "origClientOrderId": client_id.unwrap_or_else(|| format!("fake{order_id}")),
                    "price": "0.10000000",
                    "origQty": "1.00000000",
                    "executedQty": "0.00000000",
                    "status": if cancel { "CANCELED" } else { "NEW" },
                    "timeInForce": "GTC",
                    "type": "LIMIT",
                    "side": "BUY",
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
            -1000,
            "Request body too large.",
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

    /// The document's worked example. Each signature below is the document's
    /// (its openssl output) and was recomputed with Python's hmac before pinning:
    ///   hmac.new(DEMO_SECRET_KEY.encode(), payload, hashlib.sha256).hexdigest()
    /// with payload the example, example 3's query + body (no `&`), and the
    /// non-ASCII example's percent-encoded payload.
    const EXAMPLE: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    const EXAMPLE_TS: i64 = 1_499_827_319_559;
    const EXAMPLE_SIG: &str = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
    /// Example 3: the query `…timeInForce=GTC` and the body `quantity=1…` signed
    /// with no `&` between them.
    const MIXED_SIG: &str = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77";
    /// The document's non-ASCII example: symbol `１２３４５６`, signed percent-encoded.
    const UNICODE_SIG: &str = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3";
    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
    const KEY: (&str, &str) = ("x-mbx-apikey", DEMO_API_KEY);

    fn fake_at(unix_ms: i64) -> Fake {
        Fake::new(Config {
            clock: Clock::Fixed { unix_ms },
            ..Config::default()
        })
    }

    /// Test-side signer, for requests that are not the document's example.
    fn sign(payload: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(DEMO_SECRET_KEY.as_bytes()).unwrap();
        mac.update(payload.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    async fn call(
        f: &Fake,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        reply(f.respond(request(method, uri, headers, body)).await).await
    }

    fn assert_code(r: &Reply, status: StatusCode, code: i64) {
        assert_eq!(r.status, status, "{}", r.json);
        assert_eq!(r.json["code"], code, "{}", r.json);
        assert!(r.json["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }

    #[tokio::test]
    async fn documents_examples_are_accepted_as_query_body_and_mixed() {
        let f = fake_at(EXAMPLE_TS);
        // Example 2: as a query string.
        let uri = format!("/api/v3/order?{EXAMPLE}&signature={EXAMPLE_SIG}");
        let r = call(&f, "POST", &uri, &[KEY], "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["symbol"], "LTCBTC");
        assert_eq!(r.json["status"], "NEW");
        assert_eq!(
            r.json["received"]["query"],
            format!("{EXAMPLE}&signature={EXAMPLE_SIG}")
        );

        // Example 1: as a request body.
        let body = format!("{EXAMPLE}&signature={EXAMPLE_SIG}");
        let r = call(&f, "POST", "/api/v3/order", &[KEY, FORM], &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["received"]["body"], body);

        // Example 3: mixed; the payload has no `&` between query and body.
        let uri = "/api/v3/order?symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC";
        let body = format!(
            "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature={MIXED_SIG}"
        );
        let r = call(&f, "POST", uri, &[KEY, FORM], &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        // …so example 1's signature does not pass for it.
        let body = format!(
            "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature={EXAMPLE_SIG}"
        );
        assert_code(
            &call(&f, "POST", uri, &[KEY, FORM], &body).await,
            StatusCode::BAD_REQUEST,
            -1022,
        );

        // "HMAC signatures are not case-sensitive."
        let uri = format!(
            "/api/v3/order?{EXAMPLE}&signature={}",
            EXAMPLE_SIG.to_uppercase()
        );
        assert_eq!(
            call(&f, "POST", &uri, &[KEY], "").await.status,
            StatusCode::OK
        );
        assert_eq!(f.stats().accepted, 4);
        assert_eq!(f.stats().refused, 1);
    }

    #[tokio::test]
    async fn non_ascii_is_signed_percent_encoded_whether_sent_encoded_or_raw() {
        let f = fake_at(EXAMPLE_TS);
        let rest = "side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        let encoded = "%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96";
        let uri = format!("/api/v3/order?symbol={encoded}&{rest}&signature={UNICODE_SIG}");
        let r = call(&f, "POST", &uri, &[KEY], "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["symbol"], "１２３４５６");
        // Raw UTF-8 in a form body: the server encodes it before checking.
        let body = format!("symbol=１２３４５６&{rest}&signature={UNICODE_SIG}");
        let r = call(&f, "POST", "/api/v3/order", &[KEY, FORM], &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        // A signer that signed the raw bytes is refused.
        let raw_sig = sign(&format!("symbol=１２３４５６&{rest}"));
        let body = format!("symbol=１２３４５６&{rest}&signature={raw_sig}");
        let r = call(&f, "POST", "/api/v3/order", &[KEY, FORM], &body).await;
        assert_code(&r, StatusCode::BAD_REQUEST, -1022);
    }

    #[tokio::test]
    async fn a_one_byte_tamper_of_query_body_or_timestamp_is_refused() {
        let f = fake_at(EXAMPLE_TS);
        let tampered = [
            EXAMPLE.replace("LTCBTC", "LTCBTD"),
            EXAMPLE.replace("price=0.1", "price=0.2"),
            EXAMPLE.replace("1499827319559", "1499827319558"),
            EXAMPLE.replace("side=BUY&", "side=BUY&&"),
        ];
        for t in &tampered {
            let uri = format!("/api/v3/order?{t}&signature={EXAMPLE_SIG}");
            assert_code(
                &call(&f, "POST", &uri, &[KEY], "").await,
                StatusCode::BAD_REQUEST,
                -1022,
            );
            let body = format!("{t}&signature={EXAMPLE_SIG}");
            let r = call(&f, "POST", "/api/v3/order", &[KEY, FORM], &body).await;
            assert_code(&r, StatusCode::BAD_REQUEST, -1022);
        }
        // A signature byte changed.
        let sig = EXAMPLE_SIG.replacen('c', "d", 1);
        let uri = format!("/api/v3/order?{EXAMPLE}&signature={sig}");
        assert_code(
            &call(&f, "POST", &uri, &[KEY], "").await,
            StatusCode::BAD_REQUEST,
            -1022,
        );
        let stats = f.stats();
        assert_eq!((stats.accepted, stats.refused), (0, 9));
        assert_eq!(
            stats.last_refusal.as_deref(),
            Some("-1022 Signature for this request is not valid.")
        );
    }

    #[tokio::test]
    async fn timing_follows_the_documents_logic() {
        let uri = format!("/api/v3/order?{EXAMPLE}&signature={EXAMPLE_SIG}");
        // serverTime - timestamp <= recvWindow (5000).
        let r = call(&fake_at(EXAMPLE_TS + 5000), "POST", &uri, &[KEY], "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let r = call(&fake_at(EXAMPLE_TS + 5001), "POST", &uri, &[KEY], "").await;
        assert_code(&r, StatusCode::BAD_REQUEST, -1021);
        assert_eq!(
            r.json["msg"],
            "Timestamp for this request is outside of the recvWindow."
        );
        // timestamp < serverTime + 1000.
        let r = call(&fake_at(EXAMPLE_TS - 999), "POST", &uri, &[KEY], "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let r = call(&fake_at(EXAMPLE_TS - 1000), "POST", &uri, &[KEY], "").await;
        assert_code(&r, StatusCode::BAD_REQUEST, -1021);
        assert_eq!(
            r.json["msg"],
            "Timestamp for this request was 1000ms ahead of the server's time."
        );

        // Without recvWindow, 5000 ms; a larger one (with decimals) widens it; past 60000 is refused.
        let f = fake_at(EXAMPLE_TS + 5001);
        let q = "symbol=LTCBTC&timestamp=1499827319559";
        let r = call(
            &f,
            "GET",
            &format!("/api/v3/account?{q}&signature={}", sign(q)),
            &[KEY],
            "",
        )
        .await;
        assert_code(&r, StatusCode::BAD_REQUEST, -1021);
        let q = "symbol=LTCBTC&timestamp=1499827319559&recvWindow=5001.5";
        let r = call(
            &f,
            "GET",
            &format!("/api/v3/account?{q}&signature={}", sign(q)),
            &[KEY],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let q = "timestamp=1499827319559&recvWindow=60001";
        let r = call(
            &f,
            "GET",
            &format!("/api/v3/account?{q}&signature={}", sign(q)),
            &[KEY],
            "",
        )
        .await;
        assert_code(&r, StatusCode::BAD_REQUEST, -1102);

        // Microseconds.
        let q = "timestamp=1499827319559000";
        let r = call(
            &fake_at(EXAMPLE_TS),
            "GET",
            &format!("/api/v3/account?{q}&signature={}", sign(q)),
            &[KEY],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let q = "timestamp=1499827313559000";
        let r = call(
            &fake_at(EXAMPLE_TS),
            "GET",
            &format!("/api/v3/account?{q}&signature={}", sign(q)),
            &[KEY],
            "",
        )
        .await;
        assert_code(&r, StatusCode::BAD_REQUEST, -1021);
    }

    #[tokio::test]
    async fn keys_are_checked_first() {
        let f = fake_at(EXAMPLE_TS);
        let uri = format!("/api/v3/order?{EXAMPLE}&signature={EXAMPLE_SIG}");
        assert_code(
            &call(&f, "POST", &uri, &[], "").await,
            StatusCode::UNAUTHORIZED,
            -2014,
        );
        let r = call(&f, "POST", &uri, &[("x-mbx-apikey", "not a key!")], "").await;
        assert_code(&r, StatusCode::UNAUTHORIZED, -2014);
        let other = DEMO_API_KEY.replace('v', "w");
        let r = call(&f, "POST", &uri, &[("x-mbx-apikey", &other)], "").await;
        assert_code(&r, StatusCode::UNAUTHORIZED, -2015);
        // Another configured key does not verify the demo key's signature.
        let f = Fake::new(Config {
            keys: vec![ApiKey {
                api_key: DEMO_API_KEY.into(),
                secret_key: "another-secret".into(),
            }],
            clock: Clock::Fixed {
                unix_ms: EXAMPLE_TS,
            },
            ..Config::default()
        });
        assert_code(
            &call(&f, "POST", &uri, &[KEY], "").await,
            StatusCode::BAD_REQUEST,
            -1022,
        );
    }

    #[tokio::test]
    async fn parameters_signature_placement_and_endpoints() {
        let f = fake_at(EXAMPLE_TS);
        // The signature must be the last parameter.
        let uri = format!("/api/v3/order?signature={EXAMPLE_SIG}&{EXAMPLE}");
        assert_code(
            &call(&f, "POST", &uri, &[KEY], "").await,
            StatusCode::BAD_REQUEST,
            -1022,
        );
        // Missing signature or timestamp.
        let uri = format!("/api/v3/order?{EXAMPLE}");
        assert_code(
            &call(&f, "POST", &uri, &[KEY], "").await,
            StatusCode::BAD_REQUEST,
            -1102,
        );
        let q = "symbol=LTCBTC";
        let uri = format!("/api/v3/account?{q}&signature={}", sign(q));
        assert_code(
            &call(&f, "GET", &uri, &[KEY], "").await,
            StatusCode::BAD_REQUEST,
            -1102,
        );
        // A parameter twice in the query; a signature in both parts.
        let q = "symbol=LTCBTC&symbol=BNBBTC&timestamp=1499827319559";
        let uri = format!("/api/v3/account?{q}&signature={}", sign(q));
        assert_code(
            &call(&f, "GET", &uri, &[KEY], "").await,
            StatusCode::BAD_REQUEST,
            -1101,
        );
        let uri = format!("/api/v3/order?{EXAMPLE}&signature={EXAMPLE_SIG}");
        let body = format!("signature={EXAMPLE_SIG}");
        assert_code(
            &call(&f, "POST", &uri, &[KEY, FORM], &body).await,
            StatusCode::BAD_REQUEST,
            -1101,
        );
        // The query's parameter wins over the body's (both are signed).
        let q = "symbol=LTCBTC&side=BUY&type=LIMIT&timestamp=1499827319559";
        let b = "symbol=BNBBTC";
        let uri = format!("/api/v3/order?{q}");
        let body = format!("{b}&signature={}", sign(&format!("{q}{b}")));
        let r = call(&f, "POST", &uri, &[KEY, FORM], &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["symbol"], "LTCBTC");

        // A new order needs symbol, side, type; a cancel an orderId or origClientOrderId.
        let q = "symbol=LTCBTC&side=BUY&timestamp=1499827319559";
        let uri = format!("/api/v3/order?{q}&signature={}", sign(q));
        let r = call(&f, "POST", &uri, &[KEY], "").await;
        assert_code(&r, StatusCode::BAD_REQUEST, -1102);
        assert!(r.json["msg"].as_str().unwrap().contains("'type'"));
        let q = "symbol=LTCBTC&timestamp=1499827319559";
        let uri = format!("/api/v3/order?{q}&signature={}", sign(q));
        assert_code(
            &call(&f, "DELETE", &uri, &[KEY], "").await,
            StatusCode::BAD_REQUEST,
            -1102,
        );
        let q = "symbol=LTCBTC&orderId=42&timestamp=1499827319559";
        let uri = format!("/api/v3/order?{q}&signature={}", sign(q));
        let r = call(&f, "DELETE", &uri, &[KEY], "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(
            (r.json["orderId"].as_u64(), r.json["status"].as_str()),
            (Some(42), Some("CANCELED"))
        );
        assert_eq!(r.json["received"]["method"], "DELETE");
        let r = call(&f, "GET", &uri, &[KEY], "").await;
        assert_eq!(r.json["status"], "NEW", "{}", r.json);
        let q = "timestamp=1499827319559";
        let r = call(
            &f,
            "GET",
            &format!("/api/v3/account?{q}&signature={}", sign(q)),
            &[KEY],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["balances"][0]["asset"], "BTC");
        let uri = format!("/api/v3/order/test?{EXAMPLE}&signature={EXAMPLE_SIG}");
        assert_eq!(
            call(&f, "POST", &uri, &[KEY], "").await.status,
            StatusCode::OK
        );

        let r = call(&f, "GET", "/api/v3/time", &[], "").await;
        assert_eq!(r.json["serverTime"], EXAMPLE_TS);
        assert_eq!(
            call(&f, "GET", "/api/v3/nothing", &[KEY], "").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&f, "PUT", "/api/v3/order", &[KEY], "").await.status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn bodies_are_bounded_and_secrets_stay_out_of_debug() {
        let f = Fake::new(Config {
            max_body: 16,
            ..Config::default()
        });
        let r = call(&f, "POST", "/api/v3/order", &[KEY, FORM], &"a".repeat(17)).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(f.stats().refused, 1);
        let shown = format!("{:?}", Config::default());
        assert!(
            shown.contains(DEMO_API_KEY) && !shown.contains(DEMO_SECRET_KEY),
            "{shown}"
        );
    }
}
