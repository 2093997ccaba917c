//! The oauth1 kind end to end: against countersign's strict fake
//! (`fake::oauth1`) and against oauthlib's own ResourceEndpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use bytes::Bytes;
use countersign::fake::oauth1::{self, Config, Fake};
use http_body_util::Full;
use support::*;

fn route(upstream: &str, extra: &str) -> String {
    format!(
        r#"kind = "oauth1"
upstream = "{upstream}"
consumer_key = "{}"
consumer_secret = {:?}
token = "{}"
token_secret = {:?}
{extra}"#,
        oauth1::DEMO_CONSUMER_KEY,
        oauth1::DEMO_CONSUMER_SECRET,
        oauth1::DEMO_TOKEN,
        oauth1::DEMO_TOKEN_SECRET,
    )
}

async fn call(gw: &Gw, method: &str, path: &str, ct: Option<&str>, body: &str) -> Answer {
    let mut req = http::Request::builder().method(method).uri(gw.url(path));
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    send(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

#[tokio::test]
async fn every_method_signs_queries_and_form_bodies_the_fake_accepts() {
    for method in ["HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT"] {
        let (addr, fake, _stop) = start_fake!(Fake::new(Config::default()));
        let dir = tempfile::tempdir().unwrap();
        let extra = format!("signature_method = \"{method}\"\nrealm = \"Photos\"");
        let gw = gateway(&route_toml(
            dir.path(),
            &route(&format!("http://{addr}/1.1"), &extra),
        ))
        .await;
        let a = call(
            &gw,
            "GET",
            "/r/statuses/home.json?count=2&q=a%20b+c&since=~x",
            None,
            "",
        )
        .await;
        assert_eq!(a.status, 200, "{method}: {}", a.text());
        let a = call(&gw, "POST", "/r/statuses/update.json?x=1", FORM, "status=Hello%20Ladies+%2B+Gentlemen%2C+a+signed+OAuth+request%21&include_entities=true").await;
        assert_eq!(a.status, 200, "{method}: {}", a.text());
        // A JSON body is not part of the base string, and streams.
        let a = call(
            &gw,
            "POST",
            "/r/items",
            Some("application/json"),
            r#"{"a":1}"#,
        )
        .await;
        assert_eq!(a.status, 200, "{method}: {}", a.text());
        let stats = fake.stats();
        assert!(stats.problems.is_empty(), "{method}: {:?}", stats.problems);
        assert_eq!(stats.accepted, 3);
        assert_eq!(stats.methods.get(method), Some(&3));
    }
}

#[tokio::test]
async fn concurrent_requests_never_reuse_a_nonce_and_a_callers_oauth_params_are_dropped() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(&format!("http://{addr}"), ""),
    ))
    .await;
    let calls = (0..30).map(|i| {
        let url = gw.url(&format!("/r/x?i={i}&oauth_signature=forged"));
        async move {
            send(
                http::Request::get(url)
                    .header("authorization", "OAuth oauth_consumer_key=\"evil\"")
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
    assert!(stats.problems.is_empty(), "{:?}", stats.problems);
    assert_eq!(stats.accepted, 30);
}

#[tokio::test]
async fn without_a_token_the_consumer_alone_signs() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config {
        allow_no_token: true,
        ..Config::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "kind = \"oauth1\"\nupstream = \"http://{addr}\"\nconsumer_key = \"{}\"\nconsumer_secret = {:?}\n",
        oauth1::DEMO_CONSUMER_KEY,
        oauth1::DEMO_CONSUMER_SECRET
    );
    let gw = gateway(&route_toml(dir.path(), &toml)).await;
    let a = call(&gw, "GET", "/r/public?x=1", None, "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(fake.stats().accepted, 1);
}

#[tokio::test]
async fn oauthlib_accepts_what_countersign_signs() {
    if !py::has("oauthlib") {
        return;
    }
    for method in ["HMAC-SHA1", "HMAC-SHA256"] {
        let judge = py::Judge::start(
            "oauthlib_resource.py",
            &[
                "--consumer-key",
                oauth1::DEMO_CONSUMER_KEY,
                "--consumer-secret",
                oauth1::DEMO_CONSUMER_SECRET,
                "--token",
                oauth1::DEMO_TOKEN,
                "--token-secret",
                oauth1::DEMO_TOKEN_SECRET,
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let extra = format!("signature_method = \"{method}\"");
        let gw = gateway(&route_toml(dir.path(), &route(&judge.url("/api"), &extra))).await;
        let a = call(
            &gw,
            "GET",
            "/r/photos?file=vacation.jpg&size=original",
            None,
            "",
        )
        .await;
        assert_eq!(a.status, 200, "{method}: {}", a.text());
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["path"], "/api/photos");
        assert_eq!(v["signature_method"], method);
        let a = call(
            &gw,
            "POST",
            "/r/statuses/update.json",
            FORM,
            "status=Hello+Ladies+%2B+Gentlemen&include_entities=true",
        )
        .await;
        assert_eq!(a.status, 200, "{method}: {}", a.text());
    }
}

#[tokio::test]
async fn no_secret_in_logs_at_trace_level() {
    let (addr, _fake, _stop) = start_fake!(Fake::new(Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let p = spawn_binary(
        dir.path(),
        &route_toml(
            dir.path(),
            &route(
                &format!("http://{addr}"),
                "signature_method = \"PLAINTEXT\"",
            ),
        ),
        "trace",
    )
    .await;
    let a = send(
        http::Request::get(p.url("/r/a?b=1"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let logs = p.logs();
    assert!(logs.contains("TRACE"));
    // PLAINTEXT puts the key itself in the header: percent-encoded there.
    for secret in [oauth1::DEMO_CONSUMER_SECRET, oauth1::DEMO_TOKEN_SECRET] {
        let encoded = countersign::canonical::pct::encode(secret.as_bytes());
        assert!(
            !logs.contains(secret) && !logs.contains(&encoded),
            "a secret in the logs"
        );
    }
    assert!(
        !logs.contains("oauth_signature="),
        "the signature header in the logs"
    );
}
