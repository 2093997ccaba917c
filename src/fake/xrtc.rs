//! A strict fake of the XRTC API (`xrtc-api.txt`): logins by account id and
//! API key with LOGIN_TIMEOUT spacing per key, JSESSIONID + AWSALBAPP-0
//! cookies bound to the client's IP and dropped after `session_idle` unused,
//! 20 requests/s per key (token bucket), a monthly quota per account,
//! PAYLOAD_SIZE_MAX, and items in portals with probe / watch / stream reads.
//! Errors are the document's: `{"error":{"errorgroup","errorcode","errormessage"}}`,
//! HTTP 400, or 401 for a denied session. `/_fake/stats` and
//! `/_fake/kill-sessions` let tests and people look inside.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::lenient;
pub use items::Portals;

#[path = "xrtc_items.rs"]
mod items;

pub use super::{Body, Recorded};

#[derive(Clone, Debug)]
pub struct Config {
    /// (accountid, apikey) pairs the fake accepts.
    pub accounts: Vec<(String, String)>,
    /// LOGIN_TIMEOUT: least time between two accepted logins of one API key.
    pub login_timeout: Duration,
    /// A session cookie unused this long is dead.
    pub session_idle: Duration,
    /// Requests per second per API key.
    pub rate_per_second: u32,
    /// Arrival jitter forgiven by the rate check: on a busy loopback, requests
    /// sent exactly on schedule arrive a few ms early or late.
    pub rate_tolerance: Duration,
    /// PAYLOAD_SIZE_MAX for request bodies.
    pub payload_max: usize,
    /// GET_ITEM_TIMEOUT for watch and stream.
    pub get_item_timeout: Duration,
    /// Requests per month per account.
    pub monthly_quota: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            accounts: vec![(
                "AC0987654321012345".into(),
                "demo0000000000000000000000000key".into(),
            )],
            login_timeout: Duration::from_secs(5),
            session_idle: Duration::from_secs(60),
            rate_per_second: 20,
            rate_tolerance: Duration::from_millis(10),
            payload_max: 1024,
            get_item_timeout: Duration::from_secs(5),
            monthly_quota: 1_000_000,
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Unix ms of every accepted login, in order.
    pub logins: Vec<u64>,
    /// Logins refused with TOO_FREQUENT_LOGIN (45).
    pub login_rejections: u64,
    /// Requests refused for the per-key rate.
    pub rate_violations: u64,
    /// 401 / 10011 answers.
    pub session_denials: u64,
    /// Every request received (control endpoints excluded).
    pub requests: u64,
    /// The last 200 requests, oldest first.
    pub recent: Vec<Recorded>,
}

struct Session {
    alb: String,
    ip: IpAddr,
    account: String,
    key: String,
    last_used: Instant,
}

#[derive(Default)]
struct State {
    accounts: Vec<(String, String)>,
    sessions: HashMap<String, Session>,
    /// Per API key: when its last login was accepted.
    last_login: HashMap<String, Instant>,
    /// Per API key: (tokens, when counted).
    buckets: HashMap<String, (f64, Instant)>,
    /// Per account: requests this month (the fake's month is its lifetime).
    used: HashMap<String, u64>,
    /// Pending registrations: token -> wrong code attempts.
    registrations: HashMap<String, u32>,
    stats: Stats,
}

struct Inner {
    cfg: Config,
    state: Mutex<State>,
    portals: Arc<Portals>,
}

#[derive(Clone)]
pub struct Fake {
    inner: Arc<Inner>,
}

/// An XRTC error answer.
fn xerr(status: StatusCode, group: u32, code: u32, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "error": { "errorgroup": group, "errorcode": code, "errormessage": message }
    });
    json(status, body.to_string())
}

fn boxed_xerr(status: StatusCode, group: u32, code: u32, message: &str) -> Box<Response<Body>> {
    Box::new(xerr(status, group, code, message))
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn bad_args(message: &str) -> Response<Body> {
    xerr(StatusCode::BAD_REQUEST, 2, 30, message)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The value of one cookie in a `Cookie` header.
fn cookie<'a>(cookies: &'a str, name: &str) -> Option<&'a str> {
    cookies
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl Fake {
    pub fn new(config: Config) -> Self {
        let state = State {
            accounts: config.accounts.clone(),
            ..Default::default()
        };
        Fake {
            inner: Arc::new(Inner {
                portals: Arc::new(Portals::new(config.get_item_timeout)),
                cfg: config,
                state: Mutex::new(state),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.state().stats.clone()
    }

    pub fn kill_sessions(&self) {
        self.state().sessions.clear();
    }

    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let fake = self;
        super::serve_with(listener, tls, shutdown, move |ip, req| {
            let fake = fake.clone();
            async move { fake.handle(ip, req).await }
        })
        .await
    }

    async fn handle(&self, ip: IpAddr, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        match (parts.method.clone(), path.as_str()) {
            (Method::GET, "/_fake/stats") => {
                let s = serde_json::to_string(&self.stats()).unwrap_or_default();
                return json(StatusCode::OK, s);
            }
            (Method::POST, "/_fake/kill-sessions") => {
                self.kill_sessions();
                let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
                *r.status_mut() = StatusCode::NO_CONTENT;
                return r;
            }
            _ => {}
        }
        let body = Limited::new(body, self.inner.cfg.payload_max)
            .collect()
            .await;
        let (resp, body) = match body {
            // Too big: the fake stops reading, and records no body.
            Err(_) => (
                xerr(
                    StatusCode::BAD_REQUEST,
                    2,
                    20,
                    "INPUT_BINARYJSON_PARSE_FAIL: payload exceeds PAYLOAD_SIZE_MAX",
                ),
                Bytes::new(),
            ),
            Ok(b) => {
                let b = b.to_bytes();
                (self.route(ip, &parts, &path, &b).await, b)
            }
        };
        let rec = Recorded::new(&parts, &body, resp.status().as_u16());
        let mut st = self.state();
        st.stats.requests += 1;
        st.stats.recent.push(rec);
        if st.stats.recent.len() > 200 {
            st.stats.recent.remove(0);
        }
        resp
    }

    async fn route(
        &self,
        ip: IpAddr,
        parts: &http::request::Parts,
        path: &str,
        body: &Bytes,
    ) -> Response<Body> {
        if parts.method != Method::POST {
            return bad_args("INVALID_ARGUMENTS: all XRTC requests are POST");
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return xerr(
                StatusCode::BAD_REQUEST,
                2,
                20,
                "INPUT_BINARYJSON_PARSE_FAIL: not UTF-8",
            );
        };
        match path {
            "/v1/auth/login" => self.login(ip, text),
            "/v1/auth/registrationstart" => self.registration_start(text),
            "/v1/auth/registrationcode" => self.registration_code(text),
            "/v1/item/set" | "/v1/item/get" => {
                let cookies = parts
                    .headers
                    .get_all(header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join("; ");
                let (account, session_id) = match self.admit(ip, &cookies) {
                    Ok(a) => a,
                    Err(r) => return *r,
                };
                let Some(value) = lenient::parse(text) else {
                    return xerr(
                        StatusCode::BAD_REQUEST,
                        6,
                        20,
                        "INPUT_BINARYJSON_PARSE_FAIL: cannot parse the request",
                    );
                };
                if path == "/v1/item/set" {
                    self.inner.portals.set(&account, &value)
                } else {
                    self.inner.portals.get(&account, &session_id, &value).await
                }
            }
            _ => xerr(
                StatusCode::NOT_FOUND,
                2,
                30,
                "INVALID_ARGUMENTS: no such endpoint",
            ),
        }
    }

    /// Takes a token from the key's bucket, or records a violation.
    fn take_rate(&self, st: &mut State, key: &str) -> bool {
        let rate = f64::from(self.inner.cfg.rate_per_second);
        let now = Instant::now();
        let (tokens, at) = st.buckets.get(key).copied().unwrap_or((rate, now));
        let tokens = (tokens + (now - at).as_secs_f64() * rate).min(rate);
        let threshold = 1.0 - rate * self.inner.cfg.rate_tolerance.as_secs_f64();
        if tokens >= threshold {
            st.buckets.insert(key.to_string(), (tokens - 1.0, now));
            true
        } else {
            st.buckets.insert(key.to_string(), (tokens, now));
            st.stats.rate_violations += 1;
            false
        }
    }

    fn take_quota(&self, st: &mut State, account: &str) -> bool {
        let used = st.used.entry(account.to_string()).or_insert(0);
        *used += 1;
        *used <= self.inner.cfg.monthly_quota
    }

    fn limits(&self, st: &mut State, account: &str, key: &str) -> Result<(), Box<Response<Body>>> {
        if !self.take_rate(st, key) {
            return Err(boxed_xerr(
                StatusCode::BAD_REQUEST,
                2,
                50,
                "Too many requests per second for this API key",
            ));
        }
        if !self.take_quota(st, account) {
            return Err(boxed_xerr(
                StatusCode::BAD_REQUEST,
                2,
                51,
                "Monthly request limit of this account reached",
            ));
        }
        Ok(())
    }

    fn login(&self, ip: IpAddr, text: &str) -> Response<Body> {
        let v: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                return xerr(
                    StatusCode::BAD_REQUEST,
                    4,
                    20,
                    "INPUT_BINARYJSON_PARSE_FAIL: login body is not JSON",
                )
            }
        };
        let (Some(account), Some(key)) = (v["accountid"].as_str(), v["apikey"].as_str()) else {
            return xerr(
                StatusCode::BAD_REQUEST,
                4,
                30,
                "INVALID_ARGUMENTS: accountid and apikey strings are required",
            );
        };
        let mut st = self.state();
        if !st.accounts.iter().any(|(a, k)| a == account && k == key) {
            return xerr(
                StatusCode::BAD_REQUEST,
                4,
                35,
                "INVALID_CREDENTIALS: wrong account id and/or API key",
            );
        }
        if let Err(r) = self.limits(&mut st, account, key) {
            return *r;
        }
        let now = Instant::now();
        if st
            .last_login
            .get(key)
            .is_some_and(|t| now - *t < self.inner.cfg.login_timeout)
        {
            st.stats.login_rejections += 1;
            return xerr(
                StatusCode::BAD_REQUEST,
                4,
                45,
                "TOO_FREQUENT_LOGIN: login called too often for this API key",
            );
        }
        st.last_login.insert(key.to_string(), now);
        let mut rng = rand::rng();
        let id: String = (0..16)
            .map(|_| format!("{:02X}", rng.random::<u8>()))
            .collect();
        let alb = Alphanumeric.sample_string(&mut rng, 40);
        st.sessions.insert(
            id.clone(),
            Session {
                alb: alb.clone(),
                ip,
                account: account.to_string(),
                key: key.to_string(),
                last_used: now,
            },
        );
        let ms = now_ms();
        st.stats.logins.push(ms);
        let mut r = json(StatusCode::OK, format!("{{\"servertimestamp\":{ms}}}"));
        for c in [
            format!("JSESSIONID={id}; Path=/; HttpOnly"),
            format!("AWSALBAPP-0={alb}; Path=/"),
        ] {
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    }

    /// Checks the session cookies and the limits; returns (account, session id).
    fn admit(&self, ip: IpAddr, cookies: &str) -> Result<(String, String), Box<Response<Body>>> {
        let mut st = self.state();
        let denied = |st: &mut State| {
            st.stats.session_denials += 1;
            Box::new(xerr(
                StatusCode::UNAUTHORIZED,
                4,
                10011,
                "Server session denied",
            ))
        };
        let (Some(id), Some(alb)) = (
            cookie(cookies, "JSESSIONID"),
            cookie(cookies, "AWSALBAPP-0"),
        ) else {
            return Err(denied(&mut st));
        };
        let now = Instant::now();
        let idle = self.inner.cfg.session_idle;
        // An idle session is gone for good; a wrong AWSALBAPP-0 or another
        // client IP is denied without harming the real holder's session.
        let idle_dead = st
            .sessions
            .get(id)
            .is_some_and(|s| now - s.last_used >= idle);
        if idle_dead {
            st.sessions.remove(id);
        }
        let ok = st
            .sessions
            .get(id)
            .is_some_and(|s| s.alb == alb && s.ip == ip);
        if !ok {
            return Err(denied(&mut st));
        }
        let (account, key) = match st.sessions.get_mut(id) {
            Some(s) => {
                s.last_used = now;
                (s.account.clone(), s.key.clone())
            }
            None => return Err(denied(&mut st)),
        };
        self.limits(&mut st, &account, &key)?;
        Ok((account, id.to_string()))
    }

    fn registration_start(&self, text: &str) -> Response<Body> {
        let Some(v) = lenient::parse(text) else {
            return xerr(
                StatusCode::BAD_REQUEST,
                3,
                20,
                "INPUT_BINARYJSON_PARSE_FAIL",
            );
        };
        let Some(email) = v["email"].as_str() else {
            return xerr(
                StatusCode::BAD_REQUEST,
                3,
                30,
                "INVALID_ARGUMENTS: email is required",
            );
        };
        let valid = email
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        if !valid {
            return xerr(
                StatusCode::BAD_REQUEST,
                3,
                32,
                &format!("Invalid email address {email}"),
            );
        }
        let mut st = self.state();
        let token = match v["registrationtoken"].as_str() {
            Some(t) if st.registrations.contains_key(t) => t.to_string(),
            Some(_) => return xerr(StatusCode::BAD_REQUEST, 3, 33, "INVALID_TOKEN"),
            None => {
                let mut rng = rand::rng();
                let t = format!(
                    "{}-{}",
                    Alphanumeric.sample_string(&mut rng, 20).to_lowercase(),
                    rng.random_range(1_000_000_000u64..10_000_000_000)
                );
                st.registrations.insert(t.clone(), 0);
                t
            }
        };
        json(
            StatusCode::OK,
            serde_json::json!({ "registrationtoken": token }).to_string(),
        )
    }

    fn registration_code(&self, text: &str) -> Response<Body> {
        let Some(v) = lenient::parse(text) else {
            return xerr(
                StatusCode::BAD_REQUEST,
                3,
                20,
                "INPUT_BINARYJSON_PARSE_FAIL",
            );
        };
        let (Some(token), Some(code)) = (v["registrationtoken"].as_str(), v["emailcode"].as_str())
        else {
            return xerr(StatusCode::BAD_REQUEST, 3, 30, "INVALID_ARGUMENTS");
        };
        let mut st = self.state();
        let Some(tries) = st.registrations.get_mut(token) else {
            return xerr(StatusCode::BAD_REQUEST, 3, 33, "INVALID_TOKEN");
        };
        if code != "123456" {
            *tries += 1;
            if *tries >= 3 {
                st.registrations.remove(token);
                return xerr(StatusCode::BAD_REQUEST, 3, 42, "MAX_CODE_RETRY");
            }
            return xerr(StatusCode::BAD_REQUEST, 3, 34, "INVALID_CODE");
        }
        st.registrations.remove(token);
        let mut rng = rand::rng();
        let account = format!(
            "AC{}",
            rng.random_range(1_000_000_000_000_000u64..10_000_000_000_000_000)
        );
        let key = Alphanumeric.sample_string(&mut rng, 32);
        st.accounts.push((account.clone(), key.clone()));
        json(
            StatusCode::OK,
            serde_json::json!({ "accountid": account, "apikey": key, "apikeyname": "fake" })
                .to_string(),
        )
    }
}

#[cfg(test)]
#[path = "xrtc_tests.rs"]
mod tests;
