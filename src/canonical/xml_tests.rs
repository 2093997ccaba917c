use super::*;

const DOC_EXAMPLE: &str = "<?xml version='1.0' encoding='UTF-8' ?><teamdrive><command>loginuser</command><requesttime>1700000000</requesttime><username>YourUserName</username><password>YourPassword</password></teamdrive>";

fn run(body: &str, time: Option<u64>, dist: Option<&str>) -> Result<String, XmlError> {
    edit(body.as_bytes(), time, dist).map(|(out, _)| String::from_utf8(out).unwrap())
}

#[test]
fn replaces_requesttime_and_nothing_else() {
    let out = run(DOC_EXAMPLE, Some(1795399000), None).unwrap();
    assert_eq!(out, DOC_EXAMPLE.replace("1700000000", "1795399000"));
}

#[test]
fn inserts_requesttime_after_command_and_distributor_after_it() {
    let body = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<teamdrive>\n  <command>getuserdata</command>\n  <username>u</username>\n</teamdrive>\n";
    let out = run(body, Some(42), Some("ACME & Co")).unwrap();
    assert_eq!(
        out,
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<teamdrive>\n  <command>getuserdata</command><requesttime>42</requesttime><distributor>ACME &amp; Co</distributor>\n  <username>u</username>\n</teamdrive>\n"
    );
    // An existing distributor is the caller's choice: left alone.
    let with = body.replace("<username>", "<distributor>X</distributor><username>");
    assert_eq!(run(&with, None, Some("ACME")).unwrap(), with);
    // keep mode, requesttime present: the distributor goes after it.
    let timed = DOC_EXAMPLE;
    let out = run(timed, None, Some("D")).unwrap();
    assert_eq!(
        out,
        DOC_EXAMPLE.replace(
            "</requesttime>",
            "</requesttime><distributor>D</distributor>"
        )
    );
}

#[test]
fn comments_cdata_and_nested_elements_are_not_mistaken_for_fields() {
    let body = "<teamdrive><!-- <requesttime>1</requesttime> --><command>x</command><data><requesttime>2</requesttime></data><note><![CDATA[<requesttime>3</requesttime>]]></note></teamdrive>";
    let out = run(body, Some(9), None).unwrap();
    assert_eq!(
        out,
        body.replace(
            "<command>x</command>",
            "<command>x</command><requesttime>9</requesttime>"
        )
    );
}

#[test]
fn self_closing_requesttime_and_attributes() {
    let body = "<teamdrive a=\"1>2\"><command kind='x'>c</command><requesttime/></teamdrive>";
    assert_eq!(
        run(body, Some(5), None).unwrap(),
        "<teamdrive a=\"1>2\"><command kind='x'>c</command><requesttime>5</requesttime></teamdrive>"
    );
}

#[test]
fn bodies_it_cannot_understand_are_refused() {
    for (body, why) in [
        ("", "empty"),
        ("not xml", "text"),
        ("<teamdrive><command>x</command>", "unclosed root"),
        ("<teamdrive><command>x</cmd></teamdrive>", "mismatched"),
        ("<other><command>x</command></other>", "wrong root"),
        ("<teamdrive><requesttime>1</requesttime></teamdrive>", "no command"),
        ("<teamdrive><command>a</command><command>b</command></teamdrive>", "two commands"),
        ("<teamdrive><command>a</command><requesttime>1</requesttime><requesttime>2</requesttime></teamdrive>", "two times"),
        ("<teamdrive><command>a</command><distributor>x</distributor><distributor/></teamdrive>", "two distributors"),
        ("<teamdrive><command>a</command><requesttime><x/></requesttime></teamdrive>", "time not text"),
        ("<!DOCTYPE x [<!ENTITY e 'v'>]><teamdrive><command>a</command></teamdrive>", "doctype"),
        ("<teamdrive><command>a</command></teamdrive><teamdrive/>", "two roots"),
        ("<teamdrive><command>a</command><!-- open </teamdrive>", "open comment"),
        ("<?xml version='1.0' encoding='UTF-16'?><teamdrive><command>a</command></teamdrive>", "utf-16 decl"),
        ("<?xml version=\"1.0\" encoding=\"utf-32BE\"?><teamdrive><command>a</command></teamdrive>", "utf-32 decl"),
        ("<?xml version='1.0' encoding = 'ISO-10646-UCS-2' ?><teamdrive><command>a</command></teamdrive>", "ucs-2 decl"),
        ("<teamdrive x=1><command>a</command></teamdrive>", "unquoted attribute"),
    ] {
        assert!(run(body, Some(1), Some("d")).is_err(), "{why}: {body:?} was accepted");
    }
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("<t/>".bytes().flat_map(|b| [b, 0]))
        .collect();
    assert!(matches!(
        edit(&utf16, Some(1), None),
        Err(XmlError::Encoding(_))
    ));
    // A single-byte encoding named in the declaration is fine.
    for decl in [
        "encoding='UTF-8'",
        "encoding=\"iso-8859-1\"",
        "standalone='yes'",
    ] {
        let body =
            format!("<?xml version='1.0' {decl}?><teamdrive><command>a</command></teamdrive>");
        assert!(edit(body.as_bytes(), Some(1), None).is_ok(), "{decl}");
    }
}

#[test]
fn error_messages_say_where() {
    let e = run("<teamdrive><command>x</cmd></teamdrive>", Some(1), None).unwrap_err();
    assert_eq!(e.to_string(), "the XML body is not well-formed at byte 21: a closing tag that does not match the open element");
}

/// A tiny deterministic PRNG (splitmix64) for the property test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Checks, without the scanner, that every change is one the edit may make.
fn only_allowed_changes(input: &[u8], out: &[u8], splices: &[Splice]) {
    assert_eq!(apply(input, splices), out);
    let mut last_end = 0;
    for s in splices {
        assert!(s.range.start >= last_end, "overlapping splices");
        last_end = s.range.end;
        let before = &input[..s.range.start];
        let replaced = &input[s.range.clone()];
        let text = s.text.as_str();
        if s.range.is_empty() {
            // An insertion right after the end of a command or requesttime
            // element (`</command >` with a space is valid XML; `<command/>` too).
            let lt = before
                .iter()
                .rposition(|&b| b == b'<')
                .expect("a tag before");
            let tag = &before[lt..];
            let closes = tag.starts_with(b"</command") || tag.starts_with(b"</requesttime");
            let self_closed = (tag.starts_with(b"<command") || tag.starts_with(b"<requesttime"))
                && tag.ends_with(b"/>");
            assert!(
                tag.ends_with(b">") && (closes || self_closed),
                "insertion at an unexpected place: {:?}",
                String::from_utf8_lossy(tag)
            );
            assert!(
                text.starts_with("<requesttime>") || text.starts_with("<distributor>"),
                "{text}"
            );
        } else if text.starts_with("<requesttime>") {
            assert!(
                replaced.starts_with(b"<requesttime") && replaced.ends_with(b"/>"),
                "{replaced:?}"
            );
        } else {
            // A requesttime's content: plain text replaced by digits.
            assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text}");
            assert!(!replaced.contains(&b'<'), "content with markup replaced");
            assert!(before.ends_with(b">"));
        }
    }
}

#[test]
fn property_random_mutations_are_refused_or_edited_cleanly() {
    let seeds: Vec<&[u8]> = vec![
        DOC_EXAMPLE.as_bytes(),
        b"<teamdrive>\n <command>a</command>\n <x><requesttime>7</requesttime></x>\n</teamdrive>",
        b"<?xml version='1.0'?><!-- c --><teamdrive><command>b</command><requesttime/><note><![CDATA[]]>]]></note></teamdrive>",
    ];
    let fragments: &[&[u8]] = &[
        b"<",
        b">",
        b"/",
        b"<!--",
        b"-->",
        b"<![CDATA[",
        b"]]>",
        b"<requesttime>",
        b"</requesttime>",
        b"<command>",
        b"</command>",
        b"\"",
        b"'",
        b"=",
        b" ",
        b"<distributor>",
        b"\0",
        b"&",
    ];
    let mut rng = Rng(0xC0FFEE);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..20_000 {
        let mut body = seeds[round % seeds.len()].to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(body.len() + 1);
            match rng.below(4) {
                0 if !body.is_empty() => {
                    let end = (at + 1 + rng.below(8)).min(body.len());
                    body.drain(at.min(end)..end);
                }
                1 => {
                    let f = fragments[rng.below(fragments.len())];
                    body.splice(at..at, f.iter().copied());
                }
                2 if at < body.len() => body[at] = rng.next() as u8,
                _ => body.truncate(at),
            }
        }
        let time = (rng.below(2) == 0).then_some(1_795_399_000 + round as u64);
        let dist = (rng.below(2) == 0).then_some("D&<x>");
        match edit(&body, time, dist) {
            Ok((out, splices)) => {
                accepted += 1;
                only_allowed_changes(&body, &out, &splices);
                // And the result is itself understood, with nothing left to do.
                let (again, more) = edit(&out, time, dist).expect("edited output is well-formed");
                assert_eq!(again, out);
                assert!(more
                    .iter()
                    .all(|s| s.range.len() == s.text.len()
                        && input_slice(&out, s) == s.text.as_bytes()));
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted > 1000 && refused > 1000,
        "accepted {accepted}, refused {refused}"
    );
}

fn input_slice<'a>(body: &'a [u8], s: &Splice) -> &'a [u8] {
    &body[s.range.clone()]
}

#[test]
fn deep_nesting_is_checked_as_closely_as_shallow() {
    let deep = "<a><b><c><d><e><f><requesttime>9</requesttime></f></e></d></c></b></a>";
    let body = format!("<teamdrive><command>x</command><x>{deep}</x></teamdrive>");
    // The nested requesttime is not the root's: one is inserted after <command>.
    assert_eq!(
        run(&body, Some(5), None).unwrap(),
        format!(
            "<teamdrive><command>x</command><requesttime>5</requesttime><x>{deep}</x></teamdrive>"
        )
    );
    // A mismatch or an unclosed element deep down is still found.
    assert!(run(&body.replace("</e>", "</z>"), Some(5), None).is_err());
    assert!(run(&body.replace("</f>", ""), Some(5), None).is_err());
}
