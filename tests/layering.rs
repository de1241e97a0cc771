//! The module layering of `src/`, checked from the source text: no import cycle between
//! modules, and the pure core (`config`, `k8s`, `mutate`) never sees the wire format
//! (`admission`) or the server.
//!
//! A module is a file (`src/config/validate.rs` is `config::validate`); an import is any
//! `crate::` or `super::` path outside the file's `#[cfg(test)]` tail, resolved to the
//! longest module it names. Tests may reach across layers; production code may not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules of the pure core, and the modules they must not import.
const CORE: &[&str] = &["config", "k8s", "mutate"];
const SHELL_AND_WIRE: &[&str] = &["admission", "server", "source", "cluster", "metrics", "logging"];

/// `src/config/validate.rs` → `config::validate`; `src/config/mod.rs` → `config`.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> =
        relative.with_extension("").iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|last| last == "mod" || last == "lib" || last == "main") {
        parts.pop();
    }
    parts.join("::")
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let relative = path.strip_prefix(root).unwrap_or(&path);
            // The crate root of the binary is not part of the library's layering.
            if relative != Path::new("main.rs") {
                out.insert(module_of(relative), text);
            }
        }
    }
}

/// The code before the file's test module.
fn production(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// Every path after `crate::` or `super::`, braces expanded: `crate::a::{b, c::d}` gives
/// `a::b` and `a::c::d`; `super::x` is given as `super::x`.
fn paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(anchor).map(|i| i + from) {
            from = at + anchor.len();
            if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                continue; // `$crate::`, `foo_crate::`
            }
            let prefix = if anchor == "super::" { "super::" } else { "" };
            expand(prefix, &text[from..], &mut found);
        }
    }
    found
}

fn expand(prefix: &str, rest: &str, found: &mut Vec<String>) {
    let ident_end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
    let head = rest[..ident_end].trim_end_matches(':');
    let path = format!("{prefix}{head}");
    if rest[ident_end..].starts_with('{') && rest[..ident_end].ends_with("::") {
        let body = &rest[ident_end + 1..];
        let mut depth = 0;
        let mut item_start = 0;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    item(&path, &body[item_start..i], found);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    item(&path, &body[item_start..i], found);
                    item_start = i + 1;
                }
                _ => {}
            }
        }
    } else {
        found.push(path);
    }
}

fn item(base: &str, item: &str, found: &mut Vec<String>) {
    let item = item.trim();
    if item.is_empty() || item == "self" {
        found.push(base.to_owned());
    } else {
        expand(&format!("{base}::"), item, found);
    }
}

/// The module a path names: its longest prefix that is a module (`super` resolved from `from`).
fn resolve(from: &str, path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
    if segments.peek() == Some(&"super") {
        // `config::validate`'s and `config`'s (a `mod.rs`) parents alike: drop one name each.
        parts = from.split("::").collect();
        while segments.next_if_eq(&"super").is_some() {
            parts.pop();
        }
    }
    parts.extend(segments);
    (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|candidate| modules.contains(candidate))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&src, &src, &mut files);
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (module, text) in &files {
        let targets: BTreeSet<String> = paths(production(text))
            .iter()
            .filter_map(|path| resolve(module, path, &modules))
            .filter(|target| target != module && !target.is_empty())
            // A folder module declaring its children is structure, not an import.
            .filter(|target| {
                !target.starts_with(&format!("{module}::")) || !text.contains(&format!("mod {}", last(target)))
            })
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

fn last(module: &str) -> &str {
    module.rsplit("::").next().unwrap_or(module)
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// The cycles of a graph, each as the modules of one strongly connected component.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(node) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = edges.keys().map(|m| (m, reaches(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for module in edges.keys() {
        if done.contains(module) || !reach[module].contains(module) {
            continue;
        }
        let component: Vec<String> = edges
            .keys()
            .filter(|other| reach[module].contains(*other) && reach[*other].contains(module))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        found.push(component);
    }
    found
}

#[test]
fn no_import_cycle_between_modules() {
    let files = graph();
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in &files {
        let entry = tops.entry(top(module).to_owned()).or_default();
        entry.extend(targets.iter().map(|t| top(t).to_owned()).filter(|t| t != top(module)));
    }
    let by_file = cycles(&files);
    let by_top = cycles(&tops);
    assert!(
        by_file.is_empty() && by_top.is_empty(),
        "import cycles between files: {by_file:?}\nbetween top-level modules: {by_top:?}\nedges: {files:#?}"
    );
}

#[test]
fn the_core_does_not_import_the_wire_format_or_the_shell() {
    let mut problems = Vec::new();
    for (module, targets) in graph() {
        if !CORE.contains(&top(&module)) {
            continue;
        }
        for target in targets.iter().filter(|t| SHELL_AND_WIRE.contains(&top(t))) {
            problems.push(format!("{module} imports {target}"));
        }
    }
    assert!(problems.is_empty(), "the core imports the wire format or the shell:\n{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_every_kind_of_path() {
    let text = "use crate::a::{self, b::{c, d}, e};\nuse super::f::g;\nlet x = crate::h::i(1);\n$crate::no";
    assert_eq!(paths(text), ["a", "a::b::c", "a::b::d", "a::e", "h::i", "super::f::g"]);
    let modules: BTreeSet<String> = ["m", "m::f", "m::g", "h"].map(str::to_owned).into();
    assert_eq!(resolve("m::g", "super::f::x", &modules), Some("m::f".to_owned()));
    assert_eq!(resolve("m", "super::h", &modules), Some("h".to_owned()));
    assert_eq!(resolve("m::g", "h::i", &modules), Some("h".to_owned()));
}
