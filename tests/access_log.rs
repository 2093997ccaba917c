//! The access log of the real binary: one line per request, buffered per
//! worker and written in batches, none lost when SIGTERM stops it; pretty
//! and JSON lines; a caller's path cannot forge a line, and neither the
//! query string nor a secret reaches the log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::*;

/// Sends SIGTERM and waits (at most 10 s) for the binary to exit cleanly.
fn terminate(gw: &mut Process) {
    gw.signal("TERM");
    let started = Instant::now();
    loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "{}", gw.logs());
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn access_lines(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| l.contains("countersign::access"))
        .collect()
}

/// One keep-alive connection, `n` calls, as fast as they are answered.
async fn calls(gw: &Process, n: usize) {
    let client = client();
    for i in 0..n {
        let req = http::Request::post(gw.url("/x/v1/item/set"))
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                "{{items:[{{\"portalid\":\"p\",\"payload\":\"n{i}\"}}]}}"
            ))))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    }
}

#[tokio::test]
async fn sigterm_right_after_the_last_answer_loses_no_access_line() {
    let fake = fake_xrtc(|c| {
        c.login_timeout = Duration::from_millis(100);
        c.rate_per_second = 100_000;
    })
    .await;
    for format in ["pretty", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let toml = xrtc_toml(
            &format!("http://{}", fake.addr),
            &dir.path().join("s"),
            "rate_limit = { per_second = 100000, burst = 1000 }\nlogin_interval = \"100ms\"",
        )
        .replace("[server]", "[server]\nworkers = 2");
        let mut gw = spawn_binary_with(dir.path(), &toml, "info", &["--log-format", format]).await;
        const N: usize = 300;
        calls(&gw, N).await;
        // At once: the last lines are still in the workers' buffers.
        terminate(&mut gw);
        let logs = gw.logs();
        let lines = access_lines(&logs);
        assert_eq!(lines.len(), N, "{format}: one line per request");
        if format == "json" {
            for line in logs.lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                if v["target"] == "countersign::access" {
                    assert_eq!(v["fields"]["message"], "request");
                    assert_eq!(v["fields"]["status"], 200, "{line}");
                    assert_eq!(v["fields"]["path"], "/v1/item/set", "{line}");
                    assert!(v["fields"]["duration_ms"].is_f64(), "{line}");
                }
            }
        } else {
            assert!(
                lines
                    .iter()
                    .all(|l| l.contains(" INFO countersign::access: request ")
                        && l.contains(" route=x method=POST path=/v1/item/set status=200 ")),
                "{}",
                lines[0]
            );
        }
    }
}

#[tokio::test]
async fn access_lines_reach_the_log_within_100ms_while_running() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(&format!("http://{}", fake.addr), &dir.path().join("s"), "");
    let gw = spawn_binary(dir.path(), &toml, "info").await;
    calls(&gw, 3).await;
    let answered = Instant::now();
    while access_lines(&gw.logs()).len() < 3 {
        assert!(
            answered.elapsed() < Duration::from_millis(500),
            "not written: {}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The flusher runs every 50 ms; a busy test machine adds its delay.
    let took = answered.elapsed();
    assert!(took < Duration::from_millis(300), "{took:?}");
}

/// A raw HTTP/1.1 request; returns the status line.
fn raw(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

// Two threads: the raw requests block one while the fake answers on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_path_cannot_forge_a_line_and_secrets_stay_out() {
    let fake = fake_xrtc(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = xrtc_toml(&format!("http://{}", fake.addr), &dir.path().join("s"), "");
    let mut gw = spawn_binary(dir.path(), &toml, "trace").await;
    let forged = "2026-01-01T00:00:00.000000Z  INFO countersign::access: request route=forged";
    // These reach the handler: quotes, backslashes, escapes as text, and
    // Unicode line separators around a line's worth of text.
    let forged_line = format!(
        "GET /x/\u{2028}{} HTTP/1.1\r\nHost: h\r\n\r\n",
        forged.replace(' ', "\u{85}")
    );
    let logged: Vec<&[u8]> = vec![
        b"GET /x\"y\\z/a HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /x/a\"b\\c HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /%0a%1b%5b2J/a HTTP/1.1\r\nHost: h\r\n\r\n",
        forged_line.as_bytes(),
        // The query string may carry a secret: never logged.
        b"POST /x/v1/item/set?apikey=QUERY-SECRET-77 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer HEADER-SECRET-88\r\nContent-Length: 2\r\n\r\n{}",
    ];
    // These the request parsers refuse before any line: their bytes reach no log.
    let refused: Vec<&[u8]> = vec![
        b"GET /x/a\x1b[2Jb HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /x/a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /x/a\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    for req in &logged {
        let status = raw(gw.port, req);
        assert!(
            status.starts_with("HTTP/1.1 "),
            "{status:?} for {:?}",
            String::from_utf8_lossy(req)
        );
    }
    for req in &refused {
        let status = raw(gw.port, req);
        assert!(!status.starts_with("HTTP/1.1 2"), "{status}");
    }
    terminate(&mut gw);
    let logs = gw.logs();
    assert!(
        !logs.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    assert!(!logs.contains('\u{7f}') && !logs.contains('\u{2028}') && !logs.contains('\u{85}'));
    assert!(
        !logs.lines().any(|l| l.starts_with("2026-01-01")),
        "a forged line: {logs}"
    );
    let lines = access_lines(&logs);
    assert_eq!(lines.len(), logged.len(), "{logs}");
    for line in &lines {
        let (ts, rest) = line.split_once("  INFO ").unwrap_or(("", line));
        assert!(
            ts.len() == 27
                && ts.ends_with('Z')
                && rest.starts_with("countersign::access: request route="),
            "not an access line of its own: {line:?}"
        );
    }
    for expected in [
        r#" route="x\"y\\z" "#,
        r#" path="/a\"b\\c" "#,
        " route=%0a%1b%5b2J method=GET path=/a ",
        r#" path="/\u{2028}2026-01-01T00:00:00.000000Z\u{85}\u{85}INFO\u{85}"#,
        " method=POST path=/v1/item/set status=",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(expected)),
            "no {expected} in {lines:#?}"
        );
    }
    for secret in ["QUERY-SECRET-77", "HEADER-SECRET-88", API_KEY] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}
