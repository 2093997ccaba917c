//! The whole AWS SigV4 test suite (aws-c-auth's `v4` cases, vendored with
//! its licence in `tests/vectors/aws-sigv4`): for every case, the
//! canonical request, the string to sign and the signature.

use std::path::{Path, PathBuf};

use super::*;

struct Case {
    name: String,
    context: serde_json::Value,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/aws-sigv4/v4")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

/// A case's request: `header-signed-request.txt` less its Authorization
/// (and, where the suite adds the token after signing, the token).
fn case(dir: &Path) -> Case {
    let context: serde_json::Value = serde_json::from_str(&read(dir, "context.json")).unwrap();
    let text = read(dir, "header-signed-request.txt");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let mut parts = request_line.splitn(2, ' ');
    let method = parts.next().unwrap().to_string();
    let rest = parts.next().unwrap();
    let target = rest.strip_suffix(" HTTP/1.1").unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // An obs-folded continuation: part of the previous value.
            let last = headers.last_mut().unwrap();
            last.1.push('\n');
            last.1.push_str(line);
            continue;
        }
        let (n, v) = line.split_once(':').unwrap();
        headers.push((n.to_ascii_lowercase(), v.to_string()));
    }
    headers.retain(|(n, _)| n != "authorization");
    if context["omit_session_token"].as_bool() == Some(true) {
        headers.retain(|(n, _)| n != "x-amz-security-token");
    }
    Case {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        context,
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| case(d)).collect()
}

#[test]
fn every_v4_case_of_the_aws_suite() {
    let all = cases();
    assert_eq!(all.len(), 38, "the vendored suite has 38 v4 cases");
    let mut failures = Vec::new();
    for c in &all {
        let dir = suite_dir().join(&c.name);
        let ctx = &c.context;
        let payload = payload_hash(&c.body);
        let headers: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let req = Signable {
            method: &c.method,
            path: &c.path,
            query: &c.query,
            headers: &headers,
            payload_hash: &payload,
        };
        // The suite's paths are raw (a space, UTF-8): encoded once, as for
        // any service but S3; `normalize` as the case says.
        let rules = UriRules {
            normalize: ctx["normalize"].as_bool().unwrap(),
            encode: true,
        };
        let (canonical, _) = canonical_request(&req, rules);
        let expected = read(&dir, "header-canonical-request.txt");
        if canonical != expected {
            failures.push(format!(
                "{}: canonical request\n{canonical}\n--- expected\n{expected}",
                c.name
            ));
            continue;
        }
        let amz_date = c
            .headers
            .iter()
            .find(|(n, _)| n == "x-amz-date")
            .map(|(_, v)| v.clone())
            .unwrap();
        let region = ctx["region"].as_str().unwrap();
        let service = ctx["service"].as_str().unwrap();
        let scope = scope(&amz_date[..8], region, service);
        let sts = string_to_sign(&amz_date, &scope, &canonical);
        if sts != read(&dir, "header-string-to-sign.txt") {
            failures.push(format!("{}: string to sign\n{sts}", c.name));
            continue;
        }
        let secret = ctx["credentials"]["secret_access_key"].as_str().unwrap();
        let key = signing_key(secret, &amz_date[..8], region, service);
        let sig = signature(&key, &sts);
        if sig != read(&dir, "header-signature.txt").trim() {
            failures.push(format!("{}: signature {sig}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn s3_rules_sign_the_path_as_sent() {
    let headers = vec![("host", "s3.amazonaws.com")];
    let req = Signable {
        method: "GET",
        path: "/bucket/a%20b/%2B/./..",
        query: "",
        headers: &headers,
        payload_hash: "UNSIGNED-PAYLOAD",
    };
    let (canonical, _) = canonical_request(&req, UriRules::S3);
    assert_eq!(canonical.lines().nth(1), Some("/bucket/a%20b/%2B/./.."));
    // Every other service: normalised, and the encoded path encoded again.
    let (canonical, _) = canonical_request(&req, UriRules::GENERAL);
    assert_eq!(canonical.lines().nth(1), Some("/bucket/a%2520b/"));
}

#[test]
fn a_plus_in_the_query_is_a_plus() {
    let headers: Vec<(&str, &str)> = vec![];
    let req = Signable {
        method: "GET",
        path: "/",
        query: "b=a+b&a=%7e&c",
        headers: &headers,
        payload_hash: "x",
    };
    let (canonical, _) = canonical_request(&req, UriRules::S3);
    assert_eq!(canonical.lines().nth(2), Some("a=~&b=a%2Bb&c="));
}
