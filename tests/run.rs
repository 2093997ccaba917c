//! The production wiring in process: `server::run` with its worker threads,
//! admin listener, file-change reload and drain, started and stopped by the
//! test (what `countersign run` does between a start and a SIGTERM).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::time::{Duration, Instant};

use support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Answer {
    send(
        http::Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_reloads_on_file_change_and_drains_on_shutdown() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let toml = xrtc_toml(&format!("http://{}", fake.addr), &dir.path().join("s"), "").replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\"\nworkers = 2"),
    );
    let path = dir.path().join("countersign.toml");
    std::fs::write(&path, &toml).unwrap();
    let config = countersign::kinds::load(&path).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(countersign::server::run(config, path.clone(), async {
        let _ = stopped.await;
    }));
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let admin_url = |p: &str| format!("http://127.0.0.1:{admin}{p}");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "run did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", admin))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "admin did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&admin_url("/healthz")).await.status, 200);
    let set = |route: &'static str| {
        let u = url(&format!("/{route}/v1/item/set"));
        async move { post(&u, r#"{items:[{"portalid":"p","payload":"x"}]}"#).await }
    };
    assert_eq!(set("x").await.status, 200);
    assert_eq!(set("y").await.error_code(), Some("unknown_route"));

    // A second route appears in the file: served within the poll period.
    std::fs::write(&path, toml.replace("[routes.x]", "[routes.y]\nkind = \"xrtc\"\nupstream = \"http://127.0.0.1:9\"\naccount_id = \"AC1\"\napi_key = \"k\"\n\n[routes.x]")).unwrap();
    let started = Instant::now();
    loop {
        let a = set("y").await;
        if a.error_code() != Some("unknown_route") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new route never came"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = get(&admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("countersign_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert_eq!(set("x").await.status, 200, "the old route kept serving");

    // Shutdown: run returns once drained, and the port is closed.
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), run).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}
