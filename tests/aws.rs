//! The aws kind end to end: gateway -> countersign's strict AWS fake (its
//! own SigV4 verifier, S3, a JSON API, STS), and an unmodified boto3 with
//! placeholder credentials through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use countersign::fake::aws::{self, Config, Fake};
use http_body_util::Full;
use support::*;

fn static_route(addr: std::net::SocketAddr, service: &str, extra: &str) -> String {
    format!(
        r#"kind = "aws"
upstream = "http://{addr}"
service = "{service}"
region = "{}"
access_key_id = "{}"
secret_access_key = "{}"
{extra}"#,
        aws::DEMO_REGION,
        aws::DEMO_ACCESS_KEY_ID,
        aws::DEMO_SECRET_ACCESS_KEY,
    )
}

fn web_identity_route(addr: std::net::SocketAddr, token_file: &std::path::Path) -> String {
    format!(
        r#"kind = "aws"
upstream = "http://{addr}"
service = "s3"
region = "{}"
role_arn = "{}"
web_identity_token_file = "{}"
sts_endpoint = "http://{addr}"
login_interval = "100ms"
"#,
        aws::DEMO_REGION,
        aws::DEMO_ROLE_ARN,
        token_file.display(),
    )
}

async fn call(gw: &Gw, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut req = http::Request::builder().method(method).uri(gw.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    send(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap()).await
}

#[tokio::test]
async fn s3_objects_with_awkward_keys_through_the_gateway() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &static_route(addr, "s3", ""))).await;
    assert_eq!(call(&gw, "PUT", "/r/bucket", &[], b"").await.status, 200);
    for (i, key) in [
        "plain",
        "with%20space",
        "caf%C3%A9/%E6%97%A5",
        "a%2Bb",
        "p+q",
        "%25%3D%26%2A~%27%28%29",
    ]
    .iter()
    .enumerate()
    {
        let body = format!("object {i}");
        // The caller's own signing headers are dropped and replaced.
        let a = call(
            &gw,
            "PUT",
            &format!("/r/bucket/{key}"),
            &[
                ("authorization", "AWS4-HMAC-SHA256 Credential=caller/..."),
                ("x-amz-date", "19990101T000000Z"),
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                ("content-type", "text/plain"),
            ],
            body.as_bytes(),
        )
        .await;
        assert_eq!(a.status, 200, "{key}: {}", a.text());
        let got = call(&gw, "GET", &format!("/r/bucket/{key}"), &[], b"").await;
        assert_eq!(got.status, 200, "{key}: {}", got.text());
        assert_eq!(got.text(), body, "{key}");
    }
    // A raw '+' in a path is a literal plus: "p+q" and "a%2Bb" differ, and
    // the listing shows both keys as S3 decodes them.
    let list = call(&gw, "GET", "/r/bucket?list-type=2&prefix=", &[], b"").await;
    assert_eq!(list.status, 200, "{}", list.text());
    let text = list.text();
    for key in ["<Key>p+q</Key>", "<Key>a+b</Key>", "<Key>with space</Key>"] {
        assert!(text.contains(key), "{key} missing from {text}");
    }
    assert_eq!(
        call(&gw, "DELETE", "/r/bucket/plain", &[], b"")
            .await
            .status,
        204
    );
    assert_eq!(
        call(&gw, "GET", "/r/bucket/plain", &[], b"").await.status,
        404
    );
    let stats = fake.stats();
    assert_eq!(stats.auth_failures, 0, "{:?}", stats.last_rejection);
}

#[tokio::test]
async fn unsigned_payloads_stream_and_json_apis_sign_their_target() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[routes.d]\n{}",
        route_toml(
            dir.path(),
            &static_route(addr, "s3", "payload = \"unsigned\"")
        ),
        static_route(addr, "dynamodb", "")
    );
    let gw = gateway(&toml).await;
    assert_eq!(call(&gw, "PUT", "/r/big", &[], b"").await.status, 200);
    let body = vec![b'z'; 300 * 1000];
    let a = call(&gw, "PUT", "/r/big/object", &[], &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let sent = fake
        .stats()
        .journal
        .recent
        .iter()
        .rev()
        .find(|r| r.method == "PUT" && r.path_and_query == "/big/object")
        .map(|r| r.header("x-amz-content-sha256").map(str::to_string))
        .unwrap();
    assert_eq!(sent.as_deref(), Some("UNSIGNED-PAYLOAD"));
    assert_eq!(
        call(&gw, "GET", "/r/big/object", &[], b"").await.body.len(),
        body.len()
    );
    // A JSON API: x-amz-target is the caller's, and signed.
    let a = call(
        &gw,
        "POST",
        "/d/",
        &[
            ("x-amz-target", "DynamoDB_20120810.ListTables"),
            ("content-type", "application/x-amz-json-1.0"),
        ],
        b"{}",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("TableNames"), "{}", a.text());
    assert_eq!(
        fake.stats().auth_failures,
        0,
        "{:?}",
        fake.stats().last_rejection
    );
}

#[tokio::test]
async fn web_identity_credentials_are_fetched_once_and_renewed_before_they_expire() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config {
        // Short-lived, so the test sees renewals (countersign renews at
        // half their life when they live under five minutes).
        credential_lifetime: Duration::from_secs(2),
        ..Config::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", aws::DEMO_WEB_IDENTITY_TOKEN)).unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &web_identity_route(addr, &token_file),
    ))
    .await;
    let first = (0..40).map(|_| {
        let url = gw.url("/r/");
        async move {
            send(
                http::Request::get(url)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
        }
    });
    for a in futures_util::future::join_all(first).await {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    assert_eq!(fake.stats().sts_calls, 1, "40 first calls, one STS call");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        let a = call(&gw, "GET", "/r/", &[], b"").await;
        assert_eq!(a.status, 200, "{}", a.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = fake.stats();
    assert!(
        stats.sts_calls >= 3,
        "renewed: {} STS calls",
        stats.sts_calls
    );
    assert_eq!(
        stats.auth_failures, 0,
        "a call met expired credentials: {:?}",
        stats.last_rejection
    );
    // The token file is read at each fetch: a rotated token is used.
    std::fs::write(&token_file, "not-the-token").unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = call(&gw, "GET", "/r/", &[], b"").await;
    assert_eq!(a.error_code(), Some("login_failed"), "{}", a.text());
    assert!(a.text().contains("InvalidIdentityToken"), "{}", a.text());
}

#[tokio::test]
async fn boto3_with_placeholder_credentials_works_through_the_gateway() {
    if !py::has("boto3") {
        return;
    }
    let (addr, fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[routes.ddb]\n{}",
        route_toml(dir.path(), &static_route(addr, "s3", "")).replace("[routes.r]", "[routes.s3]"),
        static_route(addr, "dynamodb", "")
    );
    let gw = gateway(&toml).await;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .arg(py::script("aws_via_gateway.py"))
            .arg(gw.url("/s3"))
            .arg(gw.url("/ddb"))
            .arg(aws::DEMO_REGION)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("boto3 finished within 120 s")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "boto3 through countersign:\n{stderr}");
    eprintln!("{stderr}");
    assert_eq!(
        fake.stats().auth_failures,
        0,
        "{:?}",
        fake.stats().last_rejection
    );
}

#[tokio::test]
async fn no_secret_key_session_token_or_web_identity_token_in_logs_at_trace_level() {
    let (addr, _fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, aws::DEMO_WEB_IDENTITY_TOKEN).unwrap();
    let toml = format!(
        "{}\n[routes.w]\n{}",
        route_toml(
            dir.path(),
            &static_route(addr, "s3", "session_token = \"static-session-token-value\"")
        )
        .replace("[routes.r]", "[routes.st]"),
        web_identity_route(addr, &token_file)
    );
    let p = spawn_binary(dir.path(), &toml, "trace").await;
    for path in ["/w/", "/w/", "/st/"] {
        let _ = send(
            http::Request::get(p.url(path))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    }
    let logs = p.logs();
    assert!(logs.contains("TRACE"));
    for secret in [
        aws::DEMO_SECRET_ACCESS_KEY,
        "static-session-token-value",
        aws::DEMO_WEB_IDENTITY_TOKEN,
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
    assert!(
        !logs.contains("Signature="),
        "a signature header in the logs"
    );
}
