//! Percent-encoding as RFC 3986 §2.1 writes it: every byte but the
//! unreserved ones (ALPHA / DIGIT / "-" / "." / "_" / "~") as `%XX` with
//! upper-case hex. OAuth 1.0a (RFC 5849 §3.6), SigV4 and OAuth 2.0's
//! Basic credentials all use exactly this form.

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 3986 §2.3, as a table: one load per byte.
const UNRESERVED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_' || c == b'~';
        b += 1;
    }
    t
};

/// RFC 3986 §2.3.
pub fn is_unreserved(b: u8) -> bool {
    UNRESERVED[usize::from(b)]
}

/// Appends `bytes` to `out`, percent-encoded (unreserved bytes kept). Runs
/// of unreserved bytes are copied whole.
pub fn push_encoded(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        let run = rest
            .iter()
            .position(|b| !is_unreserved(*b))
            .unwrap_or(rest.len());
        if run > 0 {
            // Unreserved bytes are ASCII: always valid UTF-8.
            out.push_str(std::str::from_utf8(&rest[..run]).unwrap_or_default());
            rest = &rest[run..];
            continue;
        }
        let b = rest[0];
        let escaped = [
            b'%',
            HEX_UPPER[usize::from(b >> 4)],
            HEX_UPPER[usize::from(b & 15)],
        ];
        out.push_str(std::str::from_utf8(&escaped).unwrap_or_default());
        rest = &rest[1..];
    }
}

/// `bytes`, percent-encoded (unreserved bytes kept).
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    push_encoded(&mut out, bytes);
    out
}

/// Decodes `%XX` escapes; `+` stays a plus (a URI, not a form). `None` for a
/// `%` not followed by two hex digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |at: usize| b.get(at).and_then(|c| (*c as char).to_digit(16));
            out.push((hex(i + 1)? * 16 + hex(i + 2)?) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3986_forms() {
        // RFC 5849 §3.6's own examples of the encoding.
        assert_eq!(encode(b"Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(encode(b"An encoded string!"), "An%20encoded%20string%21");
        assert_eq!(encode(b"Dogs, Cats & Mice"), "Dogs%2C%20Cats%20%26%20Mice");
        assert_eq!(encode("☃".as_bytes()), "%E2%98%83");
        assert_eq!(encode(b"-._~AZaz09"), "-._~AZaz09");
        assert_eq!(decode("a%2Bb+c%e2%98%83").unwrap(), "a+b+c☃".as_bytes());
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%zz"), None);
        // Every byte round-trips.
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
    }
}
