//! A strict fake of the XRTC API (`xrtc-api.txt`): logins by account id and
//! API key with LOGIN_TIMEOUT spacing per key, JSESSIONID + AWSALBAPP-0
//! cookies bound to the client's IP and dropped after `session_idle` unused,
//! 20 requests/s per key (token bucket), a monthly quota per account,
//! PAYLOAD_SIZE_MAX, and items in portals with probe / watch / stream reads.
//!
//! Errors are the document's: `{"error":{"errorgroup","errorcode","errormessage"}}`,
//! HTTP 400, or 401 for a denied session. The document names the groups
//! (2 system, 3 registration, 4 login, 6 application) but not which error
//! belongs to which, so the fake uses the endpoint's group (3 registration,
//! 4 login, 6 items) and 2 for what is checked before any endpoint runs
//! (method, size, rate, quota, unknown path).
//!
//! `GET /_fake/stats` and `POST /_fake/kill-sessions` let tests and tools
//! outside Rust look inside; they are not counted in the stats.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::lenient;
use super::{Body, Recorded};
use items::Portals;
use session::{Limits, Session};

mod items;
mod registration;
mod session;

/// One request as the fake received it (headers as sent, lowercase names).
pub type RecordedRequest = Recorded;

/// How many requests `Stats::recent` keeps.
const RECENT_MAX: usize = 200;

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
    /// PAYLOAD_SIZE_MAX: request bodies, and the serialized answer of a get.
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
    pub recent: Vec<RecordedRequest>,
}

#[derive(Default)]
struct State {
    /// Grows with registrations.
    accounts: Vec<(String, String)>,
    /// JSESSIONID -> session.
    sessions: HashMap<String, Session>,
    limits: Limits,
    /// Pending registrations: token -> wrong code attempts.
    registrations: HashMap<String, u32>,
    stats: Stats,
}

struct Inner {
    cfg: Config,
    /// Never held across an await, nor together with the portals' lock.
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

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn parse_fail(group: u32, what: &str) -> Response<Body> {
    let message = format!("INPUT_BINARYJSON_PARSE_FAIL: {what}");
    xerr(StatusCode::BAD_REQUEST, group, 20, &message)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Reads at most `cap` bytes of a body. `Err` carries what was read when the
/// body is longer (the rest is never buffered) or the connection failed.
async fn read_capped<B>(mut body: B, cap: usize) -> Result<Bytes, Bytes>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(buf.freeze());
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > cap {
                return Err(buf.freeze());
            }
        }
    }
    Ok(buf.freeze())
}

impl Fake {
    pub fn new(config: Config) -> Self {
        let state = State {
            accounts: config.accounts.clone(),
            ..Default::default()
        };
        Fake {
            inner: Arc::new(Inner {
                portals: Arc::new(Portals::new(config.get_item_timeout, config.payload_max)),
                cfg: config,
                state: Mutex::new(state),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-updated in a way that
        // matters to a fake, so a poisoned lock is still used.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the counters and recent requests.
    pub fn stats(&self) -> Stats {
        self.state().stats.clone()
    }

    /// Server-side invalidation of every session (as after a server restart).
    pub fn kill_sessions(&self) {
        self.state().sessions.clear();
        self.inner.portals.forget_all_cursors();
    }

    /// Answers on `listener` (TLS when `tls` is set; HTTP/1.1 and h2) until
    /// `shutdown` resolves.
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
        match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/_fake/stats") => {
                let s = serde_json::to_string(&self.stats()).unwrap_or_default();
                return json(StatusCode::OK, s);
            }
            (&Method::POST, "/_fake/kill-sessions") => {
                self.kill_sessions();
                let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
                *r.status_mut() = StatusCode::NO_CONTENT;
                return r;
            }
            _ => {}
        }
        let (resp, body) = match read_capped(body, self.inner.cfg.payload_max).await {
            Ok(b) => (self.route(ip, &parts, &b).await, b),
            Err(partial) => (
                parse_fail(2, "body exceeds PAYLOAD_SIZE_MAX or was cut off"),
                partial,
            ),
        };
        let rec = Recorded::new(&parts, &body, resp.status().as_u16());
        let mut st = self.state();
        st.stats.requests += 1;
        st.stats.recent.push(rec);
        if st.stats.recent.len() > RECENT_MAX {
            st.stats.recent.remove(0);
        }
        resp
    }

    async fn route(&self, ip: IpAddr, parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
        let path = parts.uri.path();
        let known = [
            "/v1/auth/login",
            "/v1/auth/registrationstart",
            "/v1/auth/registrationcode",
            "/v1/item/set",
            "/v1/item/get",
        ];
        if !known.contains(&path) {
            return xerr(
                StatusCode::NOT_FOUND,
                2,
                30,
                "INVALID_ARGUMENTS: no such endpoint",
            );
        }
        if parts.method != Method::POST {
            return xerr(
                StatusCode::BAD_REQUEST,
                2,
                30,
                "INVALID_ARGUMENTS: all XRTC requests are POST",
            );
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return parse_fail(2, "body is not UTF-8");
        };
        match path {
            "/v1/auth/login" => self.login(ip, text),
            "/v1/auth/registrationstart" => self.registration_start(text),
            "/v1/auth/registrationcode" => self.registration_code(text),
            _ => self.item(ip, parts, path, text).await,
        }
    }

    async fn item(
        &self,
        ip: IpAddr,
        parts: &http::request::Parts,
        path: &str,
        text: &str,
    ) -> Response<Body> {
        // HTTP/2 may split cookies over several `cookie` fields.
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
            return parse_fail(6, "cannot parse the request");
        };
        if path == "/v1/item/set" {
            self.inner.portals.set(&account, &value)
        } else {
            self.inner.portals.get(&account, &session_id, &value).await
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_http;
