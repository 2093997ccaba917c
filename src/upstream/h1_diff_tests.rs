//! The upstream client's answer-head parser against hyper's client, on a
//! corpus of published shapes and on generated and mutated answer heads
//! (proptest): both must accept or refuse the same heads, and agree on
//! status, version, end-to-end header fields and body framing (a length,
//! or chunked/close-delimited). Interim 1xx heads are skipped as
//! `exchange` skips them.
//!
//! Corpus sources (inputs only; no code): llhttp's `test/response/*.md`
//! (invalid, content-length, transfer-encoding), and the message-body
//! length rules of RFC 9112 §6.3 (HEAD, 1xx/204/304, Transfer-Encoding over
//! Content-Length, chunked not last, invalid or repeated lengths).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Version};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{parse_head, Framing};

#[derive(Debug)]
enum Oracle {
    Took(Answer),
    Refused(#[allow(dead_code)] String),
}

#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    /// Some(n) for a body of exactly n bytes; None for chunked or to close.
    exact: Option<u64>,
}

/// Headers that frame this hop: each side keeps or drops them its own way.
fn hop(name: &str) -> bool {
    matches!(name, "transfer-encoding" | "connection" | "keep-alive")
}

fn listed(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = map
        .iter()
        .filter(|(n, _)| !hop(n.as_str()))
        .map(|(n, val)| (n.as_str().to_string(), val.as_bytes().to_vec()))
        .collect();
    v.sort();
    v
}

/// hyper's client sends `method /` and reads `answer` (then end of input).
async fn hyper_client(answer: &[u8], method: Method) -> Oracle {
    let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
    let answer = answer.to_vec();
    let upstream = tokio::spawn(async move {
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match theirs.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&b[..n]),
            }
        }
        let _ = theirs.write_all(&answer).await;
        let _ = theirs.shutdown().await;
        // Hold the read side until the client is done.
        let _ = theirs.read(&mut b).await;
    });
    let handshake = hyper::client::conn::http1::Builder::new()
        .handshake::<_, http_body_util::Empty<Bytes>>(hyper_util::rt::TokioIo::new(ours))
        .await;
    let Ok((mut sender, conn)) = handshake else {
        return Oracle::Refused("handshake".into());
    };
    let driver = tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri("/")
        .header("host", "up")
        .body(http_body_util::Empty::new())
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), sender.send_request(req)).await;
    driver.abort();
    upstream.abort();
    match got {
        Err(_) => Oracle::Refused("no answer".into()),
        Ok(Err(e)) => Oracle::Refused(e.to_string()),
        Ok(Ok(resp)) => Oracle::Took(Answer {
            status: resp.status(),
            version: resp.version(),
            headers: listed(resp.headers()),
            exact: http_body::Body::size_hint(resp.body()).exact(),
        }),
    }
}

/// What `exchange` makes of the same bytes: heads parsed in turn, 1xx
/// (but 101) skipped; the input ending mid-head is a refusal.
fn ours(answer: &[u8], method: &Method) -> Result<Answer, String> {
    let mut buf = BytesMut::from(answer);
    loop {
        let mut head = match parse_head(&mut buf) {
            Ok(Some(h)) => h,
            Ok(None) => return Err("incomplete".into()),
            Err(e) => return Err(e.to_string()),
        };
        if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        if let Some(why) = head.faulty(method) {
            return Err(why.into());
        }
        let map = match head.raw.take() {
            Some(raw) => raw.into_map(),
            None => std::mem::take(&mut head.headers),
        };
        return Ok(Answer {
            status: head.status,
            version: head.version,
            headers: listed(&map),
            exact: match head.framing(method) {
                Framing::Length(n) => Some(n),
                Framing::Chunked(_) | Framing::Close => None,
            },
        });
    }
}

fn agree(answer: &[u8], method: Method, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let mine = ours(answer, &method);
    let theirs = rt.block_on(hyper_client(answer, method));
    match (mine, theirs) {
        (Ok(a), Oracle::Took(b)) if a == b => Ok(()),
        (Ok(a), Oracle::Took(b)) => Err(format!("ours {a:?}\nhyper {b:?}")),
        (Err(_), Oracle::Refused(_)) => Ok(()),
        (Ok(a), Oracle::Refused(e)) => Err(format!("ours took {a:?}; hyper refused: {e}")),
        (Err(_), Oracle::Took(b)) if ignored_length(answer, &b) => Ok(()),
        (Err(e), Oracle::Took(b)) => Err(format!("ours refused ({e}); hyper took {b:?}")),
    }
}

/// The one way ours may be stricter: a Content-Length that does not parse,
/// or disagrees with itself, is refused even where the framing does not
/// use it (`Transfer-Encoding` wins, or the status has no body), which
/// hyper ignores. RFC 9112 §6.3 lets a recipient treat both framings at
/// once as an error, and an invalid length as unrecoverable.
fn ignored_length(answer: &[u8], theirs: &Answer) -> bool {
    let text = String::from_utf8_lossy(answer).to_ascii_lowercase();
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let lengths: Vec<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("content-length:"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let invalid = lengths
        .iter()
        .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
        || lengths
            .windows(2)
            .any(|w| w[0].parse::<u64>().ok() != w[1].parse::<u64>().ok());
    let unused = head.contains("transfer-encoding:")
        || theirs.status.is_informational()
        || theirs.status == StatusCode::NO_CONTENT
        || theirs.status == StatusCode::NOT_MODIFIED
        || theirs.exact == Some(0);
    invalid && unused
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// (answer, method of the request it answers)
const CORPUS: &[(&str, &str)] = &[
    // llhttp response/invalid.md
    ("HTP/1.1 200 OK\r\n\r\n", "GET"),
    ("HTTP/01.1 200 OK\r\n\r\n", "GET"),
    ("HTTP/11.1 200 OK\r\n\r\n", "GET"),
    ("HTTP/1.01 200 OK\r\n\r\n", "GET"),
    ("HTTP/1.1\t200 OK\r\n\r\n", "GET"),
    ("\rHTTP/1.1\t200 OK\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nFoo: 1\rBar: 2\r\n\r\n", "GET"),
    ("HTTP/5.6 200 OK\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\n Host: foo\r\n\r\n", "GET"),
    ("HTTP/1.1  200 OK\r\n\r\n", "GET"),
    ("HTTP/1.1 200  OK\r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 2 OK\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\nContent-Length: 0\n\n", "GET"),
    ("HTTP/1.1 200 OK\nFoo: abc\nBar: def\n\nBODY\n", "GET"),
    // RFC 9112 §6.3
    ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HEAD"),
    ("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", "GET"),
    ("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", "GET"),
    ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET"),
    ("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz", "GET"),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxyz", "GET"),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000000\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 4 2\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\n\r\nto the close", "GET"),
    ("HTTP/1.0 200 OK\r\n\r\nto the close", "GET"),
    ("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 003\r\n\r\nabc", "GET"),
    ("HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nConnection: close, x-secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n", "GET"),
    ("HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n", "GET"),
];

#[test]
fn the_published_answer_shapes_agree_with_hyper() {
    let rt = runtime();
    let mut failures = Vec::new();
    for (raw, method) in CORPUS {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        if let Err(e) = agree(raw.as_bytes(), method, &rt) {
            failures.push(format!("{raw:?}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn answer() -> impl Strategy<Value = (Vec<u8>, Method)> {
    let version = prop_oneof![6 => Just("HTTP/1.1"), 2 => Just("HTTP/1.0"), 1 => Just("HTTP/1.2"), 1 => Just("HTTP/2")];
    let status = prop_oneof![
        Just("200 OK"),
        Just("201 Created"),
        Just("204 No Content"),
        Just("304 Not Modified"),
        Just("100 Continue"),
        Just("404 Not Found"),
        Just("502 Bad Gateway"),
        Just("200"),
        Just("20 OK"),
        Just("2000 OK"),
    ];
    let framing = prop_oneof![
        Just("Content-Length: 5"),
        Just("Content-Length: 0"),
        Just("Content-Length: 05"),
        Just("Content-Length: +5"),
        Just("Content-Length: 5, 5"),
        Just("Content-Length: 5, 6"),
        Just("Content-Length:"),
        Just("Transfer-Encoding: chunked"),
        Just("Transfer-Encoding: gzip, chunked"),
        Just("Transfer-Encoding: chunked, gzip"),
        Just("Transfer-Encoding: identity"),
        Just("Connection: close"),
        Just("Connection: keep-alive"),
        Just("Keep-Alive: timeout=5"),
        Just("Set-Cookie: s=1"),
        Just("Date: Tue, 01 Dec 2026 00:00:00 GMT"),
    ];
    let plain = ("[A-Za-z][A-Za-z0-9-]{0,10}", "[!-~]([ -~]{0,16}[!-~])?")
        .prop_map(|(n, v)| format!("{n}: {v}"));
    let line = prop_oneof![1 => framing.prop_map(str::to_string), 1 => plain];
    let eol = prop_oneof![8 => Just("\r\n"), 1 => Just("\n")];
    let method =
        prop_oneof![4 => Just(Method::GET), 1 => Just(Method::HEAD), 1 => Just(Method::POST)];
    (
        version,
        status,
        proptest::collection::vec(line, 0..5),
        eol,
        method,
    )
        .prop_map(|(v, s, lines, eol, method)| {
            let mut a = format!("{v} {s}{eol}");
            for l in lines {
                a.push_str(&l);
                a.push_str(eol);
            }
            a.push_str(eol);
            a.push_str("5\r\nhello\r\n0\r\n\r\n");
            (a.into_bytes(), method)
        })
}

fn mutated() -> impl Strategy<Value = (Vec<u8>, Method)> {
    let edit = (
        0usize..3,
        any::<prop::sample::Index>(),
        prop::sample::select(vec![b'\r', b'\n', 0, b' ', b'\t', b',', b':', b'a', 0xff]),
    );
    (answer(), proptest::collection::vec(edit, 0..3)).prop_map(|((mut bytes, m), edits)| {
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
        (bytes, m)
    })
}

/// The generators are not vacuous: a good share of their heads parse (and
/// so are compared field by field), a good share do not.
#[test]
fn the_generators_reach_both_sides_of_the_parser() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for (name, strategy, least) in [
        ("generated", answer().boxed(), 150),
        ("mutated", mutated().boxed(), 60),
    ] {
        let mut taken = 0;
        for _ in 0..400 {
            let (bytes, method) = strategy.new_tree(&mut runner).unwrap().current();
            taken += usize::from(ours(&bytes, &method).is_ok());
        }
        eprintln!("{name}: {taken} of 400 parsed");
        assert!(
            (least..=380).contains(&taken),
            "{name}: {taken} of 400 parsed"
        );
    }
}

fn cases() -> u32 {
    std::env::var("DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    // A CI-length run (DIFF_CASES=5000 for a longer one).
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_answers_agree_with_hyper((bytes, method) in answer()) {
        let rt = runtime();
        if let Err(e) = agree(&bytes, method.clone(), &rt) {
            prop_assert!(false, "{method} {:?}: {}", String::from_utf8_lossy(&bytes), e);
        }
    }

    #[test]
    fn mutated_answers_agree_with_hyper((bytes, method) in mutated()) {
        let rt = runtime();
        if let Err(e) = agree(&bytes, method.clone(), &rt) {
            prop_assert!(false, "{method} {:?}: {}", String::from_utf8_lossy(&bytes), e);
        }
    }
}
