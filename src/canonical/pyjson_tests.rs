use super::*;

fn roundtrip(text: &str) -> String {
    doc_dumps(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

include!("pyjson_known.rs");

/// The signing path: one pass, the root's members sorted as written.
fn doc_dumps(text: &[u8]) -> Result<String, ParseError> {
    let mut out = Vec::new();
    Doc::parse(text)?.write_sorted(&mut out);
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn known_answers_from_cpython() {
    assert_eq!(KNOWN.len(), 44);
    for (body, dumped, sum) in KNOWN {
        let text = doc_dumps(body.as_bytes()).unwrap();
        assert_eq!(text, *dumped, "dumps of {body}");
        assert_eq!(
            &sha256_hex(text.as_bytes())[..],
            sum.as_bytes(),
            "checksum of {body}"
        );
    }
}

#[test]
fn float_repr_edges() {
    for (text, want) in [
        ("1e16", "1e+16"),
        ("1e15", "1000000000000000.0"),
        ("0.0001", "0.0001"),
        ("0.00001", "1e-05"),
        ("123456789012345678.0", "1.2345678901234568e+17"),
        ("-0.0", "-0.0"),
        ("2.5e-300", "2.5e-300"),
        ("1.5", "1.5"),
        ("100", "100"),
        ("-0", "0"),
        // An exact tie between two shortest strings: CPython takes the even
        // digit (found by the differential test; Rust's `{:e}` took the odd one).
        ("864140230362545.204014", "864140230362545.2"),
        // Printed by CPython 3.11: json.dumps(json.loads(text)).
        ("9999999999999998.0", "9999999999999998.0"),
        ("1.0000000000000002e16", "1.0000000000000002e+16"),
        ("0.30000000000000004", "0.30000000000000004"),
        ("0.1e1", "1.0"),
        ("2.2250738585072014e-308", "2.2250738585072014e-308"),
        ("2.225073858507201e-308", "2.225073858507201e-308"),
        ("4.9406564584124654e-324", "5e-324"),
        ("1.7976931348623158e308", "1.7976931348623157e+308"),
        ("1.7976931348623159e308", "Infinity"),
        ("9007199254740993.0", "9007199254740992.0"),
        ("123456789012345.6", "123456789012345.6"),
        ("1234567890123456.7", "1234567890123456.8"),
        ("12345678901234567.0", "1.2345678901234568e+16"),
        ("0.000123456789012345", "0.000123456789012345"),
        ("1e-4", "0.0001"),
        ("9.999999999999999e-5", "9.999999999999999e-05"),
        ("1e22", "1e+22"),
        ("1e23", "1e+23"),
        ("8.41e21", "8.41e+21"),
        ("-1.0e-10", "-1e-10"),
        ("1E+2", "100.0"),
        ("1e+300", "1e+300"),
        ("1e-300", "1e-300"),
        ("100000000000000000000000.0", "1e+23"),
        ("0.0000", "0.0"),
        ("-0e-0", "-0.0"),
        ("2e-310", "2e-310"),
        ("0.1e-299", "1e-300"),
        ("99999999999999.99e-310", "9.999999999999999e-297"),
        ("1e-0001", "0.1"),
    ] {
        assert_eq!(roundtrip(text), want, "{text}");
    }
}

#[test]
fn refusals_name_line_and_column() {
    for (text, line, column) in [
        ("NaN", 1, 1),
        ("[1,\n Infinity]", 2, 2),
        ("-Infinity", 1, 1),
        (r#"{"a":"\ud800"}"#, 1, 13),
        (r#""\udc00x""#, 1, 8),
        (r#""\ud800\u0041""#, 1, 14),
        ("[1,]", 1, 4),
        ("{\"a\":1}\n x", 2, 2),
        ("\"abc", 1, 5),
        ("\"a\u{1}b\"", 1, 3),
        ("{'a':1}", 1, 2),
        ("01", 1, 2),
        ("", 1, 1),
    ] {
        let Err(e) = Doc::parse(text.as_bytes()) else {
            panic!("{text:?} parsed");
        };
        assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
    }
    assert!(Doc::parse(b"\"\xff\"").is_err(), "invalid UTF-8");
    let deep = "[".repeat(513) + &"]".repeat(513);
    assert!(Doc::parse(deep.as_bytes()).is_err());
    let ok = "[".repeat(512) + &"]".repeat(512);
    assert_eq!(doc_dumps(ok.as_bytes()).unwrap(), ok);
}

/// Keys, strings and integers of every length around the parser's 32-byte
/// block copy, at the very end of the input (fewer than 32 bytes after
/// them) and far from it: each printed whole, nothing of what follows.
#[test]
fn spans_of_every_length_copy_exactly() {
    let far = "z".repeat(40);
    for n in 0..=40 {
        let (s, key, num) = (
            "a".repeat(n),
            format!("k{}", "b".repeat(n)),
            format!("1{}", "0".repeat(n)),
        );
        let compact = format!(r#"{{"{key}":"{s}","n":{num}}}"#);
        assert_eq!(
            roundtrip(&compact),
            format!(r#"{{"{key}": "{s}", "n": {num}}}"#),
            "{n}"
        );
        let before = format!(r#"{{"{key}":"{s}","n":{num},"z":"{far}"}}"#);
        assert_eq!(
            roundtrip(&before),
            format!(r#"{{"{key}": "{s}", "n": {num}, "z": "{far}"}}"#),
            "{n}"
        );
        // Out of order: written, then moved (the two-member swap).
        let swapped = format!(r#"[{{"n":{num},"{key}":"{s}"}}]"#);
        assert_eq!(
            roundtrip(&swapped),
            format!(r#"[{{"{key}": "{s}", "n": {num}}}]"#),
            "{n}"
        );
        assert_eq!(roundtrip(&format!("[{num}]")), format!("[{num}]"), "{n}");
        assert_eq!(roundtrip(&format!("-{num}")), format!("-{num}"), "{n}");
    }
}

/// The owned tree, as code builds it (explain prints a secret through it).
#[test]
fn values_built_in_code_print_as_cpython() {
    let mut v = Value::Object(vec![
        ("b".into(), Value::Array(vec![Value::Int("2".into())])),
        ("checksum".into(), Value::Str("x".into())),
        ("a".into(), Value::Int("1".into())),
    ]);
    assert_eq!(v.remove("checksum"), Some(Value::Str("x".into())));
    v.set("a", Value::Int("5".into()));
    v.set("c", Value::Null);
    v.set(
        "\u{e9}",
        Value::Array(vec![
            Value::Str("\u{1F600}\"\\\n\u{7f}/".into()),
            Value::Float(1e16),
            Value::Float(-0.0),
            Value::Float(0.1 + 0.2),
            Value::Float(f64::INFINITY),
            Value::Bool(false),
        ]),
    );
    assert_eq!(
        v.get("b"),
        Some(&Value::Array(vec![Value::Int("2".into())]))
    );
    // CPython 3.11: json.dumps({"b": [2], "a": 5, "c": None, "\u00e9":
    //   ["\U0001F600\"\\\n\x7f/", 1e16, -0.0, 0.1 + 0.2, float("inf"), False]}, sort_keys=True)
    let want = r#"{"a": 5, "b": [2], "c": null, "\u00e9": ["\ud83d\ude00\"\\\n\u007f/", 1e+16, -0.0, 0.30000000000000004, Infinity, false]}"#;
    assert_eq!(dumps_sorted(&v), want);
    assert_eq!(checksum(&v), checksum_of(want));
    assert_eq!(
        checksum_of("{}"),
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
}

#[test]
fn many_keys_on_the_signing_path_sort_and_keep_the_last() {
    // 100,000 members in descending order, every key twice.
    let members: Vec<String> = (0..2)
        .flat_map(|round| {
            (0..50_000)
                .rev()
                .map(move |i| format!("\"k{i:05}\":{round}"))
        })
        .collect();
    let out = doc_dumps(format!("{{{}}}", members.join(",")).as_bytes()).unwrap();
    let want: Vec<String> = (0..50_000).map(|i| format!("\"k{i:05}\": 1")).collect();
    assert_eq!(out, format!("{{{}}}", want.join(", ")));
}

#[test]
fn the_scans_own_repr_test_agrees_with_the_writers() {
    // Decimals without exponent, as the parser measures them: the test it
    // makes on its digit counts must be the one push_float_text makes on
    // the text, or a decimal would be copied that repr writes otherwise.
    let mut r = Rng::new(0x0_5EED);
    for _ in 0..200_000 {
        let mut int = String::new();
        match r.below(4) {
            0 => int.push('0'),
            _ => {
                let n = 1 + r.below(18);
                gen_digits(&mut r, n, &mut int);
            }
        }
        if int.len() > 1 && int.starts_with('0') {
            int.replace_range(..1, "1");
        }
        let mut frac = "0".repeat(r.below(6) as usize);
        let n = r.below(18);
        gen_digits(&mut r, n, &mut frac);
        if frac.is_empty() {
            frac.push('0');
        }
        let text = format!("{}{int}.{frac}", if r.below(2) == 0 { "-" } else { "" });
        assert_eq!(
            own_repr(int.len(), int == "0", frac.as_bytes()),
            text::is_own_repr(text.as_bytes()),
            "{text}"
        );
    }
}

#[test]
fn two_member_objects_are_put_in_order_in_place() {
    let long = "x".repeat(200);
    let cases = [
        (
            r#"[{"b":1,"a":2}]"#.to_string(),
            r#"[{"a": 2, "b": 1}]"#.to_string(),
        ),
        (r#"[{"a":1,"a":2}]"#.into(), r#"[{"a": 2}]"#.into()),
        (
            r#"[{"a":1,"a":{"b":2,"a":[]}}]"#.into(),
            r#"[{"a": {"a": [], "b": 2}}]"#.into(),
        ),
        (
            r#"{"o":{"b\u0031":"\u00e9","b0":0.50}}"#.into(),
            r#"{"o": {"b0": 0.5, "b1": "\u00e9"}}"#.into(),
        ),
        // A first member longer than the stack buffer: the general rewrite.
        (
            format!(r#"[{{"b":"{long}","a":1}}]"#),
            format!(r#"[{{"a": 1, "b": "{long}"}}]"#),
        ),
        (
            format!(r#"[{{"b":1,"a":"{long}"}}]"#),
            format!(r#"[{{"a": "{long}", "b": 1}}]"#),
        ),
        (
            r#"[{"a":1,"b":2},{"b":1,"a":2},{"a":3,"b":4}]"#.into(),
            r#"[{"a": 1, "b": 2}, {"a": 2, "b": 1}, {"a": 3, "b": 4}]"#.into(),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(roundtrip(&body), want, "{body}");
    }
}

#[test]
fn edits_change_the_root_object_only_and_win_over_its_members() {
    let body = br#"{"checksum":"x","a":{"checksum":1,"secret":2},"secret":"caller","b":[{"checksum":3}],"secret":"again","a\u0062":"esc"}"#;
    let doc = Doc::parse(body).unwrap();
    let mut out = Vec::new();
    doc.write_sorted_with(
        &[
            Edit::Remove("checksum"),
            Edit::Set("secret", "S"),
            Edit::Set("ab", "é😀\n"),
            Edit::Set("new", "n"),
        ],
        &mut out,
    );
    // As CPython: o = json.loads(body); del o["checksum"]; o["secret"] = "S";
    // o["ab"] = "é😀\n"; o["new"] = "n"; json.dumps(o, sort_keys=True)
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"a": {"checksum": 1, "secret": 2}, "ab": "\u00e9\ud83d\ude00\n", "b": [{"checksum": 3}], "new": "n", "secret": "S"}"#
    );
    // Edits have no effect on a root that is not an object.
    let mut out = Vec::new();
    Doc::parse(br#"[{"checksum":1}]"#)
        .unwrap()
        .write_sorted_with(&[Edit::Remove("checksum")], &mut out);
    assert_eq!(out, br#"[{"checksum": 1}]"#);
}

#[test]
fn root_get_sees_the_last_duplicate_and_decoded_keys() {
    let doc = Doc::parse(br#"{"a":"x","a":null,"b\u0063":"","bc":"\u0041","n":1,"o":{"p":"q"}}"#)
        .unwrap();
    assert!(doc.root_is_object());
    assert_eq!(doc.root_get("a"), Some(Shape::Null));
    // Strings as CPython prints them.
    assert_eq!(doc.root_get("bc"), Some(Shape::Str(r#""A""#)));
    assert_eq!(doc.root_get("n"), Some(Shape::Other));
    assert_eq!(doc.root_get("o"), Some(Shape::Other));
    assert_eq!(doc.root_get("p"), None, "only the root's members");
    assert_eq!(doc.root_get("missing"), None);
    let doc = Doc::parse(br#"{"bc":"","b\u0063":"x"}"#).unwrap();
    assert_eq!(doc.root_get("bc"), Some(Shape::Str(r#""x""#)));
    assert!(!Doc::parse(b"[1]").unwrap().root_is_object());
}

#[test]
fn printable_runs_end_at_the_first_byte_cpython_escapes() {
    // Every byte value at every position of a word and its tail, from every start.
    for v in 0..=255u8 {
        let reference = |c: u8| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\';
        for at in 0..20 {
            let mut buf = vec![b'a'; 20];
            buf[at] = v;
            for start in 0..=at {
                let want = if reference(v) { 20 } else { at };
                assert_eq!(
                    skip_printable(&buf, start),
                    want,
                    "byte {v:#x} at {at}, from {start}"
                );
            }
        }
    }
}

#[test]
fn short_decimals_print_as_their_double_does() {
    // The fast path (digits copied) against the slow one (a double, ryu),
    // on decimals with 1 to 17 significant digits: the two must agree.
    let mut r = Rng::new(0xF1_0A75);
    for _ in 0..300_000 {
        let mut t = String::new();
        if r.below(2) == 0 {
            t.push('-');
        }
        let int_len = r.below(18);
        if int_len == 0 {
            t.push('0');
        }
        for k in 0..int_len {
            let d = if k == 0 { 1 + r.below(9) } else { r.below(10) };
            t.push((b'0' + d as u8) as char);
        }
        if int_len < 17 || r.below(2) == 0 {
            t.push('.');
            for _ in 0..1 + r.below(18 - int_len.min(17)) {
                let zero = r.below(3) == 0;
                t.push(if zero {
                    '0'
                } else {
                    (b'0' + r.below(10) as u8) as char
                });
            }
        }
        if r.below(2) == 0 {
            t.push_str(&format!("e{}", r.below(640) as i64 - 320));
        }
        let mut fast = Vec::new();
        push_float_text(&mut fast, t.as_bytes());
        let mut slow = Vec::new();
        push_float(&mut slow, t.parse().unwrap());
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap(),
            "{t}"
        );
    }
}

/// splitmix64: a fixed-seed generator, so a failure can be replayed.
/// Also counts the float literals generated.
struct Rng {
    state: u64,
    floats: usize,
}
impl Rng {
    fn new(seed: u64) -> Self {
        Rng {
            state: seed,
            floats: 0,
        }
    }
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// JSON whitespace between tokens, now and then (no newline: one document a line).
fn gen_ws(r: &mut Rng, out: &mut String) {
    if r.below(8) == 0 {
        out.push_str(r.pick(&[" ", "\t", "  ", "\r", " \t "]));
    }
}

fn gen_char(r: &mut Rng, out: &mut String) {
    match r.below(16) {
        0 => out.push_str(r.pick(&["\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"])),
        1 => out.push_str(&format!("\\u{:04x}", r.below(0x20))),
        // Printable ASCII, DEL and the escape characters, written as \u escapes.
        2 => {
            let c = [0x41, 0x22, 0x5c, 0x2f, 0x7f, 0x7e, 0x20][r.below(7) as usize];
            out.push_str(&if r.below(2) == 0 {
                format!("\\u{c:04x}")
            } else {
                format!("\\u{c:04X}")
            });
        }
        3 => out.push('\u{7f}'),
        4 | 5 => {
            // A BMP character (not a surrogate), raw or escaped.
            let mut c = 0x80 + r.below(0xFFFF - 0x80) as u32;
            if (0xD800..0xE000).contains(&c) {
                c -= 0x800;
            }
            if r.below(2) == 0 {
                out.push(char::from_u32(c).unwrap());
            } else {
                out.push_str(&format!("\\u{c:04X}"));
            }
        }
        6 => {
            // An astral character, raw or as a surrogate pair in either case.
            let c = 0x10000 + r.below(0x10_0000) as u32;
            match r.below(3) {
                0 => out.push(char::from_u32(c).unwrap()),
                k => {
                    let v = c - 0x10000;
                    let (hi, lo) = (0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                    out.push_str(&if k == 1 {
                        format!("\\u{hi:04x}\\u{lo:04x}")
                    } else {
                        format!("\\u{hi:04X}\\u{lo:04X}")
                    });
                }
            }
        }
        7 => out.push_str(r.pick(&["é", "東京", "😀", "\u{ffff}", "\u{e000}", "\u{80}"])),
        _ => match (b' ' + r.below(95) as u8) as char {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        },
    }
}

fn gen_string(r: &mut Rng, out: &mut String) {
    out.push('"');
    // Mostly short; sometimes long runs of plain ASCII (the word-at-a-time scan).
    let n = if r.below(10) == 0 {
        r.below(80)
    } else {
        r.below(12)
    };
    let plain = r.below(3) == 0;
    for _ in 0..n {
        if plain {
            out.push((b'a' + r.below(26) as u8) as char);
        } else {
            gen_char(r, out);
        }
    }
    out.push('"');
}

/// An object key: often one of a few short ones (duplicates, shared
/// prefixes, code point order), sometimes written with escapes.
fn gen_key(r: &mut Rng, out: &mut String) {
    match r.below(6) {
        0 => out.push_str(r.pick(&[
            r#""a""#,
            r#""\u0061""#,
            r#""ab""#,
            r#""a\u0062""#,
            r#""a\u0000""#,
            r#""A""#,
            r#""""#,
            r#""é""#,
            r#""\u00e9""#,
            r#""😀""#,
            r#""\ud83d\ude00""#,
            r#""\uffff""#,
            r#""checksum""#,
            r#""secret""#,
        ])),
        _ => gen_string(r, out),
    }
}

fn gen_digits(r: &mut Rng, n: u64, out: &mut String) {
    for _ in 0..n {
        out.push((b'0' + r.below(10) as u8) as char);
    }
}

/// A random finite double, from its bits.
fn gen_double(r: &mut Rng) -> f64 {
    loop {
        let f = f64::from_bits(r.next());
        if f.is_finite() {
            return f;
        }
    }
}

fn gen_number(r: &mut Rng, out: &mut String) {
    let kind = r.below(12);
    r.floats += usize::from(matches!(kind, 2 | 3 | 4 | 6));
    match kind {
        // Integers: small, long, and past 2^64.
        0 | 1 => {
            if r.below(2) == 0 {
                out.push('-');
            }
            match r.below(4) {
                0 => out.push('0'),
                k => {
                    out.push((b'1' + r.below(9) as u8) as char);
                    let len = [0, 6, 19, 60][k as usize];
                    let n = r.below(len + 1);
                    gen_digits(r, n, out);
                }
            }
        }
        // Doubles from random bits (subnormals included), printed in
        // several ways: shortest, too many digits, 17 digits (0.1+0.2 style).
        2 | 3 => {
            let f = gen_double(r);
            let text = match r.below(4) {
                0 => format!("{f:e}"),
                1 => format!("{f:.*e}", r.below(25) as usize),
                2 => format!("{f:.16e}"),
                _ => format!("{f:.15e}"),
            };
            out.push_str(&text);
        }
        // Powers of two and their neighbours: the uneven rounding gap.
        4 => {
            let f = 2f64.powi(r.below(2098) as i32 - 1074);
            let f = match r.below(3) {
                0 => f,
                1 => f64::from_bits(f.to_bits() + 1),
                _ => f64::from_bits(f.to_bits().saturating_sub(1).max(1)),
            };
            out.push_str(&format!("{f:e}"));
        }
        // Edges: the fixed/exponent switch, ±0, overflow, underflow, ties.
        5 => out.push_str(r.pick(&[
            "1e16",
            "9999999999999998.0",
            "1e15",
            "999999999999999.9",
            "0.0001",
            "0.00009999999999999999",
            "1e-5",
            "-0.0",
            "-0e5",
            "0.0e-0",
            "0E+0",
            "1e400",
            "-1e400",
            "1e-400",
            "-1e-400",
            "2.5e-324",
            "4.9e-324",
            "2.2250738585072011e-308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "0.1",
            "0.2",
            "0.30000000000000004",
            "864140230362545.204014",
            "9007199254740993",
            "9007199254740993.0",
            "123456789012345678901234567890",
            "-0",
        ])),
        // A k + 1/4 or 3/4 with 14-17 digits: exact ties between shortest strings.
        6 => {
            out.push((b'1' + r.below(9) as u8) as char);
            let n = 13 + r.below(3);
            gen_digits(r, n, out);
            out.push_str(r.pick(&[".25", ".75", ".125", ".5"]));
        }
        // Decimals as callers write them, with and without exponents.
        _ => {
            if r.below(2) == 0 {
                out.push('-');
            }
            let long = r.below(5) == 0;
            let int_len = 1 + r.below(if long { 40 } else { 6 });
            if r.below(6) == 0 {
                out.push('0');
            } else {
                out.push((b'1' + r.below(9) as u8) as char);
                gen_digits(r, int_len - 1, out);
            }
            if r.below(2) == 0 {
                out.push('.');
                let n = 1 + r.below(20);
                gen_digits(r, n, out);
            }
            if r.below(3) == 0 {
                out.push(if r.below(2) == 0 { 'e' } else { 'E' });
                out.push_str(r.pick(&["+", "-", ""]));
                let huge = r.below(4) == 0;
                out.push_str(&r.below(if huge { 420 } else { 30 }).to_string());
            }
        }
    }
}

fn gen_value(r: &mut Rng, depth: u32, out: &mut String) {
    let pick = if depth >= 4 {
        4 + r.below(6)
    } else {
        r.below(10)
    };
    match pick {
        0 | 1 => {
            out.push('{');
            gen_ws(r, out);
            // Now and then, at the root, more members than the tree's
            // duplicate index kicks in at.
            let many = depth == 0 && r.below(20) == 0;
            let n = if many { 17 + r.below(20) } else { r.below(6) };
            let mut keys: Vec<String> = Vec::new();
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                    gen_ws(r, out);
                }
                let mut k = String::new();
                if !keys.is_empty() && r.below(6) == 0 {
                    k = keys[r.below(keys.len() as u64) as usize].clone();
                } else {
                    gen_key(r, &mut k);
                }
                keys.push(k.clone());
                out.push_str(&k);
                gen_ws(r, out);
                out.push(':');
                gen_ws(r, out);
                gen_value(r, depth + 1, out);
                gen_ws(r, out);
            }
            out.push('}');
        }
        2 | 3 => {
            out.push('[');
            gen_ws(r, out);
            for i in 0..r.below(6) {
                if i > 0 {
                    out.push(',');
                    gen_ws(r, out);
                }
                gen_value(r, depth + 1, out);
                gen_ws(r, out);
            }
            out.push(']');
        }
        4 | 5 => gen_number(r, out),
        6 | 7 => gen_string(r, out),
        8 => out.push_str(r.pick(&["true", "false", "null"])),
        _ => gen_number(r, out),
    }
}

/// A document: mostly an object (as TTS bodies are), now and then another
/// value or a deep chain of containers.
fn gen_doc(r: &mut Rng) -> String {
    let mut s = String::new();
    gen_ws(r, &mut s);
    match r.below(100) {
        0 => {
            // Nesting up to the limit CPython and the parser share.
            let depth = 1 + r.below(511) as usize;
            let opens: Vec<bool> = (0..depth).map(|_| r.below(2) == 0).collect();
            for &object in &opens {
                s.push_str(if object { r#"{"k":"# } else { "[" });
            }
            gen_value(r, 4, &mut s);
            for &object in opens.iter().rev() {
                s.push(if object { '}' } else { ']' });
            }
        }
        1..=10 => gen_value(r, 0, &mut s),
        _ => {
            let mut v = String::new();
            while !v.starts_with('{') {
                v.clear();
                gen_value(r, 0, &mut v);
            }
            s.push_str(&v);
        }
    }
    gen_ws(r, &mut s);
    s
}

/// The edits the TTS signer makes, on the document's root object.
const EDITS: &[Edit<'static>] = &[
    Edit::Remove("checksum"),
    Edit::Set("secret", "s3cr\u{e9}t \u{1F600}\"\\"),
    Edit::Set("identifire", "www.example.com"),
];

/// The same in Python, applied to `o` when it is a dict.
const PY_EDITS: &str = "o.pop('checksum', None); o['secret'] = 's3cr\\u00e9t \\U0001F600\"\\\\'; o['identifire'] = 'www.example.com'";

#[test]
fn differential_against_cpython() {
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if python.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 is required in CI for the differential test"
        );
        eprintln!("SKIPPED: python3 not found; the CPython differential test did not run");
        return;
    }
    let mut r = Rng::new(0x005E_ED0F_C0DE);
    // COUNTERSIGN_DIFF_DOCS changes the count (a longer local run).
    let count = std::env::var("COUNTERSIGN_DIFF_DOCS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let mut docs: Vec<String> = (0..count).map(|_| gen_doc(&mut r)).collect();
    // And mangled documents the parser accepts (odd but valid JSON), one
    // line each: CPython must accept them too and print the same.
    let mut m = Rng::new(0x3A_4613D);
    let mut mangled = 0;
    while mangled < count / 10 {
        let b = mangled_doc(&mut m);
        if Doc::parse(&b).is_ok() && !b.contains(&b'\n') {
            docs.push(String::from_utf8(b).unwrap());
            mangled += 1;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("docs.jsonl");
    std::fs::write(&input, docs.join("\n")).unwrap();
    // One process for every document: per line, the dumps, its SHA-256, and
    // the dumps after the signer's edits ("-" when the root is no object).
    let script = format!(
        "import hashlib, json, sys\n\
         out = []\n\
         for line in open(sys.argv[1], 'rb').read().split(b'\\n'):\n\
         \x20   o = json.loads(line.decode('utf-8'))\n\
         \x20   d = json.dumps(o, sort_keys=True)\n\
         \x20   e = '-'\n\
         \x20   if isinstance(o, dict):\n\
         \x20       {PY_EDITS}\n\
         \x20       e = json.dumps(o, sort_keys=True)\n\
         \x20   out.append('\\t'.join([d, hashlib.sha256(d.encode()).hexdigest(), e]))\n\
         sys.stdout.write('\\n'.join(out))\n"
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .split('\n')
        .collect();
    assert_eq!(expected.len(), docs.len());
    let mut mismatches = Vec::new();
    for (doc, want) in docs.iter().zip(expected) {
        let mut cols = want.split('\t');
        let (want_dumps, want_sum, want_edited) = (
            cols.next().unwrap(),
            cols.next().unwrap(),
            cols.next().unwrap(),
        );
        let (got, sum, edited) = match Doc::parse(doc.as_bytes()) {
            Ok(d) => {
                let mut text = Vec::new();
                d.write_sorted(&mut text);
                let sum = String::from_utf8(sha256_hex(&text).to_vec()).unwrap();
                let edited = if d.root_is_object() {
                    let mut e = Vec::new();
                    d.write_sorted_with(EDITS, &mut e);
                    String::from_utf8(e).unwrap()
                } else {
                    "-".to_string()
                };
                (String::from_utf8(text).unwrap(), sum, edited)
            }
            Err(e) => (format!("ERROR {e}"), String::new(), String::new()),
        };
        if got != want_dumps || sum != want_sum || edited != want_edited {
            mismatches.push(format!(
                "input  {doc}\npython {want}\nours   {got}\t{sum}\t{edited}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ; first:\n{}",
        mismatches.len(),
        docs.len(),
        mismatches
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    // The generator must keep producing what it is for.
    assert!(
        r.floats > count,
        "only {} floats in {count} documents",
        r.floats
    );
}

/// A generated document cut short, with bytes flipped, dropped or
/// repeated, or stray bytes inserted (invalid UTF-8 included).
fn mangled_doc(r: &mut Rng) -> Vec<u8> {
    let mut b = gen_doc(r).into_bytes();
    for _ in 0..1 + r.below(3) {
        if b.is_empty() {
            break;
        }
        let at = r.below(b.len() as u64) as usize;
        match r.below(5) {
            0 => b.truncate(at),
            1 => b[at] = r.next() as u8,
            2 => {
                b.remove(at);
            }
            3 => b.insert(at, b[at]),
            _ => {
                let stray = b"\"\\{}[],:.-eE0u\xed\xa0\xff\x00";
                b.insert(at, stray[r.below(stray.len() as u64) as usize]);
            }
        }
    }
    b
}

/// Bodies a caller could send by mistake or malice: the parser refuses or
/// prints; it never panics, and whatever it accepts it prints as ASCII,
/// the same twice. (What it accepts also goes to CPython in
/// `differential_against_cpython`.)
#[test]
fn mangled_documents_are_refused_or_printed_never_a_panic() {
    let mut r = Rng::new(0xBAD_B0D1E5);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let b = mangled_doc(&mut r);
        if let Ok(doc) = Doc::parse(&b) {
            accepted += 1;
            let (mut once, mut twice) = (Vec::new(), Vec::new());
            doc.write_sorted_with(EDITS, &mut once);
            doc.write_sorted_with(EDITS, &mut twice);
            assert!(once.is_ascii(), "{}", String::from_utf8_lossy(&b));
            assert_eq!(once, twice);
        }
    }
    // The mangling must leave some documents valid (about 13 %), and refuse most.
    assert!((1_000..19_000).contains(&accepted), "{accepted} accepted");
}

/// The parser's own UTF-8 check agrees with std's on every lead byte and
/// second byte, with the bytes after them at and around the edges of the
/// continuation range.
#[test]
fn utf8_check_agrees_with_std() {
    let edges = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF];
    for b0 in 0x80..=0xFFu8 {
        for b1 in 0..=0xFFu8 {
            for b2 in edges {
                for b3 in edges {
                    let b = [b0, b1, b2, b3];
                    let want = (1..=4).find(|&n| std::str::from_utf8(&b[..n]).is_ok());
                    assert_eq!(super::text::utf8_len(&b, 0), want, "{b:02x?}");
                }
            }
        }
    }
    assert_eq!(super::text::utf8_len(b"\xe6\x9d", 0), None);
}
