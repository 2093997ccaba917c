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

/// Percent-encodes `input` per RFC 3986: unreserved characters kept, every
/// other byte (space included) as `%XX` with upper-case hex digits.
pub(crate) fn rfc3986_into(input: &[u8], out: &mut String) {
    for &b in input {
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
/// will most likely read it.
fn piece_name(piece: &str) -> std::borrow::Cow<'_, str> {
    let raw = piece.split_once('=').map_or(piece, |(n, _)| n);
    if !raw.bytes().any(|b| b == b'+' || b == b'%') {
        return std::borrow::Cow::Borrowed(raw);
    }
    form_urlencoded::parse(raw.as_bytes())
        .next()
        .map_or(std::borrow::Cow::Borrowed(""), |(name, _)| {
            std::borrow::Cow::Owned(name.into_owned())
        })
}

/// Sets and removes pairs of a query string or form body.
///
/// `edits` holds `(name, value)`, sorted by name, unique; a `None` value
/// removes every pair of that name. Pieces not named in `edits` are kept
/// byte for byte, in place. For a name in `edits` with a value, its first
/// pair is replaced where it stands and any later pair of the same name is
/// dropped; a name with no pair yet is appended, in the order of `edits`.
/// Names are compared decoded (`%73ig` is `sig`).
pub(crate) fn edit_pairs(raw: &str, edits: &[(&str, Option<&[u8]>)], style: PairStyle) -> String {
    let mut out = String::with_capacity(raw.len() + 64);
    let mut placed = vec![false; edits.len()];
    let push_sep = |out: &mut String| {
        if !out.is_empty() {
            out.push('&');
        }
    };
    if !raw.is_empty() {
        for piece in raw.split('&').filter(|p| !p.is_empty()) {
            let name = piece_name(piece);
            match edits.binary_search_by(|(n, _)| (*n).cmp(name.as_ref())) {
                Err(_) => {
                    push_sep(&mut out);
                    out.push_str(piece);
                }
                Ok(i) => {
                    if let (Some(value), false) = (edits[i].1, placed[i]) {
                        push_sep(&mut out);
                        write_pair(&mut out, edits[i].0, value, style);
                    }
                    placed[i] = true;
                }
            }
        }
    }
    for (i, (name, value)) in edits.iter().enumerate() {
        if let (Some(value), false) = (value, placed[i]) {
            push_sep(&mut out);
            write_pair(&mut out, name, value, style);
        }
    }
    out
}

fn write_pair(out: &mut String, name: &str, value: &[u8], style: PairStyle) {
    style.encode_into(name.as_bytes(), out);
    out.push('=');
    style.encode_into(value, out);
}

/// Whether any pair of `raw` has one of the (sorted) `names`.
pub(crate) fn has_any_pair(raw: &str, names: &[&str]) -> bool {
    !raw.is_empty()
        && raw
            .split('&')
            .any(|piece| names.binary_search(&piece_name(piece).as_ref()).is_ok())
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
/// rule of [`edit_pairs`]: `edits` sorted by name, `Some(json)` is the
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
        match edits.binary_search_by(|(n, _)| (*n).cmp(m.name.as_str())) {
            Err(_) => {
                push_sep(&mut out);
                out.extend_from_slice(m.raw);
            }
            Ok(i) => {
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
