//! Instructions per TTS signing step, for callgrind: the step
//! `benches/overhead.rs` times (header hygiene, plan, fill, canonical JSON,
//! SHA-256, the body sent) on its ~1 kB liveLogs body, `N` times. Divide
//! the difference between `N` and 1 by `N - 1`; the JSON part alone is
//! `examples/pyjson_instructions.rs`. Valgrind runs the software SHA-256
//! (no SHA-NI), so the SHA share here is about twice the native one.
//!
//! ```sh
//! cargo build --profile bench --example tts_step_instructions
//! for n in 1 1001; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/tts_step_instructions $n; done
//! ```
#![allow(clippy::unwrap_used)] // a measuring tool: fixed, valid inputs

use countersign::headers;
use countersign::kinds::tts::{Settings, Tts};
use countersign::secret::Secret;
use countersign::vocab::{Kind, Outgoing};
use http::{HeaderMap, HeaderValue, Method};

fn main() {
    let n: usize = std::env::args().nth(1).map_or(1001, |n| n.parse().unwrap());
    let tts = Tts::new(
        Settings {
            identifier: "www.example.com".into(),
            client_ver: "V4.21.04".into(),
            user_agent: "TTS-Utility-Client/V4.21.04".into(),
            access_key: Secret::new("tts-bench-access-key"),
            secret: Some(Secret::new("tts-bench-secret")),
            email: "bench@example.com".into(),
            password: Secret::new("pw"),
            module: None,
            ip_address: "192.0.2.10".into(),
            mac_address: "-".into(),
            spider_upstream: None,
            force_login: true,
            access_key_fields: vec!["access_key".into()],
            secret_key_fields: vec!["secret_key".into()],
        },
        &countersign::keys::Keyring::detached(),
        "tts-bench".into(),
    );
    let mut body =
        String::from(r#"{"action":"liveLogs","output":"json","limit":50,"lastId":"","filters":["#);
    let mut i = 0;
    while body.len() < 980 {
        body.push_str(&format!(
            r#"{{"url":"https://www.example.com/p/{i}","ratio":0.{i}5}},"#
        ));
        i += 1;
    }
    body.pop();
    body.push_str("]}");
    let body = bytes::Bytes::from(body);
    let mut caller = HeaderMap::new();
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("content-type", "application/json"),
        ("content-length", "300"),
        ("x-request-id", "8b1c0c1e-4a44-4a4e-9d1f-5f2b0a7e9f10"),
    ] {
        caller.insert(k, HeaderValue::from_static(v));
    }
    let session = Secret::new("zO4WlLQLT8fj4rakFbnvX~u92nq4A-fO");
    let mut sent = 0;
    for _ in 0..n {
        let h = headers::outgoing(&caller, tts.owned_headers(), false);
        tts.plan(&Method::POST, "/www.example.com", &caller)
            .unwrap();
        let mut out = Outgoing {
            method: Method::POST,
            path_and_query: "/www.example.com".into(),
            headers: h,
            body: Some(body.clone()),
        };
        tts.sign(&mut out, Some(&session)).unwrap();
        sent = out.body.map_or(0, |b| b.len());
    }
    println!("{} bytes in, {sent} bytes sent, {n} times", body.len());
}
