//! The validating webhook as kubectl users meet it: ConfigMaps made the way Velero's docs say,
//! denials and warnings as kubectl prints them, and what the API server stored afterwards.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::*;

/// An example ConfigMap's data, written to files named as its keys: `--from-file` arguments.
struct DataFiles {
    _dir: tempfile::TempDir,
    args: Vec<String>,
}

fn data_files(example: &str) -> DataFiles {
    let path = format!("examples/configmaps/{example}.json");
    let configmap: Value = serde_json::from_str(&std::fs::read_to_string(repo_path(&path)).expect(&path)).expect(&path);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = Vec::new();
    for (key, value) in configmap["data"].as_object().expect("data") {
        let file = dir.path().join(key);
        std::fs::write(&file, value.as_str().expect("string data")).expect("write data file");
        args.push(format!("--from-file={key}={}", file.display()));
    }
    DataFiles { _dir: dir, args }
}

fn delete_configmap() {
    kubectl(&["delete", "cm", CONFIGMAP, "-n", NS, "--ignore-not-found"]).must();
}

fn stored_data() -> Option<Value> {
    let run = kubectl(&["get", "cm", CONFIGMAP, "-n", NS, "-o", "json"]);
    run.ok.then(|| run.json()["data"].clone())
}

struct Verdict {
    example: &'static str,
    /// The first line of the denial, or None when admitted.
    denial: Option<&'static str>,
    /// Lines of the denial, or warnings when admitted, that must appear exactly.
    lines: &'static [&'static str],
}

const VERDICTS: &[Verdict] = &[
    // Valid; in a cluster without its PriorityClass, the webhook says what that means.
    Verdict {
        example: "01-valid-docs-basic",
        denial: None,
        lines: &[
            r#"data[node-agent-config.json]: priorityClassName: PriorityClass "backup-priority" does not exist: node-agent drops it and the webhook leaves pod priority alone until it does (line 56, column 24)"#,
        ],
    },
    Verdict {
        example: "02-valid-storageclass-affinity-labels",
        denial: None,
        lines: &[
            r#"data[config]: loadAffinity[1].storageClass: DataUpload pods look up the backup PVC's class "gp3-backup", not "gp3-csi": this entry applies to restores only (line 22, column 23)"#,
            // The e2e cluster has no such StorageClass.
            r#"data[config]: backupPVC[gp3-csi].storageClass: StorageClass "gp3-backup" does not exist: node-agent would create backup PVCs of it that stay Pending, until the DataUpload times out (line 35, column 23)"#,
        ],
    },
    Verdict {
        example: "03-docs-complete-example-thresholdInGB",
        denial: Some("ConfigMap velero/node-agent-config is not a valid node-agent config (1 error):"),
        lines: &[
            "data[node-agent-config]: cachePVC.thresholdInGB: Unknown field: did you mean \"residentThresholdInMB\" (an int64 in megabytes; Velero's docs name a field that does not exist)? (node-agent ignores unknown fields silently) (line 63, column 5)",
        ],
    },
    Verdict {
        example: "04-partial-podresources-typos",
        denial: Some("ConfigMap velero/node-agent-config is not a valid node-agent config (5 errors):"),
        lines: &[
            "data[node-agent-config]: loadConcurrency.globalConfig: Invalid value: 0: must be at least 1 (node-agent replaces it with 1) (line 13, column 21)",
        ],
    },
    Verdict {
        // The e2e cluster's node-agent DaemonSet runs 1.18.3, where the empty selector of
        // loadAffinity[3] restricts nothing: a warning there, not the sixth error.
        example: "05-loadaffinity-and-label-pitfalls",
        denial: Some("ConfigMap velero/node-agent-config is not a valid node-agent config (5 errors):"),
        lines: &[
            "data[node-agent-config]: loadAffinity[2].nodeSelector.matchExpressions[0].operator: Unsupported value: \"in\": supported values: \"DoesNotExist\", \"Exists\", \"Gt\", \"In\", \"Lt\", \"NotIn\" (line 22, column 25)",
            "data[node-agent-config]: podResources.cpuRequest: Invalid value: \"1\": must be less than or equal to cpu limit of 0 (cpuLimit \"0m\" is a real zero: only the literal \"0\" means no limit) (line 43, column 19)",
        ],
    },
    Verdict {
        example: "06-fatal-multikey-yaml-typeerror",
        denial: Some("ConfigMap velero/node-agent-config is not a valid node-agent config (3 errors):"),
        lines: &[r#"data: Invalid value: ["backup-pvc.json", "node-agent-config.yaml"]: must hold exactly one key: node-agent 1.18.3 exits with "more than one keys are found"; keep one JSON value"#,
            "data[node-agent-config.yaml]: invalid character 'l' looking for beginning of value: the value must be JSON, not YAML (node-agent reads JSON only); convert it, e.g. yq -o=json (line 1, column 1)"],
    },
];

/// Runs one way of making the ConfigMap for every example and checks each verdict.
fn every_example_gets_its_verdict(make: impl Fn(&[String]) -> Run) {
    webhook_up();
    for verdict in VERDICTS {
        delete_configmap();
        let files = data_files(verdict.example);
        let run = make(&files.args);
        match verdict.denial {
            None => {
                assert!(run.ok, "{}: should be admitted: {}", verdict.example, run.stderr);
                assert_eq!(
                    without_placement(run.warnings()),
                    verdict.lines,
                    "{}: kubectl's Warning: lines",
                    verdict.example
                );
                assert!(stored_data().is_some(), "{}: admitted but not stored", verdict.example);
            }
            Some(first) => {
                let lines = denial_lines(&run);
                assert_eq!(lines[0], first, "{}", verdict.example);
                for want in verdict.lines {
                    assert!(
                        lines.iter().any(|l| l == want),
                        "{}: missing {want:?} in\n{}",
                        verdict.example,
                        lines.join("\n")
                    );
                }
                assert_eq!(stored_data(), None, "{}: a denied CREATE stores nothing", verdict.example);
            }
        }
    }
    delete_configmap();
}

#[test]
fn kubectl_create_from_file_gets_each_examples_verdict() {
    let _serial = serial();
    every_example_gets_its_verdict(|files| {
        let mut args = vec!["create", "cm", CONFIGMAP, "-n", NS];
        args.extend(files.iter().map(String::as_str));
        kubectl(&args)
    });
}

#[test]
fn kubectl_apply_of_a_dry_run_client_manifest_gets_each_examples_verdict() {
    let _serial = serial();
    every_example_gets_its_verdict(|files| {
        let mut args = vec!["create", "cm", CONFIGMAP, "-n", NS, "--dry-run=client", "-o", "yaml"];
        args.extend(files.iter().map(String::as_str));
        let manifest = kubectl(&args).must().stdout;
        kubectl_stdin(&["apply", "-f", "-"], &manifest)
    });
}

#[test]
fn dry_run_server_is_checked_and_stores_nothing() {
    let _serial = serial();
    webhook_up();
    delete_configmap();
    let bad = data_files("03-docs-complete-example-thresholdInGB");
    let mut args = vec!["create", "cm", CONFIGMAP, "-n", NS, "--dry-run=server"];
    args.extend(bad.args.iter().map(String::as_str));
    let lines = denial_lines(&kubectl(&args));
    assert_eq!(lines[0], "ConfigMap velero/node-agent-config is not a valid node-agent config (1 error):");

    let good = data_files("01-valid-docs-basic");
    let mut args = vec!["create", "cm", CONFIGMAP, "-n", NS, "--dry-run=server"];
    args.extend(good.args.iter().map(String::as_str));
    let run = kubectl(&args);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("(server dry run)"), "{}", run.stdout);
    assert_eq!(stored_data(), None, "a server dry run stores nothing");
}

#[test]
fn a_denied_update_leaves_the_stored_value_as_it_was() {
    let _serial = serial();
    webhook_up();
    serve_config(FULL_CONFIG);
    let before = stored_data().expect("stored config");
    let run = apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), r#"{"podResources": {"cpuLimit": "2"}}"#);
    let lines = denial_lines(&run);
    assert!(
        lines.iter().any(|l| l.starts_with("data[node-agent-config.json]: podResources: Required value: ")),
        "{}",
        lines.join("\n")
    );
    assert_eq!(stored_data(), Some(before), "a denied UPDATE changes nothing");
}

#[test]
fn a_metadata_only_update_of_a_configmap_stored_with_an_old_mistake_is_admitted() {
    let _serial = serial();
    webhook_up();
    delete_configmap();
    let webhook = unregister_validating_webhook();
    let bad = data_files("03-docs-complete-example-thresholdInGB");
    let mut args = vec!["create", "cm", CONFIGMAP, "-n", NS];
    args.extend(bad.args.iter().map(String::as_str));
    kubectl(&args).must();
    register_validating_webhook(&webhook);

    let label = kubectl(&["label", "cm", CONFIGMAP, "-n", NS, "e2e.node-agent-webhook.io/touched=yes"]);
    assert!(label.ok, "a label-only update is admitted: {}", label.stderr);
    assert!(
        label.warnings().iter().any(|w| w.contains("cachePVC.thresholdInGB: Unknown field")),
        "the old mistake comes back as a warning: {}",
        label.stderr
    );
    // Touching the data still needs a valid config.
    let patch = kubectl(&["patch", "cm", CONFIGMAP, "-n", NS, "--type=merge", "-p", r#"{"data":{"extra":"{}"}}"#]);
    denial_lines(&patch);
    delete_configmap();
}

#[test]
fn delete_is_admitted_with_a_warning() {
    let _serial = serial();
    webhook_up();
    serve_config(FULL_CONFIG);
    let run = kubectl(&["delete", "cm", CONFIGMAP, "-n", NS]);
    assert!(run.ok, "{}", run.stderr);
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(warnings[0].contains("node-agent"), "{warnings:?}");
    assert_eq!(stored_data(), None);
}

#[test]
fn other_configmaps_never_reach_the_server() {
    let _serial = serial();
    webhook_up();
    let reviews =
        || metric_sum(&our_metrics(), "node_agent_webhook_admission_requests_total", &["webhook=\"validate\""]);
    let before = reviews();
    let _ = kubectl(&["create", "namespace", "e2e-other"]);
    let bad = data_files("05-loadaffinity-and-label-pitfalls");
    for (name, namespace) in [("other-config", NS), (CONFIGMAP, "e2e-other"), (CONFIGMAP, "default")] {
        let mut args = vec!["create", "cm", name, "-n", namespace];
        args.extend(bad.args.iter().map(String::as_str));
        let run = kubectl(&args);
        assert!(run.ok, "{namespace}/{name} is not ours to check: {}", run.stderr);
        assert!(run.warnings().is_empty(), "{}", run.stderr);
        kubectl(&["delete", "cm", name, "-n", namespace]).must();
    }
    assert_eq!(reviews(), before, "none of them was sent to the server");
}

/// What a dry run of `value` as the node-agent ConfigMap makes kubectl print as warnings (with no
/// ConfigMap stored, so that the dry run is a create).
fn dry_run_warnings(value: &str) -> Vec<String> {
    delete_configmap();
    apply_config_as(|m| kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], m), value).must().warnings()
}

/// The version-aware warnings follow the node-agent DaemonSet's image tag as it changes: the
/// server watches the DaemonSet, so a Velero upgrade needs no restart of ours.
#[test]
fn version_warnings_follow_the_node_agent_daemonsets_image() {
    let _serial = serial();
    webhook_up();
    let config = r#"{"podLabels": {"team": "a"}}"#;
    let follow = |tag: &str, want: Vec<String>| {
        let image = format!("node-agent=velero/velero:{tag}");
        kubectl(&["set", "image", "daemonset/node-agent", "-n", NS, &image]).must();
        eventually_eq(
            &format!("the warnings for Velero {tag}"),
            Duration::from_secs(5),
            || dry_run_warnings(config),
            want,
        );
    };
    follow(
        "v1.17.0",
        vec!["data[node-agent-config.json]: podLabels: node-agent of Velero 1.17.0 ignores this (supported since 1.18.0); \
              the mutating webhook applies it to new data-mover pods (line 1, column 15)"
            .to_string()],
    );
    follow("v1.18.3", Vec::new());
}

/// A config whose podLabels or podAnnotations would drop an in-tree third-party key of the
/// node-agent DaemonSet's pod template gets a warning naming the key, as the real DaemonSet
/// carries it: the server watches the template, so an edit counts without a restart.
#[test]
fn warnings_follow_the_third_party_keys_of_the_node_agent_daemonset_template() {
    let _serial = serial();
    webhook_up();
    let template_patch = |labels: &str, annotations: &str| {
        let patch = format!(
            r#"{{"spec": {{"template": {{"metadata": {{"labels": {labels}, "annotations": {annotations}}}}}}}}}"#
        );
        kubectl(&["patch", "daemonset/node-agent", "-n", NS, "--type=merge", "-p", &patch]).must();
    };
    /// Takes the keys off the template again, also when an assertion fails: the other tests'
    /// exact warnings assume a template without them.
    struct Restore<F: Fn()>(F);
    impl<F: Fn()> Drop for Restore<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _restore =
        Restore(|| template_patch(r#"{"azure.workload.identity/use": null}"#, r#"{"iam.amazonaws.com/role": null}"#));
    let config = r#"{"podLabels": {"team": "a"}, "podAnnotations": {"a": "b"}}"#;
    assert_eq!(dry_run_warnings(config), Vec::<String>::new(), "a template without third-party keys");

    template_patch(r#"{"azure.workload.identity/use": "true"}"#, r#"{"iam.amazonaws.com/role": "velero-role"}"#);
    let rule = "(Velero 1.18's rule, applied here on every version); list it to keep it";
    let expected = vec![
        format!(
            "podLabels does not list azure.workload.identity/use (\"true\", a label on the node-agent DaemonSet's pod \
             template): data-mover pods lose it once podLabels is set {rule}"
        ),
        format!(
            "podAnnotations does not list iam.amazonaws.com/role (\"velero-role\", an annotation on the node-agent \
             DaemonSet's pod template): data-mover pods lose it once podAnnotations is set {rule}"
        ),
    ];
    eventually_eq(
        "the watch sees the template's new keys",
        Duration::from_secs(5),
        || dry_run_warnings(config),
        expected,
    );
    // Listing the keys keeps them on the pods: no warning.
    let listed = r#"{"podLabels": {"team": "a", "azure.workload.identity/use": "true"}, "podAnnotations": {"iam.amazonaws.com/role": "velero-role"}}"#;
    assert_eq!(dry_run_warnings(listed), Vec::<String>::new());

    template_patch(r#"{"azure.workload.identity/use": null}"#, r#"{"iam.amazonaws.com/role": null}"#);
    eventually_eq("the watch sees the keys go", Duration::from_secs(5), || dry_run_warnings(config), Vec::new());
}

/// The warnings about a class that does not exist follow the cluster's classes, as the server's
/// watches see them: PriorityClasses (`priorityClassName`), StorageClasses (`cachePVC`).
#[test]
fn class_warnings_follow_the_classes_in_the_cluster() {
    let _serial = serial();
    webhook_up();
    let kinds = [
        (
            "priorityclass",
            r#"{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "value": 10"#,
            r#"{"priorityClassName": "NAME"}"#,
        ),
        (
            "storageclass",
            r#"{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "e2e.example.com/none""#,
            r#"{"cachePVC": {"storageClass": "NAME"}}"#,
        ),
    ];
    for (kind, object, config) in kinds {
        let name = unique("e2e-followed");
        let config = config.replace("NAME", &name);
        let missing =
            |warnings: Vec<String>| warnings.iter().any(|w| w.contains(&format!("\"{name}\" does not exist")));
        assert!(missing(dry_run_warnings(&config)), "{kind}");
        kubectl_stdin(&["create", "-f", "-"], &format!(r#"{object}, "metadata": {{"name": "{name}"}}}}"#)).must();
        wait_until(&format!("the watch sees the new {kind}"), Duration::from_secs(5), || {
            !missing(dry_run_warnings(&config))
        });
        kubectl(&["delete", kind, &name]).must();
        wait_until(&format!("the watch sees the {kind} go"), Duration::from_secs(5), || {
            missing(dry_run_warnings(&config))
        });
    }
}

/// Writers of the one ConfigMap at once, as `kubectl apply` from several places: the API server
/// retries a write that lost a conflict and calls the webhook again for each try. Every writer
/// must get the verdict of its own contents, whatever another writer's retry left behind, and
/// each contents is checked about once however often it comes back (new, old or retried).
#[test]
fn concurrent_writers_each_get_the_verdict_of_their_own_contents() {
    let _serial = serial();
    webhook_up();
    serve_config(FULL_CONFIG);
    const WRITERS: usize = 8;
    let config = |n: usize| {
        if n % 4 == 3 {
            format!(r#"{{"priorityClassName": "Bad_Class_{n}"}}"#)
        } else {
            format!(r#"{{"priorityClassName": "e2e-missing-{n}", "podLabels": {{"writer": "w{n}"}}}}"#)
        }
    };
    let calls = || {
        metric_sum(
            &apiserver_metrics(),
            "apiserver_admission_webhook_request_total",
            &["name=\"validate-config.node-agent-webhook.io\""],
        )
    };
    let checks = |result: &str| {
        metric_sum(&our_metrics(), "node_agent_webhook_config_checks_total", &[&format!("result=\"{result}\"")])
    };
    let (calls_before, checked_before) = (calls(), checks("checked"));
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|n| {
                let value = config(n);
                scope.spawn(move || apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), &value))
            })
            .collect();
        writers.into_iter().map(|writer| writer.join().expect("a writer thread")).collect()
    });
    for (n, run) in runs.iter().enumerate() {
        if n % 4 == 3 {
            let lines = denial_lines(run);
            assert_eq!(
                lines[0], "ConfigMap velero/node-agent-config is not a valid node-agent config (1 error):",
                "writer {n}"
            );
            assert!(
                lines[1].starts_with(&format!(
                    r#"data[node-agent-config.json]: priorityClassName: Invalid value: "Bad_Class_{n}": "#
                )),
                "writer {n}: {lines:?}"
            );
        } else {
            assert!(run.ok, "writer {n} was refused: {}", run.stderr);
            let own = format!(r#"priorityClassName: PriorityClass "e2e-missing-{n}" does not exist"#);
            assert!(run.warnings().iter().any(|w| w.contains(&own)), "writer {n}: {:?}", run.warnings());
        }
    }
    let stored = stored_data().expect("stored config")["node-agent-config.json"].as_str().map(str::to_string);
    let admitted: Vec<String> = (0..WRITERS).filter(|n| n % 4 != 3).map(config).collect();
    assert!(stored.as_ref().is_some_and(|s| admitted.contains(s)), "stored {stored:?}, not one admitted value");
    // The contents checked: each writer's new one, and at most the value stored before them.
    let (calls, checked) = (calls() - calls_before, checks("checked") - checked_before);
    assert!(calls >= WRITERS as f64, "{calls} webhook calls for {WRITERS} writes");
    assert!(checked <= (WRITERS + 1) as f64, "{checked} checks for {calls} webhook calls of {WRITERS} writes");
    eprintln!("{WRITERS} concurrent writes: {calls} webhook calls, {checked} contents checked");
}
