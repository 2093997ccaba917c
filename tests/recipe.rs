//! The recipe kind end to end: the worked recipes of docs/recipes.md, each
//! against a strict fake written from that API's public documentation
//! (`fake::exchanges`), not from the recipe.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use bytes::Bytes;
use countersign::fake::exchanges::{binance, coinbase, kraken, okx};
use http_body_util::Full;
use support::*;

/// The recipes as docs/recipes.md gives them (the tests read them from
/// there, so the documentation cannot drift from what is tested).
fn recipe(name: &str) -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/recipes.md")).unwrap();
    let start = doc
        .find(&format!("<!-- recipe:{name} -->"))
        .unwrap_or_else(|| panic!("docs/recipes.md has no recipe:{name}"));
    let block = &doc[start..];
    let open = block.find("```toml\n").unwrap() + "```toml\n".len();
    let close = open + block[open..].find("```").unwrap();
    block[open..close].to_string()
}

/// The fakes' demo credentials, where the recipes read them.
fn demo_credentials() {
    for (name, value) in [
        ("BINANCE_API_KEY", binance::DEMO_API_KEY),
        ("BINANCE_SECRET_KEY", binance::DEMO_SECRET_KEY),
        ("COINBASE_KEY", coinbase::DEMO_KEY),
        ("COINBASE_SECRET", coinbase::DEMO_SECRET),
        ("COINBASE_PASSPHRASE", coinbase::DEMO_PASSPHRASE),
        ("KRAKEN_API_KEY", kraken::DEMO_API_KEY),
        ("KRAKEN_SECRET", kraken::DEMO_SECRET),
        ("OKX_API_KEY", okx::DEMO_API_KEY),
        ("OKX_SECRET_KEY", okx::DEMO_SECRET_KEY),
        ("OKX_PASSPHRASE", okx::DEMO_PASSPHRASE),
    ] {
        std::env::set_var(name, value);
    }
}

fn with_upstream(recipe: &str, addr: std::net::SocketAddr) -> String {
    demo_credentials();
    recipe.replace("https://api.example.com", &format!("http://{addr}"))
}

async fn call(gw: &Gw, method: &str, path: &str, ct: Option<&str>, body: &str) -> Answer {
    let mut req = http::Request::builder().method(method).uri(gw.url(path));
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    send(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

fn toml(dir: &std::path::Path, recipe: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nshutdown_grace = \"2s\"\n\n{recipe}",
        dir.display()
    )
}

#[tokio::test]
async fn binance_signature_in_the_query_over_the_query_with_a_millisecond_timestamp() {
    let (addr, fake, _stop) = start_fake!(binance::Fake::new(binance::Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&toml(dir.path(), &with_upstream(&recipe("binance"), addr))).await;
    // A caller's own signature and timestamp are dropped first.
    let a = call(
        &gw,
        "GET",
        "/binance/api/v3/account?signature=forged&timestamp=1",
        None,
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = call(
        &gw,
        "POST",
        "/binance/api/v3/order?symbol=LTCBTC",
        Some("application/x-www-form-urlencoded"),
        "side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let stats = fake.stats();
    assert_eq!(stats.refused, 0, "{:?}", stats.last_refusal);
    assert_eq!(stats.accepted, 2);
}

#[tokio::test]
async fn coinbase_base64_header_signature_with_a_decoded_key_and_a_passphrase() {
    let (addr, fake, _stop) = start_fake!(coinbase::Fake::new(coinbase::Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&toml(dir.path(), &with_upstream(&recipe("coinbase"), addr))).await;
    let a = call(&gw, "GET", "/coinbase/accounts", None, "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = call(
        &gw,
        "POST",
        "/coinbase/orders",
        Some("application/json"),
        r#"{"size":"0.01","price":"0.100","side":"buy","product_id":"BTC-USD"}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let stats = fake.stats();
    assert_eq!(stats.refused, 0, "{:?}", stats.last_refusal);
}

#[tokio::test]
async fn kraken_nested_digest_with_a_strictly_increasing_nonce_under_concurrency() {
    let (addr, fake, _stop) = start_fake!(kraken::Fake::new(kraken::Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&toml(dir.path(), &with_upstream(&recipe("kraken"), addr))).await;
    let calls = (0..20).map(|i| {
        let url = gw.url("/kraken/0/private/AddOrder");
        async move {
            send(
                http::Request::post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(format!(
                        "ordertype=limit&pair=XBTUSD&price={}&type=buy&volume=1.25",
                        37500 + i
                    ))))
                    .unwrap(),
            )
            .await
        }
    });
    for a in futures_util::future::join_all(calls).await {
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(a.text().contains("\"error\":[]"), "{}", a.text());
    }
    let stats = fake.stats();
    assert_eq!(
        stats.nonce_refusals, 0,
        "max_in_flight = 1 keeps the nonces in order"
    );
    assert_eq!(stats.common.refused, 0, "{:?}", stats.common.last_refusal);
    let nonces = stats.nonces_of(kraken::DEMO_API_KEY);
    assert_eq!(nonces.len(), 20);
    assert!(nonces.windows(2).all(|w| w[0] < w[1]));

    // A restart keeps them increasing: the high-water mark is in the state dir.
    drop(gw);
    let gw = gateway(&toml(dir.path(), &with_upstream(&recipe("kraken"), addr))).await;
    let a = call(
        &gw,
        "POST",
        "/kraken/0/private/Balance",
        Some("application/x-www-form-urlencoded"),
        "",
    )
    .await;
    assert!(a.text().contains("\"error\":[]"), "{}", a.text());
    assert_eq!(fake.stats().nonce_refusals, 0);
}

#[tokio::test]
async fn okx_iso_8601_timestamp_and_base64_signature() {
    let (addr, fake, _stop) = start_fake!(okx::Fake::new(okx::Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&toml(dir.path(), &with_upstream(&recipe("okx"), addr))).await;
    let a = call(&gw, "GET", "/okx/api/v5/account/balance?ccy=BTC", None, "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = call(
        &gw,
        "POST",
        "/okx/api/v5/trade/order",
        Some("application/json"),
        r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"100"}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let stats = fake.stats();
    assert_eq!(stats.refused, 0, "{:?}", stats.last_refusal);
}

#[tokio::test]
async fn a_request_the_recipe_cannot_evaluate_is_a_400_and_nothing_is_sent() {
    let (addr, fake, _stop) = start_fake!(okx::Fake::new(okx::Config::default()));
    let dir = tempfile::tempdir().unwrap();
    let recipe = format!(
        "[routes.j]\nkind = \"recipe\"\nupstream = \"http://{addr}\"\n\n[[routes.j.sign]]\nheader.\"X-Total\" = \"string(request.json.amount)\"\n"
    );
    let gw = gateway(&toml(dir.path(), &recipe)).await;
    let a = call(&gw, "POST", "/j/x", Some("application/json"), "not json").await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(a.error_code(), Some("bad_request_body"));
    assert!(a.text().contains("sign[0].header.X-Total"), "{}", a.text());
    assert_eq!(fake.stats().journal.requests, 0, "nothing was sent");
}

#[test]
fn check_names_every_compile_error_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let text = toml(
        dir.path(),
        "[routes.ex]\nkind = \"recipe\"\nupstream = \"https://api.example.com\"\nsecrets = { secret = \"s\" }\n\n[[routes.ex.sign]]\nvar.ts = \"string(now_ms())\"\n[[routes.ex.sign]]\nquery.timestamp = \"vars.ts\"\n[[routes.ex.sign]]\nquery.signature = \"hex(hmac_sha256(secrets.scret, request.query))\"\nheader.\"X-A\" = \"(\"\n",
    );
    let problems = countersign::kinds::from_toml(&text).unwrap_err();
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        shown.iter().any(|p| p.starts_with(
            "routes.ex.sign[2].query.signature: undeclared reference to 'secrets.scret'"
        )),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|p| p.starts_with("routes.ex.sign[2].header.X-A")),
        "{shown:#?}"
    );
    assert!(!format!("{shown:?}").contains("\"s\""));
}

/// The steps of a recipe in docs/recipes.md, as the engine takes them.
fn steps_of(name: &str) -> Vec<Vec<(String, String)>> {
    use figment::providers::{Format, Toml};
    let dict: figment::value::Dict = figment::Figment::from(Toml::string(&recipe(name)))
        .extract()
        .unwrap();
    let route = dict["routes"].as_dict().unwrap()[name].as_dict().unwrap();
    route["sign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            let mut targets = Vec::new();
            for (kind, names) in step.as_dict().unwrap() {
                for (n, src) in names.as_dict().unwrap() {
                    targets.push((format!("{kind}.{n}"), src.as_str().unwrap().to_string()));
                }
            }
            targets
        })
        .collect()
}

#[test]
fn utilsio_as_a_recipe_signs_byte_for_byte_as_the_built_in_kind() {
    use countersign::fake::utilsio::{DEMO_APP, DEMO_SALT, DEMO_SECRET};
    use countersign::kinds::utilsio::{KeySource, Settings, Utilsio};
    use countersign::recipe::{MemoryEnv, Recipe, RecipeRequest, RecipeSpec};
    use countersign::secret::Secret;
    use countersign::vocab::Outgoing;

    let built_in = Utilsio::new(Settings {
        app_id: DEMO_APP.into(),
        key: KeySource::Derive {
            secret: Secret::new(DEMO_SECRET),
            salt: Secret::new(DEMO_SALT),
        },
        timestamp_ms: false,
    })
    .unwrap();
    let recipe = Recipe::compile(
        "utilsio",
        &RecipeSpec {
            secrets: vec![
                ("app_secret".into(), Secret::new(DEMO_SECRET)),
                ("app_salt".into(), Secret::new(DEMO_SALT)),
            ],
            vars: vec![("app_id".into(), DEMO_APP.into())],
            steps: steps_of("utilsio"),
        },
    )
    .unwrap();
    let ts: u64 = 1_764_650_000;
    let clock = MemoryEnv::fixed(std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts));
    let cases: [(http::Method, &str, Option<&str>, &str); 3] = [
        (http::Method::GET, "/subscription", Some("phone-1"), ""),
        (
            http::Method::GET,
            "/subscription?status=active",
            Some("phone 2/ü"),
            "",
        ),
        (
            http::Method::DELETE,
            "/subscription",
            None,
            r#"{"deviceId":"phone-3","subscriptionIds":["s2","s10","s1"]}"#,
        ),
    ];
    for (method, pq, device, body) in cases {
        let mut headers = http::HeaderMap::new();
        if let Some(d) = device {
            headers.insert(
                "x-utilsio-device-id",
                http::HeaderValue::from_str(d).unwrap(),
            );
        }
        let mut out = Outgoing {
            method: method.clone(),
            path_and_query: pq.into(),
            headers: headers.clone(),
            body: Some(Bytes::from(body.to_string())),
        };
        built_in.sign_at(&mut out, ts).unwrap();
        let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
        let mut req = RecipeRequest::new(method.clone(), format!("/api/v1{path}"), query);
        req.headers = headers;
        req.body = Bytes::from(body.to_string());
        recipe.apply(&mut req, &clock).unwrap();
        let header =
            |h: &http::HeaderMap, n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
        for name in ["x-utilsio-timestamp", "x-utilsio-signature"] {
            assert_eq!(
                header(&req.headers, name),
                header(&out.headers, name),
                "{method} {pq}: {name}"
            );
        }
        // The same parameters, in the same order. (A space is written `+`
        // by the built-in kind, `%20` by a recipe: the same value to the
        // upstream; the signature does not cover the query.)
        let params = |target: &str| -> Vec<(String, String)> {
            let q = target.split_once('?').map_or("", |(_, q)| q);
            form_urlencoded::parse(q.as_bytes()).into_owned().collect()
        };
        assert_eq!(
            params(&out.path_and_query),
            params(&req.target()),
            "{method} {pq}: the query sent"
        );
        assert_eq!(
            req.path,
            format!("/api/v1{}", out.path_and_query.split('?').next().unwrap())
        );
    }
}

#[tokio::test]
async fn no_secret_in_logs_at_trace_level() {
    let (addr, fake, _stop) = start_fake!(coinbase::Fake::new(coinbase::Config::default()));
    let dir = tempfile::tempdir().unwrap();
    // Literal secrets here: the spawned binary does not get this process's env.
    let recipe = with_upstream(&recipe("coinbase"), addr)
        .replace(
            "{ env = \"COINBASE_KEY\" }",
            &format!("{:?}", coinbase::DEMO_KEY),
        )
        .replace(
            "{ env = \"COINBASE_SECRET\" }",
            &format!("{:?}", coinbase::DEMO_SECRET),
        )
        .replace(
            "{ env = \"COINBASE_PASSPHRASE\" }",
            &format!("{:?}", coinbase::DEMO_PASSPHRASE),
        );
    let p = spawn_binary(dir.path(), &toml(dir.path(), &recipe), "trace").await;
    let a = send(
        http::Request::get(p.url("/coinbase/accounts"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(fake.stats().refused, 0);
    let logs = p.logs();
    assert!(logs.contains("TRACE"));
    for secret in [coinbase::DEMO_SECRET, coinbase::DEMO_PASSPHRASE] {
        assert!(!logs.contains(secret), "a secret in the logs");
    }
    assert!(
        !logs.contains("cb-access-sign"),
        "the signature header in the logs"
    );
}
