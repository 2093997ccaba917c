//! The crate's layers only point down (docs/architecture.md): every file of
//! `src/` is mapped to a layer, and each `crate::` path it names must be of
//! its own layer or one below. Top-level modules also form no import circle.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. `beside` (the fakes) may use only foundations and itself.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations",
        &[
            "secret",
            "error",
            "config",
            "headers",
            "canonical",
            "metrics",
        ],
    ),
    ("vocabulary", &["vocab"]),
    (
        "machinery",
        &["upstream", "session", "limits", "keys", "nonce", "state"],
    ),
    ("kinds", &["kinds", "recipe"]),
    ("pipeline", &["proxy", "gateway"]),
    ("edges", &["server", "admin", "demo", "explain"]),
    ("commands", &["main", "lib"]),
];
const BESIDE: &str = "fake";

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level module a file of `src/` belongs to.
fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    // `session_tests.rs` is `session`'s test module (`#[path]`).
    let name = first.trim_end_matches(".rs");
    name.strip_suffix("_tests").unwrap_or(name).to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named by `crate::…` paths in `text`, grouped
/// imports (`use crate::{a::X, b}`) included. Comments are skipped.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        // `$crate::` and identifiers ending in "crate" are not this crate's paths.
        if before.is_some_and(|c| c == '$' || c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if depth >= 1 && c != ',' {
                    item.push(c);
                }
            }
            items.push(item);
            for it in items {
                let name: String = it
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn layers_only_point_down_and_modules_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let module = module_of(rel);
        let text = std::fs::read_to_string(file).unwrap();
        let used = crate_paths(&text);
        for target in &used {
            if *target == module || target == "USER_AGENT" {
                continue;
            }
            graph
                .entry(module.clone())
                .or_default()
                .insert(target.clone());
            if module == BESIDE {
                if layer_of(target) != Some(0) {
                    problems.push(format!(
                        "{}: the fakes use only foundations, not crate::{target}",
                        rel.display()
                    ));
                }
                continue;
            }
            if target == BESIDE {
                // Only the edges start fakes (demo) and the command line runs them.
                if layer_of(&module).is_none_or(|l| l < layer_of("server").unwrap()) {
                    problems.push(format!(
                        "{}: only edges and commands may start fakes (crate::fake)",
                        rel.display()
                    ));
                }
                continue;
            }
            match (layer_of(&module), layer_of(target)) {
                (None, _) => problems.push(format!(
                    "{}: module {module} is in no layer: add it to LAYERS",
                    rel.display()
                )),
                (_, None) => problems.push(format!(
                    "{}: crate::{target} is in no layer: add it to LAYERS",
                    rel.display()
                )),
                (Some(from), Some(to)) if to > from => problems.push(format!(
                    "{}: {} ({}) uses crate::{target} ({}), a layer above",
                    rel.display(),
                    module,
                    LAYERS[from].0,
                    LAYERS[to].0
                )),
                _ => {}
            }
        }
    }
    // Circles among top-level modules (a module's own files may use each other).
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == start {
                    // Each circle once: written from its smallest module.
                    let at_min = (0..path.len()).min_by_key(|i| &path[*i]).unwrap_or(0);
                    let mut circle: Vec<_> = path[at_min..]
                        .iter()
                        .chain(&path[..at_min])
                        .cloned()
                        .collect();
                    circle.push(circle[0].clone());
                    problems.push(format!("import circle: {}", circle.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} layering problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn the_scanner_sees_grouped_and_plain_paths() {
    let found = crate_paths(
        "use crate::{config::{A, B}, kinds};\nlet x = crate::proxy::f(); // crate::nope\n$crate::macro_only",
    );
    let found: Vec<_> = found.into_iter().collect();
    assert_eq!(found, ["config", "kinds", "proxy"]);
}
