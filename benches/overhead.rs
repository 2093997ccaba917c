//! Per-request work countersign adds on the xrtc path, without the network:
//! header hygiene, signing (cookie), a rate permit, and the cookie jar refresh.
//! The end-to-end figure against a real upstream is scripts/bench-proxy.sh.
#![allow(clippy::unwrap_used)] // bench code: inputs are fixed and valid

use std::time::Duration;

use countersign::config::RateLimit;
use countersign::headers;
use countersign::kinds::xrtc::{merge_cookies, Settings, Xrtc};
use countersign::kinds::{Kind, Outgoing};
use countersign::limits::Gcra;
use countersign::secret::Secret;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};

fn caller_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("content-type", "application/json"),
        ("content-length", "300"),
        ("x-request-id", "8b1c0c1e-4a44-4a4e-9d1f-5f2b0a7e9f10"),
        ("cookie", "JSESSIONID=caller"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    let xrtc = Xrtc::new(Settings {
        account_id: "AC0987654321012345".into(),
        api_key: Secret::new("Tk9x2mQ7vL4pR8sW1zY6bN3cF5hJ0dGe"),
    });
    let jar = Secret::new("JSESSIONID=0123456789abcdef0123456789abcdef; AWSALBAPP-0=a1b2c3d4e5f6");
    let caller = caller_headers();
    let body = bytes::Bytes::from(vec![b'x'; 300]);

    c.bench_function("xrtc: hygiene + plan + sign", |b| {
        b.iter(|| {
            let h = headers::outgoing(&caller, xrtc.owned_headers(), false);
            let _ = xrtc.plan(&Method::POST, "/v1/item/set", &caller).unwrap();
            let mut out = Outgoing {
                method: Method::POST,
                path_and_query: "/v1/item/set".into(),
                headers: h,
                body: Some(body.clone()),
            };
            xrtc.sign(&mut out, Some(&jar)).unwrap();
            out
        })
    });

    let gcra = Gcra::new(&RateLimit {
        per_second: 1e9,
        burst: 1_000_000,
        wait: Duration::from_secs(5),
    });
    c.bench_function("rate permit (GCRA reserve)", |b| {
        b.iter(|| gcra.reserve(tokio::time::Instant::now(), Duration::from_secs(5)))
    });

    let mut set_cookie = HeaderMap::new();
    set_cookie.insert(
        "set-cookie",
        HeaderValue::from_static("AWSALBAPP-0=refreshed; Path=/"),
    );
    c.bench_function("cookie jar refresh", |b| {
        b.iter(|| merge_cookies(jar.expose(), &set_cookie))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
