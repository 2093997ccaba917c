//! Hostile input over raw TCP: countersign is not an open proxy, cannot be
//! walked out of a route, bounds request heads, drops slow callers, and
//! refuses request-smuggling shapes and header injection.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes, returns what came back until the server closed or 3 s passed.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

async fn setup() -> (FakeXrtc, Gw, tempfile::TempDir) {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "").replace(
        "shutdown_grace = \"2s\"",
        "shutdown_grace = \"2s\"\nheader_read_timeout = \"500ms\"",
    );
    let gw = gateway(&toml).await;
    (fake, gw, dir)
}

#[tokio::test]
async fn absolute_form_and_connect_are_refused() {
    let (fake, gw, _d) = setup().await;
    let a = raw(gw.addr, b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&a), 400, "{a}");
    assert!(a.contains("x-countersign-error: bad_request"), "{a}");
    assert!(a.contains("not an open proxy"), "{a}");
    // Even when the path names a real route.
    let a = raw(gw.addr, b"POST http://evil.example/x/v1/item/get HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&a), 400, "{a}");
    let a = raw(
        gw.addr,
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    )
    .await;
    assert_eq!(status(&a), 405, "{a}");
    assert!(a.contains("method_not_allowed"), "{a}");
    assert_eq!(fake.fake.stats().requests, 0);
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    // RFC 9112 §6.1, as hyper applies it: Transfer-Encoding wins, the
    // Content-Length is dropped, and the connection closes after the answer,
    // so the bytes after the chunked body are never read as a second request.
    let (fake, gw, _d) = setup().await;
    let a = raw(
        gw.addr,
        b"POST /x/v1/item/set HTTP/1.1\r\nHost: g\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /x/v1/item/get HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(a.matches("HTTP/1.1 ").count(), 1, "exactly one answer: {a}");
    let stats = fake.fake.stats();
    assert!(
        stats
            .recent
            .iter()
            .all(|r| r.path_and_query != "/v1/item/get"),
        "the smuggled request reached the upstream"
    );
    let set = stats
        .recent
        .iter()
        .find(|r| r.path_and_query == "/v1/item/set")
        .unwrap();
    assert_eq!(
        set.body.len(),
        0,
        "the chunked body (empty) was forwarded, not 60 bytes"
    );
}

#[tokio::test]
async fn header_injection_and_folding_are_refused_by_the_parser() {
    let (fake, gw, _d) = setup().await;
    // A bare CR inside a value, and an obsolete folded line.
    let a = raw(gw.addr, b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\nX-App: a\rInjected: 1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status(&a), 400, "{a}");
    let a = raw(gw.addr, b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\nX-App: a\r\n Injected: 1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status(&a), 400, "{a}");
    assert_eq!(fake.fake.stats().requests, 0);
}

#[tokio::test]
async fn oversize_heads_get_431() {
    let (fake, gw, _d) = setup().await;
    let mut many = b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\n".to_vec();
    for i in 0..150 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let a = raw(gw.addr, &many).await;
    assert_eq!(status(&a), 431, "{a}");
    let mut big = b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 80 * 1024));
    big.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    let a = raw(gw.addr, &big).await;
    assert_eq!(status(&a), 431, "{a}");
    assert_eq!(fake.fake.stats().requests, 0);
}

#[tokio::test]
async fn slow_callers_are_dropped_after_the_header_read_timeout() {
    let (_fake, gw, _d) = setup().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\n")
        .await
        .unwrap();
    // Trickle one byte every 100 ms, never finishing the head.
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            // EOF, or a 408 then EOF: either way the gateway gave up on us.
            closed = n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408");
            if closed {
                break;
            }
        }
    }
    assert!(
        closed,
        "connection still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_busy_connection_outlives_the_header_read_timeout_and_then_idles_out() {
    let (_fake, gw, _d) = setup().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let body = r#"{items:[{"portalid":"k","payload":"x"}]}"#;
    let request = format!(
        "POST /x/v1/item/set HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Eight requests 200 ms apart: 1.6 s on one connection whose every head
    // wait is far below the 500 ms limit.
    let started = Instant::now();
    let mut buf = Vec::new();
    for i in 0..8 {
        s.write_all(request.as_bytes()).await.unwrap();
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if buf.len() >= end + 4 + len {
                    assert_eq!(status(&text), 200, "request {i}: {text}");
                    buf.drain(..end + 4 + len);
                    break;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("request {i}: no answer"))
                .unwrap();
            assert!(n > 0, "request {i}: closed after {:?}", started.elapsed());
            buf.extend_from_slice(&chunk[..n]);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then quiet: closed about 500 ms after the last answer, not later.
    let quiet = Instant::now();
    let mut chunk = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut chunk))
        .await
        .expect("an idle connection was kept past the header read timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", &chunk[..n]);
    assert!(
        quiet.elapsed() < Duration::from_millis(1500),
        "{:?}",
        quiet.elapsed()
    );
}

#[tokio::test]
async fn the_client_token_is_never_forwarded() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[clients.billing]\ntoken = \"billing-token-0123456789\"\nroutes = [\"x\"]\n[clients.other]\ntoken = \"other-token-0123456789\"\nroutes = []\n",
        xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")
    );
    let gw = gateway(&toml).await;
    let body = r#"{items:[{"portalid":"c","payload":"x"}]}"#;
    let call = |token: Option<(&'static str, String)>| {
        let url = gw.url("/x/v1/item/set");
        async move {
            let mut req = http::Request::post(url);
            if let Some((h, v)) = token {
                req = req.header(h, v);
            }
            send(
                req.body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap(),
            )
            .await
        }
    };
    let a = call(None).await;
    assert_eq!(
        (a.status.as_u16(), a.error_code()),
        (401, Some("unauthorized_client"))
    );
    let a = call(Some(("authorization", "Bearer wrong".into()))).await;
    assert_eq!(a.status, 401);
    let a = call(Some((
        "authorization",
        "Bearer other-token-0123456789".into(),
    )))
    .await;
    assert_eq!(
        (a.status.as_u16(), a.error_code()),
        (403, Some("forbidden_route"))
    );
    let a = call(Some((
        "authorization",
        "Bearer billing-token-0123456789".into(),
    )))
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = call(Some((
        "x-countersign-token",
        "billing-token-0123456789".into(),
    )))
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    for rec in fake.fake.stats().recent {
        for (name, value) in rec.headers {
            assert!(
                !value.contains("billing-token"),
                "token forwarded in {name}"
            );
        }
    }
}

// --- Every wait bounded (issue 15) ---

/// The value of one series in the gateway's `/metrics` text (0 if absent).
fn metric(gw: &Gw, series: &str) -> f64 {
    gw.gateway
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A gateway with short bounds, in front of the fake XRTC.
async fn bounded(extra_server: &str) -> (FakeXrtc, Gw, tempfile::TempDir) {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "").replace(
        "shutdown_grace = \"2s\"",
        &format!("shutdown_grace = \"2s\"\nheader_read_timeout = \"5s\"\nbody_read_timeout = \"700ms\"\n{extra_server}"),
    );
    let gw = gateway(&toml).await;
    (fake, gw, dir)
}

/// Writes `head` and `body_part`, then waits (at most 5 s) for what comes
/// back until the gateway closes: the answer, and how long it took.
async fn stall(addr: std::net::SocketAddr, head: &[u8], body_part: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    s.write_all(head).await.unwrap();
    s.write_all(body_part).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        closed.is_ok(),
        "connection still held after 5 s: {:?}",
        String::from_utf8_lossy(&out)
    );
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_body_that_stops_short_of_its_length_gets_408_and_close_on_the_fast_path() {
    let (fake, gw, _d) = bounded("").await;
    // The fast path takes this head (a plain Content-Length request).
    let (a, took) = stall(
        gw.addr,
        b"POST /x/v1/item/set HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        b"{it",
    )
    .await;
    assert_eq!(status(&a), 408, "{a}");
    assert!(a.contains("x-countersign-error: body_timeout"), "{a}");
    assert!(a.to_ascii_lowercase().contains("connection: close"), "{a}");
    eprintln!("408 after {took:?} (body_read_timeout 700ms)");
    assert!(took >= Duration::from_millis(600), "cut early: {took:?}");
    assert_eq!(fake.fake.stats().requests, 0, "nothing went upstream");
    assert_eq!(
        metric(&gw, "countersign_cutoffs_total{reason=\"body_timeout\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_body_that_stops_short_gets_408_and_close_on_hypers_path_too() {
    let (fake, gw, _d) = bounded("").await;
    // `Expect` sends the request to hyper; so does a chunked body.
    let (a, _) = stall(
        gw.addr,
        b"POST /x/v1/item/set HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n",
        b"{it",
    )
    .await;
    assert!(a.contains(" 408 "), "{a}");
    assert!(a.contains("x-countersign-error: body_timeout"), "{a}");
    let (a, _) = stall(
        gw.addr,
        b"POST /x/v1/item/set HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\n{it",
    )
    .await;
    assert_eq!(status(&a), 408, "{a}");
    // A streamed (unbuffered) route: the body stalls on its way upstream;
    // the caller still gets its 408, and the upstream no complete request.
    let (a, _) = stall(
        gw.addr,
        b"POST /x/v1/auth/registrationstart HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"2\r\n{}\r\n",
    )
    .await;
    assert_eq!(status(&a), 408, "{a}");
    assert!(
        fake.fake.stats().recent.iter().all(|r| r.status != 200),
        "the upstream accepted none of it"
    );
    assert_eq!(
        metric(&gw, "countersign_cutoffs_total{reason=\"body_timeout\"}"),
        3.0
    );
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_cut_at_the_body_read_timeout() {
    let (fake, gw, _d) = bounded("").await;
    for head in [
        &b"POST /x/v1/item/set HTTP/1.1\r\nHost: g\r\nContent-Length: 100\r\n\r\n"[..],
        &b"POST /x/v1/item/set HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n"[..],
    ] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let started = Instant::now();
        s.write_all(head).await.unwrap();
        // One byte every 100 ms: each read is quick, the whole is not.
        let mut answer = Vec::new();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b"x").await.is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        let took = started.elapsed();
        eprintln!("trickled body cut after {took:?} (body_read_timeout 700ms)");
        let a = String::from_utf8_lossy(&answer);
        assert!(a.starts_with("HTTP/1.1 408"), "{a:?} after {took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
    }
    assert_eq!(fake.fake.stats().requests, 0);
}

#[tokio::test]
async fn rfc_9112_host_and_chunked_rules_are_a_400_on_both_paths() {
    let (fake, gw, _d) = setup().await;
    for (what, req) in [
        ("no Host", &b"POST /x/v1/item/get HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"[..]),
        (
            "two Host fields",
            b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\nHost: evil\r\nContent-Length: 2\r\n\r\n{}",
        ),
        (
            "a Host that is no host",
            b"POST /x/v1/item/get HTTP/1.1\r\nHost: g h\r\nContent-Length: 2\r\n\r\n{}",
        ),
        (
            "chunked, chunked",
            b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        ),
        (
            "two chunked fields",
            b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        ),
        (
            "two Host fields behind Expect (hyper's path)",
            b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
        ),
    ] {
        let a = raw(gw.addr, req).await;
        assert_eq!(status(&a), 400, "{what}: {a}");
        assert!(a.contains("x-countersign-error: bad_request"), "{what}: {a}");
        assert!(a.contains("RFC 9112"), "{what}: {a}");
        assert!(a.to_ascii_lowercase().contains("connection: close"), "{what}: {a}");
    }
    // HTTP/1.0 predates Host: still served.
    let a = raw(
        gw.addr,
        b"POST /x/v1/auth/registrationstart HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert!(!a.contains("RFC 9112") && a.contains("HTTP/1.1 "), "{a}");
    assert_eq!(
        fake.fake
            .stats()
            .recent
            .iter()
            .filter(|r| r.path_and_query.contains("item"))
            .count(),
        0
    );
    assert_eq!(
        metric(&gw, "countersign_cutoffs_total{reason=\"bad_framing\"}"),
        6.0
    );
}

#[tokio::test]
async fn a_slowloris_head_is_counted_and_an_idle_keep_alive_close_is_not() {
    let (_fake, gw, _d) = setup().await; // header_read_timeout 500ms
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"POST /x/v1/item/get HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    for s in [&mut idle, &mut slow] {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("closed within 3 s")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    assert_eq!(
        metric(&gw, "countersign_cutoffs_total{reason=\"header_timeout\"}"),
        1.0
    );
}
