//! AWS Signature Version 4, the signing itself: canonical request, string
//! to sign, signing key, signature, as the AWS SigV4 test suite (aws-c-auth
//! `tests/aws-signing-test-suite/v4`, vendored in `tests/vectors/aws-sigv4`)
//! pins them. Pure functions over strings: the kind decides what goes in.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::canonical::{pct, push_hex};

/// The request as it will be signed. `path` and `query` are as they will
/// be sent (the kind has already re-encoded them canonically); `headers`
/// are the ones to sign, names lower case, in the order they will be sent.
pub struct Signable<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// Lowercase hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: &'a str,
}

/// How the canonical URI is made from the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriRules {
    /// Remove dot segments and collapse `//` (every service but S3).
    pub normalize: bool,
    /// Percent-encode the path (as sent) once more: every service but S3
    /// signs the path encoded twice; S3 signs it as sent.
    pub encode: bool,
}

impl UriRules {
    pub const S3: UriRules = UriRules {
        normalize: false,
        encode: false,
    };
    pub const GENERAL: UriRules = UriRules {
        normalize: true,
        encode: true,
    };
}

/// The canonical request and the `SignedHeaders` list.
pub fn canonical_request(req: &Signable<'_>, rules: UriRules) -> (String, String) {
    let mut out = String::with_capacity(256 + req.path.len() + req.query.len());
    out.push_str(req.method);
    out.push('\n');
    push_canonical_uri(&mut out, req.path, rules);
    out.push('\n');
    push_canonical_query(&mut out, req.query);
    out.push('\n');
    // Headers: by name, a repeated name's values joined by ',' in order,
    // each value trimmed with inner runs of white space collapsed.
    let mut names: Vec<&str> = req.headers.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        out.push_str(name);
        out.push(':');
        let mut first = true;
        for (_, v) in req.headers.iter().filter(|(n, _)| n == name) {
            if !first {
                out.push(',');
            }
            first = false;
            push_collapsed(&mut out, v);
        }
        out.push('\n');
    }
    out.push('\n');
    let signed = names.join(";");
    out.push_str(&signed);
    out.push('\n');
    out.push_str(req.payload_hash);
    (out, signed)
}

fn push_collapsed(out: &mut String, value: &str) {
    let mut words = value.split_ascii_whitespace();
    if let Some(w) = words.next() {
        out.push_str(w);
    }
    for w in words {
        out.push(' ');
        out.push_str(w);
    }
}

fn push_canonical_uri(out: &mut String, path: &str, rules: UriRules) {
    let normalized;
    let path = if rules.normalize {
        normalized = normalize(path);
        normalized.as_str()
    } else {
        path
    };
    let path = if path.is_empty() { "/" } else { path };
    if !rules.encode {
        out.push_str(path);
        return;
    }
    for segment in path.split('/').enumerate() {
        if segment.0 > 0 {
            out.push('/');
        }
        pct::push_encoded(out, segment.1.as_bytes());
    }
}

/// RFC 3986 §5.2.4 dot segments removed and empty segments collapsed, a
/// trailing '/' kept.
fn normalize(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    let trailing = path.ends_with('/')
        || path.ends_with("/.")
        || path.ends_with("/..")
        || path == "."
        || path == "..";
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

/// Parameters decoded (a `+` is a literal plus) and encoded again (RFC
/// 3986, unreserved kept), sorted by name then value, `name=value` joined
/// by '&'; a parameter without '=' has an empty value.
fn push_canonical_query(out: &mut String, query: &str) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (reencode(n), reencode(v))
        })
        .collect();
    pairs.sort_unstable();
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
}

/// `text` decoded once (`%XX`; a stray '%' stays a character) and
/// percent-encoded with only the unreserved characters kept.
pub fn reencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_reencoded(&mut out, text);
    out
}

/// [`reencode`], appended to `out`.
pub fn push_reencoded(out: &mut String, text: &str) {
    if !text.as_bytes().contains(&b'%') {
        pct::push_encoded(out, text.as_bytes());
        return;
    }
    match pct::decode(text) {
        Some(bytes) => pct::push_encoded(out, &bytes),
        None => pct::push_encoded(out, text.as_bytes()),
    }
}

/// `date/region/service/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let mut out = String::with_capacity(64 + 16 + scope.len() + 64);
    out.push_str("AWS4-HMAC-SHA256\n");
    out.push_str(amz_date);
    out.push('\n');
    out.push_str(scope);
    out.push('\n');
    push_hex(&mut out, &Sha256::digest(canonical_request.as_bytes()));
    out
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The day's signing key: HMAC("AWS4" + secret, date), then region,
/// service, "aws4_request".
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Lowercase hex HMAC-SHA256(key, string to sign).
pub fn signature(key: &[u8; 32], string_to_sign: &str) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &hmac(key, string_to_sign.as_bytes()));
    out
}

/// Lowercase hex SHA-256 of a payload.
pub fn payload_hash(body: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &Sha256::digest(body));
    out
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;
