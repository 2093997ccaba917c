//! The recipe engine's cost: a Binance-like recipe (timestamp var, two
//! query parameters, HMAC-SHA256 over the query and body, API key header)
//! on a ~1 kB query and on a ~1 kB form body, next to the bare HMAC-SHA256
//! and hex of the same bytes, which is what the recipe asks for. The
//! difference is the engine's overhead per request (target: at most 5 µs).
//! Also the cost of compiling the recipe, paid once per config load.
#![allow(clippy::unwrap_used)] // bench code: inputs are fixed and valid

use std::time::{Duration, UNIX_EPOCH};

use countersign::recipe::{MemoryEnv, Recipe, RecipeRequest, RecipeSpec};
use countersign::secret::Secret;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The binary's allocator (src/main.rs), so that the engine's small
/// allocations cost here what they cost in the gateway.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

fn spec() -> RecipeSpec {
    let steps: &[&[(&str, &str)]] = &[
        &[("var.ts", "string(now_ms())")],
        &[
            ("query.recvWindow", "vars.recv_window"),
            ("query.timestamp", "vars.ts"),
        ],
        &[
            (
                "query.signature",
                "hex(hmac_sha256(secrets.secret, request.query + string(request.body)))",
            ),
            ("header.X-MBX-APIKEY", "secrets.key"),
        ],
    ];
    RecipeSpec {
        secrets: vec![
            (
                "key".into(),
                Secret::new("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"),
            ),
            ("secret".into(), Secret::new(SECRET)),
        ],
        vars: vec![("recv_window".into(), "5000".into())],
        steps: steps
            .iter()
            .map(|s| {
                s.iter()
                    .map(|(t, e)| (t.to_string(), e.to_string()))
                    .collect()
            })
            .collect(),
    }
}

/// About `size` bytes of `name=value` pairs, order-book style.
fn params(size: usize) -> String {
    let mut out = String::from("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC");
    let mut i = 0;
    while out.len() < size {
        out.push_str(&format!(
            "&clientTag{i}=order-{}-{}",
            i * 7919 % 10007,
            i * 31
        ));
        i += 1;
    }
    out
}

fn bare_hmac(message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn bench(c: &mut Criterion) {
    let recipe = Recipe::compile("binance", &spec()).unwrap();
    let env = MemoryEnv::fixed(UNIX_EPOCH + Duration::from_millis(1_499_827_319_559));

    let query = params(1024);
    let get = RecipeRequest::new(http::Method::GET, "/api/v3/order", query.clone());
    let mut post = RecipeRequest::new(http::Method::POST, "/api/v3/order", "");
    post.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    post.body = bytes::Bytes::from(params(1024));

    // What the signature covers once the recipe has added its parameters.
    let mut signed_get = get.clone();
    recipe.apply(&mut signed_get, &env).unwrap();
    let covered_get = signed_get
        .query
        .rsplit_once("&signature=")
        .unwrap()
        .0
        .to_string();
    let mut signed_post = post.clone();
    recipe.apply(&mut signed_post, &env).unwrap();
    let covered_post = format!(
        "{}{}",
        signed_post.query.rsplit_once("&signature=").unwrap().0,
        std::str::from_utf8(&signed_post.body).unwrap()
    );

    let mut g = c.benchmark_group("recipe");
    g.bench_function(
        format!("bare hmac_sha256+hex, {} B", covered_get.len()),
        |b| b.iter(|| bare_hmac(covered_get.as_bytes())),
    );
    g.bench_function(
        format!("binance recipe apply, GET {} B query", get.query.len()),
        |b| {
            b.iter_batched(
                || get.clone(),
                |mut req| {
                    recipe.apply(&mut req, &env).unwrap();
                    req
                },
                // One request at a time, as the gateway signs them: with
                // batches, hundreds of grown requests are alive at once and
                // the figure was ~13 % page faults on fresh memory.
                BatchSize::PerIteration,
            )
        },
    );
    // What the proxy path runs: the same, without the record for `explain`.
    g.bench_function(
        format!("binance recipe sign, GET {} B query", get.query.len()),
        |b| {
            b.iter_batched(
                || get.clone(),
                |mut req| {
                    recipe.sign(&mut req, &env).unwrap();
                    req
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.bench_function(
        format!("bare hmac_sha256+hex, {} B", covered_post.len()),
        |b| b.iter(|| bare_hmac(covered_post.as_bytes())),
    );
    g.bench_function(
        format!("binance recipe apply, POST {} B form body", post.body.len()),
        |b| {
            b.iter_batched(
                || post.clone(),
                |mut req| {
                    recipe.apply(&mut req, &env).unwrap();
                    req
                },
                // One request at a time, as the gateway signs them: with
                // batches, hundreds of grown requests are alive at once and
                // the figure was ~13 % page faults on fresh memory.
                BatchSize::PerIteration,
            )
        },
    );
    g.bench_function("binance recipe compile", |b| {
        let spec = spec();
        b.iter(|| Recipe::compile("binance", &spec).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
