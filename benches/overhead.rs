//! Per-request work countersign adds, without the network: on the xrtc path
//! header hygiene, signing (cookie), a rate permit and the cookie jar
//! refresh; on the tts path the whole signing step of a 1 kB JSON body
//! (parse, fill, canonical JSON, SHA-256, the body sent); utilsio's HMAC
//! signature; TeamDrive's XML edit and md5 checksum of a 400-byte body.
//! The end-to-end figure against a real upstream is scripts/bench-proxy.sh.
#![allow(clippy::unwrap_used)] // bench code: inputs are fixed and valid

use std::time::Duration;

use countersign::config::RateLimit;
use countersign::headers;
use countersign::kinds::xrtc::{merge_cookies, Settings, Xrtc};
use countersign::limits::Gcra;
use countersign::secret::Secret;
use countersign::vocab::{Kind, Outgoing};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};

#[path = "support/pyjson_bodies.rs"]
#[allow(dead_code)] // only the liveLogs body
mod bodies;
#[path = "support/signing_step.rs"]
mod signing_step;

use signing_step::caller_headers;

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

fn bench_tts(c: &mut Criterion) {
    let tts = signing_step::tts();
    // The ~1 kB liveLogs body scripts/bench-proxy.sh sends.
    let body = bytes::Bytes::from(bodies::live_logs());
    let mut caller = caller_headers();
    caller.remove("cookie");
    let session = Secret::new("zO4WlLQLT8fj4rakFbnvX~u92nq4A-fO");
    let mut group = c.benchmark_group("tts");
    group.throughput(criterion::Throughput::Bytes(body.len() as u64));
    group.bench_function("hygiene + plan + sign, 1 kB JSON", |b| {
        b.iter(|| signing_step::tts_step(&tts, &caller, &body, &session))
    });
    group.finish();
}

fn bench_utilsio_teamdrive(c: &mut Criterion) {
    use countersign::kinds::teamdrive::{Auth, Settings as TdSettings, Teamdrive};
    use countersign::kinds::utilsio::{KeySource, Settings as UtSettings, Utilsio};
    let caller = caller_headers();
    let utilsio = Utilsio::new(UtSettings {
        app_id: "bench-app".into(),
        key: KeySource::Hash(Secret::new(
            "4d7a1f0c2b9e8d6a5f3c1e0b7a9d8c6f4e2a1b3c5d7e9f0a2b4c6d8e0f1a3b5c",
        )),
        timestamp_ms: false,
    })
    .unwrap();
    let mut with_device = caller.clone();
    with_device.insert(
        "x-utilsio-device-id",
        HeaderValue::from_static("bench-device-0001"),
    );
    c.bench_function("utilsio: hygiene + plan + sign (HMAC-SHA256)", |b| {
        b.iter(|| {
            let h = headers::outgoing(&with_device, utilsio.owned_headers(), false);
            let _ = utilsio
                .plan(&Method::GET, "/subscription", &with_device)
                .unwrap();
            let mut out = Outgoing {
                method: Method::GET,
                path_and_query: "/subscription".into(),
                headers: h,
                body: None,
            };
            utilsio.sign(&mut out, None).unwrap();
            out
        })
    });

    let teamdrive = Teamdrive::new(TdSettings {
        auth: Auth::Md5,
        key: Secret::new("bench-service-key"),
        distributor: Some("BENCH".into()),
        set_requesttime: true,
    });
    let xml = bytes::Bytes::from(format!(
        "<?xml version='1.0' encoding='UTF-8' ?><teamdrive><command>getuserdata</command><requesttime>1</requesttime><username>bench-user-{}</username></teamdrive>",
        "x".repeat(240)
    ));
    let mut group = c.benchmark_group("teamdrive");
    group.throughput(criterion::Throughput::Bytes(xml.len() as u64));
    group.bench_function("hygiene + plan + sign (XML edit + md5), 400 B", |b| {
        b.iter(|| {
            let h = headers::outgoing(&caller, teamdrive.owned_headers(), false);
            let _ = teamdrive
                .plan(&Method::POST, "/yvva/api/api.xml", &caller)
                .unwrap();
            let mut out = Outgoing {
                method: Method::POST,
                path_and_query: "/yvva/api/api.xml".into(),
                headers: h,
                body: Some(xml.clone()),
            };
            teamdrive.sign(&mut out, None).unwrap();
            out
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_tts, bench_utilsio_teamdrive);
criterion_main!(benches);
