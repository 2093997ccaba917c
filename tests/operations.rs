//! The operators' view holds: every metric the Prometheus alert rules
//! (`deploy/prometheus/`) and the Grafana dashboard (`deploy/grafana/`)
//! name is one a live gateway exports on `/metrics`, after calls that make
//! its labelled series exist (a login, a failed login, a replay, an
//! unreachable upstream, an unknown route, a rate-limited call, a rejected reload), with the
//! shared state store (Redis) whose health the rules watch.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::redis_server::{self, RedisServer};
use support::*;

/// Every `countersign_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("countersign_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[tokio::test]
async fn every_metric_the_alert_rules_and_the_dashboard_name_is_exported() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let fake = fake_xrtc(|c| c.login_timeout = std::time::Duration::from_millis(100)).await;
    let refused = refused_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
state_dir = "{state}"
shutdown_grace = "2s"
state = "{redis}"
state_prefix = "ops"

[routes.x]
kind = "xrtc"
upstream = "http://{fake}"
account_id = "{ACCOUNT}"
api_key = "{API_KEY}"
login_interval = "100ms"
quota = {{ per_month = 1000 }}

[routes.bad]
kind = "xrtc"
upstream = "http://{fake}"
account_id = "{ACCOUNT}"
api_key = "wrong-key-0000000000000000000000"
login_interval = "100ms"

[routes.gone]
kind = "utilsio"
upstream = "http://{refused}"
app_id = "ops"
rate_limit = {{ per_second = 0.01, burst = 1, wait = "0s" }}
app_hash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
"#,
        state = dir.path().display(),
        redis = redis.url(),
        fake = fake.addr,
    );
    let gw = gateway(&toml).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    tokio::spawn(countersign::admin::serve(
        gw.gateway.clone(),
        listener,
        std::future::pending(),
    ));

    assert_eq!(set_item(&gw, "o", "1").await.status, 200);
    fake.fake.kill_sessions();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let a = set_item(&gw, "o", "2").await;
    assert_eq!(a.status, 200, "replayed: {}", a.text());
    let a = post(
        &gw.url("/bad/v1/item/set"),
        r#"{items:[{"portalid":"o","payload":"x"}]}"#,
    )
    .await;
    assert_eq!(a.error_code(), Some("login_failed"), "{}", a.text());
    let a = send(
        http::Request::get(gw.url("/gone/x?deviceId=d"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.error_code(), Some("upstream_unreachable"), "{}", a.text());
    let a = send(
        http::Request::get(gw.url("/gone/x?deviceId=d"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.error_code(), Some("rate_limited"), "{}", a.text());
    assert_eq!(post(&gw.url("/nope/x"), "").await.status, 404);
    assert!(!countersign::server::reload(
        &gw.gateway,
        Path::new("/nonexistent/countersign.toml")
    ));

    let exported = send(
        http::Request::get(format!("http://{admin}/metrics"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
    .text();
    // The names of series with a sample (not only # HELP / # TYPE lines).
    let series: BTreeSet<String> = exported
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let rules = read("deploy/prometheus/countersign-alerts.yml");
    let dashboard = read("deploy/grafana/countersign-dashboard.json");
    let mut used = metric_names(&rules);
    used.extend(metric_names(&dashboard));
    assert!(used.len() >= 12, "too few names found: {used:?}");
    let missing: Vec<_> = used.iter().filter(|n| !series.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but not exported: {missing:?}\n{exported}"
    );
    eprintln!("{} metric names checked: {used:?}", used.len());
}
