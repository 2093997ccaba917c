//! JSON exactly as CPython writes it with `json.dumps(json.loads(body),
//! sort_keys=True)` and default arguments, and the TTS checksum over it
//! (`hashlib.sha256(...).hexdigest()`). Byte for byte: separators `", "` and
//! `": "`, ASCII-only output with surrogate pairs for astral characters,
//! Python's float repr, integers exact at any size, the last duplicate key
//! winning, literals too large for a double printing as `Infinity`.
//!
//! Parsing accepts RFC 8259 JSON and refuses what CPython would accept but
//! the README forbids: `NaN`/`Infinity` literals and lone surrogate escapes.
//!
//! [`Doc::parse`] is one pass over the body that writes the canonical text
//! as it reads: what CPython prints as it was written (integers, strings
//! of printable ASCII, most decimals) is copied, escapes, non-ASCII text
//! and floats are rewritten, and each object's members are recorded as
//! spans of the output. An object whose keys came in order is done; any
//! other is rewritten once from a copy, its members in key order, the last
//! of a repeated key kept. The root object is left open so that a caller
//! can look at its members and change some ([`Edit`]) as it is written.
//! [`Value`] is an owned tree for JSON built in code, printed by the same
//! writers.

#[path = "pyjson_text.rs"]
mod text;

use sha2::{Digest, Sha256};

use text::{decode, push_char, push_float_text, skip_printable, unescape, utf8_char, utf8_len};
pub use text::{push_float, push_str_bytes};

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
    /// Members in first-appearance order, each key once.
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

/// A parsed body in canonical form, its root object (if it is one) still
/// open: [`Doc::write_sorted_with`] writes the members in key order.
pub struct Doc<'a> {
    input: &'a [u8],
    /// The canonical text: the whole of it, or for a root object `{` and
    /// its members' `"key": value` texts in the order they came.
    text: Vec<u8>,
    /// The root object's members; `None` when the root is something else.
    root: Option<Vec<Rec>>,
    /// Keys written with escapes, decoded (sorting compares code points).
    keys: Vec<String>,
}

/// One member of an object, as written: `"key": value` is
/// `text[start..end]`, the value from `value_at`.
#[derive(Debug, Clone, Copy)]
struct Rec {
    /// The key's first eight bytes, big-endian, zero-padded: most keys
    /// differ there, so most comparisons are one integer comparison.
    prefix: u64,
    key: Key,
    start: u32,
    value_at: u32,
    end: u32,
}

/// Where a key's decoded bytes are.
#[derive(Debug, Clone, Copy)]
enum Key {
    /// `input[at..at + len]`: a key written without escapes.
    Input { at: u32, len: u32 },
    /// `Doc::keys[i]`.
    Decoded(u32),
}

/// What a member of the root object holds, for callers deciding whether to fill it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape<'d> {
    Null,
    /// A string as CPython prints it, quotes included (`"\"\""` is the
    /// empty string, and only it).
    Str(&'d str),
    /// A number, a boolean, an array or an object.
    Other,
}

/// A change to the root object's members, made as the text is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit<'e> {
    /// The member `key` becomes this string, whatever the document held.
    Set(&'e str, &'e str),
    /// The member `key` is left out.
    Remove(&'e str),
}

impl Edit<'_> {
    fn key(&self) -> &str {
        match self {
            Edit::Set(k, _) | Edit::Remove(k) => k,
        }
    }
}

/// Why a parse stopped; where is the parser's position. Two words, so a
/// `Result` of it comes back in registers from every value.
type Stop = &'static str;

impl<'a> Doc<'a> {
    pub fn parse(input: &'a [u8]) -> Result<Doc<'a>, ParseError> {
        // Spans of the text are u32: it is at most six times the input
        // (a DEL byte becomes `\u007f`).
        if input.len() > u32::MAX as usize / 6 {
            return Err(error_at(b"", 0, "the body is larger than 700 MB"));
        }
        let mut out = Vec::with_capacity(input.len() + input.len() / 4 + 16);
        let mut members = Vec::with_capacity(32);
        let mut keys = Vec::new();
        let mut scratch = Vec::new();
        let mut p = Parser {
            b: input,
            i: 0,
            depth: 0,
            out: &mut out,
            members: &mut members,
            scratch: &mut scratch,
            keys: &mut keys,
        };
        p.ws();
        let root_object = p.b.get(p.i) == Some(&b'{');
        let parsed = match root_object {
            true => p.object(true),
            false => p.value(),
        }
        .and_then(|()| {
            p.ws();
            match p.i == p.b.len() {
                true => Ok(()),
                false => Err("extra data after the JSON value"),
            }
        });
        if let Err(message) = parsed {
            return Err(p.error(message));
        }
        Ok(Doc {
            input,
            text: out,
            root: root_object.then_some(members),
            keys,
        })
    }

    pub fn root_is_object(&self) -> bool {
        self.root.is_some()
    }

    /// The last value of `key` in the root object (the one CPython keeps).
    pub fn root_get(&self, key: &str) -> Option<Shape<'_>> {
        let r = self
            .root
            .as_ref()?
            .iter()
            .rev()
            .find(|r| key_bytes(self.input, &self.keys, r.key) == key.as_bytes())?;
        let value = self
            .text
            .get(r.value_at as usize..r.end as usize)
            .unwrap_or_default();
        Some(match value.first() {
            Some(b'n') => Shape::Null,
            Some(b'"') => Shape::Str(std::str::from_utf8(value).unwrap_or_default()),
            _ => Shape::Other,
        })
    }

    /// Appends `json.dumps(doc, sort_keys=True)`.
    pub fn write_sorted(&self, out: &mut Vec<u8>) {
        self.write_sorted_with(&[], out);
    }

    /// Appends `json.dumps(doc, sort_keys=True)` of the document with
    /// `edits` made to its root object (no effect on another root).
    pub fn write_sorted_with(&self, edits: &[Edit<'_>], out: &mut Vec<u8>) {
        let Some(root) = &self.root else {
            out.extend_from_slice(&self.text);
            return;
        };
        let mut members: Vec<Member<'_>> = Vec::with_capacity(root.len() + edits.len());
        for (i, r) in root.iter().enumerate() {
            let key = key_bytes(self.input, &self.keys, r.key);
            members.push(Member {
                prefix: r.prefix,
                key,
                value: Slot::Rec(i),
            });
        }
        // Edits come after the document's members: they win over them.
        for e in edits {
            let key = e.key().as_bytes();
            members.push(Member {
                prefix: prefix(key),
                key,
                value: Slot::Edit(e),
            });
        }
        sort_stable(&mut members, Member::order);
        out.push(b'{');
        let mut first = true;
        for (at, m) in members.iter().enumerate() {
            if members.get(at + 1).is_some_and(|next| next.same_key(m)) {
                continue;
            }
            match m.value {
                Slot::Edit(Edit::Remove(_)) => continue,
                _ if first => first = false,
                _ => out.extend_from_slice(b", "),
            }
            match m.value {
                Slot::Rec(i) => {
                    let r = root[i];
                    out.extend_from_slice(
                        self.text
                            .get(r.start as usize..r.end as usize)
                            .unwrap_or_default(),
                    );
                }
                Slot::Edit(Edit::Set(k, v)) => {
                    push_str_bytes(out, k);
                    out.extend_from_slice(b": ");
                    push_str_bytes(out, v);
                }
                Slot::Edit(Edit::Remove(_)) => {}
            }
        }
        out.push(b'}');
    }
}

/// A root member or an edit, in the order they are written.
struct Member<'k> {
    prefix: u64,
    key: &'k [u8],
    value: Slot<'k>,
}

enum Slot<'k> {
    Rec(usize),
    Edit(&'k Edit<'k>),
}

impl Member<'_> {
    /// Byte order of the keys (UTF-8 byte order is code point order, as
    /// Python sorts str). Prefixes that differ decide it: a shorter key's
    /// padding is a zero byte, and a key that really has one there ties
    /// on the prefix and is compared in full.
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.key.cmp(other.key))
    }

    fn same_key(&self, other: &Self) -> bool {
        self.prefix == other.prefix && self.key == other.key
    }
}

fn key_bytes<'k>(input: &'k [u8], keys: &'k [String], key: Key) -> &'k [u8] {
    match key {
        Key::Input { at, len } => input
            .get(at as usize..at as usize + len as usize)
            .unwrap_or_default(),
        Key::Decoded(i) => keys.get(i as usize).map_or(&[][..], |k| k.as_bytes()),
    }
}

/// The first eight bytes of `key`, big-endian, zero-padded.
fn prefix(key: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    for (h, k) in head.iter_mut().zip(key) {
        *h = *k;
    }
    u64::from_be_bytes(head)
}

/// [`prefix`] of the plain key at `input[at..at + len]`, reading the eight
/// bytes at once when the input runs on that far (it nearly always does:
/// a key is followed by a colon, a value and a closing brace).
fn prefix_at(input: &[u8], at: usize, len: usize) -> u64 {
    match input.get(at..at + 8) {
        Some(eight) => {
            let mut head = [0u8; 8];
            head.copy_from_slice(eight);
            let all = u64::from_be_bytes(head);
            match len {
                0 => 0,
                1..=7 => all & !(u64::MAX >> (8 * len)),
                _ => all,
            }
        }
        None => prefix(input.get(at..at + len).unwrap_or_default()),
    }
}

/// Appends `input[from..to]` to `out`. Keys, numbers and short strings
/// are mostly 32 bytes or less: when the input runs on 32 bytes from
/// `from`, those are copied as one fixed-size block (inline moves, not a
/// call into memcpy for a few bytes) and the excess cut off again.
#[inline(always)]
fn put_span(out: &mut Vec<u8>, input: &[u8], from: usize, to: usize) {
    let len = to - from;
    match input.get(from..from + 32).map(<&[u8; 32]>::try_from) {
        Some(Ok(block)) if len <= 32 => {
            let keep = out.len() + len;
            out.extend_from_slice(block);
            out.truncate(keep);
        }
        _ => out.extend_from_slice(&input[from..to]),
    }
}

/// A stable sort: an insertion sort for the small objects most bodies are
/// made of (cheaper there than the general sort's setup), else the std one.
fn sort_stable<T>(v: &mut [T], order: impl Fn(&T, &T) -> std::cmp::Ordering) {
    if v.len() > 16 {
        v.sort_by(order);
        return;
    }
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && order(&v[j - 1], &v[j]) == std::cmp::Ordering::Greater {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// The error at byte `at` of `input`; lines and columns count the
/// characters before it (UTF-8 up to there, as the parser checks strings
/// before it moves past them).
fn error_at(input: &[u8], at: usize, message: &str) -> ParseError {
    let mut before = input.get(..at).unwrap_or(input);
    if let Err(e) = std::str::from_utf8(before) {
        before = &before[..e.valid_up_to()];
    }
    let before = std::str::from_utf8(before).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ParseError {
        line,
        column,
        message: message.to_string(),
    }
}

/// The one pass: checks the input and writes its canonical text to `out`.
struct Parser<'a, 's> {
    b: &'a [u8],
    i: usize,
    depth: usize,
    out: &'s mut Vec<u8>,
    /// The members of the objects being read, innermost last: each object
    /// takes its records from the top and gives them back when done, so a
    /// document costs one list however many objects it holds.
    members: &'s mut Vec<Rec>,
    /// A copy of an object's text while its members are rewritten in order.
    scratch: &'s mut Vec<u8>,
    keys: &'s mut Vec<String>,
}

impl Parser<'_, '_> {
    /// Where the parse stopped, with `message`: the position is `self.i`.
    fn error(&self, message: &str) -> ParseError {
        error_at(self.b, self.i, message)
    }

    #[inline]
    fn ws(&mut self) {
        // Most bodies are compact: one comparison when no space follows.
        if self.b.get(self.i).is_some_and(|&c| c > b' ') {
            return;
        }
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    #[inline]
    fn literal(&mut self, word: &'static [u8]) -> Result<(), Stop> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            self.out.extend_from_slice(word);
            Ok(())
        } else {
            Err("expected a JSON value")
        }
    }

    fn value(&mut self) -> Result<(), Stop> {
        match self.b.get(self.i) {
            Some(b'"') => self.string_value(),
            Some(b'{') => self.object(false),
            Some(b'[') => self.array(),
            Some(b'-') if self.b.get(self.i + 1) == Some(&b'I') => {
                Err("NaN and Infinity are not JSON")
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'N') | Some(b'I') => Err("NaN and Infinity are not JSON"),
            Some(_) => Err("expected a JSON value"),
            None => Err("expected a JSON value, found the end"),
        }
    }

    fn enter(&mut self) -> Result<(), Stop> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nesting deeper than 512 levels");
        }
        self.i += 1;
        self.ws();
        Ok(())
    }

    /// An object; `root` leaves its members unsorted and their records on
    /// the stack, for [`Doc::write_sorted_with`].
    fn object(&mut self, root: bool) -> Result<(), Stop> {
        self.enter()?;
        let open = self.out.len();
        self.out.push(b'{');
        let base = self.members.len();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            self.out.push(b'}');
            return Ok(());
        }
        // Whether every key so far came after the one before it.
        let mut in_order = true;
        loop {
            if self.b.get(self.i) != Some(&b'"') {
                return Err("expected a property name in double quotes");
            }
            if self.members.len() > base {
                self.out.extend_from_slice(b", ");
            }
            let start = self.out.len();
            let quote = self.i;
            let (key, prefix) = if !self.string()? {
                // Checked by `string`.
                let literal = std::str::from_utf8(&self.b[quote..self.i]).unwrap_or_default();
                let decoded = decode(literal);
                push_str_bytes(self.out, &decoded);
                let prefix = prefix(decoded.as_bytes());
                self.keys.push(decoded);
                (Key::Decoded(self.keys.len() as u32 - 1), prefix)
            } else {
                put_span(self.out, self.b, quote, self.i);
                let (at, len) = (quote + 1, self.i - quote - 2);
                let key = Key::Input {
                    at: at as u32,
                    len: len as u32,
                };
                (key, prefix_at(self.b, at, len))
            };
            if in_order && self.members.len() > base {
                if let Some(last) = self.members.last() {
                    in_order = last.prefix < prefix
                        || (last.prefix == prefix && self.key(last.key) < self.key(key));
                }
            }
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err("expected ':' after a property name");
            }
            self.i += 1;
            self.ws();
            self.out.extend_from_slice(b": ");
            let value_at = self.out.len();
            self.value()?;
            // Offsets fit: see `Doc::parse`.
            self.members.push(Rec {
                prefix,
                key,
                start: start as u32,
                value_at: value_at as u32,
                end: self.out.len() as u32,
            });
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    break;
                }
                _ => return Err("expected ',' or '}' in an object"),
            }
        }
        if root {
            return Ok(());
        }
        if !in_order && !self.swap_two(base) {
            self.rewrite_in_order(open, base);
        }
        self.out.push(b'}');
        self.members.truncate(base);
        Ok(())
    }

    fn key(&self, key: Key) -> &[u8] {
        key_bytes(self.b, self.keys, key)
    }

    /// The commonest out-of-order object, two members the wrong way round
    /// (`{"url": …, "ratio": …}`), put right in place: the first member
    /// to a stack buffer, the second moved over it, then the first after
    /// it; a repeated key keeps the second only. False, doing nothing, for
    /// any other object or a first member too long for the buffer.
    fn swap_two(&mut self, base: usize) -> bool {
        let [first, second] = match self.members.get(base..) {
            Some(&[first, second]) => [first, second],
            _ => return false,
        };
        let (a, a_end) = (first.start as usize, first.end as usize);
        let (b, b_end) = (second.start as usize, second.end as usize);
        let mut held = [0u8; 128];
        let Some(held) = held.get_mut(..a_end - a) else {
            return false;
        };
        let same = first.prefix == second.prefix && self.key(first.key) == self.key(second.key);
        held.copy_from_slice(&self.out[a..a_end]);
        self.out.copy_within(b..b_end, a);
        let mut at = a + (b_end - b);
        if !same {
            self.out[at..at + 2].copy_from_slice(b", ");
            at += 2;
            self.out[at..at + held.len()].copy_from_slice(held);
            at += held.len();
        }
        self.out.truncate(at);
        true
    }

    /// Rewrites the members of the object opened at `open` (records from
    /// `base` on) in key order, the last of a repeated key kept.
    fn rewrite_in_order(&mut self, open: usize, base: usize) {
        let Parser {
            b,
            out,
            members,
            scratch,
            keys,
            ..
        } = self;
        let recs = &mut members[base..];
        let key = |r: &Rec| key_bytes(b, keys, r.key);
        sort_stable(recs, |x, y| {
            x.prefix.cmp(&y.prefix).then_with(|| key(x).cmp(key(y)))
        });
        // The sorted members take no more room than the text they came in
        // (less when repeats are dropped): they are written back over it,
        // from a copy, with no growth checks, and the rest cut off.
        scratch.clear();
        scratch.extend_from_slice(&out[open..]);
        let mut at = open + 1;
        let mut put = |bytes: &[u8]| {
            if let Some(to) = out.get_mut(at..at + bytes.len()) {
                to.copy_from_slice(bytes);
                at += bytes.len();
            }
        };
        let mut first = true;
        for (i, r) in recs.iter().enumerate() {
            let later = recs
                .get(i + 1)
                .is_some_and(|n| n.prefix == r.prefix && key(n) == key(r));
            if later {
                continue;
            }
            if !std::mem::take(&mut first) {
                put(b", ");
            }
            put(scratch
                .get(r.start as usize - open..r.end as usize - open)
                .unwrap_or_default());
        }
        out.truncate(at);
    }

    fn array(&mut self) -> Result<(), Stop> {
        self.enter()?;
        self.out.push(b'[');
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            self.out.push(b']');
            return Ok(());
        }
        loop {
            self.value()?;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                    self.out.extend_from_slice(b", ");
                }
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    self.out.push(b']');
                    return Ok(());
                }
                _ => return Err("expected ',' or ']' in an array"),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Stop> {
        match self.b.get(self.i..self.i + 4).and_then(text::hex4) {
            Some(v) => {
                self.i += 4;
                Ok(v)
            }
            None => Err("a \\u escape needs 4 hex digits"),
        }
    }

    /// Checks the string starting at the opening quote and moves past its
    /// closing quote. True when CPython prints it exactly as written.
    /// The only check of UTF-8: outside strings a byte above 0x7f is
    /// refused as it is read.
    #[inline(always)]
    fn string(&mut self) -> Result<bool, Stop> {
        // Most strings are one printable run: done here, in the caller.
        let end = skip_printable(self.b, self.i + 1);
        self.i = end;
        if self.b.get(end) == Some(&b'"') {
            self.i += 1;
            return Ok(true);
        }
        self.string_rest()
    }

    /// The rest of a string from its first byte that is not printable
    /// ASCII: escapes, non-ASCII, the end, or an error.
    #[inline(never)]
    fn string_rest(&mut self) -> Result<bool, Stop> {
        let mut plain = true;
        loop {
            self.i = skip_printable(self.b, self.i);
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(plain);
                }
                Some(b'\\') => {
                    plain = false;
                    self.escape()?;
                }
                Some(&c) if c < 0x20 => {
                    return Err("a control character must be escaped in a string")
                }
                // DEL or a non-ASCII character: printed as an escape.
                Some(0x7F) => {
                    plain = false;
                    self.i += 1;
                }
                Some(_) => {
                    plain = false;
                    match utf8_len(self.b, self.i) {
                        Some(n) => self.i += n,
                        None => return Err("the body is not valid UTF-8"),
                    }
                }
                None => return Err("unterminated string"),
            }
        }
    }

    /// A string value: checked and written as CPython prints it. A plain
    /// one (one printable run) is copied as written; any other is written
    /// as it is checked, in the same pass.
    #[inline(always)]
    fn string_value(&mut self) -> Result<(), Stop> {
        let start = self.i;
        let end = skip_printable(self.b, start + 1);
        if self.b.get(end) == Some(&b'"') {
            self.i = end + 1;
            put_span(self.out, self.b, start, self.i);
            return Ok(());
        }
        self.out.extend_from_slice(&self.b[start..end]);
        self.i = end;
        self.string_value_rest()
    }

    /// The rest of a string value from its first byte that is not
    /// printable ASCII: printable runs copied, escapes, DEL and non-ASCII
    /// characters checked and rewritten, up to the closing quote.
    #[inline(never)]
    fn string_value_rest(&mut self) -> Result<(), Stop> {
        loop {
            let run = self.i;
            self.i = skip_printable(self.b, self.i);
            self.out.extend_from_slice(&self.b[run..self.i]);
            let at = self.i;
            match self.b.get(at) {
                Some(b'"') => {
                    self.i += 1;
                    self.out.push(b'"');
                    return Ok(());
                }
                Some(b'\\') => {
                    self.escape()?;
                    push_char(self.out, unescape(&self.b[at..]).0 as u32);
                }
                Some(&c) if c < 0x20 => {
                    return Err("a control character must be escaped in a string")
                }
                Some(0x7F) => {
                    self.i += 1;
                    push_char(self.out, 0x7F);
                }
                Some(_) => match utf8_len(self.b, at) {
                    Some(n) => {
                        self.i += n;
                        push_char(self.out, utf8_char(&self.b[at..]).0);
                    }
                    None => return Err("the body is not valid UTF-8"),
                },
                None => return Err("unterminated string"),
            }
        }
    }

    /// Checks the escape at the backslash and moves past it.
    fn escape(&mut self) -> Result<(), Stop> {
        self.i += 1;
        let esc = self.b.get(self.i).copied();
        self.i += 1;
        match esc {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(()),
            Some(b'u') => {
                let hi = self.hex4()?;
                if (0xD800..0xDC00).contains(&hi) {
                    if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                        return Err("a lone surrogate escape is not allowed");
                    }
                    self.i += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err("a lone surrogate escape is not allowed");
                    }
                } else if (0xDC00..0xE000).contains(&hi) {
                    return Err("a lone surrogate escape is not allowed");
                }
                Ok(())
            }
            _ => {
                self.i -= 1;
                Err("invalid escape in a string")
            }
        }
    }

    #[inline]
    fn number(&mut self) -> Result<(), Stop> {
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
        let int_at = self.i;
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err("a number needs digits"),
        }
        let int_len = self.i - int_at;
        // The fraction's digits, when there is a fraction.
        let mut frac = None;
        if self.b.get(self.i) == Some(&b'.')
            && self.b.get(self.i + 1).is_some_and(u8::is_ascii_digit)
        {
            self.i += 1;
            let at = self.i;
            digits(self);
            frac = Some(at..self.i);
        }
        let mut exponent = false;
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                self.i = save; // as CPython: "1e" is the number 1 followed by junk
            } else {
                exponent = true;
            }
        }
        let number = &self.b[start..self.i];
        match (frac, exponent) {
            // Python's int has no negative zero.
            (None, false) if number == b"-0" => self.out.push(b'0'),
            (None, false) => put_span(self.out, self.b, start, self.i),
            (Some(ref frac), false)
                if own_repr(int_len, self.b[int_at] == b'0', &self.b[frac.clone()]) =>
            {
                put_span(self.out, self.b, start, self.i)
            }
            _ => push_float_text(self.out, number),
        }
        Ok(())
    }
}

/// Whether a decimal without exponent, `int_len` digits (`zero`: just
/// "0") and a point then `frac`, is written as repr writes its double:
/// the test of `text::is_own_repr`, on what the scan already measured.
#[inline]
fn own_repr(int_len: usize, zero: bool, frac: &[u8]) -> bool {
    match frac {
        [b'0'] => int_len <= 15,
        [.., b'0'] => false,
        _ if zero => {
            let zeros = frac.iter().take_while(|&&c| c == b'0').count();
            zeros <= 3 && frac.len() - zeros <= 15
        }
        _ => int_len + frac.len() <= 15,
    }
}

/// `json.dumps(value, sort_keys=True)` with CPython's defaults.
pub fn dumps_sorted(value: &Value) -> String {
    let mut out = Vec::new();
    write_value(&mut out, value);
    // Only ASCII is ever written.
    String::from_utf8(out).unwrap_or_default()
}

/// Lowercase hex SHA-256 of [`dumps_sorted`].
pub fn checksum(value: &Value) -> String {
    checksum_of(&dumps_sorted(value))
}

/// Lowercase hex SHA-256 of an already canonical text.
pub fn checksum_of(canonical: &str) -> String {
    super::hex(&Sha256::digest(canonical.as_bytes()))
}

/// Lowercase hex SHA-256 of `canonical`, with no string of its own.
pub fn sha256_hex(canonical: &[u8]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(canonical);
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(digits) => out.extend_from_slice(digits.as_bytes()),
        Value::Float(f) => push_float(out, *f),
        Value::Str(s) => push_str_bytes(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.extend_from_slice(b", ");
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<&(String, Value)> = members.iter().collect();
            // str ordering is by UTF-8 bytes, which is code point order, as Python's.
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push(b'{');
            for (n, (k, v)) in sorted.into_iter().enumerate() {
                if n > 0 {
                    out.extend_from_slice(b", ");
                }
                push_str_bytes(out, k);
                out.extend_from_slice(b": ");
                write_value(out, v);
            }
            out.push(b'}');
        }
    }
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
