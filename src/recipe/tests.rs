//! Tests of the recipe engine: known answers (RFC vectors, the APIs'
//! published examples, values computed independently with CPython), the
//! targets and encodings, hygiene, errors and redaction.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method};

use super::*;
use crate::secret::Secret;

type Steps<'a> = &'a [&'a [(&'a str, &'a str)]];

fn spec(secrets: &[(&str, &str)], vars: &[(&str, &str)], steps: Steps<'_>) -> RecipeSpec {
    RecipeSpec {
        secrets: secrets
            .iter()
            .map(|(n, v)| (n.to_string(), Secret::new(*v)))
            .collect(),
        vars: vars
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
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

fn recipe(secrets: &[(&str, &str)], vars: &[(&str, &str)], steps: Steps<'_>) -> Recipe {
    match Recipe::compile("ex", &spec(secrets, vars, steps)) {
        Ok(r) => r,
        Err(errors) => panic!("compile errors: {errors:#?}"),
    }
}

/// The compile errors, as `path: message`.
fn compile_errors(secrets: &[(&str, &str)], vars: &[(&str, &str)], steps: Steps<'_>) -> Vec<String> {
    match Recipe::compile("ex", &spec(secrets, vars, steps)) {
        Ok(_) => panic!("compiled, but errors were expected"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn at_ms(ms: u64) -> MemoryEnv {
    MemoryEnv::fixed(UNIX_EPOCH + Duration::from_millis(ms))
}

fn get(path: &str, query: &str) -> RecipeRequest {
    RecipeRequest::new(Method::GET, path, query)
}

fn post(path: &str, content_type: &str, body: &str) -> RecipeRequest {
    let mut r = RecipeRequest::new(Method::POST, path, "");
    if !content_type.is_empty() {
        r.headers
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
    }
    r.body = bytes::Bytes::copy_from_slice(body.as_bytes());
    r
}

fn header<'a>(req: &'a RecipeRequest, name: &str) -> &'a str {
    req.headers
        .get(name)
        .unwrap_or_else(|| panic!("no header {name}"))
        .to_str()
        .unwrap()
}

fn body(req: &RecipeRequest) -> &str {
    std::str::from_utf8(&req.body).unwrap()
}

/// Evaluates `expr` as the one `var.` of a recipe at a fixed instant and
/// returns its value written as a CEL literal (strings JSON-quoted, bytes as
/// `hex_decode("…")`).
fn eval(expr: &str) -> Result<String, String> {
    let r = Recipe::compile("ex", &spec(&[], &[], &[&[("var.x", expr)]]))
        .map_err(|e| format!("{e:?}"))?;
    let applied = r
        .apply(&mut get("/", ""), &at_ms(1_440_938_160_123))
        .map_err(|e| e.to_string())?;
    Ok(applied.steps[0][0].1.to_string())
}

/// `eval` of an expression yielding a string: the string itself.
fn eval_str(expr: &str) -> String {
    let lit = eval(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    serde_json::from_str(&lit).unwrap_or_else(|_| panic!("{expr}: not a string: {lit}"))
}

/// `eval` of an expression yielding bytes: their hex.
fn eval_hex(expr: &str) -> String {
    let lit = eval(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    lit.strip_prefix("hex_decode(\"")
        .and_then(|s| s.strip_suffix("\")"))
        .unwrap_or_else(|| panic!("{expr}: not bytes: {lit}"))
        .to_string()
}

// ---------------------------------------------------------------------------
// Worked public examples

const BINANCE_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
const BINANCE_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";

fn binance() -> Recipe {
    recipe(
        &[("key", BINANCE_KEY), ("secret", BINANCE_SECRET)],
        &[("recv_window", "5000")],
        &[
            &[("var.ts", "string(now_ms())")],
            &[("query.recvWindow", "vars.recv_window")],
            &[("query.timestamp", "vars.ts")],
            &[
                ("query.signature", "hex(hmac_sha256(secrets.secret, request.query))"),
                ("header.X-MBX-APIKEY", "secrets.key"),
            ],
        ],
    )
}

/// Binance's API docs, "SIGNED endpoint examples for POST /api/v3/order",
/// example 1 (query string): the signature is published there.
#[test]
fn binance_query_signature_matches_the_docs_example() {
    let r = binance();
    let mut req = RecipeRequest::new(
        Method::POST,
        "/api/v3/order",
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1",
    );
    let applied = r.apply(&mut req, &at_ms(1_499_827_319_559)).unwrap();
    assert_eq!(
        req.query,
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1\
         &recvWindow=5000&timestamp=1499827319559\
         &signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    );
    assert_eq!(header(&req, "x-mbx-apikey"), BINANCE_KEY);
    assert_eq!(
        applied.steps[3],
        vec![
            ("header.X-MBX-APIKEY".to_string(), Shown::Redacted),
            (
                "query.signature".to_string(),
                Shown::Value("c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71".into())
            ),
        ]
    );
    assert_eq!(applied.steps[0], vec![("var.ts".to_string(), Shown::Value("\"1499827319559\"".into()))]);
}

/// Kraken's REST authentication docs: `API-Sign` =
/// base64(HMAC-SHA512(base64-decoded secret, path + SHA256(nonce + postdata))),
/// with the docs' example nonce, postdata and secret; the caller sends the
/// whole postdata, nonce included.
#[test]
fn kraken_nested_digest_matches_the_docs_example() {
    let r = recipe(
        &[("secret", "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==")],
        &[],
        &[&[(
            "header.API-Sign",
            "base64(hmac_sha512(base64_decode(secrets.secret), \
             bytes(request.path) + sha256(request.form.nonce + string(request.body))))",
        )]],
    );
    let mut req = post(
        "/0/private/AddOrder",
        "application/x-www-form-urlencoded",
        "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25",
    );
    r.apply(&mut req, &at_ms(1)).unwrap();
    assert_eq!(
        header(&req, "api-sign"),
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    );
}

/// The same, with the nonce set by the recipe (`monotonic_ms()`), so it
/// goes last in the form body; value computed with CPython's hmac/hashlib.
#[test]
fn kraken_with_a_recipe_nonce_signs_the_body_as_sent() {
    let r = recipe(
        &[("secret", "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==")],
        &[],
        &[
            &[("form.nonce", "monotonic_ms()")],
            &[(
                "header.API-Sign",
                "base64(hmac_sha512(base64_decode(secrets.secret), \
                 bytes(request.path) + sha256(request.form.nonce + string(request.body))))",
            )],
        ],
    );
    assert!(r.uses_monotonic_ms());
    let mut req = post(
        "/0/private/AddOrder",
        "application/x-www-form-urlencoded",
        "nonce=666&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25",
    );
    r.apply(&mut req, &at_ms(1_616_492_376_594)).unwrap();
    assert_eq!(
        body(&req),
        "ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25&nonce=1616492376594"
    );
    assert_eq!(
        header(&req, "api-sign"),
        "rFqGLqqw5WOQDfgNHwKclLJlmkS4aPSjAIenhCn0VoNNsvihOoaJy4N1eXKSKSUbJVPVAo8su+4GgxHdi6UwLw=="
    );
}

fn okx() -> Recipe {
    recipe(
        &[
            ("key", "985d5b66-57ce-40fb-b714-afc0b9787083"),
            ("secret", "22582BD0CFF14C41EDBF1AB98506286D"),
            ("passphrase", "TestPass1!"),
        ],
        &[],
        &[
            &[("var.ts", "now_rfc3339()")],
            &[
                ("header.OK-ACCESS-KEY", "secrets.key"),
                ("header.OK-ACCESS-PASSPHRASE", "secrets.passphrase"),
                ("header.OK-ACCESS-TIMESTAMP", "vars.ts"),
                (
                    "header.OK-ACCESS-SIGN",
                    "base64(hmac_sha256(secrets.secret, \
                     vars.ts + request.method + request.target + string(request.body)))",
                ),
            ],
        ],
    )
}

/// OKX v5: ISO-8601 millisecond timestamp, base64 HMAC-SHA256 of
/// timestamp + method + requestPath (query included) + body. Values from
/// CPython's hmac.
#[test]
fn okx_style_headers() {
    let r = okx();
    let env = at_ms(1_607_418_537_715);
    let mut req = get("/api/v5/account/balance", "ccy=BTC");
    req.headers.insert("ok-access-sign", HeaderValue::from_static("forged"));
    let applied = r.apply(&mut req, &env).unwrap();
    assert_eq!(header(&req, "ok-access-timestamp"), "2020-12-08T09:08:57.715Z");
    assert_eq!(header(&req, "ok-access-sign"), "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=");
    assert_eq!(header(&req, "ok-access-passphrase"), "TestPass1!");
    assert_eq!(
        applied.steps[1].iter().map(|(t, s)| format!("{t}={s}")).collect::<Vec<_>>(),
        [
            "header.OK-ACCESS-KEY=[redacted]",
            "header.OK-ACCESS-PASSPHRASE=[redacted]",
            "header.OK-ACCESS-SIGN=HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=",
            "header.OK-ACCESS-TIMESTAMP=2020-12-08T09:08:57.715Z",
        ]
    );

    let mut req = post(
        "/api/v5/trade/order",
        "application/json",
        r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"100"}"#,
    );
    r.apply(&mut req, &env).unwrap();
    assert_eq!(header(&req, "ok-access-sign"), "gLoEHvSwOThUNff+Hv0T7J9JHtjIwa/gKHKIkc4vvhM=");
}

/// Coinbase Exchange: base64 HMAC-SHA256 keyed with the base64-decoded
/// secret over timestamp (seconds) + method + requestPath + body, the
/// passphrase in a header. Values from CPython's hmac.
#[test]
fn coinbase_exchange_style_headers() {
    let r = recipe(
        &[
            ("key", "cb-key"),
            ("secret", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="),
            ("passphrase", "cb-pass"),
        ],
        &[],
        &[
            &[("var.ts", "string(now_s())")],
            &[
                ("header.CB-ACCESS-KEY", "secrets.key"),
                ("header.CB-ACCESS-PASSPHRASE", "secrets.passphrase"),
                ("header.CB-ACCESS-TIMESTAMP", "vars.ts"),
                (
                    "header.CB-ACCESS-SIGN",
                    "base64(hmac_sha256(base64_decode(secrets.secret), \
                     vars.ts + request.method + request.target + string(request.body)))",
                ),
            ],
        ],
    );
    let env = at_ms(1_700_000_000_999);
    let mut req = post(
        "/orders",
        "application/json",
        r#"{"size":"0.01","price":"0.100","side":"buy","product_id":"BTC-USD"}"#,
    );
    r.apply(&mut req, &env).unwrap();
    assert_eq!(header(&req, "cb-access-timestamp"), "1700000000");
    assert_eq!(header(&req, "cb-access-sign"), "vJDdxrneznkFfH8LNJ3pZrvTufIcOuMI2DBcyOefg9M=");
    let mut req = get("/orders", "status=open&limit=10");
    r.apply(&mut req, &env).unwrap();
    assert_eq!(header(&req, "cb-access-sign"), "/lqiYB4t8RrBk3NwLeVFSlgJ3+z+XkS9ZR9ySW9h+Ag=");
}
