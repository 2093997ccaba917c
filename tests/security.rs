//! Findings of the security review, each pinned by a test that failed on
//! the code it was found in.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use bytes::Bytes;
use countersign::fake::tts::{self, Fake as TtsFake};
use http_body_util::Full;
use support::*;

const OTHER_ACCOUNT: &str = "AC1111111111111111";
const OTHER_KEY: &str = "another-accounts-api-key-00000001";

/// Logs in to the fake XRTC directly as the other account and lists its items.
async fn others_items(fake: std::net::SocketAddr) -> String {
    let login = post(
        &format!("http://{fake}/v1/auth/login"),
        &format!(r#"{{"accountid":"{OTHER_ACCOUNT}","apikey":"{OTHER_KEY}"}}"#),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text());
    let cookies: Vec<String> = login
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    let req = http::Request::post(format!("http://{fake}/v1/item/get"))
        .header("cookie", cookies.join("; "))
        .body(Full::new(Bytes::from_static(br#"{"portals":[]}"#)))
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.text()
}

#[tokio::test]
async fn a_login_spelled_with_escapes_is_answered_locally_and_never_takes_the_session() {
    let fake = fake_xrtc(|c| {
        c.accounts
            .push((OTHER_ACCOUNT.to_string(), OTHER_KEY.to_string()));
    })
    .await;
    let front = decoding_front::start(fake.addr, None).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(
        &format!("http://{}", front.addr),
        dir.path(),
        "",
    ))
    .await;
    assert_eq!(set_item(&gw, "before", "mine").await.status, 200);

    // Another account's credentials, under a spelling the front decodes to the login.
    for path in [
        "/x/v1/auth/logi%6E",
        "/x/v1/auth/login/",
        "/x/v1/Auth/Login",
    ] {
        let a = post(
            &gw.url(path),
            &format!(r#"{{"accountid":"{OTHER_ACCOUNT}","apikey":"{OTHER_KEY}"}}"#),
        )
        .await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        assert!(
            a.headers["set-cookie"]
                .to_str()
                .unwrap()
                .contains("held-by-countersign"),
            "{path} was not answered by countersign"
        );
    }
    assert_eq!(set_item(&gw, "after", "mine").await.status, 200);
    let stats = fake.fake.stats();
    assert_eq!(stats.logins.len(), 1, "only countersign's own login");
    assert!(
        stats.recent.iter().all(|r| !r.body.contains(OTHER_ACCOUNT)),
        "a caller's login reached the upstream"
    );
    // Nothing landed in the other account.
    assert_eq!(others_items(fake.addr).await, "{}");
}

#[tokio::test]
async fn a_set_cookie_on_an_ordinary_answer_never_replaces_the_held_cookies() {
    let fake = fake_xrtc(|_| {}).await;
    let front =
        decoding_front::start(fake.addr, Some("JSESSIONID=planted-by-upstream; Path=/")).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(
        &format!("http://{}", front.addr),
        dir.path(),
        "",
    ))
    .await;
    for i in 0..3 {
        let a = set_item(&gw, "p", &format!("v{i}")).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(!a.headers.contains_key("set-cookie"));
    }
    let stats = fake.fake.stats();
    assert_eq!(stats.session_denials, 0);
    assert_eq!(stats.logins.len(), 1);
    for r in &stats.recent {
        for (name, value) in &r.headers {
            assert!(
                !(name == "cookie" && value.contains("planted")),
                "the planted cookie was sent: {value}"
            );
        }
    }
}

#[tokio::test]
async fn odd_path_spellings_are_refused_before_anything_is_sent() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    for path in [
        "/x/v1//item/set",
        "/x/v1/item/..;/set",
        "/x/v1/item%2Fset",
        "/x/v1/item%5cset",
        "/x/v1/%2e%2E/item/set",
        "/x/v1/item;x=1/set",
    ] {
        let a = post(&gw.url(path), "{items:[]}").await;
        assert_eq!(a.status, 400, "{path}: {}", a.text());
        assert_eq!(a.error_code(), Some("bad_request"), "{path}");
    }
    assert_eq!(fake.fake.stats().requests, 0);
}

#[tokio::test]
async fn a_rotation_spelled_with_escapes_is_still_a_rotation() {
    let (addr, fake, _stop) = start_fake!(TtsFake::new(tts::Config {
        login_interval: std::time::Duration::from_millis(300),
        ..Default::default()
    }));
    let front = decoding_front::start(addr, None).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &tts_route_toml(front.addr, ""))).await;
    let id = tts::DEMO_IDENTIFIER;
    let a = send(
        http::Request::post(gw.url(&format!("/r/{id}/customers/rotate%5Faccess%5Fkey")))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let new_key = fake.access_key();
    assert_ne!(new_key, tts::DEMO_ACCESS_KEY, "the upstream rotated");
    assert!(!a.text().contains(&new_key), "the caller saw the new key");
    // countersign holds the new key: the next call is accepted.
    let next = send(
        http::Request::post(gw.url(&format!("/r/{id}")))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"action":"fetchStats","month":"2025-01","output":"json"}"#,
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(next.status, 200, "{}", next.text());
}

// ---- Finding 4: the state dir is countersign's alone ----

#[cfg(unix)]
#[test]
fn run_refuses_a_state_dir_others_can_write_to() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, xrtc_toml("http://127.0.0.1:1", &state, "")).unwrap();
    let log = dir.path().join("log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["run", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // A gateway that starts anyway is a failure, not a hang.
    let mut child = KillOnDrop(child);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "it started: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "state_dir {} is writable by its group or other users",
            state.display()
        )),
        "{err}"
    );
    assert!(err.contains("chmod 700"), "{err}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- Finding 3: keys that cannot be sent are never stored ----

#[tokio::test]
async fn a_pushed_key_with_a_line_break_is_refused_before_the_push() {
    let (addr, fake, _stop) = start_fake!(TtsFake::new(tts::Config {
        login_interval: std::time::Duration::from_millis(300),
        ..Default::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &tts_route_toml(addr, ""))).await;
    let id = tts::DEMO_IDENTIFIER;
    let call = |path: String, body: &'static str| {
        http::Request::post(gw.url(&path))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let stats = br#"{"action":"fetchStats","month":"2025-01","output":"json"}"#;
    let stats = std::str::from_utf8(stats).unwrap();
    assert_eq!(send(call(format!("/r/{id}"), stats)).await.status, 200);
    let before = fake.stats().journal.requests;
    for body in [
        r#"{"new_access_key":"AK-2\nX-Injected: yes"}"#,
        r#"{"new_access_key":"AK-2 with spaces"}"#,
    ] {
        let a = send(call(format!("/r/{id}/customers/push_access_key"), body)).await;
        assert_eq!(a.status, 400, "{}", a.text());
        assert_eq!(a.error_code(), Some("bad_request_body"));
    }
    assert_eq!(fake.stats().journal.requests, before, "nothing was sent");
    assert_eq!(fake.access_key(), tts::DEMO_ACCESS_KEY);
    // The route still works, and keeps working after a restart.
    assert_eq!(send(call(format!("/r/{id}"), stats)).await.status, 200);
    gw.stop().await;
    let gw = gateway(&route_toml(dir.path(), &tts_route_toml(addr, ""))).await;
    let a = send(
        http::Request::post(gw.url(&format!("/r/{id}")))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"action":"fetchStats","month":"2025-01","output":"json"}"#,
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
}

// ---- Finding 5: config errors never print a value ----

/// toml's error text quotes the broken line; a rejected reload logged it.
#[tokio::test]
async fn a_broken_config_is_reported_by_line_and_key_without_its_value() {
    const LEAK: &str = "Tk9x2mQ7vL4p-new-key-in-a-broken-line";
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        &dir.path().join("state"),
        "",
    );
    let gw = spawn_binary_with(dir.path(), &toml, "info", &["--log-format", "json"]).await;
    assert_eq!(set_item_at(&gw.url("/x/v1/item/set")).await, 200);
    let cfg = dir.path().join("countersign.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    let broken = good.replace(
        &format!("api_key = \"{API_KEY}\""),
        &format!("api_key = \"{LEAK}"),
    );
    std::fs::write(&cfg, &broken).unwrap();
    gw.signal("HUP");
    let started = std::time::Instant::now();
    while !gw.logs().contains("config reload rejected") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{}",
            gw.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logs = gw.logs();
    assert!(!logs.contains(LEAK), "{logs}");
    assert!(
        logs.contains("routes.x.api_key: TOML syntax error at line"),
        "{logs}"
    );
    // `check` says the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("routes.x.api_key: TOML syntax error at line"),
        "{err}"
    );
    assert!(!err.contains(LEAK), "{err}");
}

async fn set_item_at(url: &str) -> u16 {
    post(url, r#"{items:[{"portalid":"p","payload":"v"}]}"#)
        .await
        .status
        .as_u16()
}

// ---- Finding 6: secrets do not outlive their use ----

/// A non-dumpable process's memory and environment are closed to other
/// processes of the same user (and it writes no core file).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_process_is_not_dumpable() {
    use std::os::unix::process::CommandExt;
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let root = my_uid() == 0;
    // As root, everything is readable: run both sides as another user.
    let nobody = 65534;
    let state = dir.path().join("state");
    let toml = xrtc_toml(&format!("http://{}", fake.addr), &state, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        toml.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    if root {
        std::os::unix::fs::chown(dir.path(), Some(nobody), Some(nobody)).unwrap();
        std::os::unix::fs::chown(&cfg, Some(nobody), Some(nobody)).unwrap();
    }
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"));
    cmd.args(["run", "-c"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if root {
        cmd.uid(nobody).gid(nobody);
    }
    let child = cmd.spawn().unwrap();
    let _kill = KillOnDrop(child);
    let pid = _kill.0.id();
    let started = std::time::Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let environ = format!("/proc/{pid}/environ");
    let readable = if root {
        std::process::Command::new("cat")
            .arg(&environ)
            .uid(nobody)
            .gid(nobody)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    } else {
        std::fs::read(&environ).is_ok()
    };
    assert!(
        !readable,
        "{environ} is readable by another process of its user"
    );
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX)
}

// ---- Finding 2: one session per credential *and upstream* ----

/// Two routes for one TTS member at two upstreams shared one session: the
/// session id one upstream issued was sent to the other.
#[test]
fn one_member_at_two_upstreams_is_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let a: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let b: std::net::SocketAddr = "127.0.0.1:2".parse().unwrap();
    let toml = format!(
        "{}\n[routes.other]\n{}",
        route_toml(dir.path(), &tts_route_toml(a, "")),
        tts_route_toml(b, "")
    );
    let path = dir.path().join("two.toml");
    std::fs::write(&path, &toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "routes.r.upstream: differs from route other's, which holds the same tts credential"
        ),
        "{err}"
    );
    assert!(!err.contains(tts::DEMO_PASSWORD) && !err.contains(tts::DEMO_ACCESS_KEY));
    // The same member at one upstream through two routes: one session, allowed.
    let same = format!(
        "{}\n[routes.other]\n{}",
        route_toml(dir.path(), &tts_route_toml(a, "")),
        tts_route_toml(a, "")
    );
    let cfg = countersign::kinds::from_toml(&same).unwrap();
    let gw = countersign::gateway::Gateway::new(
        cfg,
        std::sync::Arc::new(countersign::state::MemoryStore::default()),
        None,
    )
    .unwrap();
    let snap = gw.snapshot.load();
    assert_eq!(snap.routes["r"].credential, snap.routes["other"].credential);
    assert!(std::sync::Arc::ptr_eq(
        snap.routes["r"].session.as_ref().unwrap(),
        snap.routes["other"].session.as_ref().unwrap()
    ));
}

/// State 0.1 wrote under its identities is where 0.2 looks: the month's
/// quota count and the last login time carry over.
#[tokio::test]
async fn state_written_under_0_1_identities_carries_over() {
    use countersign::vocab::fingerprint;
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let month = {
        let now = time::OffsetDateTime::now_utc();
        format!("{:04}-{:02}", now.year(), u8::from(now.month()))
    };
    // 0.1's names: `xrtc-<account>` for the quota, `xrtc-<account>-<key>` for logins.
    let old_quota = format!("quota.xrtc-{ACCOUNT}.{month}");
    let key_fp = fingerprint(&countersign::secret::Secret::new(API_KEY));
    std::fs::write(state.join(&old_quota), "3").unwrap();
    std::fs::write(state.join(format!("login.xrtc-{ACCOUNT}-{key_fp}")), "1").unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        &state,
        "quota = { per_month = 4 }",
    );
    let gw = gateway(&toml).await;
    let route = gw.gateway.snapshot.load().routes["x"].clone();
    assert_eq!(
        route.kind.legacy_quota_id().unwrap(),
        format!("xrtc-{ACCOUNT}")
    );
    assert!(!state.join(&old_quota).exists(), "moved");
    assert_eq!(
        std::fs::read_to_string(state.join(format!("quota.{}.{month}", route.quota_id))).unwrap(),
        "3"
    );
    assert!(state.join(format!("login.{}", route.credential)).exists());
    // 3 of 4 were used under 0.1: one call left this month (the login takes it).
    let a = set_item(&gw, "p", "v").await;
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!(a.error_code(), Some("quota_exhausted"));
}

/// With Redis, 0.1's quota counter (and login time) move too: a month's
/// count is never lost by the new identities.
#[tokio::test]
async fn redis_state_written_under_0_1_identities_carries_over() {
    use support::redis_server::{self, RedisServer};
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let month = {
        let now = time::OffsetDateTime::now_utc();
        format!("{:04}-{:02}", now.year(), u8::from(now.month()))
    };
    let key_fp = countersign::vocab::fingerprint(&countersign::secret::Secret::new(API_KEY));
    let old_quota = format!("t:quota:xrtc-{ACCOUNT}:{month}");
    let old_login = format!("t:kv:login.xrtc-{ACCOUNT}-{key_fp}");
    let mut conn = redis.client().await;
    redis::cmd("SET")
        .arg(&old_quota)
        .arg(3)
        .arg("EX")
        .arg(3600)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("SET")
        .arg(&old_login)
        .arg("1")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        &dir.path().join("state"),
        "quota = { per_month = 4 }",
    )
    .replace(
        "shutdown_grace = \"2s\"",
        &format!(
            "shutdown_grace = \"2s\"\nstate = \"{}\"\nstate_prefix = \"t\"",
            redis.url()
        ),
    );
    let config = countersign::kinds::from_toml(&toml).unwrap();
    let gateway = countersign::server::gateway(config).unwrap();
    countersign::server::migrate_shared_state(&gateway).await;
    let route = gateway.snapshot.load().routes["x"].clone();
    let exists = |k: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(k)
                .query_async::<u64>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(exists(old_quota.clone()).await, 0, "moved");
    assert_eq!(exists(old_login.clone()).await, 0, "moved");
    assert_eq!(exists(format!("t:kv:login.{}", route.credential)).await, 1);
    let new_quota = format!("t:quota:{}:{month}", route.quota_id);
    let count: u64 = redis::cmd("GET")
        .arg(&new_quota)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 3);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&new_quota)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 3000, "the month's expiry moved with it: {ttl}");
    // 3 of 4 were used under 0.1: the login takes the last one.
    let gw = gateway_from_arc(gateway).await;
    let a = set_item(&gw, "p", "v").await;
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!(a.error_code(), Some("quota_exhausted"));
}
