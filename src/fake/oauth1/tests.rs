//! The fake OAuth 1.0a resource pinned by RFC 5849's own examples and by
//! values computed independently (Python's hmac, shown beside each).

use super::*;
use http::HeaderMap;

// RFC 5849 §1.2: the photos example.
const PHOTOS_KEY: &str = "dpf43f3p2l4k3l03";
const PHOTOS_SECRET: &str = "kd94hf93k423kf44";
const PHOTOS_TOKEN: &str = "nnch734d00sl2jdk";
const PHOTOS_TOKEN_SECRET: &str = "pfkkdhi9sl3r4s00";
const PHOTOS_BASE: &str = "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal";
const PHOTOS_AUTH: &str = "OAuth realm=\"Photos\", oauth_consumer_key=\"dpf43f3p2l4k3l03\", oauth_token=\"nnch734d00sl2jdk\", oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"137131202\", oauth_nonce=\"chapoH\", oauth_signature=\"MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D\"";

// RFC 5849 §3.4.1.1 / §3.4.1.3.2: the request whose base string the RFC spells out.
const EXAMPLE_PATH: &str = "/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b";
const EXAMPLE_BODY: &str = "c2&a3=2+q";
const EXAMPLE_AUTH: &str = "OAuth realm=\"Example\", oauth_consumer_key=\"9djdj82h48djs9d2\", oauth_token=\"kkk9d7dh3k39sjv7\", oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"137131201\", oauth_nonce=\"7d8f3e4a\", oauth_signature=\"bYT5CMsGcbgUdFHObYMEfcx6bsw%3D\"";
const EXAMPLE_BASE: &str = "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7";
const EXAMPLE_NORMALIZED: &str = "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9djdj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7";

fn photos_fake() -> Fake {
    let f = Fake::new(Config {
        consumers: vec![
            Consumer {
                key: PHOTOS_KEY.into(),
                secret: PHOTOS_SECRET.into(),
            },
            Consumer {
                key: "9djdj82h48djs9d2".into(),
                secret: "not given by the RFC".into(),
            },
            Consumer {
                key: DEMO_CONSUMER_KEY.into(),
                secret: DEMO_CONSUMER_SECRET.into(),
            },
        ],
        tokens: vec![
            Token {
                consumer: PHOTOS_KEY.into(),
                token: PHOTOS_TOKEN.into(),
                secret: PHOTOS_TOKEN_SECRET.into(),
            },
            Token {
                consumer: "9djdj82h48djs9d2".into(),
                token: "kkk9d7dh3k39sjv7".into(),
                secret: "not given either".into(),
            },
            Token {
                consumer: DEMO_CONSUMER_KEY.into(),
                token: DEMO_TOKEN.into(),
                secret: DEMO_TOKEN_SECRET.into(),
            },
        ],
        ..Default::default()
    });
    f.set_clock(137131202);
    f
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: serde_json::Value,
}

async fn call(
    f: &Fake,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let resp = f
        .respond(b.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

fn assert_problem(a: &Answer, status: StatusCode, name: &str) {
    assert_eq!(a.status, status, "{}", a.json);
    assert_eq!(a.json["oauth_problem"], name, "{}", a.json);
    let challenge = a.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!("oauth_problem=\"{name}\"")),
        "{challenge}"
    );
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[test]
fn rfc5849_1_2_photos_base_string_and_signature() {
    let params: Vec<(Vec<u8>, Vec<u8>)> = [
        ("file", "vacation.jpg"),
        ("size", "original"),
        ("oauth_consumer_key", PHOTOS_KEY),
        ("oauth_token", PHOTOS_TOKEN),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131202"),
        ("oauth_nonce", "chapoH"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    let uri = base_string_uri("http", "photos.example.net", "/photos");
    assert_eq!(uri, "http://photos.example.net/photos");
    let base = signature_base_string("GET", &uri, &params);
    assert_eq!(base, PHOTOS_BASE);
    let key = signing_key(PHOTOS_SECRET, PHOTOS_TOKEN_SECRET);
    assert_eq!(key, "kd94hf93k423kf44&pfkkdhi9sl3r4s00");
    assert_eq!(
        sign(SignatureMethod::HmacSha1, &key, &base),
        "MdpQcU8iPSUjWoN/UDMsK2sui9I="
    );
}

#[tokio::test]
async fn rfc5849_1_2_photos_request_is_accepted_once() {
    let f = photos_fake();
    let path = "/photos?file=vacation.jpg&size=original";
    let auth = [("authorization", PHOTOS_AUTH)];
    let a = call(&f, "GET", "photos.example.net", path, &auth, "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["base_string"], PHOTOS_BASE);
    assert_eq!(a.json["realm"], "Photos");
    assert_eq!(a.json["token"], PHOTOS_TOKEN);
    // The default port, any case: the same base string URI.
    let b = call(&f, "GET", "Photos.Example.NET:80", path, &auth, "").await;
    assert_problem(&b, StatusCode::UNAUTHORIZED, "nonce_used");
    assert_eq!(b.json["debug_base_string"], PHOTOS_BASE);
    // Another port is another URI.
    let c = call(&f, "GET", "photos.example.net:8080", path, &auth, "").await;
    assert_problem(&c, StatusCode::UNAUTHORIZED, "signature_invalid");
    assert!(c.json["debug_base_string"]
        .as_str()
        .unwrap()
        .starts_with("GET&http%3A%2F%2Fphotos.example.net%3A8080%2Fphotos&"));
    // One changed query value breaks it.
    let d = call(
        &f,
        "GET",
        "photos.example.net",
        "/photos?file=vacation.jpg&size=large",
        &auth,
        "",
    )
    .await;
    assert_problem(&d, StatusCode::UNAUTHORIZED, "signature_invalid");
    let s = f.stats();
    assert_eq!(s.accepted, 1);
    assert_eq!(s.problems["signature_invalid"], 2);
}

#[tokio::test]
async fn rfc5849_3_4_1_1_base_string_of_the_full_example() {
    let f = photos_fake();
    f.set_clock(137131201);
    // The RFC gives no secrets for this request: the signature fails, and
    // the base string the fake computed is the RFC's.
    let a = call(
        &f,
        "POST",
        "example.com",
        EXAMPLE_PATH,
        &[FORM, ("authorization", EXAMPLE_AUTH)],
        EXAMPLE_BODY,
    )
    .await;
    assert_problem(&a, StatusCode::UNAUTHORIZED, "signature_invalid");
    assert_eq!(a.json["debug_base_string"], EXAMPLE_BASE);
    // Without the form Content-Type the body is not part of it.
    let b = call(
        &f,
        "POST",
        "example.com",
        EXAMPLE_PATH,
        &[
            ("content-type", "text/plain"),
            ("authorization", EXAMPLE_AUTH),
        ],
        EXAMPLE_BODY,
    )
    .await;
    let base = b.json["debug_base_string"].as_str().unwrap();
    assert!(!base.contains("c2%3D"), "{base}");
    assert!(!base.contains("2%2520q"), "{base}");
}

#[test]
fn rfc5849_3_4_1_3_2_normalized_parameters() {
    let mut params = parse_form(b"b5=%3D%253D&a3=a&c%40=&a2=r%20b").unwrap();
    params.extend(parse_form(EXAMPLE_BODY.as_bytes()).unwrap());
    let (header, realm) = parse_oauth_header(EXAMPLE_AUTH).unwrap().unwrap();
    assert_eq!(realm.as_deref(), Some("Example"));
    params.extend(header.into_iter().filter(|(n, _)| n != b"oauth_signature"));
    // §3.4.1.3.1's decoded list, in its order.
    let decoded: Vec<(String, String)> = params
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into(),
                String::from_utf8_lossy(v).into(),
            )
        })
        .collect();
    assert_eq!(
        &decoded[..6],
        &[
            ("b5".into(), "=%3D".into()),
            ("a3".into(), "a".into()),
            ("c@".into(), "".into()),
            ("a2".into(), "r b".into()),
            ("c2".into(), "".into()),
            ("a3".into(), "2 q".into()),
        ]
    );
    assert_eq!(normalize_parameters(&params), EXAMPLE_NORMALIZED);
}

#[test]
fn rfc5849_3_4_1_2_base_string_uri() {
    // The RFC's two examples (Host and path as the request carried them).
    assert_eq!(
        base_string_uri("http", "EXAMPLE.COM:80", "/r%20v/X"),
        "http://example.com/r%20v/X"
    );
    assert_eq!(
        base_string_uri("https", "www.example.net:8080", "/"),
        "https://www.example.net:8080/"
    );
    assert_eq!(
        base_string_uri("HTTPS", "a.example:443", ""),
        "https://a.example/"
    );
    assert_eq!(
        base_string_uri("http", "a.example:443", "/x"),
        "http://a.example:443/x"
    );
    assert_eq!(
        base_string_uri("http", "[::1]:8080", "/x"),
        "http://[::1]:8080/x"
    );
    assert_eq!(base_string_uri("http", "[::1]", "/x"), "http://[::1]/x");
}

#[test]
fn rfc5849_3_6_encoding() {
    assert_eq!(encode(b"Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
    assert_eq!(encode(b"An encoded string!"), "An%20encoded%20string%21");
    assert_eq!(encode(b"Dogs, Cats & Mice"), "Dogs%2C%20Cats%20%26%20Mice");
    assert_eq!(encode("☃".as_bytes()), "%E2%98%83");
    assert_eq!(encode(b"-._~azAZ09"), "-._~azAZ09");
}

/// HMAC-SHA256 (not in RFC 5849; the same construction), computed apart:
/// ```text
/// python3 -c 'import hmac,hashlib,base64; b="GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA256%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"; print(base64.b64encode(hmac.new(b"kd94hf93k423kf44&pfkkdhi9sl3r4s00", b.encode(), hashlib.sha256).digest()).decode())'
/// HtMwoX2zenlFjgGg/SNEoKEQmL7CzxYFEKzs7er044Y=
/// ```
/// (oauthlib's `signature_base_string` gives the same base string.)
#[tokio::test]
async fn hmac_sha256_known_answer() {
    let f = photos_fake();
    let auth = "OAuth oauth_consumer_key=\"dpf43f3p2l4k3l03\", oauth_token=\"nnch734d00sl2jdk\", oauth_signature_method=\"HMAC-SHA256\", oauth_timestamp=\"137131202\", oauth_nonce=\"chapoH\", oauth_signature=\"HtMwoX2zenlFjgGg%2FSNEoKEQmL7CzxYFEKzs7er044Y%3D\"";
    let path = "/photos?file=vacation.jpg&size=original";
    let a = call(
        &f,
        "GET",
        "photos.example.net",
        path,
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["signature_method"], "HMAC-SHA256");
}

/// The key's own §3.6 encoding, pinned with the demo secrets (space, `&`, `+`,
/// `/`, non-ASCII, `~`, `%`, `=`):
/// ```text
/// python3 -c 'from urllib.parse import quote; e=lambda s: quote(s.encode(), safe=""); k=e("demo consumer&secret+1/é")+"&"+e("demo~token%secret=2"); print(k); print(e(k))'
/// demo%20consumer%26secret%2B1%2F%C3%A9&demo~token%25secret%3D2
/// demo%2520consumer%2526secret%252B1%252F%25C3%25A9%26demo~token%2525secret%253D2
/// python3 -c 'import hmac,hashlib,base64; k=b"demo%20consumer%26secret%2B1%2F%C3%A9&demo~token%25secret%3D2"; b="GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"; print(base64.b64encode(hmac.new(k, b.encode(), hashlib.sha1).digest()).decode())'
/// f3bCVRGS0OEPiP+3TgEEP91UmFM=
/// ```
#[tokio::test]
async fn plaintext_and_key_encoding_known_answers() {
    let key = signing_key(DEMO_CONSUMER_SECRET, DEMO_TOKEN_SECRET);
    assert_eq!(
        key,
        "demo%20consumer%26secret%2B1%2F%C3%A9&demo~token%25secret%3D2"
    );
    assert_eq!(
        sign(SignatureMethod::HmacSha1, &key, PHOTOS_BASE),
        "f3bCVRGS0OEPiP+3TgEEP91UmFM="
    );
    assert_eq!(sign(SignatureMethod::Plaintext, &key, "ignored"), key);

    let f = photos_fake();
    let auth = format!(
        "OAuth oauth_consumer_key=\"{DEMO_CONSUMER_KEY}\", oauth_token=\"{DEMO_TOKEN}\", oauth_signature_method=\"PLAINTEXT\", oauth_timestamp=\"137131202\", oauth_nonce=\"n1\", oauth_signature=\"demo%2520consumer%2526secret%252B1%252F%25C3%25A9%26demo~token%2525secret%253D2\""
    );
    let a = call(
        &f,
        "GET",
        "anything.example",
        "/x",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    // The RFC photos credentials in PLAINTEXT: the key itself.
    let auth = "OAuth oauth_consumer_key=\"dpf43f3p2l4k3l03\", oauth_token=\"nnch734d00sl2jdk\", oauth_signature_method=\"PLAINTEXT\", oauth_timestamp=\"137131202\", oauth_nonce=\"n2\", oauth_signature=\"kd94hf93k423kf44%26pfkkdhi9sl3r4s00\"";
    let a = call(
        &f,
        "POST",
        "x.example",
        "/y?z=1",
        &[("authorization", auth)],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
}

/// Signs with this module's own (RFC-pinned) pieces: for the tests of
/// everything around the signature.
fn signed_params(
    method: &str,
    host: &str,
    path_query: &str,
    form_body: &str,
    oauth: &[(&str, &str)],
    key: &str,
) -> Vec<(String, String)> {
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let mut params = parse_form(query.as_bytes()).unwrap();
    params.extend(parse_form(form_body.as_bytes()).unwrap());
    params.extend(
        oauth
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())),
    );
    let base = signature_base_string(method, &base_string_uri("http", host, path), &params);
    let sm = oauth
        .iter()
        .find(|(n, _)| *n == "oauth_signature_method")
        .map(|(_, v)| SignatureMethod::parse(v).unwrap_or(SignatureMethod::HmacSha1))
        .unwrap_or(SignatureMethod::HmacSha1);
    let mut all: Vec<(String, String)> = oauth
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    all.push(("oauth_signature".into(), sign(sm, key, &base)));
    all
}

fn header_of(params: &[(String, String)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .map(|(n, v)| format!("{}=\"{}\"", encode(n.as_bytes()), encode(v.as_bytes())))
        .collect();
    format!("OAuth {}", parts.join(", "))
}

fn form_of(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n.as_bytes()), encode(v.as_bytes())))
        .collect::<Vec<_>>()
        .join("&")
}

fn demo_oauth<'a>(ts: &'a str, nonce: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("oauth_consumer_key", DEMO_CONSUMER_KEY),
        ("oauth_token", DEMO_TOKEN),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", ts),
        ("oauth_nonce", nonce),
        ("oauth_version", "1.0"),
    ]
}

fn demo_key() -> String {
    signing_key(DEMO_CONSUMER_SECRET, DEMO_TOKEN_SECRET)
}

#[tokio::test]
async fn protocol_parameters_in_the_body_or_query_but_one_place() {
    let f = Fake::new(Config::default());
    let now = f.now().to_string();
    let host = "127.0.0.1:4000";
    // In the form body, with other fields.
    let oauth = demo_oauth(&now, "body1");
    let p = signed_params("POST", host, "/api?q=1", "x=a+b", &oauth, &demo_key());
    let body = format!("x=a+b&{}", form_of(&p));
    let a = call(&f, "POST", host, "/api?q=1", &[FORM], &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    // In the query.
    let oauth = demo_oauth(&now, "query1");
    let p = signed_params("GET", host, "/api?q=1", "", &oauth, &demo_key());
    let path = format!("/api?q=1&{}", form_of(&p));
    let a = call(&f, "GET", host, &path, &[], "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    // In the header and the query at once.
    let oauth = demo_oauth(&now, "both1");
    let p = signed_params("GET", host, "/api?oauth_nonce=x", "", &oauth, &demo_key());
    let a = call(
        &f,
        "GET",
        host,
        "/api?oauth_nonce=x",
        &[("authorization", &header_of(&p))],
        "",
    )
    .await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "parameter_rejected");
    // Body oauth_ fields are not protocol parameters without the form type:
    // the header is the one place, the body is not signed.
    let oauth = demo_oauth(&now, "json1");
    let p = signed_params("POST", host, "/api", "", &oauth, &demo_key());
    let a = call(
        &f,
        "POST",
        host,
        "/api",
        &[
            ("content-type", "application/json"),
            ("authorization", &header_of(&p)),
        ],
        "{\"oauth_x\":1}",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    // Nothing at all.
    let a = call(&f, "GET", host, "/api", &[], "").await;
    assert_problem(&a, StatusCode::UNAUTHORIZED, "parameter_absent");
}

#[tokio::test]
async fn the_header_must_be_rfc_encoded_and_unique() {
    let f = Fake::new(Config::default());
    let now = f.now().to_string();
    let host = "localhost:9";
    let oauth = demo_oauth(&now, "h1");
    let p = signed_params("GET", host, "/a", "", &oauth, &demo_key());
    let good = header_of(&p);
    // A signature with its base64 `+`, `/` or `=` left raw.
    let sig = &p.last().unwrap().1;
    assert!(sig.contains(['+', '/', '=']), "pick another nonce: {sig}");
    let raw = good.replace(&encode(sig.as_bytes()), sig);
    assert_problem(
        &call(&f, "GET", host, "/a", &[("authorization", &raw)], "").await,
        StatusCode::BAD_REQUEST,
        "parameter_rejected",
    );
    // Unquoted values, a parameter twice, a non-oauth parameter.
    let unquoted = good.replace("oauth_nonce=\"h1\"", "oauth_nonce=h1");
    let twice = format!("{good}, oauth_nonce=\"h2\"");
    let foreign = format!("{good}, foo=\"1\"");
    for bad in [unquoted, twice, foreign] {
        let a = call(&f, "GET", host, "/a", &[("authorization", &bad)], "").await;
        assert_problem(&a, StatusCode::BAD_REQUEST, "parameter_rejected");
    }
    // Whitespace around the separators and a scheme in another case are fine.
    let loose = good.replace("OAuth ", "oauth   ").replace(", ", " ,\t");
    let a = call(&f, "GET", host, "/a", &[("authorization", &loose)], "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
}

#[tokio::test]
async fn credentials_version_method_checks() {
    let f = Fake::new(Config {
        consumers: vec![
            Consumer {
                key: DEMO_CONSUMER_KEY.into(),
                secret: DEMO_CONSUMER_SECRET.into(),
            },
            Consumer {
                key: "other".into(),
                secret: "s".into(),
            },
        ],
        methods: vec![SignatureMethod::HmacSha1, SignatureMethod::HmacSha256],
        ..Default::default()
    });
    let now = f.now().to_string();
    let host = "h.example";
    let send = |oauth: Vec<(&str, &str)>, key: String| {
        let p = signed_params("GET", host, "/r", "", &oauth, &key);
        let f = f.clone();
        async move {
            call(
                &f,
                "GET",
                host,
                "/r",
                &[("authorization", &header_of(&p))],
                "",
            )
            .await
        }
    };
    let mut o = demo_oauth(&now, "c1");
    o[0].1 = "nobody";
    assert_problem(
        &send(o, demo_key()).await,
        StatusCode::UNAUTHORIZED,
        "consumer_key_unknown",
    );
    let mut o = demo_oauth(&now, "c2");
    o[0].1 = "other";
    assert_problem(
        &send(o, signing_key("s", DEMO_TOKEN_SECRET)).await,
        StatusCode::UNAUTHORIZED,
        "token_rejected",
    );
    let mut o = demo_oauth(&now, "c3");
    o[1].1 = "unknown-token";
    assert_problem(
        &send(o, demo_key()).await,
        StatusCode::UNAUTHORIZED,
        "token_rejected",
    );
    let mut o = demo_oauth(&now, "c4");
    o.remove(1);
    let a = send(o, signing_key(DEMO_CONSUMER_SECRET, "")).await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "parameter_absent");
    assert_eq!(a.json["oauth_parameters_absent"], "oauth_token");
    let mut o = demo_oauth(&now, "c5");
    o[5].1 = "2.0";
    assert_problem(
        &send(o, demo_key()).await,
        StatusCode::BAD_REQUEST,
        "version_rejected",
    );
    let mut o = demo_oauth(&now, "c6");
    o[2].1 = "PLAINTEXT";
    assert_problem(
        &send(o, demo_key()).await,
        StatusCode::BAD_REQUEST,
        "signature_method_rejected",
    );
    let mut o = demo_oauth(&now, "c7");
    o[2].1 = "RSA-SHA1";
    assert_problem(
        &send(o, demo_key()).await,
        StatusCode::BAD_REQUEST,
        "signature_method_rejected",
    );
    let mut o = demo_oauth(&now, "c8");
    o.remove(4);
    assert_problem(
        &send(o, demo_key()).await,
        StatusCode::BAD_REQUEST,
        "parameter_absent",
    );
    // oauth_version may be left out; HMAC-SHA256 is accepted.
    let mut o = demo_oauth(&now, "c9");
    o.remove(5);
    o[2].1 = "HMAC-SHA256";
    assert_eq!(send(o, demo_key()).await.status, StatusCode::OK);
    // Signed with the wrong token secret.
    let o = demo_oauth(&now, "c10");
    let a = send(o, signing_key(DEMO_CONSUMER_SECRET, "wrong")).await;
    assert_problem(&a, StatusCode::UNAUTHORIZED, "signature_invalid");
    assert!(a.json["debug_base_string"]
        .as_str()
        .unwrap()
        .starts_with("GET&http%3A%2F%2Fh.example%2Fr&"));
}

#[tokio::test]
async fn without_a_token_when_allowed() {
    let f = Fake::new(Config {
        allow_no_token: true,
        ..Default::default()
    });
    let now = f.now().to_string();
    let mut o = demo_oauth(&now, "t1");
    o.remove(1);
    let p = signed_params(
        "GET",
        "h",
        "/r",
        "",
        &o,
        &signing_key(DEMO_CONSUMER_SECRET, ""),
    );
    let a = call(
        &f,
        "GET",
        "h",
        "/r",
        &[("authorization", &header_of(&p))],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["token"], serde_json::Value::Null);
}

#[tokio::test]
async fn timestamp_window_and_nonces() {
    let f = Fake::new(Config::default());
    f.set_clock(1_700_000_000);
    let host = "h";
    let send = |ts: String, nonce: &'static str| {
        let o = demo_oauth(&ts, nonce);
        let p = signed_params("GET", host, "/r", "", &o, &demo_key());
        let f = f.clone();
        async move {
            call(
                &f,
                "GET",
                host,
                "/r",
                &[("authorization", &header_of(&p))],
                "",
            )
            .await
        }
    };
    // The clock runs on between calls: stay a second inside the edges.
    assert_eq!(send("1700000299".into(), "w1").await.status, StatusCode::OK);
    assert_eq!(send("1699999701".into(), "w2").await.status, StatusCode::OK);
    for ts in ["1700000302", "1699999690", "-1", "17e8", "", "0"] {
        let a = send(ts.into(), "w3").await;
        if ts.is_empty() {
            assert_problem(&a, StatusCode::BAD_REQUEST, "parameter_absent");
        } else {
            assert_problem(&a, StatusCode::UNAUTHORIZED, "timestamp_refused");
            assert!(a.json["oauth_acceptable_timestamps"]
                .as_str()
                .unwrap()
                .contains('-'));
        }
    }
    // A nonce once per (consumer, token, timestamp).
    assert_eq!(send("1700000000".into(), "n").await.status, StatusCode::OK);
    assert_problem(
        &send("1700000000".into(), "n").await,
        StatusCode::UNAUTHORIZED,
        "nonce_used",
    );
    assert_eq!(send("1700000001".into(), "n").await.status, StatusCode::OK);
    let s = f.stats();
    assert_eq!(s.accepted, 4);
    assert_eq!(s.problems["timestamp_refused"], 5);
    assert_eq!(s.problems["nonce_used"], 1);
}

#[tokio::test]
async fn the_clock_control_endpoint() {
    let f = Fake::new(Config::default());
    let a = call(&f, "POST", "h", "/_fake/clock?now=137131202", &[], "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!((a.json["now"].as_i64().unwrap() - 137131202).abs() <= 1);
    let a = call(&f, "GET", "h", "/_fake/stats", &[], "").await;
    assert_eq!(a.json["requests"], 0);
}

#[test]
fn debug_shows_no_secret() {
    let text = format!("{:?}", Config::default());
    assert!(text.contains(DEMO_CONSUMER_KEY) && text.contains(DEMO_TOKEN));
    assert!(
        !text.contains(DEMO_CONSUMER_SECRET) && !text.contains(DEMO_TOKEN_SECRET),
        "{text}"
    );
}
