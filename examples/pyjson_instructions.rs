//! Instructions per canonical-JSON document, for callgrind: parses and
//! writes one body `N` times (no SHA-256: valgrind runs the software one,
//! not SHA-NI). Divide the difference between `N` and 1 by `N - 1`:
//!
//! ```sh
//! cargo build --profile bench --example pyjson_instructions
//! for n in 1 1001; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/pyjson_instructions livelogs $n; done
//! ```
//!
//! Bodies: `livelogs` (what `scripts/bench-proxy.sh` sends), or a size in
//! bytes of the criterion bench's body (`1024`, `65536`).
#![allow(clippy::unwrap_used)] // a measuring tool: fixed, valid inputs

#[path = "../benches/support/pyjson_bodies.rs"]
mod bodies;

use countersign::canonical::pyjson;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "livelogs".into());
    let n: usize = args.next().map_or(1001, |n| n.parse().unwrap());
    let text = match which.as_str() {
        "livelogs" => bodies::live_logs(),
        size => bodies::body(size.parse().unwrap()),
    };
    let mut out = Vec::with_capacity(text.len() * 2);
    for _ in 0..n {
        out.clear();
        pyjson::Doc::parse(text.as_bytes())
            .unwrap()
            .write_sorted(&mut out);
    }
    println!(
        "{} bytes in, {} bytes out, {n} times",
        text.len(),
        out.len()
    );
}
