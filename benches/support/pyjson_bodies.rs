//! The JSON bodies the canonical-JSON measurements use, shared by
//! `benches/canonical.rs` (criterion) and `examples/pyjson_instructions.rs`
//! (callgrind), so both measure the same documents.

/// A realistic TTS-style body: a few fields, a list of records with numbers,
/// unicode text and nesting, grown to about `size` bytes.
pub fn body(size: usize) -> String {
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

/// The ~1 kB `liveLogs` body `scripts/bench-proxy.sh` sends: twenty small
/// objects whose keys come out of order.
pub fn live_logs() -> String {
    let filters: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"url":"https://www.example.com/p/{i}","ratio":0.{i}5}}"#))
        .collect();
    format!(
        r#"{{"action":"liveLogs","output":"json","limit":50,"lastId":"","filters":[{}]}}"#,
        filters.join(",")
    )
}
