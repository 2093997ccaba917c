//! XRTC reads non-standard JSON: object keys may be bare identifiers
//! (`{items:[…]}`), as the API document's own curl examples show. This turns
//! such text into standard JSON by quoting bare keys, then parses it.

/// Parses XRTC-style JSON. `None` when it is not JSON even after quoting keys.
pub fn parse(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&quote_bare_keys(text)).ok()
}

/// Quotes an identifier that stands where a key may (after `{` or `,`,
/// outside any string) and is followed by `:`. Everything else is copied.
pub fn quote_bare_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.char_indices().peekable();
    let mut in_string = false;
    let mut escaped = false;
    // The last significant (non-whitespace) char outside strings.
    let mut last = '\0';
    while let Some((i, c)) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                last = '"';
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            continue;
        }
        if (c.is_ascii_alphabetic() || c == '_') && (last == '{' || last == ',') {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let ident = &text[i..end];
            let rest = text[end..].trim_start();
            if rest.starts_with(':') {
                out.push('"');
                out.push_str(ident);
                out.push('"');
            } else {
                out.push_str(ident);
            }
            last = 'a';
            continue;
        }
        if !c.is_whitespace() {
            last = c;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_bare_keys() {
        assert_eq!(
            quote_bare_keys(r#"{items:[{"portalid":"abc", "payload":"a:b,{c:d}"}]}"#),
            r#"{"items":[{"portalid":"abc", "payload":"a:b,{c:d}"}]}"#
        );
        assert_eq!(
            quote_bare_keys(r#"{ portals : null }"#),
            r#"{ "portals" : null }"#
        );
        assert_eq!(
            quote_bare_keys("[true, false, null]"),
            "[true, false, null]"
        );
        assert_eq!(
            quote_bare_keys(r#"{"a":"x\"y:z",b_2:1}"#),
            r#"{"a":"x\"y:z","b_2":1}"#
        );
    }

    #[test]
    fn parses_document_examples() {
        let v = parse(r#"{portals:[{"portalid":"abc111"}],"mode":"stream","schedule":"FIFO"}"#)
            .unwrap();
        assert_eq!(v["portals"][0]["portalid"], "abc111");
        assert_eq!(v["mode"], "stream");
        assert!(parse("{items:[}").is_none());
        assert!(parse(r#"{"a":1} trailing"#).is_none());
    }
}
