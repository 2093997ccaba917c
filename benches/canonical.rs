//! The TTS checksum path: parse a JSON body, print it as CPython's
//! `json.dumps(sort_keys=True)`, SHA-256 it, as the signer does (one pass
//! into spans, written from them). Throughput on ~1 kB and ~64 kB of
//! awkward records, and on the ~1 kB `liveLogs` body the proxy bench sends.
#![allow(clippy::unwrap_used)] // bench code: inputs are fixed and valid

use countersign::canonical::pyjson;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "support/pyjson_bodies.rs"]
mod bodies;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tts checksum (parse + dumps + sha256)");
    let texts = [
        ("", bodies::body(1024)),
        ("", bodies::body(64 * 1024)),
        ("livelogs-", bodies::live_logs()),
    ];
    for (name, text) in texts {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{name}{}B", text.len())),
            &text,
            |b, t| {
                let mut out = Vec::with_capacity(t.len() * 2);
                b.iter(|| {
                    out.clear();
                    pyjson::Doc::parse(t.as_bytes())
                        .unwrap()
                        .write_sorted(&mut out);
                    pyjson::sha256_hex(&out)
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
