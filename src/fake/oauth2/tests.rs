//! The fake OAuth 2.0 server checked against RFC 6749 / RFC 6750, called
//! in-process with paused tokio time (the fake's expiry clock).

use super::*;
use http::HeaderMap;

/// RFC 6749 §4.4.2's client.
const RFC_ID: &str = "s6BhdRkqt3";
const RFC_SECRET: &str = "gX1fBat3bV";
/// An id and a secret with everything §2.3.1's encoding exists for.
const ODD_ID: &str = "my:client id+%é";
const ODD_SECRET: &str = "s e:c+r%e/tñ€";

fn fake(tune: impl FnOnce(&mut Config)) -> Fake {
    let mut cfg = Config {
        clients: vec![
            Client {
                id: RFC_ID.into(),
                secret: RFC_SECRET.into(),
            },
            Client {
                id: ODD_ID.into(),
                secret: ODD_SECRET.into(),
            },
        ],
        ..Default::default()
    };
    tune(&mut cfg);
    Fake::new(cfg)
}

/// Test-side base64 (RFC 4648 §4), written apart from the fake's decoder.
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// §2.3.1 with the WHATWG serializer (space as `+`), from the `form_urlencoded` crate.
fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        b64(format!("{}:{}", enc(id), enc(secret)).as_bytes())
    )
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: serde_json::Value,
}

async fn call(f: &Fake, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut b = Request::builder().method(method).uri(path);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let resp = f
        .respond(b.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        headers,
        json,
    }
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn token_basic(f: &Fake, auth: &str, body: &str) -> Answer {
    call(f, "POST", "/token", &[FORM, ("authorization", auth)], body).await
}

fn assert_error(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{}", a.json);
    assert_eq!(a.json["error"], code, "{}", a.json);
    assert!(a.json["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
}

async fn get_token(f: &Fake) -> String {
    let a = token_basic(
        f,
        &basic(RFC_ID, RFC_SECRET),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    a.json["access_token"].as_str().unwrap().to_string()
}

async fn api(f: &Fake, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    call(f, "GET", "/api/thing", &[("authorization", &auth)], "").await
}

#[test]
fn base64_decoder_matches_rfc4648_vectors() {
    for (plain, enc) in [
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
        assert_eq!(b64(plain.as_bytes()), enc);
    }
    for bad in [
        "",
        "Zg",
        "Zg=",
        "Zh==",
        "Z===",
        "Zm9v Zg==",
        "Zg==Zm9v",
        "Zm9v\n",
    ] {
        assert_eq!(base64_decode(bad), None, "{bad:?}");
    }
}

#[test]
fn rfc6749_4_4_2_basic_header_decodes_to_the_example_client() {
    assert_eq!(
        base64_decode("czZCaGRSa3F0MzpnWDFmQmF0M2JW").unwrap(),
        b"s6BhdRkqt3:gX1fBat3bV"
    );
    assert_eq!(
        decode_basic("Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW").unwrap(),
        (RFC_ID.to_string(), RFC_SECRET.to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn rfc6749_4_4_2_example_request_gets_a_4_4_3_answer() {
    let f = fake(|_| {});
    // The RFC's request, byte for byte.
    let a = token_basic(
        &f,
        "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW",
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.headers["cache-control"], "no-store");
    assert_eq!(a.headers["pragma"], "no-cache");
    assert!(a.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(a.json["token_type"], "Bearer");
    assert_eq!(a.json["expires_in"], 3600);
    assert!(a.json.get("scope").is_none());
    let token = a.json["access_token"].as_str().unwrap();
    assert!(is_b64token(token), "{token}");
    assert_eq!(api(&f, token).await.status, StatusCode::OK);
    let s = f.stats();
    assert_eq!((s.token_requests, s.tokens_issued), (1, 1));
    assert_eq!(s.token_request_times_ms.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn basic_credentials_are_form_encoded_before_base64() {
    let f = fake(|_| {});
    // The encoded form round-trips: `+` for space, as the WHATWG serializer writes it.
    let good = basic(ODD_ID, ODD_SECRET);
    assert_eq!(
        good,
        "Basic bXklM0FjbGllbnQraWQlMkIlMjUlQzMlQTk6cytlJTNBYyUyQnIlMjVlJTJGdCVDMyVCMSVFMiU4MiVBQw=="
    );
    let a = token_basic(&f, &good, "grant_type=client_credentials").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    // `%20` for space decodes the same (what interoperates with authlib too).
    let pct = format!(
        "Basic {}",
        b64(b"my%3Aclient%20id%2B%25%C3%A9:s%20e%3Ac%2Br%25e%2Ft%C3%B1%E2%82%AC")
    );
    assert_eq!(
        token_basic(&f, &pct, "grant_type=client_credentials")
            .await
            .status,
        StatusCode::OK
    );
    // Unencoded: the first ':' splits the id, '%' and non-ASCII are refused.
    let raw = format!("Basic {}", b64(format!("{ODD_ID}:{ODD_SECRET}").as_bytes()));
    let a = token_basic(&f, &raw, "grant_type=client_credentials").await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(a.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic realm=\"countersign-fake\""));
    // A literal '+' in a secret must be %2B: sent raw it is a space.
    let f = fake(|c| {
        c.clients = vec![Client {
            id: "c".into(),
            secret: "a+b".into(),
        }]
    });
    let raw_plus = format!("Basic {}", b64(b"c:a+b"));
    assert_error(
        &token_basic(&f, &raw_plus, "grant_type=client_credentials").await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert_eq!(
        token_basic(&f, &basic("c", "a+b"), "grant_type=client_credentials")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn client_secret_post_and_scope() {
    let f = fake(|_| {});
    let body = "grant_type=client_credentials&client_id=s6BhdRkqt3&client_secret=gX1fBat3bV&scope=read+write";
    let a = call(&f, "POST", "/token", &[FORM], body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["scope"], "read write");
    let seen = api(&f, a.json["access_token"].as_str().unwrap()).await;
    assert_eq!(seen.json["client_id"], RFC_ID);
    assert_eq!(seen.json["scope"], "read write");
    // The odd client through the form: %-encoded fields.
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        form_urlencoded::byte_serialize(ODD_ID.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(ODD_SECRET.as_bytes()).collect::<String>()
    );
    let a = call(&f, "POST", "/token", &[FORM], &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    // Content-Type parameters are fine.
    let a = call(
        &f,
        "POST",
        "/token",
        &[
            (
                "content-type",
                "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            ),
            ("authorization", &basic(RFC_ID, RFC_SECRET)),
        ],
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
}

#[tokio::test(start_paused = true)]
async fn each_5_2_error() {
    let f = fake(|c| {
        c.required_params = vec![RequiredParam {
            name: "audience".into(),
            value: "https://api.example".into(),
        }]
    });
    let auth = basic(RFC_ID, RFC_SECRET);
    let ok_body = "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example";
    assert_eq!(token_basic(&f, &auth, ok_body).await.status, StatusCode::OK);

    // invalid_request
    for body in [
        "audience=https%3A%2F%2Fapi.example",
        "grant_type=client_credentials",
        "grant_type=client_credentials&grant_type=client_credentials&audience=https%3A%2F%2Fapi.example",
        "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example&bad=%zz",
    ] {
        assert_error(&token_basic(&f, &auth, body).await, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let json = call(
        &f,
        "POST",
        "/token",
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        r#"{"grant_type":"client_credentials"}"#,
    )
    .await;
    assert_error(&json, StatusCode::BAD_REQUEST, "invalid_request");
    let get = call(&f, "GET", "/token", &[("authorization", &auth)], "").await;
    assert_error(&get, StatusCode::BAD_REQUEST, "invalid_request");
    // Both Basic and client_secret_post at once.
    let both = format!("{ok_body}&client_id={RFC_ID}&client_secret={RFC_SECRET}");
    assert_error(
        &token_basic(&f, &auth, &both).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // A body client_id disagreeing with Basic.
    let other = format!("{ok_body}&client_id=someone-else");
    assert_error(
        &token_basic(&f, &auth, &other).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // invalid_client: 401 + Basic challenge when Basic was used, 400 for the form.
    let wrong = token_basic(&f, &basic(RFC_ID, "nope"), ok_body).await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(wrong.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic realm="));
    let unknown = token_basic(&f, &basic("nobody", RFC_SECRET), ok_body).await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "invalid_client");
    let post_wrong = call(
        &f,
        "POST",
        "/token",
        &[FORM],
        &format!("{ok_body}&client_id={RFC_ID}&client_secret=nope"),
    )
    .await;
    assert_error(&post_wrong, StatusCode::BAD_REQUEST, "invalid_client");
    assert!(!post_wrong.headers.contains_key("www-authenticate"));
    let none = call(&f, "POST", "/token", &[FORM], ok_body).await;
    assert_error(&none, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(none.headers.contains_key("www-authenticate"));
    let not_basic = token_basic(&f, "Bearer abc", ok_body).await;
    assert_error(&not_basic, StatusCode::UNAUTHORIZED, "invalid_client");

    // unsupported_grant_type
    let pw = "grant_type=password&username=a&password=b&audience=https%3A%2F%2Fapi.example";
    assert_error(
        &token_basic(&f, &auth, pw).await,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );

    // invalid_scope
    for scope in ["admin", "read%20%20write", "read+", "+read"] {
        let body = format!("{ok_body}&scope={scope}");
        assert_error(
            &token_basic(&f, &auth, &body).await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        );
    }

    // invalid_target
    let aud = "grant_type=client_credentials&audience=https%3A%2F%2Fother.example";
    assert_error(
        &token_basic(&f, &auth, aud).await,
        StatusCode::BAD_REQUEST,
        "invalid_target",
    );

    let s = f.stats();
    assert_eq!(s.tokens_issued, 1);
    assert_eq!(s.token_errors["invalid_request"], 8);
    assert_eq!(s.token_errors["invalid_client"], 5);
    assert_eq!(s.token_errors["invalid_scope"], 4);
}

#[tokio::test(start_paused = true)]
async fn auth_method_not_allowed_is_invalid_client() {
    let f = fake(|c| c.auth_methods = vec![AuthMethod::ClientSecretPost]);
    let a = token_basic(
        &f,
        &basic(RFC_ID, RFC_SECRET),
        "grant_type=client_credentials",
    )
    .await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "invalid_client");
    let f = fake(|c| c.auth_methods = vec![AuthMethod::ClientSecretBasic]);
    let body =
        format!("grant_type=client_credentials&client_id={RFC_ID}&client_secret={RFC_SECRET}");
    let a = call(&f, "POST", "/token", &[FORM], &body).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_client");
}

#[tokio::test(start_paused = true)]
async fn expiry_is_strict_and_counted_as_avoidable() {
    let f = fake(|c| c.token_lifetime = Some(Duration::from_secs(10)));
    let token = get_token(&f).await;
    f.advance_clock(Duration::from_millis(9_999));
    let a = api(&f, &token).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["token_expires_in_ms"], 1);
    f.advance_clock(Duration::from_millis(1));
    let a = api(&f, &token).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["error"], "invalid_token");
    let challenge = a.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(
            "Bearer realm=\"countersign-fake\", error=\"invalid_token\", error_description=\""
        ),
        "{challenge}"
    );
    let s = f.stats();
    assert_eq!(s.avoidable_rejections, 1);
    assert_eq!(s.api_rejected["expired"], 1);
    assert_eq!(f.live_tokens(), 0);
    // Tokio's own clock moves the fake's too.
    let token = get_token(&f).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(api(&f, &token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.stats().avoidable_rejections, 2);
}

#[tokio::test(start_paused = true)]
async fn without_expires_in_the_token_still_expires() {
    let f = fake(|c| {
        c.announce_expires_in = false;
        c.token_lifetime = Some(Duration::from_secs(5));
    });
    let a = token_basic(
        &f,
        &basic(RFC_ID, RFC_SECRET),
        "grant_type=client_credentials",
    )
    .await;
    assert!(a.json.get("expires_in").is_none(), "{}", a.json);
    let token = a.json["access_token"].as_str().unwrap();
    f.advance_clock(Duration::from_secs(5));
    assert_eq!(api(&f, token).await.status, StatusCode::UNAUTHORIZED);
    // No lifetime at all: good until revoked.
    let f = fake(|c| c.token_lifetime = None);
    let token = get_token(&f).await;
    f.advance_clock(Duration::from_secs(86_400 * 365));
    assert_eq!(api(&f, &token).await.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn revoke_is_not_avoidable() {
    let f = fake(|_| {});
    let token = get_token(&f).await;
    let r = call(&f, "POST", "/_fake/revoke", &[], "").await;
    assert_eq!(r.json["revoked"], 1);
    let a = api(&f, &token).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    let s = f.stats();
    assert_eq!(s.avoidable_rejections, 0);
    assert_eq!(s.api_rejected["revoked"], 1);
    // A new token works.
    let token = get_token(&f).await;
    assert_eq!(api(&f, &token).await.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn missing_unknown_and_malformed_bearer() {
    let f = fake(|_| {});
    let a = call(&f, "DELETE", "/api/x", &[], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.headers["www-authenticate"],
        "Bearer realm=\"countersign-fake\""
    );
    let a = call(
        &f,
        "GET",
        "/api/x",
        &[("authorization", "Basic Zm9vOmJhcg==")],
        "",
    )
    .await;
    assert_eq!(
        a.headers["www-authenticate"],
        "Bearer realm=\"countersign-fake\""
    );
    let a = api(&f, "ctk.nope").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["error"], "invalid_token");
    for bad in ["Bearer", "Bearer a b", "Bearer a%20b", "Bearer =abc"] {
        let a = call(&f, "GET", "/api/x", &[("authorization", bad)], "").await;
        assert!(
            a.status == StatusCode::BAD_REQUEST || a.status == StatusCode::UNAUTHORIZED,
            "{bad}"
        );
    }
    let a = call(
        &f,
        "GET",
        "/api/x",
        &[("authorization", "Bearer a%20b")],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json["error"], "invalid_request");
    let s = f.stats();
    assert_eq!(s.api_requests, 8);
    assert_eq!(s.api_accepted, 0);
    assert_eq!(s.avoidable_rejections, 0);
}

#[tokio::test(start_paused = true)]
async fn the_resource_echoes_what_arrived() {
    let f = fake(|_| {});
    let token = get_token(&f).await;
    let auth = format!("bearer {token}");
    let a = call(
        &f,
        "PUT",
        "/api/v1/items?b=2&a=%20",
        &[("authorization", &auth)],
        "hello",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["method"], "PUT");
    assert_eq!(a.json["path"], "/api/v1/items");
    assert_eq!(a.json["query"], "b=2&a=%20");
    assert_eq!(a.json["body_length"], 5);
    assert_eq!(
        a.json["body_sha256"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    let big = "x".repeat(100_000);
    let a = call(&f, "POST", "/api/big", &[("authorization", &auth)], &big).await;
    assert_eq!(a.json["body_length"], 100_000);
    assert_eq!(f.stats().recent.last().unwrap().body.len(), 4096);
}

#[tokio::test(start_paused = true)]
async fn token_endpoint_modes_and_latency() {
    let f = fake(|_| {});
    let auth = basic(RFC_ID, RFC_SECRET);
    call(&f, "POST", "/_fake/token-endpoint?mode=down", &[], "").await;
    let a = token_basic(&f, &auth, "grant_type=client_credentials").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["connection"], "close");
    call(&f, "POST", "/_fake/token-endpoint?mode=error", &[], "").await;
    let a = token_basic(&f, &auth, "grant_type=client_credentials").await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(a.headers.contains_key("www-authenticate"));
    call(&f, "POST", "/_fake/token-endpoint?mode=ok", &[], "").await;
    assert_eq!(
        call(&f, "POST", "/_fake/token-endpoint?mode=x", &[], "")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let r = call(&f, "POST", "/_fake/token-latency?ms=200", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        token_basic(&f, &auth, "grant_type=client_credentials"),
        token_basic(&f, &auth, "grant_type=client_credentials"),
        token_basic(&f, &auth, "grant_type=client_credentials"),
    );
    assert!([a.status, b.status, c.status]
        .iter()
        .all(|s| *s == StatusCode::OK));
    assert!(started.elapsed() >= Duration::from_millis(200));
    let s = f.stats();
    assert_eq!(s.token_in_flight_max, 3);
    assert_eq!(s.token_in_flight, 0);
    assert_eq!(s.token_requests, 5);
    assert_eq!(s.token_errors["unavailable"], 1);
    assert_eq!(s.token_errors["invalid_client"], 1);

    let r = call(&f, "GET", "/_fake/stats", &[], "").await;
    assert_eq!(r.json["tokens_issued"], 3);
    assert_eq!(r.json["token_in_flight_max"], 3);
}

#[tokio::test(start_paused = true)]
async fn clock_control_endpoint() {
    let f = fake(|c| c.token_lifetime = Some(Duration::from_secs(60)));
    let token = get_token(&f).await;
    let r = call(&f, "POST", "/_fake/clock?advance_ms=60000", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(api(&f, &token).await.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn debug_shows_no_secret() {
    let text = format!("{:?}", Config::default());
    assert!(text.contains(DEMO_CLIENT_ID));
    assert!(!text.contains(DEMO_CLIENT_SECRET), "{text}");
}
