//! Loading a config: common keys, each kind's own keys, defaults, problems.

use std::time::Duration;

use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body = "64KiB"
state_dir = "/tmp/countersign-test-state"

[routes.xrtc]
kind = "xrtc"
upstream = "https://api.xrtc.org/base/"
account_id = "AC0987654321012345"
api_key = "literal-key-0000000000000000000000"
"#;

#[test]
fn kind_defaults_apply() {
    let c = from_toml(GOOD).unwrap();
    assert_eq!(c.server.max_body, 64 * 1024);
    let r = &c.routes["xrtc"];
    assert_eq!(r.base_path, "/base");
    assert_eq!(r.upstream.to_string(), "https://api.xrtc.org/");
    let rl = r.rate_limit.unwrap();
    assert_eq!(
        (rl.per_second, rl.burst, rl.wait),
        (20.0, 20, Duration::from_secs(5))
    );
    assert_eq!(r.quota_per_month, Some(1_000_000));
    assert_eq!(r.login_interval, Duration::from_secs(5));
    assert_eq!(r.session_idle, Duration::from_secs(60));
    assert_eq!(
        r.secret_sources,
        vec![("api_key".to_string(), "literal".to_string())]
    );
}

#[test]
fn workers_default_to_two_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(from_toml(GOOD).unwrap().server.workers, 2 * cores);
    let three = GOOD.replace("[server]", "[server]\nworkers = 3");
    assert_eq!(from_toml(&three).unwrap().server.workers, 3);
    let none = GOOD.replace("[server]", "[server]\nworkers = 0");
    let problems = from_toml(&none).unwrap_err();
    assert!(
        problems.iter().any(|p| p.to_string().contains("workers")),
        "{problems:?}"
    );
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
[server]
listen = "nowhere"
max_body = "lots"
bogus = 1

[routes.xrtc]
kind = "xrtc"
upstream = "ftp://x"
api_key = { env = "COUNTERSIGN_TEST_UNSET_XRTC_KEY" }
rate_limit = { per_second = 10, burst = 0, wiat = "1s" }
login_interval = "soon"
extra = true

[routes.other]
kind = "nosuch"
upstream = "https://example.org"
"#;
    let problems = from_toml(text).unwrap_err();
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let expect = [
        "server.listen: is neither HOST:PORT nor unix:/path",
        "server.max_body: is not a size",
        "server.bogus: unknown key",
        "routes.xrtc.upstream: must start with http:// or https://",
        "routes.xrtc.api_key: environment variable COUNTERSIGN_TEST_UNSET_XRTC_KEY is not set",
        "routes.xrtc.account_id: is required",
        "routes.xrtc.rate_limit.burst: must be at least 1",
        "routes.xrtc.rate_limit.wiat: unknown key",
        "routes.xrtc.login_interval: is not a duration",
        "routes.xrtc.extra: unknown key",
        "routes.other.kind: is not a kind",
    ];
    for e in expect {
        assert!(
            shown.iter().any(|s| s.starts_with(e)),
            "missing {e:?} in {shown:#?}"
        );
    }
}

#[test]
fn secrets_never_appear_in_problems_or_debug() {
    let text = GOOD.replace(
        "upstream = \"https://api.xrtc.org/base/\"",
        "upstream = \"nope\"",
    );
    let problems = from_toml(&text).unwrap_err();
    let shown = format!("{problems:?}");
    assert!(!shown.contains("literal-key"), "{shown}");
    let c = from_toml(GOOD).unwrap();
    assert!(!format!("{c:?}").contains("literal-key"));
}

/// Problems name the line, column and key path, never a value: toml's own
/// text quoted the broken line (`api_key = "…`), serde's the wrong value.
#[test]
fn problems_never_repeat_a_value() {
    const SECRET: &str = "hunter2-0123456789abcdef";
    let unterminated = format!("{GOOD}\n[routes.tts]\nkind = \"tts\"\napi_key = \"{SECRET}\n");
    let problems = from_toml(&unterminated).unwrap_err();
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    let line = 1 + unterminated
        .lines()
        .position(|l| l.starts_with("api_key = \"hunter2"))
        .unwrap();
    let expected = format!("routes.tts.api_key: TOML syntax error at line {line}, column ");
    assert!(shown[0].starts_with(&expected), "{shown:#?}");
    assert!(!shown[0].contains("hunter2"), "{shown:#?}");
    let wrong = [
        format!("force_login = \"{SECRET}\""),
        format!("identifier = [\"{SECRET}\"]"),
        format!("module = {{ x = \"{SECRET}\" }}"),
        format!("login_interval = \"{SECRET}\""),
        format!("spider_upstream = \"https://u:{SECRET}@spider.example\""),
        format!("spider_upstream = \"{SECRET}\""),
        format!("upstream2 = \"{SECRET}\""),
    ];
    for line in &wrong {
        let text = format!(
            "{GOOD}\n[routes.tts]\nkind = \"tts\"\nupstream = \"https://tts.example\"\n{line}\n"
        );
        let problems = from_toml(&text).unwrap_err();
        let shown = problems
            .iter()
            .map(|p| format!("{p} {p:?}"))
            .collect::<String>();
        assert!(!shown.contains("hunter2"), "{line}: {shown}");
    }
    let text = format!("{GOOD}\n[server]\nlisten = \"{SECRET}\"\nadmin = \"{SECRET}\"\n");
    let shown = format!("{:?}", from_toml(&text).unwrap_err());
    assert!(!shown.contains("hunter2"), "{shown}");
    let text = format!(
        "[server]\nstate = \"redis://:{SECRET}/x@cache/zero\"\non_state_failure = \"{SECRET}\"\n{}",
        &GOOD[GOOD.find("[routes").unwrap()..]
    );
    let shown = format!("{:?}", from_toml(&text).unwrap_err());
    assert!(
        !shown.contains("hunter2") && shown.contains("server.state"),
        "{shown}"
    );
}

/// Accepted before: printed by `check`, logged, and sent in `Host`.
#[test]
fn upstreams_with_a_user_or_password_are_refused() {
    for url in [
        "https://user:pa55word@api.xrtc.org",
        "https://user@api.xrtc.org/base",
        "http://:pa55word@127.0.0.1:8080",
    ] {
        let text = GOOD.replace("https://api.xrtc.org/base/", url);
        let problems = from_toml(&text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 1, "{shown:#?}");
        assert!(
            shown[0].starts_with("routes.xrtc.upstream: must not carry a user name or password"),
            "{shown:#?}"
        );
        assert!(!shown[0].contains("pa55word") && !shown[0].contains("user@"));
    }
}

/// The last client with a token used to win: the first lost its routes.
#[test]
fn two_clients_with_one_token_are_refused() {
    let text = format!(
        "{GOOD}\n[clients.a]\ntoken = \"shared-token-000000000000\"\nroutes = [\"xrtc\"]\n\n[clients.b]\ntoken = {{ env = \"CS_TEST_DUP_TOKEN_NOT_PREFIXED\" }}\nroutes = [\"xrtc\"]\n"
    );
    std::env::set_var(
        "CS_TEST_DUP_TOKEN_NOT_PREFIXED",
        "shared-token-000000000000",
    );
    let problems = from_toml(&text).unwrap_err();
    std::env::remove_var("CS_TEST_DUP_TOKEN_NOT_PREFIXED");
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        ["clients.b.token: is the same token as clients.a.token: give each client its own (a caller could not be told apart, and would get one client's routes)"]
    );
    let distinct = text.replace(
        "token = { env = \"CS_TEST_DUP_TOKEN_NOT_PREFIXED\" }",
        "token = \"another-token-0000000000\"",
    );
    from_toml(&distinct).unwrap();
}

#[test]
fn env_overrides_toml() {
    // Unique names so parallel tests cannot collide.
    std::env::set_var("COUNTERSIGN_ROUTES__ENVTEST__KIND", "xrtc");
    std::env::set_var(
        "COUNTERSIGN_ROUTES__ENVTEST__UPSTREAM",
        "http://127.0.0.1:9",
    );
    std::env::set_var("COUNTERSIGN_ROUTES__ENVTEST__ACCOUNT_ID", "AC1");
    std::env::set_var("COUNTERSIGN_ROUTES__ENVTEST__API_KEY", "k");
    std::env::set_var("COUNTERSIGN_ROUTES__ENVTEST__RATE_LIMIT__PER_SECOND", "7");
    let c = from_toml(GOOD);
    for k in [
        "KIND",
        "UPSTREAM",
        "ACCOUNT_ID",
        "API_KEY",
        "RATE_LIMIT__PER_SECOND",
    ] {
        std::env::remove_var(format!("COUNTERSIGN_ROUTES__ENVTEST__{k}"));
    }
    let c = c.unwrap();
    let r = &c.routes["envtest"];
    assert_eq!(r.rate_limit.unwrap().per_second, 7.0);
    assert_eq!(r.rate_limit.unwrap().burst, 7);
}
