//! The byte-exact encodings of the recipe engine: RFC 3986 and form
//! percent-encoding, editing a query string or form body in place, the
//! compact re-encoding of a JSON object body, and the two timestamp formats.
//! Pure functions, no CEL.

use std::fmt::Write as _;

/// RFC 3986 §2.3 unreserved characters: kept as they are by [`rfc3986`].
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// Base16, lower or upper case (the `hex` crate builds its string one
/// `char` at a time, a visible cost on a signature's path).
pub(crate) fn hex(input: &[u8], upper: bool) -> String {
    let digits = if upper { HEX_UPPER } else { HEX_LOWER };
    let mut out = Vec::with_capacity(input.len() * 2);
    for &b in input {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xf)]);
    }
    // Only ASCII digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// Percent-encodes `input` per RFC 3986: unreserved characters kept, every
/// other byte (space included) as `%XX` with upper-case hex digits.
pub(crate) fn rfc3986_into(input: &[u8], out: &mut String) {
    // Most values (digits, hex, base64url) need no escape at all.
    let clean = input.iter().take_while(|&&b| is_unreserved(b)).count();
    let (head, rest) = input.split_at(clean);
    // `head` is ASCII.
    out.push_str(std::str::from_utf8(head).unwrap_or_default());
    for &b in rest {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[usize::from(b >> 4)] as char);
            out.push(HEX_UPPER[usize::from(b & 0xf)] as char);
        }
    }
}

pub(crate) fn rfc3986(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len() * 3 / 2);
    rfc3986_into(input, &mut out);
    out
}

/// Encodes `input` as `application/x-www-form-urlencoded` does (WHATWG URL
/// standard): `*-._` and alphanumerics kept, space as `+`, the rest `%XX`.
pub(crate) fn form_into(input: &[u8], out: &mut String) {
    out.extend(form_urlencoded::byte_serialize(input));
}

/// How the name and value of a new pair are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PairStyle {
    /// A query string: RFC 3986 (space as `%20`).
    Query,
    /// A form body: `application/x-www-form-urlencoded` (space as `+`).
    Form,
}

impl PairStyle {
    fn encode_into(self, input: &[u8], out: &mut String) {
        match self {
            PairStyle::Query => rfc3986_into(input, out),
            PairStyle::Form => form_into(input, out),
        }
    }
}

/// The decoded name of one `name=value` piece of a query or form body, with
/// the form rules (`+` is a space, `%XX` a byte), as the upstream's server
/// will most likely read it. Borrowed when there is nothing to decode.
fn piece_name(piece: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let raw = match memchr::memchr(b'=', piece) {
        Some(at) => &piece[..at],
        None => piece,
    };
    if memchr::memchr2(b'+', b'%', raw).is_none() {
        return std::borrow::Cow::Borrowed(raw);
    }
    let decoded = form_urlencoded::parse(raw)
        .next()
        .map(|(name, _)| name.into_owned().into_bytes())
        .unwrap_or_default();
    std::borrow::Cow::Owned(decoded)
}

/// The non-empty `&`-separated pieces of `raw`.
fn pieces(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'&', raw)
        .chain(std::iter::once(raw.len()))
        .filter_map(move |end| {
            let piece = &raw[start..end];
            start = end + 1;
            (!piece.is_empty()).then_some(piece)
        })
}

/// Appends the pairs of `edits` that have a value, in order: for names
/// known to be absent from `raw`, with no scan of it.
pub(crate) fn append_pairs(raw: &mut String, edits: &[(&str, Option<&[u8]>)], style: PairStyle) {
    for (name, value) in edits {
        if let Some(value) = value {
            if !raw.is_empty() && !raw.ends_with('&') {
                raw.push('&');
            }
            write_pair(raw, name, value, style);
        }
    }
}

/// Sets and removes pairs of a query string or form body, in place.
///
/// `edits` holds `(name, value)`, in the order new pairs are appended
/// (sorted by name), names unique; a `None` value removes every pair of
/// that name. Pieces not named in `edits` are kept byte for byte, in place;
/// when a pair is replaced or removed, empty pieces (`a=1&&b=2`) are
/// dropped. For a name in `edits` with a
/// value, its first pair is replaced where it stands and any later pair of
/// the same name is dropped; a name with no pair yet is appended. Names are
/// compared decoded (`%73ig` is `sig`).
pub(crate) fn edit_pairs(raw: &mut String, edits: &[(&str, Option<&[u8]>)], style: PairStyle) {
    if edits.is_empty() {
        return;
    }
    // The common case, new names on a clean string: append in place.
    let find = |piece: &[u8]| {
        let name = piece_name(piece);
        edits
            .iter()
            .position(|(n, _)| n.as_bytes() == name.as_ref())
    };
    // Without `%` or `+`, names are written as they read: a name that
    // occurs nowhere in `raw` names none of its pairs.
    let bytes = raw.as_bytes();
    let may_hold = memchr::memchr2(b'%', b'+', bytes).is_some()
        || edits
            .iter()
            .any(|(n, _)| memchr::memmem::find(bytes, n.as_bytes()).is_some());
    if !may_hold || pieces(bytes).all(|p| find(p).is_none()) {
        append_pairs(raw, edits, style);
        return;
    }
    let mut out = String::with_capacity(raw.len() + 64);
    let mut placed = vec![false; edits.len()];
    let push_sep = |out: &mut String| {
        if !out.is_empty() {
            out.push('&');
        }
    };
    for piece in pieces(raw.as_bytes()) {
        match find(piece) {
            None => {
                push_sep(&mut out);
                // `raw` is a `str` and pieces split at an ASCII byte.
                out.push_str(std::str::from_utf8(piece).unwrap_or_default());
            }
            Some(i) => {
                if let (Some(value), false) = (edits[i].1, placed[i]) {
                    push_sep(&mut out);
                    write_pair(&mut out, edits[i].0, value, style);
                }
                placed[i] = true;
            }
        }
    }
    for (i, (name, value)) in edits.iter().enumerate() {
        if let (Some(value), false) = (value, placed[i]) {
            push_sep(&mut out);
            write_pair(&mut out, name, value, style);
        }
    }
    *raw = out;
}

fn write_pair(out: &mut String, name: &str, value: &[u8], style: PairStyle) {
    style.encode_into(name.as_bytes(), out);
    out.push('=');
    style.encode_into(value, out);
}

/// `canonical_query`: the pairs of a query string decoded (form rules),
/// each name and value RFC 3986-encoded, sorted by encoded name then encoded
/// value (byte order), joined `name=value` by `&`. A piece without `=` has
/// an empty value (`a` becomes `a=`); empty pieces are dropped.
pub(crate) fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(n, v)| (rfc3986(n.as_bytes()), rfc3986(v.as_bytes())))
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// `true` for `application/x-www-form-urlencoded`, parameters and case aside.
pub(crate) fn is_form_content_type(value: &[u8]) -> bool {
    let essence = value.split(|&b| b == b';').next().unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

// ---------------------------------------------------------------------------
// JSON

/// The body with every JSON whitespace byte outside strings removed. Only
/// for text already known to be valid JSON: strings, numbers and member
/// order are kept byte for byte.
pub(crate) fn json_compact(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    out
}

/// One member of a compact JSON object: its decoded name and its raw text,
/// `"name":value`.
pub(crate) struct Member<'a> {
    pub(crate) name: String,
    pub(crate) raw: &'a [u8],
}

/// Splits a compact JSON object (from [`json_compact`] of valid JSON) into
/// its members, in order. `None` when the text is not an object.
pub(crate) fn json_members(compact: &[u8]) -> Option<Vec<Member<'_>>> {
    let inner = compact.strip_prefix(b"{")?.strip_suffix(b"}")?;
    let mut members = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in inner.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                members.push(member(&inner[start..i])?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner.is_empty() {
        members.push(member(&inner[start..])?);
    }
    Some(members)
}

fn member(raw: &[u8]) -> Option<Member<'_>> {
    // The name is a JSON string: its end is the first unescaped quote.
    let mut escaped = false;
    let mut end = None;
    for (i, &b) in raw.iter().enumerate().skip(1) {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            end = Some(i);
            break;
        }
    }
    let name: String = serde_json::from_slice(&raw[..=end?]).ok()?;
    Some(Member { name, raw })
}

/// Sets and removes top-level members of a compact JSON object, with the
/// rule of [`edit_pairs`]: `edits` in order, `Some(json)` is the
/// member's new value as JSON text, `None` removes it.
pub(crate) fn edit_json(members: &[Member<'_>], edits: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(members.iter().map(|m| m.raw.len() + 1).sum::<usize>() + 64);
    out.push(b'{');
    let mut placed = vec![false; edits.len()];
    let push_sep = |out: &mut Vec<u8>| {
        if out.len() > 1 {
            out.push(b',');
        }
    };
    for m in members {
        match edits.iter().position(|(n, _)| *n == m.name) {
            None => {
                push_sep(&mut out);
                out.extend_from_slice(m.raw);
            }
            Some(i) => {
                if let (Some(value), false) = (edits[i].1, placed[i]) {
                    push_sep(&mut out);
                    write_member(&mut out, edits[i].0, value);
                }
                placed[i] = true;
            }
        }
    }
    for (i, (name, value)) in edits.iter().enumerate() {
        if let (Some(value), false) = (value, placed[i]) {
            push_sep(&mut out);
            write_member(&mut out, name, value);
        }
    }
    out.push(b'}');
    out
}

fn write_member(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    json_string_into(name, out);
    out.push(b':');
    out.extend_from_slice(value);
}

/// A JSON string literal: `"` and `\` escaped, control characters as
/// `\n`-style or `\u00XX` escapes, everything else (non-ASCII included) as
/// UTF-8. The same as `serde_json::to_string`.
pub(crate) fn json_string_into(s: &str, out: &mut Vec<u8>) {
    // serde_json writes a `&str` without failing: its errors come from I/O
    // and from map keys that are not strings.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

// ---------------------------------------------------------------------------
// Time

/// `(year, month, day, hour, minute, second, millisecond)` in UTC of a Unix
/// time in milliseconds (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`).
fn civil(unix_ms: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let ms = unix_ms.rem_euclid(1000) as u32;
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, sod / 3600, sod / 60 % 60, sod % 60, ms)
}

/// `2015-08-30T12:36:00.123Z`: RFC 3339, UTC, milliseconds.
pub(crate) fn rfc3339_ms(unix_ms: i64) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(unix_ms);
    let mut out = String::with_capacity(24);
    let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
    out
}

/// `20150830T123600Z`: ISO 8601 basic format, UTC, seconds (SigV4's `X-Amz-Date`).
pub(crate) fn iso8601_basic(unix_ms: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(unix_ms);
    let mut out = String::with_capacity(16);
    let _ = write!(out, "{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z");
    out
}
