//! A strict fake of the Kraken Spot REST API's private endpoints, written
//! from the document:
//! <https://docs.kraken.com/api/docs/guides/spot-rest-auth>
//! (errors from <https://docs.kraken.com/exchange/guides/general/errors>).
//!
//! - `API-Key` names the key; `API-Sign` = base64(HMAC-SHA512(base64-decoded
//!   secret, URI path + SHA256(nonce + POST data))): the URI path exactly as
//!   received (`/0/private/AddOrder`), the nonce as the body's `nonce` field
//!   carries it, the POST data the form body exactly as received.
//! - `nonce`: "always increasing, unsigned 64-bit integer": per API key, a
//!   nonce not greater than the last one accepted is `EAPI:Invalid nonce`.
//!   A nonce is used up once its request authenticates (as on the exchange:
//!   even if the endpoint then refuses the arguments).
//! - Errors are `{"error":["EAPI:Invalid key"],"result":{}}` with HTTP 200,
//!   as the exchange answers: `EAPI:Invalid key` (missing or unknown key),
//!   `EAPI:Invalid signature`, `EAPI:Invalid nonce`,
//!   `EGeneral:Invalid arguments`, `EGeneral:Unknown method`.
//!
//! [`Stats`] records every accepted nonce in the order the fake accepted it
//! (the last 100 000), and the nonce refusals, so a test can see that a
//! client's concurrent requests arrived with strictly increasing nonces.
//!
//! Endpoints: `POST /0/private/Balance`, `POST /0/private/AddOrder`, plus
//! `GET /_fake/stats`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};
use tokio::net::TcpListener;

use super::{header_text, received, Answer, Exchange};
use crate::fake::{Body, Recorded};

/// The demo key's public half (not from the document, which shows no public key).
pub const DEMO_API_KEY: &str = "CSdemoKrakenKey0countersign0fake0public0key0for0tests00";
/// The document's example private key: its worked `AddOrder` example signs with it.
pub const DEMO_SECRET: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

/// How many accepted nonces [`Stats::nonces`] keeps (the latest).
pub const NONCES_KEPT: usize = 100_000;

/// An API key pair the fake accepts.
#[derive(Clone)]
pub struct ApiKey {
    /// Sent in `API-Key`.
    pub key: String,
    /// Base64; the HMAC key is its decoded bytes.
    pub secret: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub keys: Vec<ApiKey>,
    /// Largest body read; past it, 413.
    pub max_body: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keys: vec![ApiKey {
                key: DEMO_API_KEY.into(),
                secret: DEMO_SECRET.into(),
            }],
            max_body: 64 * 1024,
        }
    }
}

/// A nonce that passed, and whose key it was.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AcceptedNonce {
    pub key: String,
    pub nonce: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    #[serde(flatten)]
    pub common: super::Stats,
    /// Accepted nonces in the order they were accepted (the last [`NONCES_KEPT`]).
    pub nonces: VecDeque<AcceptedNonce>,
    /// Requests refused with `EAPI:Invalid nonce`.
    pub nonce_refusals: u64,
}

impl Stats {
    /// The accepted nonces of one key, in the order they were accepted.
    pub fn nonces_of(&self, key: &str) -> Vec<u64> {
        self.nonces
            .iter()
            .filter(|n| n.key == key)
            .map(|n| n.nonce)
            .collect()
    }
}

#[derive(Default)]
struct State {
    /// The last accepted nonce of each key.
    last_nonce: HashMap<String, u64>,
    /// Numbers the transaction ids of new orders.
    orders: u64,
    stats: Stats,
}

#[derive(Clone)]
pub struct Fake {
    cfg: Arc<Config>,
    state: Arc<Mutex<State>>,
}

#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Balance,
    AddOrder,
}

fn refuse(status: StatusCode, error: &str) -> Answer {
    Answer::refuse(status, json!({ "error": [error], "result": {} }), error)
}

/// An API error: the exchange answers them with HTTP 200.
fn api_error(error: &str) -> Answer {
    refuse(StatusCode::OK, error)
}

impl Fake {
    pub fn new(cfg: Config) -> Self {
        Fake {
            cfg: Arc::new(cfg),
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.state().stats.clone()
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
        let endpoint = match parts.uri.path() {
            "/0/private/Balance" => Endpoint::Balance,
            "/0/private/AddOrder" => Endpoint::AddOrder,
            _ => return refuse(StatusCode::NOT_FOUND, "EGeneral:Unknown method"),
        };
        if parts.method != Method::POST {
            return refuse(StatusCode::METHOD_NOT_ALLOWED, "EGeneral:Unknown method");
        }
        let Some(key) =
            header_text(parts, "api-key").and_then(|k| self.cfg.keys.iter().find(|c| c.key == k))
        else {
            return api_error("EAPI:Invalid key");
        };
        let Some(sign) = header_text(parts, "api-sign") else {
            return api_error("EAPI:Invalid signature");
        };
        let mut fields: HashMap<String, String> = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if fields
                .insert(name.into_owned(), value.into_owned())
                .is_some()
            {
                return api_error("EGeneral:Invalid arguments");
            }
        }
        let Some(nonce_text) = fields.get("nonce").filter(|n| !n.is_empty()) else {
            return api_error("EAPI:Invalid nonce");
        };
        let nonce = match nonce_text.parse::<u64>() {
            Ok(n) if nonce_text.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return api_error("EAPI:Invalid nonce"),
        };

        let b64 = base64::engine::general_purpose::STANDARD;
        let Ok(secret) = b64.decode(&key.secret) else {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "EGeneral:Internal error");
        };
        let Ok(mut mac) = Hmac::<Sha512>::new_from_slice(&secret) else {
            return api_error("EAPI:Invalid signature");
        };
        let mut inner = Sha256::new();
        inner.update(nonce_text.as_bytes());
        inner.update(body);
        mac.update(parts.uri.path().as_bytes());
        mac.update(&inner.finalize());
        if !b64
            .decode(sign)
            .is_ok_and(|raw| mac.verify_slice(&raw).is_ok())
        {
            return api_error("EAPI:Invalid signature");
        }

        // The check and the update under one lock: concurrent requests are
        // ordered here, and this order is what `Stats::nonces` records.
        let order = {
            let mut st = self.state();
            let last = st.last_nonce.get(&key.key).copied();
            if last.is_some_and(|last| nonce <= last) {
                st.stats.nonce_refusals += 1;
                drop(st);
                return api_error("EAPI:Invalid nonce");
            }
            st.last_nonce.insert(key.key.clone(), nonce);
            if st.stats.nonces.len() == NONCES_KEPT {
                st.stats.nonces.pop_front();
            }
            st.stats.nonces.push_back(AcceptedNonce {
                key: key.key.clone(),
                nonce,
            });
            st.orders += u64::from(matches!(endpoint, Endpoint::AddOrder));
            st.orders
        };
        let seen = received(parts, body);
        match endpoint {
            Endpoint::Balance => Answer::ok(json!({
                "error": [],
                "result": { "ZUSD": "171288.6158", "ZEUR": "504861.8946", "XXBT": "1011.1908877900" },
                "received": seen,
            })),
            Endpoint::AddOrder => self.add_order(&fields, order, seen),
        }
    }

    fn add_order(&self, fields: &HashMap<String, String>, order: u64, seen: Value) -> Answer {
        let get = |n: &str| fields.get(n).map(String::as_str).filter(|v| !v.is_empty());
        let (Some(pair), Some(side), Some(kind), Some(volume)) =
            (get("pair"), get("type"), get("ordertype"), get("volume"))
        else {
            return api_error("EGeneral:Invalid arguments");
        };
        if side != "buy" && side != "sell" {
            return api_error("EGeneral:Invalid arguments");
        }
        let descr = match get("price") {
            Some(price) => format!("{side} {volume} {pair} @ {kind} {price}"),
            None => format!("{side} {volume} {pair} @ {kind}"),
        };
        Answer::ok(json!({
            "error": [],
            "result": {
                "descr": { "order": descr },
                "txid": [format!("O{:05X}-FAKE0-{:06X}", (order >> 24) & 0xF_FFFF, order & 0xFF_FFFF)],
            },
            "received": seen,
        }))
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
        refuse(StatusCode::PAYLOAD_TOO_LARGE, "EGeneral:Invalid arguments")
    }

    fn answer(&self, parts: &http::request::Parts, body: &[u8]) -> Answer {
        self.check(parts, body)
    }

    fn record(&self, rec: Recorded, answer: &Answer) {
        self.state().stats.common.record(rec, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{reply, request, Reply};
    use super::*;

    /// The document's worked example; the signature checked with Python:
    ///   msg = b"/0/private/AddOrder" + hashlib.sha256(b"1616492376594" + POST_DATA).digest()
    ///   base64.b64encode(hmac.new(base64.b64decode(DEMO_SECRET), msg, hashlib.sha512).digest())
    const POST_DATA: &str =
        "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
    const EXAMPLE_SIG: &str =
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";
    const ADD_ORDER: &str = "/0/private/AddOrder";

    async fn call(f: &Fake, path: &str, sign: &str, body: &str) -> Reply {
        let headers = [
            ("API-Key", DEMO_API_KEY),
            ("API-Sign", sign),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        reply(f.respond(request("POST", path, &headers, body)).await).await
    }

    /// Test-side signer, for requests that are not the document's example.
    fn sign(path: &str, nonce: &str, body: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut mac = Hmac::<Sha512>::new_from_slice(&b64.decode(DEMO_SECRET).unwrap()).unwrap();
        mac.update(path.as_bytes());
        mac.update(&Sha256::digest(format!("{nonce}{body}").as_bytes()));
        b64.encode(mac.finalize().into_bytes())
    }

    async fn balance(f: &Fake, nonce: u64) -> Reply {
        let body = format!("nonce={nonce}");
        call(
            f,
            "/0/private/Balance",
            &sign("/0/private/Balance", &nonce.to_string(), &body),
            &body,
        )
        .await
    }

    fn assert_error(r: &Reply, error: &str) {
        assert_eq!(r.json["error"], json!([error]), "{}", r.json);
        assert_eq!(r.json["result"], json!({}), "{}", r.json);
    }

    #[tokio::test]
    async fn documents_example_is_accepted() {
        let f = Fake::new(Config::default());
        let r = call(&f, ADD_ORDER, EXAMPLE_SIG, POST_DATA).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json["error"], json!([]), "{}", r.json);
        assert_eq!(
            r.json["result"]["descr"]["order"],
            "buy 1.25 XBTUSD @ limit 37500"
        );
        assert_eq!(r.json["received"]["body"], POST_DATA);
        let stats = f.stats();
        assert_eq!(stats.nonces_of(DEMO_API_KEY), vec![1_616_492_376_594]);
        assert_eq!((stats.common.accepted, stats.common.refused), (1, 0));
    }

    #[tokio::test]
    async fn a_one_byte_tamper_of_path_body_or_nonce_is_refused() {
        let f = Fake::new(Config::default());
        for (path, body) in [
            ("/0/private/Balance", POST_DATA.to_string()),
            (ADD_ORDER, POST_DATA.replace("37500", "37501")),
            (
                ADD_ORDER,
                POST_DATA.replace("1616492376594", "1616492376595"),
            ),
            (ADD_ORDER, format!("{POST_DATA}&")),
            (ADD_ORDER, POST_DATA.replace("XBTUSD", "XBTUSd")),
        ] {
            assert_error(
                &call(&f, path, EXAMPLE_SIG, &body).await,
                "EAPI:Invalid signature",
            );
        }
        let bad = EXAMPLE_SIG.replacen('4', "5", 1);
        assert_error(
            &call(&f, ADD_ORDER, &bad, POST_DATA).await,
            "EAPI:Invalid signature",
        );
        assert_error(
            &call(&f, ADD_ORDER, "not base64!", POST_DATA).await,
            "EAPI:Invalid signature",
        );
        // A refused signature uses up no nonce: the example still passes after.
        assert_eq!(
            call(&f, ADD_ORDER, EXAMPLE_SIG, POST_DATA).await.json["error"],
            json!([])
        );
        let stats = f.stats();
        assert_eq!(
            (
                stats.common.accepted,
                stats.common.refused,
                stats.nonce_refusals
            ),
            (1, 7, 0)
        );
        assert_eq!(
            stats.common.last_refusal.as_deref(),
            Some("EAPI:Invalid signature")
        );
    }

    #[tokio::test]
    async fn nonces_must_increase_per_key() {
        let other = ApiKey {
            key: "second-key".into(),
            secret: DEMO_SECRET.into(),
        };
        let f = Fake::new(Config {
            keys: vec![Config::default().keys[0].clone(), other],
            ..Config::default()
        });
        for (nonce, ok) in [
            (10, true),
            (11, true),
            (11, false),
            (9, false),
            (12, true),
            (1_000, true),
            (999, false),
        ] {
            let r = balance(&f, nonce).await;
            if ok {
                assert_eq!(r.json["error"], json!([]), "{nonce}: {}", r.json);
            } else {
                assert_error(&r, "EAPI:Invalid nonce");
            }
        }
        // The other key has its own sequence.
        let body = "nonce=5";
        let headers = [
            ("API-Key", "second-key"),
            ("API-Sign", &*sign("/0/private/Balance", "5", body)),
        ];
        let r = reply(
            f.respond(request("POST", "/0/private/Balance", &headers, body))
                .await,
        )
        .await;
        assert_eq!(r.json["error"], json!([]), "{}", r.json);
        let stats = f.stats();
        assert_eq!(stats.nonces_of(DEMO_API_KEY), vec![10, 11, 12, 1_000]);
        assert_eq!(stats.nonces_of("second-key"), vec![5]);
        assert_eq!(stats.nonce_refusals, 3);
        assert_eq!(
            stats.common.last_refusal.as_deref(),
            Some("EAPI:Invalid nonce")
        );
        // A missing or non-numeric nonce.
        let r = call(
            &f,
            "/0/private/Balance",
            &sign("/0/private/Balance", "", "a=1"),
            "a=1",
        )
        .await;
        assert_error(&r, "EAPI:Invalid nonce");
        let r = call(
            &f,
            "/0/private/Balance",
            &sign("/0/private/Balance", "-5", "nonce=-5"),
            "nonce=-5",
        )
        .await;
        assert_error(&r, "EAPI:Invalid nonce");
    }

    #[tokio::test]
    async fn concurrent_requests_are_recorded_in_acceptance_order() {
        let f = Fake::new(Config::default());
        let tasks: Vec<_> = (1..=64u64)
            .map(|n| {
                let f = f.clone();
                // Interleave the nonces so that some arrive after a larger one.
                let nonce = if n % 2 == 0 { n * 10 } else { 640 - n * 10 };
                tokio::spawn(async move { balance(&f, nonce).await })
            })
            .collect();
        let mut passed = 0;
        for t in tasks {
            let r = t.await.unwrap();
            passed += usize::from(r.json["error"] == json!([]));
        }
        let stats = f.stats();
        let accepted = stats.nonces_of(DEMO_API_KEY);
        assert_eq!(accepted.len(), passed);
        assert!(accepted.windows(2).all(|w| w[0] < w[1]), "{accepted:?}");
        assert_eq!(stats.nonce_refusals as usize, 64 - passed);
    }

    #[tokio::test]
    async fn keys_arguments_paths_and_stats() {
        let f = Fake::new(Config::default());
        let headers = [("API-Key", "unknown"), ("API-Sign", EXAMPLE_SIG)];
        let r = reply(
            f.respond(request("POST", ADD_ORDER, &headers, POST_DATA))
                .await,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_error(&r, "EAPI:Invalid key");
        let r = reply(
            f.respond(request("POST", ADD_ORDER, &headers[1..], POST_DATA))
                .await,
        )
        .await;
        assert_error(&r, "EAPI:Invalid key");
        let r = reply(
            f.respond(request(
                "POST",
                ADD_ORDER,
                &[("API-Key", DEMO_API_KEY)],
                POST_DATA,
            ))
            .await,
        )
        .await;
        assert_error(&r, "EAPI:Invalid signature");
        // AddOrder needs pair, type, ordertype, volume; the nonce is used up anyway.
        let body = "nonce=7&pair=XBTUSD&type=buy&ordertype=market";
        let r = call(&f, ADD_ORDER, &sign(ADD_ORDER, "7", body), body).await;
        assert_error(&r, "EGeneral:Invalid arguments");
        assert_eq!(f.stats().nonces_of(DEMO_API_KEY), vec![7]);
        let body = "nonce=8&pair=XBTUSD&type=sell&ordertype=market&volume=2";
        let r = call(&f, ADD_ORDER, &sign(ADD_ORDER, "8", body), body).await;
        assert_eq!(
            r.json["result"]["descr"]["order"], "sell 2 XBTUSD @ market",
            "{}",
            r.json
        );
        let r = call(&f, "/0/private/Nothing", EXAMPLE_SIG, POST_DATA).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_error(&r, "EGeneral:Unknown method");
        let r = reply(
            f.respond(request("GET", "/0/private/Balance", &[], ""))
                .await,
        )
        .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

        let r = reply(f.respond(request("GET", "/_fake/stats", &[], "")).await).await;
        assert_eq!(
            r.json["nonces"][0],
            json!({ "key": DEMO_API_KEY, "nonce": 7 })
        );
        assert_eq!(r.json["accepted"], 1);
        assert_eq!(r.json["journal"]["requests"], 7);
        let shown = format!("{:?}", Config::default());
        assert!(
            shown.contains(DEMO_API_KEY) && !shown.contains(DEMO_SECRET),
            "{shown}"
        );
    }
}
