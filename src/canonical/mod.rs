//! Pure functions over request bodies: no I/O, no clocks, no secrets. Each
//! is fuzzed or property-tested on its own.
//! - `pyjson`: JSON as CPython's `json.dumps(…, sort_keys=True)` writes it (the TTS checksum).
//! - `xml`: TeamDrive's `<requesttime>` / `<distributor>` edits, byte-exact.

pub mod pyjson;
pub mod xml;

/// Lowercase hex, as every signature here is written. `hex::encode` builds
/// its string through a `char` iterator, about 600 instructions for an MD5:
/// a visible share of a teamdrive request (docs/performance.md).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
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
