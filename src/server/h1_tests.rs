use super::*;

fn parsed(raw: &str) -> (Parsed, BytesMut) {
    let mut buf = BytesMut::from(raw.as_bytes());
    (parse(&mut buf, MAX_BODY), buf)
}

fn head(raw: &str) -> (Head, BytesMut) {
    match parsed(raw) {
        (Parsed::Complete(h), rest) => (h, rest),
        _ => panic!("{raw:?} was not taken by the fast path"),
    }
}

#[test]
fn a_plain_request_is_taken_and_its_body_left_in_the_buffer() {
    let (h, rest) = head(
        "POST /x/v1/item/set?a=1 HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\nX-Multi: a\r\nX-Multi: b\r\n\r\nbodyNEXT",
    );
    assert_eq!(h.req.method(), Method::POST);
    assert_eq!(h.req.uri().path(), "/x/v1/item/set");
    assert_eq!(h.req.uri().query(), Some("a=1"));
    assert_eq!(h.req.version(), Version::HTTP_11);
    let multi: Vec<_> = h.req.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    // Read here, and dropped before signing anyway: not in the map.
    assert!(!h.req.headers().contains_key("host"));
    assert!(!h.req.headers().contains_key("content-length"));
    assert_eq!(h.body_len, 4);
    assert!(h.keep_alive);
    assert_eq!(&rest[..], b"bodyNEXT");
}

#[test]
fn keep_alive_follows_the_version_and_connection_tokens() {
    assert!(
        !head("GET / HTTP/1.1\r\nHost: g\r\nConnection: Close\r\n\r\n")
            .0
            .keep_alive
    );
    assert!(!head("GET / HTTP/1.0\r\n\r\n").0.keep_alive);
    assert!(
        head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .0
            .keep_alive
    );
    let (h, _) = head("GET / HTTP/1.1\r\nHost: g\r\nConnection: keep-alive, te\r\n\r\n");
    assert!(h.keep_alive);
    // Listing another name, it stays for `headers::outgoing` to drop that name by.
    assert_eq!(h.req.headers()["connection"], "keep-alive, te");
    let (h, _) =
        head("GET / HTTP/1.1\r\nHost: g\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n");
    assert!(h.req.headers().is_empty(), "{:?}", h.req.headers());
}

#[test]
fn http10_needs_no_host_and_an_empty_host_is_one() {
    assert!(matches!(
        parsed("GET / HTTP/1.0\r\n\r\n").0,
        Parsed::Complete(_)
    ));
    assert!(matches!(
        parsed("GET / HTTP/1.1\r\nHost:\r\n\r\n").0,
        Parsed::Complete(_)
    ));
    assert!(matches!(
        parsed("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").0,
        Parsed::Complete(_)
    ));
}

#[test]
fn an_incomplete_head_waits_for_more() {
    assert!(matches!(
        parsed("POST /x HTTP/1.1\r\nHost: g\r\n").0,
        Parsed::Partial
    ));
}

#[test]
fn everything_that_is_not_plain_goes_to_hyper_untouched() {
    let big = format!(
        "POST /x HTTP/1.1\r\nHost: g\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: g\r\n{}\r\n",
        (0..=MAX_HEADERS)
            .map(|i| format!("h{i}: v\r\n"))
            .collect::<String>()
    );
    for raw in [
        "POST /x HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: g\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: g\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: g\r\nContent-Length: -3\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: g\r\nContent-Length: +3\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: g\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: g\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: g\r\nBad Name: v\r\n\r\n",
        "\x16\x03\x01\x00",
        // RFC 9112 §3.2: hyper's path refuses these with a 400 and its message.
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        big.as_str(),
        many.as_str(),
    ] {
        let (p, rest) = parsed(raw);
        assert!(matches!(p, Parsed::NotPlain), "{raw:?} was taken");
        assert_eq!(&rest[..], raw.as_bytes(), "nothing of {raw:?} was consumed");
    }
}

#[test]
fn a_body_over_max_body_goes_to_hyper_for_an_early_413() {
    let raw = "POST /x HTTP/1.1\r\nHost: g\r\nContent-Length: 11\r\n\r\n";
    let mut buf = BytesMut::from(raw.as_bytes());
    assert!(matches!(parse(&mut buf, 10), Parsed::NotPlain));
    assert_eq!(&buf[..], raw.as_bytes());
    assert!(matches!(
        parse(&mut BytesMut::from(raw.as_bytes()), 11),
        Parsed::Complete(_)
    ));
}

#[test]
fn the_date_header_is_an_http_date_of_now() {
    let mut got = Vec::new();
    date::with(|d| got = d.to_vec());
    let text = String::from_utf8(got).unwrap();
    let when = httpdate::parse_http_date(&text).unwrap();
    let skew = std::time::SystemTime::now()
        .duration_since(when)
        .unwrap_or_default();
    assert!(skew < Duration::from_secs(2), "{text}");
}
