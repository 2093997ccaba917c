//! The fake XRTC over real loopback HTTP, checked against the API document.

use super::*;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

struct Running {
    addr: std::net::SocketAddr,
    fake: Fake,
    _stop: tokio::sync::oneshot::Sender<()>,
}

const ACC: &str = "AC1111111111111111";
const KEY: &str = "k0000000000000000000000000000key";

async fn start(tune: impl FnOnce(&mut Config)) -> Running {
    let mut cfg = Config {
        accounts: vec![(ACC.into(), KEY.into())],
        ..Default::default()
    };
    tune(&mut cfg);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let fake = Fake::new(cfg);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(fake.clone().serve(l, None, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        fake,
        _stop: tx,
    }
}

async fn call(
    r: &Running,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, String, Vec<String>) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::post(format!("http://{}{path}", r.addr));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let set: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), set)
}

fn jar(set: &[String]) -> String {
    set.iter()
        .map(|c| c.split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

async fn login(r: &Running) -> String {
    let (s, body, set) = call(
        r,
        "/v1/auth/login",
        None,
        &format!(r#"{{"accountid":"{ACC}","apikey":"{KEY}"}}"#),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("servertimestamp"));
    jar(&set)
}

fn code(body: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["error"]["errorcode"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn login_sets_both_cookies_and_items_round_trip() {
    let r = start(|_| {}).await;
    let jar = login(&r).await;
    assert!(
        jar.contains("JSESSIONID=") && jar.contains("AWSALBAPP-0="),
        "{jar}"
    );
    let (s, b, _) = call(
        &r,
        "/v1/item/set",
        Some(&jar),
        r#"{items:[{"portalid":"abc","payload":"x1"}]}"#,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b, _) = call(
        &r,
        "/v1/item/get",
        Some(&jar),
        r#"{portals:[{"portalid":"abc"}]}"#,
    )
    .await;
    assert_eq!(s, 200);
    assert!(b.contains("\"x1\""), "{b}");
    // The cursor moved: nothing new on a second probe.
    let (_, b, _) = call(
        &r,
        "/v1/item/get",
        Some(&jar),
        r#"{portals:[{"portalid":"abc"}]}"#,
    )
    .await;
    assert_eq!(b, "{}");
    // All portals, latest item each, regardless of cursors.
    let (_, b, _) = call(&r, "/v1/item/get", Some(&jar), r#"{portals:null}"#).await;
    assert!(b.contains("\"x1\""), "{b}");
}

#[tokio::test]
async fn wrong_key_and_too_frequent_login() {
    let r = start(|_| {}).await;
    let (s, b, _) = call(
        &r,
        "/v1/auth/login",
        None,
        &format!(r#"{{"accountid":"{ACC}","apikey":"nope"}}"#),
    )
    .await;
    assert_eq!((s, code(&b)), (400, 35));
    login(&r).await;
    let (s, b, _) = call(
        &r,
        "/v1/auth/login",
        None,
        &format!(r#"{{"accountid":"{ACC}","apikey":"{KEY}"}}"#),
    )
    .await;
    assert_eq!((s, code(&b)), (400, 45));
    let st = r.fake.stats();
    assert_eq!(st.login_rejections, 1);
    assert_eq!(st.logins.len(), 1);
}

#[tokio::test]
async fn cookies_are_checked_and_sessions_die() {
    let r = start(|c| c.session_idle = Duration::from_millis(300)).await;
    let jar = login(&r).await;
    let set = r#"{items:[{"portalid":"a","payload":"x"}]}"#;
    let (s, b, _) = call(&r, "/v1/item/set", None, set).await;
    assert_eq!((s, code(&b)), (401, 10011));
    let only_session = jar.split("; ").next().unwrap().to_string();
    assert_eq!(
        call(&r, "/v1/item/set", Some(&only_session), set).await.0,
        401
    );
    let forged = jar.replace("AWSALBAPP-0=", "AWSALBAPP-0=forged");
    assert_eq!(call(&r, "/v1/item/set", Some(&forged), set).await.0, 401);
    assert_eq!(call(&r, "/v1/item/set", Some(&jar), set).await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        call(&r, "/v1/item/set", Some(&jar), set).await.0,
        401,
        "idle session is dead"
    );
    assert_eq!(r.fake.stats().session_denials, 4);
}

#[tokio::test]
async fn killed_sessions_are_denied() {
    let r = start(|_| {}).await;
    let jar = login(&r).await;
    r.fake.kill_sessions();
    let (s, b, _) = call(&r, "/v1/item/get", Some(&jar), "{portals:[]}").await;
    assert_eq!((s, code(&b)), (401, 10011));
}

#[tokio::test]
async fn payload_limit_and_parse_errors() {
    let r = start(|_| {}).await;
    let jar = login(&r).await;
    let big = format!(
        r#"{{items:[{{"portalid":"a","payload":"{}"}}]}}"#,
        "x".repeat(1100)
    );
    let (s, b, _) = call(&r, "/v1/item/set", Some(&jar), &big).await;
    assert_eq!((s, code(&b)), (400, 20));
    let (s, b, _) = call(&r, "/v1/item/set", Some(&jar), "{items:[").await;
    assert_eq!((s, code(&b)), (400, 20));
    let (s, b, _) = call(
        &r,
        "/v1/item/set",
        Some(&jar),
        r#"{items:[{"portalid":"bad id","payload":"x"}]}"#,
    )
    .await;
    assert_eq!((s, code(&b)), (400, 30));
}

#[tokio::test]
async fn bursts_over_the_rate_are_refused_and_counted() {
    let r = start(|_| {}).await;
    let jar = login(&r).await;
    let calls = (0..30).map(|_| call(&r, "/v1/item/get", Some(&jar), "{portals:[]}"));
    let results = futures_util::future::join_all(calls).await;
    let refused = results
        .iter()
        .filter(|(s, b, _)| *s == 400 && code(b) == 50)
        .count();
    // 20 tokens (minus the login's) and a little refill: about 10 refused.
    assert!(refused >= 8, "refused {refused}");
    assert_eq!(r.fake.stats().rate_violations as usize, refused);
}

#[tokio::test]
async fn stream_delivers_lines_before_it_ends() {
    let r = start(|c| c.get_item_timeout = Duration::from_millis(1200)).await;
    let jar = login(&r).await;
    call(
        &r,
        "/v1/item/set",
        Some(&jar),
        r#"{items:[{"portalid":"s","payload":"first"}]}"#,
    )
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let req = Request::post(format!("http://{}/v1/item/get", r.addr))
        .header("cookie", &jar)
        .body(Full::new(Bytes::from_static(
            br#"{portals:[{"portalid":"s"}],"mode":"stream"}"#,
        )))
        .unwrap();
    let mut body = client.request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).ends_with('\n'));
    call(
        &r,
        "/v1/item/set",
        Some(&jar),
        r#"{items:[{"portalid":"s","payload":"second"}]}"#,
    )
    .await;
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&second).contains("second"));
    while body.frame().await.is_some() {}
    let ended = started.elapsed();
    assert!(
        first_at + Duration::from_millis(800) < ended,
        "first {first_at:?} end {ended:?}"
    );
}

#[tokio::test]
async fn watch_waits_for_data_then_answers() {
    let r = start(|c| c.get_item_timeout = Duration::from_millis(300)).await;
    let jar = login(&r).await;
    let started = Instant::now();
    let (s, b, _) = call(
        &r,
        "/v1/item/get",
        Some(&jar),
        r#"{portals:[{"portalid":"w"}],"mode":"watch"}"#,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "{}"));
    assert!(started.elapsed() >= Duration::from_millis(280));
}

#[tokio::test]
async fn registration_creates_a_usable_account() {
    let r = start(|_| {}).await;
    let (s, b, _) = call(&r, "/v1/auth/registrationstart", None, r#"{"email":"bad"}"#).await;
    assert_eq!((s, code(&b)), (400, 32));
    let (_, b, _) = call(
        &r,
        "/v1/auth/registrationstart",
        None,
        r#"{"email":"a@b.org"}"#,
    )
    .await;
    let token = serde_json::from_str::<serde_json::Value>(&b).unwrap()["registrationtoken"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b, _) = call(
        &r,
        "/v1/auth/registrationcode",
        None,
        &format!(r#"{{"registrationtoken":"{token}","emailcode":"000000"}}"#),
    )
    .await;
    assert_eq!((s, code(&b)), (400, 34));
    let (s, b, _) = call(
        &r,
        "/v1/auth/registrationcode",
        None,
        &format!(r#"{{"registrationtoken":"{token}","emailcode":"123456"}}"#),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let (acc, key) = (
        v["accountid"].as_str().unwrap(),
        v["apikey"].as_str().unwrap(),
    );
    assert!(acc.starts_with("AC") && key.len() == 32);
    let (s, _, _) = call(
        &r,
        "/v1/auth/login",
        None,
        &format!(r#"{{"accountid":"{acc}","apikey":"{key}"}}"#),
    )
    .await;
    assert_eq!(s, 200);
}
