//! Velero's repository maintenance job and backup repository ConfigMaps through the real API
//! server: the shipped CEL condition sends them to our server by name, and kubectl prints our
//! denial with the line and column inside the data value.

use serde_json::Value;

use crate::denial_lines;
use crate::harness::*;

const MAINTENANCE: &str = "velero-repo-maintenance";
const REPOSITORY: &str = "backup-repository-config";

fn stored(name: &str) -> Option<Value> {
    let run = kubectl(&["get", "cm", name, "-n", NS, "-o", "json"]);
    run.ok.then(|| run.json()["data"].clone())
}

#[test]
fn a_bad_maintenance_configmap_is_denied_with_line_and_column() {
    let _serial = serial();
    kubectl(&["delete", "cm", MAINTENANCE, "-n", NS, "--ignore-not-found"]).must();
    let file = repo_path("examples/other-configmaps/velero-repo-maintenance.json");
    let run = kubectl(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    assert_eq!(
        denial_lines(&run),
        vec![
            "ConfigMap velero/velero-repo-maintenance is not a valid repository maintenance job config (4 errors):",
            r#"data[Global]: Invalid value: "Global": did you mean "global"? Velero looks data keys up exactly and never reads this value"#,
            r#"data[global]: podResources: Required value: cpuLimit, memoryLimit not set: Velero creates no maintenance Job for the repositories this key applies to unless cpuRequest, cpuLimit, memoryRequest and memoryLimit are all given, and fails again every 5 minutes; use "0" for no limit (line 2, column 19)"#,
            "data[global]: keepLatestMaintenanceJobs: Invalid value: -1: must be greater than or equal to 0: Velero deletes every maintenance Job and then panics, on every reconcile (line 6, column 32)",
            r#"data[global]: loadAffinity[0].nodeSelector.matchExpressions[0].operator: Unsupported value: "in": supported values: "DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn" (line 8, column 77)"#,
        ]
    );
    assert_eq!(stored(MAINTENANCE), None, "a denied create stores nothing");

    // Fixed, it is admitted with the warnings that remain true, and a DELETE warns.
    let fixed = r#"{"podResources": {"cpuRequest": "100m", "cpuLimit": "0", "memoryRequest": "128Mi", "memoryLimit": "0"}, "keepLatestMaintenanceJobs": 0}"#;
    let from_literal = format!("--from-literal=global={fixed}");
    let manifest = kubectl(&["create", "cm", MAINTENANCE, "-n", NS, &from_literal, "--dry-run=client", "-o", "yaml"])
        .must()
        .stdout;
    let created = kubectl_stdin(&["apply", "-f", "-"], &manifest);
    let deleted = kubectl(&["delete", "cm", MAINTENANCE, "-n", NS]);
    for (run, warning) in [
        (created, "keepLatestMaintenanceJobs: 0 makes Velero delete every maintenance Job"),
        (deleted, "fails to start without ConfigMap velero/velero-repo-maintenance"),
    ] {
        assert!(run.ok, "{}", run.stderr);
        assert!(run.warnings().iter().any(|w| w.contains(warning)), "{warning}: {:?}", run.warnings());
    }
}

#[test]
fn a_bad_backup_repository_configmap_is_denied() {
    let _serial = serial();
    kubectl(&["delete", "cm", REPOSITORY, "-n", NS, "--ignore-not-found"]).must();
    let file = repo_path("examples/other-configmaps/backup-repository-config.json");
    let run = kubectl(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    let lines = denial_lines(&run);
    assert_eq!(
        lines[0],
        "ConfigMap velero/backup-repository-config is not a valid backup repository config (2 errors):"
    );
    assert!(
        lines[1].starts_with("data[kopia]: cacheLimitMB: Invalid value: 1000000: must be less than 1000000"),
        "{lines:?}"
    );
    assert!(lines[1].ends_with("(line 2, column 19)"), "{lines:?}");
    assert_eq!(stored(REPOSITORY), None, "a denied create stores nothing");
}

/// With cluster access the server reads the names Velero uses from its Deployment's and
/// node-agent DaemonSet's args: a name that differs from the server's flags is a metric (and a
/// start-up warning).
#[test]
fn configmap_names_velero_uses_are_compared_with_the_flags() {
    let _serial = serial();
    let deployment = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "velero", "namespace": "velero"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"deploy": "velero"}},
                 "template": {"metadata": {"labels": {"deploy": "velero"}},
                              "spec": {"containers": [{"name": "velero", "image": "velero/velero:v1.18.3",
                                        "args": ["server", "--repo-maintenance-job-configmap=maintenance-custom"]}]}}}}"#;
    kubectl_stdin(&["apply", "-f", "-"], deployment).must();
    // The names are read once, at start.
    webhook_down();
    webhook_up();
    let mismatch = |kind: &str| {
        metric_sum(&our_metrics(), "node_agent_webhook_configmap_name_mismatch", &[&format!("kind=\"{kind}\"")])
    };
    wait_until("the names are compared", std::time::Duration::from_secs(10), || mismatch("repo-maintenance") == 1.0);
    assert_eq!(mismatch("node-agent"), 0.0, "the DaemonSet's --node-agent-configmap matches the flag");
    kubectl(&["delete", "deployment", "velero", "-n", NS]).must();
    webhook_down();
}
