//! `node-agent-webhook check` as an operator runs it in CI: the example ConfigMaps, YAML
//! manifests, standard input, JSON output and exit codes.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::BINARY;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(BINARY)
        .arg("check")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const DIR: &str = "examples/configmaps";

#[test]
fn example_configmaps_get_the_verdicts_and_findings_the_spec_asks_for() {
    // (file, exit code, every finding line exactly)
    let cases: &[(&str, i32, &[&str])] = &[
        ("01-valid-docs-basic.json", 0, &[]),
        (
            "02-valid-storageclass-affinity-labels.json",
            0,
            &[r#"02-valid-storageclass-affinity-labels.json:12:486: warning: data[config].loadAffinity[1].storageClass: DataUpload pods look up the backup PVC's class "gp3-backup", not "gp3-csi": this entry applies to restores only"#],
        ),
        (
            "03-docs-complete-example-thresholdInGB.json",
            1,
            &[r#"03-docs-complete-example-thresholdInGB.json:12:1466: error: data[node-agent-config].cachePVC.thresholdInGB: Unknown field: did you mean "residentThresholdInMB" (an int64 in megabytes; Velero's docs name a field that does not exist)? (node-agent ignores unknown fields silently)"#],
        ),
        (
            "04-partial-podresources-typos.json",
            1,
            &[
                r#"04-partial-podresources-typos.json:12:32: error: data[node-agent-config].prepareQueueLength: Unknown field: did you mean "loadConcurrency.prepareQueueLength"? it belongs under loadConcurrency (node-agent ignores unknown fields silently)"#,
                r#"04-partial-podresources-typos.json:12:81: error: data[node-agent-config].podResources: Required value: cpuLimit not set: node-agent ignores the whole podResources section unless cpuRequest, cpuLimit, memoryRequest and memoryLimit are all given; use "0" for no limit"#,
                r#"04-partial-podresources-typos.json:12:188: warning: data[node-agent-config].priorityClassname: non-canonical key case: Velero accepts it as "priorityClassName"; write it that way"#,
                r#"04-partial-podresources-typos.json:12:230: error: data[node-agent-config].podAnotations: Unknown field: did you mean "podAnnotations"? (node-agent ignores unknown fields silently)"#,
                "04-partial-podresources-typos.json:12:362: error: data[node-agent-config].loadConcurrency.globalConfig: Invalid value: 0: must be at least 1 (node-agent replaces it with 1)",
                "04-partial-podresources-typos.json:12:559: error: data[node-agent-config].loadConcurrency.perNodeConfig[0].number: Invalid value: 0: must be at least 1 (node-agent skips this rule)",
            ],
        ),
        (
            "05-loadaffinity-and-label-pitfalls.json",
            1,
            &[
                "05-loadaffinity-and-label-pitfalls.json:12:190: error: data[node-agent-config].loadAffinity[1]: Forbidden: only one entry may omit storageClass: node-agent uses loadAffinity[0] and ignores this one; merge their selectors",
                r#"05-loadaffinity-and-label-pitfalls.json:12:476: error: data[node-agent-config].loadAffinity[2].nodeSelector.matchExpressions[0].operator: Unsupported value: "in": supported values: "DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn""#,
                "05-loadaffinity-and-label-pitfalls.json:12:685: error: data[node-agent-config].loadAffinity[2].nodeSelector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "05-loadaffinity-and-label-pitfalls.json:12:810: error: data[node-agent-config].loadAffinity[3].nodeSelector: Required value: must have matchLabels or matchExpressions: Velero 1.17 turns an empty selector into a term that matches no node",
                r#"05-loadaffinity-and-label-pitfalls.json:12:907: error: data[node-agent-config].podResources.cpuRequest: Invalid value: "1": must be less than or equal to cpu limit of 0 (cpuLimit "0m" is a real zero: only the literal "0" means no limit)"#,
                "05-loadaffinity-and-label-pitfalls.json:12:1035: error: data[node-agent-config].podLabels[velero.io/data-upload]: Forbidden: keys under velero.io/ are Velero's own: overriding them breaks how Velero finds its data-mover pods",
            ],
        ),
        (
            "06-fatal-multikey-yaml-typeerror.json",
            1,
            &[
                r#"06-fatal-multikey-yaml-typeerror.json:11:3: error: data: Invalid value: ["backup-pvc.json", "node-agent-config.yaml"]: must hold exactly one key: node-agent 1.18+ exits with "more than one keys are found", 1.17 reads a random one; keep one JSON value"#,
                "06-fatal-multikey-yaml-typeerror.json:12:32: error: data[node-agent-config.yaml]: invalid character 'l' looking for beginning of value: the value must be JSON, not YAML (node-agent reads JSON only); convert it, e.g. yq -o=json",
                "06-fatal-multikey-yaml-typeerror.json:13:177: error: data[backup-pvc.json].backupPVC[storage-class-3].annotations[some-csi.provider.io/readOnlyClone]: Invalid value: true: must be a string (quote it), not a bool (node-agent fails to start on this)",
            ],
        ),
    ];
    for (file, code, lines) in cases {
        let path = format!("{DIR}/{file}");
        let run = check(&[&path], None);
        assert_eq!(run.code, *code, "{file}: {}{}", run.stdout, run.stderr);
        let want: Vec<String> = lines.iter().map(|l| format!("{DIR}/{l}")).collect();
        let got: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn version_aware_warnings_for_01() {
    let run = check(&[&format!("{DIR}/01-valid-docs-basic.json"), "--velero-version", "1.18.0"], None);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout.lines().map(|l| l.split_once(": warning: ").map_or(l, |(_, w)| w)).collect::<Vec<_>>(),
        vec![
            "data[node-agent-config.json].podResources.ephemeralStorageRequest: node-agent of Velero 1.18.0 ignores this (supported since 1.18.1); the mutating webhook applies it to new data-mover pods",
            "data[node-agent-config.json].podResources.ephemeralStorageLimit: node-agent of Velero 1.18.0 ignores this (supported since 1.18.1); the mutating webhook applies it to new data-mover pods",
        ]
    );
}

/// What `kubectl create configmap node-agent-config --from-file=config.json -n velero
/// --dry-run=client -o yaml` prints, next to a Deployment in the same stream.
const YAML_MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: unrelated
---
apiVersion: v1
data:
  config.json: |
    {
      \"podResources\": {\"cpuRequest\": \"1\", \"cpuLimit\": \"500m\",
                       \"memoryRequest\": \"1Gi\", \"memoryLimit\": \"0\"}
    }
kind: ConfigMap
metadata:
  creationTimestamp: null
  name: node-agent-config
  namespace: velero
";

#[test]
fn yaml_manifests_on_standard_input_point_into_the_block() {
    let run = check(&["-"], Some(YAML_MANIFESTS));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stdout.trim_end(),
        r#"-:10:38: error: data[config.json].podResources.cpuRequest: Invalid value: "1": must be less than or equal to cpu limit of 500m"#
    );
    let json = check(&["--output", "json", "-"], Some(YAML_MANIFESTS));
    let findings: Value = serde_json::from_str(&json.stdout).expect("JSON output");
    assert_eq!(findings[0]["line"], 10);
    assert_eq!(findings[0]["column"], 38);
    assert_eq!(findings[0]["severity"], "error");
    assert_eq!(findings[0]["path"], "data[config.json].podResources.cpuRequest");
}

#[test]
fn names_all_and_exit_codes() {
    let renamed = YAML_MANIFESTS.replace("name: node-agent-config", "name: other");
    let missing = check(&["-"], Some(&renamed));
    assert_eq!(missing.code, 2);
    assert_eq!(
        missing.stderr.trim_end(),
        r#"-: no ConfigMap named "node-agent-config", "velero-repo-maintenance" or "backup-repository-config" (use --configmap NAME or --all)"#
    );
    assert_eq!(check(&["--configmap", "other", "-"], Some(&renamed)).code, 1);
    assert_eq!(check(&["--all", "-"], Some(&renamed)).code, 1);
    let unreadable = check(&["/nonexistent/config.json"], None);
    assert_eq!(unreadable.code, 2);
    assert!(unreadable.stderr.starts_with("/nonexistent/config.json: "), "{}", unreadable.stderr);
    assert_eq!(check(&["--bogus-flag", "x"], None).code, 2);
    let broken = check(&["-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n"));
    assert_eq!(broken.code, 2, "{}", broken.stderr);
    assert!(broken.stderr.starts_with("-:"), "{}", broken.stderr);
    // The config value itself, not a manifest.
    let raw = check(&["-"], Some("{\n  \"podLabels\": {\"a\": 1}\n}\n"));
    assert_eq!(raw.code, 1);
    assert_eq!(
        raw.stdout.trim_end(),
        "-:2:22: error: podLabels[a]: Invalid value: 1: must be a string (quote it), not a number (node-agent fails to start on this)"
    );
}

/// `check … | head`: the reader closes the pipe after a few lines; check neither panics nor
/// reports an error, and its exit code is still the verdict.
#[test]
fn a_reader_that_stops_early_is_no_error() {
    // Some 3,000 findings, far more than a pipe buffers, so the writer meets the closed pipe.
    let labels: Vec<String> = (0..3000).map(|i| format!("\"-bad-{i}\": \"v\"")).collect();
    let config = format!("{{\"podLabels\": {{{}}}}}", labels.join(", "));
    let mut child = Command::new(BINARY)
        .args(["check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(config.as_bytes()).expect("stdin");
    }
    let mut first = [0u8; 64];
    std::io::Read::read_exact(child.stdout.as_mut().expect("stdout"), &mut first).expect("some output");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("exit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// Velero's three ConfigMaps in one stream: each is checked as its kind (told by its name), and
/// each finding points at its line and column of the file.
#[test]
fn three_configmaps_in_one_manifest_each_finding_at_its_position() {
    let file = "examples/other-configmaps/all-three.yaml";
    let run = check(&[file], None);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let want = [
        r#":10:38: error: data[config.json].podResources.cpuRequest: Invalid value: "1": must be less than or equal to cpu limit of 500m"#,
        r#":22:23: error: data[global].podResources: Required value: cpuLimit, memoryLimit not set: Velero creates no maintenance Job for the repositories this key applies to unless cpuRequest, cpuLimit, memoryRequest and memoryLimit are all given, and fails again every 5 minutes; use "0" for no limit"#,
        ":23:36: error: data[global].keepLatestMaintenanceJobs: Invalid value: -1: must be greater than or equal to 0: Velero deletes every maintenance Job and then panics, on every reconcile",
        r#":27:3: error: data[Global]: Invalid value: "Global": did you mean "global"? Velero looks data keys up exactly and never reads this value"#,
        r#":37:23: error: data[kopia].cacheLimitMB: Invalid value: "2048": must be a JSON number, not a string: Kopia reads "2048" but node-agent ignores a string and sizes its cache volume for the 5000 MiB default; write 2048"#,
        r#":38:34: error: data[kopia].fullMaintenanceInterval: Unsupported value: "FastGC": supported values: "eagerGC", "fastGC", "normalGC": did you mean "fastGC"? Kopia refuses it when Velero creates a repository, so every new BackupRepository stays NotReady and its backups fail; fixing this ConfigMap does not repair them (edit their spec.repositoryConfig or delete them)"#,
    ]
    .map(|line| format!("{file}{line}"));
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), want);
    // A kind switched off is not checked; renamed, it is found under its new name.
    let off = check(&["--repo-maintenance-configmap", "", "--backup-repository-configmap", "", file], None);
    assert_eq!(off.stdout.lines().count(), 1, "{}", off.stdout);
    let renamed = std::fs::read_to_string(file).expect("read").replace("name: backup-repository-config", "name: repos");
    let run = check(&["--backup-repository-configmap", "repos", "-"], Some(&renamed));
    assert_eq!(run.stdout.lines().filter(|l| l.contains("data[kopia]")).count(), 2, "{}", run.stdout);
}

#[test]
fn a_bare_value_is_checked_as_the_kind_given() {
    let maintenance = check(&["--kind", "repo-maintenance", "-"], Some("{\n  \"keepLatestMaintenanceJobs\": 0\n}\n"));
    assert_eq!(maintenance.code, 0, "{}", maintenance.stderr);
    assert_eq!(
        maintenance.stdout.trim_end(),
        "-:2:32: warning: keepLatestMaintenanceJobs: 0 makes Velero delete every maintenance Job after each reconcile, the one just finished included (the BackupRepository's status keeps the history); the default is 3"
    );
    let repository = check(&["--kind", "backup-repository", "-"], Some(r#"{"cacheLimitMB": 2048.5}"#));
    assert_eq!(repository.code, 1);
    assert_eq!(
        repository.stdout.trim_end(),
        r#"-:1:18: error: cacheLimitMB: Invalid value: 2048.5: must be a whole number: Kopia cannot parse "2048.5" and uses its 5000 MiB default, while node-agent truncates it"#
    );
    // Without --kind, the same value is node-agent's, where the field does not exist.
    assert_eq!(check(&["-"], Some(r#"{"cacheLimitMB": 1}"#)).code, 1);
    let unknown = check(&["--kind", "velero", "-"], Some("{}"));
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("unknown ConfigMap kind"), "{}", unknown.stderr);
    // --kind overrides the name: the backup repository ConfigMap read as a maintenance one.
    let json = check(
        &["--kind", "repo-maintenance", "--output", "json", "examples/other-configmaps/backup-repository-config.json"],
        None,
    );
    let findings: Value = serde_json::from_str(&json.stdout).expect("JSON output");
    let paths: Vec<&str> = findings.as_array().into_iter().flatten().filter_map(|f| f["path"].as_str()).collect();
    assert!(paths.contains(&"data[kopia].cacheLimitMB"), "{}", json.stdout);
}

/// Issue 21's config: `backupPVC.<class>.secretNames`/`configMapNames` came with Velero 1.18.3
/// (pkg/types/node_agent.go at v1.18.3), so 1.18.3 admits it, and 1.18.1 is told it ignores them.
#[test]
fn the_keys_of_velero_1_18_3_are_checked_for_the_release_that_reads_them() {
    let config = r#"{"backupPVC": {"gp3": {"storageClass": "gp3-backup", "secretNames": ["ca-bundle"], "configMapNames": ["proxy"]}}}"#;
    let on = |version: &str| check(&["--velero-version", version, "-"], Some(config));

    let current = on("1.18.3");
    assert_eq!((current.code, current.stdout.as_str()), (0, ""), "{}", current.stderr);

    let older = on("1.18.1");
    assert_eq!(older.code, 0, "{}", older.stdout);
    assert_eq!(
        older.stdout.lines().collect::<Vec<_>>(),
        [
            "-:1:69: warning: backupPVC[gp3].secretNames: node-agent of Velero 1.18.1 ignores this (supported since 1.18.3)",
            "-:1:102: warning: backupPVC[gp3].configMapNames: node-agent of Velero 1.18.1 ignores this (supported since 1.18.3)",
        ]
    );

    let bad = check(
        &["--velero-version", "1.18.3", "-"],
        Some(r#"{"restorePVC": {"secretNames": ["ca", "", "Bad_Name", "ca"]}}"#),
    );
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    let findings: Vec<&str> = bad.stdout.lines().map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest)).collect();
    assert_eq!(
        findings,
        [
            "error: restorePVC.secretNames[1]: Required value: a Secret name: node-agent fails the DataDownload when it copies a Secret with no name",
            "error: restorePVC.secretNames[2]: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'): no Secret can have this name, so node-agent fails the DataDownload when it copies it",
            "warning: restorePVC.secretNames[3]: Duplicate value: \"ca\": node-agent copies it once; remove the repeat",
        ]
    );
}

/// A Velero newer than the newest release whose types we have may read keys we have never seen:
/// they are warnings naming what we know, and everything we know is still checked. With no
/// version, an unknown key is an error that says how to give one.
#[test]
fn a_velero_newer_than_known_gets_unknown_keys_as_warnings() {
    let newest = node_agent_webhook::config::velero_types::newest();
    let newer = format!("{}.{}.0", newest.major, newest.minor + 1);
    let config = r#"{"podSecurityContext": {"runAsUser": 1000}, "podLabels": {"team": "-bad"}}"#;

    let run = check(&["--velero-version", &newer, "-"], Some(config));
    assert_eq!(run.code, 1, "the known key's error still counts: {}", run.stdout);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(
        lines[0],
        format!("-:1:2: warning: podSecurityContext: Unknown field: this webhook knows Velero up to {newest}: if Velero {newer} reads it, it is not checked here; if not, node-agent ignores it")
    );
    assert!(lines[1].contains("error: podLabels[team]: Invalid value: \"-bad\""), "{}", lines[1]);

    let unknown_version = check(&["-"], Some(r#"{"podSecurityContext": {}}"#));
    assert_eq!(unknown_version.code, 1);
    assert!(
        unknown_version.stdout.contains(&format!(
            "if it is a key of a Velero release newer than {newest}, give this webhook the Velero version: --velero-version"
        )),
        "{}",
        unknown_version.stdout
    );
}
