//! boto3 straight against the AWS fake, no countersign in between: AWS's own
//! SDK signs, the fake verifies with its own SigV4 code (`tests/py/aws_e2e.py`
//! says what is exercised). Skipped with a note when boto3 is missing, except
//! under CI (`CI` set), where a missing boto3 fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::process::{Command, Stdio};

use countersign::fake::aws::{
    Config, Fake, DEMO_ACCESS_KEY_ID, DEMO_REGION, DEMO_ROLE_ARN, DEMO_SECRET_ACCESS_KEY,
    DEMO_WEB_IDENTITY_TOKEN,
};

fn boto3_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "boto3 is not importable by python3, and CI is set: pip install boto3"
        );
        eprintln!(
            "SKIPPED: boto3 is not installed (pip install boto3); the boto3 e2e test did not run"
        );
    }
    found
}

async fn run_e2e(region: &str) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Fake::new(Config {
        region: region.into(),
        ..Config::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(fake.clone().serve(listener, None, async {
        let _ = stopped.await;
    }));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/aws_e2e.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{addr}"))
        .args([DEMO_ACCESS_KEY_ID, DEMO_SECRET_ACCESS_KEY, region])
        .args([DEMO_ROLE_ARN, DEMO_WEB_IDENTITY_TOKEN])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .unwrap();
    let stats = fake.stats();
    let _ = stop.send(());
    assert!(
        out.status.success(),
        "boto3 and the fake disagree ({region}):\n{}\nfake's last refusal: {:?}",
        String::from_utf8_lossy(&out.stderr),
        stats.last_rejection
    );
    // The script's one deliberate refusal: a wrong secret. Its one STS refusal: a wrong token.
    assert_eq!(stats.auth_failures, 1, "{:?}", stats.last_rejection);
    assert_eq!((stats.sts_calls, stats.sts_issued), (2, 1));
}

#[tokio::test]
async fn boto3_agrees_with_the_fake() {
    if boto3_available() {
        run_e2e(DEMO_REGION).await;
    }
}

#[tokio::test]
async fn boto3_agrees_with_the_fake_outside_us_east_1() {
    if boto3_available() {
        run_e2e("eu-central-1").await;
    }
}
