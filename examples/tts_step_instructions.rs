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
#[path = "../benches/support/signing_step.rs"]
mod signing_step;

use countersign::secret::Secret;

fn main() {
    let n: usize = std::env::args().nth(1).map_or(1001, |n| n.parse().unwrap());
    let tts = signing_step::tts();
    let body = bytes::Bytes::from(bodies::live_logs());
    let mut caller = signing_step::caller_headers();
    caller.remove("cookie");
    let session = Secret::new("zO4WlLQLT8fj4rakFbnvX~u92nq4A-fO");
    let mut sent = 0;
    for _ in 0..n {
        let out = signing_step::tts_step(&tts, &caller, &body, &session);
        sent = out.body.map_or(0, |b| b.len());
    }
    println!("{} bytes in, {sent} bytes sent, {n} times", body.len());
}
