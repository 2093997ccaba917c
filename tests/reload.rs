//! SIGHUP reload: validated whole, swapped atomically, sessions kept where
//! credentials did not change, bad configs rejected with the old one serving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use support::*;

#[tokio::test]
async fn reload_keeps_sessions_rejects_bad_configs_and_follows_new_credentials() {
    const OTHER_KEY: &str = "Zz9x2mQ7vL4pR8sW1zY6bN3cF5hJ0dGf";
    let fake = fake_xrtc(|c| {
        c.accounts = vec![
            (ACCOUNT.into(), API_KEY.into()),
            (ACCOUNT.into(), OTHER_KEY.into()),
        ];
        c.login_timeout = std::time::Duration::from_millis(100);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let base = xrtc_toml(
        &format!("http://{}", fake.addr),
        &dir.path().join("s"),
        "login_interval = \"100ms\"",
    );
    std::fs::write(&path, &base).unwrap();
    let gw = gateway_from(countersign::kinds::load(&path).unwrap()).await;
    assert_eq!(set_item(&gw, "r", "1").await.status, 200);
    assert_eq!(fake.fake.stats().logins.len(), 1);

    // Same credential, different limits: the session is kept.
    std::fs::write(
        &path,
        base.replace(
            "login_interval = \"100ms\"",
            "login_interval = \"100ms\"\nrate_limit = { per_second = 5 }",
        ),
    )
    .unwrap();
    assert!(countersign::server::reload(&gw.gateway, &path));
    assert_eq!(
        gw.gateway.snapshot.load().routes["x"]
            .config
            .rate_limit
            .unwrap()
            .per_second,
        5.0
    );
    assert_eq!(set_item(&gw, "r", "2").await.status, 200);
    assert_eq!(
        fake.fake.stats().logins.len(),
        1,
        "no new login after a reload"
    );

    // A broken config is rejected whole; the old one keeps serving.
    std::fs::write(
        &path,
        base.replace("kind = \"xrtc\"", "kind = \"xrtc\"\nbogus = 1"),
    )
    .unwrap();
    assert!(!countersign::server::reload(&gw.gateway, &path));
    assert_eq!(set_item(&gw, "r", "3").await.status, 200);
    assert_eq!(
        gw.gateway.snapshot.load().routes["x"]
            .config
            .rate_limit
            .unwrap()
            .per_second,
        5.0
    );

    // A new API key is a new credential: it logs in with the new key.
    std::fs::write(&path, base.replace(API_KEY, OTHER_KEY)).unwrap();
    assert!(countersign::server::reload(&gw.gateway, &path));
    assert_eq!(set_item(&gw, "r", "4").await.status, 200);
    let stats = fake.fake.stats();
    assert_eq!(stats.logins.len(), 2);
    let login = stats
        .recent
        .iter()
        .rev()
        .find(|r| r.path_and_query == "/v1/auth/login")
        .unwrap();
    assert!(!login.body.is_empty());
    let text = gw.gateway.metrics.encode();
    assert!(
        text.contains("countersign_config_reloads_total{result=\"ok\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("countersign_config_reloads_total{result=\"rejected\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_rotated_secret_file_is_picked_up_without_a_signal() {
    const NEW_KEY: &str = "Nn9x2mQ7vL4pR8sW1zY6bN3cF5hJ0dGn";
    let fake = fake_xrtc(|c| {
        c.accounts = vec![
            (ACCOUNT.into(), API_KEY.into()),
            (ACCOUNT.into(), NEW_KEY.into()),
        ];
        c.login_timeout = std::time::Duration::from_millis(100);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api_key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    let path = dir.path().join("c.toml");
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        &dir.path().join("s"),
        "login_interval = \"100ms\"",
    )
    .replace(
        &format!("api_key = \"{API_KEY}\""),
        &format!("api_key = {{ file = \"{}\" }}", key_file.display()),
    );
    std::fs::write(&path, &toml).unwrap();
    let gw = gateway_from(countersign::kinds::load(&path).unwrap()).await;
    tokio::spawn(countersign::server::reload_on_file_change(
        gw.gateway.clone(),
        path.clone(),
        std::time::Duration::from_millis(50),
    ));
    assert_eq!(set_item(&gw, "k", "1").await.status, 200);
    let before = gw.gateway.snapshot.load().routes["x"].kind.credential_id();

    // Kubernetes-style rotation: a new file renamed over the old one.
    let tmp = dir.path().join(".api_key.new");
    std::fs::write(&tmp, format!("{NEW_KEY}\n")).unwrap();
    std::fs::rename(&tmp, &key_file).unwrap();
    let started = std::time::Instant::now();
    while gw.gateway.snapshot.load().routes["x"].kind.credential_id() == before {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "rotation not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(set_item(&gw, "k", "2").await.status, 200);
    assert_eq!(
        fake.fake.stats().logins.len(),
        2,
        "logged in again with the rotated key"
    );
}
