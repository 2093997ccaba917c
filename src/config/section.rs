//! Reading one config table key by key, so that every problem is reported at
//! once with its full key path (serde stops at the first error).

use std::collections::BTreeSet;
use std::time::Duration;

use figment::value::{Dict, Value};
use serde::de::DeserializeOwned;

use crate::secret::{Secret, SecretRef};

/// One problem in the config, shown as `path: message`. Neither ever holds
/// the text of a value: a value may be a secret, and problems are printed
/// by `check` and logged when a reload is rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    /// The line of a TOML syntax error, to find its key path in the text.
    pub(super) line: Option<usize>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
            line: None,
        }
    }

    /// A figment error, said without the text it quotes: toml's syntax
    /// errors print the offending line (`api_key = "…`), serde's type
    /// errors the offending value.
    pub(super) fn from_figment(e: &figment::Error) -> Self {
        if let figment::error::Kind::Message(m) = &e.kind {
            if let Some((line, column, what)) = toml_syntax_error(m) {
                return Problem {
                    path: String::new(),
                    message: format!("TOML syntax error at line {line}, column {column}: {what}"),
                    line: Some(line),
                };
            }
        }
        Problem::new(e.path.join("."), describe(&e.kind))
    }

    /// Whether this is a syntax error whose key path is still to be found.
    pub(super) fn key_unknown(&self) -> bool {
        self.line.is_some() && self.path.is_empty()
    }

    /// Names the key path of a syntax error from the config's text: the
    /// table header above the line and the key before its `=`.
    pub(super) fn locate(&mut self, text: &str) {
        if let (Some(line), true) = (self.line, self.path.is_empty()) {
            if let Some(path) = key_path_at(text, line) {
                self.path = path;
            }
        }
    }
}

/// `(line, column, what)` of toml's syntax error text, whose middle lines
/// quote the source; `what` is its closing description, quotes removed.
fn toml_syntax_error(m: &str) -> Option<(usize, usize, String)> {
    let first = m.lines().next()?;
    let at = first.find("at line ")?;
    let (line, rest) = first[at + "at line ".len()..].split_once(", column ")?;
    let line: usize = line.trim().parse().ok()?;
    let column: usize = rest.trim().parse().ok()?;
    // The source excerpt is the lines holding '|'; the description follows.
    let mut lines: Vec<&str> = m.lines().skip(1).collect();
    if let Some(last_excerpt) = lines.iter().rposition(|l| l.contains('|')) {
        lines.drain(..=last_excerpt);
    }
    let what = lines
        .iter()
        .map(|l| unquote(l.trim()))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let what = if what.is_empty() {
        "invalid TOML".to_string()
    } else {
        what
    };
    Some((line, column, what))
}

/// `text` with every "…" and '…' part replaced by `…`: toml names grammar
/// tokens in backticks, and anything quoted could be a value.
fn unquote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<char> = None;
    for c in text.chars() {
        match open {
            Some(q) if c == q => {
                open = None;
                out.push('…');
                out.push(c);
            }
            Some(_) => {}
            None if c == '"' || c == '\'' => {
                open = Some(c);
                out.push(c);
            }
            None => out.push(c),
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

/// The dotted key path the (1-based) `line` of TOML `text` assigns, when it
/// is a plain `key = …` line: `[routes.x]` above and `api_key` on it give
/// `routes.x.api_key`. Only the key is read from the line, never its value.
fn key_path_at(text: &str, line: usize) -> Option<String> {
    let is_key = |k: &str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    let mut table = String::new();
    for (n, l) in text.lines().enumerate() {
        let l = l.trim();
        if n + 1 == line {
            let key = l.split_once('=').map(|(k, _)| k.trim())?;
            if !is_key(key) {
                return None;
            }
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
        if let Some(header) = l.strip_prefix('[') {
            let name = header.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or("").trim();
            table = if is_key(name) {
                name.to_string()
            } else {
                String::new()
            };
        }
    }
    None
}

/// What a figment error kind says, without the value: a type mismatch names
/// the type found, never its content.
pub(super) fn describe(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::Message(m) => unquote(m.lines().next().unwrap_or("is not valid")),
        Kind::InvalidType(actual, expected) => {
            format!("must be {expected}, not {}", what_is(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("{} is not valid here: expected {expected}", what_is(actual))
        }
        Kind::InvalidLength(n, expected) => format!("has {n} items: expected {expected}"),
        Kind::UnknownVariant(_, expected) => format!("must be one of: {}", expected.join(", ")),
        Kind::UnknownField(..) => "unknown key".into(),
        Kind::MissingField(name) => format!("needs {name}"),
        Kind::DuplicateField(name) => format!("{name} is given twice"),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "is out of range".into(),
        Kind::Unsupported(actual) => format!("{} is not supported here", what_is(actual)),
        Kind::UnsupportedKey(actual, need) => {
            format!("keys must be {need}, not {}", what_is(actual))
        }
    }
}

/// The kind of a value, never the value.
fn what_is(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "nothing",
        Actual::Option => "an option",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        Actual::NewtypeStruct
        | Actual::Enum
        | Actual::UnitVariant
        | Actual::NewtypeVariant
        | Actual::TupleVariant
        | Actual::StructVariant => "an enum",
        Actual::Other(_) => "another type",
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
        self.problems.push(Problem::new(path, message));
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
                self.problem(key, describe(&e.kind));
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
                    "is not a duration (write it like \"5s\", \"250ms\", \"30d\")",
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
                self.problems.push(Problem::new(path, "unknown key"));
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
