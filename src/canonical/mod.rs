//! Pure functions over request bodies: no I/O, no clocks, no secrets. Each
//! is fuzzed or property-tested on its own.
//! - `pyjson`: JSON as CPython's `json.dumps(…, sort_keys=True)` writes it (the TTS checksum).
//! - `pct`: RFC 3986 percent-encoding (OAuth, SigV4).
//! - `xml`: TeamDrive's `<requesttime>` / `<distributor>` edits, byte-exact.

pub mod pct;
pub mod pyjson;
pub mod xml;

/// Lowercase hex, as every signature here is written. `hex::encode` builds
/// its string through a `char` iterator, about 600 instructions for an MD5:
/// a visible share of a teamdrive request (docs/performance.md).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` in lowercase hex to `out`, with no string of its own.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Digests are short: encoded on the stack, appended in one go.
    for chunk in bytes.chunks(32) {
        let mut buf = [0u8; 64];
        for (i, b) in chunk.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        // Only ASCII digits were written.
        out.push_str(std::str::from_utf8(&buf[..2 * chunk.len()]).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_and_agrees_with_the_hex_crate() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(super::hex(&all), hex::encode(&all));
        assert_eq!(super::hex(&[0xab, 0x01]), "ab01");
        assert_eq!(super::hex(&[]), "");
    }
}
