//! The TTS checksum path: parse a JSON body, print it as CPython's
//! `json.dumps(sort_keys=True)`, SHA-256 it, as the signer does (one pass
//! into spans, written from them). Throughput on ~1 kB and ~64 kB.
#![allow(clippy::unwrap_used)] // bench code: inputs are fixed and valid

use countersign::canonical::pyjson;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A realistic TTS-style body: a few fields, a list of records with numbers,
/// unicode text and nesting, grown to about `size` bytes.
fn body(size: usize) -> String {
    let mut records = Vec::new();
    let mut n = 0u64;
    loop {
        records.push(format!(
            r#"{{"id":{n},"name":"caf\u00e9 client {n} 東京","score":{}.{:03},"tags":["a","b\n","c"],"active":{},"meta":{{"z":null,"a":-{n}e-3}}}}"#,
            n * 37 % 1000,
            n * 7 % 1000,
            n.is_multiple_of(2)
        ));
        n += 1;
        let text = format!(
            r#"{{"identifire":"abc","client_ver":"1.2.3","ip_address":"10.0.0.1","mac_address":"-","items":[{}]}}"#,
            records.join(",")
        );
        if text.len() >= size {
            return text;
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tts checksum (parse + dumps + sha256)");
    for size in [1024usize, 64 * 1024] {
        let text = body(size);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{}B", text.len())),
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
