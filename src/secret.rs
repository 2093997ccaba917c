//! One `Secret` type for every credential, so that none can be printed by accident.
//!
//! A secret in the config is a literal string, `{ env = "NAME" }` or
//! `{ file = "/run/secrets/x" }` (one trailing newline trimmed). [`SecretRef`]
//! is that reference as written, safe to show (`env:NAME`, `file:/path`,
//! `literal`); [`Secret`] is the resolved value: its `Debug` and `Display`
//! print `[redacted]`, and its memory is zeroed when dropped.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use zeroize::Zeroizing;

/// A resolved secret value. Cloning shares the one zeroized allocation.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::new(Zeroizing::new(value.into())))
    }

    /// The value itself: call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Equality of secret values (used to tell whether a reload changed a credential).
/// Not constant-time: never use it to check a caller's token.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

/// Where a secret comes from, as written in the config.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretRef {
    Literal(String),
    Env { env: String },
    File { file: PathBuf },
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Safe to print: names the source, never the value.
impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Literal(_) => f.write_str("literal"),
            SecretRef::Env { env } => write!(f, "env:{env}"),
            SecretRef::File { file } => write!(f, "file:{}", file.display()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    #[error("file {path} cannot be read: {reason}")]
    File { path: String, reason: String },
    #[error("the secret is empty")]
    Empty,
}

impl SecretRef {
    /// Reads the value. Errors name the variable or file, never a value.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Literal(s) => s.clone(),
            SecretRef::Env { env } => match std::env::var(env) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(SecretError::EnvMissing(env.clone()))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::EnvNotUnicode(env.clone()))
                }
            },
            SecretRef::File { file } => {
                let mut text = std::fs::read_to_string(file).map_err(|e| SecretError::File {
                    path: file.display().to_string(),
                    reason: io_reason(&e),
                })?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret::new(value))
    }
}

/// `std::io::Error`'s Display can be long and OS-specific; keep the common cases plain.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        let r = SecretRef::Literal("hunter2-very-secret".into());
        assert!(!format!("{r:?} {r}").contains("hunter2"));
    }

    #[test]
    fn file_secret_trims_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "abc\n\n").unwrap();
        let s = SecretRef::File { file: p.clone() }.resolve().unwrap();
        assert_eq!(s.expose(), "abc\n");
        std::fs::write(&p, "abc\r\n").unwrap();
        let s = SecretRef::File { file: p }.resolve().unwrap();
        assert_eq!(s.expose(), "abc");
    }

    #[test]
    fn missing_sources_name_the_source() {
        let e = SecretRef::Env {
            env: "COUNTERSIGN_TEST_SURELY_UNSET_VAR".into(),
        }
        .resolve()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable COUNTERSIGN_TEST_SURELY_UNSET_VAR is not set"
        );
        let e = SecretRef::File {
            file: "/nonexistent/countersign/x".into(),
        }
        .resolve()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "file /nonexistent/countersign/x cannot be read: not found"
        );
    }
}
