//! The admin listener: health, per-route readiness, Prometheus metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::time::Duration;

use support::*;

async fn admin_for(gw: &Gw) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(countersign::admin::serve(
        gw.gateway.clone(),
        listener,
        std::future::pending(),
    ));
    format!("http://{addr}")
}

async fn get(url: &str) -> Answer {
    send(
        http::Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn readiness_shows_the_session_before_and_after_the_first_login() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let admin = admin_for(&gw).await;

    assert_eq!(get(&format!("{admin}/healthz")).await.status, 200);
    let before: serde_json::Value =
        serde_json::from_slice(&get(&format!("{admin}/readyz")).await.body).unwrap();
    assert_eq!(before["status"], "ready");
    assert_eq!(before["routes"]["x"]["kind"], "xrtc");
    assert_eq!(before["routes"]["x"]["session"]["held"], false);
    assert_eq!(
        before["routes"]["x"]["session"]["last_login_ms"],
        serde_json::Value::Null
    );

    assert_eq!(set_item(&gw, "a", "b").await.status, 200);
    let after = get(&format!("{admin}/readyz")).await;
    let v: serde_json::Value = serde_json::from_slice(&after.body).unwrap();
    assert_eq!(v["routes"]["x"]["session"]["held"], true);
    assert_eq!(v["routes"]["x"]["session"]["logins_ok"], 1);
    assert_eq!(v["routes"]["x"]["quota"]["used"], 2, "login + one call");
    assert_eq!(v["routes"]["x"]["rate_limit"]["per_second"], 20.0);
    // Nothing secret in it: not the key, not the session cookie.
    let text = after.text();
    assert!(!text.contains(API_KEY));
    for rec in fake.fake.stats().recent {
        for (n, value) in rec.headers {
            if n == "cookie" {
                for pair in value.split("; ") {
                    let secret = pair.split_once('=').unwrap().1;
                    assert!(!text.contains(secret), "session cookie in /readyz");
                }
            }
        }
    }
}

#[tokio::test]
async fn metrics_count_requests_logins_and_refusals() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        dir.path(),
        "rate_limit = { per_second = 1, burst = 2, wait = \"0s\" }",
    );
    let gw = gateway(&toml).await;
    let admin = admin_for(&gw).await;
    // login + 1 call use the burst of 2; the next call cannot wait: 429.
    assert_eq!(set_item(&gw, "m", "1").await.status, 200);
    assert_eq!(set_item(&gw, "m", "2").await.status, 429);
    assert_eq!(post(&gw.url("/no-such-route/x"), "").await.status, 404);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let m = get(&format!("{admin}/metrics")).await;
    assert_eq!(m.status, 200);
    let text = m.text();
    for line in [
        "countersign_requests_total{route=\"x\",status=\"200\"} 1",
        "countersign_requests_total{route=\"x\",status=\"429\"} 1",
        "countersign_requests_total{route=\"\",status=\"404\"} 1",
        "countersign_upstream_logins_total{route=\"x\",result=\"ok\"} 1",
        "countersign_rate_limited_total{route=\"x\"} 1",
        "countersign_quota_used{route=\"x\"} 2",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("countersign_request_duration_seconds_bucket{"));
    assert!(
        !text.contains("no-such-route"),
        "caller text became a label"
    );
}
