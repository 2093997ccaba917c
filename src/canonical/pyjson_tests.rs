use super::*;

fn roundtrip(text: &str) -> String {
    dumps_sorted(&parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}")))
}

include!("pyjson_known.rs");

#[test]
fn known_answers_from_cpython() {
    for (body, dumped, sum) in KNOWN {
        let v = parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(dumps_sorted(&v), *dumped, "dumps of {body}");
        assert_eq!(checksum(&v), *sum, "checksum of {body}");
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
        let e = parse(text.as_bytes()).expect_err(text);
        assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
    }
    assert!(parse(b"\"\xff\"").is_err(), "invalid UTF-8");
    let deep = "[".repeat(513) + &"]".repeat(513);
    assert!(parse(deep.as_bytes()).is_err());
    let ok = "[".repeat(512) + &"]".repeat(512);
    assert!(parse(ok.as_bytes()).is_ok());
}

#[test]
fn many_keys_and_duplicates_stay_linear_and_last_wins() {
    // 200,000 members, every key twice (a quadratic duplicate search made this take minutes).
    let mut text = String::from("{");
    for round in 0..2 {
        for i in 0..100_000 {
            if round + i > 0 {
                text.push(',');
            }
            text.push_str(&format!("\"k{i}\":{round}"));
        }
    }
    text.push('}');
    let v = parse(text.as_bytes()).unwrap();
    let Value::Object(m) = &v else { panic!() };
    assert_eq!(m.len(), 100_000);
    assert_eq!(v.get("k77"), Some(&Value::Int("1".into())));
    assert_eq!(v.get("k99999"), Some(&Value::Int("1".into())));
}

#[test]
fn set_get_remove_keep_the_rest() {
    let mut v = parse(br#"{"a":1,"checksum":"x","b":[2]}"#).unwrap();
    assert_eq!(v.remove("checksum"), Some(Value::Str("x".into())));
    v.set("a", Value::Int("5".into()));
    v.set("c", Value::Null);
    assert_eq!(
        v.get("b"),
        Some(&Value::Array(vec![Value::Int("2".into())]))
    );
    assert_eq!(dumps_sorted(&v), r#"{"a": 5, "b": [2], "c": null}"#);
}

/// splitmix64: a fixed-seed generator, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn gen_string(r: &mut Rng, out: &mut String) {
    out.push('"');
    for _ in 0..r.below(12) {
        match r.below(10) {
            0 => out.push_str(
                ["\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"][r.below(8) as usize],
            ),
            1 => out.push_str(&format!("\\u{:04x}", r.below(0x20))),
            2 => {
                // A BMP character (not a surrogate), raw or escaped.
                let mut c = 0x7f + r.below(0xFFFF - 0x7f) as u32;
                if (0xD800..0xE000).contains(&c) {
                    c -= 0x800;
                }
                if r.below(2) == 0 {
                    out.push(char::from_u32(c).unwrap());
                } else {
                    out.push_str(&format!("\\u{c:04X}"));
                }
            }
            3 => {
                let c = 0x10000 + r.below(0xFFFF) as u32;
                if r.below(2) == 0 {
                    out.push(char::from_u32(c).unwrap());
                } else {
                    let v = c - 0x10000;
                    out.push_str(&format!(
                        "\\u{:04x}\\u{:04x}",
                        0xD800 + (v >> 10),
                        0xDC00 + (v & 0x3FF)
                    ));
                }
            }
            _ => match (b' ' + r.below(95) as u8) as char {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            },
        }
    }
    out.push('"');
}

fn gen_number(r: &mut Rng, out: &mut String) {
    if r.below(2) == 0 {
        out.push('-');
    }
    let long = r.below(5) == 0;
    let int_len = 1 + r.below(if long { 40 } else { 6 });
    if r.below(6) == 0 {
        out.push('0');
    } else {
        out.push((b'1' + r.below(9) as u8) as char);
        for _ in 1..int_len {
            out.push((b'0' + r.below(10) as u8) as char);
        }
    }
    if r.below(2) == 0 {
        out.push('.');
        for _ in 0..1 + r.below(20) {
            out.push((b'0' + r.below(10) as u8) as char);
        }
    }
    if r.below(3) == 0 {
        out.push(if r.below(2) == 0 { 'e' } else { 'E' });
        match r.below(3) {
            0 => out.push('+'),
            1 => out.push('-'),
            _ => {}
        }
        let huge = r.below(4) == 0;
        out.push_str(&r.below(if huge { 420 } else { 30 }).to_string());
    }
}

fn gen_value(r: &mut Rng, depth: u32, out: &mut String) {
    let pick = if depth >= 6 {
        4 + r.below(5)
    } else {
        r.below(9)
    };
    match pick {
        0 | 1 => {
            out.push('{');
            let n = r.below(5);
            let mut keys: Vec<String> = Vec::new();
            for i in 0..n {
                if i > 0 {
                    out.push_str(if r.below(2) == 0 { "," } else { " , " });
                }
                let mut k = String::new();
                if !keys.is_empty() && r.below(6) == 0 {
                    k = keys[r.below(keys.len() as u64) as usize].clone();
                } else {
                    gen_string(r, &mut k);
                }
                keys.push(k.clone());
                out.push_str(&k);
                out.push(':');
                gen_value(r, depth + 1, out);
            }
            out.push('}');
        }
        2 | 3 => {
            out.push('[');
            for i in 0..r.below(5) {
                if i > 0 {
                    out.push(',');
                }
                gen_value(r, depth + 1, out);
            }
            out.push(']');
        }
        4 | 5 => gen_number(r, out),
        6 => gen_string(r, out),
        7 => out.push_str(["true", "false", "null"][r.below(3) as usize]),
        _ => gen_number(r, out),
    }
}

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
    let mut r = Rng(0x005E_ED0F_C0DE);
    // COUNTERSIGN_DIFF_DOCS raises the count for a longer local run.
    let count = std::env::var("COUNTERSIGN_DIFF_DOCS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let docs: Vec<String> = (0..count)
        .map(|_| {
            let mut s = String::new();
            gen_value(&mut r, 0, &mut s);
            s
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("docs.jsonl");
    std::fs::write(&input, docs.join("\n")).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import json,sys\nfor line in open(sys.argv[1], encoding='utf-8'):\n    print(json.dumps(json.loads(line), sort_keys=True))")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(expected.len(), docs.len());
    let mut mismatches = Vec::new();
    for (doc, want) in docs.iter().zip(expected) {
        let got = match parse(doc.as_bytes()) {
            Ok(v) => dumps_sorted(&v),
            Err(e) => format!("ERROR {e}"),
        };
        if got != want {
            mismatches.push(format!("input  {doc}\npython {want}\nours   {got}"));
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
}
