//! The text pieces of CPython's JSON output, shared by the signing path
//! ([`super::Doc`]) and the owned tree ([`super::Value`]): strings as
//! `ensure_ascii` writes them, floats as `float.__repr__`, and the scans
//! and escapes of JSON string literals they are made from.

/// Four hex digits, either case.
pub(super) fn hex4(digits: &[u8]) -> Option<u32> {
    let mut v = 0;
    for &d in digits.get(..4)? {
        v = v << 4 | char::from(d).to_digit(16)?;
    }
    Some(v)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bytes CPython's `ensure_ascii` output keeps as they are: ' ' to '~'
/// except '"' and '\\'.
const fn printable(c: u8) -> bool {
    c >= 0x20 && c < 0x7f && c != b'"' && c != b'\\'
}

/// The high bit of each byte of `x` that is 0.
const fn zero_bytes(x: u64) -> u64 {
    !(((x & !HI) + !HI) | x) & HI
}

/// Where the first byte at or after `i` that is not [`printable`] is (or
/// the end): eight bytes at a time, each test exact per byte (no carries
/// between bytes), so the lowest flagged byte is the first one.
#[inline]
pub(super) fn skip_printable(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let low7 = x & !HI;
        let control = !(low7 + 0x60 * LO) & !x & HI;
        let del_or_high = ((low7 + LO) | x) & HI;
        let special = control
            | del_or_high
            | zero_bytes(x ^ (b'"' as u64 * LO))
            | zero_bytes(x ^ (b'\\' as u64 * LO));
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|&c| printable(c)) {
        i += 1;
    }
    i
}

/// The text of a checked JSON string literal (quotes included).
pub(super) fn decode(literal: &str) -> String {
    let inner = literal
        .get(1..literal.len().saturating_sub(1))
        .unwrap_or_default();
    let b = inner.as_bytes();
    let mut out = String::with_capacity(inner.len());
    let mut run = 0;
    let mut i = 0;
    while let Some(at) = b[i..].iter().position(|&c| c == b'\\') {
        i += at;
        out.push_str(&inner[run..i]);
        let (c, len) = unescape(&b[i..]);
        out.push(c);
        i += len;
        run = i;
    }
    out.push_str(&inner[run..]);
    out
}

/// The character of the checked escape at the start of `b`, and its length.
pub(super) fn unescape(b: &[u8]) -> (char, usize) {
    let c = match b.get(1) {
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let hi = b.get(2..6).and_then(hex4).unwrap_or(0xFFFD);
            if (0xD800..0xDC00).contains(&hi) {
                let lo = b.get(8..12).and_then(hex4).unwrap_or(0xDC00);
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                return (char::from_u32(c).unwrap_or('\u{FFFD}'), 12);
            }
            return (char::from_u32(hi).unwrap_or('\u{FFFD}'), 6);
        }
        // '"', '\\' and '/' stand for themselves.
        Some(&c) => char::from(c),
        None => '\\',
    };
    (c, 2)
}

/// CPython's `float.__repr__` of the number JSON text `text` denotes.
/// Most decimals in bodies have at most 15 significant digits: every such
/// decimal is the shortest text of its double (a double holds 15 decimal
/// digits exactly, so no other text of that length or shorter reads back
/// as the same double), so repr prints its digits unchanged and only the
/// layout needs computing. Longer ones go through the double.
pub(super) fn push_float_text(out: &mut Vec<u8>, text: &[u8]) {
    if is_own_repr(text) {
        out.extend_from_slice(text);
        return;
    }
    match short_decimal(text) {
        Some(d) if d.len == 0 => out.extend_from_slice(if d.negative { b"-0.0" } else { b"0.0" }),
        Some(d) => push_repr(out, &d),
        // Rust's parse is correctly rounded like CPython's float(); overflow gives ±inf.
        None => push_float(
            out,
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(f64::NAN),
        ),
    }
}

/// Whether the JSON number `t` is already written as repr writes its
/// double, the common case for decimals in bodies (`0.25`, `-37.007`,
/// `100.0`): no exponent, at most 15 significant digits (so they are the
/// shortest, see [`push_float_text`]), no trailing zero in the fraction
/// unless it is the only digit, and a point position repr writes in fixed
/// notation (at most three zeros after `0.`).
pub(super) fn is_own_repr(t: &[u8]) -> bool {
    let t = t.strip_prefix(b"-").unwrap_or(t);
    let Some(point) = t.iter().position(|&c| c == b'.') else {
        return false;
    };
    let (int, frac) = (&t[..point], &t[point + 1..]);
    if int.is_empty() || frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if frac == b"0" {
        return int.len() <= 15;
    }
    if frac.last() == Some(&b'0') {
        return false;
    }
    if int == b"0" {
        let zeros = frac.iter().take_while(|&&c| c == b'0').count();
        return zeros <= 3 && frac.len() - zeros <= 15;
    }
    int.len() + frac.len() <= 15
}

/// A decimal 0.`digits` × 10^`decpt`: significant digits only, no leading
/// or trailing zeros (none for a zero).
struct Decimal {
    negative: bool,
    digits: [u8; 17],
    len: usize,
    decpt: i32,
}

/// A JSON number as a [`Decimal`] when it has at most 15 significant
/// digits and its magnitude is well inside the normal doubles.
fn short_decimal(t: &[u8]) -> Option<Decimal> {
    let negative = t.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let mut d = Decimal {
        negative,
        digits: [0u8; 17],
        len: 0,
        decpt: 0,
    };
    // Zeros seen after a significant digit, written only when another follows.
    let mut zeros = 0;
    let mut seen_point = false;
    while let Some(&c) = t.get(i) {
        match c {
            b'0' if d.len == 0 => {
                if seen_point {
                    d.decpt -= 1;
                }
            }
            b'0'..=b'9' => {
                if c == b'0' {
                    zeros += 1;
                } else {
                    if d.len + zeros + 1 > 15 {
                        return None;
                    }
                    if zeros > 0 {
                        d.digits[d.len..d.len + zeros].fill(b'0');
                        d.len += zeros;
                        zeros = 0;
                    }
                    d.digits[d.len] = c;
                    d.len += 1;
                }
                if !seen_point {
                    d.decpt += 1;
                }
            }
            b'.' => seen_point = true,
            _ => break,
        }
        i += 1;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        let e = t.get(i + 1..)?;
        let digits = e.strip_prefix(b"-").or(e.strip_prefix(b"+")).unwrap_or(e);
        if digits.is_empty() || digits.len() > 4 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        d.decpt += parse_exp(e);
    } else if i != t.len() {
        return None;
    }
    // 10^-301 ..= 10^300: normal doubles, where 15 digits always round-trip.
    if d.len > 0 && !(-300 < d.decpt && d.decpt <= 300) {
        return None;
    }
    Some(d)
}

/// CPython's `float.__repr__` (shortest round-trip digits), and json's
/// `Infinity` / `-Infinity` / `NaN` spellings.
pub fn push_float(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if f == 0.0 {
        out.extend_from_slice(if f.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return;
    }
    // Ryu gives the shortest digits that read back as `f`, the nearest of
    // them, ties to even: what CPython's repr (Gay's dtoa, mode 0) gives.
    // Its layout differs ("1e16", "0.00001"); the digits and the point
    // position are read back from it.
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f.abs()).as_bytes();
    let (mantissa, exp) = match text.iter().position(|&c| c == b'e') {
        Some(e) => (&text[..e], parse_exp(&text[e + 1..])),
        None => (text, 0),
    };
    let mut d = Decimal {
        negative: f < 0.0,
        digits: [0u8; 17],
        len: 0,
        decpt: exp,
    };
    let mut point = None;
    let mut leading = 0;
    for &c in mantissa {
        if c == b'.' {
            point = Some(d.len + leading);
        } else if c == b'0' && d.len == 0 {
            leading += 1;
        } else if d.len < d.digits.len() {
            d.digits[d.len] = c;
            d.len += 1;
        }
    }
    d.decpt += point.unwrap_or(d.len + leading) as i32 - leading as i32;
    while d.len > 1 && d.digits[d.len - 1] == b'0' {
        d.len -= 1;
    }
    push_repr(out, &d);
}

/// A decimal exponent: digits with an optional sign.
fn parse_exp(t: &[u8]) -> i32 {
    let (sign, digits) = match t.split_first() {
        Some((b'-', rest)) => (-1, rest),
        Some((b'+', rest)) => (1, rest),
        _ => (1, t),
    };
    sign * digits
        .iter()
        .fold(0, |v, d| v * 10 + i32::from(d.wrapping_sub(b'0')))
}

/// Python's repr layout of a non-zero [`Decimal`]: fixed notation when -4 < decpt <= 16,
/// else one digit, the rest after a point, and a signed two-digit exponent.
fn push_repr(out: &mut Vec<u8>, d: &Decimal) {
    let (digits, decpt) = (&d.digits[..d.len], d.decpt);
    if d.negative {
        out.push(b'-');
    }
    let n = digits.len() as i32;
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-decpt) as usize));
            out.extend_from_slice(digits);
        } else if decpt >= n {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', (decpt - n) as usize));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..decpt as usize]);
            out.push(b'.');
            out.extend_from_slice(&digits[decpt as usize..]);
        }
    } else {
        out.extend_from_slice(&digits[..1]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let exp = decpt - 1;
        out.extend_from_slice(if exp < 0 { b"e-" } else { b"e+" });
        let e = exp.unsigned_abs();
        if e >= 100 {
            out.push(b'0' + (e / 100) as u8);
        }
        out.push(b'0' + (e / 10 % 10) as u8);
        out.push(b'0' + (e % 10) as u8);
    }
}

/// `s` as CPython's `py_encode_basestring_ascii` writes it, quotes included.
pub fn push_str_bytes(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    loop {
        i = skip_printable(b, i);
        out.extend_from_slice(&b[run..i]);
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        push_char(out, c as u32);
        i += c.len_utf8();
        run = i;
    }
    out.push(b'"');
}

/// One character as `ensure_ascii` output writes it.
pub(super) fn push_char(out: &mut Vec<u8>, c: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let short: &[u8] = match c {
        0x22 => b"\\\"",
        0x5C => b"\\\\",
        0x0A => b"\\n",
        0x0D => b"\\r",
        0x09 => b"\\t",
        0x08 => b"\\b",
        0x0C => b"\\f",
        0x20..=0x7E => {
            out.push(c as u8);
            return;
        }
        _ => b"",
    };
    if !short.is_empty() {
        out.extend_from_slice(short);
        return;
    }
    let mut unit = |u: u32| {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            DIGITS[(u >> 12 & 0xF) as usize],
            DIGITS[(u >> 8 & 0xF) as usize],
            DIGITS[(u >> 4 & 0xF) as usize],
            DIGITS[(u & 0xF) as usize],
        ])
    };
    if c < 0x10000 {
        unit(c);
    } else {
        let v = c - 0x10000;
        unit(0xD800 + (v >> 10));
        unit(0xDC00 + (v & 0x3FF));
    }
}

/// The length of the UTF-8 character at `b[i]` (not ASCII), `None` when
/// the bytes there are not one (RFC 3629: no overlong forms, surrogates or
/// code points above U+10FFFF).
pub(super) fn utf8_len(b: &[u8], i: usize) -> Option<usize> {
    let cont = |k: usize| b.get(i + k).is_some_and(|&c| (0x80..0xC0).contains(&c));
    let second = |lo: u8, hi: u8| b.get(i + 1).is_some_and(|&c| (lo..=hi).contains(&c));
    let n = match b.get(i)? {
        0xC2..=0xDF => 2,
        0xE0 => 3 * usize::from(second(0xA0, 0xBF)),
        0xED => 3 * usize::from(second(0x80, 0x9F)),
        0xE1..=0xEF => 3 * usize::from(cont(1)),
        0xF0 => 4 * usize::from(second(0x90, 0xBF)),
        0xF4 => 4 * usize::from(second(0x80, 0x8F)),
        0xF1..=0xF3 => 4 * usize::from(cont(1)),
        _ => 0,
    };
    (n >= 2 && cont(1) && (2..n).all(cont)).then_some(n)
}

/// The code point of the UTF-8 character at the start of `b` (checked by
/// [`utf8_len`]) and its length; U+FFFD for a byte that starts none.
pub(super) fn utf8_char(b: &[u8]) -> (u32, usize) {
    let lead = b.first().copied().unwrap_or(0);
    let (n, bits) = match lead {
        0x00..=0x7F => return (u32::from(lead), 1),
        0xC0..=0xDF => (2, lead & 0x1F),
        0xE0..=0xEF => (3, lead & 0x0F),
        0xF0..=0xF7 => (4, lead & 0x07),
        _ => return (0xFFFD, 1),
    };
    let Some(tail) = b.get(1..n) else {
        return (0xFFFD, 1);
    };
    let c = tail
        .iter()
        .fold(u32::from(bits), |c, &t| c << 6 | u32::from(t & 0x3F));
    (c, n)
}
