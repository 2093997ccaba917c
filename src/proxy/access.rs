//! The access log line: one per request, formatted by hand straight into
//! the writer's per-thread buffer (`server::access_log`), in the shape
//! tracing-subscriber gives every other line (`--log-format pretty|json`).
//! tracing's own formatter cost ~16k instructions per request, as much as
//! proxying it; this costs a few hundred.
//!
//! The line goes where [`set_sink`] says, once per process (the log
//! destination is as global as the tracing subscriber it sits beside);
//! without a sink (the library in tests) it is a tracing event as before.
//! Either way `RUST_LOG` decides: the line is written when `info` is
//! enabled for the target `countersign::access`.
//!
//! Values are the request's own text (route, path): anything but
//! printable ASCII is escaped (`\n`, `\x1b`, `\u{2028}` in pretty lines,
//! JSON escapes in JSON), so a caller cannot forge a line or send the
//! terminal control sequences. The path is logged without its query,
//! which may carry secrets.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// How access lines look (the `--log-format` of the other lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFormat {
    Json,
    /// tracing-subscriber's default line; `ansi`: with its colours.
    Pretty {
        ansi: bool,
    },
}

/// Where access lines go: a buffer of the calling thread, written out later.
pub trait AccessSink: Send + Sync + 'static {
    fn format(&self) -> AccessFormat;
    /// Lets `line` append one whole line (newline included) to this
    /// thread's buffer.
    fn append(&self, line: &mut dyn FnMut(&mut Vec<u8>));
}

/// The process's access log writer, set once by the command that logs.
static SINK: OnceLock<Box<dyn AccessSink>> = OnceLock::new();

/// Sends every access line of this process to `sink`; false when one is set already.
pub fn set_sink(sink: Box<dyn AccessSink>) -> bool {
    SINK.set(sink).is_ok()
}

/// Writes one access line whose fields `fields` adds, in order.
pub(super) fn emit(fields: impl Fn(&mut Line<'_>)) {
    if !tracing::enabled!(target: "countersign::access", tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else {
        let mut buf = Vec::new();
        fields(&mut Line::new(&mut buf, false, false));
        let text = String::from_utf8_lossy(&buf);
        tracing::info!(target: "countersign::access", "request{text}");
        return;
    };
    match sink.format() {
        AccessFormat::Pretty { ansi } => sink.append(&mut |buf| {
            timestamp(buf, SystemTime::now(), ansi);
            buf.extend_from_slice(if ansi {
                b" \x1b[32m INFO\x1b[0m \x1b[2mcountersign::access\x1b[0m\x1b[2m:\x1b[0m request"
            } else {
                b"  INFO countersign::access: request"
            });
            fields(&mut Line::new(buf, false, ansi));
            buf.push(b'\n');
        }),
        AccessFormat::Json => sink.append(&mut |buf| {
            buf.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(buf, SystemTime::now(), false);
            buf.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\"");
            fields(&mut Line::new(buf, true, false));
            buf.extend_from_slice(b"},\"target\":\"countersign::access\"}\n");
        }),
    }
}

/// The fields of one line: each call adds one `key=value` (or `"key":value`).
pub struct Line<'a> {
    buf: &'a mut Vec<u8>,
    json: bool,
    ansi: bool,
}

impl<'a> Line<'a> {
    fn new(buf: &'a mut Vec<u8>, json: bool, ansi: bool) -> Self {
        Line { buf, json, ansi }
    }

    fn key(&mut self, key: &str) {
        if self.json {
            self.buf.extend_from_slice(b",\"");
            self.buf.extend_from_slice(key.as_bytes());
            self.buf.extend_from_slice(b"\":");
        } else if self.ansi {
            self.buf.extend_from_slice(b" \x1b[3m");
            self.buf.extend_from_slice(key.as_bytes());
            self.buf.extend_from_slice(b"\x1b[0m\x1b[2m=\x1b[0m");
        } else {
            self.buf.push(b' ');
            self.buf.extend_from_slice(key.as_bytes());
            self.buf.push(b'=');
        }
    }

    /// Text, escaped as the format needs (it may be the caller's).
    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        if self.json {
            json_string(self.buf, value);
        } else {
            pretty_string(self.buf, value);
        }
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    pub fn num(&mut self, key: &str, value: u64) {
        self.key(key);
        decimal(self.buf, value);
    }

    pub fn opt_num(&mut self, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.num(key, v);
        }
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A duration in milliseconds, to the microsecond (`1.234`).
    pub fn millis(&mut self, key: &str, d: Duration) {
        self.key(key);
        let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
        decimal(self.buf, micros / 1000);
        let frac = micros % 1000;
        self.buf.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
}

fn decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Printable ASCII but the quote and backslash goes as it is; anything
/// else makes the value a quoted string with Rust's escapes, so a value
/// can never end the line or reach a terminal as a control sequence.
fn pretty_string(buf: &mut Vec<u8>, s: &str) {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if plain {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    buf.push(b'"');
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\t' => buf.extend_from_slice(b"\\t"),
            ' '..='~' => buf.push(c as u8),
            c => {
                let mut esc = String::new();
                // Writing into a String cannot fail.
                let _ = write!(esc, "\\u{{{:x}}}", u32::from(c));
                buf.extend_from_slice(esc.as_bytes());
            }
        }
    }
    buf.push(b'"');
}

/// A JSON string: quote, backslash and every control character escaped;
/// U+2028 and U+2029 too, which some readers take for line ends.
fn json_string(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            '\u{0}'..='\u{1f}' | '\u{7f}' => b"",
            '\u{2028}' => b"\\u2028",
            '\u{2029}' => b"\\u2029",
            _ => continue,
        };
        buf.extend_from_slice(&s.as_bytes()[start..i]);
        start = i + c.len_utf8();
        if esc.is_empty() {
            let b = c as u8;
            buf.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            buf.extend_from_slice(esc);
        }
    }
    buf.extend_from_slice(&s.as_bytes()[start..]);
    buf.push(b'"');
}

thread_local! {
    /// The last second formatted on this thread (`YYYY-MM-DDTHH:MM:SS`):
    /// lines within a second only add their microseconds.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// `2026-12-01T10:00:00.123456Z`, as tracing-subscriber writes it.
fn timestamp(buf: &mut Vec<u8>, now: SystemTime, ansi: bool) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        let t = time::OffsetDateTime::from_unix_timestamp(secs.min(253_402_300_799) as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut s = String::with_capacity(19);
        // Writing into a String cannot fail.
        let _ = write!(
            s,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        text.copy_from_slice(&s.as_bytes()[..19]);
        SECOND.set((secs, text));
    }
    if ansi {
        buf.extend_from_slice(b"\x1b[2m");
    }
    buf.extend_from_slice(&text);
    let micros = since.subsec_micros();
    let mut frac = [b'.', 0, 0, 0, 0, 0, 0, b'Z'];
    let mut m = micros;
    for d in frac[1..7].iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    buf.extend_from_slice(&frac);
    if ansi {
        buf.extend_from_slice(b"\x1b[0m");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: bool, fields: impl Fn(&mut Line<'_>)) -> String {
        let mut buf = Vec::new();
        fields(&mut Line::new(&mut buf, json, false));
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn every_field_is_one_key_value() {
        let f = |l: &mut Line<'_>| {
            l.str("route", "xrtc");
            l.str("path", "/v1/item/set");
            l.num("status", 200);
            l.opt_num("upstream_status", None);
            l.opt_str("error", Some("rate_limited"));
            l.millis("duration_ms", Duration::from_micros(12_345));
            l.bool("replay", false);
        };
        assert_eq!(
            line(false, f),
            " route=xrtc path=/v1/item/set status=200 error=rate_limited duration_ms=12.345 replay=false"
        );
        let json = format!("{{\"message\":\"request\"{}}}", line(true, f));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["path"], "/v1/item/set");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 12.345);
        assert!(v.get("upstream_status").is_none());
        assert_eq!(v["replay"], false);
    }

    #[test]
    fn caller_text_cannot_forge_a_line_or_reach_a_terminal() {
        let hostile = "/a\n2026-12-01T00:00:00Z  INFO countersign::access: request route=forged\r\x1b[2J\"\\\u{7f}\u{2028}é";
        let pretty = line(false, |l| l.str("path", hostile));
        assert!(
            !pretty.contains(['\n', '\r', '\u{1b}', '\u{7f}', '\u{2028}']),
            "{pretty}"
        );
        assert_eq!(
            pretty,
            " path=\"/a\\n2026-12-01T00:00:00Z  INFO countersign::access: request route=forged\\r\\u{1b}[2J\\\"\\\\\\u{7f}\\u{2028}\\u{e9}\""
        );
        let json = line(true, |l| l.str("path", hostile));
        assert!(
            !json.contains(['\n', '\r', '\u{1b}', '\u{7f}', '\u{2028}']),
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&format!("{{\"m\":0{json}}}")).unwrap();
        assert_eq!(v["path"], hostile, "JSON keeps the exact text");
        // Empty and spaced values are quoted, so the next field is still the next field.
        assert_eq!(line(false, |l| l.str("client", "")), " client=\"\"");
        assert_eq!(
            line(false, |l| l.str("client", "a b=c")),
            " client=\"a b=c\""
        );
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let mut buf = Vec::new();
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_083_200_000_042);
        timestamp(&mut buf, t, false);
        timestamp(&mut buf, t + Duration::from_micros(1), false);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2026-12-01T00:00:00.000042Z2026-12-01T00:00:00.000043Z"
        );
    }
}
