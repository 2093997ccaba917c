//! What the signing-step measurements share: the caller's headers and the
//! TTS route, used by `benches/overhead.rs` (criterion) and
//! `examples/tts_step_instructions.rs` (callgrind), so both measure the
//! same step.

use countersign::headers;
use countersign::kinds::tts::{Settings, Tts};
use countersign::secret::Secret;
use countersign::vocab::{Kind, Outgoing};
use http::{HeaderMap, HeaderValue, Method};

/// The headers a `curl` caller sends with a small JSON body, and a cookie
/// of its own (which a kind that holds the session replaces).
pub fn caller_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("content-type", "application/json"),
        ("content-length", "300"),
        ("x-request-id", "8b1c0c1e-4a44-4a4e-9d1f-5f2b0a7e9f10"),
        ("cookie", "JSESSIONID=caller"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

/// A route as the proxy bench configures it, a secret held, every
/// optional field filled from its settings.
pub fn tts() -> Tts {
    Tts::new(
        Settings {
            identifier: "www.example.com".into(),
            client_ver: "V4.21.04".into(),
            user_agent: "TTS-Utility-Client/V4.21.04".into(),
            access_key: Secret::new("tts-bench-access-key"),
            secret: Some(Secret::new("tts-bench-secret")),
            email: "bench@example.com".into(),
            password: Secret::new("pw"),
            module: None,
            ip_address: "192.0.2.10".into(),
            mac_address: "-".into(),
            spider_upstream: None,
            force_login: true,
            access_key_fields: vec!["access_key".into()],
            secret_key_fields: vec!["secret_key".into()],
        },
        &countersign::keys::Keyring::detached(),
        "tts-bench".into(),
    )
}

/// The TTS signing step as the proxy runs it for a liveLogs call: header
/// hygiene, plan, then fill, canonical JSON and checksum of `body`.
pub fn tts_step(tts: &Tts, caller: &HeaderMap, body: &bytes::Bytes, session: &Secret) -> Outgoing {
    let h = headers::outgoing(caller, tts.owned_headers(), false);
    tts.plan(&Method::POST, "/www.example.com", caller).unwrap();
    let mut out = Outgoing {
        method: Method::POST,
        path_and_query: "/www.example.com".into(),
        headers: h,
        body: Some(body.clone()),
    };
    tts.sign(&mut out, Some(session)).unwrap();
    out
}
