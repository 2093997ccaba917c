//! Bad input and faults: every countersign error is a status, a code and a
//! sentence; nothing hangs, nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use support::*;

#[tokio::test]
async fn unknown_route_is_404_with_a_code_and_a_sentence() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "")).await;
    let a = post(&gw.url("/nope/v1/item/get"), "{}").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_code(), Some("unknown_route"));
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["error"]["code"], "unknown_route");
    assert!(v["error"]["message"].as_str().unwrap().contains("\"nope\""));
    // Percent-encoding the route name does not reach a route either.
    assert_eq!(post(&gw.url("/%78/v1/item/get"), "{}").await.status, 404);
}

#[tokio::test]
async fn oversize_bodies_are_413_whether_declared_or_streamed() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut toml = xrtc_toml(&format!("http://{}", fake.addr), dir.path(), "");
    toml = toml.replace(
        "shutdown_grace = \"2s\"",
        "shutdown_grace = \"2s\"\nmax_body = \"1KiB\"",
    );
    let gw = gateway(&toml).await;
    let big = "x".repeat(2048);
    let a = post(&gw.url("/x/v1/item/set"), &big).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.error_code(), Some("body_too_large"));
    // Chunked, no Content-Length: found while reading.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = client
        .request(
            Request::post(gw.url("/x/v1/item/set"))
                .body(chunked(4, 600))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        fake.fake.stats().requests,
        0,
        "buffered oversize bodies never leave"
    );
    // Streamed (unsigned, not replayable) routes are capped as well: the
    // upstream sees a truncated chunked request, never a complete one.
    let resp = client
        .request(
            Request::post(gw.url("/x/v1/auth/registrationstart"))
                .body(chunked(4, 600))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(
        fake.fake.stats().recent.iter().all(|r| r.status != 200),
        "the upstream accepted none of it"
    );
}

type Chunks = StreamBody<
    futures_util::stream::Iter<
        std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::convert::Infallible>>,
    >,
>;

/// A chunked body (no Content-Length) of `n` chunks of `size` bytes.
fn chunked(n: usize, size: usize) -> Chunks {
    let frames: Vec<_> = (0..n)
        .map(|_| Ok(http_body::Frame::data(Bytes::from(vec![b'y'; size]))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test]
async fn refused_connection_is_502_upstream_unreachable() {
    let addr = refused_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(&format!("http://{addr}"), dir.path(), "")).await;
    let a = set_item(&gw, "p", "x").await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(a.error_code(), Some("upstream_unreachable"));
    let a = post(&gw.url("/x/v1/auth/registrationstart"), "{}").await;
    assert_eq!(a.status, 502);
}

#[tokio::test]
async fn silent_upstream_is_504_within_the_request_timeout() {
    let (addr, _hold) = silent_server().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(
        &format!("http://{addr}"),
        dir.path(),
        "request_timeout = \"500ms\"",
    ))
    .await;
    let started = Instant::now();
    let a = post(&gw.url("/x/v1/auth/registrationstart"), "{}").await;
    assert_eq!(a.status, 504, "{}", a.text());
    assert_eq!(a.error_code(), Some("upstream_timeout"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // A session call times out in its login the same way.
    let a = set_item(&gw, "p", "x").await;
    assert_eq!(a.status, 504, "{}", a.text());
}

#[tokio::test]
async fn tls_upstream_with_ca_file() {
    let up = TlsFake::start(&[b"h2", b"http/1.1"]).await;
    let gw = gateway(&xrtc_toml(&up.url, &up.dir.path().join("s"), &up.ca_line)).await;
    let a = set_item(&gw, "t", "over-tls").await;
    assert_eq!(a.status, 200, "{}", a.text());
    // The upstream offered h2 by ALPN and the pooled client took it.
    assert!(
        up.versions().iter().all(|v| v == "HTTP/2.0"),
        "{:?}",
        up.versions()
    );
    // Without the CA the certificate is refused: no silent downgrade.
    let gw2 = gateway(&xrtc_toml(&up.url, &up.dir.path().join("s2"), "")).await;
    let a = set_item(&gw2, "t", "x").await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(up.fake.stats().logins.len(), 1);
}

#[tokio::test]
async fn tls_upstream_speaking_only_http1_goes_through_the_h1_client() {
    let up = TlsFake::start(&[b"http/1.1"]).await;
    let gw = gateway(&xrtc_toml(&up.url, &up.dir.path().join("s"), &up.ca_line)).await;
    for i in 0..3 {
        let a = set_item(&gw, "t", &format!("over-tls-{i}")).await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    assert!(
        up.versions().iter().all(|v| v == "HTTP/1.1"),
        "{:?}",
        up.versions()
    );
    assert_eq!(up.versions().len(), 4, "a login and three calls");
    let gw2 = gateway(&xrtc_toml(&up.url, &up.dir.path().join("s2"), "")).await;
    let a = set_item(&gw2, "t", "x").await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert!(a.text().contains("certificate"), "{}", a.text());
}

/// A fake XRTC over TLS with a fresh self-signed certificate, offering `alpn`.
struct TlsFake {
    fake: countersign::fake::xrtc::Fake,
    url: String,
    ca_line: String,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TlsFake {
    async fn start(alpn: &[&[u8]]) -> TlsFake {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let mut tls = (*countersign::fake::tls_config(&cert_path, &key_path).unwrap()).clone();
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fake = countersign::fake::xrtc::Fake::new(countersign::fake::xrtc::Config {
            accounts: vec![(ACCOUNT.into(), API_KEY.into())],
            ..Default::default()
        });
        let f = fake.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = f
                .serve(listener, Some(std::sync::Arc::new(tls)), async {
                    let _ = rx.await;
                })
                .await;
        });
        TlsFake {
            fake,
            url: format!("https://localhost:{port}"),
            ca_line: format!("ca_file = \"{}\"", cert_path.display()),
            dir,
            _stop: tx,
        }
    }

    fn versions(&self) -> Vec<String> {
        self.fake
            .stats()
            .recent
            .iter()
            .map(|r| r.version.clone())
            .collect()
    }
}

#[tokio::test]
async fn dot_segments_cannot_leave_the_base_path() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(
        &format!("http://{}/v1", fake.addr),
        dir.path(),
        "",
    ))
    .await;
    for path in [
        "/x/../admin",
        "/x/item/%2e%2e/%2E%2E/admin",
        "/x/item%2F..%2Fadmin",
    ] {
        let req = Request::post(gw.url(path))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let a = send(req).await;
        assert!(a.status == 400 || a.status == 404, "{path}: {}", a.status);
    }
    assert_eq!(fake.fake.stats().requests, 0);
    let _ = Full::new(Bytes::new()).collect().await;
}

/// A stream read (`mode: stream`) through route `x` of `gw`, started after
/// one item is set; `feed` more items are set 250 ms apart while it flows.
/// Returns the text received and whether the body ended cleanly.
async fn stream_through(gw: &Gw, feed: usize) -> (String, Result<(), String>, Duration) {
    assert_eq!(set_item(gw, "s1", "first").await.status, 200);
    let started = Instant::now();
    let req = Request::post(gw.url("/x/v1/item/get"))
        .body(Full::new(Bytes::from_static(
            br#"{portals:[{"portalid":"s1"}],"mode":"stream","schedule":"FIFO"}"#,
        )))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), client().request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let url = gw.url("/x/v1/item/set");
    let feeder = tokio::spawn(async move {
        for i in 0..feed {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let body = format!("{{items:[{{\"portalid\":\"s1\",\"payload\":\"n{i}\"}}]}}");
            post(&url, &body).await;
        }
    });
    let mut body = resp.into_body();
    let mut text = String::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
            Err(_) => break Err("the stream hung".to_string()),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(format!("{e:?}")),
            Ok(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    text.push_str(&String::from_utf8_lossy(d));
                }
            }
        }
    };
    feeder.abort();
    (text, ended, started.elapsed())
}

#[tokio::test]
async fn a_stream_keeps_flowing_past_read_timeout_while_chunks_keep_coming() {
    // The stream lasts 2 s; no gap between its chunks reaches 700 ms.
    let fake = fake_xrtc(|c| c.get_item_timeout = Duration::from_millis(2000)).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(
        &format!("http://{}", fake.addr),
        dir.path(),
        "read_timeout = \"700ms\"\nrate_limit = { per_second = 100, burst = 100 }",
    ))
    .await;
    let (text, ended, took) = stream_through(&gw, 7).await;
    eprintln!("stream flowed for {took:?} (read_timeout 700ms)");
    assert_eq!(ended, Ok(()), "received {text:?}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(text.contains("\"n5\""), "{text}");
    let m = gw.gateway.metrics.encode();
    assert!(
        m.contains("countersign_cutoffs_total{reason=\"upstream_read_timeout\"} 0"),
        "{m}"
    );
}

#[tokio::test]
async fn a_stream_that_goes_silent_past_read_timeout_is_cut() {
    let fake = fake_xrtc(|c| c.get_item_timeout = Duration::from_millis(3000)).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&xrtc_toml(
        &format!("http://{}", fake.addr),
        dir.path(),
        "read_timeout = \"500ms\"",
    ))
    .await;
    // One chunk, then 3 s of silence.
    let (text, ended, took) = stream_through(&gw, 0).await;
    eprintln!("silent stream cut after {took:?} (read_timeout 500ms)");
    assert!(text.contains("\"first\""), "{text}");
    assert!(ended.is_err(), "a silent stream was passed off as complete");
    assert!(
        took < Duration::from_millis(2500),
        "not cut at read_timeout: {took:?}"
    );
    let m = gw.gateway.metrics.encode();
    assert!(
        m.contains("countersign_cutoffs_total{reason=\"upstream_read_timeout\"} 1"),
        "{m}"
    );
}
