//! The utilsio kind end to end: gateway -> strict fake utilsio, on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use bytes::Bytes;
use countersign::fake::utilsio::{self, Config, Fake, DEMO_APP, DEMO_SALT, DEMO_SECRET};
use http_body_util::Full;
use support::*;

fn route(addr: std::net::SocketAddr, keys: &str) -> String {
    format!(
        "kind = \"utilsio\"\nupstream = \"http://{addr}/api/v1\"\napp_id = \"{DEMO_APP}\"\n{keys}"
    )
}

fn derived() -> String {
    format!("app_secret = \"{DEMO_SECRET}\"\napp_salt = \"{DEMO_SALT}\"")
}

async fn call(gw: &Gw, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut req = http::Request::builder().method(method).uri(gw.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    send(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

#[tokio::test]
async fn device_id_from_header_query_or_body_is_signed_and_accepted() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, &derived()))).await;

    let a = call(
        &gw,
        "GET",
        "/r/subscription",
        &[("x-utilsio-device-id", "phone 1")],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.text().contains("\"deviceId\":\"phone 1\""),
        "{}",
        a.text()
    );
    let a = call(&gw, "GET", "/r/subscription?deviceId=phone-2", &[], "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = call(
        &gw,
        "GET",
        "/r/subscription",
        &[],
        r#"{"deviceId":"phone-3"}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());

    let stats = fake.stats();
    assert_eq!(stats.rejected, 0);
    let first = &stats.recent[0];
    // appId added; the header's deviceId put in the query, so the upstream sees what was signed.
    assert_eq!(
        first.path_and_query,
        format!("/api/v1/subscription?appId={DEMO_APP}&deviceId=phone+1")
    );
    assert!(first.header("x-utilsio-device-id").is_none());
    let ts: u64 = first
        .header("x-utilsio-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ts < 10_000_000_000, "seconds by default: {ts}");
    assert_eq!(first.header("x-utilsio-signature").unwrap().len(), 64);
}

#[tokio::test]
async fn delete_subscription_signs_the_sorted_ids() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, &derived()))).await;
    let a = call(
        &gw,
        "DELETE",
        "/r/subscription",
        &[],
        r#"{"deviceId":"d","subscriptionIds":["s3","s1","s2"]}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.text().contains(r#""cancelled":["s3","s1","s2"]"#),
        "{}",
        a.text()
    );
    assert_eq!(fake.stats().rejected, 0);
}

#[tokio::test]
async fn an_app_hash_works_like_the_derived_key() {
    let (app, key) = utilsio::app_from_secret("hash-app", "other-secret", "00112233").unwrap();
    let (addr, fake, _stop) = start_fake!(Fake::new(Config {
        apps: vec![(app.clone(), key.clone())],
        ..Config::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let r = format!("kind = \"utilsio\"\nupstream = \"http://{addr}/api/v1\"\napp_id = \"{app}\"\napp_hash = \"{key}\"");
    let gw = gateway(&route_toml(dir.path(), &r)).await;
    let a = call(&gw, "GET", "/r/subscription?deviceId=x", &[], "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(fake.stats().rejected, 0);
}

#[tokio::test]
async fn missing_or_conflicting_device_ids_are_refused_before_sending() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, &derived()))).await;
    let a = call(&gw, "GET", "/r/subscription", &[], "").await;
    assert_eq!(
        (a.status.as_u16(), a.error_code()),
        (400, Some("bad_request_body"))
    );
    assert!(a.text().contains("deviceId"), "{}", a.text());
    let a = call(
        &gw,
        "GET",
        "/r/subscription?deviceId=a",
        &[("x-utilsio-device-id", "b")],
        "",
    )
    .await;
    assert_eq!(
        (a.status.as_u16(), a.error_code()),
        (400, Some("bad_request_body"))
    );
    let a = call(&gw, "DELETE", "/r/subscription?deviceId=a", &[], "{}").await;
    assert_eq!(
        (a.status.as_u16(), a.error_code()),
        (400, Some("bad_request_body"))
    );
    assert_eq!(fake.stats().requests, 0);
}

#[tokio::test]
async fn a_wrong_secret_gets_the_upstreams_own_error_unchanged() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let wrong = format!("app_secret = \"not-the-secret\"\napp_salt = \"{DEMO_SALT}\"");
    let gw = gateway(&route_toml(dir.path(), &route(addr, &wrong))).await;
    let a = call(&gw, "GET", "/r/subscription?deviceId=x", &[], "").await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.error_code(),
        None,
        "the upstream's answer, not countersign's"
    );
    assert_eq!(a.text(), r#"{"error":"Invalid signature","success":false}"#);
    assert_eq!(fake.stats().rejected, 1);
}

#[tokio::test]
async fn timestamp_unit_ms_is_what_an_ms_upstream_expects() {
    let (addr, _fake, _stop) = start_fake!(Fake::new(Config::default()));
    let (addr_ms, _fake_ms, _stop_ms) = start_fake!(Fake::new(Config {
        timestamp_ms: true,
        ..Config::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let ms = format!("{}\ntimestamp_unit = \"ms\"", derived());
    let gw = gateway(&route_toml(dir.path(), &route(addr, &ms))).await;
    let a = call(&gw, "GET", "/r/subscription?deviceId=x", &[], "").await;
    assert_eq!(a.status, 401);
    assert!(
        a.text().contains("Invalid or expired timestamp"),
        "{}",
        a.text()
    );
    let gw = gateway(&route_toml(&dir.path().join("2"), &route(addr_ms, &ms))).await;
    let a = call(&gw, "GET", "/r/subscription?deviceId=x", &[], "").await;
    assert_eq!(a.status, 200, "{}", a.text());
}

#[test]
fn check_refuses_a_non_hex_salt_without_printing_it() {
    let text = route_toml(
        std::path::Path::new("/tmp/x"),
        &route(
            "127.0.0.1:1".parse().unwrap(),
            "app_secret = \"s\"\napp_salt = \"not-hex-SALTVALUE\"",
        ),
    );
    let problems = countersign::kinds::from_toml(&text).unwrap_err();
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|p| p.starts_with("routes.r.app_salt: must be hex")),
        "{shown:?}"
    );
    assert!(!format!("{shown:?}").contains("SALTVALUE"));
}
