//! One `Secret` type for every credential, so that none can be printed by accident.
//!
//! A secret in the config is a literal string, `{ env = "NAME" }` or
//! `{ file = "/run/secrets/x" }` (one trailing newline trimmed). [`SecretRef`]
//! is that reference as written, safe to show (`env:NAME`, `file:/path`,
//! `literal`); [`Secret`] is the resolved value: its `Debug` and `Display`
//! print `[redacted]`, and its memory is zeroed when dropped.
//!
//! Literal secrets in the config file pass through the TOML parser, whose
//! copies countersign cannot zero: prefer `{ file = … }`, whose buffers are.

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
                // One buffer, moved into the Secret; zeroed if it is refused.
                let mut bytes = zeroize::Zeroizing::new(std::fs::read(file).map_err(|e| {
                    SecretError::File {
                        path: file.display().to_string(),
                        reason: io_reason(&e),
                    }
                })?);
                let mut text = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
                    drop(Zeroizing::new(e.into_bytes()));
                    SecretError::File {
                        path: file.display().to_string(),
                        reason: "not valid UTF-8".into(),
                    }
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

/// Closes this process to other processes of its user and to core dumps
/// (`PR_SET_DUMPABLE` 0): no ptrace, no `/proc/<pid>/mem` or `environ`, no
/// core file holding every secret in memory. Linux only; logs a failure.
pub fn protect_process() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %e, "cannot make the process non-dumpable: its memory stays readable by its user");
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
