//! Instructions per TTS signing step, for callgrind: the step
//! `benches/overhead.rs` times (header hygiene, plan, fill, canonical JSON,
//! SHA-256, the body sent) on the ~1 kB liveLogs body `scripts/bench-proxy.sh`
//! sends, `N` times. Divide the difference between `N` and 1 by `N - 1`;
//! the JSON part alone is `examples/pyjson_instructions.rs`. Valgrind runs
//! the software SHA-256 (no SHA-NI), so the SHA share here is far above
//! the native one.
//!
//! ```sh
//! cargo build --profile bench --example tts_step_instructions
//! for n in 1 1001; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/tts_step_instructions $n; done
//! ```
#![allow(clippy::unwrap_used)] // a measuring tool: fixed, valid inputs

#[path = "../benches/support/pyjson_bodies.rs"]
#[allow(dead_code)] // only the liveLogs body
mod bodies;
#[path = "../benches/support/tts_route.rs"]
mod tts_route;

use countersign::headers;
use countersign::secret::Secret;
use countersign::vocab::{Kind, Outgoing};
use http::{HeaderMap, HeaderValue, Method};

fn main() {
    let n: usize = std::env::args().nth(1).map_or(1001, |n| n.parse().unwrap());
    let tts = tts_route::tts();
    let body = bytes::Bytes::from(bodies::live_logs());
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
