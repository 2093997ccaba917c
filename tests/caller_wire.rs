//! What a caller sees on the wire, pinned black-box: raw TCP callers write
//! exact bytes (pipelined, dribbled, HTTP/1.0, HEAD, Expect, chunked, huge,
//! malformed) and read each answer by hand, checking its framing, `date`
//! and `connection` headers and whether the connection stays usable. The
//! gateway's route `r` (utilsio with an `app_hash`: no login) forwards to a
//! raw upstream whose answer shape is picked by the path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, timeout};

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(5);
/// Any hex string is a valid utilsio HMAC key; the raw upstream checks nothing.
const APP_HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// --- The raw HTTP/1.x reader and writer, for both callers and the upstream ---

/// A message as read: its first line, headers (names lowercased), body, and
/// how the body was delimited (`length`, `chunked`, `close` or `none`).
#[derive(Clone, Debug)]
struct Msg {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: &'static str,
}

impl Msg {
    fn status(&self) -> u16 {
        self.line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
    fn all(&self, name: &str) -> Vec<&str> {
        let h = self.headers.iter().filter(|(n, _)| n == name);
        h.map(|(_, v)| v.as_str()).collect()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
    /// Whether a comma-separated header carries `token` (case-insensitive).
    fn has(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Request,
    Answer,
    AnswerToHead,
}

/// One end of a connection: what was read and not yet parsed stays in `buf`.
struct Wire {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn connect(addr: SocketAddr) -> Wire {
        let s = timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        s.set_nodelay(true).unwrap();
        Wire::new(s)
    }

    fn new(s: TcpStream) -> Wire {
        Wire { s, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        timeout(WAIT, self.s.write_all(bytes))
            .await
            .expect("write did not finish in time")
            .expect("write failed");
    }

    /// Reads more into `buf`; false at EOF or error.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(64 * 1024);
        matches!(self.s.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// Takes everything up to and including `pat`.
    async fn until(&mut self, pat: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(pat.len()).position(|w| w == pat) {
                return Some(self.buf.drain(..i + pat.len()).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// One whole message, unbounded in time; None if the peer closed first.
    async fn read(&mut self, kind: Kind) -> Option<Msg> {
        let raw = self.until(b"\r\n\r\n").await?;
        let text = String::from_utf8_lossy(&raw[..raw.len() - 4]).into_owned();
        let mut lines = text.split("\r\n");
        let line = lines.next()?.to_string();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let mut m = Msg {
            line,
            headers,
            body: Vec::new(),
            framing: "none",
        };
        let status = m.status();
        let bodiless = match kind {
            Kind::Request => false,
            Kind::AnswerToHead => true,
            Kind::Answer => (100..200).contains(&status) || status == 204 || status == 304,
        };
        if bodiless {
            return Some(m);
        }
        if m.has("transfer-encoding", "chunked") {
            m.framing = "chunked";
            loop {
                let size = String::from_utf8_lossy(&self.until(b"\r\n").await?).into_owned();
                let size = size.trim().split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {size:?} after {m:?}"));
                if size == 0 {
                    while self.until(b"\r\n").await? != b"\r\n" {}
                    return Some(m);
                }
                m.body.extend(self.take(size).await?);
                assert_eq!(self.take(2).await?, b"\r\n", "chunk not ended by CRLF");
            }
        } else if let Some(n) = m.header("content-length") {
            let n = n.parse().expect("content-length is a number");
            m.framing = "length";
            m.body = self.take(n).await?;
        } else if kind != Kind::Request {
            m.framing = "close";
            while self.fill().await {}
            m.body = std::mem::take(&mut self.buf);
        }
        Some(m)
    }

    /// The next answer, within [`WAIT`]; every final answer is checked for
    /// a valid `date` and unambiguous framing.
    async fn answer_as(&mut self, kind: Kind) -> Msg {
        let m = timeout(WAIT, self.read(kind))
            .await
            .expect("no whole answer within WAIT")
            .expect("the connection closed before a whole answer");
        if m.status() >= 200 {
            let dates = m.all("date");
            assert_eq!(dates.len(), 1, "one date header: {m:?}");
            let date = httpdate::parse_http_date(dates[0]).expect("date is an HTTP-date");
            let skew = SystemTime::now()
                .duration_since(date)
                .unwrap_or_else(|e| e.duration());
            assert!(skew < Duration::from_secs(60), "date is off by {skew:?}");
            let (cl, te) = (m.all("content-length"), m.all("transfer-encoding"));
            assert!(cl.len() + te.len() <= 1, "ambiguous framing: {m:?}");
        }
        m
    }

    async fn answer(&mut self) -> Msg {
        self.answer_as(Kind::Answer).await
    }

    /// How the connection looks within `within`: "eof", "reset", or "open"
    /// (nothing arrived); unexpected bytes fail the test.
    async fn state(&mut self, within: Duration) -> &'static str {
        assert!(self.buf.is_empty(), "unread bytes: {:?}", self.buf);
        let mut tmp = [0u8; 1024];
        match timeout(within, self.s.read(&mut tmp)).await {
            Err(_) => "open",
            Ok(Ok(0)) => "eof",
            Ok(Err(_)) => "reset",
            Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&tmp[..n])),
        }
    }
}

/// A request to route `r` tagged `n`: `extra` header lines (each ending in
/// CRLF) and a Content-Length body.
fn req(method: &str, path: &str, tag: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} /r{path}?deviceId=d1&n={tag} HTTP/1.1\r\nHost: gw\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn post(tag: &str, body: &str) -> Vec<u8> {
    req("POST", "/echo", tag, "", body.as_bytes())
}

/// What the upstream answers to a request tagged `tag` with `len` body bytes.
fn echo(tag: &str, len: usize) -> String {
    format!("n={tag} len={len}")
}

/// Asserts a 200 carrying the upstream's answer to `tag`.
fn assert_echo(m: &Msg, tag: &str, len: usize) {
    assert_eq!((m.status(), m.text()), (200, echo(tag, len)), "{m:?}");
}

// --- The upstream and the gateway ---

/// A raw HTTP/1.1 upstream answering `n=<tag> len=<body bytes>`, framed by the
/// path: `/chunked` chunked, `/close` delimited by its close, `/slow` after
/// 300 ms, `/headers` with end-to-end and hop-by-hop headers of its own and
/// a `Date` 30 s old,
/// anything else with a Content-Length. It records every request.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Msg>>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    fn seen(&self) -> Vec<Msg> {
        self.seen.lock().unwrap().clone()
    }
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new(); // aborted with this task
        while let Ok((stream, _)) = listener.accept().await {
            let seen = s.clone();
            conns.spawn(async move {
                let mut w = Wire::new(stream);
                while let Some(r) = w.read(Kind::Request).await {
                    let target = r.line.split(' ').nth(1).unwrap_or("").to_string();
                    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                    let tag = query.split('&').find_map(|p| p.strip_prefix("n="));
                    let body = echo(tag.unwrap_or("-"), r.body.len());
                    let head = r.line.starts_with("HEAD ");
                    seen.lock().unwrap().push(r);
                    let ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n";
                    let answer = match path {
                        "/chunked" => {
                            let (a, b) = body.split_at(4);
                            format!("{ok}Transfer-Encoding: chunked\r\n\r\n4\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", b.len())
                        }
                        "/close" => format!("{ok}Connection: close\r\n\r\n{body}"),
                        "/headers" => {
                            let date = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(30));
                            let h = format!("HTTP/1.1 200 OK\r\nX-Trace-ID: abc\r\nx-multi: one\r\nDate: {date}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Multi: two\r\nContent-Length: {}\r\n\r\n", body.len());
                            if head { h } else { h + &body }
                        }
                        _ if head => format!("{ok}Content-Length: {}\r\n\r\n", body.len()),
                        _ => format!("{ok}Content-Length: {}\r\n\r\n{body}", body.len()),
                    };
                    if path == "/slow" {
                        sleep(Duration::from_millis(300)).await;
                    }
                    if w.s.write_all(answer.as_bytes()).await.is_err() || path == "/close" {
                        let _ = w.s.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    Upstream { addr, seen, task }
}

/// A config whose route `r` forwards to `up`; request bodies up to 4 MiB.
fn config(up: &Upstream, state_dir: &std::path::Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nshutdown_grace = \"2s\"\nmax_body = \"4MiB\"\n\n\
         [routes.r]\nkind = \"utilsio\"\nupstream = \"http://{}\"\napp_id = \"wire\"\napp_hash = \"{APP_HASH}\"\n\
         connect_timeout = \"2s\"\nrequest_timeout = \"3s\"\n",
        state_dir.display(),
        up.addr
    )
}

async fn setup() -> (Upstream, Gw, tempfile::TempDir) {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config(&up, dir.path())).await;
    (up, gw, dir)
}

// --- Connection handling ---

#[tokio::test]
async fn three_pipelined_requests_in_one_write_are_answered_in_order() {
    let (_up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    let mut all = post("1", "a");
    all.extend(post("2", "bb"));
    all.extend(post("3", "ccc"));
    w.send(&all).await;
    for (tag, len) in [("1", 1), ("2", 2), ("3", 3)] {
        assert_echo(&w.answer().await, tag, len);
    }
    assert_eq!(w.state(Duration::from_millis(200)).await, "open");
}

#[tokio::test]
async fn a_request_dribbled_in_tiny_writes_is_answered() {
    let (up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    let r = post("drip", "0123456789abcdefghij");
    let head = r.windows(4).position(|x| x == b"\r\n\r\n").unwrap() + 4;
    for b in &r[..head] {
        w.send(&[*b]).await;
        sleep(Duration::from_millis(1)).await;
    }
    for piece in r[head..].chunks(3) {
        w.send(piece).await;
        sleep(Duration::from_millis(5)).await;
    }
    assert_echo(&w.answer().await, "drip", 20);
    assert_eq!(up.seen()[0].body, b"0123456789abcdefghij");
}

#[tokio::test]
async fn twenty_sequential_requests_share_one_keep_alive_connection() {
    let (up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    for i in 0..20 {
        w.send(&post(&i.to_string(), "body")).await;
        let a = w.answer().await;
        assert_echo(&a, &i.to_string(), 4);
        assert!(!a.has("connection", "close"), "{a:?}");
    }
    assert_eq!(w.state(Duration::from_millis(300)).await, "open");
    assert_eq!(up.seen().len(), 20);
}

#[tokio::test]
async fn connection_close_from_the_caller_is_answered_then_closed() {
    let (_up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    w.send(&req("POST", "/echo", "c", "Connection: close\r\n", b"x"))
        .await;
    let a = w.answer().await;
    assert_echo(&a, "c", 1);
    assert!(a.has("connection", "close"), "{a:?}");
    assert_eq!(w.state(WAIT).await, "eof");
}

#[tokio::test]
async fn http10_closes_unless_the_caller_asks_for_keep_alive() {
    let (_up, gw, _d) = setup().await;
    let plain = |tag: &str, extra: &str| {
        format!("POST /r/echo?deviceId=d1&n={tag} HTTP/1.0\r\nHost: gw\r\n{extra}Content-Length: 2\r\n\r\nhi")
    };
    let mut w = Wire::connect(gw.addr).await;
    w.send(plain("a", "").as_bytes()).await;
    let a = w.answer().await;
    assert_echo(&a, "a", 2);
    assert!(!a.has("connection", "keep-alive"), "{a:?}");
    assert_eq!(w.state(WAIT).await, "eof");

    let mut w = Wire::connect(gw.addr).await;
    for tag in ["k1", "k2"] {
        w.send(plain(tag, "Connection: keep-alive\r\n").as_bytes())
            .await;
        let a = w.answer().await;
        assert_echo(&a, tag, 2);
        assert!(a.has("connection", "keep-alive"), "{a:?}");
    }
    assert_eq!(w.state(Duration::from_millis(200)).await, "open");
}

#[tokio::test]
async fn a_head_answer_has_no_body_and_the_next_request_parses() {
    let (_up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    w.send(b"HEAD /r/echo?deviceId=d1&n=h HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    let a = w.answer_as(Kind::AnswerToHead).await;
    assert_eq!(a.status(), 200, "{a:?}");
    assert_eq!(a.header("content-length"), Some("9"), "the GET's: {a:?}");
    // No body bytes follow the head.
    assert_eq!(w.state(Duration::from_millis(200)).await, "open");
    w.send(&post("after", "xy")).await;
    assert_echo(&w.answer().await, "after", 2);
}

#[tokio::test]
async fn unsized_upstream_answers_are_framed_for_each_caller_version() {
    let (_up, gw, _d) = setup().await;
    // HTTP/1.1: chunked or sized, and the connection goes on.
    let mut w = Wire::connect(gw.addr).await;
    for path in ["/chunked", "/close", "/chunked"] {
        w.send(&req("POST", path, "u", "", b"abc")).await;
        let a = w.answer().await;
        assert_echo(&a, "u", 3);
        assert!(matches!(a.framing, "chunked" | "length"), "{a:?}");
        assert!(!a.has("connection", "close"), "{a:?}");
    }
    // HTTP/1.0, with and without keep-alive: delimited by the close.
    for extra in ["", "Connection: keep-alive\r\n"] {
        for path in ["/chunked", "/close"] {
            let mut w = Wire::connect(gw.addr).await;
            let r = format!("GET /r{path}?deviceId=d1&n=old HTTP/1.0\r\nHost: gw\r\n{extra}\r\n");
            w.send(r.as_bytes()).await;
            let a = w.answer().await;
            assert_echo(&a, "old", 0);
            assert_eq!(a.framing, "close", "{path} {extra:?}: {a:?}");
        }
    }
}

#[tokio::test]
async fn every_http11_answer_has_a_date_and_exactly_one_framing_header() {
    let (_up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    let requests = [
        post("1", "sized"),
        req("POST", "/chunked", "2", "", b"x"),
        req("POST", "/close", "3", "", b"x"),
        b"POST /nope/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"GET /r/echo HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(), // no deviceId: 400
    ];
    for r in requests {
        w.send(&r).await;
        let a = w.answer().await; // checks the date, and at most one framing header
        let framing = a.all("content-length").len() + a.all("transfer-encoding").len();
        assert_eq!(framing, 1, "{a:?}");
    }
}

#[tokio::test]
async fn a_countersign_error_keeps_the_connection_usable() {
    let (up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    w.send(b"POST /nope/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc")
        .await;
    let a = w.answer().await;
    assert_eq!(a.status(), 404, "{a:?}");
    assert_eq!(a.header("x-countersign-error"), Some("unknown_route"));
    assert!(a.text().contains("\"unknown_route\""), "{a:?}");
    assert!(!a.has("connection", "close"), "{a:?}");
    w.send(&post("next", "ok")).await;
    assert_echo(&w.answer().await, "next", 2);
    assert_eq!(up.seen().len(), 1);
}

// --- Request bodies and heads hyper takes over ---

#[tokio::test]
async fn expect_100_continue_gets_100_before_the_body_is_sent() {
    let (up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    let r = req("POST", "/echo", "e", "Expect: 100-continue\r\n", b"hello");
    let (head, body) = r.split_at(r.len() - 5);
    w.send(head).await;
    let a = w.answer().await;
    assert_eq!(a.status(), 100, "{a:?}");
    w.send(body).await;
    assert_echo(&w.answer().await, "e", 5);
    assert_eq!(up.seen()[0].body, b"hello");
    w.send(&post("after", "z")).await;
    assert_echo(&w.answer().await, "after", 1);
}

#[tokio::test]
async fn a_chunked_request_body_is_forwarded_whole() {
    let (up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    w.send(b"POST /r/echo?deviceId=d1&n=ch HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n").await;
    assert_echo(&w.answer().await, "ch", 11);
    assert_eq!(up.seen()[0].body, b"hello world");
    w.send(&post("after", "z")).await;
    assert_echo(&w.answer().await, "after", 1);
}

#[tokio::test]
async fn a_body_over_1_mib_reaches_the_upstream_whole() {
    let (up, gw, _d) = setup().await;
    let body: Vec<u8> = (0..1536 * 1024).map(|i| (i % 251) as u8).collect();
    let mut w = Wire::connect(gw.addr).await;
    w.send(&req("POST", "/echo", "big", "", &body)).await;
    assert_echo(&w.answer().await, "big", body.len());
    assert!(up.seen()[0].body == body, "the upstream got other bytes");
    w.send(&post("after", "z")).await;
    assert_echo(&w.answer().await, "after", 1);
}

#[tokio::test]
async fn a_malformed_request_line_gets_400_and_101_headers_get_431() {
    let (up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    w.send(b"POST /r/echo?deviceId=d1 HTTP/1.1 junk\r\nHost: gw\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(w.answer().await.status(), 400);
    assert_eq!(w.state(WAIT).await, "eof");

    let mut many = b"POST /r/echo?deviceId=d1 HTTP/1.1\r\nHost: gw\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut w = Wire::connect(gw.addr).await;
    w.send(&many).await;
    assert_eq!(w.answer().await.status(), 431);
    assert_eq!(w.state(WAIT).await, "eof");
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_content_length_with_a_sign_gets_400_and_close() {
    // RFC 9110 §8.6: Content-Length = 1*DIGIT; hyper refuses anything else.
    let (up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    w.send(b"POST /r/echo?deviceId=d1&n=s HTTP/1.1\r\nHost: gw\r\nContent-Length: +2\r\n\r\nhi")
        .await;
    let a = w.answer().await;
    assert_eq!(a.status(), 400, "{a:?}");
    assert_eq!(w.state(WAIT).await, "eof");
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_request_hyper_takes_after_plain_ones_on_the_same_connection() {
    let (up, gw, _d) = setup().await;
    let chunked = |tag: &str| {
        format!("POST /r/echo?deviceId=d1&n={tag} HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").into_bytes()
    };
    // One at a time: plain, chunked, plain, Expect.
    let mut w = Wire::connect(gw.addr).await;
    w.send(&post("1", "a")).await;
    assert_echo(&w.answer().await, "1", 1);
    w.send(&chunked("2")).await;
    assert_echo(&w.answer().await, "2", 3);
    w.send(&post("3", "ccc")).await;
    assert_echo(&w.answer().await, "3", 3);
    let expect = "Expect: 100-continue\r\n";
    w.send(&req("POST", "/echo", "4", expect, b"dd")).await;
    let mut a = w.answer().await;
    if a.status() == 100 {
        a = w.answer().await;
    }
    assert_echo(&a, "4", 2);
    // Pipelined: the chunked request is already in the buffer at hand-off.
    let mut w = Wire::connect(gw.addr).await;
    let mut all = post("p1", "a");
    all.extend(chunked("p2"));
    all.extend(post("p3", "bb"));
    w.send(&all).await;
    for (tag, len) in [("p1", 1), ("p2", 3), ("p3", 2)] {
        assert_echo(&w.answer().await, tag, len);
    }
    assert_eq!(w.state(Duration::from_millis(200)).await, "open");
    assert_eq!(up.seen().len(), 7);
}

// --- Shutdown and HTTP/2 ---

#[tokio::test]
async fn sigterm_closes_idle_connections_and_finishes_the_answer_in_flight() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = spawn_binary(dir.path(), &config(&up, &dir.path().join("s")), "info").await;
    let addr: SocketAddr = ([127, 0, 0, 1], gw.port).into();
    let mut idle = Wire::connect(addr).await;
    idle.send(&post("idle", "i")).await;
    assert_echo(&idle.answer().await, "idle", 1);
    let mut busy = Wire::connect(addr).await;
    busy.send(&req("POST", "/slow", "slow", "", b"abc")).await;
    // The slow request reached the upstream: it is in flight.
    let started = Instant::now();
    while up.seen().len() < 2 {
        assert!(started.elapsed() < WAIT, "the slow request never arrived");
        sleep(Duration::from_millis(5)).await;
    }
    gw.signal("TERM");
    let signalled = Instant::now();
    let a = busy.answer().await;
    assert_echo(&a, "slow", 3);
    assert!(a.has("connection", "close"), "{a:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(150),
        "too early"
    );
    assert_eq!(idle.state(Duration::from_secs(3)).await, "eof", "idle");
    assert_eq!(busy.state(Duration::from_secs(3)).await, "eof", "drained");
    loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "{}", gw.logs());
            break;
        }
        // shutdown_grace is 2 s.
        let running = signalled.elapsed();
        assert!(running < Duration::from_secs(3), "running: {}", gw.logs());
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served() {
    let (up, gw, _d) = setup().await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    for tag in ["h1", "h2"] {
        let req = http::Request::post(format!("http://{}/r/echo?deviceId=d1&n={tag}", gw.addr))
            .body(Full::new(Bytes::from_static(b"xyz")))
            .unwrap();
        let resp = timeout(WAIT, send.send_request(req)).await.unwrap();
        let (parts, body) = resp.unwrap().into_parts();
        assert_eq!(
            (parts.status.as_u16(), parts.version),
            (200, http::Version::HTTP_2)
        );
        let body = timeout(WAIT, body.collect()).await.unwrap().unwrap();
        assert_eq!(body.to_bytes(), echo(tag, 3).as_bytes());
    }
    assert_eq!(up.seen().len(), 2);
    drop(send);
    driver.abort();
}

#[tokio::test]
async fn the_upstreams_header_lines_reach_every_caller_once_without_its_framing() {
    let (_up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    let check = |a: &Msg, len: usize| {
        assert_eq!(a.status(), 200, "{a:?}");
        assert_eq!(a.all("x-trace-id"), ["abc"], "{a:?}");
        assert_eq!(a.all("x-multi"), ["one", "two"], "{a:?}");
        // `answer` checks there is one date; it is the upstream's.
        let date = httpdate::parse_http_date(a.all("date")[0]).unwrap();
        let age = SystemTime::now().duration_since(date).unwrap_or_default();
        assert!(
            age >= Duration::from_secs(20),
            "not the upstream's date: {a:?}"
        );
        assert!(a.all("keep-alive").is_empty(), "hop-by-hop: {a:?}");
        assert!(a.all("connection").is_empty(), "{a:?}");
        assert_eq!(a.all("content-length"), [len.to_string()], "{a:?}");
    };
    // The fast path writes the lines as they came.
    w.send(&req("POST", "/headers", "p", "", b"abc")).await;
    let a = w.answer().await;
    check(&a, echo("p", 3).len());
    assert_eq!(a.text(), echo("p", 3));
    // A HEAD answer keeps the upstream's length.
    w.send(&req("HEAD", "/headers", "h", "", b"")).await;
    let a = w.answer_as(Kind::AnswerToHead).await;
    check(&a, echo("h", 0).len());
    assert!(a.body.is_empty());
    // A chunked upload goes through hyper's server, which writes from a map.
    w.send(b"POST /r/headers?deviceId=d1&n=c HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n").await;
    let a = w.answer().await;
    check(&a, echo("c", 2).len());
    assert_eq!(a.text(), echo("c", 2));
}

#[tokio::test]
async fn hop_by_hop_and_listed_caller_headers_never_reach_the_upstream() {
    let (up, gw, _d) = setup().await;
    let mut w = Wire::connect(gw.addr).await;
    let hops =
        "Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Keep: 1\r\n";
    w.send(&req("POST", "/echo", "hop", hops, b"abc")).await;
    assert_echo(&w.answer().await, "hop", 3);
    // Options only: the connection stays open and nothing is listed.
    w.send(&req(
        "POST",
        "/echo",
        "opt",
        "Connection: keep-alive\r\n",
        b"z",
    ))
    .await;
    assert_echo(&w.answer().await, "opt", 1);
    let seen = up.seen();
    for r in &seen {
        for name in ["x-hop", "keep-alive", "connection"] {
            assert!(r.all(name).is_empty(), "{name} reached the upstream: {r:?}");
        }
        assert_eq!(r.all("host"), [up.addr.to_string()], "{r:?}");
        assert_eq!(r.all("content-length").len(), 1, "{r:?}");
    }
    assert_eq!(seen[0].all("x-keep"), ["1"]);
}
