//! Reading one config table key by key, so that every problem is reported at
//! once with its full key path (serde stops at the first error).

use std::collections::BTreeSet;
use std::time::Duration;

use figment::value::{Dict, Value};
use serde::de::DeserializeOwned;

use crate::secret::{Secret, SecretRef};

/// One problem in the config, shown as `path: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A table being read. Each getter records a problem instead of failing, and
/// [`Section::finish`] reports the keys nobody asked for (unknown keys are errors).
pub struct Section<'p> {
    path: String,
    dict: Dict,
    seen: BTreeSet<String>,
    problems: &'p mut Vec<Problem>,
    /// `(key, source)` of every secret read, for `countersign check`'s table.
    pub secret_sources: Vec<(String, String)>,
}

impl<'p> Section<'p> {
    pub fn new(path: impl Into<String>, dict: Dict, problems: &'p mut Vec<Problem>) -> Self {
        Section {
            path: path.into(),
            dict,
            seen: BTreeSet::new(),
            problems,
            secret_sources: Vec::new(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let path = self.key_path(key);
        self.problems.push(Problem {
            path,
            message: message.into(),
        });
    }

    pub fn has(&self, key: &str) -> bool {
        self.dict.contains_key(key)
    }

    fn raw(&mut self, key: &str) -> Option<Value> {
        self.seen.insert(key.to_string());
        self.dict.get(key).cloned()
    }

    /// An optional key of any deserializable type.
    pub fn get<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.raw(key)?;
        match value.deserialize::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(key, e.kind.to_string());
                None
            }
        }
    }

    /// A key that must be present.
    pub fn required<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        if !self.has(key) {
            self.seen.insert(key.to_string());
            self.problem(key, "is required");
            return None;
        }
        self.get(key)
    }

    /// A duration written as a string: `"5s"`, `"250ms"`, `"30d"`.
    pub fn duration(&mut self, key: &str) -> Option<Duration> {
        let text: String = self.get(key)?;
        match humantime::parse_duration(&text) {
            Ok(d) => Some(d),
            Err(_) => {
                self.problem(
                    key,
                    format!(
                        "\"{text}\" is not a duration (write it like \"5s\", \"250ms\", \"30d\")"
                    ),
                );
                None
            }
        }
    }

    /// A size written as a string: `"1MiB"`, `"512KiB"`, `"1000"`.
    pub fn size(&mut self, key: &str) -> Option<u64> {
        let value = self.raw(key)?;
        let text = match value {
            Value::Num(_, n) => n.to_u128().map(|n| n.to_string()),
            Value::String(_, s) => Some(s),
            _ => None,
        };
        match text.as_deref().and_then(parse_size) {
            Some(n) => Some(n),
            None => {
                self.problem(
                    key,
                    "is not a size (write it like \"1MiB\", \"512KiB\" or a number of bytes)",
                );
                None
            }
        }
    }

    /// A secret: a literal string, `{ env = "NAME" }` or `{ file = "/path" }`, resolved now.
    pub fn secret(&mut self, key: &str, required: bool) -> Option<Secret> {
        if !self.has(key) {
            if required {
                self.seen.insert(key.to_string());
                self.problem(key, "is required");
            }
            return None;
        }
        let value = self.raw(key)?;
        let reference: SecretRef = match value.deserialize() {
            Ok(r) => r,
            Err(_) => {
                self.problem(
                    key,
                    "must be a string, { env = \"NAME\" } or { file = \"/path\" }",
                );
                return None;
            }
        };
        self.secret_sources
            .push((key.to_string(), reference.to_string()));
        match reference.resolve() {
            Ok(s) => Some(s),
            Err(e) => {
                self.problem(key, e.to_string());
                None
            }
        }
    }

    /// A nested table, read with its own section. Absent -> None.
    pub fn table(&mut self, key: &str) -> Option<Dict> {
        let value = self.raw(key)?;
        match value {
            Value::Dict(_, d) => Some(d),
            _ => {
                self.problem(key, "must be a table");
                None
            }
        }
    }

    /// A child section sharing this one's problem list.
    pub fn child<R>(&mut self, key: &str, dict: Dict, f: impl FnOnce(&mut Section<'_>) -> R) -> R {
        let path = self.key_path(key);
        let mut child = Section::new(path, dict, self.problems);
        let r = f(&mut child);
        let sources = std::mem::take(&mut child.secret_sources);
        child.finish();
        self.secret_sources
            .extend(sources.into_iter().map(|(k, s)| (format!("{key}.{k}"), s)));
        r
    }

    /// Every key present but never read is an error.
    pub fn finish(self) {
        for key in self.dict.keys() {
            if !self.seen.contains(key) {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                self.problems.push(Problem {
                    path,
                    message: "unknown key".into(),
                });
            }
        }
    }
}

/// `"1MiB"` -> 1048576. Binary (KiB, MiB, GiB) and decimal (kB, MB, GB) units, or bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("2kB"), Some(2000));
        assert_eq!(parse_size("1.5MiB"), None);
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("99999999999999GiB"), None);
    }
}
