//! TTS request and answer bodies, as pure functions: the fields countersign
//! fills, the JSON checksum (CPython's `json.dumps(sort_keys=True)` via
//! [`crate::canonical::pyjson`]), and the keys found in rotation answers.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::HeaderMap;

use crate::canonical::pyjson::{self, Doc, Edit, Shape};
use crate::error::ProxyError;

/// What countersign puts into a body.
pub struct Fill<'a> {
    pub identifier: &'a str,
    pub client_ver: &'a str,
    pub ip_address: &'a str,
    pub mac_address: &'a str,
    /// Always countersign's when configured: callers hold no secrets.
    pub secret: Option<&'a str>,
    /// `email_id` when the caller left it out.
    pub email: Option<&'a str>,
    /// Always countersign's (login, terminate_session).
    pub password: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Form,
    /// Neither: forwarded as it is.
    Other,
}

/// The body's format from its Content-Type; a POST without one is JSON when
/// it looks like a JSON object (or is empty), a form otherwise.
pub fn format_of(headers: &HeaderMap, body: &[u8]) -> Format {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match ct.as_deref() {
        Some("application/x-www-form-urlencoded") => Format::Form,
        Some(t) if t == "application/json" || t.ends_with("+json") => Format::Json,
        Some(_) => Format::Other,
        None => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            None | Some(b'{') => Format::Json,
            Some(_) => Format::Form,
        },
    }
}

/// Missing, null or "": what countersign fills.
fn is_empty(v: Option<Shape<'_>>) -> bool {
    matches!(v, None | Some(Shape::Null) | Some(Shape::Str("\"\"")))
}

/// The JSON body to send: the caller's object with the missing fields filled,
/// countersign's `secret`, and `checksum` over the rest. An empty body is an
/// empty object.
///
/// The body is parsed once into spans and written once: the canonical text
/// (CPython's `json.dumps(sort_keys=True)`) goes straight into the buffer
/// that is sent, is hashed there, and the checksum member is appended in
/// place of its closing brace. The sent body parses to exactly the object
/// plus its checksum.
pub fn fill_json(body: &[u8], f: &Fill<'_>) -> Result<Bytes, ProxyError> {
    let input: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let doc = Doc::parse(input)
        .map_err(|e| ProxyError::BadRequestBody(format!("the JSON body does not parse: {e}")))?;
    if !doc.root_is_object() {
        return Err(ProxyError::BadRequestBody(
            "the JSON body must be an object ({...})".into(),
        ));
    }
    // The fields filled when missing, then the ones countersign owns: at
    // most eight edits, no list to allocate.
    let fills = [
        ("identifire", Some(f.identifier), false),
        ("client_ver", Some(f.client_ver), false),
        ("ip_address", Some(f.ip_address), false),
        ("mac_address", Some(f.mac_address), false),
        ("email_id", f.email, false),
        ("secret", f.secret, true),
        ("password", f.password, true),
    ];
    let mut edits = [Edit::Remove("checksum"); 8];
    let mut n = 1;
    for (key, value, always) in fills {
        if let Some(value) = value.filter(|_| always || is_empty(doc.root_get(key))) {
            edits[n] = Edit::Set(key, value);
            n += 1;
        }
    }
    // Room for what the canonical form adds (", " and ": ", escapes) and the checksum.
    let mut sent = Vec::with_capacity(input.len() + input.len() / 4 + 192);
    doc.write_sorted_with(&edits[..n], &mut sent);
    let sum = pyjson::sha256_hex(&sent);
    sent.pop(); // the closing brace
    if sent.len() > 1 {
        sent.extend_from_slice(b", ");
    }
    sent.extend_from_slice(b"\"checksum\": \"");
    sent.extend_from_slice(&sum);
    sent.extend_from_slice(b"\"}");
    Ok(Bytes::from(sent))
}

/// The checksum's input for a body [`fill_json`] wrote: its canonical text
/// without the `checksum` member (for `explain`).
pub fn checksum_input(sent: &[u8]) -> Option<String> {
    let doc = Doc::parse(sent).ok()?;
    let mut out = Vec::with_capacity(sent.len());
    doc.write_sorted_with(&[Edit::Remove("checksum")], &mut out);
    String::from_utf8(out).ok()
}

/// The form body to send: `identifire` and `client_ver` filled when missing
/// or empty, countersign's `secret` (and `password` where it logs in).
pub fn fill_form(body: &[u8], f: &Fill<'_>) -> Bytes {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut fill = |key: &str, value: &str, always: bool| {
        match pairs.iter_mut().find(|(k, _)| k == key) {
            Some(p) if always || p.1.is_empty() => p.1 = value.to_string(),
            Some(_) => {}
            None => pairs.push((key.to_string(), value.to_string())),
        }
        // A repeated field would let the caller's copy win upstream.
        if always {
            let mut seen = false;
            pairs.retain(|(k, _)| k != key || !std::mem::replace(&mut seen, true));
        }
    };
    fill("identifire", f.identifier, false);
    fill("client_ver", f.client_ver, false);
    if let Some(email) = f.email {
        fill("email_id", email, false);
    }
    if let Some(secret) = f.secret {
        fill("secret", secret, true);
    }
    if let Some(password) = f.password {
        fill("password", password, true);
    }
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        ser.append_pair(k, v);
    }
    Bytes::from(ser.finish())
}

/// A field of a JSON or form body, as text.
pub fn field(body: &[u8], format: Format, name: &str) -> Option<String> {
    match format {
        Format::Json => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            v.get(name)?.as_str().map(String::from)
        }
        Format::Form => form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned()),
        Format::Other => None,
    }
    .filter(|s| !s.is_empty())
}

/// The new key in a rotation answer: a JSON object's first non-empty string
/// under one of `fields`, a JSON string, or a body that is one bare token.
pub fn rotated_key(body: &[u8], fields: &[String]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return match v {
            serde_json::Value::Object(m) => fields
                .iter()
                .find_map(|f| m.get(f).and_then(|v| v.as_str()).filter(|s| !s.is_empty()))
                .map(String::from),
            serde_json::Value::String(s) => bare_token(&s),
            _ => None,
        };
    }
    bare_token(std::str::from_utf8(body).ok()?)
}

fn bare_token(text: &str) -> Option<String> {
    let t = text.trim();
    let ok = (8..=1024).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| t.to_string())
}

/// What the caller sees in place of a key countersign holds.
pub const HELD: &str = "[held by countersign]";

/// The answer with every occurrence of `key` replaced by [`HELD`] (inside
/// JSON strings too, whatever their escaping).
pub fn redact_key(body: &[u8], key: &str) -> Bytes {
    fn walk(v: &mut serde_json::Value, key: &str) {
        match v {
            serde_json::Value::String(s) if s.contains(key) => *s = s.replace(key, HELD),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|v| walk(v, key)),
            serde_json::Value::Object(m) => m.values_mut().for_each(|v| walk(v, key)),
            _ => {}
        }
    }
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) {
        walk(&mut v, key);
        return Bytes::from(v.to_string());
    }
    let text = String::from_utf8_lossy(body);
    Bytes::from(text.replace(key, HELD))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill() -> Fill<'static> {
        Fill {
            identifier: "www.example.com",
            client_ver: "V4.21.04",
            ip_address: "192.168.1.100",
            mac_address: "-",
            secret: Some("S3CR3T"),
            email: None,
            password: None,
        }
    }

    #[test]
    fn json_is_filled_and_checksummed_as_cpython_does() {
        // The checksum was computed with CPython 3:
        // python3 -c 'import json,hashlib; d={"action":"liveLogs","limit":50,"identifire":"www.example.com","client_ver":"V4.21.04","ip_address":"192.168.1.100","mac_address":"-","secret":"S3CR3T"}; print(hashlib.sha256(json.dumps(d,sort_keys=True).encode()).hexdigest())'
        let body = br#"{"action":"liveLogs","limit":50,"checksum":"caller's","secret":"nope","ip_address":""}"#;
        let sent = fill_json(body, &fill()).unwrap();
        // The canonical text, then the checksum member in place of its closing brace.
        assert_eq!(
            std::str::from_utf8(&sent).unwrap(),
            r#"{"action": "liveLogs", "client_ver": "V4.21.04", "identifire": "www.example.com", "ip_address": "192.168.1.100", "limit": 50, "mac_address": "-", "secret": "S3CR3T", "checksum": "952aa2c30549b4be3d71f84b199b6c505b7a156a016aa5bee384ac09549fb2c7"}"#
        );
        assert_eq!(
            checksum_input(&sent).unwrap(),
            r#"{"action": "liveLogs", "client_ver": "V4.21.04", "identifire": "www.example.com", "ip_address": "192.168.1.100", "limit": 50, "mac_address": "-", "secret": "S3CR3T"}"#
        );
    }

    #[test]
    fn an_empty_body_is_an_empty_object_plus_fields() {
        let bare = Fill {
            identifier: "i",
            client_ver: "v",
            ip_address: "a",
            mac_address: "-",
            secret: None,
            email: None,
            password: None,
        };
        let sent = fill_json(b"  ", &bare).unwrap();
        assert_eq!(
            checksum_input(&sent).unwrap(),
            r#"{"client_ver": "v", "identifire": "i", "ip_address": "a", "mac_address": "-"}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 5);
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let e = fill_json(b"{\n  \"a\": 1,\n  \"b\" 2\n}", &fill()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("column 7"), "{text}");
        assert!(fill_json(b"[1]", &fill()).is_err());
        assert!(fill_json(b"{\"a\": NaN}", &fill()).is_err());
    }

    #[test]
    fn form_fills_missing_and_owns_the_secret() {
        let sent = fill_form(
            b"action=purge&client_ver=&secret=caller&secret=again",
            &fill(),
        );
        assert_eq!(
            std::str::from_utf8(&sent).unwrap(),
            "action=purge&client_ver=V4.21.04&secret=S3CR3T&identifire=www.example.com"
        );
    }

    #[test]
    fn format_from_content_type_or_shape() {
        let mut h = HeaderMap::new();
        assert_eq!(format_of(&h, b" {\"a\":1}"), Format::Json);
        assert_eq!(format_of(&h, b""), Format::Json);
        assert_eq!(format_of(&h, b"a=1"), Format::Form);
        h.insert(
            CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(format_of(&h, b"a=1"), Format::Json);
        h.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(format_of(&h, b"a=1"), Format::Other);
    }

    #[test]
    fn rotated_key_shapes() {
        let fields = vec!["access_key".to_string(), "new_access_key".to_string()];
        assert_eq!(
            rotated_key(
                br#"{"message":"ok","new_access_key":"AK-2-abcdef"}"#,
                &fields
            )
            .as_deref(),
            Some("AK-2-abcdef")
        );
        assert_eq!(
            rotated_key(b"AK-3-abcdef\n", &fields).as_deref(),
            Some("AK-3-abcdef")
        );
        assert_eq!(
            rotated_key(br#""AK-4-abcdef""#, &fields).as_deref(),
            Some("AK-4-abcdef")
        );
        assert_eq!(rotated_key(br#"{"message":"ok"}"#, &fields), None);
        assert_eq!(rotated_key(b"Access key rotated.", &fields), None);
    }

    #[test]
    fn redaction_reaches_escaped_json() {
        let out = redact_key(br#"{"access_key":"a\/b-123456","note":"x"}"#, "a/b-123456");
        assert!(!String::from_utf8_lossy(&out).contains("123456"));
        assert!(String::from_utf8_lossy(&out).contains(HELD));
        let out = redact_key(b"new key: K-123456789", "K-123456789");
        assert_eq!(&out[..], format!("new key: {HELD}").as_bytes());
    }
}
