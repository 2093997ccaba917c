//! The real binary: `check` and its exit codes, the shipped configs, and the
//! logs of `run` at RUST_LOG=trace never holding a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_countersign");

#[test]
fn check_reports_every_problem_with_its_key_path_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "127.0.0.1:8080"
max_body = "huge"

[routes.xrtc]
kind = "xrtc"
upstream = "https://api.xrtc.org"
account_id = "AC0987654321012345"
api_key = { env = "CS_TEST_XRTC_KEY_NOT_SET" }
rate_limit = { per_second = 20, brust = 20 }
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "routes.xrtc.api_key: environment variable CS_TEST_XRTC_KEY_NOT_SET is not set",
        "routes.xrtc.rate_limit.brust: unknown key",
        "server.max_body: is not a size",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_prints_the_route_table_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "file-secret-value-1234567890abcd\n").unwrap();
    let path = dir.path().join("good.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[routes.xrtc]
kind = "xrtc"
upstream = "https://api.xrtc.org"
account_id = "AC0987654321012345"
api_key = {{ file = "{}" }}
"#,
            key_file.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("api_key=file:"), "{stdout}");
    assert!(stdout.contains("20/s"), "kind defaults shown: {stdout}");
    assert!(!stdout.contains("file-secret-value"), "{stdout}");
}

#[test]
fn shipped_configs_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(BIN)
        .args(["check", "-c", &format!("{root}/config/countersign.toml")])
        .env("XRTC_API_KEY", "shipped-config-test-key-000000000")
        .env("UTILSIO_APP_SECRET", "s")
        .env("UTILSIO_APP_SALT", "00ff")
        .env("TEAMDRIVE_API_KEY", "k")
        .env("TTS_PASSWORD", "p")
        .env("TTS_ACCESS_KEY", "a")
        .env("TTS_SECRET", "s")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["check", "-c", &format!("{root}/config/demo.toml")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the env secret, the shipped config names what is missing.
    let out = Command::new(BIN)
        .args(["check", "-c", &format!("{root}/config/countersign.toml")])
        .env_remove("XRTC_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("XRTC_API_KEY is not set"));
}

#[tokio::test]
async fn secrets_never_reach_the_logs_at_trace_level() {
    use countersign::fake::{teamdrive, utilsio};
    let fake = fake_xrtc(|c| c.login_timeout = Duration::from_millis(100)).await;
    let (u_addr, u_fake, _u) = start_fake!(utilsio::Fake::new(utilsio::Config::default()));
    let (t_addr, t_fake, _t) = start_fake!(teamdrive::Fake::new(teamdrive::Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[routes.u]\nkind = \"utilsio\"\nupstream = \"http://{u_addr}/api/v1\"\napp_id = \"{}\"\napp_secret = \"{}\"\napp_salt = \"{}\"\n\n[routes.t]\nkind = \"teamdrive\"\nupstream = \"http://{t_addr}\"\nauth = \"md5\"\nkey = \"{}\"\n",
        xrtc_toml(&format!("http://{}", fake.addr), &dir.path().join("state"), "login_interval = \"100ms\""),
        utilsio::DEMO_APP,
        utilsio::DEMO_SECRET,
        utilsio::DEMO_SALT,
        teamdrive::DEMO_KEY,
    );
    let gw = spawn_binary(dir.path(), &toml, "trace").await;
    let url = gw.url("/x/v1/item/set");
    let a = post(&url, r#"{items:[{"portalid":"log","payload":"x"}]}"#).await;
    assert_eq!(a.status, 200, "{}", a.text());
    fake.fake.kill_sessions();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let a = post(&url, r#"{items:[{"portalid":"log","payload":"y"}]}"#).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = post(&gw.url("/u/subscription?deviceId=d1"), "").await;
    assert_eq!(
        a.status, 405,
        "POST is not a utilsio method: the fake says so, after checking nothing"
    );
    let a = send(
        http::Request::get(gw.url("/u/subscription?deviceId=d1"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = post(
        &gw.url("/t/yvva/api/api.xml"),
        "<teamdrive><command>loginuser</command></teamdrive>",
    )
    .await;
    assert!(a.text().contains("<result>ok</result>"), "{}", a.text());
    let logs = gw.logs();
    drop(gw);

    assert!(logs.contains("TRACE"), "trace logging was on");
    assert!(
        !logs.contains('\u{1b}'),
        "terminal colour codes in a log written to a file"
    );
    assert!(logs.contains("logged in upstream"));
    let (_, derived) =
        utilsio::app_from_secret(utilsio::DEMO_APP, utilsio::DEMO_SECRET, utilsio::DEMO_SALT)
            .unwrap();
    let mut secrets = vec![
        API_KEY.to_string(),
        utilsio::DEMO_SECRET.to_string(),
        utilsio::DEMO_SALT.to_string(),
        derived,
        teamdrive::DEMO_KEY.to_string(),
    ];
    // Session cookies are credentials; signatures and checksums must not be logged either.
    for rec in fake.fake.stats().recent {
        for (name, value) in rec.headers {
            if name == "cookie" {
                for pair in value.split("; ") {
                    if let Some((_, v)) = pair.split_once('=') {
                        secrets.push(v.to_string());
                    }
                }
            }
        }
    }
    for rec in u_fake.stats().recent {
        secrets.extend(rec.header("x-utilsio-signature").map(String::from));
    }
    for rec in t_fake.stats().recent {
        let q = rec
            .path_and_query
            .split_once("checksum=")
            .map(|(_, c)| c.to_string());
        secrets.extend(q);
    }
    assert!(
        secrets.len() >= 9,
        "every secret was collected: {}",
        secrets.len()
    );
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "a secret appeared in the logs");
    }
}

#[test]
fn explain_shows_login_and_call_with_secrets_redacted() {
    let root = env!("CARGO_MANIFEST_DIR");
    let key = "explain-secret-key-000000000000000";
    let out = Command::new(BIN)
        .args([
            "explain",
            "-c",
            &format!("{root}/config/countersign.toml"),
            "xrtc",
            "POST",
            "/v1/item/set",
        ])
        .args(["-d", r#"{items:[{"portalid":"a","payload":"b"}]}"#])
        .args([
            "-H",
            "Cookie: JSESSIONID=caller-own",
            "-H",
            "X-Request-Id: 42",
        ])
        .env("XRTC_API_KEY", key)
        .env("UTILSIO_APP_SECRET", "s")
        .env("UTILSIO_APP_SALT", "00ff")
        .env("TEAMDRIVE_API_KEY", "k")
        .env("TTS_PASSWORD", "p")
        .env("TTS_ACCESS_KEY", "a")
        .env("TTS_SECRET", "s")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("POST https://api.xrtc.org/v1/auth/login"),
        "{text}"
    );
    assert!(text.contains("\"apikey\":\"[api_key redacted]\""), "{text}");
    assert!(
        text.contains("POST https://api.xrtc.org/v1/item/set"),
        "{text}"
    );
    assert!(text.contains("cookie: <session from login>"), "{text}");
    assert!(text.contains("x-request-id: 42"), "{text}");
    assert!(
        text.contains(r#"{items:[{"portalid":"a","payload":"b"}]}"#),
        "body byte for byte: {text}"
    );
    assert!(!text.contains(key), "{text}");
    assert!(
        !text.contains("caller-own"),
        "the caller's cookie is never sent: {text}"
    );

    let out = Command::new(BIN)
        .args([
            "explain",
            "-c",
            &format!("{root}/config/demo.toml"),
            "nope",
            "GET",
            "/",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no route is named \"nope\""));
}

#[test]
fn explain_shows_each_new_kinds_signature_inputs_with_secrets_redacted() {
    let root = env!("CARGO_MANIFEST_DIR");
    let explain = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["explain", "-c", &format!("{root}/config/demo.toml")])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    // oauth2: the token request, to the token endpoint, the Basic credential redacted.
    let text = explain(&["oauth2", "GET", "/orders/1"]);
    assert!(text.contains("POST http://127.0.0.1:18107/token"), "{text}");
    assert!(text.contains("grant_type=client_credentials"), "{text}");
    assert!(
        text.contains("authorization: Basic [client_secret (Basic credential) redacted]"),
        "{text}"
    );
    assert!(!text.contains("demo-client-secret"), "{text}");
    // oauth1: the base string.
    let text = explain(&[
        "oauth1",
        "POST",
        "/statuses/update.json?x=1",
        "-d",
        "status=hi",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
    ]);
    assert!(
        text.contains("signature base string (RFC 5849 §3.4.1)): POST&http%3A%2F%2F127.0.0.1%3A18108%2F1.1%2Fstatuses%2Fupdate.json&oauth_consumer_key"),
        "{text}"
    );
    assert!(text.contains("%26status%3Dhi%26x%3D1"), "{text}");
    // aws: the canonical request and the string to sign.
    let text = explain(&["s3", "PUT", "/demo-bucket/a b.txt", "-d", "hello"]);
    assert!(
        text.contains("signature input (canonical request)"),
        "{text}"
    );
    assert!(text.contains("\nPUT\n/demo-bucket/a%20b.txt\n"), "{text}");
    assert!(text.contains("AWS4-HMAC-SHA256\n"), "{text}");
    assert!(!text.contains("cSdemo/Secret+AccessKey"), "{text}");
    // recipe: every step's result, secrets redacted.
    let text = explain(&["exchange", "GET", "/api/v3/account"]);
    assert!(text.contains("sign[0].query.timestamp"), "{text}");
    assert!(text.contains("sign[1].query.signature"), "{text}");
    assert!(
        !text.contains("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"),
        "{text}"
    );
    assert!(
        !text.contains("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"),
        "{text}"
    );
}
