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

/// Ids from the config are user text; keep state keys and logs to a safe alphabet.
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
}
