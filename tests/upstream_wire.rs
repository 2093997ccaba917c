//! How the gateway speaks HTTP/1.1 to an upstream, pinned black-box: a
//! hand-written raw TCP upstream on loopback writes exact bytes (chunked with
//! extensions and trailers, close-delimited, dribbled, interim 1xx, bodiless
//! statuses, garbage, truncation) and records what it received and how many
//! connections it accepted. The route in front of it is a utilsio route with
//! an `app_hash` (no login, no scrypt, no rate limit; the raw upstream does
//! not check signatures); its request bodies are buffered, so they go upstream
//! with a Content-Length.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(5);
const APP_ID: &str = "wire";
/// Any hex string is a valid utilsio HMAC key; the raw upstream checks nothing.
const APP_HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// ---------------------------------------------------------------------------
// The raw upstream
// ---------------------------------------------------------------------------

/// A request head as the upstream read it (header names lowercased).
#[derive(Clone, Debug)]
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One request the upstream read whole.
#[derive(Clone, Debug)]
struct Received {
    /// Which accepted connection it came on (0-based, in accept order).
    conn: usize,
    head: Head,
    body: Vec<u8>,
}

/// What to do with the connection once a reply is written.
#[derive(Clone, Copy, Debug, Default)]
enum After {
    /// Read the next request on it.
    #[default]
    KeepAlive,
    /// Close it at once.
    Close,
    /// Say nothing more, wait, then close it (an idle keep-alive timeout).
    IdleTimeout(Duration),
}

/// The exact bytes to answer one request with.
#[derive(Default)]
struct Reply {
    /// Written in order, each with its own write call, `gap` apart.
    pieces: Vec<Vec<u8>>,
    gap: Duration,
    after: After,
    /// Answer right after the request head, then read (drain) its body.
    early: bool,
}

impl Reply {
    fn raw(bytes: impl AsRef<[u8]>) -> Reply {
        Reply {
            pieces: vec![bytes.as_ref().to_vec()],
            ..Default::default()
        }
    }
    /// The bytes cut into `size`-byte writes, `gap` apart.
    fn dribble(bytes: impl AsRef<[u8]>, size: usize, gap: Duration) -> Reply {
        Reply {
            pieces: bytes.as_ref().chunks(size).map(<[u8]>::to_vec).collect(),
            gap,
            ..Default::default()
        }
    }
    fn pieces(pieces: &[&[u8]], gap: Duration) -> Reply {
        Reply {
            pieces: pieces.iter().map(|p| p.to_vec()).collect(),
            gap,
            ..Default::default()
        }
    }
    /// Writes nothing.
    fn silence() -> Reply {
        Reply::default()
    }
    fn then(mut self, after: After) -> Reply {
        self.after = after;
        self
    }
    fn early(mut self) -> Reply {
        self.early = true;
        self
    }
}

/// A plain keep-alive 200 with a Content-Length.
fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Decides the reply to the `n`th request (0-based, over all connections).
type Script = dyn Fn(usize, &Head) -> Reply + Send + Sync;

#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    heads: AtomicUsize,
    received: Mutex<Vec<Received>>,
}

/// A scripted HTTP/1.1 server on loopback; dropping it closes the listener
/// and every connection it holds.
struct RawUpstream {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    fn accepted(&self) -> usize {
        self.seen.accepted.load(Ordering::SeqCst)
    }
    fn received(&self) -> Vec<Received> {
        self.seen.received.lock().unwrap().clone()
    }
}

async fn raw_upstream(
    script: impl Fn(usize, &Head) -> Reply + Send + Sync + 'static,
) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let script: Arc<Script> = Arc::new(script);
    let s = seen.clone();
    let task = tokio::spawn(async move {
        // Dropped (and so aborted) with the accept task.
        let mut conns = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let conn = s.accepted.fetch_add(1, Ordering::SeqCst);
            conns.spawn(serve_conn(stream, conn, s.clone(), script.clone()));
        }
    });
    RawUpstream { addr, seen, task }
}

async fn serve_conn(mut s: TcpStream, conn: usize, seen: Arc<Seen>, script: Arc<Script>) {
    let mut buf = Vec::new();
    loop {
        let Some(raw) = read_until(&mut s, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = parse_head(&raw);
        let n = seen.heads.fetch_add(1, Ordering::SeqCst);
        let reply = script(n, &head);
        if reply.early {
            write_reply(&mut s, &reply).await;
        }
        let body: Vec<u8> = timeout(WAIT, read_body(&mut s, &mut buf, &head))
            .await
            .unwrap_or_default();
        seen.received
            .lock()
            .unwrap()
            .push(Received { conn, head, body });
        if !reply.early {
            write_reply(&mut s, &reply).await;
        }
        match reply.after {
            After::KeepAlive => {}
            After::Close => {
                let _ = s.shutdown().await;
                return;
            }
            After::IdleTimeout(d) => {
                tokio::time::sleep(d).await;
                let _ = s.shutdown().await;
                return;
            }
        }
    }
}

async fn write_reply(s: &mut TcpStream, reply: &Reply) {
    for (i, piece) in reply.pieces.iter().enumerate() {
        if i > 0 && !reply.gap.is_zero() {
            tokio::time::sleep(reply.gap).await;
        }
        if s.write_all(piece).await.is_err() {
            return;
        }
        let _ = s.flush().await;
    }
}

/// Reads more into `buf`; false at EOF or error.
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 16 * 1024];
    match s.read(&mut tmp).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
    }
}

/// Takes everything up to and including `pat` out of `buf`, reading as needed.
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, pat: &[u8]) -> Option<Vec<u8>> {
    loop {
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            return Some(buf.drain(..i + pat.len()).collect());
        }
        if buf.len() > 64 * 1024 || !fill(s, buf).await {
            return None;
        }
    }
}

/// Takes `n` bytes out of `buf` (fewer if the peer closes first).
async fn read_n(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Vec<u8> {
    while buf.len() < n {
        if !fill(s, buf).await {
            break;
        }
    }
    let n = n.min(buf.len());
    buf.drain(..n).collect()
}

fn parse_head(raw: &[u8]) -> Head {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").splitn(3, ' ');
    let mut word = || first.next().unwrap_or("").to_string();
    let (method, target, version) = (word(), word(), word());
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    Head {
        method,
        target,
        version,
        headers,
    }
}

/// The request body by Content-Length, or chunked (so that a client sending
/// chunked shows up in the assertions rather than as a hang).
async fn read_body(s: &mut TcpStream, buf: &mut Vec<u8>, head: &Head) -> Vec<u8> {
    let chunked = head
        .all("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let Some(line) = read_until(s, buf, b"\r\n").await else {
                return body;
            };
            let line = String::from_utf8_lossy(&line);
            let size = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                // Trailer section, up to the empty line.
                while let Some(l) = read_until(s, buf, b"\r\n").await {
                    if l == b"\r\n" {
                        break;
                    }
                }
                return body;
            }
            body.extend(read_n(s, buf, size).await);
            let _ = read_n(s, buf, 2).await;
        }
    }
    let len = head
        .all("content-length")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    read_n(s, buf, len).await
}

// ---------------------------------------------------------------------------
// The gateway and its callers
// ---------------------------------------------------------------------------

/// A gateway whose route `r` (utilsio, no login) forwards to `up`.
async fn gateway_to(up: &RawUpstream) -> (Gw, tempfile::TempDir) {
    gateway_with(up, "").await
}

/// [`gateway_to`] with `extra` keys for the route.
async fn gateway_with(up: &RawUpstream, extra: &str) -> (Gw, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let route = format!(
        "kind = \"utilsio\"\nupstream = \"http://{}\"\napp_id = \"{APP_ID}\"\napp_hash = \"{APP_HASH}\"\nconnect_timeout = \"2s\"\nrequest_timeout = \"3s\"\n{extra}\n",
        up.addr
    );
    let gw = gateway(&route_toml(dir.path(), &route)).await;
    (gw, dir)
}

/// What the caller got: the head, and the body or why reading it failed.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Result<Bytes, String>,
}

impl Got {
    fn body(&self) -> &[u8] {
        match &self.body {
            Ok(b) => b,
            Err(e) => panic!("status {}: reading the body failed: {e}", self.status),
        }
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn error_code(&self) -> Option<&str> {
        self.header("x-countersign-error")
    }
}

/// One request through the gateway (a fresh caller connection each time);
/// panics if the head or the body takes longer than [`WAIT`].
async fn call(gw: &Gw, method: &str, path: &str, body: &str) -> Got {
    let req = Request::builder()
        .method(method)
        .uri(gw.url(path))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = timeout(WAIT, client().request(req))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer head within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{method} {path}: the gateway connection failed: {e}"));
    let (parts, body) = resp.into_parts();
    let body = timeout(WAIT, body.collect())
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: the body did not end within {WAIT:?}"))
        .map(|c| c.to_bytes())
        .map_err(|e| format!("{e:?}"));
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(gw: &Gw, tag: &str) -> Got {
    call(gw, "GET", &format!("/r/wire?deviceId=d1&n={tag}"), "").await
}

/// Waits (bounded) until the upstream has recorded `n` requests.
async fn until_received(up: &RawUpstream, n: usize) {
    let started = Instant::now();
    while up.received().len() < n {
        assert!(
            started.elapsed() < WAIT,
            "the upstream recorded {} requests, expected {n}",
            up.received().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// Response framing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn chunked_answer_with_extensions_and_trailers_reaches_the_caller_whole() {
    let chunked: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n\
        5\r\nhello\r\n\
        7;ext=1\r\n, world\r\n\
        A\r\n and more!\r\n\
        0\r\nX-Sum: 42\r\nX-Other: yes\r\n\r\n";
    let up = raw_upstream(move |n, _| match n {
        // Cut mid-chunk and mid-trailer, to be read across several reads.
        0 => Reply::dribble(chunked, 23, Duration::from_millis(5)),
        _ => Reply::raw(ok("after")),
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = get(&gw, "1").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "hello, world and more!");
    // The trailer section was consumed: the same connection carries the next answer.
    let b = get(&gw, "2").await;
    assert_eq!((b.status, b.text().as_str()), (StatusCode::OK, "after"));
    assert_eq!(
        up.accepted(),
        1,
        "the connection is reused after a chunked answer"
    );
}

#[tokio::test]
async fn answer_delimited_by_the_upstream_closing_reaches_the_caller_whole() {
    let up = raw_upstream(|n, _| match n {
        0 => Reply::pieces(
            &[
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
                b"alpha-",
                b"beta-",
                b"gamma",
            ],
            Duration::from_millis(20),
        )
        .then(After::Close),
        _ => Reply::raw(ok("next")),
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = get(&gw, "1").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "alpha-beta-gamma");
    let b = get(&gw, "2").await;
    assert_eq!((b.status, b.text().as_str()), (StatusCode::OK, "next"));
    assert_eq!(
        up.accepted(),
        2,
        "a close-delimited connection is never reused"
    );
}

#[tokio::test]
async fn content_length_answer_dribbled_in_small_pieces_arrives_intact() {
    let body: String = (0..40).map(|i| format!("line {i:02};")).collect();
    let whole = ok(&body);
    let up = raw_upstream(move |_, _| Reply::dribble(&whole, 7, Duration::from_millis(3))).await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = get(&gw, "1").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), body);
    assert_eq!(
        a.header("content-length"),
        Some(body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn an_8_mib_answer_arrives_byte_for_byte() {
    const SIZE: usize = 8 * 1024 * 1024;
    let body: Vec<u8> = (0..SIZE).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n"
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let up = raw_upstream(move |_, _| Reply::dribble(&answer, 64 * 1024, Duration::ZERO)).await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = get(&gw, "1").await;
    assert_eq!(a.status, 200);
    let got = a.body();
    assert_eq!(got.len(), SIZE);
    let first_diff = got.iter().zip(&body).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "the body differs from the upstream's");
}

#[tokio::test]
async fn an_interim_100_continue_is_skipped_and_the_final_answer_passes() {
    let up = raw_upstream(|n, _| match n {
        0 => Reply::pieces(
            &[
                b"HTTP/1.1 100 Continue\r\n\r\n",
                ok("final answer").as_bytes(),
            ],
            Duration::from_millis(30),
        ),
        _ => Reply::raw(ok("after")),
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = call(&gw, "POST", "/r/wire?deviceId=d1", "{\"k\":1}").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "final answer");
    let b = get(&gw, "2").await;
    assert_eq!((b.status, b.text().as_str()), (StatusCode::OK, "after"));
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn repeated_answer_headers_all_reach_the_caller() {
    let up = raw_upstream(|_, _| {
        Reply::raw(
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Multi: one\r\nSet-Cookie: b=2; Path=/\r\nX-Multi: two\r\nContent-Length: 2\r\n\r\nok",
        )
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = get(&gw, "1").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "ok");
    let all = |name: &str| -> Vec<String> {
        a.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(all("set-cookie"), ["a=1; Path=/", "b=2; Path=/"]);
    assert_eq!(all("x-multi"), ["one", "two"]);
}

// ---------------------------------------------------------------------------
// Bodiless answers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn head_answer_with_a_content_length_has_no_body_and_no_desync() {
    let up = raw_upstream(|_, head| {
        if head.method == "HEAD" {
            Reply::raw(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n",
            )
        } else {
            Reply::raw(ok("the get"))
        }
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let started = Instant::now();
    let a = call(&gw, "HEAD", "/r/wire?deviceId=d1", "").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "HEAD took {:?}",
        started.elapsed()
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("1234"));
    assert!(a.body().is_empty());

    let b = get(&gw, "2").await;
    assert_eq!((b.status, b.text().as_str()), (StatusCode::OK, "the get"));
    assert_eq!(up.accepted(), 1, "the connection is reused after HEAD");
    let methods: Vec<_> = up.received().into_iter().map(|r| r.head.method).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

#[tokio::test]
async fn answers_204_and_304_pass_without_a_body_and_the_next_answer_is_intact() {
    let up = raw_upstream(|n, _| match n {
        0 => Reply::raw("HTTP/1.1 204 No Content\r\nX-Kind: nothing\r\n\r\n"),
        // A 304's Content-Length describes the representation, not a body:
        // a client reading 5 bytes here would eat the next answer.
        1 => Reply::raw("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\n"),
        _ => Reply::raw(ok("third")),
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = get(&gw, "1").await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("x-kind"), Some("nothing"));
    assert!(a.body().is_empty());
    let b = get(&gw, "2").await;
    assert_eq!(b.status, 304);
    assert_eq!(b.header("etag"), Some("\"v1\""));
    assert!(b.body().is_empty());
    let c = get(&gw, "3").await;
    assert_eq!((c.status, c.text().as_str()), (StatusCode::OK, "third"));
    assert_eq!(up.accepted(), 1, "one connection carried all three");
}

// ---------------------------------------------------------------------------
// Connection reuse and closing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sequential_requests_reuse_one_keep_alive_connection() {
    let up = raw_upstream(|n, _| Reply::raw(ok(&format!("answer {n}")))).await;
    let (gw, _dir) = gateway_to(&up).await;

    for i in 0..5 {
        let a = get(&gw, &i.to_string()).await;
        assert_eq!(
            (a.status, a.text()),
            (StatusCode::OK, format!("answer {i}"))
        );
    }
    assert_eq!(up.accepted(), 1);
    let got = up.received();
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|r| r.conn == 0));
}

#[tokio::test]
async fn an_answer_with_connection_close_is_followed_by_a_new_connection() {
    let up = raw_upstream(|n, _| match n {
        0 => Reply::raw("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nfirst")
            .then(After::Close),
        _ => Reply::raw(ok("second")),
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = get(&gw, "1").await;
    assert_eq!((a.status, a.text().as_str()), (StatusCode::OK, "first"));
    // Hop-by-hop: the upstream's Connection header is not the caller's.
    assert!(
        !a.header("connection").unwrap_or("").contains("close"),
        "{:?}",
        a.headers
    );
    let b = get(&gw, "2").await;
    assert_eq!((b.status, b.text().as_str()), (StatusCode::OK, "second"));
    assert_eq!(up.accepted(), 2);
    let conns: Vec<_> = up.received().iter().map(|r| r.conn).collect();
    assert_eq!(conns, [0, 1]);
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_silently_is_not_used_again() {
    let up = raw_upstream(|n, _| match n {
        // No `Connection: close`: the upstream's idle timeout fires later.
        0 => Reply::raw(ok("first")).then(After::IdleTimeout(Duration::from_millis(100))),
        _ => Reply::raw(ok("second")),
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = get(&gw, "first").await;
    assert_eq!((a.status, a.text().as_str()), (StatusCode::OK, "first"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = get(&gw, "second").await;
    assert_eq!((b.status, b.text().as_str()), (StatusCode::OK, "second"));

    let got = up.received();
    assert_eq!(got.len(), 2, "{got:#?}");
    let second = got
        .iter()
        .filter(|r| r.head.target.contains("n=second"))
        .count();
    assert_eq!(
        second, 1,
        "the second request reached the upstream exactly once"
    );
    assert_eq!(up.accepted(), 2);
}

// ---------------------------------------------------------------------------
// Broken upstreams
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_malformed_status_line_is_a_502_upstream_unreachable_without_a_hang() {
    for garbage in [
        &b"HTTP/1.1 abc\r\n\r\n"[..],
        &b"\x16\x03\x01 this is not HTTP at all\r\n\r\n"[..],
    ] {
        let up = raw_upstream(move |_, _| Reply::raw(garbage).then(After::Close)).await;
        let (gw, _dir) = gateway_to(&up).await;
        let started = Instant::now();
        let a = get(&gw, "1").await;
        assert_eq!(
            a.status,
            502,
            "{:?}: {}",
            String::from_utf8_lossy(garbage),
            a.text()
        );
        assert_eq!(a.error_code(), Some("upstream_unreachable"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(up.received().len(), 1, "not retried");
    }
}

#[tokio::test]
async fn a_body_cut_short_of_its_content_length_is_not_delivered_as_complete() {
    let up = raw_upstream(|_, _| {
        Reply::pieces(
            &[
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                b"0123456789",
            ],
            Duration::from_millis(20),
        )
        .then(After::Close)
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let started = Instant::now();
    // `call` panics if the head or the body hangs past WAIT.
    let a = call(&gw, "GET", "/r/wire?deviceId=d1", "").await;
    assert!(started.elapsed() < WAIT);
    match &a.body {
        // Today: the 200 head with Content-Length: 100 is already out, then
        // the caller's connection is cut, so reading the body errors.
        Err(_) => {}
        Ok(b) if a.status == 200 && b.len() == 100 => {
            panic!("a truncated upstream body reached the caller as a clean 100-byte 200")
        }
        // A short body that ends cleanly (re-framed as chunked) would be a
        // silent truncation: the caller could not tell it from a whole answer.
        Ok(b) if a.status == 200 => panic!(
            "the caller got a clean {}-byte 200 and cannot tell it was cut ({:?})",
            b.len(),
            a.headers
        ),
        // An error status (a client that buffers could answer 502) is honest too.
        Ok(_) => {}
    }
}

#[tokio::test]
async fn a_request_read_but_never_answered_is_a_502_and_is_not_replayed() {
    let up = raw_upstream(|n, _| match n {
        // Read the whole request, then hang up without a byte.
        0 => Reply::silence().then(After::Close),
        _ => Reply::raw(ok("a replay")),
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let a = call(&gw, "POST", "/r/wire?deviceId=d1", "{\"charge\":1}").await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(a.error_code(), Some("upstream_unreachable"));
    // Give a would-be replay time to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        up.received().len(),
        1,
        "a POST the upstream may have acted on is never sent twice"
    );
}

#[tokio::test]
async fn an_answer_sent_before_the_request_body_was_read_reaches_the_caller() {
    let up = raw_upstream(|_, _| {
        Reply::raw("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nearly")
            .then(After::Close)
            .early()
    })
    .await;
    let (gw, _dir) = gateway_to(&up).await;

    let body = "x".repeat(256 * 1024);
    let a = call(&gw, "POST", "/r/wire?deviceId=d1", &body).await;
    assert_eq!((a.status, a.text().as_str()), (StatusCode::OK, "early"));
}

// ---------------------------------------------------------------------------
// What the upstream receives
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_upstream_receives_origin_form_host_and_one_exact_content_length() {
    let up = raw_upstream(|n, _| Reply::raw(ok(&format!("r{n}")))).await;
    let (gw, _dir) = gateway_to(&up).await;
    let authority = up.addr.to_string();

    let body = "{\"payload\":\"some bytes\"}";
    let a = call(&gw, "POST", "/r/items?deviceId=d1", body).await;
    assert_eq!(a.status, 200);
    let b = call(&gw, "GET", "/r/items?deviceId=d1", "").await;
    assert_eq!(b.status, 200);
    // A caller sending chunked: the buffered body still goes with a length.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /r/items?deviceId=d1 HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    until_received(&up, 3).await;
    let got = up.received();
    let [post, get, chunked] = &got[..] else {
        panic!("{got:#?}")
    };
    for r in &got {
        assert_eq!(r.head.version, "HTTP/1.1", "{r:#?}");
        assert_eq!(r.head.all("host"), [authority.as_str()], "{r:#?}");
        assert!(r.head.all("transfer-encoding").is_empty(), "{r:#?}");
        assert!(
            r.head.target.starts_with("/items?"),
            "origin-form, not absolute-form: {r:#?}"
        );
        assert!(r.head.target.contains(&format!("appId={APP_ID}")), "{r:#?}");
    }
    assert_eq!(post.head.method, "POST");
    assert_eq!(
        post.head.all("content-length"),
        [body.len().to_string().as_str()]
    );
    assert_eq!(post.body, body.as_bytes());

    assert_eq!(get.head.method, "GET");
    assert!(get.body.is_empty());
    assert!(
        matches!(get.head.all("content-length")[..], [] | ["0"]),
        "{get:#?}"
    );

    assert_eq!(chunked.head.all("content-length"), ["7"]);
    assert_eq!(chunked.body, b"abcdefg");
}

// ---------------------------------------------------------------------------
// Silent upstreams (read_timeout)
// ---------------------------------------------------------------------------

/// The value of one series in the gateway's `/metrics` text (0 if absent).
fn metric(gw: &Gw, series: &str) -> f64 {
    gw.gateway
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

const READ_CUTS: &str = "countersign_cutoffs_total{reason=\"upstream_read_timeout\"}";

#[tokio::test]
async fn an_upstream_silent_before_its_head_is_a_504_at_the_read_timeout() {
    // request_timeout is 3 s; the silence bound is shorter and wins.
    let up = raw_upstream(|_, _| Reply::silence().then(After::IdleTimeout(WAIT))).await;
    let (gw, _dir) = gateway_with(&up, "read_timeout = \"300ms\"").await;
    let started = Instant::now();
    let a = get(&gw, "1").await;
    let took = started.elapsed();
    eprintln!("504 after {took:?} (read_timeout 300ms)");
    assert_eq!(a.status, 504, "{}", a.text());
    assert_eq!(a.error_code(), Some("upstream_timeout"));
    assert!(a.text().contains("read_timeout"), "{}", a.text());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert_eq!(metric(&gw, READ_CUTS), 1.0);
}

/// An upstream that sends `head` and `part` of the body, then is silent
/// (the connection open) for longer than any test waits.
async fn stalls_mid_body(head: &'static [u8], part: &'static [u8]) -> RawUpstream {
    raw_upstream(move |_, _| {
        Reply::pieces(&[head, part], Duration::from_millis(20)).then(After::IdleTimeout(WAIT * 2))
    })
    .await
}

#[tokio::test]
async fn an_upstream_silent_mid_body_cuts_the_callers_answer_short() {
    for (head, part) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"[..],
            &b"0123456789"[..],
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"a\r\n0123456789\r\n",
        ),
    ] {
        let up = stalls_mid_body(head, part).await;
        let (gw, _dir) = gateway_with(&up, "read_timeout = \"400ms\"").await;
        let started = Instant::now();
        // `call` panics if the body hangs past WAIT.
        let a = call(&gw, "GET", "/r/wire?deviceId=d1", "").await;
        let took = started.elapsed();
        eprintln!("answer cut after {took:?} (read_timeout 400ms)");
        assert_eq!(a.status, 200);
        assert!(
            a.body.is_err(),
            "a short body passed off as whole: {:?}",
            a.body
        );
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_secs(4),
            "{took:?}"
        );
        assert_eq!(metric(&gw, READ_CUTS), 1.0);
    }
}

#[tokio::test]
async fn a_cut_answer_is_truncated_on_hypers_path_and_for_http10_callers_too() {
    let up = stalls_mid_body(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        b"0123456789",
    )
    .await;
    let (gw, _dir) = gateway_with(&up, "read_timeout = \"300ms\"").await;
    for req in [
        // `Expect` hands the connection to hyper, which writes the answer.
        &b"GET /r/wire?deviceId=d1 HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n"[..],
        b"GET /r/wire?deviceId=d1 HTTP/1.0\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut out = Vec::new();
        timeout(WAIT, s.read_to_end(&mut out))
            .await
            .expect("the cut answer's connection was not closed")
            .ok();
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        assert!(head.starts_with("HTTP/1.1 200"), "{text}");
        assert!(head.to_ascii_lowercase().contains("content-length: 100"), "{text}");
        assert_eq!(body, "0123456789", "closed before the declared length");
    }
}
