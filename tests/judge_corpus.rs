//! The config judge's recordings (testdata/judge/results/<version>.json: what the real
//! node-agent of each Velero version did with every example and generated ConfigMap, recorded by
//! `make judge`) against today's `node-agent-webhook check`, with no Velero and no cluster:
//!
//! - a ConfigMap node-agent exits on, or whose DataDownload it fails, gets an error from us;
//! - a section node-agent's warnings say it ignores is one of our findings.
//!
//! The one exception: a section node-agent drops because a class it names does not exist in the
//! judge's cluster. Offline `check` cannot know which classes exist; the validating webhook
//! watches them and warns (tests/e2e).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_node-agent-webhook");

/// Sections node-agent drops when the PriorityClass or StorageClass they name does not exist.
const CLUSTER_LOOKUPS: &[&str] = &["priorityClassName", "cachePVC"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn case_file(case: &str) -> PathBuf {
    let example = root().join("examples/configmaps").join(format!("{case}.json"));
    if example.exists() {
        example
    } else {
        root().join("testdata/judge/cases").join(format!("{case}.json"))
    }
}

struct Recorded {
    version: String,
    case: String,
    result: Value,
}

fn recordings() -> Vec<Recorded> {
    let dir = root().join("testdata/judge/results");
    let mut out = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let version = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let results: BTreeMap<String, Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (case, result) in results {
            out.push(Recorded { version: version.clone(), case, result });
        }
    }
    assert!(!out.is_empty(), "no recordings in {}: run `make judge`", dir.display());
    out
}

/// Our findings for the case as (severity, path without the `data[key].` prefix).
fn ours(case: &str, version: &str) -> Vec<(String, String)> {
    let output = Command::new(BINARY)
        .args(["check", "--output", "json", "--velero-version", version.trim_start_matches('v')])
        .arg(case_file(case))
        .output()
        .expect("run check");
    let findings: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        // A file `check` cannot read as a manifest is a usage error (exit 2): an error all the same.
        assert_eq!(output.status.code(), Some(2), "{case}: {}", String::from_utf8_lossy(&output.stderr));
        vec![serde_json::json!({"severity": "error", "path": ""})]
    });
    findings
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap_or_default();
            let path = match path.strip_prefix("data[") {
                Some(rest) => rest.split_once("]").map(|(_, p)| p.trim_start_matches('.')).unwrap_or_default(),
                None => path,
            };
            (f["severity"].as_str().unwrap_or_default().to_string(), path.to_string())
        })
        .collect()
}

fn covers(path: &str, section: &str) -> bool {
    let (path, section) = (path.to_lowercase(), section.to_lowercase());
    path == section
        || path.starts_with(&format!("{section}."))
        || path.starts_with(&format!("{section}["))
        || section.starts_with(&format!("{path}."))
}

#[test]
fn every_config_node_agent_exits_on_or_fails_with_gets_an_error_from_us() {
    let mut wrong = Vec::new();
    for r in recordings() {
        let exits = r.result["node_agent"] == "exit";
        // Its DataDownload failed, or never got a pod (`loadAffinity: [null]` panics the reconciler).
        let fails =
            r.result["probe"].as_str().is_some_and(|p| p.starts_with("DataDownload failed") || p.starts_with("no pod"));
        if !(exits || fails) {
            continue;
        }
        if !ours(&r.case, &r.version).iter().any(|(severity, _)| severity == "error") {
            let what = if exits { "exits" } else { "fails its DataDownload" };
            wrong.push(format!("{} {}: node-agent {what} ({}), we admit it", r.version, r.case, r.result["log"]));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_section_node_agent_ignores_is_one_of_our_findings() {
    let mut wrong = Vec::new();
    for r in recordings() {
        let findings = ours(&r.case, &r.version);
        let ignored = r.result["ignored"].as_array().into_iter().flatten().filter_map(Value::as_str);
        for section in ignored.filter(|s| !CLUSTER_LOOKUPS.contains(s)) {
            // An error beside it in the same section counts: `loadConcurrency.global` (unknown,
            // did you mean globalConfig) is why node-agent finds no globalConfig.
            let parent = section.rsplit_once('.').map(|(p, _)| format!("{}.", p.to_lowercase()));
            let covered = if section == "*" {
                findings.iter().any(|(s, _)| s == "error")
            } else {
                findings.iter().any(|(_, path)| covers(path, section))
                    || parent.is_some_and(|p| {
                        findings.iter().any(|(s, path)| s == "error" && path.to_lowercase().starts_with(&p))
                    })
            };
            if !covered {
                wrong.push(format!(
                    "{} {}: node-agent ignores {section}, we say nothing ({:?})",
                    r.version, r.case, findings
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
