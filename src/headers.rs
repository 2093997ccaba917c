//! Header and path hygiene between the caller and the upstream (DESIGN §3):
//! hop-by-hop headers dropped both ways, `Host` left to the upstream URL, no
//! `Forwarded`/`X-Forwarded-*`/`Via` leaking internal addresses, the client
//! token stripped, and every header the kind sets removed from the caller's
//! request first so a caller can never override a credential.

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

/// Refuses dot segments (plain or percent-encoded) in the path after the
/// route prefix: they could walk out of the upstream's base path.
pub fn check_path(rest: &str) -> Result<(), ProxyError> {
    // Nearly every path has neither: nothing to decode or compare.
    if !rest.contains(['.', '%']) {
        return Ok(());
    }
    for segment in rest.as_bytes().split(|b| *b == b'/') {
        if is_dot_segment(segment) {
            return Err(ProxyError::BadRequest(
                "the path must not contain \".\" or \"..\" segments".into(),
            ));
        }
        if segment
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'))
        {
            return Err(ProxyError::BadRequest(
                "the path must not contain an encoded '/' (%2F)".into(),
            ));
        }
    }
    Ok(())
}

/// "." or "..", each dot written plain or as %2E (either case).
fn is_dot_segment(segment: &[u8]) -> bool {
    let mut dots = 0;
    let mut rest = segment;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
    }
    dots == 1 || dots == 2
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
    fn dot_segments_refused() {
        assert!(check_path("/v1/item/get").is_ok());
        assert!(check_path("/v1/../admin").is_err());
        assert!(check_path("/v1/%2E%2e/admin").is_err());
        assert!(check_path("/v1/./x").is_err());
        assert!(check_path("/v1%2fadmin").is_err());
        assert!(check_path("/v1/..x/").is_ok());
    }
}
