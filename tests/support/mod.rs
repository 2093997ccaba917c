//! Start fakes and gateways on loopback port 0, and talk to them.
#![allow(dead_code)] // each test file uses a different part of this
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use countersign::fake::xrtc;
use countersign::gateway::Gateway;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ACCOUNT: &str = "AC0987654321012345";
pub const API_KEY: &str = "Tk9x2mQ7vL4pR8sW1zY6bN3cF5hJ0dGe";

pub struct FakeXrtc {
    pub addr: SocketAddr,
    pub fake: xrtc::Fake,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for FakeXrtc {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A fake XRTC accepting [`ACCOUNT`]/[`API_KEY`], with test-sized limits.
pub async fn fake_xrtc(tune: impl FnOnce(&mut xrtc::Config)) -> FakeXrtc {
    let mut cfg = xrtc::Config {
        accounts: vec![(ACCOUNT.into(), API_KEY.into())],
        // The test binary runs ~14 gateways and fakes at once on 2 cores:
        // arrival jitter against the gateway's exact 50 ms schedule exceeds
        // the standalone fake's 10 ms there. The control test (limit lifted)
        // shows the check still catches real excess.
        rate_tolerance: Duration::from_millis(25),
        ..Default::default()
    };
    tune(&mut cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = xrtc::Fake::new(cfg);
    let (tx, rx) = oneshot::channel();
    let f = fake.clone();
    tokio::spawn(async move {
        let _ = f
            .serve(listener, None, async {
                let _ = rx.await;
            })
            .await;
    });
    FakeXrtc {
        addr,
        fake,
        stop: Some(tx),
    }
}

pub struct Gw {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

impl Gw {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting, drains, flushes state; what a SIGTERM does.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts a gateway from TOML text (listen is ignored: port 0 on loopback).
pub async fn gateway(toml: &str) -> Gw {
    let config = countersign::kinds::from_toml(toml)
        .unwrap_or_else(|p| panic!("test config rejected: {p:#?}"));
    gateway_from(config).await
}

pub async fn gateway_from(config: countersign::kinds::Config) -> Gw {
    gateway_from_arc(countersign::server::gateway(config).unwrap()).await
}

/// Serves a gateway already built (after work a test does first).
pub async fn gateway_from_arc(gateway: Arc<Gateway>) -> Gw {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let g = gateway.clone();
    let join = tokio::spawn(async move {
        countersign::server::serve(g, listener, async {
            let _ = rx.await;
        })
        .await;
    });
    Gw {
        addr,
        gateway,
        stop: Some(tx),
        join: Some(join),
    }
}

/// A gateway config with one xrtc route `x` in front of `upstream`.
pub fn xrtc_toml(upstream: &str, state_dir: &std::path::Path, route_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
state_dir = "{}"
shutdown_grace = "2s"

[routes.x]
kind = "xrtc"
upstream = "{upstream}"
account_id = "{ACCOUNT}"
api_key = "{API_KEY}"
{route_extra}
"#,
        state_dir.display()
    )
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn error_code(&self) -> Option<&str> {
        self.headers.get("x-countersign-error")?.to_str().ok()
    }
}

pub async fn send(req: Request<Full<Bytes>>) -> Answer {
    let resp = tokio::time::timeout(Duration::from_secs(30), client().request(req))
        .await
        .expect("request did not finish in 30s")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn post(url: &str, body: &str) -> Answer {
    send(
        Request::post(url)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

/// A portal write through the gateway's route `x`.
pub async fn set_item(gw: &Gw, portal: &str, payload: &str) -> Answer {
    post(
        &gw.url("/x/v1/item/set"),
        &format!("{{items:[{{\"portalid\":\"{portal}\",\"payload\":\"{payload}\"}}]}}"),
    )
    .await
}

/// An address on loopback where nothing listens (bound, then released).
pub async fn refused_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A TCP server that accepts and then never answers; kept alive by the handle.
pub async fn silent_server() -> (SocketAddr, JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
            if held.len() > 64 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    (addr, h)
}

/// The real binary running a config, killed when dropped.
pub struct Process {
    pub child: std::process::Child,
    pub port: u16,
    pub log: std::path::PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Sends a signal by name (TERM, HUP, INT).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }
}

/// Writes `toml` (its `listen` replaced by a free loopback port) into `dir`,
/// starts `countersign run` on it with `RUST_LOG`, and waits for the port.
pub async fn spawn_binary(dir: &std::path::Path, toml: &str, rust_log: &str) -> Process {
    spawn_binary_with(dir, toml, rust_log, &[]).await
}

/// As [`spawn_binary`], with extra global flags (e.g. `--log-format json`).
pub async fn spawn_binary_with(
    dir: &std::path::Path,
    toml: &str,
    rust_log: &str,
    flags: &[&str],
) -> Process {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = toml.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let cfg = dir.join("countersign.toml");
    std::fs::write(&cfg, toml).unwrap();
    let log = dir.join("countersign.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(flags)
        .args(["run", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", rust_log)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Process { child, port, log };
    let started = std::time::Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gateway did not start: {}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p
}

/// Starts any fake whose `serve(listener, tls, shutdown)` has the common shape.
#[allow(unused_macros)] // each test file uses a different part of this
macro_rules! start_fake {
    ($fake:expr) => {{
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = $fake;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(fake.clone().serve(listener, None, async {
            let _ = rx.await;
        }));
        (addr, fake, tx)
    }};
}
#[allow(unused_imports)]
pub(crate) use start_fake;

/// A gateway config with one route `r` of any kind; `route` holds its keys.
pub fn route_toml(state_dir: &std::path::Path, route: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nshutdown_grace = \"2s\"\n\n[routes.r]\n{route}\n",
        state_dir.display()
    )
}

pub mod decoding_front;
pub mod py;
pub mod redis_server;

/// A TTS route (without its `[routes.x]` line) to the fake at `addr`, with
/// the fake's demo credentials; `extra` lines go at its end.
pub fn tts_route_toml(addr: std::net::SocketAddr, extra: &str) -> String {
    use countersign::fake::tts;
    format!(
        r#"kind = "tts"
upstream = "http://{addr}"
identifier = "{}"
client_ver = "V4.21.04"
email = "{}"
password = "{}"
access_key = "{}"
secret = "{}"
ip_address = "192.0.2.10"
login_interval = "300ms"
{extra}"#,
        tts::DEMO_IDENTIFIER,
        tts::DEMO_EMAIL,
        tts::DEMO_PASSWORD,
        tts::DEMO_ACCESS_KEY,
        tts::DEMO_SECRET,
    )
}
