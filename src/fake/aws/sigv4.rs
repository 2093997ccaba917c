//! SigV4 recomputed from a request as it was received, written from AWS's
//! documentation ("Create a signed AWS API request") and pinned by the
//! aws-c-auth test suite (`tests/vectors/aws-sigv4`). Pure: no clock, no
//! credential table, no I/O; `auth.rs` applies the fake's policy on top.
//!
//! The two URI rules, and why the fake knows which one applies: the signer
//! picks the rule from the signing name, and so does this verifier, from the
//! service the fake expects on that route (never from what the caller's
//! credential scope claims, which is checked against it separately).
//! - S3 ([`UriRule::S3`]): the path is not normalised, and it is encoded once:
//!   each byte of the received path is decoded once (`%XX` → byte, `+` stays a
//!   plus) and encoded again, only RFC 3986 unreserved bytes and `/` kept. For
//!   a path the SDK encoded canonically this is the path as sent; a raw `=`
//!   becomes `%3D` and `%7e` becomes `~`, as S3 itself computes it.
//! - Everything else ([`UriRule::General`]): dot segments removed and empty
//!   segments collapsed (when `normalize`), then every byte of the path as sent
//!   encoded, `%` included: a path encoded once on the wire is encoded twice in
//!   the canonical request ("each segment encoded twice").

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::codec::{decode, encode, is_unreserved};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// A request as it arrived on the wire.
pub struct Received<'a> {
    pub method: &'a str,
    /// The request-target's path exactly as sent (escapes intact).
    pub path: &'a [u8],
    /// The query exactly as sent, without `?`; empty when there is none.
    pub query: &'a [u8],
    /// Lowercase names, raw values, in the order received (duplicates kept).
    pub headers: &'a [(String, Vec<u8>)],
    pub body: &'a [u8],
}

impl<'a> Received<'a> {
    /// Every value of `name`, in the order received.
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        let headers: &'a [(String, Vec<u8>)] = self.headers;
        headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The only value of `name` as text; `None` when absent, repeated or not UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let mut all = self.values(name);
        let first = all.next()?;
        if all.next().is_some() {
            return None;
        }
        std::str::from_utf8(first).ok()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriRule {
    /// Not normalised; decoded once and re-encoded once.
    S3,
    /// Normalised when `normalize`; the path as sent encoded again.
    General { normalize: bool },
}

impl UriRule {
    /// The rule AWS applies for a signing name.
    pub fn for_service(service: &str) -> Self {
        if service == "s3" {
            UriRule::S3
        } else {
            UriRule::General { normalize: true }
        }
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lowercase, sorted, unique.
    pub signed_headers: Vec<String>,
    /// 64 lowercase hex digits.
    pub signature: String,
}

impl Authorization {
    /// `date/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Parses the header value; the error says what is malformed.
pub fn parse_authorization(value: &str) -> Result<Authorization, String> {
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        let kind = value.split(' ').next().unwrap_or_default();
        return Err(format!(
            "unsupported authorization type {kind:?}; only {ALGORITHM} is accepted"
        ));
    };
    if !rest.starts_with(' ') {
        return Err(format!("{ALGORITHM} must be followed by a space"));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim_matches(' ');
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not key=value"))?;
        let slot = match k {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(format!("unknown component {k:?}")),
        };
        if slot.replace(v).is_some() {
            return Err(format!("{k} appears twice"));
        }
    }
    let credential = credential.ok_or("missing Credential")?;
    let signed = signed.ok_or("missing SignedHeaders")?;
    let signature = signature.ok_or("missing Signature")?;

    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = scope[..] else {
        return Err(format!(
            "Credential {credential:?} is not <key>/<date>/<region>/<service>/aws4_request"
        ));
    };
    if terminator != "aws4_request" {
        return Err(format!(
            "Credential scope must end in aws4_request, not {terminator:?}"
        ));
    }
    if akid.is_empty() || region.is_empty() || service.is_empty() {
        return Err(format!("Credential {credential:?} has an empty part"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("Credential date {date:?} is not YYYYMMDD"));
    }
    let signed_headers: Vec<String> = signed.split(';').map(String::from).collect();
    let well_formed = signed_headers.iter().all(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
    });
    if !well_formed || signed_headers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "SignedHeaders {signed:?} must be lowercase names, sorted, unique, separated by ';'"
        ));
    }
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("Signature must be 64 lowercase hex digits".into());
    }
    Ok(Authorization {
        access_key_id: akid.into(),
        date: date.into(),
        region: region.into(),
        service: service.into(),
        signed_headers,
        signature: signature.into(),
    })
}

/// Why a canonical request cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unbuildable {
    /// A `%` not followed by two hex digits in the path (S3 rule) or query.
    BadEscape(&'static str),
    /// A header named in SignedHeaders is not in the request.
    MissingHeader(String),
}

fn keep_in_path(b: u8) -> bool {
    is_unreserved(b) || b == b'/'
}

/// RFC 3986 §5.2.4 as SigV4 applies it: `.` and empty segments dropped, `..`
/// removes the one before; a leading `/` kept, a trailing `/` kept when any
/// segment survives.
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut kept: Vec<&[u8]> = Vec::new();
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if path.first() == Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(&kept.join(&b'/'));
    if path.last() == Some(&b'/') && !kept.is_empty() {
        out.push(b'/');
    }
    out
}

pub fn canonical_uri(path: &[u8], rule: UriRule) -> Result<String, Unbuildable> {
    let uri = match rule {
        UriRule::S3 => {
            let decoded = decode(path).ok_or(Unbuildable::BadEscape("path"))?;
            encode(&decoded, keep_in_path)
        }
        UriRule::General { normalize: true } => encode(&normalize(path), keep_in_path),
        UriRule::General { normalize: false } => encode(path, keep_in_path),
    };
    Ok(if uri.is_empty() { "/".into() } else { uri })
}

/// Each parameter decoded then re-encoded (unreserved kept, `+` a literal
/// plus), a parameter without `=` given an empty value, sorted by encoded
/// name then encoded value.
pub fn canonical_query(query: &[u8]) -> Result<String, Unbuildable> {
    let mut pairs = Vec::new();
    for param in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (&param[..i], &param[i + 1..]),
            None => (param, &b""[..]),
        };
        let canon = |s: &[u8]| {
            decode(s)
                .map(|d| encode(&d, is_unreserved))
                .ok_or(Unbuildable::BadEscape("query"))
        };
        pairs.push((canon(name)?, canon(value)?));
    }
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(n, v)| n + "=" + &v).collect();
    Ok(joined.join("&"))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

/// Trimmed, every inner run of whitespace made one space.
pub fn trim_all(value: &[u8]) -> Vec<u8> {
    let words: Vec<&[u8]> = value
        .split(|&b| is_space(b))
        .filter(|w| !w.is_empty())
        .collect();
    words.join(&b' ')
}

/// `name:value\n` for each signed header; repeated fields joined by `,` in order.
pub fn canonical_headers(req: &Received<'_>, signed: &[String]) -> Result<Vec<u8>, Unbuildable> {
    let mut out = Vec::new();
    for name in signed {
        let values: Vec<Vec<u8>> = req.values(name).map(trim_all).collect();
        if values.is_empty() {
            return Err(Unbuildable::MissingHeader(name.clone()));
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&values.join(&b','));
        out.push(b'\n');
    }
    Ok(out)
}

pub fn canonical_request(
    req: &Received<'_>,
    rule: UriRule,
    signed: &[String],
    payload_hash: &str,
) -> Result<Vec<u8>, Unbuildable> {
    let mut out = Vec::new();
    out.extend_from_slice(req.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(req.path, rule)?.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(req.query)?.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&canonical_headers(req, signed)?);
    out.push(b'\n');
    out.extend_from_slice(signed.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    Ok(out)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request)
    )
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

pub fn signature(key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(key, string_to_sign.as_bytes()))
}

/// Equal bytes, in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the fake computed for a request: shown to the caller on a mismatch.
#[derive(Clone, Debug)]
pub struct Computed {
    pub canonical_request: Vec<u8>,
    pub string_to_sign: String,
    pub signature: String,
}

/// The whole recomputation for one request and one secret.
pub fn compute(
    req: &Received<'_>,
    auth: &Authorization,
    rule: UriRule,
    amz_date: &str,
    payload_hash: &str,
    secret: &str,
) -> Result<Computed, Unbuildable> {
    let canonical_request = canonical_request(req, rule, &auth.signed_headers, payload_hash)?;
    let string_to_sign = string_to_sign(amz_date, &auth.scope(), &canonical_request);
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    let signature = signature(&key, &string_to_sign);
    Ok(Computed {
        canonical_request,
        string_to_sign,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_uri_rules_differ_exactly_where_aws_says() {
        // S3 decodes once and re-encodes; other services encode what was sent.
        let s3 = |p: &str| canonical_uri(p.as_bytes(), UriRule::S3).unwrap();
        let gen =
            |p: &str| canonical_uri(p.as_bytes(), UriRule::General { normalize: true }).unwrap();
        assert_eq!(s3("/b/a%20b%2Bc"), "/b/a%20b%2Bc");
        assert_eq!(gen("/b/a%20b%2Bc"), "/b/a%2520b%252Bc");
        assert_eq!(s3("/%3Fa=b%20c"), "/%3Fa%3Db%20c");
        assert_eq!(gen("/%3Fa=b%20c"), "/%253Fa%3Db%2520c");
        assert_eq!(s3("/b/x%7e+y"), "/b/x~%2By");
        assert_eq!(s3("/b/./../c//"), "/b/./../c//");
        assert_eq!(gen("/b/./../c//"), "/c/");
        assert_eq!(s3(""), "/");
        assert_eq!(
            canonical_uri(b"/a%zz", UriRule::S3),
            Err(Unbuildable::BadEscape("path"))
        );
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted_by_name_then_value() {
        let q = |s: &str| canonical_query(s.as_bytes()).unwrap();
        assert_eq!(q("b=2&a=2&a=1"), "a=1&a=2&b=2");
        assert_eq!(q("Param=Value2&Param-3=x"), "Param=Value2&Param-3=x");
        assert_eq!(q("k=a+b&e&x=%7e%2f"), "e=&k=a%2Bb&x=~%2F");
        assert_eq!(q("a=1&&b"), "a=1&b=");
        assert_eq!(q(""), "");
    }

    #[test]
    fn authorization_parsing_is_strict() {
        let ok = "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=".to_string()
            + &"a".repeat(64);
        let a = parse_authorization(&ok).unwrap();
        assert_eq!(a.scope(), "20150830/us-east-1/s3/aws4_request");
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        for bad in [
            ok.replace("host;x-amz-date", "x-amz-date;host"),
            ok.replace("host;", "Host;"),
            ok.replace("aws4_request", "aws4"),
            ok.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
            ok.replace(&"a".repeat(64), &"A".repeat(64)),
            ok.replace("20150830", "2015083"),
            ok.replace(", Signature", ", Credential=x, Signature"),
        ] {
            assert!(parse_authorization(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_values_are_trimmed_and_runs_collapsed() {
        assert_eq!(trim_all(b"  a \t  b  c "), b"a b c");
        assert_eq!(trim_all(b"value1\n  value2"), b"value1 value2");
        assert_eq!(trim_all(b"   "), b"");
    }
}
