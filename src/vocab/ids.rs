//! Identities for state keys and logs, and the wall clock.

use std::time::{Duration, SystemTime};

use crate::secret::Secret;

/// Short, stable fingerprint of a secret for identities and state keys: the
/// first 12 hex digits of SHA-256, which reveal nothing usable about the secret.
pub fn fingerprint(secret: &Secret) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.expose().as_bytes());
    hex::encode(&digest[..6])
}

/// How 0.1 spelled ids from the config in identities: every character
/// outside `[A-Za-z0-9]` as `_`, so `a.b` and `a_b` were one identity. Kept
/// only for `Kind::legacy_credential_id` (the migration of old state).
pub fn safe_id(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// An unambiguous identity from its parts: `prefix-` and 24 hex digits of
/// SHA-256 over the parts, each prefixed with its length, so that no two
/// different lists of parts (`["a-b", "c"]` and `["a", "b-c"]`) can give the
/// same identity, and none reveals a secret part. Used for credentials,
/// state file names and Redis keys.
pub fn identity(prefix: &str, parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    format!("{prefix}-{}", hex::encode(&digest[..12]))
}

/// The upstream's origin as an identity part: scheme, host (lowercased)
/// and port (the scheme's default when none is written), so that
/// `https://API.example` and `https://api.example:443` are one upstream.
pub fn origin_of(upstream: &http::Uri) -> String {
    let scheme = upstream
        .scheme_str()
        .unwrap_or("https")
        .to_ascii_lowercase();
    let host = upstream.host().unwrap_or("").to_ascii_lowercase();
    let default = if scheme == "http" { 80 } else { 443 };
    let port = upstream.port_u16().unwrap_or(default);
    format!("{scheme}://{host}:{port}")
}

/// The identity sessions, login spacing, rate limits and rotated keys are
/// kept under (in memory, in state file names and Redis keys): the kind's
/// credential (`Kind::credential_id`: who) at the route's upstream (origin
/// and base path: where). Two routes share them only when all match, so a
/// session is never sent to an upstream that did not issue it.
pub fn credential_at(credential: &str, upstream: &http::Uri, base_path: &str) -> String {
    identity(
        prefix_of(credential),
        &[credential, &origin_of(upstream), base_path],
    )
}

/// The identity a monthly quota is counted under: the kind's quota id
/// (`Kind::quota_id`) at the upstream's origin. The base path is left out:
/// an API counts an account's quota per host, and counting two base paths
/// together can only stop requests earlier, never let the quota be exceeded.
pub fn quota_at(quota: &str, upstream: &http::Uri) -> String {
    identity(prefix_of(quota), &[quota, &origin_of(upstream)])
}

/// The readable start of an identity (`tts` of `tts-3f…`), kept on the derived one.
fn prefix_of(id: &str) -> &str {
    id.split('-')
        .next()
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("credential")
}

/// Milliseconds since the Unix epoch, for timestamps put on the wire.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// The wall clock (UTC), where a decision depends on the calendar (the
/// quota's month): injectable, so a test can cross a month boundary.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    /// Seconds since the Unix epoch.
    fn unix_seconds(&self) -> i64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (tests: a month boundary, expiry).
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<SystemTime>);

impl ManualClock {
    pub fn at(t: SystemTime) -> Self {
        ManualClock(std::sync::Mutex::new(t))
    }

    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_unambiguous_and_hide_their_parts() {
        let a = identity("tts", &["a-b", "c"]);
        let b = identity("tts", &["a", "b-c"]);
        assert_ne!(a, b);
        assert_eq!(a, identity("tts", &["a-b", "c"]));
        assert!(a.starts_with("tts-") && a.len() == 4 + 24);
        assert_ne!(identity("x", &["", "a"]), identity("x", &["a", ""]));
        let secretish = identity("x", &["hunter2"]);
        assert!(!secretish.contains("hunter2"));
    }

    #[test]
    fn a_credential_at_another_upstream_is_another_identity() {
        let up = |u: &str| u.parse::<http::Uri>().unwrap();
        let a = credential_at("tts-1", &up("https://tts.example/"), "");
        assert!(a.starts_with("tts-") && a.len() == 4 + 24, "{a}");
        // One origin, however it is written.
        assert_eq!(
            a,
            credential_at("tts-1", &up("https://TTS.example:443/"), "")
        );
        for (cred, upstream, base) in [
            ("tts-2", "https://tts.example/", ""),
            ("tts-1", "http://tts.example/", ""),
            ("tts-1", "https://tts.example:8443/", ""),
            ("tts-1", "https://tts.example.evil/", ""),
            ("tts-1", "https://tts.example/", "/v2"),
        ] {
            assert_ne!(
                a,
                credential_at(cred, &up(upstream), base),
                "{upstream}{base}"
            );
        }
        let q = quota_at("xrtc-1", &up("https://x.example/"));
        assert_ne!(q, quota_at("xrtc-1", &up("https://y.example/")));
        assert_ne!(q, credential_at("xrtc-1", &up("https://x.example/"), ""));
        assert_eq!(prefix_of("weird id"), "credential");
    }
}
