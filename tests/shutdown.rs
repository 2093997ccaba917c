//! SIGTERM through the real binary: stop accepting, let in-flight requests
//! (streams included) finish within shutdown_grace, then exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::*;

#[tokio::test]
async fn sigterm_drains_an_in_flight_stream_then_exits_0() {
    let fake = fake_xrtc(|c| c.get_item_timeout = Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(&format!("http://{}", fake.addr), &dir.path().join("s"), "")
        .replace("shutdown_grace = \"2s\"", "shutdown_grace = \"5s\"");
    let mut gw = spawn_binary(dir.path(), &toml, "info").await;
    assert_eq!(
        post(
            &gw.url("/x/v1/item/set"),
            r#"{items:[{"portalid":"d","payload":"one"}]}"#
        )
        .await
        .status,
        200
    );

    let req = http::Request::post(gw.url("/x/v1/item/get"))
        .body(Full::new(Bytes::from_static(
            br#"{portals:[{"portalid":"d"}],"mode":"stream"}"#,
        )))
        .unwrap();
    // Timed from before the request: the fake's 1.5 s start after it, so a
    // stream that ran to its end took at least that, however slowly the
    // answer's head came on a loaded machine.
    let started = Instant::now();
    let resp = client().request(req).await.unwrap();
    gw.signal("TERM");
    // The stream in flight runs to its natural end (1.5 s) and is complete.
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("\"one\""));
    assert!(
        started.elapsed() >= Duration::from_millis(1450),
        "cut short at {:?}",
        started.elapsed()
    );
    // No new caller is accepted once draining began.
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await;
    if let Ok(mut s) = refused {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = s
            .write_all(b"POST /x/v1/item/get HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
        assert!(
            !String::from_utf8_lossy(&buf).contains("200 OK"),
            "a new request was served while draining"
        );
    }
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = gw.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sigterm_gives_up_on_requests_longer_than_the_grace() {
    let fake = fake_xrtc(|c| c.get_item_timeout = Duration::from_secs(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(&format!("http://{}", fake.addr), &dir.path().join("s"), "")
        .replace("shutdown_grace = \"2s\"", "shutdown_grace = \"500ms\"");
    let mut gw = spawn_binary(dir.path(), &toml, "info").await;
    let req = http::Request::post(gw.url("/x/v1/item/get"))
        .body(Full::new(Bytes::from_static(
            br#"{portals:[{"portalid":"z"}],"mode":"stream"}"#,
        )))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    gw.signal("TERM");
    let status = tokio::task::spawn_blocking(move || loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "did not exit within grace"
        );
        std::thread::sleep(Duration::from_millis(20));
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(resp);
}

#[tokio::test]
async fn sighup_reloads_the_running_binary_and_json_logs_are_one_object_per_line() {
    let fake = fake_xrtc(|c| c.login_timeout = Duration::from_millis(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(
        &format!("http://{}", fake.addr),
        &dir.path().join("s"),
        "login_interval = \"100ms\"",
    );
    let gw = spawn_binary_with(dir.path(), &toml, "info", &["--log-format", "json"]).await;
    let url = gw.url("/x/v1/item/set");
    let set = |n: u32| {
        let url = url.clone();
        async move {
            post(
                &url,
                &format!(r#"{{items:[{{"portalid":"h","payload":"n{n}"}}]}}"#),
            )
            .await
        }
    };
    assert_eq!(set(1).await.status, 200);

    // A broken config and SIGHUP: rejected, the old one keeps serving.
    let path = dir.path().join("countersign.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace("kind = \"xrtc\"", "kind = \"xrtc\"\nbogus = 1"),
    )
    .unwrap();
    gw.signal("HUP");
    let wait_for = |needle: &'static str| {
        let gw = &gw;
        async move {
            let started = Instant::now();
            while !gw.logs().contains(needle) {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no {needle:?} in:\n{}",
                    gw.logs()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for("config reload rejected").await;
    assert_eq!(set(2).await.status, 200);
    // A good new config and SIGHUP: applied, the session kept (no new login).
    std::fs::write(
        &path,
        good.replace(
            "login_interval = \"100ms\"",
            "login_interval = \"100ms\"\nrate_limit = { per_second = 7 }",
        ),
    )
    .unwrap();
    gw.signal("HUP");
    wait_for("config reloaded").await;
    assert_eq!(set(3).await.status, 200);
    assert_eq!(
        fake.fake.stats().logins.len(),
        1,
        "the reload kept the session"
    );

    // Every log line is a JSON object; request lines carry the audit fields.
    // (Access lines are written in batches, within 100 ms.)
    let started = Instant::now();
    while gw.logs().matches("\"message\":\"request\"").count() < 3 {
        assert!(started.elapsed() < Duration::from_secs(5), "{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = gw.logs();
    let mut requests = 0;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["fields"]["message"] == "request" {
            requests += 1;
            for field in [
                "client",
                "route",
                "method",
                "path",
                "status",
                "upstream_status",
                "duration_ms",
                "login",
                "replay",
            ] {
                assert!(!v["fields"][field].is_null(), "{field} missing in {line}");
            }
        }
    }
    assert_eq!(requests, 3);
}
