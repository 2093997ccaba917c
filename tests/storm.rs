//! Service held under attack: the real binary serves legitimate calls on
//! one route while, in the same process, hundreds of slowloris heads,
//! stalled bodies, a flood of connections past `max_connections` and
//! callers of another route whose upstream stalls mid-body all hit it.
//! Legitimate calls keep at least 70 % of their throughput (completed
//! calls in equal windows with and without the storm, alternated so that
//! the shared machine's own noise falls on both) with no error, and the
//! gateway's RSS stays bounded and flat from one storm to the next.
//! `scripts/soak.sh` is the long version of this.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

const APP_HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const WINDOW: Duration = Duration::from_secs(2);
const LEGIT_CLIENTS: usize = 4;
/// Each legitimate client's pause between calls: an offered load (up to
/// ~800 calls/s) that leaves the shared machine's cores some slack, so the
/// windows compare service, not who wins the CPU.
const PACE: Duration = Duration::from_millis(4);
/// Above the slowloris and stalled callers (270, all with a request in
/// flight), below them plus the flood (600 more, silent): the flood goes
/// past the cap and makes room among itself.
const MAX_CONNECTIONS: usize = 400;

/// Runs `f` on a thread and runtime of its own, so that the attackers'
/// thousand tasks on the test's runtime do not queue in front of it.
fn own_thread<F>(f: impl FnOnce() -> F + Send + 'static) -> std::thread::JoinHandle<()>
where
    F: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
}

/// A raw upstream: `/stall…` gets a head and 10 of 1000 bytes, then
/// silence; anything else a small 200. Stopped on drop.
struct Upstream {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn upstream() -> Upstream {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = own_thread(move || async move {
        let l = TcpListener::from_std(std_listener).unwrap();
        let mut conns = JoinSet::new();
        tokio::pin!(stopped);
        loop {
            let mut s = tokio::select! {
                a = l.accept() => match a { Ok((s, _)) => s, Err(_) => break },
                _ = &mut stopped => break,
            };
            conns.spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let stall = buf.windows(6).any(|w| w == b"/stall");
                    buf.drain(..end);
                    if stall {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                            .await;
                        sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// What one call on a keep-alive connection got.
#[derive(PartialEq)]
enum Got {
    /// A whole 200; whether the connection may carry the next call (not
    /// after `connection: close`, as a client must honour).
    Ok(bool),
    /// The connection closed before any byte of an answer: the kept-alive
    /// connection was closed as the call went out (for `max_connections`).
    /// A client retries an idempotent call on a new connection
    /// (RFC 9112 §9.3.1), as browsers, Go and hyper do.
    ClosedUnanswered,
    Failed,
}

async fn call(s: &mut TcpStream, buf: &mut Vec<u8>) -> Got {
    if s.write_all(b"GET /legit/ping?deviceId=d1 HTTP/1.1\r\nHost: g\r\n\r\n")
        .await
        .is_err()
    {
        return Got::ClosedUnanswered;
    }
    let mut b = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: ")?.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let ok = head.starts_with("http/1.1 200");
                if !ok {
                    eprintln!("legit failure: {head:?}");
                }
                buf.drain(..end + 4 + len);
                return match ok {
                    true => Got::Ok(!head.contains("connection: close")),
                    false => Got::Failed,
                };
            }
        }
        match timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&b[..n]),
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => return Got::ClosedUnanswered,
            other => {
                eprintln!("legit failure: {other:?}");
                return Got::Failed;
            }
        }
    }
}

/// Legitimate callers, counting whole 200s and anything else.
struct Legit {
    done: Arc<AtomicUsize>,
    errors: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn legit(addr: SocketAddr) -> Legit {
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (d, e, r, st) = (done.clone(), errors.clone(), retries.clone(), stop.clone());
    let thread = own_thread(move || async move {
        let mut tasks = JoinSet::new();
        for _ in 0..LEGIT_CLIENTS {
            let (done, errors, retries, stop) = (d.clone(), e.clone(), r.clone(), st.clone());
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            tasks.spawn(async move {
                let mut buf = Vec::new();
                let mut retrying = false;
                while !stop.load(Ordering::Relaxed) {
                    let answer = call(&mut s, &mut buf).await;
                    match answer {
                        Got::Ok(_) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            retrying = false;
                        }
                        Got::ClosedUnanswered if !retrying => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            retrying = true;
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            retrying = false;
                        }
                    }
                    sleep(PACE).await;
                    if answer != Got::Ok(true) {
                        // A new connection: after a close, or so that one error
                        // does not end the count.
                        match TcpStream::connect(addr).await {
                            Ok(n) => s = n,
                            Err(_) => sleep(Duration::from_millis(50)).await,
                        }
                        buf.clear();
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    Legit {
        done,
        errors,
        retries,
        stop,
        thread: Some(thread),
    }
}

/// Calls completed in one window.
async fn window(l: &Legit) -> usize {
    let before = l.done.load(Ordering::Relaxed);
    sleep(WINDOW).await;
    l.done.load(Ordering::Relaxed) - before
}

/// The storm, until `stop`: each attacker reconnects when cut off.
fn storm(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let pace = Duration::from_millis(300);
    // Slowloris: a head begun, a byte now and then, never finished.
    for _ in 0..150 {
        let stop = stop.clone();
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    sleep(pace).await;
                    continue;
                };
                let _ = s
                    .write_all(b"GET /legit/ping HTTP/1.1\r\nHost: g\r\nX-Slow: ")
                    .await;
                while !stop.load(Ordering::Relaxed) && s.write_all(b"a").await.is_ok() {
                    sleep(pace).await;
                }
            }
        });
    }
    // Stalled bodies: 3 of 100 bytes, then nothing until cut.
    for _ in 0..100 {
        let stop = stop.clone();
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    sleep(pace).await;
                    continue;
                };
                let _ = s
                    .write_all(b"POST /legit/ping?deviceId=d1 HTTP/1.1\r\nHost: g\r\nContent-Length: 100\r\n\r\nabc")
                    .await;
                let mut b = [0u8; 512];
                let _ = timeout(Duration::from_secs(5), async {
                    while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
                })
                .await;
            }
        });
    }
    // Callers of the route whose upstream stalls mid-body.
    for _ in 0..20 {
        let stop = stop.clone();
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    sleep(pace).await;
                    continue;
                };
                let _ = s
                    .write_all(b"GET /stall/stall?deviceId=d1 HTTP/1.1\r\nHost: g\r\n\r\n")
                    .await;
                let mut b = [0u8; 512];
                let _ = timeout(Duration::from_secs(5), async {
                    while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
                })
                .await;
            }
        });
    }
    // A flood past max_connections: connections that say nothing.
    for _ in 0..4 {
        let stop = stop.clone();
        set.spawn(async move {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if held.len() < 150 {
                    if let Ok(Ok(s)) = timeout(pace, TcpStream::connect(addr)).await {
                        held.push(s);
                    }
                } else {
                    held.remove(0);
                }
                sleep(Duration::from_millis(5)).await;
            }
        });
    }
    set
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_calls_keep_their_throughput_through_a_storm() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let route = |name: &str| {
        format!(
            "[routes.{name}]\nkind = \"utilsio\"\nupstream = \"http://{}\"\napp_id = \"storm\"\napp_hash = \"{APP_HASH}\"\nread_timeout = \"1s\"\n",
            up.addr
        )
    };
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"{admin}\"\nstate_dir = \"{}\"\nshutdown_grace = \"1s\"\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\nmax_connections = {MAX_CONNECTIONS}\n\n{}\n{}",
        dir.path().join("state").display(),
        route("legit"),
        route("stall"),
    );
    let gw = spawn_binary(dir.path(), &toml, "warn").await;
    let addr: SocketAddr = format!("127.0.0.1:{}", gw.port).parse().unwrap();
    let pid = gw.child.id();
    let mut l = legit(addr);
    sleep(Duration::from_millis(500)).await; // warm: connections, pools
    let rss_start = rss_kib(pid);

    let (mut calm, mut stormy, mut rss_after) = (0, 0, Vec::new());
    for round in 0..2 {
        calm += window(&l).await;
        let stop = Arc::new(AtomicBool::new(false));
        let attackers = storm(addr, stop.clone());
        sleep(Duration::from_millis(1500)).await; // the storm builds up
        let errors_before = l.errors.load(Ordering::Relaxed);
        stormy += window(&l).await;
        assert_eq!(
            l.errors.load(Ordering::Relaxed),
            errors_before,
            "round {round}: legitimate calls failed under the storm"
        );
        stop.store(true, Ordering::Relaxed);
        rss_after.push(rss_kib(pid));
        drop(attackers); // aborts every attacker, closing its connections
        sleep(Duration::from_millis(1200)).await; // cut-offs fire, the storm drains
    }
    l.stop.store(true, Ordering::Relaxed);
    if let Some(t) = l.thread.take() {
        tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap();
    }
    let ratio = stormy as f64 / calm.max(1) as f64;
    eprintln!(
        "calm {calm}, storm {stormy} calls in {:?} each: {:.0} %; {} retried on a new connection; RSS {} KiB at start, {:?} KiB after each storm",
        WINDOW * 2,
        ratio * 100.0,
        l.retries.load(Ordering::Relaxed),
        rss_start,
        rss_after
    );
    assert_eq!(
        l.errors.load(Ordering::Relaxed),
        0,
        "legitimate calls failed"
    );
    assert!(calm > 50, "too few calls to judge: {calm}");
    assert!(
        ratio >= 0.7,
        "legitimate throughput fell to {:.0} %",
        ratio * 100.0
    );
    // Bounded (the binary's own rest size is ~20 MiB) and flat: the second
    // storm leaves no more behind than the first.
    assert!(rss_after.iter().all(|r| *r < 200 * 1024), "{rss_after:?}");
    assert!(
        rss_after[1] < rss_after[0] + rss_after[0] / 5 + 4096,
        "RSS grew from one storm to the next: {rss_after:?}"
    );
    // The storm did hit: every kind of cut-off was counted, and the flood
    // made room for itself.
    let m = send(
        http::Request::get(format!("http://{admin}/metrics"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
    .text();
    let value = |series: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    for reason in ["header_timeout", "body_timeout", "upstream_read_timeout"] {
        let n = value(&format!("countersign_cutoffs_total{{reason=\"{reason}\"}}"));
        eprintln!("cut-offs {reason}: {n}");
        assert!(n >= 10.0, "{reason}: {n}\n{m}");
    }
    let evicted = value("countersign_connections_evicted_total");
    eprintln!("closed for the cap: {evicted}");
    assert!(evicted >= 10.0, "{m}");
    assert!(value("countersign_connections_open") <= MAX_CONNECTIONS as f64);
    let logs = gw.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}
