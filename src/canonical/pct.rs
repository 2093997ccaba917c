//! Percent-encoding as RFC 3986 §2.1 writes it: every byte but the
//! unreserved ones (ALPHA / DIGIT / "-" / "." / "_" / "~") as `%XX` with
//! upper-case hex. OAuth 1.0a (RFC 5849 §3.6), SigV4 and OAuth 2.0's
//! Basic credentials all use exactly this form.

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 3986 §2.3.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends `bytes` to `out`, percent-encoded (unreserved bytes kept).
pub fn push_encoded(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[usize::from(b >> 4)] as char);
            out.push(HEX_UPPER[usize::from(b & 15)] as char);
        }
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
