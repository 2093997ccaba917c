use super::*;
use crate::upstream::IdleConns;
use http::HeaderValue;
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;

fn head_of(raw: &str) -> io::Result<Option<Head>> {
    parse_head(&mut BytesMut::from(raw.as_bytes()))
}

fn complete(raw: &str) -> Head {
    match head_of(raw) {
        Ok(Some(h)) => h,
        other => panic!("{raw:?} did not parse: {:?}", other.err()),
    }
}

/// The head's end-to-end headers as a map, however they were kept.
fn map_of(head: &mut Head) -> HeaderMap {
    match head.raw.take() {
        Some(raw) => raw.into_map(),
        None => head.headers.clone(),
    }
}

/// What a plain head passes on to the caller, or `None` if it is not plain.
fn passed_on(raw: &str) -> Option<String> {
    let head = complete(raw);
    head.raw.map(|r| {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    })
}

#[test]
fn a_plain_head_passes_on_its_lines_less_the_framing() {
    let raw = "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 2\r\nX-B: 1\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n";
    assert_eq!(
        passed_on(raw).as_deref(),
        Some("Server: up\r\nX-B: 1\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n")
    );
    let mut head = complete(raw);
    assert!(head.raw.as_ref().is_some_and(|r| r.has_date));
    assert!(head.headers.is_empty(), "no map is built for a plain head");
    // Asked for, the map holds what the map path would have kept.
    let map = map_of(&mut head);
    let names: Vec<_> = map.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["server", "content-length", "x-b", "date"]);
    assert_eq!(map["content-length"], "2");
    // No header lines at all.
    assert_eq!(
        passed_on("HTTP/1.1 204 No Content\r\n\r\n").as_deref(),
        Some("")
    );
    assert_eq!(
        passed_on("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").as_deref(),
        Some("")
    );
}

#[test]
fn heads_something_reads_or_that_are_not_clean_crlf_get_a_map() {
    for raw in [
        // Read on the way back: session cookies, rate-limit state, hop-by-hop names.
        "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-ratelimit-remaining: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTrailer: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nProxy-Connection: close\r\n\r\n",
        // Not CRLF right after each value.
        "HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 0\n\n",
        "HTTP/1.1 200 OK\r\nX-A: 1  \r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\n",
        "HTTP/1.1 200 OK\r\nX-Empty:\r\n\r\n",
        // More framing lines than are tracked.
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 0\r\nConnection: keep-alive\r\nKeep-Alive: 1\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let head = complete(raw);
        assert!(head.raw.is_none(), "{raw:?} was taken as plain");
    }
    let mut head = complete("HTTP/1.1 200 OK\r\nX-Empty:\r\nSet-Cookie: a=1\r\n\r\n");
    let map = map_of(&mut head);
    assert_eq!(map["x-empty"], "");
    assert_eq!(map["set-cookie"], "a=1");
}

#[test]
fn a_head_is_parsed_and_the_rest_stays_buffered() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Multi: a\r\nX-Multi: b\r\nContent-Length: 5\r\n\r\nhello"[..],
    );
    let mut head = match parse_head(&mut buf) {
        Ok(Some(h)) => h,
        _ => panic!("no head"),
    };
    assert_eq!(head.status, StatusCode::CREATED);
    assert_eq!(head.version, Version::HTTP_11);
    let map = map_of(&mut head);
    assert_eq!(map["content-type"], "text/plain");
    let multi: Vec<_> = map.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    assert_eq!(head.framing(&Method::GET), Framing::Length(5));
    assert!(head.keeps_alive());
    assert_eq!(&buf[..], b"hello");
}

#[test]
fn a_partial_head_asks_for_more() {
    assert!(matches!(head_of("HTTP/1.1 200 OK\r\nContent-Le"), Ok(None)));
}

#[test]
fn framing_follows_rfc_9112_section_6_3() {
    let chunked = complete(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
    );
    assert_eq!(chunked.framing(&Method::GET), Framing::Chunked(Chunk::Size));
    let mut chunked = chunked;
    assert!(
        map_of(&mut chunked).get("transfer-encoding").is_none(),
        "the framing header is this hop's"
    );
    let not_chunked = complete("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert_eq!(not_chunked.framing(&Method::GET), Framing::Close);
    let bare = complete("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(bare.framing(&Method::GET), Framing::Close);
    let sized = complete("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
    assert_eq!(sized.framing(&Method::HEAD), Framing::Length(0));
    assert_eq!(sized.framing(&Method::GET), Framing::Length(1234));
    for status in ["204 No Content", "304 Not Modified"] {
        let h = complete(&format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n"));
        assert_eq!(h.framing(&Method::GET), Framing::Length(0), "{status}");
    }
    let repeated = complete("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n");
    assert_eq!(repeated.framing(&Method::GET), Framing::Length(7));
}

#[test]
fn bad_lengths_and_statuses_are_errors() {
    for raw in [
        "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        "HTTP/1.1 abc\r\n\r\n",
        "garbage\r\n\r\n",
    ] {
        assert!(head_of(raw).is_err(), "{raw:?} was accepted");
    }
}

#[test]
fn keep_alive_by_version_and_connection_tokens() {
    assert!(!complete("HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n").keeps_alive());
    assert!(!complete("HTTP/1.0 200 OK\r\n\r\n").keeps_alive());
    assert!(complete("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").keeps_alive());
    let h = complete("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n");
    assert!(h.keeps_alive());
    let mut h = h;
    assert!(map_of(&mut h).is_empty(), "hop-by-hop headers are consumed");
    // Other names listed stay for headers::strip_response to remove with them.
    let h = complete("HTTP/1.1 200 OK\r\nConnection: x-secret, close\r\nX-Secret: 1\r\n\r\n");
    assert!(!h.keeps_alive());
    assert!(h.headers.contains_key("connection"));
    // Both framings: chunked is read, the connection is not reused.
    let h = complete("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(h.framing(&Method::GET), Framing::Chunked(Chunk::Size));
    assert!(!h.keeps_alive());
    assert!(!complete("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n").keeps_alive());
}

/// Feeds `wire` to the chunked decoder `step` bytes at a time, as reads
/// would, and returns the body it decodes.
fn dechunk(wire: &[u8], step: usize) -> Result<Vec<u8>, &'static str> {
    let mut state = Chunk::Size;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        if let Chunk::Data(left) = state {
            if !buf.is_empty() {
                let n = (buf.len() as u64).min(left) as usize;
                out.extend_from_slice(&buf.split_to(n));
                state = if left == n as u64 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n as u64)
                };
                continue;
            }
        } else if !buf.is_empty() {
            match step_chunk(state, &mut buf)? {
                Some(Some(next)) => {
                    state = next;
                    continue;
                }
                Some(None) => return Ok(out),
                None => {}
            }
        }
        if fed == wire.len() {
            return Err("ran out of bytes");
        }
        let n = step.min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
    }
}

#[test]
fn chunked_bodies_decode_whatever_the_read_sizes() {
    let wire = b"5;ext=1\r\nhello\r\nA\r\n, chunked!\r\n0\r\nX-Trailer: t\r\n\r\n";
    for step in [1, 2, 3, 7, wire.len()] {
        assert_eq!(
            dechunk(wire, step).as_deref(),
            Ok(&b"hello, chunked!"[..]),
            "step {step}"
        );
    }
    assert!(
        dechunk(b"5\r\nhelloXX0\r\n\r\n", 4).is_err(),
        "no CRLF after data"
    );
    assert!(dechunk(b"zz\r\n", 4).is_err(), "size is not hex");
}

#[test]
fn the_request_is_framed_by_its_body() {
    let mut headers = HeaderMap::new();
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    headers.insert("x-sig", HeaderValue::from_static("abc"));
    let out = Outgoing {
        method: Method::POST,
        path_and_query: String::new(),
        headers: headers.clone(),
        body: Some(Bytes::from_static(b"{\"a\":1}")),
    };
    let e = encode(&out, "api.example:8443", "/v1/x?y=1");
    assert_eq!(
        String::from_utf8_lossy(&e.head),
        "POST /v1/x?y=1 HTTP/1.1\r\nhost: api.example:8443\r\nx-sig: abc\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
    );
    let get = Outgoing {
        method: Method::GET,
        path_and_query: String::new(),
        headers,
        body: None,
    };
    let e = encode(&get, "h", "/");
    assert_eq!(
        String::from_utf8_lossy(&e.head),
        "GET / HTTP/1.1\r\nhost: h\r\nx-sig: abc\r\n\r\n"
    );
    let big = Bytes::from(vec![b'x'; COPY_BODY_MAX + 1]);
    let post = Outgoing {
        method: Method::PUT,
        path_and_query: String::new(),
        headers: HeaderMap::new(),
        body: Some(big.clone()),
    };
    let e = encode(&post, "h", "/");
    assert!(String::from_utf8_lossy(&e.head).ends_with("content-length: 16385\r\n\r\n"));
    assert_eq!(
        e.body, big,
        "a large body is written beside the head, not copied"
    );
}

/// A one-connection upstream that answers each request with the next of `answers`.
async fn upstream(answers: Vec<&'static [u8]>) -> (Conn, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut served = 0;
        for answer in answers {
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return served;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).await.unwrap();
            served += 1;
        }
        served
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    (Conn::new(Stream::Tcp(tcp)), server)
}

fn get() -> Encoded {
    let out = Outgoing {
        method: Method::GET,
        path_and_query: String::new(),
        headers: HeaderMap::new(),
        body: None,
    };
    encode(&out, "127.0.0.1", "/")
}

#[tokio::test]
async fn a_connection_goes_back_idle_only_once_its_body_is_read() {
    let (conn, server) = upstream(vec![
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    ])
    .await;
    let idle = IdleConns::default();
    let resp = exchange(conn, &get(), idle.clone(), limits())
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the interim answer is skipped"
    );
    assert!(idle.take().is_none(), "still reading the body");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"abc");
    let conn = idle
        .take()
        .expect("back on the idle list at the body's end");
    assert!(conn.idle_since.is_some());
    let resp = exchange(conn, &get(), idle.clone(), limits())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hi");
    assert!(idle.take().is_none(), "Connection: close is not reused");
    assert_eq!(server.await.unwrap(), 2);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_not_an_end() {
    let (conn, _server) = upstream(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
    ])
    .await;
    let idle = IdleConns::default();
    let resp = exchange(conn, &get(), idle.clone(), limits())
        .await
        .unwrap();
    assert!(resp.into_body().collect().await.is_err());
    assert!(idle.take().is_none());
}

#[tokio::test]
async fn a_reused_connection_closed_before_answering_may_be_retried() {
    let (mut conn, server) = upstream(vec![]).await;
    assert_eq!(server.await.unwrap(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(!conn.is_usable(), "the upstream closed it");
    conn.idle_since = Some(Instant::now());
    let err = exchange(conn, &get(), IdleConns::default(), limits())
        .await
        .err()
        .expect("no answer");
    assert!(err.retryable, "{}", err.message);
}

fn limits() -> Limits {
    Limits {
        deadline: Instant::now() + std::time::Duration::from_secs(5),
        silence: std::time::Duration::from_secs(5),
    }
}
