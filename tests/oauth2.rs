//! The oauth2 kind end to end: gateway -> strict fake token endpoint and
//! resource server (`fake::oauth2`), on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use countersign::fake::oauth2::{self, Config, Fake, TokenEndpoint};
use http_body_util::Full;
use support::*;

fn route(addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"kind = "oauth2"
upstream = "http://{addr}/api"
token_url = "http://{addr}/token"
client_id = "{}"
client_secret = "{}"
scope = "read"
{extra}"#,
        oauth2::DEMO_CLIENT_ID,
        oauth2::DEMO_CLIENT_SECRET,
    )
}

fn config(tune: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    tune(&mut c);
    c
}

async fn get(gw: &Gw, path: &str) -> Answer {
    send(
        http::Request::get(gw.url(path))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
}

/// The bearer token a recorded resource request carried.
fn bearer(fake: &Fake) -> String {
    fake.stats()
        .recent
        .iter()
        .rev()
        .find_map(|r| r.header("authorization").map(str::to_string))
        .and_then(|h| h.strip_prefix("Bearer ").map(str::to_string))
        .expect("a resource request carried a token")
}

#[tokio::test]
async fn forty_concurrent_first_calls_cost_one_token_request() {
    let (addr, fake, _stop) = start_fake!(Fake::new(config(|c| {
        // Slow enough that the forty calls overlap the token request.
        c.token_latency = Duration::from_millis(200);
    })));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    let calls = (0..40).map(|i| {
        let url = gw.url(&format!("/r/items/{i}?q=1"));
        async move {
            send(
                http::Request::get(url)
                    .header("authorization", "Bearer caller-must-not-pass")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
        }
    });
    for a in futures_util::future::join_all(calls).await {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let stats = fake.stats();
    assert_eq!(stats.token_requests, 1);
    assert_eq!(stats.token_in_flight_max, 1);
    assert_eq!(stats.api_accepted, 40);
    // The caller's own Authorization never reached the upstream.
    assert!(stats
        .recent
        .iter()
        .all(|r| r.header("authorization") != Some("Bearer caller-must-not-pass")));
    // What arrived is the caller's request under the base path.
    let echoed: serde_json::Value =
        serde_json::from_slice(&get(&gw, "/r/x/y?a=b").await.body).unwrap();
    assert_eq!(echoed["path"], "/api/x/y");
    assert_eq!(echoed["query"], "a=b");
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire_so_no_call_meets_an_expired_one() {
    // Tokens live 2 s: renewed at half their life (refresh_before is 60 s).
    let (addr, fake, _stop) = start_fake!(Fake::new(config(|c| {
        c.token_lifetime = Some(Duration::from_secs(2));
    })));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(addr, "login_interval = \"100ms\""),
    ))
    .await;
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(4500) {
        let a = get(&gw, "/r/ping").await;
        assert_eq!(a.status, 200, "{}", a.text());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = fake.stats();
    assert_eq!(
        stats.avoidable_rejections, 0,
        "a call carried an expired token"
    );
    assert_eq!(stats.api_accepted, calls);
    assert!(
        (3..=6).contains(&stats.tokens_issued),
        "one token a second or so, not one per call: {}",
        stats.tokens_issued
    );
}

#[tokio::test]
async fn a_revoked_token_costs_one_new_token_and_one_replay() {
    let (addr, fake, _stop) = start_fake!(Fake::new(config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(addr, "login_interval = \"100ms\""),
    ))
    .await;
    assert_eq!(get(&gw, "/r/a").await.status, 200);
    let first = bearer(&fake);
    fake.revoke_all();
    let a = send(
        http::Request::post(gw.url("/r/orders"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"n":1}"#)))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let echoed: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(echoed["body_length"], 7, "the replay carried the body");
    let stats = fake.stats();
    assert_eq!(stats.token_requests, 2);
    assert_eq!(stats.api_rejected.get("revoked"), Some(&1));
    assert_ne!(bearer(&fake), first);
}

#[tokio::test]
async fn a_body_over_replay_body_max_streams_and_its_401_reaches_the_caller() {
    let (addr, fake, _stop) = start_fake!(Fake::new(config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(
            addr,
            "login_interval = \"100ms\"\nreplay_body_max = \"1KiB\"",
        ),
    ))
    .await;
    assert_eq!(get(&gw, "/r/a").await.status, 200);
    fake.revoke_all();
    // A chunked upload (hyper's path, streamed): not kept, so not replayed.
    let chunks =
        futures_util::stream::iter((0..4).map(|_| {
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'x'; 1024])))
        }));
    let body = http_body_util::StreamBody::new(chunks);
    let req = http::Request::post(gw.url("/r/upload")).body(body).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::StreamBody<_>>();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 401, "the upstream's own answer, unchanged");
    // The next call gets a new token (the rejected one was dropped).
    assert_eq!(get(&gw, "/r/a").await.status, 200);
    assert_eq!(fake.stats().token_requests, 2);
}

#[tokio::test]
async fn token_endpoint_errors_are_login_failed_with_the_rfc_6749_error() {
    let (addr, _fake, _stop) = start_fake!(Fake::new(config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let wrong = route(addr, "").replace(oauth2::DEMO_CLIENT_SECRET, "not-the-secret");
    let gw = gateway(&route_toml(dir.path(), &wrong)).await;
    let a = get(&gw, "/r/a").await;
    assert_eq!(a.status, 502);
    assert_eq!(a.error_code(), Some("login_failed"));
    assert!(a.text().contains("invalid_client"), "{}", a.text());
    assert!(!a.text().contains("not-the-secret"));
    // A scope the server does not know: its error and description.
    let (addr, _fake, _stop2) = start_fake!(Fake::new(config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(addr, "").replace("scope = \"read\"", "scope = \"admin\""),
    ))
    .await;
    let a = get(&gw, "/r/a").await;
    assert_eq!(a.error_code(), Some("login_failed"));
    assert!(a.text().contains("invalid_scope"), "{}", a.text());
}

#[tokio::test]
async fn an_unreachable_token_endpoint_leaves_a_valid_token_in_use() {
    let (addr, fake, _stop) = start_fake!(Fake::new(config(|c| {
        c.token_lifetime = Some(Duration::from_secs(3));
    })));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(addr, "login_interval = \"100ms\""),
    ))
    .await;
    assert_eq!(get(&gw, "/r/a").await.status, 200);
    fake.set_token_endpoint(TokenEndpoint::Down);
    // Past half its life (due for renewal), before its end: still served.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    for _ in 0..3 {
        assert_eq!(get(&gw, "/r/a").await.status, 200);
    }
    assert!(fake.stats().token_requests >= 2, "a renewal was tried");
    // Expired, endpoint still down: the caller hears it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let a = get(&gw, "/r/a").await;
    assert_eq!(a.error_code(), Some("login_failed"), "{}", a.text());
    assert_eq!(fake.stats().avoidable_rejections, 0);
    fake.set_token_endpoint(TokenEndpoint::Ok);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(get(&gw, "/r/a").await.status, 200);
}

#[tokio::test]
async fn client_secret_post_and_token_params_reach_the_token_endpoint() {
    let (addr, fake, _stop) = start_fake!(Fake::new(config(|c| {
        c.auth_methods = vec![oauth2::AuthMethod::ClientSecretPost];
        c.required_params = vec![oauth2::RequiredParam {
            name: "audience".into(),
            value: "https://api.example.com".into(),
        }];
    })));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(
            addr,
            "client_auth = \"post\"\ntoken_params = { audience = \"https://api.example.com\" }",
        ),
    ))
    .await;
    let a = get(&gw, "/r/a").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(fake.stats().tokens_issued, 1);
}

#[tokio::test]
async fn no_secret_or_token_in_logs_at_trace_level() {
    let (addr, fake, _stop) = start_fake!(Fake::new(config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let p = spawn_binary(
        dir.path(),
        &route_toml(dir.path(), &route(addr, "")),
        "trace",
    )
    .await;
    for path in ["/r/a", "/r/b?x=1"] {
        let a = send(
            http::Request::get(p.url(path))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let token = bearer(&fake);
    let logs = p.logs();
    assert!(logs.contains("TRACE"), "trace logging is on");
    assert!(
        !logs.contains(oauth2::DEMO_CLIENT_SECRET),
        "client secret in logs"
    );
    assert!(!logs.contains(&token), "access token in logs");
    // The Basic header's base64 would reveal the secret too.
    assert!(!logs.contains("Basic "), "a Basic credential in logs");
}

#[tokio::test]
async fn authlibs_token_endpoint_and_resource_accept_countersigns_requests() {
    if !py::has("authlib") {
        return;
    }
    for (auth, methods) in [
        ("basic", "client_secret_basic"),
        ("post", "client_secret_post"),
    ] {
        let judge = py::Judge::start(
            "authlib_token_server.py",
            &["--expires-in", "3600", "--auth-methods", methods],
        );
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "kind = \"oauth2\"\nupstream = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nscope = \"read\"\nclient_auth = \"{auth}\"\n",
            judge.url("/api"),
            judge.url("/token"),
            oauth2::DEMO_CLIENT_ID,
            oauth2::DEMO_CLIENT_SECRET,
        );
        let gw = gateway(&route_toml(dir.path(), &toml)).await;
        let calls = (0..10).map(|i| {
            let url = gw.url(&format!("/r/things/{i}"));
            async move {
                send(
                    http::Request::get(url)
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
                .await
            }
        });
        for a in futures_util::future::join_all(calls).await {
            assert_eq!(a.status, 200, "{auth}: {}", a.text());
            let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
            assert_eq!(v["client_id"], oauth2::DEMO_CLIENT_ID);
        }
        // authlib revokes; the next call gets a new token and is replayed.
        let revoked = send(
            http::Request::post(judge.url("/_revoke"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(revoked.status, 200);
        let a = send(
            http::Request::post(gw.url("/r/orders"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200, "{auth}: {}", a.text());
        let stats: serde_json::Value = serde_json::from_slice(
            &send(
                http::Request::get(judge.url("/_stats"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .body,
        )
        .unwrap();
        assert_eq!(stats["tokens_issued"], 2, "{auth}: {stats}");
    }
}
