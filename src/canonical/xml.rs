//! The TeamDrive request edits: set `<requesttime>`, insert `<distributor>`,
//! and change nothing else, byte for byte (whitespace, the XML declaration,
//! comments, CDATA). A small XML scanner finds the root's direct children
//! (comments, CDATA, processing instructions and nested elements cannot be
//! mistaken for them); a body it cannot understand unambiguously is an error,
//! never a guess. Every change is returned as a [`Splice`], so callers and
//! tests can check that nothing else moved.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum XmlError {
    #[error("the XML body is not well-formed at byte {at}: {what}")]
    Malformed { at: usize, what: &'static str },
    #[error("the XML body must be UTF-8 (or another ASCII-compatible encoding): {0}")]
    Encoding(&'static str),
    #[error("the XML body {0}")]
    Shape(&'static str),
}

/// One change: `range` of the input replaced by `text` (an empty range inserts).
#[derive(Debug, Clone, PartialEq)]
pub struct Splice {
    pub range: Range<usize>,
    pub text: String,
}

/// A direct child of the root: where its tags and content are.
#[derive(Debug, Clone)]
struct Child {
    /// The whole element, start tag to end tag.
    whole: Range<usize>,
    /// Between the tags; `None` for `<x/>`.
    content: Option<Range<usize>>,
    /// Whether the content is plain text (no elements, comments or CDATA).
    text_only: bool,
}

#[derive(Default)]
struct Found {
    command: Seen,
    requesttime: Seen,
    distributor: Seen,
}

/// The first child of a name, and how many there were (more than one is
/// an error): no list to allocate per request.
#[derive(Default)]
struct Seen {
    first: Option<Child>,
    count: usize,
}

impl Seen {
    fn push(&mut self, child: Child) {
        if self.first.is_none() {
            self.first = Some(child);
        }
        self.count += 1;
    }
}

fn malformed(at: usize, what: &'static str) -> XmlError {
    XmlError::Malformed { at, what }
}

/// The first `needle` at or after `from`: every tag of every body goes
/// through here, so its first byte is found with SIMD (memchr) and the rest
/// (a few bytes: "?>", "-->", "]]>") compared in place, with no searcher to
/// build per call.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut at = from;
    loop {
        at += memchr::memchr(first, hay.get(at..)?)?;
        if hay[at + 1..].starts_with(rest) {
            return Some(at);
        }
        at += 1;
    }
}

/// Name bytes by class, looked up once per byte of every tag: bit 1 may
/// start a name, bit 2 may continue one.
const NAME: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let start = c.is_ascii_alphabetic() || c == b'_' || c == b':' || c >= 0x80;
        let more = start || c.is_ascii_digit() || c == b'-' || c == b'.';
        t[b] = (start as u8) | ((more as u8) << 1);
        b += 1;
    }
    t
};

fn is_name_start(b: u8) -> bool {
    NAME[usize::from(b)] & 1 != 0
}

/// Where the name characters starting at `i` end.
fn name_end(body: &[u8], i: usize) -> usize {
    body[i..]
        .iter()
        .position(|b| NAME[usize::from(*b)] & 2 == 0)
        .map_or(body.len(), |n| i + n)
}

/// Parses a start or end tag beginning at `at` (the '<'); returns (name, end after '>', self-closing).
fn tag(body: &[u8], at: usize, closing: bool) -> Result<(&[u8], usize, bool), XmlError> {
    let mut i = at + if closing { 2 } else { 1 };
    let start = i;
    if !body.get(i).copied().is_some_and(is_name_start) {
        return Err(malformed(at, "a tag without a valid name"));
    }
    i = name_end(body, i);
    let name = &body[start..i];
    loop {
        while body.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        match body.get(i) {
            None => return Err(malformed(at, "an unterminated tag")),
            Some(b'>') => return Ok((name, i + 1, false)),
            Some(b'/') if !closing && body.get(i + 1) == Some(&b'>') => {
                return Ok((name, i + 2, true))
            }
            Some(&b) if !closing && is_name_start(b) => {
                i = name_end(body, i);
                while body.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
                    i += 1;
                }
                if body.get(i) != Some(&b'=') {
                    return Err(malformed(i, "an attribute without a value"));
                }
                i += 1;
                while body.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
                    i += 1;
                }
                let quote = match body.get(i) {
                    Some(&q @ (b'"' | b'\'')) => q,
                    _ => return Err(malformed(i, "an unquoted attribute value")),
                };
                let close = find(body, i + 1, &[quote])
                    .ok_or(malformed(i, "an unterminated attribute value"))?;
                if body[i + 1..close].contains(&b'<') {
                    return Err(malformed(i, "'<' in an attribute value"));
                }
                i = close + 1;
            }
            Some(_) => return Err(malformed(i, "an unexpected character in a tag")),
        }
    }
}

/// Rejects encodings the byte-level edits would corrupt.
fn check_encoding(body: &[u8]) -> Result<(), XmlError> {
    if body.starts_with(&[0xFE, 0xFF])
        || body.starts_with(&[0xFF, 0xFE])
        || memchr::memchr(0, body).is_some()
    {
        return Err(XmlError::Encoding(
            "UTF-16 and UTF-32 bodies are not supported",
        ));
    }
    if let Some(end) = body
        .starts_with(b"<?xml")
        .then(|| find(body, 0, b"?>"))
        .flatten()
    {
        // Only the encoding pseudo-attribute names one (none means UTF-8);
        // its quoted value is what is compared.
        let decl = find(&body[..end], 0, b"encoding").map_or(&[][..], |at| &body[at..end]);
        let value = decl
            .iter()
            .position(|b| *b == b'"' || *b == b'\'')
            .and_then(|q| {
                let rest = &decl[q + 1..];
                let close = rest.iter().position(|b| *b == decl[q])?;
                Some(&rest[..close])
            })
            .unwrap_or(decl);
        let names = |needle: &[u8]| {
            value
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
        };
        if names(b"utf-16") || names(b"utf-32") || names(b"ucs-") {
            return Err(XmlError::Encoding(
                "the declaration names a multi-byte encoding",
            ));
        }
    }
    Ok(())
}

/// Walks the document, checking nesting, and collects the root's direct children we edit.
fn scan(body: &[u8]) -> Result<Found, XmlError> {
    check_encoding(body)?;
    let mut found = Found::default();
    // Open elements: (name range, start offset, content start, text-only so far).
    let mut stack = Stack::default();
    let mut root_seen = false;
    let mut i = if body.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    while i < body.len() {
        let Some(lt) = find(body, i, b"<") else {
            if stack.is_empty() && body[i..].iter().all(|b| b.is_ascii_whitespace()) {
                break;
            }
            return Err(malformed(
                i,
                "text outside the root element or an unclosed element",
            ));
        };
        if stack.is_empty() && !body[i..lt].iter().all(|b| b.is_ascii_whitespace()) {
            return Err(malformed(i, "text outside the root element"));
        }
        let rest = &body[lt..];
        // One look at the byte after '<' picks the construct.
        let after = rest.get(1).copied();
        let (end, markup) = if after == Some(b'?') {
            (
                find(body, lt, b"?>")
                    .ok_or(malformed(lt, "an unterminated processing instruction"))?
                    + 2,
                true,
            )
        } else if after == Some(b'!') && rest.starts_with(b"<!--") {
            (
                find(body, lt + 4, b"-->").ok_or(malformed(lt, "an unterminated comment"))? + 3,
                true,
            )
        } else if after == Some(b'!') && rest.starts_with(b"<![CDATA[") {
            if stack.is_empty() {
                return Err(malformed(lt, "CDATA outside the root element"));
            }
            (
                find(body, lt, b"]]>").ok_or(malformed(lt, "an unterminated CDATA section"))? + 3,
                true,
            )
        } else if after == Some(b'!') {
            return Err(XmlError::Shape(
                "may not carry a DOCTYPE or other declarations",
            ));
        } else if after == Some(b'/') {
            let (name, end, _) = tag(body, lt, true)?;
            let (open, start, content_start, text_only) = stack
                .pop()
                .ok_or(malformed(lt, "a closing tag with no open element"))?;
            if &body[open.clone()] != name {
                return Err(malformed(
                    lt,
                    "a closing tag that does not match the open element",
                ));
            }
            if stack.len() == 1 {
                let child = Child {
                    whole: start..end,
                    content: Some(content_start..lt),
                    text_only,
                };
                record(&mut found, name, child);
            }
            (end, false)
        } else {
            let (name, end, self_closing) = tag(body, lt, false)?;
            let name_range = lt + 1..lt + 1 + name.len();
            if stack.is_empty() {
                if root_seen {
                    return Err(XmlError::Shape("has more than one root element"));
                }
                if name != b"teamdrive" {
                    return Err(XmlError::Shape("must have <teamdrive> as its root element"));
                }
                root_seen = true;
            }
            if let Some(parent) = stack.last_mut() {
                parent.3 = false;
            }
            if self_closing {
                if stack.len() == 1 {
                    record(
                        &mut found,
                        name,
                        Child {
                            whole: lt..end,
                            content: None,
                            text_only: true,
                        },
                    );
                }
            } else {
                stack.push((name_range, lt, end, true));
            }
            (end, false)
        };
        if markup {
            if let Some(parent) = stack.last_mut() {
                parent.3 = false;
            }
        }
        i = end;
    }
    if !stack.is_empty() {
        return Err(malformed(body.len(), "the root element is not closed"));
    }
    if !root_seen {
        return Err(XmlError::Shape("has no root element"));
    }
    Ok(found)
}

/// The open elements: (name range, start offset, content start, text-only
/// so far). Requests nest two or three deep: the first levels live inline,
/// with no allocation per request; deeper ones spill to a `Vec`.
#[derive(Default)]
struct Stack {
    inline: [(Range<usize>, usize, usize, bool); 4],
    depth: usize,
    spill: Vec<(Range<usize>, usize, usize, bool)>,
}

impl Stack {
    fn is_empty(&self) -> bool {
        self.depth == 0
    }

    fn len(&self) -> usize {
        self.depth
    }

    fn push(&mut self, open: (Range<usize>, usize, usize, bool)) {
        match self.inline.get_mut(self.depth) {
            Some(slot) => *slot = open,
            None => self.spill.push(open),
        }
        self.depth += 1;
    }

    fn pop(&mut self) -> Option<(Range<usize>, usize, usize, bool)> {
        self.depth = self.depth.checked_sub(1)?;
        match self.inline.get(self.depth) {
            Some(slot) => Some(slot.clone()),
            None => self.spill.pop(),
        }
    }

    fn last_mut(&mut self) -> Option<&mut (Range<usize>, usize, usize, bool)> {
        let top = self.depth.checked_sub(1)?;
        if top < self.inline.len() {
            self.inline.get_mut(top)
        } else {
            self.spill.last_mut()
        }
    }
}

fn record(found: &mut Found, name: &[u8], child: Child) {
    match name {
        b"command" => found.command.push(child),
        b"requesttime" => found.requesttime.push(child),
        b"distributor" => found.distributor.push(child),
        _ => {}
    }
}

fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['&', '<', '>']) {
        return text.into();
    }
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .into()
}

/// Sets `<requesttime>` to `requesttime` (inserting it right after
/// `</command>` when missing) and inserts `<distributor>` right after the
/// requesttime element when `distributor` is given and none is present.
pub fn edit(
    body: &[u8],
    requesttime: Option<u64>,
    distributor: Option<&str>,
) -> Result<(Vec<u8>, Vec<Splice>), XmlError> {
    let found = scan(body)?;
    let command = match (&found.command.first, found.command.count) {
        (Some(c), 1) => c,
        (None, _) => return Err(XmlError::Shape("has no <command> element")),
        _ => return Err(XmlError::Shape("has more than one <command> element")),
    };
    if found.requesttime.count > 1 {
        return Err(XmlError::Shape("has more than one <requesttime> element"));
    }
    if found.distributor.count > 1 {
        return Err(XmlError::Shape("has more than one <distributor> element"));
    }
    let existing_time = found.requesttime.first.as_ref();
    let mut splices = Vec::new();
    // Where the distributor goes: after the requesttime element, as it will be.
    let mut after_time = existing_time
        .map(|t| t.whole.end)
        .unwrap_or(command.whole.end);
    let mut inserted_at_command = String::new();
    if let Some(now) = requesttime {
        match existing_time {
            Some(t) => match &t.content {
                Some(c) if t.text_only => splices.push(Splice {
                    range: c.clone(),
                    text: now.to_string(),
                }),
                Some(_) => {
                    return Err(XmlError::Shape(
                        "has a <requesttime> that is not plain text",
                    ))
                }
                None => splices.push(Splice {
                    range: t.whole.clone(),
                    text: format!("<requesttime>{now}</requesttime>"),
                }),
            },
            None => {
                inserted_at_command = format!("<requesttime>{now}</requesttime>");
                after_time = command.whole.end;
            }
        }
    }
    if let (Some(d), 0) = (distributor, found.distributor.count) {
        let d = escape(d);
        let mut element = String::with_capacity(d.len() + 27);
        element.push_str("<distributor>");
        element.push_str(&d);
        element.push_str("</distributor>");
        if after_time == command.whole.end && existing_time.is_none() {
            inserted_at_command.push_str(&element);
        } else {
            splices.push(Splice {
                range: after_time..after_time,
                text: element,
            });
        }
    }
    if !inserted_at_command.is_empty() {
        splices.push(Splice {
            range: command.whole.end..command.whole.end,
            text: inserted_at_command,
        });
    }
    splices.sort_by_key(|s| (s.range.start, s.range.end));
    Ok((apply(body, &splices), splices))
}

/// The input with the splices (sorted, non-overlapping) applied.
pub fn apply(body: &[u8], splices: &[Splice]) -> Vec<u8> {
    let extra: usize = splices.iter().map(|s| s.text.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for s in splices {
        out.extend_from_slice(&body[at..s.range.start]);
        out.extend_from_slice(s.text.as_bytes());
        at = s.range.end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

#[cfg(test)]
#[path = "xml_tests.rs"]
mod tests;
