//! Listening on a unix socket (sidecars sharing a volume instead of a port).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::*;

#[tokio::test]
async fn unix_socket_listener_serves_with_mode_0660() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let config = countersign::kinds::from_toml(&xrtc_toml(
        &format!("http://{}", fake.addr),
        &dir.path().join("s"),
        "",
    ))
    .unwrap();
    let gateway = countersign::server::gateway(config).unwrap();
    let sock = dir.path().join("cs.sock");
    let listener = countersign::server::bind_unix(&sock).unwrap();
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(countersign::server::serve(gateway, listener, async {
        let _ = rx.await;
    }));

    let stream = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/x/v1/item/set")
        .header("host", "countersign")
        .body(Full::new(Bytes::from_static(
            br#"{items:[{"portalid":"u","payload":"over-unix"}]}"#,
        )))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("servertimestamp"));
    let _ = tx.send(());
    serving.await.unwrap();
}

#[test]
fn a_regular_file_at_the_socket_path_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, "data").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(async { countersign::server::bind_unix(&path).map(|_| ()) });
    assert!(err.is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
}
