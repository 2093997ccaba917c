//! The xrtc kind end to end: gateway -> strict fake XRTC, on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;

#[tokio::test]
async fn sixty_concurrent_calls_on_a_cold_gateway_log_in_once() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let calls = (0..60).map(|i| {
        let url = gw.url("/x/v1/item/set");
        async move {
            post(
                &url,
                &format!("{{items:[{{\"portalid\":\"p1\",\"payload\":\"n{i}\"}}]}}"),
            )
            .await
        }
    });
    let answers = join_all(calls).await;
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(a.text().contains("servertimestamp"), "{}", a.text());
    }
    let stats = fake.fake.stats();
    assert_eq!(
        stats.logins.len(),
        1,
        "exactly one login: {:?}",
        stats.logins
    );
    assert_eq!(stats.rate_violations, 0);
    assert_eq!(stats.session_denials, 0);
}

#[tokio::test]
async fn killed_sessions_cause_one_spaced_relogin_and_replays() {
    let fake = fake_xrtc(|c| c.login_timeout = Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        dir.path(),
        "login_interval = \"1s\"",
    );
    let gw = gateway(&toml).await;
    assert_eq!(set_item(&gw, "p1", "first").await.status, 200);
    fake.fake.kill_sessions();
    let answers = join_all((0..20).map(|i| {
        let gw = &gw;
        async move { set_item(gw, "p1", &format!("after{i}")).await }
    }))
    .await;
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let stats = fake.fake.stats();
    assert_eq!(stats.logins.len(), 2, "one new login: {:?}", stats.logins);
    assert!(
        stats.logins[1] - stats.logins[0] >= 1000,
        "logins closer than login_interval: {:?}",
        stats.logins
    );
    assert_eq!(stats.login_rejections, 0);
    assert!(
        stats.session_denials >= 1,
        "the fake did deny the killed session"
    );
}

#[tokio::test]
async fn idle_session_is_renewed_before_use() {
    let fake = fake_xrtc(|c| {
        c.session_idle = Duration::from_secs(1);
        c.login_timeout = Duration::from_millis(200);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        dir.path(),
        "session_idle = \"1s\"\nlogin_interval = \"200ms\"",
    );
    let gw = gateway(&toml).await;
    assert_eq!(set_item(&gw, "p1", "a").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let a = set_item(&gw, "p1", "b").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let stats = fake.fake.stats();
    assert_eq!(stats.logins.len(), 2);
    // The gateway knew the session was dead: it never sent the stale cookie.
    assert_eq!(stats.session_denials, 0);
}

#[tokio::test]
async fn stream_chunks_reach_the_caller_as_they_are_sent() {
    let fake = fake_xrtc(|c| c.get_item_timeout = Duration::from_millis(2500)).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    assert_eq!(set_item(&gw, "s1", "one").await.status, 200);
    let started = Instant::now();
    let req = Request::post(gw.url("/x/v1/item/get"))
        .body(Full::new(Bytes::from_static(
            br#"{portals:[{"portalid":"s1"}],"mode":"stream","schedule":"FIFO"}"#,
        )))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    let mut second_sent = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            arrivals.push(started.elapsed());
            text.push_str(&String::from_utf8_lossy(data));
            if !second_sent {
                second_sent = true;
                assert_eq!(set_item(&gw, "s1", "two").await.status, 200);
            }
        }
    }
    let ended = started.elapsed();
    assert!(
        text.contains("\"one\"") && text.contains("\"two\""),
        "{text}"
    );
    assert!(
        text.contains('\n'),
        "stream batches are newline-separated: {text}"
    );
    // Measured arrival: the first chunk came long before the upstream finished.
    assert!(
        ended >= Duration::from_millis(2000),
        "stream ended early: {ended:?}"
    );
    assert!(
        arrivals[0] + Duration::from_millis(1000) < ended,
        "first chunk at {:?}, end at {ended:?}",
        arrivals[0]
    );
}

#[tokio::test]
async fn quota_exhaustion_survives_a_restart() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        dir.path(),
        "quota = { per_month = 5 }\nlogin_interval = \"100ms\"",
    );
    let gw = gateway(&toml).await;
    // The login takes one unit: four calls fit in five.
    for i in 0..4 {
        let a = set_item(&gw, "q", &format!("n{i}")).await;
        assert_eq!(a.status, 200, "call {i}: {}", a.text());
    }
    let a = set_item(&gw, "q", "over").await;
    assert_eq!(a.status, 429);
    assert_eq!(a.error_code(), Some("quota_exhausted"));
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=31 * 86400).contains(&retry), "retry-after {retry}");
    gw.stop().await;

    let gw = gateway(&toml).await;
    let a = set_item(&gw, "q", "after-restart").await;
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!(a.error_code(), Some("quota_exhausted"));
    assert_eq!(
        fake.fake.stats().requests,
        5,
        "the upstream saw exactly the quota"
    );
}

#[tokio::test]
async fn bursts_above_the_rate_are_queued_not_sent() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let started = Instant::now();
    let answers = join_all((0..50).map(|i| {
        let gw = &gw;
        async move { set_item(gw, "r", &format!("n{i}")).await }
    }))
    .await;
    let took = started.elapsed();
    assert!(answers.iter().all(|a| a.status == 200));
    assert_eq!(fake.fake.stats().rate_violations, 0);
    // 51 permits (login included) at 20/s with a burst of 20: >= 31 intervals of 50 ms.
    assert!(
        took >= Duration::from_millis(1500),
        "took {took:?}: the gateway did not queue"
    );
}

#[tokio::test]
async fn the_fakes_rate_check_does_fail_without_the_gateways_limit() {
    // Control for the test above: with the gateway's limit set far above the
    // upstream's, the same burst makes the fake record violations.
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        dir.path(),
        "rate_limit = { per_second = 10000, burst = 10000 }",
    );
    let gw = gateway(&toml).await;
    join_all((0..50).map(|i| {
        let gw = &gw;
        async move { set_item(gw, "r", &format!("n{i}")).await }
    }))
    .await;
    assert!(fake.fake.stats().rate_violations > 0);
}

#[tokio::test]
async fn restart_within_login_interval_waits_then_throttles_past_the_deadline() {
    let fake = fake_xrtc(|c| c.login_timeout = Duration::from_secs(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        dir.path(),
        "login_interval = \"3s\"\nrequest_timeout = \"1s\"",
    );
    let gw = gateway(&toml).await;
    assert_eq!(set_item(&gw, "l", "a").await.status, 200);
    gw.stop().await;
    // A new process on the same state_dir must not log in again within 3 s;
    // this request's 1 s deadline is too short to wait for it.
    let gw = gateway(&toml).await;
    let a = set_item(&gw, "l", "b").await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.error_code(), Some("login_throttled"));
    assert!(a.headers.contains_key("retry-after"));
    assert_eq!(fake.fake.stats().logins.len(), 1);
    assert_eq!(fake.fake.stats().login_rejections, 0);
}

#[tokio::test]
async fn callers_own_login_is_answered_locally() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let a = post(
        &gw.url("/x/v1/auth/login"),
        r#"{"accountid":"ACx","apikey":"placeholder"}"#,
    )
    .await;
    assert_eq!(a.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert!(v["servertimestamp"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(a.headers["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("JSESSIONID="));
    assert_eq!(
        fake.fake.stats().requests,
        0,
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn registration_passes_through_without_session() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let a = post(
        &gw.url("/x/v1/auth/registrationstart"),
        r#"{"email":"dev@example.com"}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("registrationtoken"));
    let stats = fake.fake.stats();
    assert!(stats.logins.is_empty(), "registration needs no login");
    let rec = stats.recent.last().unwrap();
    assert!(rec.headers.iter().all(|(n, _)| n != "cookie"));
    // Plain http:// upstreams get HTTP/1.1 (no ALPN without TLS).
    assert_eq!(rec.version, "HTTP/1.1");
}

#[tokio::test]
async fn callers_cookies_and_forwarding_headers_never_reach_the_upstream() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let req = Request::post(gw.url("/x/v1/item/set"))
        .header("cookie", "JSESSIONID=caller-chosen; AWSALBAPP-0=caller")
        .header("x-forwarded-for", "10.1.2.3")
        .header("forwarded", "for=10.1.2.3")
        .header("via", "1.1 internal-proxy")
        .header("x-countersign-token", "not-for-upstream")
        .header("x-app", "kept")
        .body(Full::new(Bytes::from_static(
            br#"{items:[{"portalid":"h","payload":"x"}]}"#,
        )))
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let stats = fake.fake.stats();
    let rec = stats
        .recent
        .iter()
        .rev()
        .find(|r| r.path_and_query == "/v1/item/set")
        .unwrap();
    let header = |name: &str| {
        rec.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let cookie = header("cookie").unwrap();
    assert!(!cookie.contains("caller"), "{cookie}");
    assert!(cookie.contains("JSESSIONID=") && cookie.contains("AWSALBAPP-0="));
    for h in ["x-forwarded-for", "forwarded", "via", "x-countersign-token"] {
        assert_eq!(header(h), None, "{h} leaked upstream");
    }
    assert_eq!(header("x-app"), Some("kept"));
    // And the upstream's cookies never reach the caller.
    assert!(!a.headers.contains_key("set-cookie"));
}

#[tokio::test]
async fn bodies_are_forwarded_byte_for_byte() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let body = "{items:[{\"portalid\":\"b\", \"payload\":\"caf\u{e9} \\u00e9 \\\"q\\\"\"}]}";
    let a = post(&gw.url("/x/v1/item/set"), body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let rec = fake
        .fake
        .stats()
        .recent
        .into_iter()
        .rev()
        .find(|r| r.path_and_query == "/v1/item/set")
        .unwrap();
    assert_eq!(rec.body.len(), body.len());
    let got = post(&gw.url("/x/v1/item/get"), r#"{portals:[{"portalid":"b"}]}"#).await;
    assert!(got.text().contains("caf"), "{}", got.text());
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let a = post(
        &gw.url("/x/v1/item/set"),
        r#"{items:[{"portalid":"bad id!","payload":"x"}]}"#,
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), None, "an upstream error, not countersign's");
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["error"]["errorcode"], 30);
}

#[tokio::test]
async fn wrong_credentials_give_login_failed_with_the_upstreams_words() {
    let fake = fake_xrtc(|c| c.accounts = vec![(ACCOUNT.into(), "another-key".into())]).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let a = set_item(&gw, "p", "x").await;
    assert_eq!(a.status, 502);
    assert_eq!(a.error_code(), Some("login_failed"));
    assert!(
        a.text().contains("35"),
        "carries the upstream's error: {}",
        a.text()
    );
    assert!(!a.text().contains(API_KEY));
}
