//! The TTS route whose signing step is measured, shared by
//! `benches/overhead.rs` (criterion) and `examples/tts_step_instructions.rs`
//! (callgrind), so both measure the same step.

use countersign::kinds::tts::{Settings, Tts};
use countersign::secret::Secret;

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
