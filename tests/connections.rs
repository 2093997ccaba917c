//! `server.max_connections`: at the cap the longest-idle keep-alive
//! connection is closed for a new one; a connection with a request in
//! flight never is, and with none idle a new caller waits; the count is
//! the process's, shared by the worker threads.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
const SET: &[u8] = b"POST /x/v1/item/set HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{items:[{\"portalid\":\"c\",\"payload\":\"x\"}]}";

/// Sends one request on `s` and reads its answer head and body (by
/// Content-Length): the status, or 0 if the connection closed first.
async fn exchange(s: &mut TcpStream, req: &[u8]) -> u16 {
    if s.write_all(req).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text[9..12].parse().unwrap();
            }
        }
        match timeout(WAIT, s.read(&mut chunk)).await {
            Err(_) => panic!("no whole answer within {WAIT:?}: {text:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return 0,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the gateway closed `s` within `within` (false: still open).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 256];
    match timeout(within, s.read(&mut b)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("unexpected bytes {:?}", String::from_utf8_lossy(&b[..n])),
    }
}

/// `n` keep-alive connections, each having made one request, oldest first.
async fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::new();
    for i in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(exchange(&mut s, SET).await, 200, "connection {i}");
        conns.push(s);
    }
    conns
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(-1.0)
}

async fn gateway_capped(max: usize) -> (FakeXrtc, Gw, tempfile::TempDir) {
    let fake = fake_xrtc(|c| c.rate_per_second = 1000).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        dir.path(),
        "rate_limit = { per_second = 1000, burst = 1000 }",
    )
    .replace(
        "shutdown_grace = \"2s\"",
        &format!(
            "shutdown_grace = \"2s\"\nmax_connections = {max}\nbody_read_timeout = \"1500ms\""
        ),
    );
    let gw = gateway(&toml).await;
    (fake, gw, dir)
}

#[tokio::test]
async fn at_the_cap_the_longest_idle_connection_makes_room() {
    let (_fake, gw, _d) = gateway_capped(4).await;
    let mut conns = idle_connections(gw.addr, 4).await;
    // The oldest goes idle again after a second request: the next oldest
    // (connection 1) is now the longest idle.
    assert_eq!(exchange(&mut conns[0], SET).await, 200);
    let mut new = TcpStream::connect(gw.addr).await.unwrap();
    assert_eq!(
        exchange(&mut new, SET).await,
        200,
        "the new caller is served"
    );
    assert!(
        closed_within(&mut conns[1], WAIT).await,
        "the longest-idle connection was closed for it"
    );
    for i in [0, 2, 3] {
        assert!(
            !closed_within(&mut conns[i], Duration::from_millis(200)).await,
            "connection {i} was closed too"
        );
    }
    let m = gw.gateway.metrics.encode();
    assert_eq!(
        metric(&m, "countersign_connections_evicted_total"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "countersign_connections_open"), 4.0, "{m}");
}

#[tokio::test]
async fn a_connection_with_a_request_in_flight_is_never_closed_to_make_room() {
    let (_fake, gw, _d) = gateway_capped(2).await;
    // Two callers with a request in flight (their bodies come slowly).
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"POST /x/v1/item/set HTTP/1.1\r\nHost: g\r\nContent-Length: 40\r\n\r\n{it")
            .await
            .unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut new = TcpStream::connect(gw.addr).await.unwrap();
    new.write_all(SET).await.unwrap();
    // None idle: the new caller waits (connected, in the accept queue).
    let mut b = [0u8; 64];
    assert!(
        timeout(Duration::from_millis(600), new.read(&mut b))
            .await
            .is_err(),
        "the new caller was served while both places were busy"
    );
    // The busy ones end by their own bound (408), never by the cap...
    for s in &mut busy {
        let mut out = Vec::new();
        timeout(WAIT, s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let a = String::from_utf8_lossy(&out);
        assert!(a.starts_with("HTTP/1.1 408"), "{a}");
    }
    // ...and then the waiting caller is served.
    let mut new = new;
    let mut buf = Vec::new();
    while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
        let n = timeout(WAIT, new.read(&mut b)).await.unwrap().unwrap();
        assert!(n > 0, "closed without an answer");
        buf.extend_from_slice(&b[..n]);
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let m = gw.gateway.metrics.encode();
    assert_eq!(
        metric(&m, "countersign_connections_evicted_total"),
        0.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_is_the_processes_across_worker_threads() {
    let fake = fake_xrtc(|c| c.rate_per_second = 1000).await;
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, admin) = (free(), free());
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        &dir.path().join("s"),
        "rate_limit = { per_second = 1000, burst = 1000 }",
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\"\nworkers = 3\nmax_connections = 3"),
    );
    let path = dir.path().join("countersign.toml");
    std::fs::write(&path, &toml).unwrap();
    let config = countersign::kinds::load(&path).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(countersign::server::run(config, path, async {
        let _ = stopped.await;
    }));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        assert!(started.elapsed() < WAIT, "run did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nine callers in turn over three workers' sockets: with a count per
    // worker none would be closed; with the process's, six are.
    let mut conns = idle_connections(addr, 9).await;
    let mut closed = 0;
    for s in &mut conns {
        if closed_within(s, Duration::from_millis(300)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 6, "connections closed for the cap");
    let m = send(
        http::Request::get(format!("http://127.0.0.1:{admin}/metrics"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
    .text();
    assert_eq!(metric(&m, "countersign_connections_open"), 3.0, "{m}");
    assert_eq!(
        metric(&m, "countersign_connections_evicted_total"),
        6.0,
        "{m}"
    );
    drop(conns);
    let _ = stop.send(());
    timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
