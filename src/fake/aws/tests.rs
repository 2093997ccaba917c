//! The aws fake checked three ways: the whole vendored SigV4 suite at the
//! verifier level (canonical request, string to sign, signature, acceptance,
//! refusal after a one-byte tamper), the suite's requests over the wire
//! through hyper where hyper can carry them, and S3 / JSON / STS semantics.
//!
//! What hyper cannot carry (so those cases are checked at the verifier level
//! only, from the parsed files, and on the wire it is asserted that hyper
//! refuses them with 400 before the fake sees anything):
//! - get-header-value-multiline: an obs-fold header value (RFC 9112 §5.2
//!   lets a server reject it; httparse does).
//! - get-space-normalized, get-space-unnormalized: a raw space in the
//!   request-target (the space ends the target; the rest is no HTTP version).
//!
//! Raw UTF-8 in the request-target (get-utf8, get-vanilla-utf8-query) does
//! pass hyper (http 1.x keeps those bytes), and is verified on the wire.
//!
//! The seven `*-unnormalized` cases sign with a non-S3 name but without
//! normalisation; the fake, like AWS, takes the rule from the signing name,
//! so they are checked at the verifier level (and their canonical URIs
//! against the S3 rule, which must agree), not on the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use auth::{authenticate, Entry};
use md5::{Digest, Md5};
use sigv4::{canonical_uri, compute, parse_authorization, sha256_hex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

// ---------------------------------------------------------------- the suite

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/aws-sigv4/v4")
}

struct Case {
    name: String,
    ctx: serde_json::Value,
    method: String,
    path: Vec<u8>,
    query: Vec<u8>,
    /// Lowercase names; obs-fold continuations joined with one space.
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// header-signed-request.txt as stored.
    raw: Vec<u8>,
    canonical_request: String,
    string_to_sign: String,
    signature: String,
}

impl Case {
    fn received(&self) -> Received<'_> {
        Received {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }

    fn now(&self) -> SystemTime {
        codec::parse_iso8601(self.ctx["timestamp"].as_str().unwrap()).unwrap()
    }

    fn normalize(&self) -> bool {
        self.ctx["normalize"].as_bool().unwrap()
    }

    fn omits_token(&self) -> bool {
        self.ctx["omit_session_token"].as_bool() == Some(true)
    }

    fn secret(&self) -> &str {
        self.ctx["credentials"]["secret_access_key"]
            .as_str()
            .unwrap()
    }

    fn token(&self) -> Option<&str> {
        self.ctx["credentials"]["token"].as_str()
    }

    fn entry(&self) -> Entry {
        Entry {
            secret: self.secret().into(),
            token: self.token().map(String::from),
            expires: None,
        }
    }

    fn check(
        &self,
        req: &Received<'_>,
        now: SystemTime,
        allow_unsigned_token: bool,
    ) -> Result<(), Denial> {
        let policy = Policy {
            region: self.ctx["region"].as_str().unwrap(),
            service: self.ctx["service"].as_str().unwrap(),
            rule: UriRule::General {
                normalize: self.normalize(),
            },
            skew: Duration::from_secs(15 * 60),
            now,
            allow_unsigned_token,
        };
        let akid = self.ctx["credentials"]["access_key_id"].as_str().unwrap();
        authenticate(req, &policy, |k| (k == akid).then(|| self.entry()))
    }

    /// The request as bytes on a wire: CRLF line ends, `Connection: close`.
    fn wire(&self, tamper_path: bool) -> Vec<u8> {
        let split = find(&self.raw, b"\n\n").unwrap();
        let mut head: Vec<Vec<u8>> = self.raw[..split]
            .split(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        if tamper_path {
            let line = &mut head[0];
            let at = line
                .iter()
                .position(|&b| b == b'?')
                .unwrap_or(line.len() - " HTTP/1.1".len());
            line.insert(at, b'x');
        }
        let mut out = head.join(&b"\r\n"[..]);
        out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

fn parse_case(dir: &Path) -> Case {
    let raw = std::fs::read(dir.join("header-signed-request.txt")).unwrap();
    let split = find(&raw, b"\n\n").unwrap();
    let mut lines = raw[..split].split(|&b| b == b'\n');
    let request_line = lines.next().unwrap();
    let first_space = request_line.iter().position(|&b| b == b' ').unwrap();
    let last_space = request_line.iter().rposition(|&b| b == b' ').unwrap();
    let target = &request_line[first_space + 1..last_space];
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &b""[..]),
    };
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for line in lines {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            // obs-fold: replaced by one space (RFC 9112 §5.2).
            let last = headers.last_mut().unwrap();
            last.1.push(b' ');
            last.1.extend_from_slice(line.trim_ascii_start());
            continue;
        }
        let colon = line.iter().position(|&b| b == b':').unwrap();
        let name = String::from_utf8(line[..colon].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        headers.push((name, line[colon + 1..].to_vec()));
    }
    Case {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        ctx: serde_json::from_str(&read(dir, "context.json")).unwrap(),
        method: String::from_utf8(request_line[..first_space].to_vec()).unwrap(),
        path: path.to_vec(),
        query: query.to_vec(),
        headers,
        body: raw[split + 2..].to_vec(),
        canonical_request: read(dir, "header-canonical-request.txt"),
        string_to_sign: read(dir, "header-string-to-sign.txt"),
        signature: read(dir, "header-signature.txt").trim().to_string(),
        raw,
    }
}

fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let cases: Vec<Case> = dirs.iter().map(|d| parse_case(d)).collect();
    assert_eq!(cases.len(), 38, "the vendored suite has 38 cases");
    cases
}

/// Changes the last letter or digit (to another of its kind), else appends `x`.
fn bump(v: &mut Vec<u8>) {
    match v.iter().rposition(u8::is_ascii_alphanumeric) {
        Some(i) => {
            v[i] = match v[i] {
                b'9' => b'0',
                b'z' => b'a',
                b'Z' => b'A',
                b => b + 1,
            }
        }
        None => v.push(b'x'),
    }
}

#[test]
fn suite_canonical_request_string_to_sign_and_signature_match_every_case() {
    for case in cases() {
        let req = case.received();
        let auth = parse_authorization(req.header("authorization").unwrap()).unwrap();
        let rule = UriRule::General {
            normalize: case.normalize(),
        };
        let amz_date = req.header("x-amz-date").unwrap();
        let got = compute(
            &req,
            &auth,
            rule,
            amz_date,
            &sha256_hex(&case.body),
            case.secret(),
        )
        .unwrap();
        let n = &case.name;
        assert_eq!(
            String::from_utf8(got.canonical_request).unwrap(),
            case.canonical_request,
            "{n}"
        );
        assert_eq!(got.string_to_sign, case.string_to_sign, "{n}");
        assert_eq!(got.signature, case.signature, "{n}");
        assert_eq!(
            auth.signature, case.signature,
            "{n}: the signed request carries the signature"
        );
    }
}

#[test]
fn suite_requests_are_accepted_at_their_timestamp_and_not_far_from_it() {
    for case in cases() {
        let n = &case.name;
        let t = case.now();
        let req = case.received();
        case.check(&req, t, case.omits_token())
            .unwrap_or_else(|d| panic!("{n}: {}", d.reason()));
        let near = Duration::from_secs(14 * 60);
        assert!(
            case.check(&req, t + near, case.omits_token()).is_ok(),
            "{n}"
        );
        assert!(
            case.check(&req, t - near, case.omits_token()).is_ok(),
            "{n}"
        );
        let far = Duration::from_secs(16 * 60);
        for now in [t + far, t - far] {
            let d = case.check(&req, now, case.omits_token()).unwrap_err();
            assert!(matches!(d, Denial::Skewed { .. }), "{n}: {}", d.reason());
        }
    }
}

#[test]
fn an_unsigned_session_token_is_refused_unless_configured() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "post-sts-header-after")
        .unwrap();
    let d = case.check(&case.received(), case.now(), false).unwrap_err();
    assert!(
        matches!(&d, Denial::NotSigned(h) if h == &["x-amz-security-token"]),
        "{}",
        d.reason()
    );
    assert!(case.check(&case.received(), case.now(), true).is_ok());
    // The signed variant needs no leniency.
    let before = cases()
        .into_iter()
        .find(|c| c.name == "post-sts-header-before")
        .unwrap();
    assert!(before
        .check(&before.received(), before.now(), false)
        .is_ok());
}

#[test]
fn suite_requests_are_refused_after_a_one_byte_tamper() {
    for case in cases() {
        let n = &case.name;
        let t = case.now();
        let refused = |c: &Case, what: &str| {
            let r = c.check(&c.received(), t, c.omits_token());
            assert!(r.is_err(), "{n}: accepted after tampering with the {what}");
        };
        let mut c = parse_case(&suite_dir().join(n));
        // Appended, since a changed letter inside `/example/..` normalises away.
        c.path.push(b'x');
        refused(&c, "path");

        let mut c = parse_case(&suite_dir().join(n));
        bump(&mut c.query);
        refused(&c, "query");

        let auth = parse_authorization(case.received().header("authorization").unwrap()).unwrap();
        for signed in &auth.signed_headers {
            let mut c = parse_case(&suite_dir().join(n));
            let (_, v) = c.headers.iter_mut().find(|(h, _)| h == signed).unwrap();
            bump(v);
            refused(&c, signed);
        }

        let mut c = parse_case(&suite_dir().join(n));
        bump(&mut c.body);
        refused(&c, "body");
    }
}

#[test]
fn the_s3_rule_agrees_with_the_suites_unnormalised_cases() {
    let mut seen = 0;
    for case in cases().into_iter().filter(|c| !c.normalize()) {
        let expected = case.canonical_request.lines().nth(1).unwrap();
        assert_eq!(
            canonical_uri(&case.path, UriRule::S3).unwrap(),
            expected,
            "{}",
            case.name
        );
        seen += 1;
    }
    assert_eq!(seen, 7);
}

/// Cases hyper refuses before any service sees them (see the module doc).
const HYPER_REFUSES: [&str; 3] = [
    "get-header-value-multiline",
    "get-space-normalized",
    "get-space-unnormalized",
];

async fn start(cfg: Config) -> (std::net::SocketAddr, Fake, tokio::sync::oneshot::Sender<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let fake = Fake::new(cfg);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(fake.clone().serve(l, None, async {
        let _ = rx.await;
    }));
    (addr, fake, tx)
}

async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn suite_config(case: &Case) -> Config {
    Config {
        region: case.ctx["region"].as_str().unwrap().into(),
        service: case.ctx["service"].as_str().unwrap().into(),
        json_service: "unused".into(),
        credentials: vec![StaticCredential {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: case.secret().into(),
            session_token: case.token().map(String::from),
        }],
        clock: Some(case.now()),
        allow_unsigned_token: case.omits_token(),
        ..Config::default()
    }
}

#[tokio::test]
async fn suite_requests_over_the_wire_reach_the_fake_and_verify_where_hyper_carries_them() {
    let mut on_wire = 0;
    for case in cases().into_iter().filter(|c| c.normalize()) {
        let n = case.name.as_str();
        let (addr, fake, _stop) = start(suite_config(&case)).await;
        let answer = raw_exchange(addr, &case.wire(false)).await;
        let stats = fake.stats();
        if HYPER_REFUSES.contains(&n) {
            assert!(answer.starts_with("HTTP/1.1 400"), "{n}: {answer}");
            assert_eq!(stats.journal.requests, 0, "{n}");
            continue;
        }
        assert_eq!(stats.journal.requests, 1, "{n}: {answer}");
        assert_eq!(
            stats.auth_failures, 0,
            "{n}: {:?} {answer}",
            stats.last_rejection
        );
        let answer = raw_exchange(addr, &case.wire(true)).await;
        let stats = fake.stats();
        assert_eq!(
            stats.auth_failures, 1,
            "{n}: a tampered path passed: {answer}"
        );
        on_wire += 1;
    }
    assert_eq!(on_wire, 38 - 7 - 2, "normalised cases hyper carries");
}

// ------------------------------------------------- a signer for the tests
// Built on the verifier's own functions: these tests are about what the fake
// does with a correctly signed request; the suite and boto3 pin the signing.

struct Caller {
    akid: String,
    secret: String,
    token: Option<String>,
    region: String,
}

fn demo() -> Caller {
    Caller {
        akid: DEMO_ACCESS_KEY_ID.into(),
        secret: DEMO_SECRET_ACCESS_KEY.into(),
        token: None,
        region: DEMO_REGION.into(),
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    text: String,
}

impl Answer {
    fn has(&self, s: &str) -> bool {
        self.text.contains(s)
    }
}

async fn take(resp: Response<Body>) -> Answer {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Signs (`service` decides the rule and `x-amz-content-sha256`) and sends.
/// The `Authorization` value for a request as it will be sent; `signed`
/// names the headers to sign (`None`: every header given).
fn authorization(
    who: &Caller,
    service: &str,
    method: &str,
    target: &str,
    headers: &[(String, Vec<u8>)],
    signed: Option<&[&str]>,
    body: &[u8],
) -> String {
    let mut signed: Vec<String> = match signed {
        Some(names) => names.iter().map(|n| n.to_string()).collect(),
        None => headers.iter().map(|(n, _)| n.clone()).collect(),
    };
    signed.sort();
    signed.dedup();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let req = Received {
        method,
        path: path.as_bytes(),
        query: query.as_bytes(),
        headers,
        body,
    };
    let amz = req.header("x-amz-date").unwrap();
    let auth = sigv4::Authorization {
        access_key_id: who.akid.clone(),
        date: amz[..8].into(),
        region: who.region.clone(),
        service: service.into(),
        signed_headers: signed,
        signature: String::new(),
    };
    let payload = match req.header("x-amz-content-sha256") {
        Some(p) if service == "s3" => p.to_string(),
        _ => sha256_hex(body),
    };
    let rule = UriRule::for_service(service);
    let c = compute(&req, &auth, rule, amz, &payload, &who.secret).unwrap();
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
        who.akid,
        auth.scope(),
        auth.signed_headers.join(";"),
        c.signature
    )
}

/// Signs every header (`service` decides the rule and whether
/// `x-amz-content-sha256` is added) and sends.
async fn call(
    fake: &Fake,
    who: &Caller,
    service: &str,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let amz = codec::amz_date(fake.now());
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("host".into(), b"fake.test".to_vec()),
        ("x-amz-date".into(), amz.into_bytes()),
    ];
    if service == "s3" && !extra.iter().any(|(n, _)| *n == "x-amz-content-sha256") {
        headers.push(("x-amz-content-sha256".into(), sha256_hex(body).into_bytes()));
    }
    if let Some(t) = &who.token {
        headers.push(("x-amz-security-token".into(), t.clone().into_bytes()));
    }
    if !body.is_empty() || method == "PUT" {
        headers.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    for (n, v) in extra {
        headers.push((n.to_string(), v.as_bytes().to_vec()));
    }
    let authz = authorization(who, service, method, target, &headers, None, body);
    send(fake, method, target, &headers, Some(&authz), body).await
}

async fn send(
    fake: &Fake,
    method: &str,
    target: &str,
    headers: &[(String, Vec<u8>)],
    authorization: Option<&str>,
    body: &[u8],
) -> Answer {
    let mut b = Request::builder().method(method).uri(target);
    for (n, v) in headers {
        b = b.header(n.as_str(), v.as_slice());
    }
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    take(fake.answer(&parts, Some(Bytes::copy_from_slice(body)))).await
}

type Pending<'f> = std::pin::Pin<Box<dyn Future<Output = Answer> + 'f>>;

/// S3 calls by the demo caller: (method, target, extra headers, body).
fn s3<'f>(
    fake: &'f Fake,
) -> impl Fn(&'static str, String, Vec<(&'static str, String)>, Vec<u8>) -> Pending<'f> + 'f {
    move |method, target, extra, body| {
        Box::pin(async move {
            let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
            call(fake, &demo(), "s3", method, &target, &extra, &body).await
        })
    }
}

fn fixed() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn fake_at(tune: impl FnOnce(&mut Config)) -> Fake {
    let mut cfg = Config {
        clock: Some(fixed()),
        ..Config::default()
    };
    tune(&mut cfg);
    Fake::new(cfg)
}

// ------------------------------------------------------------------- S3

#[tokio::test]
async fn objects_round_trip_under_awkward_keys() {
    let fake = fake_at(|_| {});
    let s3 = s3(&fake);
    assert_eq!(s3("PUT", "/bkt".into(), vec![], vec![]).await.status, 200);
    let keys = ["a b/ü 日本", "+%=&*~'():,;@$!", "trailing ", "a/b/c"];
    for (i, key) in keys.iter().enumerate() {
        let path = format!(
            "/bkt/{}",
            codec::encode(key.as_bytes(), |b| codec::is_unreserved(b) || b == b'/')
        );
        let data = vec![i as u8; i * 1000];
        let put = s3(
            "PUT",
            path.clone(),
            vec![("content-type", "text/x-test".into())],
            data.clone(),
        )
        .await;
        assert_eq!(put.status, 200, "{key}: {}", put.text);
        let etag = format!("\"{}\"", hex::encode(Md5::digest(&data)));
        assert_eq!(put.headers["etag"], etag.as_str());
        let get = s3("GET", path.clone(), vec![], vec![]).await;
        assert_eq!(get.status, 200, "{key}");
        assert_eq!(get.text.as_bytes(), data.as_slice());
        assert_eq!(get.headers["etag"], etag.as_str());
        assert_eq!(
            get.headers["content-length"],
            data.len().to_string().as_str()
        );
        assert_eq!(get.headers["content-type"], "text/x-test");
        assert_eq!(
            get.headers["last-modified"],
            httpdate::fmt_http_date(fixed()).as_str()
        );
        let head = s3("HEAD", path.clone(), vec![], vec![]).await;
        assert_eq!((head.status, head.text.as_str()), (StatusCode::OK, ""));
        assert_eq!(
            head.headers["content-length"],
            data.len().to_string().as_str()
        );
    }
    // A raw `+` in a path is a plus; `%2B` is the same key.
    let get = s3("GET", "/bkt/+%25=&*~'():,;@$!".into(), vec![], vec![]).await;
    assert_eq!(get.status, 200, "{}", get.text);
    let del = s3("DELETE", "/bkt/a/b/c".into(), vec![], vec![]).await;
    assert_eq!(del.status, 204);
    let gone = s3("GET", "/bkt/a/b/c".into(), vec![], vec![]).await;
    assert_eq!(gone.status, 404);
    assert!(
        gone.has("<Code>NoSuchKey</Code>") && gone.has("<Key>a/b/c</Key>"),
        "{}",
        gone.text
    );
    let nob = s3("GET", "/nope/k".into(), vec![], vec![]).await;
    assert!(
        nob.status == 404 && nob.has("<Code>NoSuchBucket</Code>"),
        "{}",
        nob.text
    );
    let head = s3("HEAD", "/bkt/a/b/c".into(), vec![], vec![]).await;
    assert_eq!(
        (head.status, head.text.as_str()),
        (StatusCode::NOT_FOUND, "")
    );
    assert_eq!(
        fake.stats().journal.rejected,
        0,
        "{:?}",
        fake.stats().last_rejection
    );
}

#[tokio::test]
async fn ranges_checksums_and_content_md5_are_honoured() {
    let fake = fake_at(|_| {});
    let s3 = s3(&fake);
    s3("PUT", "/bkt".into(), vec![], vec![]).await;
    let data = b"0123456789".to_vec();
    let crc = codec::base64(&codec::crc32(&data).to_be_bytes());
    let put = s3(
        "PUT",
        "/bkt/k".into(),
        vec![("x-amz-checksum-crc32", crc.clone())],
        data.clone(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let bad = s3(
        "PUT",
        "/bkt/k2".into(),
        vec![("x-amz-checksum-crc32", "AAAAAA==".into())],
        data.clone(),
    )
    .await;
    assert!(
        bad.status == 400 && bad.has("<Code>BadDigest</Code>"),
        "{}",
        bad.text
    );
    let md5 = codec::base64(&Md5::digest(b"other"));
    let bad = s3(
        "PUT",
        "/bkt/k3".into(),
        vec![("content-md5", md5)],
        data.clone(),
    )
    .await;
    assert!(
        bad.status == 400 && bad.has("<Code>BadDigest</Code>"),
        "{}",
        bad.text
    );
    let get = s3(
        "GET",
        "/bkt/k".into(),
        vec![("x-amz-checksum-mode", "ENABLED".into())],
        vec![],
    )
    .await;
    assert_eq!(get.headers["x-amz-checksum-crc32"], crc.as_str());
    let part = s3(
        "GET",
        "/bkt/k".into(),
        vec![("range", "bytes=2-4".into())],
        vec![],
    )
    .await;
    assert_eq!(
        (part.status, part.text.as_str()),
        (StatusCode::PARTIAL_CONTENT, "234")
    );
    assert_eq!(part.headers["content-range"], "bytes 2-4/10");
    let tail = s3(
        "GET",
        "/bkt/k".into(),
        vec![("range", "bytes=-3".into())],
        vec![],
    )
    .await;
    assert_eq!(tail.text, "789");
    let out = s3(
        "GET",
        "/bkt/k".into(),
        vec![("range", "bytes=10-".into())],
        vec![],
    )
    .await;
    assert!(out.status == 416 && out.has("InvalidRange"), "{}", out.text);
}

#[tokio::test]
async fn list_objects_v2_url_encodes_rolls_up_and_pages() {
    let fake = fake_at(|_| {});
    let s3 = s3(&fake);
    s3("PUT", "/bkt".into(), vec![], vec![]).await;
    for key in ["dir a/x", "dir a/y", "dir+b/z", "top", "ü/1"] {
        let path = format!(
            "/bkt/{}",
            codec::encode(key.as_bytes(), |b| codec::is_unreserved(b) || b == b'/')
        );
        assert_eq!(s3("PUT", path, vec![], b"v".to_vec()).await.status, 200);
    }
    let all = s3(
        "GET",
        "/bkt?list-type=2&encoding-type=url&delimiter=%2F".into(),
        vec![],
        vec![],
    )
    .await;
    assert_eq!(all.status, 200, "{}", all.text);
    for want in [
        "<CommonPrefixes><Prefix>dir+a/</Prefix></CommonPrefixes>",
        "<CommonPrefixes><Prefix>dir%2Bb/</Prefix></CommonPrefixes>",
        "<CommonPrefixes><Prefix>%C3%BC/</Prefix></CommonPrefixes>",
        "<Key>top</Key>",
        "<KeyCount>4</KeyCount>",
        "<Delimiter>/</Delimiter>",
        "<EncodingType>url</EncodingType>",
        "<IsTruncated>false</IsTruncated>",
        "<Size>1</Size>",
        &format!(
            "<ETag>&quot;{}&quot;</ETag>",
            hex::encode(Md5::digest(b"v"))
        ),
    ] {
        assert!(all.has(want), "{want} missing from {}", all.text);
    }
    let under = s3(
        "GET",
        "/bkt?list-type=2&prefix=dir%20a%2F&encoding-type=url".into(),
        vec![],
        vec![],
    )
    .await;
    assert!(
        under.has("<Key>dir+a/x</Key>") && under.has("<Key>dir+a/y</Key>"),
        "{}",
        under.text
    );
    assert!(
        under.has("<Prefix>dir+a/</Prefix>") && !under.has("dir%2Bb"),
        "{}",
        under.text
    );
    // Pages of two, with a rolled-up prefix counting as one entry.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut target = "/bkt?list-type=2&delimiter=%2F&max-keys=2".to_string();
        if let Some(t) = &token {
            target.push_str(&format!("&continuation-token={t}"));
        }
        let page = s3("GET", target, vec![], vec![]).await;
        for part in page
            .text
            .split("<Prefix>")
            .skip(1)
            .chain(page.text.split("<Key>").skip(1))
        {
            let item = &part[..part.find('<').unwrap()];
            if !item.is_empty() {
                seen.push(item.to_string());
            }
        }
        match page.text.split_once("<NextContinuationToken>") {
            Some((_, rest)) => token = Some(rest[..rest.find('<').unwrap()].to_string()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["dir a/", "dir+b/", "top", "ü/"]);
    let bad = s3("GET", "/bkt?list-type=2&max-keys=x".into(), vec![], vec![]).await;
    assert!(
        bad.status == 400 && bad.has("InvalidArgument"),
        "{}",
        bad.text
    );
    let v1 = s3("GET", "/bkt".into(), vec![], vec![]).await;
    assert_eq!(v1.status, 501, "{}", v1.text);
}

#[tokio::test]
async fn authentication_failures_are_s3_shaped() {
    let fake = fake_at(|_| {});
    let s3 = s3(&fake);
    s3("PUT", "/bkt".into(), vec![], vec![]).await;

    let wrong = Caller {
        secret: "x".repeat(40),
        ..demo()
    };
    let a = call(&fake, &wrong, "s3", "GET", "/bkt/k", &[], b"").await;
    assert_eq!(a.status, 403);
    for want in [
        "<Code>SignatureDoesNotMatch</Code>",
        "<CanonicalRequest>GET\n/bkt/k\n\nhost:fake.test\n",
        "<StringToSign>AWS4-HMAC-SHA256\n",
        "<CanonicalRequestBytes>47 45 54 0a",
        &format!("<AWSAccessKeyId>{DEMO_ACCESS_KEY_ID}</AWSAccessKeyId>"),
    ] {
        assert!(a.has(want), "{want} missing from {}", a.text);
    }
    let stats = fake.stats();
    assert_eq!(stats.auth_failures, 1);
    assert!(stats.last_rejection.unwrap().contains("canonical request"));

    let unknown = Caller {
        akid: "AKIANOTKNOWN00000000".into(),
        ..demo()
    };
    let a = call(&fake, &unknown, "s3", "GET", "/bkt/k", &[], b"").await;
    assert!(
        a.status == 403 && a.has("<Code>InvalidAccessKeyId</Code>"),
        "{}",
        a.text
    );

    let elsewhere = Caller {
        region: "eu-west-1".into(),
        ..demo()
    };
    let a = call(&fake, &elsewhere, "s3", "GET", "/bkt/k", &[], b"").await;
    assert!(
        a.status == 400
            && a.has("AuthorizationHeaderMalformed")
            && a.has("<Region>us-east-1</Region>"),
        "{}",
        a.text
    );

    let a = call(
        &fake,
        &demo(),
        "s3",
        "PUT",
        "/bkt/k",
        &[("x-amz-content-sha256", &sha256_hex(b"other"))],
        b"body",
    )
    .await;
    assert!(
        a.status == 400 && a.has("<Code>XAmzContentSHA256Mismatch</Code>"),
        "{}",
        a.text
    );
    let a = call(
        &fake,
        &demo(),
        "s3",
        "PUT",
        "/bkt/k",
        &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")],
        b"body",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = call(
        &fake,
        &demo(),
        "s3",
        "PUT",
        "/bkt/k",
        &[("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")],
        b"body",
    )
    .await;
    assert!(a.status == 501 && a.has("aws-chunked"), "{}", a.text);

    // Signed for another service's name.
    let a = call(&fake, &demo(), "sqs", "GET", "/bkt/k", &[], b"").await;
    assert!(a.status == 400 && a.has("incorrect service"), "{}", a.text);
}

#[tokio::test]
async fn skewed_unsigned_and_unauthenticated_requests_are_refused() {
    let fake = fake_at(|_| {});
    // Signed by a caller whose clock is 16 minutes behind the fake's.
    let amz = codec::amz_date(fixed() - Duration::from_secs(16 * 60));
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("host".into(), b"fake.test".to_vec()),
        ("x-amz-content-sha256".into(), sha256_hex(b"").into_bytes()),
        ("x-amz-date".into(), amz.into_bytes()),
    ];
    let signed = ["host", "x-amz-content-sha256", "x-amz-date"];
    let authz = |headers: &[(String, Vec<u8>)]| {
        authorization(&demo(), "s3", "GET", "/", headers, Some(&signed), b"")
    };
    let a = send(&fake, "GET", "/", &headers, Some(&authz(&headers)), b"").await;
    assert!(
        a.status == 403
            && a.has("<Code>RequestTimeTooSkewed</Code>")
            && a.has("<MaxAllowedSkewMilliseconds>900000<"),
        "{}",
        a.text
    );
    fake.set_clock(Some(fixed() - Duration::from_secs(16 * 60)));
    assert_eq!(
        send(&fake, "GET", "/", &headers, Some(&authz(&headers)), b"")
            .await
            .status,
        200
    );

    // An x-amz-* header left out of the signature.
    headers.push(("x-amz-meta-note".into(), b"hi".to_vec()));
    let a = send(&fake, "GET", "/", &headers, Some(&authz(&headers)), b"").await;
    assert!(
        a.status == 403 && a.has("<HeadersNotSigned>x-amz-meta-note</HeadersNotSigned>"),
        "{}",
        a.text
    );

    let a = send(&fake, "GET", "/", &headers, None, b"").await;
    assert!(
        a.status == 403 && a.has("<Code>AccessDenied</Code>"),
        "{}",
        a.text
    );
    let a = send(&fake, "GET", "/", &headers, Some("AWS AKID:sig"), b"").await;
    assert!(
        a.status == 400 && a.has("AuthorizationHeaderMalformed"),
        "{}",
        a.text
    );
    // `host` left out of the signature.
    headers.pop();
    let some = ["x-amz-content-sha256", "x-amz-date"];
    let authz = authorization(&demo(), "s3", "GET", "/", &headers, Some(&some), b"");
    let a = send(&fake, "GET", "/", &headers, Some(&authz), b"").await;
    assert!(
        a.status == 403 && a.has("<HeadersNotSigned>host</HeadersNotSigned>"),
        "{}",
        a.text
    );
    // No x-amz-content-sha256, which S3 requires.
    headers.retain(|(n, _)| n != "x-amz-content-sha256");
    let authz = authorization(&demo(), "s3", "GET", "/", &headers, None, b"");
    let a = send(&fake, "GET", "/", &headers, Some(&authz), b"").await;
    assert!(
        a.status == 400 && a.has("Missing required header for this request: x-amz-content-sha256"),
        "{}",
        a.text
    );
    assert_eq!(fake.stats().auth_failures, 6);
}

#[tokio::test]
async fn chunked_puts_and_oversized_bodies_are_refused() {
    let fake = fake_at(|c| c.max_body = 100);
    let s3 = s3(&fake);
    s3("PUT", "/bkt".into(), vec![], vec![]).await;
    let big = fake.answer(
        &Request::put("/bkt/k").body(()).unwrap().into_parts().0,
        None,
    );
    let big = take(big).await;
    assert!(
        big.status == 413 && big.has("EntityTooLarge"),
        "{}",
        big.text
    );
    let a = call(&fake, &demo(), "s3", "POST", "/bkt/k", &[], b"").await;
    assert!(a.status == 501 && a.has("multipart"), "{}", a.text);
    // A PUT without Content-Length (Transfer-Encoding: chunked on the wire).
    let h: Vec<(String, Vec<u8>)> = vec![
        ("host".into(), b"fake.test".to_vec()),
        ("transfer-encoding".into(), b"chunked".to_vec()),
        (
            "x-amz-content-sha256".into(),
            sha256_hex(b"abc").into_bytes(),
        ),
        ("x-amz-date".into(), codec::amz_date(fixed()).into_bytes()),
    ];
    let signed = ["host", "x-amz-content-sha256", "x-amz-date"];
    let authz = authorization(&demo(), "s3", "PUT", "/bkt/k", &h, Some(&signed), b"abc");
    let a = send(&fake, "PUT", "/bkt/k", &h, Some(&authz), b"abc").await;
    assert!(
        a.status == 411 && a.has("MissingContentLength"),
        "{}",
        a.text
    );
}

// ------------------------------------------------------------------- STS

fn sts_form(role: &str, token: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", role)
        .append_pair("RoleSessionName", "countersign")
        .append_pair("WebIdentityToken", token)
        .finish()
        .into_bytes()
}

async fn assume(fake: &Fake, body: &[u8]) -> Answer {
    let headers = vec![(
        "content-type".to_string(),
        b"application/x-www-form-urlencoded; charset=utf-8".to_vec(),
    )];
    send(fake, "POST", "/", &headers, None, body).await
}

fn element<'t>(text: &'t str, name: &str) -> &'t str {
    let start = text.find(&format!("<{name}>")).unwrap() + name.len() + 2;
    &text[start..start + text[start..].find('<').unwrap()]
}

#[tokio::test]
async fn sts_credentials_work_on_s3_and_json_until_they_expire() {
    let fake = fake_at(|c| c.credential_lifetime = Duration::from_secs(3));
    let a = assume(&fake, &sts_form(DEMO_ROLE_ARN, DEMO_WEB_IDENTITY_TOKEN)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.has(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    ));
    let akid = element(&a.text, "AccessKeyId").to_string();
    assert!(akid.starts_with("ASIA") && akid.len() == 20, "{akid}");
    assert_eq!(
        element(&a.text, "Expiration"),
        codec::iso8601(fixed() + Duration::from_secs(3))
    );
    let temp = Caller {
        akid: akid.clone(),
        secret: element(&a.text, "SecretAccessKey").into(),
        token: Some(element(&a.text, "SessionToken").into()),
        region: DEMO_REGION.into(),
    };
    assert_eq!(temp.secret.len(), 40);
    assert_eq!(
        call(&fake, &temp, "s3", "PUT", "/bkt", &[], b"")
            .await
            .status,
        200
    );
    let list = call(
        &fake,
        &temp,
        "dynamodb",
        "POST",
        "/",
        &[
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "DynamoDB_20120810.ListTables"),
        ],
        b"{}",
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.text);

    let bare = Caller {
        token: None,
        ..Caller {
            akid: akid.clone(),
            secret: temp.secret.clone(),
            token: None,
            region: DEMO_REGION.into(),
        }
    };
    let a = call(&fake, &bare, "s3", "GET", "/", &[], b"").await;
    assert!(a.status == 403 && a.has("InvalidAccessKeyId"), "{}", a.text);
    let forged = Caller {
        token: Some("forged".into()),
        akid: akid.clone(),
        secret: temp.secret.clone(),
        region: DEMO_REGION.into(),
    };
    let a = call(&fake, &forged, "s3", "GET", "/", &[], b"").await;
    assert!(
        a.status == 400 && a.has("<Code>InvalidToken</Code>"),
        "{}",
        a.text
    );

    fake.set_clock(Some(fixed() + Duration::from_secs(3)));
    let a = call(&fake, &temp, "s3", "GET", "/", &[], b"").await;
    assert!(
        a.status == 400 && a.has("<Code>ExpiredToken</Code>"),
        "{}",
        a.text
    );
    let a = call(
        &fake,
        &temp,
        "dynamodb",
        "POST",
        "/",
        &[
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "DynamoDB_20120810.ListTables"),
        ],
        b"{}",
    )
    .await;
    assert!(
        a.status == 400 && a.has("\"__type\":\"ExpiredTokenException\""),
        "{}",
        a.text
    );
    let stats = fake.stats();
    assert_eq!((stats.sts_calls, stats.sts_issued), (1, 1));
    let token = temp.token.as_deref().unwrap();
    assert!(
        !format!("{stats:?}").contains(token),
        "the journal shows a session token"
    );
}

#[tokio::test]
async fn sts_refuses_unknown_tokens_roles_and_parameters() {
    let fake = fake_at(|_| {});
    let a = assume(&fake, &sts_form(DEMO_ROLE_ARN, "not-the-token")).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(
        a.has("<ErrorResponse")
            && a.has("<Type>Sender</Type>")
            && a.has("<Code>InvalidIdentityToken</Code>"),
        "{}",
        a.text
    );
    let a = assume(
        &fake,
        &sts_form(
            "arn:aws:iam::123456789012:role/other",
            DEMO_WEB_IDENTITY_TOKEN,
        ),
    )
    .await;
    assert!(
        a.status == 403 && a.has("<Code>AccessDenied</Code>"),
        "{}",
        a.text
    );
    let mut form = sts_form(DEMO_ROLE_ARN, DEMO_WEB_IDENTITY_TOKEN);
    form.extend_from_slice(b"&DurationSeconds=60");
    let a = assume(&fake, &form).await;
    assert!(
        a.status == 400 && a.has("<Code>ValidationError</Code>"),
        "{}",
        a.text
    );
    // The same call as a GET query works too.
    let q = String::from_utf8(sts_form(DEMO_ROLE_ARN, DEMO_WEB_IDENTITY_TOKEN)).unwrap();
    let a = send(&fake, "GET", &format!("/?{q}"), &[], None, b"").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let stats = fake.stats();
    assert_eq!(
        (stats.sts_calls, stats.sts_issued, stats.journal.rejected),
        (4, 1, 3)
    );
    let shown = serde_json::to_string(&stats).unwrap();
    assert!(!shown.contains(DEMO_WEB_IDENTITY_TOKEN), "{shown}");
    assert!(shown.contains("WebIdentityToken=<redacted>"), "{shown}");
    assert!(stats.last_rejection.unwrap().contains("ValidationError"));
}

// ------------------------------------------------------------ the JSON API

#[tokio::test]
async fn json_api_puts_gets_lists_and_answers_json_errors() {
    let fake = fake_at(|_| {});
    let op = |name: &'static str, body: serde_json::Value| {
        let fake = &fake;
        async move {
            let target = format!("DynamoDB_20120810.{name}");
            let headers = [
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", target.as_str()),
            ];
            call(
                fake,
                &demo(),
                "dynamodb",
                "POST",
                "/",
                &headers,
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    let a = op(
        "CreateTable",
        serde_json::json!({
            "TableName": "t",
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        }),
    )
    .await;
    assert!(
        a.status == 400,
        "a two-letter name is too short: {}",
        a.text
    );
    let a = op(
        "CreateTable",
        serde_json::json!({
            "TableName": "things",
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let crc: u32 = a.headers["x-amz-crc32"].to_str().unwrap().parse().unwrap();
    assert_eq!(crc, codec::crc32(a.text.as_bytes()));
    let item = serde_json::json!({"id": {"S": "a b"}, "n": {"N": "1"}});
    let a = op(
        "PutItem",
        serde_json::json!({"TableName": "things", "Item": item}),
    )
    .await;
    assert_eq!((a.status, a.text.as_str()), (StatusCode::OK, "{}"));
    let a = op(
        "GetItem",
        serde_json::json!({"TableName": "things", "Key": {"id": {"S": "a b"}}}),
    )
    .await;
    let got: serde_json::Value = serde_json::from_str(&a.text).unwrap();
    assert_eq!(got["Item"], item);
    let a = op(
        "GetItem",
        serde_json::json!({"TableName": "things", "Key": {"id": {"S": "nope"}}}),
    )
    .await;
    assert_eq!(a.text, "{}");
    let a = op("ListTables", serde_json::json!({})).await;
    assert_eq!(a.text, r#"{"TableNames":["things"]}"#);
    let a = op(
        "GetItem",
        serde_json::json!({"TableName": "missing", "Key": {"id": {"S": "x"}}}),
    )
    .await;
    assert!(
        a.has("\"__type\":\"ResourceNotFoundException\""),
        "{}",
        a.text
    );
    let a = op("Scan", serde_json::json!({"TableName": "things"})).await;
    assert!(a.has("UnknownOperationException"), "{}", a.text);

    let wrong = Caller {
        secret: "y".repeat(40),
        ..demo()
    };
    let headers = [
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", "DynamoDB_20120810.ListTables"),
    ];
    let a = call(&fake, &wrong, "dynamodb", "POST", "/", &headers, b"{}").await;
    assert_eq!(a.status, 400);
    let err: serde_json::Value = serde_json::from_str(&a.text).unwrap();
    assert_eq!(err["__type"], "InvalidSignatureException");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("The Canonical String for this request should have been\n'POST\n/\n"),
        "{}",
        a.text
    );
    let unknown = Caller {
        akid: "AKIANOTKNOWN00000000".into(),
        ..demo()
    };
    let a = call(&fake, &unknown, "dynamodb", "POST", "/", &headers, b"{}").await;
    assert!(
        a.has("\"__type\":\"UnrecognizedClientException\""),
        "{}",
        a.text
    );
    // A JSON call signed for S3's name is out of scope.
    let a = call(&fake, &demo(), "s3", "POST", "/", &headers, b"{}").await;
    assert!(
        a.has("Credential should be scoped to correct service: 'dynamodb'"),
        "{}",
        a.text
    );
}

// ------------------------------------------------------------ the surface

#[test]
fn config_debug_shows_no_secret() {
    let mut cfg = Config::default();
    cfg.credentials[0].session_token = Some("tok-secret-value".into());
    let shown = format!("{cfg:?}");
    assert!(shown.contains(DEMO_ACCESS_KEY_ID));
    for secret in [
        DEMO_SECRET_ACCESS_KEY,
        DEMO_WEB_IDENTITY_TOKEN,
        "tok-secret-value",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert_eq!(DEMO_SECRET_ACCESS_KEY.len(), 40);
    assert!(DEMO_ACCESS_KEY_ID.starts_with("AKIA") && DEMO_ACCESS_KEY_ID.len() == 20);
}

#[tokio::test]
async fn stats_are_served_as_json() {
    let (addr, fake, _stop) = start(Config::default()).await;
    let answer = raw_exchange(
        addr,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = raw_exchange(
        addr,
        b"GET /_fake/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let json: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["requests"], 1);
    assert_eq!(json["auth_failures"], 1);
    assert_eq!(json["last_rejection"], "no Authorization header");
    assert_eq!(fake.stats().sts_calls, 0);
}
