//! The tts kind end to end: gateway -> strict fake TTS Utility Server (and
//! its spider host), on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use countersign::fake::tts::{self, Config, Fake, RotateAnswer};
use http_body_util::Full;
use support::*;

const ID: &str = tts::DEMO_IDENTIFIER;
const HELD: &str = "[held by countersign]";

fn route(addr: std::net::SocketAddr, extra: &str) -> String {
    tts_route_toml(addr, extra)
}

fn fake_config(tune: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config {
        login_interval: Duration::from_millis(300),
        ..Default::default()
    };
    tune(&mut c);
    c
}

async fn call(gw: &Gw, method: &str, path: &str, ct: Option<&str>, body: &str) -> Answer {
    let mut req = http::Request::builder().method(method).uri(gw.url(path));
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    send(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

async fn json(gw: &Gw, path: &str, body: &str) -> Answer {
    call(gw, "POST", path, Some("application/json"), body).await
}

async fn form(gw: &Gw, path: &str, body: &str) -> Answer {
    call(
        gw,
        "POST",
        path,
        Some("application/x-www-form-urlencoded"),
        body,
    )
    .await
}

async fn stats_call(gw: &Gw) -> Answer {
    json(
        gw,
        &format!("/r/{ID}"),
        r#"{"action":"fetchStats","month":"2025-01","output":"json"}"#,
    )
    .await
}

#[tokio::test]
async fn twenty_concurrent_first_calls_make_one_login() {
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    let calls = (0..20).map(|_| stats_call(&gw));
    for a in futures_util::future::join_all(calls).await {
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(a.text().contains("fetchStats"), "{}", a.text());
    }
    let s = fake.stats();
    assert_eq!(s.logins, 1);
    assert_eq!(s.journal.rejected, 0, "{:#?}", s.journal.recent);
    // Every call carried the held session and the documented headers.
    let rec = s.journal.recent.last().unwrap();
    assert_eq!(rec.header("member-email"), Some(tts::DEMO_EMAIL));
    assert!(rec.header("session-id").is_some_and(|v| !v.is_empty()));
    assert_eq!(rec.header("client_ver"), Some("V4.21.04"));
    assert_eq!(
        rec.header("user-agent"),
        Some("TTS-Utility-Client/V4.21.04")
    );
}

#[tokio::test]
async fn an_active_session_elsewhere_is_terminated_then_login_waits_its_interval() {
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|_| {})));
    fake.open_foreign_session();
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    let started = Instant::now();
    let a = stats_call(&gw).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // login refused -> terminate -> second login spaced by login_interval.
    assert!(started.elapsed() >= Duration::from_millis(300));
    let s = fake.stats();
    assert_eq!(s.terminations, 1);
    assert_eq!(s.logins, 1);
    assert_eq!(s.login_spacing_violations, 0);
    let paths: Vec<_> = s
        .journal
        .recent
        .iter()
        .map(|r| r.path_and_query.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        ["member_login", "terminate_session", "member_login", ID]
    );

    // force_login = false leaves the other session alone and says why.
    let (addr, fake, _stop2) = start_fake!(Fake::new(fake_config(|_| {})));
    fake.open_foreign_session();
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, "force_login = false"))).await;
    let a = stats_call(&gw).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.error_code(), Some("login_failed"));
    assert!(
        a.text().contains("Active login session found"),
        "{}",
        a.text()
    );
    assert_eq!(fake.stats().terminations, 0);
}

#[tokio::test]
async fn an_expired_session_means_one_relogin_and_one_fresh_replay() {
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    assert_eq!(stats_call(&gw).await.status, 200);
    fake.kill_sessions();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let a = stats_call(&gw).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let s = fake.stats();
    assert_eq!(s.logins, 2);
    assert_eq!(s.expired_session_uses, 1);
    assert_eq!(s.login_spacing_violations, 0);
    let n = s.journal.recent.len();
    let (rejected, replay) = (&s.journal.recent[n - 3], &s.journal.recent[n - 1]);
    assert_eq!(rejected.status, 401);
    assert_eq!(replay.status, 200);
    assert_ne!(rejected.header("session-id"), replay.header("session-id"));
}

#[tokio::test]
async fn idle_sessions_are_renewed_before_the_upstream_drops_them() {
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|c| {
        c.session_idle = Duration::from_millis(600);
    })));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(addr, "session_idle = \"600ms\""),
    ))
    .await;
    assert_eq!(stats_call(&gw).await.status, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The fake's expired session is still "active" for a login until used, so
    // a renewal meets it: terminate + login, invisibly to the caller.
    assert_eq!(stats_call(&gw).await.status, 200);
    let s = fake.stats();
    assert_eq!(s.logins, 2);
    assert_eq!(
        s.expired_session_uses, 0,
        "no request went out on a dead session"
    );
}

#[tokio::test]
async fn every_endpoint_family_goes_through() {
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|_| {})));
    let spider_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spider_addr = spider_listener.local_addr().unwrap();
    let (spider_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(fake.clone().serve_spider(spider_listener, None, async {
        let _ = rx.await;
    }));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("spider_upstream = \"http://{spider_addr}\"\nmodule = \"SPIDER\"");
    let gw = gateway(&route_toml(dir.path(), &route(addr, &extra))).await;

    // customers/*: an empty body becomes a filled JSON body with a checksum.
    let a = call(
        &gw,
        "POST",
        &format!("/r/{ID}/customers/get_users"),
        None,
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains(tts::DEMO_EMAIL));
    let a = form(&gw, &format!("/r/{ID}/customers/reset_password"), "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("Password reset successfully"));
    // Action calls, JSON and form.
    for body in [
        r#"{"action":"liveLogs","lastId":"","output":"json","limit":50}"#,
        r#"{"action":"hitLog","logDate":"2025-01-15","output":"json"}"#,
        r#"{"action":"fetchStats","date":"2025-01-15","ratio":0.1,"deep":{"é":[1e16,-0.0]}}"#,
    ] {
        let a = json(&gw, &format!("/r/{ID}"), body).await;
        assert_eq!(a.status, 200, "{body}: {}", a.text());
    }
    for body in [
        "action=addSitemap&sitemap=https%3A%2F%2Fwww.example.com%2Fsitemap.xml",
        "action=updateSitemap&sitemap=https%3A%2F%2Fwww.example.com%2Fs2.xml",
        "action=updateTTL&ttl=60",
    ] {
        let a = form(&gw, &format!("/r/{ID}"), body).await;
        assert_eq!(a.status, 200, "{body}: {}", a.text());
    }
    // Spider actions go to the main upstream with the session.
    for (path, action) in [
        (
            "/r/https://www.example.com/products/item-123",
            "deleteCache",
        ),
        ("/r/https://www.example.com", "purge"),
        ("/r/https://www.example.com", "fetchCustomerOrders"),
        ("/r/https://www.example.com", "getWarmupCacheStatus"),
    ] {
        let a = form(&gw, path, &format!("action={action}")).await;
        assert_eq!(a.status, 200, "{action}: {}", a.text());
        assert!(a.text().contains(action));
    }
    // The spider health check goes to the spider host, without a session.
    let main_before = fake.stats().journal.requests;
    let a = call(&gw, "HEAD", "/r/https://www.example.com/products", None, "").await;
    assert_eq!(a.status, 200);
    let s = fake.stats();
    assert_eq!(
        s.journal.requests,
        main_before + 1,
        "one request, to the spider"
    );
    let head = s.journal.recent.last().unwrap();
    assert_eq!(head.method, "HEAD");
    assert!(head.header("session-id").is_none());
    assert_eq!(head.header("x-tts-module"), Some("SPIDER"));
    assert_eq!(s.journal.rejected, 0, "{:#?}", s.journal.recent);
    assert_eq!(s.logins, 1);
    drop(spider_stop);
}

#[tokio::test]
async fn the_callers_own_login_logout_and_terminate_act_on_the_held_session() {
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    let login = format!("/r/{ID}/customers/member_login");
    let a = json(&gw, &login, r#"{"email_id":"someone@else","password":"x"}"#).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains(HELD), "{}", a.text());
    // The held session works; the caller's login made exactly one upstream login.
    assert_eq!(stats_call(&gw).await.status, 200);
    let s = fake.stats();
    assert_eq!(s.logins, 1);
    let session_id = s
        .journal
        .recent
        .last()
        .unwrap()
        .header("session-id")
        .unwrap()
        .to_string();
    assert!(!a.text().contains(&session_id));

    let a = form(&gw, &format!("/r/{ID}/customers/member_logout"), "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("Logged-out"));
    // Nothing held now: a second logout sends nothing.
    let before = fake.stats().journal.requests;
    let a = form(&gw, &format!("/r/{ID}/customers/member_logout"), "").await;
    assert_eq!(a.status, 200);
    assert_eq!(fake.stats().journal.requests, before);
    // The next call logs in afresh, without meeting an "active session".
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(stats_call(&gw).await.status, 200);
    assert_eq!(fake.stats().logins, 2);
    assert_eq!(fake.stats().terminations, 0);
    // terminate_session: countersign supplies the member's credentials.
    let a = form(&gw, &format!("/r/{ID}/customers/terminate_session"), "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(fake.stats().terminations, 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(stats_call(&gw).await.status, 200);
    assert_eq!(fake.stats().logins, 3);
    assert_eq!(fake.stats().expired_session_uses, 0);
}

#[tokio::test]
async fn rotated_and_pushed_keys_are_held_and_hidden() {
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    let a = json(&gw, &format!("/r/{ID}/customers/rotate_access_key"), "{}").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let new_key = fake.access_key();
    assert_ne!(new_key, tts::DEMO_ACCESS_KEY);
    assert!(
        a.text().contains(HELD) && !a.text().contains(&new_key),
        "{}",
        a.text()
    );
    // The fake accepts only the new key now.
    assert_eq!(stats_call(&gw).await.status, 200);
    let a = json(&gw, &format!("/r/{ID}/customers/rotate_secret_key"), "{}").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let new_secret = fake.secret().unwrap();
    assert!(!a.text().contains(&new_secret), "{}", a.text());
    assert_eq!(stats_call(&gw).await.status, 200);
    let a = json(
        &gw,
        &format!("/r/{ID}/customers/push_secret_key"),
        r#"{"new_secret_key":"SK-pushed-by-ops-42"}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(fake.secret().as_deref(), Some("SK-pushed-by-ops-42"));
    assert!(!a.text().contains("SK-pushed-by-ops-42"), "{}", a.text());
    assert_eq!(stats_call(&gw).await.status, 200);
    assert_eq!(fake.stats().logins, 1, "rotations keep the session");

    // An answer without the key: the caller hears it loudly.
    let (addr, fake, _stop2) = start_fake!(Fake::new(fake_config(|c| {
        c.rotate_answer = RotateAnswer::NoKey;
    })));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    let a = json(&gw, &format!("/r/{ID}/customers/rotate_access_key"), "{}").await;
    assert_eq!(a.status, 502);
    assert_eq!(a.error_code(), Some("key_rotation_failed"));
    assert!(a.text().contains("old key is kept"), "{}", a.text());
    assert!(!a.text().contains(&fake.access_key()));

    // A bare-token answer is understood.
    let (addr, fake, _stop3) = start_fake!(Fake::new(fake_config(|c| {
        c.rotate_answer = RotateAnswer::Bare;
    })));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    let a = json(&gw, &format!("/r/{ID}/customers/rotate_access_key"), "{}").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.text(), HELD);
    assert_eq!(stats_call(&gw).await.status, 200);
    assert_ne!(fake.access_key(), tts::DEMO_ACCESS_KEY);
}

#[tokio::test]
async fn a_rotated_key_survives_kill_9_and_never_reaches_the_logs() {
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let toml = route_toml(&dir.path().join("state"), &route(addr, ""));
    let gw = spawn_binary(dir.path(), &toml, "trace").await;
    let a = json_at(&gw, &format!("/r/{ID}/customers/rotate_access_key")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = json_at(&gw, &format!("/r/{ID}/customers/rotate_secret_key")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // Killed at once: no shutdown, no flush.
    let mut gw = gw;
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    let mut logs = gw.logs();
    drop(gw);
    let gw = spawn_binary(dir.path(), &toml, "trace").await;
    let a = post(
        &gw.url(&format!("/r/{ID}")),
        r#"{"action":"liveLogs","limit":5}"#,
    )
    .await;
    assert_eq!(
        a.status,
        200,
        "the restarted gateway uses the rotated keys: {}",
        a.text()
    );
    logs.push_str(&gw.logs());
    drop(gw);

    let s = fake.stats();
    assert_eq!(s.logins, 2);
    let mut secrets = vec![
        tts::DEMO_PASSWORD.to_string(),
        tts::DEMO_ACCESS_KEY.to_string(),
        tts::DEMO_SECRET.to_string(),
        fake.access_key(),
        fake.secret().unwrap(),
    ];
    for rec in &s.journal.recent {
        secrets.extend(rec.header("session-id").map(String::from));
    }
    assert!(logs.contains("TRACE"), "trace logging was on");
    for secret in secrets {
        assert!(!logs.contains(&secret), "a secret reached the logs");
    }
}

async fn json_at(gw: &Process, path: &str) -> Answer {
    send(
        http::Request::post(gw.url(path))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn unparseable_json_is_a_400_naming_line_and_column() {
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|_| {})));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    let a = json(
        &gw,
        &format!("/r/{ID}"),
        "{\n  \"action\": \"liveLogs\",\n  \"limit\" 5\n}",
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), Some("bad_request_body"));
    assert!(a.text().contains("line 3, column 11"), "{}", a.text());
    for body in [r#"{"a": NaN}"#, r#"{"a": "\ud800"}"#, "[1, 2]"] {
        let a = json(&gw, &format!("/r/{ID}"), body).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(a.error_code(), Some("bad_request_body"));
    }
    assert_eq!(fake.stats().journal.requests, 0, "nothing went upstream");
}

#[tokio::test]
async fn upstream_rate_limits_hold_the_whole_route() {
    // Four requests per 2 s window: the login and three calls.
    let (addr, fake, _stop) = start_fake!(Fake::new(fake_config(|c| {
        c.rate = Some((4, Duration::from_secs(2)));
    })));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, ""))).await;
    let mut ok = 0;
    let mut held = 0;
    for _ in 0..10 {
        let a = stats_call(&gw).await;
        match a.status.as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(a.error_code(), Some("rate_limited"), "{}", a.text());
                assert!(a.headers.get("retry-after").is_some());
                held += 1;
            }
            s => panic!("unexpected {s}: {}", a.text()),
        }
    }
    assert_eq!((ok, held), (3, 7));
    assert_eq!(
        fake.stats().rate_limited,
        0,
        "the upstream never had to refuse"
    );
    // After the window the route flows again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(stats_call(&gw).await.status, 200);
}

#[test]
fn explain_shows_the_checksum_input_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let toml = route_toml(dir.path(), &route(addr, ""));
    let config = countersign::kinds::from_toml(&toml).unwrap();
    let text = countersign::explain::explain(
        &config,
        "r",
        "POST",
        &format!("/{ID}"),
        Some(r#"{"action":"liveLogs","limit":5}"#),
        &["Content-Type: application/json".to_string()],
    )
    .unwrap();
    assert!(text.contains("customers/member_login"), "{text}");
    assert!(
        text.contains(r#"checksum = sha256 of): {"action": "liveLogs", "client_ver": "V4.21.04""#),
        "{text}"
    );
    for secret in [tts::DEMO_PASSWORD, tts::DEMO_ACCESS_KEY, tts::DEMO_SECRET] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(text.contains("[secret redacted]"), "{text}");
}
