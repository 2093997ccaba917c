//! Replicas sharing one credential through a real `redis-server`: three
//! gateways in front of one strict fake enforce the upstream's limits
//! together, log in once (TTS) or spaced (XRTC), share the quota and the
//! rotated keys, and apply `on_state_failure` when Redis dies and recover
//! when it returns, without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign::fake::tts;
use futures_util::future::join_all;
use support::redis_server::{self, RedisServer};
use support::*;

/// `[server]` keys for a replica on `redis`.
fn shared(redis: &RedisServer, extra: &str) -> String {
    // Twelve tests run at once here, each with its own redis-server and
    // gateways, on CI's few cores: a Redis answer can take longer than the
    // default 500 ms, which opens the store's breaker and fails requests
    // with 503 state_unavailable (seen once, 2026-12-02). Tests about a
    // Redis that is down set their own, shorter timeout.
    let timeout = match extra.contains("state_timeout") {
        true => "",
        false => "state_timeout = \"3s\"\n",
    };
    format!(
        "state = \"{}\"\nstate_prefix = \"t\"\n{timeout}{extra}\n",
        redis.url()
    )
}

/// A gateway config: `server_extra` goes into `[server]`, `route` is route `r`.
fn toml(dir: &std::path::Path, server_extra: &str, route: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nshutdown_grace = \"2s\"\n{server_extra}\n[routes.r]\n{route}\n",
        dir.display()
    )
}

fn xrtc_route(fake: &FakeXrtc, extra: &str) -> String {
    format!(
        "kind = \"xrtc\"\nupstream = \"http://{}\"\naccount_id = \"{ACCOUNT}\"\napi_key = \"{API_KEY}\"\nlogin_interval = \"1s\"\n{extra}\n",
        fake.addr
    )
}

async fn set(gw: &Gw, n: usize) -> Answer {
    post(
        &gw.url("/r/v1/item/set"),
        &format!("{{items:[{{\"portalid\":\"p\",\"payload\":\"n{n}\"}}]}}"),
    )
    .await
}

/// Every gateway gets `workers` callers sending for `secs` (at most 200 calls each).
async fn load(gws: &[Gw], workers: usize, secs: f64) -> Vec<Answer> {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks = gws.iter().flat_map(|gw| {
        (0..workers).map(move |w| async move {
            let mut got = Vec::new();
            for i in 0..200 {
                if Instant::now() >= until {
                    break;
                }
                got.push(set(gw, w * 1000 + i).await);
            }
            got
        })
    });
    join_all(tasks).await.into_iter().flatten().collect()
}

fn gaps(logins: &[u64]) -> Vec<u64> {
    logins.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn three_replicas_keep_the_rate_and_login_spacing_of_one() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let fake = fake_xrtc(|c| c.login_timeout = Duration::from_secs(1)).await;
    let route = xrtc_route(
        &fake,
        "rate_limit = { per_second = 20, burst = 20, wait = \"3s\" }",
    );
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gws = Vec::new();
    for d in &dirs {
        gws.push(gateway(&toml(d.path(), &shared(&redis, ""), &route)).await);
    }
    let answers = load(&gws, 6, 2.5).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(a.error_code(), Some("rate_limited"), "{}", a.text());
    }
    let s = fake.fake.stats();
    assert_eq!(s.rate_violations, 0, "the fake saw more than 20/s in total");
    assert_eq!(s.login_rejections, 0, "logins closer than LOGIN_TIMEOUT");
    assert_eq!(s.logins.len(), 3, "one session per replica: {:?}", s.logins);
    assert!(
        gaps(&s.logins).iter().all(|g| *g >= 1000),
        "logins spaced globally: {:?}",
        s.logins
    );
    assert_eq!(
        s.requests as usize,
        ok + 3,
        "every request the fake saw was answered 200, plus the logins"
    );
    assert!(ok >= 40, "the load went through: {ok}");
    for gw in gws {
        gw.stop().await;
    }

    // Control: the same three replicas without Redis overrun the upstream,
    // so the assertions above can fail.
    let fake = fake_xrtc(|c| c.login_timeout = Duration::from_secs(1)).await;
    let route = xrtc_route(
        &fake,
        "rate_limit = { per_second = 20, burst = 20, wait = \"3s\" }",
    );
    let own: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gws = Vec::new();
    for d in &own {
        gws.push(gateway(&toml(d.path(), "", &route)).await);
    }
    load(&gws, 6, 1.5).await;
    let s = fake.fake.stats();
    assert!(
        s.rate_violations > 0 || s.login_rejections > 0,
        "without shared state three replicas should exceed the limits: {s:?}"
    );
}

#[tokio::test]
async fn the_monthly_quota_is_one_for_all_replicas_and_survives_a_redis_restart() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let fake = fake_xrtc(|c| {
        c.login_timeout = Duration::from_millis(200);
        c.rate_per_second = 1000;
    })
    .await;
    let route = xrtc_route(
        &fake,
        "login_interval = \"200ms\"\nrate_limit = { per_second = 1000, burst = 100 }\nquota = { per_month = 30 }",
    )
    .replace("login_interval = \"1s\"\n", "");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gws = Vec::new();
    for d in &dirs {
        gws.push(gateway(&toml(d.path(), &shared(&redis, ""), &route)).await);
    }
    let answers = join_all(gws.iter().flat_map(|gw| (0..20).map(move |i| set(gw, i)))).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(a.status, 429, "{}", a.text());
        assert_eq!(a.error_code(), Some("quota_exhausted"), "{}", a.text());
        assert!(a.headers.contains_key("retry-after"));
    }
    let s = fake.fake.stats();
    assert_eq!(
        s.requests, 30,
        "exactly the quota reached the upstream, logins included"
    );
    assert_eq!(ok + s.logins.len(), 30);

    // One counter, for this month only, expiring after it.
    let (keys, count) = quota_count(&redis).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let month = time::OffsetDateTime::now_utc();
    assert!(
        keys[0].ends_with(&format!(
            "{:04}-{:02}",
            month.year(),
            u8::from(month.month())
        )),
        "{keys:?}"
    );
    assert_eq!(count, 30);
    let mut conn = redis.client().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 32 * 86_400,
        "expires after the month: {ttl}"
    );

    // A crash of Redis loses nothing acknowledged (appendfsync always).
    redis.kill();
    redis.restart();
    let again = wait_for(&gws[0], Duration::from_secs(5), |a| a.status == 429).await;
    assert_eq!(
        again.error_code(),
        Some("quota_exhausted"),
        "{}",
        again.text()
    );
    assert_eq!(fake.fake.stats().requests, 30);
}

/// The quota keys the gateways wrote (prefix `t`), and the first one's count.
async fn quota_count(redis: &RedisServer) -> (Vec<String>, u64) {
    let mut conn = redis.client().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("t:quota:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let first = keys.first().expect("a quota key was written").clone();
    let count: u64 = redis::cmd("GET")
        .arg(&first)
        .query_async(&mut conn)
        .await
        .unwrap();
    (keys, count)
}

/// Sends until `done` holds for an answer, or panics after `limit`.
async fn wait_for(gw: &Gw, limit: Duration, done: impl Fn(&Answer) -> bool) -> Answer {
    let started = Instant::now();
    loop {
        let a = set(gw, 0).await;
        if done(&a) {
            return a;
        }
        assert!(
            started.elapsed() < limit,
            "still {} after {limit:?}: {}",
            a.status,
            a.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn tts_call(gw: &Gw, path: &str, body: &str) -> Answer {
    send(
        http::Request::post(gw.url(&format!("/r/{}{path}", tts::DEMO_IDENTIFIER)))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap(),
    )
    .await
}

async fn stats_call(gw: &Gw) -> Answer {
    tts_call(
        gw,
        "",
        r#"{"action":"fetchStats","month":"2025-01","output":"json"}"#,
    )
    .await
}

#[tokio::test]
async fn one_tts_session_serves_every_replica_and_one_relogin_renews_it_for_all() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let (addr, fake, _stop) = start_fake!(tts::Fake::new(tts::Config {
        login_interval: Duration::from_millis(300),
        ..Default::default()
    }));
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gws = Vec::new();
    for d in &dirs {
        gws.push(
            gateway(&toml(
                d.path(),
                &shared(&redis, ""),
                &tts_route_toml(addr, ""),
            ))
            .await,
        );
    }
    let all = |n: usize| {
        join_all(
            gws.iter()
                .flat_map(move |gw| (0..n).map(move |_| stats_call(gw))),
        )
    };
    for a in all(10).await {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let s = fake.stats();
    assert_eq!(s.logins, 1, "one login for three replicas");
    assert_eq!(
        s.terminations, 0,
        "no replica fought another for the session"
    );
    assert_eq!(s.journal.rejected, 0, "{:#?}", s.journal.recent);

    // The upstream drops the session: every replica sees it expire, and
    // exactly one new login serves them all.
    fake.kill_sessions();
    for a in all(5).await {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let s = fake.stats();
    assert_eq!(s.logins, 2, "one relogin for all: {s:?}");
    assert_eq!(s.terminations, 0);
    assert_eq!(s.login_spacing_violations, 0);

    // A key rotated through one replica is used by the others from their
    // next request on (the fake accepts only the new key).
    let a = tts_call(&gws[0], "/customers/rotate_access_key", "{}").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let new_key = fake.access_key();
    assert_ne!(new_key, tts::DEMO_ACCESS_KEY);
    for gw in &gws[1..] {
        let a = stats_call(gw).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let last = fake.stats().journal.recent.last().cloned().unwrap();
        assert_eq!(last.header("x-tts-cc-access-key"), Some(new_key.as_str()));
    }
    // And a replica started later, from the same config, too.
    let late = tempfile::tempdir().unwrap();
    let gw4 = gateway(&toml(
        late.path(),
        &shared(&redis, ""),
        &tts_route_toml(addr, ""),
    ))
    .await;
    assert_eq!(stats_call(&gw4).await.status, 200);
    assert_eq!(
        fake.stats().logins,
        2,
        "the late replica adopted the session"
    );
}

#[tokio::test]
async fn redis_down_fails_closed_then_recovers_without_a_restart() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let fake = fake_xrtc(|c| c.login_timeout = Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&toml(
        dir.path(),
        &shared(&redis, "state_timeout = \"300ms\""),
        &xrtc_route(&fake, ""),
    ))
    .await;
    assert_eq!(set(&gw, 1).await.status, 200);
    let seen = fake.fake.stats().requests;

    redis.kill();
    let started = Instant::now();
    let a = set(&gw, 2).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.error_code(), Some("state_unavailable"));
    assert!(a.text().contains("Redis"), "{}", a.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered promptly"
    );
    // Fail fast while it is down, and send nothing upstream.
    for i in 0..20 {
        assert_eq!(set(&gw, i).await.status, 503);
    }
    assert_eq!(fake.fake.stats().requests, seen);
    let ready = countersign::admin::readiness(&gw.gateway).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["state"]["up"], false, "{ready}");
    assert!(gw
        .gateway
        .metrics
        .encode()
        .contains("countersign_state_up 0"));

    redis.restart();
    wait_for(&gw, Duration::from_secs(5), |a| a.status == 200).await;
    let ready = countersign::admin::readiness(&gw.gateway).await;
    assert_eq!(ready["state"]["up"], true, "{ready}");
    assert!(gw
        .gateway
        .metrics
        .encode()
        .contains("countersign_state_up 1"));
}

#[tokio::test]
async fn redis_down_with_local_policy_serves_a_replicas_share_and_counts_it_later() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let fake = fake_xrtc(|c| c.login_timeout = Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&toml(
        dir.path(),
        &shared(
            &redis,
            "state_timeout = \"300ms\"\non_state_failure = \"local\"\nexpected_replicas = 4",
        ),
        &xrtc_route(
            &fake,
            "rate_limit = { per_second = 20, burst = 20, wait = \"0s\" }\nquota = { per_month = 1000 }",
        ),
    ))
    .await;
    assert_eq!(set(&gw, 1).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    // A quarter of the burst (5) goes at once; the rest must wait, and may not.
    let answers = join_all((0..20).map(|i| set(&gw, i))).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert!(
        (5..=7).contains(&ok),
        "a replica's share of the burst: {ok}"
    );
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(a.error_code(), Some("rate_limited"), "{}", a.text());
    }
    let metrics = gw.gateway.metrics.encode();
    assert!(metrics.contains("countersign_state_up 0"), "{metrics}");
    assert!(
        !metrics.contains("countersign_state_fallbacks_total 0"),
        "{metrics}"
    );
    assert_eq!(fake.fake.stats().rate_violations, 0);

    // Back: the units sent meanwhile join the shared count with the first
    // permit Redis grants again.
    redis.restart();
    let shared_state = gw.gateway.registry.shared.clone().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    loop {
        let a = set(&gw, 0).await;
        assert!(a.status == 200 || a.status == 429, "{}", a.text());
        if shared_state.is_up() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "Redis not used again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One more request: whichever of its Redis calls the probe let through
    // first, the units sent meanwhile are in the count once this is answered.
    assert_eq!(set(&gw, 0).await.status, 200);
    let (_, count) = quota_count(&redis).await;
    assert_eq!(
        count,
        fake.fake.stats().requests,
        "every request the upstream received is counted"
    );
}

#[tokio::test]
async fn the_redis_password_comes_from_a_secret_and_never_shows() {
    if !redis_server::available() {
        return;
    }
    const PW: &str = "redis-pw-7f3a9c1e5b";
    let redis = RedisServer::start_with_password(Some(PW));
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("redis-password");
    std::fs::write(&pw_file, format!("{PW}\n")).unwrap();
    let with_pw = format!("state_password = {{ file = \"{}\" }}", pw_file.display());
    let cfg = toml(
        dir.path(),
        &shared(&redis, &with_pw),
        &xrtc_route(&fake, ""),
    );
    let gw = spawn_binary(dir.path(), &cfg, "trace").await;
    let a = post(
        &gw.url("/r/v1/item/set"),
        "{items:[{\"portalid\":\"p\",\"payload\":\"x\"}]}",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    drop(gw);

    // A wrong password: a clear 503, and the password nowhere.
    let wrong = dir.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    let bad_url = format!("redis://:not-{PW}@127.0.0.1:{}/0", redis.port);
    let cfg = toml(&wrong, "", &xrtc_route(&fake, "")).replace(
        "[routes.r]",
        &format!("state = \"{bad_url}\"\n\n[routes.r]"),
    );
    let gw2 = spawn_binary(&wrong, &cfg, "trace").await;
    let a = post(&gw2.url("/r/v1/item/set"), "{items:[]}").await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.error_code(), Some("state_unavailable"));
    assert!(!a.text().contains(PW), "{}", a.text());
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["check", "-c"])
        .arg(wrong.join("countersign.toml"))
        .output()
        .unwrap();
    let check_out = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{check_out}");
    assert!(check_out.contains("redis://:***@127.0.0.1"), "{check_out}");
    drop(gw2);
    for (name, text) in [
        (
            "log",
            std::fs::read_to_string(dir.path().join("countersign.log")).unwrap(),
        ),
        (
            "log (wrong)",
            std::fs::read_to_string(wrong.join("countersign.log")).unwrap(),
        ),
        ("check", check_out),
    ] {
        assert!(!text.is_empty(), "{name} is empty");
        assert!(
            !text.contains(PW),
            "the Redis password leaked into the {name}"
        );
    }
}

#[tokio::test]
async fn redis_over_tls_with_a_private_ca() {
    if !redis_server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let redis = RedisServer::start_tls(cert_path.clone(), key_path);
    let fake = fake_xrtc(|_| {}).await;
    let tls = format!(
        "state = \"rediss://127.0.0.1:{}/0\"\nstate_ca_file = \"{}\"\n",
        redis.port,
        cert_path.display()
    );
    let gw = gateway(&toml(dir.path(), &tls, &xrtc_route(&fake, ""))).await;
    let a = set(&gw, 1).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let ready = countersign::admin::readiness(&gw.gateway).await;
    assert_eq!(ready["state"]["up"], true, "{ready}");

    // Without the CA the server is not trusted: 503, nothing sent upstream.
    let other = tempfile::tempdir().unwrap();
    let untrusted = format!("state = \"rediss://127.0.0.1:{}/0\"\n", redis.port);
    let gw2 = gateway(&toml(other.path(), &untrusted, &xrtc_route(&fake, ""))).await;
    let before = fake.fake.stats().requests;
    let a = set(&gw2, 2).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.error_code(), Some("state_unavailable"));
    assert_eq!(fake.fake.stats().requests, before);
}

#[tokio::test]
async fn a_clean_shutdown_gives_the_unused_quota_back() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let fake = fake_xrtc(|c| {
        c.login_timeout = Duration::from_millis(100);
        c.rate_per_second = 1000;
    })
    .await;
    // A million a month: blocks of 100 units, each replica holds one.
    let route = xrtc_route(
        &fake,
        "login_interval = \"100ms\"\nrate_limit = { per_second = 1000, burst = 100 }\nquota = { per_month = 1000000 }",
    )
    .replace("login_interval = \"1s\"\n", "");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gws = Vec::new();
    for d in &dirs {
        gws.push(gateway(&toml(d.path(), &shared(&redis, ""), &route)).await);
    }
    for a in join_all(gws.iter().flat_map(|gw| (0..10).map(move |i| set(gw, i)))).await {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let sent = fake.fake.stats().requests;
    assert_eq!(sent, 33, "30 calls and a login per replica");
    let (_, reserved) = quota_count(&redis).await;
    assert!(
        reserved > sent && reserved <= sent + 3 * 150,
        "each replica holds at most a block and a half ahead: {reserved}"
    );
    for gw in gws {
        gw.stop().await;
    }
    let (_, count) = quota_count(&redis).await;
    assert_eq!(count, sent, "the count is exact once the replicas stop");
}

/// An upstream that answers every call at once and notes when it arrived:
/// an XRTC login gets its cookies, any other call a small JSON.
struct CountingUpstream {
    addr: std::net::SocketAddr,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    /// While set, every call is answered 429 with `Retry-After: 2`.
    refuse: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn counting_upstream() -> CountingUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let refuse = Arc::new(AtomicBool::new(false));
    let (seen, refusing) = (arrivals.clone(), refuse.clone());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, refusing) = (seen.clone(), refusing.clone());
            let svc = hyper::service::service_fn(move |req| {
                let (seen, refusing) = (seen.clone(), refusing.clone());
                answer_counted(req, seen, refusing)
            });
            conns.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    CountingUpstream {
        addr,
        arrivals,
        refuse,
        task,
    }
}

async fn answer_counted(
    req: http::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<Instant>>>,
    refusing: Arc<AtomicBool>,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    seen.lock().unwrap().push(Instant::now());
    let login = req.uri().path().ends_with("/auth/login");
    let _ = req.into_body().collect().await;
    let mut resp = http::Response::builder().header("content-type", "application/json");
    if refusing.load(Ordering::SeqCst) {
        resp = resp.status(429).header("retry-after", "2");
    } else if login {
        resp = resp
            .header("set-cookie", "JSESSIONID=s1; Path=/")
            .header("set-cookie", "AWSALBAPP-0=alb; Path=/");
    }
    Ok(resp
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"{\"servertimestamp\":1}",
        )))
        .unwrap())
}

/// The most instants in any window `[t, t + len)`.
fn busiest(instants: &[Instant], len: Duration) -> usize {
    let mut sorted = instants.to_vec();
    sorted.sort();
    let mut first = 0;
    let mut most = 0;
    for (i, t) in sorted.iter().enumerate() {
        while *t - sorted[first] >= len {
            first += 1;
        }
        most = most.max(i + 1 - first);
    }
    most
}

/// How many instants fall in each whole second from the first.
fn per_second(instants: &[Instant]) -> Vec<usize> {
    let Some(start) = instants.iter().min() else {
        return Vec::new();
    };
    let mut counts = Vec::new();
    for t in instants {
        let s = (*t - *start).as_secs() as usize;
        if counts.len() <= s {
            counts.resize(s + 1, 0);
        }
        counts[s] += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_at_2000_per_second_give_the_upstream_no_more() {
    if !redis_server::available() {
        return;
    }
    const RATE: usize = 2000;
    const BURST: usize = 200;
    let redis = RedisServer::start();
    let up = counting_upstream().await;
    let route = format!(
        "kind = \"xrtc\"\nupstream = \"http://{}\"\naccount_id = \"{ACCOUNT}\"\napi_key = \"{API_KEY}\"\nlogin_interval = \"1s\"\nrate_limit = {{ per_second = {RATE}, burst = {BURST}, wait = \"100ms\" }}\n",
        up.addr
    );
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gws = Vec::new();
    for d in &dirs {
        gws.push(gateway(&toml(d.path(), &shared(&redis, ""), &route)).await);
    }
    // 16 keep-alive callers per replica for 5 s (at most 20,000 calls each).
    let until = Instant::now() + Duration::from_secs(5);
    let callers = gws.iter().flat_map(|gw| {
        (0..16).map(move |_| async move {
            let client = client();
            let (mut ok, mut limited) = (0usize, 0usize);
            for _ in 0..20_000 {
                if Instant::now() >= until {
                    break;
                }
                let req = http::Request::post(gw.url("/r/v1/item/set"))
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        b"{items:[{\"portalid\":\"p\",\"payload\":\"x\"}]}",
                    )))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                let status = resp.status();
                let code = resp
                    .headers()
                    .get("x-countersign-error")
                    .map(|v| v.to_str().unwrap().to_string());
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                match status.as_u16() {
                    200 => ok += 1,
                    429 if code.as_deref() == Some("rate_limited") => limited += 1,
                    other => panic!("{other} {code:?}"),
                }
            }
            (ok, limited)
        })
    });
    let (ok, limited) = join_all(callers)
        .await
        .into_iter()
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let arrivals = up.arrivals.lock().unwrap().clone();
    let busiest_second = busiest(&arrivals, Duration::from_secs(1));
    eprintln!(
        "{ok} sent, {limited} refused; upstream per second {:?}, busiest second {busiest_second}, busiest 100 ms {}",
        per_second(&arrivals),
        busiest(&arrivals, Duration::from_millis(100))
    );
    assert_eq!(
        arrivals.len(),
        ok + 3,
        "the calls and one login per replica"
    );
    assert!(
        busiest_second <= RATE + BURST,
        "the upstream got {busiest_second} in one second: more than {RATE}/s with a burst of {BURST}"
    );
    // Whether the callers were refused depends on how fast this machine
    // is (a wait of 100 ms absorbs a queue); what must hold is that they
    // asked for at least the limit, so the limit is what was measured.
    assert!(
        ok + limited >= RATE * 5 * 9 / 10,
        "the callers asked for less than the limit: {ok} sent, {limited} refused"
    );
    assert!(
        ok >= RATE * 5 / 2,
        "batches must not starve the replicas: {ok} in 5 s"
    );
    for gw in gws {
        gw.stop().await;
    }
}

/// Three replicas' limits on one Redis schedule, without HTTP: the instants
/// at which permits let requests go, against GCRA's bound in every window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_spread_over_replicas_keep_the_bound_of_one_gcra() {
    use countersign::config::{OnStateFailure, RateLimit, StateConfig};
    use countersign::limits::{Limits, SharedLimits, UpstreamHold};
    use countersign::state::RedisState;

    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let rate = RateLimit {
        per_second: 5000.0,
        burst: 500,
        wait: Duration::from_millis(50),
    };
    let replica = |credential: &'static str| {
        let cfg = StateConfig {
            url: countersign::secret::Secret::new(redis.url()),
            display: redis.url(),
            password: None,
            password_source: None,
            prefix: "t".into(),
            ca_file: None,
            timeout: Duration::from_secs(2),
            on_failure: OnStateFailure::FailClosed,
            expected_replicas: 1,
        };
        let state = Arc::new(RedisState::connect(&cfg).unwrap());
        let shared = Arc::new(SharedLimits::new(
            state,
            credential,
            credential,
            Some(rate),
            None,
        ));
        Arc::new(Limits {
            rate: None,
            quota: None,
            hold: Arc::new(UpstreamHold::default()),
            shared: Some(shared),
        })
    };
    // 8 tasks per replica take permits for `secs`; returns when each went.
    let run = |replicas: Vec<Arc<Limits>>, secs: u64| async move {
        let until = Instant::now() + Duration::from_secs(secs);
        let tasks = replicas.iter().flat_map(|l| {
            (0..8).map(move |_| {
                let l = l.clone();
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    for _ in 0..100_000 {
                        if Instant::now() >= until {
                            break;
                        }
                        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                        match l.acquire(deadline).await {
                            Ok(()) => sent.push(Instant::now()),
                            Err(countersign::limits::LimitError::RateLimited(_)) => {
                                tokio::time::sleep(Duration::from_millis(1)).await
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    sent
                })
            })
        });
        let mut all = Vec::new();
        for t in join_all(tasks).await {
            all.extend(t.unwrap());
        }
        all
    };
    let sent = run((0..3).map(|_| replica("one-credential")).collect(), 3).await;
    let (second, tenth) = (
        busiest(&sent, Duration::from_secs(1)),
        busiest(&sent, Duration::from_millis(100)),
    );
    eprintln!(
        "shared: {} permits, per second {:?}, busiest second {second}, busiest 100 ms {tenth}",
        sent.len(),
        per_second(&sent)
    );
    // GCRA: at most burst + window / interval in any window.
    assert!(second <= 5000 + 500, "{second} in one second");
    assert!(tenth <= 500 + 500, "{tenth} in 100 ms");
    assert!(second >= 4000, "the schedule was used: {second}");

    // Control: each replica on a schedule of its own gives three times as much.
    let replicas = ["own-a", "own-b", "own-c"].map(replica).to_vec();
    let own = run(replicas, 2).await;
    let alone = busiest(&own, Duration::from_secs(1));
    assert!(alone > 5000 + 500, "the check catches an excess: {alone}");
}

#[tokio::test]
async fn the_unused_tail_of_a_batch_goes_back_to_the_schedule() {
    use countersign::config::{OnStateFailure, RateLimit, StateConfig};
    use countersign::limits::{Limits, SharedLimits, UpstreamHold};
    use countersign::state::RedisState;

    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let cfg = StateConfig {
        url: countersign::secret::Secret::new(redis.url()),
        display: redis.url(),
        password: None,
        password_source: None,
        prefix: "t".into(),
        ca_file: None,
        timeout: Duration::from_secs(2),
        on_failure: OnStateFailure::FailClosed,
        expected_replicas: 1,
    };
    let state = Arc::new(RedisState::connect(&cfg).unwrap());
    // 1,000/s with a burst of 1,000: batches grow to 50 slots, 1 ms apart.
    let rate = RateLimit {
        per_second: 1000.0,
        burst: 1000,
        wait: Duration::from_secs(1),
    };
    let shared = Arc::new(SharedLimits::new(state, "cred", "cred", Some(rate), None));
    let limits = Limits {
        rate: None,
        quota: None,
        hold: Arc::new(UpstreamHold::default()),
        shared: Some(shared.clone()),
    };
    for _ in 0..40 {
        limits
            .acquire(tokio::time::Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
    }
    let mut conn = redis.client().await;
    let schedule = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let v: i64 = redis::cmd("GET")
                .arg("t:rate:cred")
                .query_async(&mut conn)
                .await
                .unwrap();
            v
        }
    };
    let before = schedule(&mut conn).await;
    shared.flush().await.unwrap();
    let after = schedule(&mut conn).await;
    let back = before - after;
    assert!(
        back > 0 && back % 1000 == 0 && back <= 50 * 1000,
        "whole slots of the last batch went back: {back} µs"
    );
    // Nothing is given twice.
    shared.flush().await.unwrap();
    assert_eq!(schedule(&mut conn).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_429_seen_by_one_replica_holds_the_batches_of_all() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let up = counting_upstream().await;
    let route = format!(
        "kind = \"xrtc\"\nupstream = \"http://{}\"\naccount_id = \"{ACCOUNT}\"\napi_key = \"{API_KEY}\"\nlogin_interval = \"100ms\"\nrate_limit = {{ per_second = 2000, burst = 200, wait = \"100ms\" }}\n",
        up.addr
    );
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gws = Vec::new();
    for d in &dirs {
        gws.push(gateway(&toml(d.path(), &shared(&redis, ""), &route)).await);
    }
    // Every replica logged in and holds a batch of slots.
    for a in join_all(gws.iter().flat_map(|gw| (0..20).map(move |i| set(gw, i)))).await {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    // The upstream says "slow down, 2 s" to one replica.
    up.refuse.store(true, Ordering::SeqCst);
    let a = set(&gws[0], 0).await;
    assert_eq!(a.status, 429, "{}", a.text());
    let held = Instant::now();
    up.refuse.store(false, Ordering::SeqCst);
    // The slots the others held go stale within a batch's span.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = up.arrivals.lock().unwrap().len();
    let answers = join_all(gws.iter().flat_map(|gw| (0..10).map(move |i| set(gw, i)))).await;
    assert!(
        held.elapsed() < Duration::from_millis(1500),
        "too slow to tell"
    );
    for a in &answers {
        assert_eq!(a.status, 429, "{}", a.text());
        assert_eq!(a.error_code(), Some("rate_limited"), "{}", a.text());
        assert!(a.headers.contains_key("retry-after"));
    }
    assert_eq!(
        up.arrivals.lock().unwrap().len(),
        before,
        "a replica sent during the hold"
    );
    // After the hold every replica sends again.
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(held.elapsed())).await;
    for gw in &gws {
        let a = set(gw, 1).await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
}
