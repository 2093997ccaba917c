//! JSON exactly as CPython writes it with `json.dumps(json.loads(body),
//! sort_keys=True)` and default arguments, and the TTS checksum over it
//! (`hashlib.sha256(...).hexdigest()`). Byte for byte: separators `", "` and
//! `": "`, ASCII-only output with surrogate pairs for astral characters,
//! Python's float repr, integers exact at any size, the last duplicate key
//! winning, literals too large for a double printing as `Infinity`.
//!
//! Parsing accepts RFC 8259 JSON and refuses what CPython would accept but
//! the README forbids: `NaN`/`Infinity` literals and lone surrogate escapes.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer as Python's int holds it: the digits, '-' if negative, no "-0".
    Int(String),
    /// A number with a fraction or exponent: a double, ±inf when it overflowed.
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    /// Members in first-appearance order; a repeated key kept its first place and its last value.
    Object(Vec<(String, Value)>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid JSON at line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Deeper nesting is refused rather than risking the stack.
const MAX_DEPTH: usize = 512;

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

pub fn parse(input: &[u8]) -> Result<Value, ParseError> {
    let text = match std::str::from_utf8(input) {
        Ok(t) => t,
        Err(e) => {
            let valid = std::str::from_utf8(&input[..e.valid_up_to()]).unwrap_or("");
            return Err(error_at(valid, valid.len(), "the body is not valid UTF-8"));
        }
    };
    let mut p = Parser {
        text,
        b: input,
        i: 0,
        depth: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("extra data after the JSON value"));
    }
    Ok(v)
}

fn error_at(text: &str, at: usize, message: &str) -> ParseError {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ParseError {
        line,
        column,
        message: message.to_string(),
    }
}

impl Parser<'_> {
    fn err(&self, message: &str) -> ParseError {
        // Only ever called at a char boundary or the end.
        let mut at = self.i.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        error_at(self.text, at, message)
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, ParseError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expected a JSON value"))
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.b.get(self.i) {
            None => Err(self.err("expected a JSON value, found the end")),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Value::Str),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'N') | Some(b'I') => Err(self.err("NaN and Infinity are not JSON")),
            Some(b'-') if self.b.get(self.i + 1) == Some(&b'I') => {
                Err(self.err("NaN and Infinity are not JSON"))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a JSON value")),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("nesting deeper than 512 levels"));
        }
        self.i += 1;
        self.ws();
        Ok(())
    }

    fn object(&mut self) -> Result<Value, ParseError> {
        self.enter()?;
        let mut members: Vec<(String, Value)> = Vec::new();
        // Finding a repeated key by scanning is quadratic: past a few members
        // an index keeps a body with 100,000 keys from costing 10^10 steps.
        let mut index: Option<std::collections::HashMap<String, usize>> = None;
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Object(members));
        }
        loop {
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.err("expected a property name in double quotes"));
            }
            let key = self.string()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("expected ':' after a property name"));
            }
            self.i += 1;
            self.ws();
            let v = self.value()?;
            if index.is_none() && members.len() >= 16 {
                index = Some(
                    members
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i))
                        .collect(),
                );
            }
            let found = match &index {
                Some(ix) => ix.get(&key).copied(),
                None => members.iter().position(|(k, _)| *k == key),
            };
            match found {
                Some(i) => members[i].1 = v,
                None => {
                    if let Some(ix) = &mut index {
                        ix.insert(key.clone(), members.len());
                    }
                    members.push((key, v));
                }
            }
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.err("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self) -> Result<Value, ParseError> {
        self.enter()?;
        let mut items = Vec::new();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("a \\u escape needs 4 hex digits"))?;
        let text =
            std::str::from_utf8(digits).map_err(|_| self.err("a \\u escape needs 4 hex digits"))?;
        let v = u32::from_str_radix(text, 16)
            .map_err(|_| self.err("a \\u escape needs 4 hex digits"))?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(self.err("a \\u escape needs 4 hex digits"));
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.i += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.text[start..self.i]);
            match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let esc = self.b.get(self.i).copied();
                    self.i += 1;
                    match esc {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(self.err("a lone surrogate escape is not allowed"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("a lone surrogate escape is not allowed"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err("a lone surrogate escape is not allowed"));
                            } else {
                                hi
                            };
                            out.push(
                                char::from_u32(c).ok_or_else(|| self.err("invalid \\u escape"))?,
                            );
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err("invalid escape in a string"));
                        }
                    }
                }
                Some(_) => return Err(self.err("a control character must be escaped in a string")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.b.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i - s
        };
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.err("a number needs digits")),
        }
        let mut float = false;
        if self.b.get(self.i) == Some(&b'.')
            && self.b.get(self.i + 1).is_some_and(u8::is_ascii_digit)
        {
            self.i += 1;
            digits(self);
            float = true;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                self.i = save; // as CPython: "1e" is the number 1 followed by junk
            } else {
                float = true;
            }
        }
        let text = &self.text[start..self.i];
        if float {
            // Rust's parse is correctly rounded like CPython's float(); overflow gives ±inf.
            text.parse::<f64>()
                .map(Value::Float)
                .map_err(|_| self.err("invalid number"))
        } else {
            let normal = if text == "-0" { "0" } else { text };
            Ok(Value::Int(normal.to_string()))
        }
    }
}

/// `json.dumps(value, sort_keys=True)` with CPython's defaults.
pub fn dumps_sorted(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Lowercase hex SHA-256 of [`dumps_sorted`].
pub fn checksum(value: &Value) -> String {
    checksum_of(&dumps_sorted(value))
}

/// Lowercase hex SHA-256 of an already canonical text.
pub fn checksum_of(canonical: &str) -> String {
    super::hex(&Sha256::digest(canonical.as_bytes()))
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(digits) => out.push_str(digits),
        Value::Float(f) => push_float(out, *f),
        Value::Str(s) => push_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<&(String, Value)> = members.iter().collect();
            // str ordering is by UTF-8 bytes, which is code point order, as Python's.
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (n, (k, v)) in sorted.into_iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                push_str(out, k);
                out.push_str(": ");
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

/// CPython's `float.__repr__` (shortest round-trip digits), and json's
/// `Infinity` / `-Infinity` / `NaN` spellings.
pub fn push_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip length, but when two
    // strings of that length round-trip and the double lies exactly between
    // them, it may pick either; CPython (Gay's dtoa) takes the even one.
    // Rust's fixed-precision formatting is exact with ties to even, so take
    // the length from the one and the digits from the other.
    let shortest = format!("{:e}", f.abs());
    let len = shortest
        .split('e')
        .next()
        .map_or(1, |m| m.chars().filter(char::is_ascii_digit).count());
    let exact = format!("{:.*e}", len.saturating_sub(1), f.abs());
    let sci = if exact.parse::<f64>() == Ok(f.abs()) {
        exact
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if f < 0.0 {
        out.push('-');
    }
    // CPython's repr: fixed notation when -4 < decpt <= 16 (decpt = exp + 1).
    let decpt = exp + 1;
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if decpt as usize >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', decpt as usize - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
    }
}

/// A string as CPython's `py_encode_basestring_ascii` writes it.
fn push_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let v = c as u32 - 0x10000;
                let _ = write!(
                    out,
                    "\\u{:04x}\\u{:04x}",
                    0xD800 + (v >> 10),
                    0xDC00 + (v & 0x3FF)
                );
            }
        }
    }
    out.push('"');
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Replaces the member in place, or appends it. No effect on a non-object.
    pub fn set(&mut self, key: &str, v: Value) {
        if let Value::Object(m) = self {
            match m.iter_mut().find(|(k, _)| k == key) {
                Some(member) => member.1 = v,
                None => m.push((key.to_string(), v)),
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        match self {
            Value::Object(m) => {
                let i = m.iter().position(|(k, _)| k == key)?;
                Some(m.remove(i).1)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "pyjson_tests.rs"]
mod tests;
