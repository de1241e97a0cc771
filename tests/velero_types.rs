//! Our decoder against Velero's own types, release by release (testdata/velero-types, made by
//! `make velero-types` from Velero's Go source). For every release file and every key path in
//! it, a config holding that path goes through the real checker with that Velero version:
//!
//! - a key Velero has at that release must be neither refused nor warned "ignores this";
//! - a key of another release that this one lacks must be warned "ignores this" (worded as
//!   applied by the mutating webhook exactly for the settings it applies itself);
//! - a value of another JSON kind than Velero's must be refused, as Go's decoder fails on it.
//!
//! The files are read here, not through the tables build.rs makes of them: what is tested is the
//! decoder, which must agree with Velero, whatever the tables say.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use node_agent_webhook::config::diagnostics::{Diagnostic, Severity};
use node_agent_webhook::config::validate::Environment;
use node_agent_webhook::config::version::VeleroVersion;
use node_agent_webhook::config::{backup_repository, check_value, repo_maintenance};
use serde_json::{json, Value};

/// The node-agent settings the mutating webhook applies to data-mover pods itself: held here, not
/// imported from `config::version`, so that the test checks the webhook's list, not itself.
const APPLIED_BY_WEBHOOK: [&str; 8] = [
    "loadAffinity",
    "loadAffinity[].storageClass",
    "podResources",
    "podResources.ephemeralStorageRequest",
    "podResources.ephemeralStorageLimit",
    "priorityClassName",
    "podLabels",
    "podAnnotations",
];

/// One release's file.
struct Release {
    version: VeleroVersion,
    /// ConfigMap kind → its value's tree.
    roots: BTreeMap<String, Value>,
}

fn releases() -> Vec<Release> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/velero-types");
    let mut out: Vec<Release> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("readable"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let version = doc["velero"].as_str().and_then(|v| v.parse().ok()).expect("a version");
            let roots = doc["configMaps"]
                .as_object()
                .map(|kinds| kinds.iter().map(|(kind, cm)| (kind.clone(), cm["root"].clone())).collect())
                .unwrap_or_default();
            Release { version, roots }
        })
        .collect();
    out.sort_by_key(|r| r.version);
    assert!(out.len() >= 2, "no release files in {}", dir.display());
    out
}

/// A valid value for a scalar key, as our rules want it (quantities, operators, intervals).
fn scalar_sample(name: &str, kind: &str) -> Value {
    match (name, kind) {
        ("cpuRequest" | "cpuLimit", _) => json!("100m"),
        ("memoryRequest" | "memoryLimit", _) => json!("128Mi"),
        ("ephemeralStorageRequest" | "ephemeralStorageLimit", _) => json!("1Gi"),
        ("operator", _) => json!("In"),
        ("fullMaintenanceInterval", _) => json!("normalGC"),
        ("cacheLimitMB", _) => json!(1024),
        (_, "number") => json!(1),
        (_, "bool") => json!(true),
        _ => json!("sample"),
    }
}

/// A valid, non-zero value for `node` (named `name`) holding every key below it: map keys are
/// `sample`, lists hold one item.
fn sample(name: &str, node: &Value) -> Value {
    match node["kind"].as_str().unwrap_or_default() {
        "object" => Value::Object(
            node["fields"]
                .as_object()
                .map(|fields| fields.iter().map(|(field, child)| (field.clone(), sample(field, child))).collect())
                .unwrap_or_default(),
        ),
        "map" => json!({ "sample": sample(name, &node["values"]) }),
        "array" => json!([sample(name, &node["items"])]),
        kind => scalar_sample(name, kind),
    }
}

/// Every key path below `node` with its node and the field path the sample holds it at.
fn key_paths<'a>(node: &'a Value, key_path: String, field_path: String, out: &mut Vec<(String, String, &'a Value)>) {
    if !key_path.is_empty() {
        out.push((key_path.clone(), field_path.clone(), node));
    }
    match node["kind"].as_str().unwrap_or_default() {
        "object" => {
            for (field, child) in node["fields"].as_object().into_iter().flatten() {
                let join = |p: &str| if p.is_empty() { field.clone() } else { format!("{p}.{field}") };
                key_paths(child, join(&key_path), join(&field_path), out);
            }
        }
        "map" => key_paths(&node["values"], format!("{key_path}[*]"), format!("{field_path}[sample]"), out),
        "array" => key_paths(&node["items"], format!("{key_path}[]"), format!("{field_path}[0]"), out),
        _ => {}
    }
}

/// `value` with the value at `field_path` (as `key_paths` writes it) replaced by `with`.
fn replaced(value: &Value, field_path: &str, with: Value) -> Value {
    let mut out = value.clone();
    let mut at = &mut out;
    for segment in field_path.split(['.', '[']) {
        let segment = segment.trim_end_matches(']');
        at = match at {
            Value::Array(items) => &mut items[segment.parse::<usize>().expect("an index")],
            Value::Object(members) => members.get_mut(segment).expect("a member"),
            _ => panic!("{field_path}: no such path in the sample"),
        };
    }
    *at = with;
    out
}

/// A value of another JSON kind than `kind`, that Go's decoder rejects for it.
fn other_kind(kind: &str) -> Option<Value> {
    match kind {
        "object" | "map" => Some(json!("text")),
        "array" => Some(json!({"a": "b"})),
        "string" => Some(json!(1)),
        "number" | "bool" => Some(json!("1")),
        _ => None,
    }
}

/// The checker's findings for one value of `kind` checked for Velero `version`.
fn check(kind: &str, value: &Value, version: VeleroVersion) -> Vec<Diagnostic> {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    let env = Environment { velero_version: Some(version), ..Environment::default() };
    match kind {
        "node-agent" => check_value(&text, &env).diagnostics.0,
        "repo-maintenance" => repo_maintenance::check_value(&text, &env).diagnostics.0,
        "backup-repository" => backup_repository::check_value(&text, &env).diagnostics.0,
        other => panic!("a ConfigMap kind the checker does not know: {other}"),
    }
}

/// Whether `finding` is at `field_path` or at one of its ancestors.
fn at_or_above(finding: &Diagnostic, field_path: &str) -> bool {
    field_path
        .strip_prefix(finding.path.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']) || finding.path.is_empty())
}

fn is_unread(finding: &Diagnostic) -> bool {
    finding.severity == Severity::Warning && finding.message.contains("ignores this")
}

#[test]
fn every_key_velero_reads_at_a_release_is_accepted_for_that_release() {
    let mut failures = Vec::new();
    for release in releases() {
        for (kind, root) in &release.roots {
            let config = sample("", root);
            for finding in check(kind, &config, release.version) {
                if finding.severity == Severity::Error || is_unread(&finding) {
                    failures.push(format!("{} {kind}: {}: {}", release.version, finding.path, finding.message));
                }
            }
        }
    }
    assert!(failures.is_empty(), "keys Velero reads, refused or called ignored:\n{}", failures.join("\n"));
}

#[test]
fn a_key_a_release_lacks_is_warned_as_ignored_on_that_release() {
    let releases = releases();
    let mut failures = Vec::new();
    let mut checked = 0;
    for release in &releases {
        for (kind, root) in &release.roots {
            let mut present = Vec::new();
            key_paths(root, String::new(), String::new(), &mut present);
            let present: BTreeSet<String> = present.into_iter().map(|(key, _, _)| key).collect();
            // The newest release that has each key this one lacks holds it in its sample.
            for other in releases.iter().rev().filter(|other| other.version != release.version) {
                let Some(other_root) = other.roots.get(kind) else { continue };
                let mut keys = Vec::new();
                key_paths(other_root, String::new(), String::new(), &mut keys);
                let lacking: Vec<_> = keys.iter().filter(|(key, _, _)| !present.contains(key)).collect();
                if lacking.is_empty() {
                    continue;
                }
                let findings = check(kind, &sample("", other_root), release.version);
                for (key, field_path, _) in lacking {
                    checked += 1;
                    let warned = findings.iter().find(|f| is_unread(f) && at_or_above(f, field_path));
                    match warned {
                        None => {
                            let at: Vec<String> = findings
                                .iter()
                                .filter(|f| at_or_above(f, field_path))
                                .map(|f| format!("{}: {}", f.severity, f.message))
                                .collect();
                            failures.push(format!(
                                "{} {kind}: {field_path} (from {}) gets no \"ignores this\" warning; found: {at:?}",
                                release.version, other.version
                            ));
                        }
                        Some(w) if kind == "node-agent" && w.path == *field_path => {
                            let says_applied = w.message.contains("the mutating webhook applies it");
                            if says_applied != APPLIED_BY_WEBHOOK.contains(&key.as_str()) {
                                failures.push(format!(
                                    "{} {kind}: {field_path}: wrong about the webhook: {}",
                                    release.version, w.message
                                ));
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    assert!(checked > 0, "no release lacks a key another has: the files say nothing");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `tolerations` is the webhook's own key (no Velero release has it, so no release file lists
/// it): every release accepts it, warned as ignored by node-agent and applied by the webhook.
#[test]
fn the_webhook_s_own_tolerations_key_is_accepted_on_every_release() {
    let config = json!({"tolerations": [{"key": "backup", "operator": "Exists", "effect": "NoSchedule"}]});
    for release in releases() {
        assert!(!release.roots["node-agent"].to_string().contains("\"tolerations\""), "{}", release.version);
        let findings = check("node-agent", &config, release.version);
        let rendered: Vec<String> =
            findings.iter().map(|f| format!("{}: {}: {}", f.severity, f.path, f.message)).collect();
        assert_eq!(findings.len(), 1, "{}: {rendered:?}", release.version);
        let finding = &findings[0];
        assert!(is_unread(finding) && finding.path == "tolerations", "{}: {rendered:?}", release.version);
        assert!(finding.message.contains("the mutating webhook applies it"), "{}: {rendered:?}", release.version);
    }
}

#[test]
fn a_value_of_another_json_kind_is_refused_as_go_refuses_it() {
    let mut failures = Vec::new();
    for release in releases() {
        for (kind, root) in &release.roots {
            let config = sample("", root);
            let mut keys = Vec::new();
            key_paths(root, String::new(), String::new(), &mut keys);
            for (key, field_path, node) in keys {
                let node_kind = node["kind"].as_str().unwrap_or_default();
                let Some(wrong) = other_kind(node_kind) else { continue };
                let findings = check(kind, &replaced(&config, &field_path, wrong.clone()), release.version);
                if !findings.iter().any(|f| f.severity == Severity::Error && at_or_above(f, &field_path)) {
                    failures.push(format!("{} {kind}: {key} ({node_kind}) accepts {wrong}", release.version));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// README's compatibility tables, made from the release files: each key (below Kubernetes'
/// own types, only the type is named), the releases that read it, and what the webhook does.
fn compatibility_tables(releases: &[Release]) -> String {
    let mut out = String::new();
    for (kind, title, reader) in [
        ("node-agent", "node-agent's ConfigMap", "node-agent"),
        ("repo-maintenance", "The repository maintenance job ConfigMap", "the Velero server"),
        ("backup-repository", "The backup repository ConfigMap", "the Velero server"),
    ] {
        // key path → (Go type in the newest release that has it, first release, last release)
        let mut rows: BTreeMap<String, (String, VeleroVersion, VeleroVersion)> = BTreeMap::new();
        for release in releases {
            let Some(root) = release.roots.get(kind) else { continue };
            let mut keys = Vec::new();
            key_paths(root, String::new(), String::new(), &mut keys);
            let inside_kubernetes: Vec<String> = keys
                .iter()
                .filter(|(_, _, node)| node.get("kubernetesType").is_some())
                .map(|(key, _, _)| key.clone())
                .collect();
            for (key, _, node) in &keys {
                let below =
                    inside_kubernetes.iter().any(|k| key.strip_prefix(k.as_str()).is_some_and(|r| !r.is_empty()));
                if below || key.ends_with(']') {
                    continue;
                }
                let shown = key.replace("[*]", ".<key>");
                let go_type = node["goType"].as_str().unwrap_or_default().to_string();
                let row = rows.entry(shown).or_insert((go_type.clone(), release.version, release.version));
                row.0 = go_type;
                row.2 = release.version;
            }
        }
        let newest = releases.last().map(|r| r.version).expect("releases");
        out.push_str(&format!(
            "{title} (read by {reader}):\n\n| Key | Go type | Read since | The webhook |\n|---|---|---|---|\n"
        ));
        for (key, (go_type, first, last)) in rows {
            let read = if last == newest { format!("{first}") } else { format!("{first} to {last}") };
            let webhook = match kind {
                "node-agent" if APPLIED_BY_WEBHOOK.contains(&key.replace(".<key>", "[*]").as_str()) => {
                    "checks it; applies it to data-mover pods on any version"
                }
                _ => "checks it",
            };
            // A `|` in a Go type (`float64 | int64`: two readers) would end the table cell.
            let go_type = go_type.replace('|', "\\|");
            out.push_str(&format!("| `{key}` | `{go_type}` | {read} | {webhook} |\n"));
        }
        out.push('\n');
    }
    out
}

/// README's tables are the release files' (`NAW_BLESS=1 cargo test --test velero_types` writes
/// them after `make velero-types`).
#[test]
fn readme_compatibility_tables_are_the_release_files() {
    const BEGIN: &str = "<!-- velero-types: generated by tests/velero_types.rs from testdata/velero-types -->\n";
    const END: &str = "<!-- velero-types: end -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let start = readme.find(BEGIN).expect("README has the generated tables' begin marker") + BEGIN.len();
    let end = readme[start..].find(END).expect("README has the end marker") + start;
    let want = compatibility_tables(&releases());
    if std::env::var_os("NAW_BLESS").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &readme[..start], &readme[end..])).expect("write README.md");
        return;
    }
    assert!(
        readme[start..end] == want,
        "README's compatibility tables are stale: NAW_BLESS=1 cargo test --test velero_types rewrites them"
    );
}
