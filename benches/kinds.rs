//! The signing step of the newer kinds, without the network: header hygiene,
//! plan and sign for a 1 kB body. aws: SigV4 (the body's SHA-256, the
//! canonical request, one HMAC with the day's cached key); oauth1:
//! HMAC-SHA1 over the base string of a 1 kB form body; oauth2: the bearer
//! header. The end-to-end figure is scripts/bench-proxy.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: inputs are fixed and valid

use std::sync::Arc;

use countersign::headers;
use countersign::keys::Keyring;
use countersign::kinds::{self, BuildEnv};
use countersign::secret::Secret;
use countersign::vocab::{Kind, Outgoing};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};

fn kind(route: &str) -> Arc<dyn Kind> {
    let cfg = kinds::from_toml(&format!("[routes.r]\n{route}")).expect("bench config");
    let rc = &cfg.routes["r"];
    rc.kind
        .build(&BuildEnv {
            keyring: &Keyring::detached(),
            route: rc,
        })
        .expect("bench kind")
}

fn caller(content_type: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("user-agent", "aws-cli/2.15"),
        ("accept", "*/*"),
        ("content-type", content_type),
        ("x-request-id", "8b1c0c1e-4a44-4a4e-9d1f-5f2b0a7e9f10"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

#[allow(clippy::too_many_arguments)] // one call per kind: a struct would only rename them
fn step(
    c: &mut Criterion,
    name: &str,
    k: &Arc<dyn Kind>,
    method: Method,
    pq: &str,
    ct: &'static str,
    body: bytes::Bytes,
    session: Option<&Secret>,
) {
    let caller = caller(ct);
    let path = pq.split('?').next().unwrap().to_string();
    c.bench_function(name, |b| {
        b.iter(|| {
            let h = headers::outgoing(&caller, k.owned_headers(), false);
            let _ = k.plan(&method, &path, &caller).unwrap();
            let mut out = Outgoing {
                method: method.clone(),
                path_and_query: pq.to_string(),
                headers: h,
                body: Some(body.clone()),
            };
            k.sign(&mut out, session).unwrap();
            out
        })
    });
}

fn bench(c: &mut Criterion) {
    let kb = bytes::Bytes::from(vec![b'x'; 1024]);
    let aws = kind(
        "kind = \"aws\"\nupstream = \"https://s3.us-east-1.amazonaws.com\"\nservice = \"s3\"\nregion = \"us-east-1\"\naccess_key_id = \"AKIAIOSFODNN7EXAMPLE\"\nsecret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\n",
    );
    step(
        c,
        "aws s3: hygiene + plan + SigV4 (1 kB signed payload)",
        &aws,
        Method::PUT,
        "/bucket/some/key.json?x-id=PutObject",
        "application/json",
        kb.clone(),
        None,
    );
    let ddb = kind(
        "kind = \"aws\"\nupstream = \"https://dynamodb.us-east-1.amazonaws.com\"\nservice = \"dynamodb\"\nregion = \"us-east-1\"\naccess_key_id = \"AKIAIOSFODNN7EXAMPLE\"\nsecret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\n",
    );
    step(
        c,
        "aws dynamodb: hygiene + plan + SigV4 (1 kB)",
        &ddb,
        Method::POST,
        "/",
        "application/x-amz-json-1.0",
        kb.clone(),
        None,
    );
    let form: String = (0..64)
        .map(|i| format!("field{i:02}=value{i:04}&"))
        .collect();
    let oauth1 = kind(
        "kind = \"oauth1\"\nupstream = \"https://api.example.com/1.1\"\nconsumer_key = \"dpf43f3p2l4k3l03\"\nconsumer_secret = \"kd94hf93k423kf44\"\ntoken = \"nnch734d00sl2jdk\"\ntoken_secret = \"pfkkdhi9sl3r4s00\"\n",
    );
    step(
        c,
        "oauth1: hygiene + plan + HMAC-SHA1 (1 kB form body)",
        &oauth1,
        Method::POST,
        "/statuses/update.json?include_entities=true",
        "application/x-www-form-urlencoded",
        bytes::Bytes::from(form),
        None,
    );
    let oauth2 = kind(
        "kind = \"oauth2\"\nupstream = \"https://api.example.com\"\ntoken_url = \"https://auth.example.com/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    );
    let token = Secret::new(
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjb3VudGVyc2lnbiJ9.c2lnbmF0dXJl",
    );
    step(
        c,
        "oauth2: hygiene + plan + bearer",
        &oauth2,
        Method::POST,
        "/orders",
        "application/json",
        kb,
        Some(&token),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
