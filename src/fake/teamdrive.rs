//! A strict fake of the TeamDrive Registration Server API
//! (`teamdrive-registration-server-api.txt`): POST to `/yvva/api/api.xml`,
//! `?checksum=` the lowercase hex md5(body ‖ key) or HMAC-SHA1(key, body)
//! over the exact bytes received, `<requesttime>` within a window, a known
//! `<command>`; errors are the document's XML exceptions (-30000 Access
//! denied, -30001 Invalid Command, -30002 Invalid Request, -30003 Invalid XML).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use md5::{Digest, Md5};
use tokio::net::TcpListener;

use super::{serve_with, Body, Recorded};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Auth {
    Md5,
    HmacSha1,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub key: String,
    pub auth: Auth,
    /// Accepted difference between `<requesttime>` and the fake's clock.
    pub window: Duration,
}

pub const DEMO_KEY: &str = "teamdrive-demo-service-key";

impl Default for Config {
    fn default() -> Self {
        Config {
            key: DEMO_KEY.into(),
            auth: Auth::Md5,
            window: Duration::from_secs(300),
        }
    }
}

/// The commands this fake knows (a few of the real server's).
const COMMANDS: &[&str] = &[
    "loginuser",
    "getuserdata",
    "registeruser",
    "searchuser",
    "getlicensedata",
    "getregversion",
];

pub type Stats = super::Journal;

#[derive(Clone)]
pub struct Fake {
    cfg: Arc<Config>,
    stats: Arc<Mutex<Stats>>,
}

fn xml(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text)).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=UTF-8"),
    );
    r
}

fn exception(code: i32, message: &str) -> Response<Body> {
    xml(
        StatusCode::OK,
        format!(
            "<?xml version='1.0' encoding='UTF-8' ?>\n<teamdrive>\n<regversion></regversion>\n<exception>\n<primarycode>{code}</primarycode>\n<secondarycode></secondarycode>\n<message>{message}</message>\n</exception>\n</teamdrive>\n"
        ),
    )
}

/// The text between `<name>` and `</name>` for each occurrence, comments removed first.
fn elements(doc: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        found.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    found
}

fn without_comments(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i..].find("-->") {
            Some(j) => rest = &rest[i + j + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
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

    fn expected(&self, body: &[u8]) -> String {
        match self.cfg.auth {
            Auth::Md5 => {
                let mut h = Md5::new();
                h.update(body);
                h.update(self.cfg.key.as_bytes());
                hex::encode(h.finalize())
            }
            Auth::HmacSha1 => match Hmac::<sha1::Sha1>::new_from_slice(self.cfg.key.as_bytes()) {
                Ok(mut m) => {
                    m.update(body);
                    hex::encode(m.finalize().into_bytes())
                }
                Err(_) => String::new(),
            },
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if parts.method == Method::GET && parts.uri.path() == "/_fake/stats" {
            let s = serde_json::to_string(&self.stats()).unwrap_or_default();
            return xml(StatusCode::OK, s);
        }
        let body = match Limited::new(body, 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return exception(-30002, "Invalid Request"),
        };
        let (resp, rejected) = self.check(&parts, &body);
        let rec = Recorded::new(&parts, &body, resp.status().as_u16());
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(rec, rejected);
        resp
    }

    /// The answer, and whether it refuses the request.
    fn check(&self, parts: &http::request::Parts, body: &[u8]) -> (Response<Body>, bool) {
        if parts.uri.path() != "/yvva/api/api.xml" {
            return (xml(
                StatusCode::NOT_FOUND,
                "<html><head>\n<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n</body></html>\n".into(),
            ), true);
        }
        if parts.method != Method::POST {
            return (exception(-30002, "Invalid Request"), true);
        }
        let checksum = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == "checksum")
                .map(|(_, v)| v.into_owned())
                .last()
        });
        if checksum.as_deref() != Some(self.expected(body).as_str()) {
            return (exception(-30000, "Access denied"), true);
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return (exception(-30003, "Invalid XML"), true);
        };
        let doc = without_comments(text);
        let trimmed = doc.trim();
        let trimmed = match trimmed.strip_prefix("<?xml") {
            Some(r) => r.split_once("?>").map(|(_, r)| r.trim()).unwrap_or(""),
            None => trimmed,
        };
        if !(trimmed.starts_with("<teamdrive>") && trimmed.ends_with("</teamdrive>")) {
            return (exception(-30003, "Invalid XML"), true);
        }
        let commands = elements(trimmed, "command");
        let command = match commands.as_slice() {
            [c] if COMMANDS.contains(&c.trim()) => c.trim().to_string(),
            _ => return (exception(-30001, "Invalid Command"), true),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let times = elements(trimmed, "requesttime");
        let fresh = matches!(times.as_slice(), [t] if t.trim().parse::<i64>().is_ok_and(|t| (t - now).unsigned_abs() <= self.cfg.window.as_secs()));
        if !fresh {
            return (exception(-30002, "Invalid Request"), true);
        }
        let distributor = elements(trimmed, "distributor")
            .into_iter()
            .next()
            .unwrap_or_default();
        let answer = xml(
            StatusCode::OK,
            format!(
                "<?xml version='1.0' encoding='UTF-8' ?>\n<teamdrive>\n<regversion>4.0.0</regversion>\n<command>{command}</command>\n<distributor>{distributor}</distributor>\n<result>ok</result>\n</teamdrive>\n"
            ),
        );
        (answer, false)
    }
}
