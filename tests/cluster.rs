//! Replicas sharing one credential through a real three-node Redis Cluster
//! (`redis+cluster://…`): every key of a credential carries its identity as
//! a hash tag, so each script touches one slot; the rate, the login
//! spacing, the quota and a shared TTS session hold as on one Redis.
//! Runs when CI is set (it starts three servers per test).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use countersign::fake::tts;
use futures_util::future::join_all;
use support::redis_server::{self, RedisCluster};
use support::*;

/// A gateway on `cluster` whose keys start with `prefix:`. A 3 s
/// `state_timeout`: CPU-starved Redis answers can pass the default 500 ms
/// here and open the store's breaker (see `shared` in tests/replicas.rs).
fn toml(dir: &std::path::Path, cluster: &RedisCluster, prefix: &str, route: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nshutdown_grace = \"2s\"\nstate = \"{}\"\nstate_prefix = \"{prefix}\"\nstate_timeout = \"3s\"\n\n[routes.r]\n{route}\n",
        dir.display(),
        cluster.url()
    )
}

/// Three gateways on `cluster` with route `r`.
async fn replicas(
    dirs: &[tempfile::TempDir],
    cluster: &RedisCluster,
    prefix: &str,
    route: &str,
) -> Vec<Gw> {
    let mut gws = Vec::new();
    for d in dirs {
        gws.push(gateway(&toml(d.path(), cluster, prefix, route)).await);
    }
    gws
}

async fn set(gw: &Gw, n: usize) -> Answer {
    post(
        &gw.url("/r/v1/item/set"),
        &format!("{{items:[{{\"portalid\":\"p\",\"payload\":\"n{n}\"}}]}}"),
    )
    .await
}

/// The keys under `prefix`, grouped by their hash tag; each group must
/// hash to one slot.
fn keys_by_tag(cluster: &RedisCluster, prefix: &str) -> BTreeMap<String, Vec<String>> {
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in cluster.keys(&format!("{prefix}:*")) {
        let tag = key
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(tag, _)| tag.to_string())
            .unwrap_or_else(|| panic!("{key} has no hash tag"));
        tags.entry(tag).or_default().push(key);
    }
    for keys in tags.values() {
        let slots: Vec<_> = keys.iter().map(|k| cluster.slot(k)).collect();
        assert!(
            slots.windows(2).all(|w| w[0] == w[1]),
            "one credential's keys in several slots: {keys:?} {slots:?}"
        );
    }
    tags
}

#[tokio::test]
async fn three_replicas_share_rate_logins_and_quota_through_a_cluster() {
    if !redis_server::cluster_wanted() {
        return;
    }
    let cluster = RedisCluster::start();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    // The rate (20/s) and login spacing (1 s) of one, for three replicas.
    let fake = fake_xrtc(|c| c.login_timeout = Duration::from_secs(1)).await;
    let route = format!(
        "kind = \"xrtc\"\nupstream = \"http://{}\"\naccount_id = \"{ACCOUNT}\"\napi_key = \"{API_KEY}\"\nlogin_interval = \"1s\"\nrate_limit = {{ per_second = 20, burst = 20, wait = \"3s\" }}\n",
        fake.addr
    );
    let gws = replicas(&dirs, &cluster, "t", &route).await;
    // Six callers per replica for 2.5 s (at most 40 calls each).
    let until = Instant::now() + Duration::from_millis(2500);
    let answers: Vec<Answer> = join_all(gws.iter().flat_map(|gw| {
        (0..6).map(move |w| async move {
            let mut got = Vec::new();
            for i in 0..40 {
                if Instant::now() >= until {
                    break;
                }
                got.push(set(gw, w * 100 + i).await);
            }
            got
        })
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(a.error_code(), Some("rate_limited"), "{}", a.text());
    }
    let s = fake.fake.stats();
    assert_eq!(s.rate_violations, 0, "the fake saw more than 20/s in total");
    assert_eq!(s.login_rejections, 0, "logins closer than LOGIN_TIMEOUT");
    assert_eq!(s.logins.len(), 3, "one session per replica: {:?}", s.logins);
    assert!(
        s.logins.windows(2).all(|w| w[1] - w[0] >= 1000),
        "logins spaced globally: {:?}",
        s.logins
    );
    assert_eq!(s.requests as usize, ok + 3);
    assert!(ok >= 40, "the load went through: {ok}");
    // Every key of the credential (rate, login time, quota) in one slot.
    let tags = keys_by_tag(&cluster, "t");
    assert!(
        tags.values()
            .flatten()
            .any(|k| k.starts_with("t:rate:{xrtc-")),
        "{tags:?}"
    );
    for gw in gws {
        gw.stop().await;
    }

    // The quota (30, logins included) is exact across the replicas.
    let fake = fake_xrtc(|c| {
        c.login_timeout = Duration::from_millis(100);
        c.rate_per_second = 1000;
    })
    .await;
    let route = format!(
        "kind = \"xrtc\"\nupstream = \"http://{}\"\naccount_id = \"{ACCOUNT}\"\napi_key = \"{API_KEY}\"\nlogin_interval = \"100ms\"\nrate_limit = {{ per_second = 1000, burst = 100 }}\nquota = {{ per_month = 30 }}\n",
        fake.addr
    );
    let gws = replicas(&dirs, &cluster, "q", &route).await;
    let answers = join_all(gws.iter().flat_map(|gw| (0..20).map(move |i| set(gw, i)))).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(a.error_code(), Some("quota_exhausted"), "{}", a.text());
    }
    let s = fake.fake.stats();
    assert_eq!(s.requests, 30, "exactly the quota went upstream");
    assert_eq!(ok + s.logins.len(), 30);
    let tags = keys_by_tag(&cluster, "q");
    let quota: Vec<_> = tags
        .values()
        .flatten()
        .filter(|k| k.starts_with("q:quota:{xrtc-"))
        .collect();
    assert_eq!(quota.len(), 1, "{tags:?}");
    assert_eq!(cluster.get(quota[0]), "30");
    for gw in gws {
        gw.stop().await;
    }
}

#[tokio::test]
async fn one_tts_session_serves_every_replica_through_a_cluster() {
    if !redis_server::cluster_wanted() {
        return;
    }
    let cluster = RedisCluster::start();
    let (addr, fake, _stop) = start_fake!(tts::Fake::new(tts::Config {
        login_interval: Duration::from_millis(300),
        ..Default::default()
    }));
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gws = Vec::new();
    for d in &dirs {
        gws.push(gateway(&toml(d.path(), &cluster, "t", &tts_route_toml(addr, ""))).await);
    }
    let stats = |gw: &Gw| {
        send(
            http::Request::post(gw.url(&format!("/r/{}", tts::DEMO_IDENTIFIER)))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    br#"{"action":"fetchStats","month":"2025-01","output":"json"}"#,
                )))
                .unwrap(),
        )
    };
    for a in join_all(gws.iter().flat_map(|gw| (0..5).map(move |_| stats(gw)))).await {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let s = fake.stats();
    assert_eq!(s.logins, 1, "one login for three replicas");
    assert_eq!(s.terminations, 0);
    // The session and its generation counter (one script) share a slot.
    let tags = keys_by_tag(&cluster, "t");
    assert!(
        tags.values().any(|keys| {
            keys.iter().any(|k| k.starts_with("t:session:{"))
                && keys.iter().any(|k| k.starts_with("t:session-generation:{"))
        }),
        "{tags:?}"
    );
    let ready = countersign::admin::readiness(&gws[0].gateway).await;
    assert_eq!(ready["state"]["store"], "redis-cluster", "{ready}");
    assert_eq!(ready["state"]["up"], true, "{ready}");
}
