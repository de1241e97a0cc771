//! The repository stands alone: no tracked file names a path above its root.
//!
//! A `git clone` into an empty folder must build, test and demo; a path that reaches a sibling
//! of the checkout (the reference material of a development machine, say) works there and
//! nowhere else. This test reads every tracked file and reports each such path with its file
//! and line.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Characters that may continue a relative path token; a glob, a variable or a quote ends it.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Resolves `rel` lexically against `base` (both relative to the root, `/`-separated);
/// `None` when it climbs above the root.
fn resolve(base: &[&str], rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = base.to_vec();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

/// Every tracked file and every directory above one, relative to the root.
fn tree(files: &[String]) -> BTreeSet<String> {
    let mut all = BTreeSet::from([String::new()]);
    for file in files {
        let mut dir = file.as_str();
        all.insert(dir.to_owned());
        while let Some((parent, _)) = dir.rsplit_once('/') {
            all.insert(parent.to_owned());
            dir = parent;
        }
    }
    all
}

/// The `../` tokens in `text` that reach above the root, as `(line, token)`.
///
/// A token that names something of the repository once its leading `../`s are dropped is taken
/// to point inside it: relative to its own file (a kustomize resource, a link), to the root (a
/// script run from there) or to a folder it writes (`_out/...`). Any other token is an escape
/// when it climbs above the root, either from its file's folder or from the root itself
/// (`cd "$(dirname "$0")/.."`, `env!("CARGO_MANIFEST_DIR")`, `$REPO`).
fn escapes(file: &str, text: &str, tree: &BTreeSet<String>) -> Vec<(usize, String)> {
    let dir: Vec<&str> = match file.rsplit_once('/') {
        Some((dir, _)) => dir.split('/').collect(),
        None => Vec::new(),
    };
    let names_ours = |token: &str| {
        let rest = token.trim_start_matches('/').trim_start_matches("../").trim_end_matches('/');
        let rest = rest.trim_start_matches("./");
        !rest.is_empty()
            && !rest.starts_with("..")
            && tree.iter().any(|p| p == rest || p.ends_with(&format!("/{rest}")))
    };
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find("../").map(|i| i + from) {
            // The whole token around it: `src/../x` climbs from `src`, not from here.
            let start =
                line[..at].char_indices().rev().find(|&(_, c)| !is_path_char(c)).map_or(0, |(i, c)| i + c.len_utf8());
            let end = line[at..].find(|c: char| !is_path_char(c)).map_or(line.len(), |i| i + at);
            let mut token = line[start..end].trim_start_matches('-');
            // After `$REPO` the variable is the base, not a folder named REPO.
            if line[..start].ends_with('$') {
                token = token.find('/').map_or(token, |slash| &token[slash..]);
            }
            from = end.max(at + 3);
            // A bare climb (`cd` to the script's parent folders) is relative to its own file.
            let bare = token.split('/').all(|part| part.is_empty() || part == "..");
            let escaped = resolve(&dir, token).is_none() || (!bare && resolve(&[], token).is_none());
            if escaped && !names_ours(token) {
                found.push((number + 1, token.to_owned()));
            }
        }
    }
    found
}

fn tracked_files(root: &Path) -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("git ls-files in {}: {e}", root.display()));
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split('\0').filter(|f| !f.is_empty()).map(str::to_owned).collect()
}

/// Whether `text`, which starts with the checkout's parent folder, names a folder or file beside
/// the checkout that exists on this machine: a clone under a shared folder (`/tmp/x`) must not
/// trip over an example path such as `OUT_DIR=/tmp/naw` that names nothing there.
fn names_a_sibling(text: &str, parent: &str, own: &str) -> bool {
    if text.starts_with(own) {
        return false;
    }
    let rest = &text[parent.len()..];
    let name = rest.split(|c: char| c == '/' || !is_path_char(c)).next().unwrap_or_default();
    !name.is_empty() && Path::new(parent).join(name).exists()
}

#[test]
fn no_tracked_file_names_a_path_above_the_repository_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = tracked_files(root);
    assert!(files.iter().any(|f| f == "Cargo.toml"), "git ls-files did not list the crate");
    let tree = tree(&files);
    // An absolute path into the checkout's parent (a sibling folder of this machine).
    let parent = root.parent().map(|p| format!("{}/", p.display())).filter(|p| p != "/");
    let own = format!("{}/", root.display());

    let mut problems = Vec::new();
    for file in &files {
        // Binary files and files deleted in the work tree have nothing to say.
        let Ok(text) = std::fs::read_to_string(root.join(file)) else { continue };
        for (line, token) in escapes(file, &text, &tree) {
            problems.push(format!("{file}:{line}: `{token}` reaches above the repository root"));
        }
        if let Some(parent) = &parent {
            for (number, line) in text.lines().enumerate() {
                if line.match_indices(parent.as_str()).any(|(at, _)| names_a_sibling(&line[at..], parent, &own)) {
                    problems.push(format!("{file}:{}: names {parent}, outside the repository", number + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "paths outside the repository:\n{}", problems.join("\n"));
}

/// The rule itself, on the shapes it exists for (built at run time so that this file does not
/// name them).
#[test]
fn the_rule_catches_each_way_of_reaching_out() {
    let up = "..";
    let files =
        ["README.md", "hack/demo.sh", "src/k8s/names.rs", "fuzz/make-seeds.sh", "examples/a.json"].map(str::to_owned);
    let tree = tree(&files);
    let caught = |file: &str, text: &str| !escapes(file, text, &tree).is_empty();

    // Relative to the file: a link, a script that cds to its own folder, a kustomization.
    assert!(caught("README.md", &format!("(That is `{up}/shared/velero/x.json`)")));
    assert!(caught("fuzz/make-seeds.sh", &format!("shared=${{SHARED:-{up}/{up}/shared}}")));
    // Relative to the root: a script run from the root, the manifest directory, `$REPO`.
    assert!(caught("hack/demo.sh", &format!("review CREATE {up}/shared/velero/configmaps/01.json")));
    assert!(caught("src/k8s/names.rs", &format!(r#"concat!(env!("CARGO_MANIFEST_DIR"), "/{up}/shared/v.json")"#)));
    assert!(caught("hack/demo.sh", &format!("SHARED=${{SHARED:-$REPO/{up}/shared}}")));

    // What stays inside: a folder of ours from a subfolder or from a generated one, and prose.
    assert!(!caught("fuzz/make-seeds.sh", &format!("examples={up}/examples")));
    assert!(!caught("hack/demo.sh", &format!("resources: [{up}/{up}/{up}/examples/a.json]")));
    assert!(!caught("README.md", &format!("point it at `{up}/k8s` instead")));
    assert!(!caught("hack/demo.sh", &format!("cd \"$(dirname \"$0\")/{up}\"")));
    assert!(caught("hack/demo.sh", &format!("cd \"$(dirname \"$0\")/{up}/{up}\"")));
    assert!(!caught("README.md", "a mounted ConfigMap's `..data` symlink, in a shared cluster"));
}
