//! Header and path hygiene between the caller and the upstream (README, "How a call goes through"):
//! hop-by-hop headers dropped both ways, `Host` left to the upstream URL, no
//! `Forwarded`/`X-Forwarded-*`/`Via` leaking internal addresses, the client
//! token stripped, and every header the kind sets removed from the caller's
//! request first so a caller can never override a credential.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName};

use crate::error::ProxyError;

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus the legacy proxy ones.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn is_hop_by_hop_extra(name: &str) -> bool {
    matches!(name, "keep-alive" | "proxy-connection")
}

/// Headers that would tell the upstream about the inside of the network.
fn is_forwarding(name: &str) -> bool {
    name == "forwarded" || name == "via" || name == "x-real-ip" || name.starts_with("x-forwarded-")
}

/// Names listed in `Connection:` are hop-by-hop too.
fn connection_listed(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// The caller's headers as they may go upstream, before the kind signs.
pub fn outgoing(caller: &HeaderMap, owned: &[HeaderName], strip_authorization: bool) -> HeaderMap {
    let listed = connection_listed(caller);
    // Room for what the kind adds when it signs: no regrowth per request.
    let mut out = HeaderMap::with_capacity(caller.len() + 6);
    for (name, value) in caller {
        let n = name.as_str();
        let drop = HOP_BY_HOP.contains(name)
            || is_hop_by_hop_extra(n)
            || listed.contains(name)
            || is_forwarding(n)
            || n.starts_with("x-countersign-")
            || name == header::HOST
            // The length is the body's as sent, which signing may change.
            || name == header::CONTENT_LENGTH
            || (strip_authorization && name == header::AUTHORIZATION)
            || owned.contains(name);
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Removes hop-by-hop headers from an upstream answer (hyper frames it anew).
pub fn strip_response(h: &mut HeaderMap) {
    // Most answers carry none: one pass over the names, removals only if needed.
    let any = h
        .keys()
        .any(|n| HOP_BY_HOP.contains(n) || is_hop_by_hop_extra(n.as_str()));
    if !any {
        return;
    }
    for name in connection_listed(h) {
        h.remove(name);
    }
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

pub fn content_length(h: &HeaderMap) -> Option<u64> {
    digits(h.get(header::CONTENT_LENGTH)?.as_bytes().trim_ascii())
}

/// Comma-separated tokens of a header value, trimmed.
pub fn tokens(v: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(|t| t.trim_ascii())
}

/// The headers of a head parsed by httparse, each value sharing `head`'s
/// bytes instead of being copied: `spans` gives each name and where its
/// value lies in `head`. Err names a header whose value is not valid.
pub fn shared_map(
    head: &bytes::Bytes,
    spans: Vec<(HeaderName, usize, usize)>,
) -> Result<HeaderMap, HeaderName> {
    let mut map = HeaderMap::with_capacity(spans.len());
    for (name, start, end) in spans {
        match http::HeaderValue::from_maybe_shared(head.slice(start..end)) {
            Ok(value) => map.append(name, value),
            Err(_) => return Err(name),
        };
    }
    Ok(map)
}

/// Writes `n` in decimal without a temporary string.
pub fn decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A length as RFC 9110 §8.6 writes it: digits only. (`str::parse` would
/// take "+2", which another parser on the path may read differently.)
pub fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// countersign is not an open proxy: HTTP/1 requests must be origin-form
/// (`POST /route/path`), never absolute-form (`GET http://elsewhere/`) or
/// CONNECT. (HTTP/2 always carries `:authority`; its path is what routes.)
pub fn check_form(
    method: &http::Method,
    uri: &http::Uri,
    version: http::Version,
) -> Result<(), ProxyError> {
    if method == http::Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed(
            "CONNECT is refused: countersign is not a tunnelling proxy".into(),
        ));
    }
    if version < http::Version::HTTP_2 && uri.authority().is_some() {
        return Err(ProxyError::BadRequest(
            "absolute-form request refused: countersign is not an open proxy; send POST /ROUTE/PATH".into(),
        ));
    }
    Ok(())
}

/// The one form of the path after the route prefix that countersign both
/// classifies and forwards, so that an upstream which percent-decodes paths
/// before routing (nginx, Spring, Express) routes exactly what a kind
/// recognised. Percent-encoded unreserved characters (RFC 3986 §2.3) are
/// decoded and every other escape is written with upper-case hex (§6.2.2);
/// what cannot be made canonical without changing its meaning is refused:
/// an encoded `/` or `\`, a raw `\`, dot segments (plain or encoded), `;`
/// path parameters (`..;` walks up on Tomcat), and empty segments (`//`),
/// except the one after the scheme of an embedded URL (`/https://site/…`)
/// when the kind defines such paths (`embedded_url`).
pub fn canonical_path(rest: &str, embedded_url: bool) -> Result<Cow<'_, str>, ProxyError> {
    let bytes = rest.as_bytes();
    if bytes.iter().any(|b| matches!(b, b';' | b'\\')) {
        return Err(refused(if rest.contains(';') {
            "path parameters (';') are refused"
        } else {
            "a '\\' is refused"
        }));
    }
    // Nearly every path has no escape: it is checked in place, not copied;
    // and without "/." (a dot segment starts so) or "//" it has no segment
    // to look at either.
    if !bytes.contains(&b'%') {
        if memchr::memmem::find(bytes, b"/.").is_some()
            || memchr::memmem::find(bytes, b"//").is_some()
        {
            segments_ok(rest, embedded_url)?;
        }
        return Ok(Cow::Borrowed(rest));
    }
    let mut out = String::with_capacity(rest.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err(refused("a '%' must be followed by two hex digits"));
        };
        match (hi * 16 + lo) as u8 {
            b'/' => return Err(refused("an encoded '/' (%2F) is refused")),
            b'\\' => return Err(refused("an encoded '\\' (%5C) is refused")),
            c if is_unreserved(c) => out.push(c as char),
            c => {
                out.push('%');
                out.push(HEX_UPPER[usize::from(c >> 4)] as char);
                out.push(HEX_UPPER[usize::from(c & 15)] as char);
            }
        }
        i += 3;
    }
    segments_ok(&out, embedded_url)?;
    Ok(Cow::Owned(out))
}

/// No dot segment, and no empty one but a trailing '/' (and the one after
/// an embedded URL's scheme, where allowed).
fn segments_ok(path: &str, embedded_url: bool) -> Result<(), ProxyError> {
    // The leading '/' opens the first segment.
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut segments = body.split('/').enumerate().peekable();
    let mut first = "";
    while let Some((n, segment)) = segments.next() {
        if n == 0 {
            first = segment;
        }
        if segment == "." || segment == ".." {
            return Err(ProxyError::BadRequest(
                "the path must not contain \".\" or \"..\" segments".into(),
            ));
        }
        let last = segments.peek().is_none();
        let after_scheme = embedded_url
            && n == 1
            && (first.eq_ignore_ascii_case("https:") || first.eq_ignore_ascii_case("http:"));
        if segment.is_empty() && !last && !after_scheme {
            return Err(refused("empty path segments ('//') are refused"));
        }
    }
    Ok(())
}

fn refused(what: &str) -> ProxyError {
    ProxyError::BadRequest(format!(
        "{what}: countersign forwards only paths that every upstream reads the same way"
    ))
}

/// RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `path` (canonical, after the route prefix, no query) names the call
/// `expected`, the way a lenient upstream router would match it: ASCII case
/// ignored, and one trailing '/' too. Kinds recognise their special calls
/// with it, so that no spelling an upstream treats as the call slips past.
pub fn is_call(path: &str, expected: &str) -> bool {
    let path = match path.len().checked_sub(expected.len()) {
        Some(0) => path,
        Some(1) => match path.strip_suffix('/') {
            Some(p) => p,
            None => return false,
        },
        _ => return false,
    };
    path.eq_ignore_ascii_case(expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hygiene() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "gateway:8080"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("x-forwarded-for", "10.0.0.7"),
            ("forwarded", "for=10.0.0.7"),
            ("via", "1.1 internal"),
            ("cookie", "JSESSIONID=caller"),
            ("authorization", "Bearer t"),
            ("x-countersign-token", "t"),
            ("content-length", "3"),
            ("content-type", "application/json"),
            ("x-custom", "kept"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        let out = outgoing(&h, &[header::COOKIE], true);
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-custom"]);
        // Without [clients], Authorization is the caller's business and passes.
        let out = outgoing(&h, &[header::COOKIE], false);
        assert!(out.contains_key(header::AUTHORIZATION));
    }

    #[test]
    fn decimal_writes_every_magnitude() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = b"x".to_vec();
            decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn lengths_are_digits_only() {
        assert_eq!(digits(b"0"), Some(0));
        assert_eq!(digits(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+2",
            b"-2",
            b" 2",
            b"2 ",
            b"0x10",
            b"1e3",
            b"18446744073709551616",
        ] {
            assert_eq!(digits(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn answers_lose_hop_by_hop_headers_and_keep_the_rest() {
        let answer = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            h
        };
        let mut h = answer(&[
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("set-cookie", "a=1"),
        ]);
        strip_response(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "set-cookie"]);
        // A listed name without Connection is an ordinary header; only
        // proxy-connection alone still goes.
        let mut h = answer(&[("x-hop", "1"), ("proxy-connection", "keep-alive")]);
        strip_response(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-hop"]);
        let mut plain = answer(&[("content-type", "text/plain"), ("x-request-id", "7")]);
        strip_response(&mut plain);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn one_canonical_path() {
        let ok = |p: &str| canonical_path(p, false).map(|c| c.into_owned()).ok();
        assert_eq!(ok("/v1/item/get").as_deref(), Some("/v1/item/get"));
        assert_eq!(ok("/v1/auth/logi%6E").as_deref(), Some("/v1/auth/login"));
        assert_eq!(
            ok("/x/rotate%5Faccess%5fkey").as_deref(),
            Some("/x/rotate_access_key")
        );
        assert_eq!(ok("/a%2e%2Eb/%7e").as_deref(), Some("/a..b/~"));
        // Other escapes stay escaped, in upper-case hex.
        assert_eq!(ok("/k%20%c3%a9%25").as_deref(), Some("/k%20%C3%A9%25"));
        // A trailing '/' and the root stay as they are.
        assert_eq!(ok("/v1/item/").as_deref(), Some("/v1/item/"));
        assert_eq!(ok("/").as_deref(), Some("/"));
        assert_eq!(ok("/v1/..x/").as_deref(), Some("/v1/..x/"));
        for bad in [
            "/v1/../admin",
            "/v1/%2E%2e/admin",
            "/v1/./x",
            "/v1/%2e",
            "/v1%2fadmin",
            "/v1%2Fadmin",
            "/v1/%5c/x",
            "/v1\\x",
            "/v1/..;/admin",
            "/v1/login;jsessionid=1",
            "/v1//auth/login",
            "//v1",
            "/v1/%zz",
            "/v1/%4",
            "/https://site/x",
        ] {
            assert_eq!(ok(bad), None, "{bad} must be refused");
        }
        // The embedded URL of a kind that defines one keeps its '//', only there.
        let embedded = |p: &str| canonical_path(p, true).map(|c| c.into_owned()).ok();
        assert_eq!(
            embedded("/https://www.example.com/a").as_deref(),
            Some("https://www.example.com/a")
                .map(|s| format!("/{s}"))
                .as_deref()
        );
        assert_eq!(embedded("/https://site//a"), None);
        assert_eq!(embedded("/id//customers"), None);
    }

    #[test]
    fn calls_match_as_a_lenient_router_would() {
        assert!(is_call("/v1/auth/login", "/v1/auth/login"));
        assert!(is_call("/v1/auth/login/", "/v1/auth/login"));
        assert!(is_call("/V1/Auth/LOGIN", "/v1/auth/login"));
        assert!(!is_call("/v1/auth", "/v1/auth/login"));
        assert!(!is_call("/v1/auth/login2", "/v1/auth/login"));
        assert!(!is_call("/v1/auth/logi", "/v1/auth/login"));
    }
}
