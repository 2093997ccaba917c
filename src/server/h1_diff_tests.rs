//! The fast path's request-head parser against hyper's server, on a
//! corpus of published request-smuggling shapes and on generated and
//! mutated heads (proptest). The fast path may always decline a head
//! (`NotPlain`: hyper then serves it, so the two cannot disagree); what it
//! takes, hyper must take too, as the same request: method, target,
//! version, header fields (less the ones the fast path consumes) and body
//! framing; and what hyper refuses, the fast path must not take.
//!
//! Corpus sources (inputs only; no code): llhttp's `test/request/*.md`
//! (content-length, transfer-encoding, invalid), Go's
//! `net/http/readrequest_test.go` (reqTests, badRequestTests), and the
//! message-body-length rules of RFC 9112 §6.1–§6.3.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{parse, Parsed, MAX_BODY, MAX_HEAD, MAX_HEADERS};

/// What hyper's server made of the bytes.
#[derive(Debug)]
enum Oracle {
    /// The service was called with this request.
    Took(Seen),
    /// hyper answered with an error status itself (400, 431, 505, ...).
    Refused(#[allow(dead_code)] u16),
    /// hyper neither called the service nor answered (it waits for more).
    Waits,
}

#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    version: http::Version,
    headers: Vec<(String, Vec<u8>)>,
    /// The body's exact length as framed, if it has one (no chunked).
    exact: Option<u64>,
    /// What the service found wrong with it (RFC 9112 checks over hyper).
    refusal: bool,
}

/// Runs `bytes` (then end of input) through hyper's HTTP/1 server, set up
/// as countersign sets it up.
async fn hyper_server(bytes: &[u8]) -> Oracle {
    let (mut client, server) = tokio::io::duplex(256 * 1024);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Seen>(1);
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        async move {
            let seen = Seen {
                method: req.method().to_string(),
                target: req.uri().to_string(),
                version: req.version(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                    .collect(),
                exact: http_body::Body::size_hint(req.body()).exact(),
                refusal: super::super::service::refusal(&req).is_some(),
            };
            let _ = tx.send(seen).await;
            // Read what the body offers (bounded), as the pipeline would.
            let _ =
                tokio::time::timeout(Duration::from_millis(50), req.into_body().collect()).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(
                http_body_util::Empty::<Bytes>::new(),
            ))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // The input ends after the bytes: parse them, do not drop them.
        .half_close(true)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD)
        .serve_connection(hyper_util::rt::TokioIo::new(server), service);
    let driver = tokio::spawn(conn);
    let _ = client.write_all(bytes).await;
    let _ = client.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut out)).await;
    driver.abort();
    if std::env::var("DIFF_DEBUG").is_ok() {
        eprintln!(
            "driver: {:?} out: {:?}",
            driver.await,
            String::from_utf8_lossy(&out)
        );
    }
    if let Ok(seen) = rx.try_recv() {
        return Oracle::Took(seen);
    }
    match out
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
    {
        Some(status) => Oracle::Refused(status),
        None => Oracle::Waits,
    }
}

/// Checks one input; `Err` says how the two disagree.
fn agree(bytes: &[u8], rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let mut buf = BytesMut::from(bytes);
    let ours = parse(&mut buf, MAX_BODY);
    let theirs = rt.block_on(hyper_server(bytes));
    match (ours, theirs) {
        (Parsed::NotPlain, _) => Ok(()),
        (Parsed::Partial, Oracle::Waits) => Ok(()),
        (Parsed::Partial, other) => Err(format!("fast path waits for more; hyper: {other:?}")),
        (Parsed::Complete(h), Oracle::Took(seen)) => same_request(&h, &seen),
        (Parsed::Complete(h), other) => Err(format!(
            "fast path took {} {}; hyper: {other:?}",
            h.req.method(),
            h.req.uri()
        )),
    }
}

/// Names the fast path reads and keeps out of its map (`parse`).
fn consumed(name: &str, value: &[u8]) -> bool {
    match name {
        "host" | "content-length" | "keep-alive" => true,
        // Kept only when it lists names other than its own options.
        "connection" => crate::headers::tokens(value).all(|t| {
            t.is_empty()
                || t.eq_ignore_ascii_case(b"close")
                || t.eq_ignore_ascii_case(b"keep-alive")
        }),
        _ => false,
    }
}

fn same_request(h: &super::Head, seen: &Seen) -> Result<(), String> {
    let req = &h.req;
    let mut diffs = Vec::new();
    if req.method().as_str() != seen.method {
        diffs.push(format!("method {} vs {}", req.method(), seen.method));
    }
    if req.uri().to_string() != seen.target {
        diffs.push(format!("target {} vs {}", req.uri(), seen.target));
    }
    if req.version() != seen.version {
        diffs.push(format!("version {:?} vs {:?}", req.version(), seen.version));
    }
    let ours: Vec<(String, Vec<u8>)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let mut theirs: Vec<(String, Vec<u8>)> = seen
        .headers
        .iter()
        .filter(|(n, v)| !consumed(n, v))
        .cloned()
        .collect();
    let mut ours_sorted = ours.clone();
    ours_sorted.sort();
    theirs.sort();
    if ours_sorted != theirs {
        diffs.push(format!("headers {ours:?} vs {:?}", seen.headers));
    }
    if seen.exact != Some(h.body_len as u64) {
        diffs.push(format!("body length {} vs {:?}", h.body_len, seen.exact));
    }
    if seen.refusal {
        diffs.push("RFC 9112 refuses what the fast path took".into());
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Published shapes, each with CRLF line ends unless it says otherwise.
const CORPUS: &[&str] = &[
    // llhttp content-length.md
    "PUT /url HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc",
    "PUT /url HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\nOhai: world\r\n\r\nabc",
    "PUT /url HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000000\r\n\r\n",
    "PUT /url HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "PUT /url HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: identity\r\n\r\n",
    "PUT /url HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET /get_funky_content_length_body_hello HTTP/1.0\r\nconTENT-Length: 5\r\n\r\nHELLO",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  42 \r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4 2\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13 37\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
    "PUT /url HTTP/1.1\r\nHost: a\r\nContent\rLength: 003\r\n\r\nabc",
    // llhttp transfer-encoding.md
    "POST /first HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nContent-Length: 5\r\n\r\nhello",
    "PUT /url HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
    "PUT /url HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: pigeons\r\n\r\n",
    "POST /p?q=search#hey HTTP/1.1\r\nAccept: */*\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nWorld",
    "POST / HTTP/1.1\r\nHost: foo\r\nContent-Length: 10\r\nTransfer-Encoding:\r\nTransfer-Encoding:\r\nTransfer-Encoding:\r\n\r\n2\r\nAA\r\n0\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
    // llhttp invalid.md
    "GET /music/sweet/music ICE/1.0\r\nHost: example.com\r\n\r\n",
    "GET /music/sweet/music IHTTP/1.0\r\nHost: example.com\r\n\r\n",
    "PUT /music/sweet/music RTSP/1.0\r\nHost: example.com\r\n\r\n",
    "ANNOUNCE /music/sweet/music HTTP/1.0\r\nHost: example.com\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nFoo: 1\rBar: 2\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: localhost:5000\r\nx:x\nTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n",
    "GET / HTTP/1.1\r\nConnection: close\r\nHost: a\r\n\rZGET /evil: HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST / HTTP/1.1\r\nConnection: Close\r\nHost: localhost:5000\r\nx:\rTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: localhost:5000\r\nx:\nTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nFo@: Failure\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nFoo\x01\test: Bar\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n: Bar\r\n\r\n",
    "MKCOLA / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nname\r\n : value\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection\r\x1b5\u{d5}eep-Alive\r\nAccept-Encoding: gzip\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: localhost\r\nDummy: x\nContent-Length: 23\r\n\r\nGET / HTTP/1.1\r\nDummy: GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET / HTTP/5.6\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\n Host: foo\r\n\r\n",
    "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nTrailer: Baz\nFoo: abc\n\n1\nA\n0\n\n",
    "POST /hello HTTP/1.1\r\nHost: localhost\r\nFoo: bar\r\n Content-Length: 38\r\n\r\nGET /bye HTTP/1.1\r\nHost: localhost\r\n\r\n",
    // Go net/http readrequest_test.go
    "GET http://www.techcrunch.com/ HTTP/1.1\r\nHost: www.techcrunch.com\r\nUser-Agent: Fake\r\nKeep-Alive: 300\r\nContent-Length: 7\r\nProxy-Connection: keep-alive\r\n\r\nabcdef\n???",
    "GET / HTTP/1.1\r\nHost: foo.com\r\n\r\n",
    "GET //user@host/is/actually/a/path/ HTTP/1.1\r\nHost: test\r\n\r\n",
    "GET ../../../../etc/passwd HTTP/1.1\r\nHost: test\r\n\r\n",
    "GET  HTTP/1.1\r\nHost: test\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: foo.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 9999\r\n\r\n3\r\nfoo\r\n3\r\nbar\r\n0\r\n\r\n",
    "CONNECT www.google.com:443 HTTP/1.1\r\n\r\n",
    "CONNECT 127.0.0.1:6060 HTTP/1.1\r\n\r\n",
    "CONNECT /_goRPC_ HTTP/1.1\r\n\r\n",
    "NOTIFY * HTTP/1.1\r\nServer: foo\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\nServer: foo\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: issue8261.com\r\nConnection: close\r\n\r\n",
    "HEAD / HTTP/1.1\r\nHost: issue8261.com\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "CONNECT [] HTTP/1.0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
    "HEAD / HTTP/1.1\r\nHost: foo\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n1234",
    "HEAD / HTTP/1.1\r\n Host: foo\r\nContent-Length: 5\r\n\r\n",
    "HEAD / HTTP/1.1\r\n\tHost: foo\r\nContent-Length: 5\r\n\r\n",
    // RFC 9112 §3.2 and §6.1–6.3
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost:\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\0\r\n\r\nhello",
    "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
    "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
    "get / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
];

#[test]
fn the_published_smuggling_shapes_agree_with_hyper() {
    let rt = runtime();
    let mut failures = Vec::new();
    for raw in CORPUS {
        if let Err(e) = agree(raw.as_bytes(), &rt) {
            failures.push(format!("{raw:?}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Header lines a head is generated from: the framing and routing ones in
/// every spelling that matters, and plain ones.
fn header_line() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("Host"),
        Just("host"),
        Just("Content-Length"),
        Just("content-length"),
        Just("Transfer-Encoding"),
        Just("Connection"),
        Just("Keep-Alive"),
        Just("Expect"),
        Just("Upgrade"),
        Just("X-App"),
        Just("Accept"),
        Just("TE"),
    ];
    let value = prop_oneof![
        Just("g".to_string()),
        Just("".to_string()),
        Just("0".to_string()),
        Just("5".to_string()),
        Just("005".to_string()),
        Just("+5".to_string()),
        Just("-5".to_string()),
        Just("5, 5".to_string()),
        Just("5 5".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("chunked".to_string()),
        Just("chunked, chunked".to_string()),
        Just("gzip, chunked".to_string()),
        Just("identity".to_string()),
        Just("close".to_string()),
        Just("keep-alive".to_string()),
        Just("keep-alive, x-app".to_string()),
        Just("100-continue".to_string()),
        Just("h2c".to_string()),
        Just("[::1]:8080".to_string()),
        "[ -~]{0,12}",
    ];
    let sep = prop_oneof![Just(": "), Just(":"), Just(" : "), Just(":\t")];
    (name, sep, value).prop_map(|(n, s, v)| format!("{n}{s}{v}"))
}

/// An end-to-end header line of the kind a caller sends.
fn plain_line() -> impl Strategy<Value = String> {
    ("[A-Za-z][A-Za-z0-9-]{0,10}", "[!-~]([ -~]{0,16}[!-~])?")
        .prop_map(|(n, v)| format!("{n}: {v}"))
}

/// A request head (and some body bytes), mostly valid.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("HEAD"),
        Just("DELETE"),
        Just("PATCH"),
        Just("OPTIONS"),
        Just("CONNECT"),
        Just("M-SEARCH"),
    ];
    let target = prop_oneof![
        Just("/".to_string()),
        Just("/x/v1/item/get?a=1".to_string()),
        Just("*".to_string()),
        Just("http://evil/x".to_string()),
        Just("//double".to_string()),
        "/[a-z0-9%._~!$&'()*+,;=:@/?-]{0,20}",
    ];
    let version = prop_oneof![
        4 => Just("HTTP/1.1"),
        2 => Just("HTTP/1.0"),
        1 => Just("HTTP/1.2"),
        1 => Just("HTTP/2.0"),
        1 => Just("HTTP/0.9"),
    ];
    let eol = prop_oneof![8 => Just("\r\n"), 1 => Just("\n")];
    (
        method,
        target,
        version,
        proptest::collection::vec(prop_oneof![2 => plain_line(), 1 => header_line()], 0..6),
        // Most heads carry one plain Host somewhere, as callers send them.
        proptest::option::weighted(0.8, any::<prop::sample::Index>()),
        eol,
    )
        .prop_map(|(m, t, v, mut headers, host, eol)| {
            if let Some(at) = host {
                let i = at.index(headers.len() + 1);
                headers.insert(i, "Host: gw".to_string());
            }
            let mut s = format!("{m} {t} {v}{eol}");
            for h in headers {
                s.push_str(&h);
                s.push_str(eol);
            }
            s.push_str(eol);
            s.push_str("0123456789NEXT");
            s.into_bytes()
        })
}

/// A request, then a few byte-level mutations: insert, delete, replace
/// with a byte that matters to framing (CR, LF, NUL, space, tab, comma).
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        0usize..3,
        any::<prop::sample::Index>(),
        prop::sample::select(vec![b'\r', b'\n', 0, b' ', b'\t', b',', b':', b'a', 0xff]),
    );
    (request(), proptest::collection::vec(edit, 0..3)).prop_map(|(mut bytes, edits)| {
        for (kind, at, byte) in edits {
            let i = at.index(bytes.len().max(1)).min(bytes.len());
            match kind {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => {}
            }
        }
        bytes
    })
}

/// The generator is not vacuous: a good share of what it makes is taken
/// by the fast path (and so compared field by field), a good share not.
#[test]
fn the_generators_reach_both_sides_of_the_fast_path() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for (name, strategy, least) in [
        ("generated", request().boxed(), 100),
        ("mutated", mutated().boxed(), 20),
    ] {
        let mut taken = 0;
        for _ in 0..400 {
            let bytes = strategy.new_tree(&mut runner).unwrap().current();
            if matches!(
                parse(&mut BytesMut::from(&bytes[..]), MAX_BODY),
                Parsed::Complete(_)
            ) {
                taken += 1;
            }
        }
        eprintln!("{name}: {taken} of 400 taken by the fast path");
        assert!(
            (least..=360).contains(&taken),
            "{name}: {taken} of 400 taken"
        );
    }
}

fn cases() -> u32 {
    std::env::var("DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(384)
}

proptest! {
    // A CI-length run: a few hundred heads through both parsers, seconds
    // (DIFF_CASES=5000 for a longer one).
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_heads_agree_with_hyper(bytes in request()) {
        let rt = runtime();
        if let Err(e) = agree(&bytes, &rt) {
            prop_assert!(false, "{:?}: {}", String::from_utf8_lossy(&bytes), e);
        }
    }

    #[test]
    fn mutated_heads_agree_with_hyper(bytes in mutated()) {
        let rt = runtime();
        if let Err(e) = agree(&bytes, &rt) {
            prop_assert!(false, "{:?}: {}", String::from_utf8_lossy(&bytes), e);
        }
    }
}
