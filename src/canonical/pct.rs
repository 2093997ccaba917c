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
    // One UTF-8 check for the whole input (almost always text), so each
    // run is a slice of it rather than a check of its own.
    let Ok(text) = std::str::from_utf8(bytes) else {
        for &b in bytes {
            push_byte(out, b);
        }
        return;
    };
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if is_unreserved(b) {
            continue;
        }
        if start < i {
            // A run of unreserved (ASCII) bytes, followed by ASCII or a
            // UTF-8 lead byte: both ends are char boundaries.
            out.push_str(text.get(start..i).unwrap_or_default());
        }
        push_escaped(out, b);
        start = i + 1;
    }
    if start < bytes.len() {
        out.push_str(text.get(start..).unwrap_or_default());
    }
}

fn push_byte(out: &mut String, b: u8) {
    if is_unreserved(b) {
        out.push(char::from(b));
    } else {
        push_escaped(out, b);
    }
}

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(b & 15)]));
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

    /// Against the definition, byte by byte, over text, non-ASCII text and
    /// bytes that are not UTF-8 at all.
    #[test]
    fn runs_and_escapes_match_the_definition() {
        fn reference(bytes: &[u8]) -> String {
            bytes
                .iter()
                .map(|&b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"aZ09-._~ %+/&=\xc3\xa9\xf0\x9f\x98\x80\xff\x80";
        for len in 0..200 {
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let mut out = String::from("prefix&");
            push_encoded(&mut out, &input);
            assert_eq!(out, format!("prefix&{}", reference(&input)), "{input:?}");
        }
        for text in ["", "é", "aé", "éa", "a é b", "😀~", "Ladies + Gentlemen"] {
            assert_eq!(
                encode(text.as_bytes()),
                reference(text.as_bytes()),
                "{text}"
            );
        }
    }

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
