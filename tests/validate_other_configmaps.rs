//! The validating webhook for Velero's two other ConfigMaps, end to end: the real binary on
//! 127.0.0.1 over real TLS, the ConfigMap's name telling which kind a review is for.

mod support;

use serde_json::{json, Value};
use support::*;

fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "velero"}, "data": data})
}

fn delete(name: &str) -> Value {
    let mut review = configmap_review("DELETE", None, Some(&configmap(name, json!({}))));
    review["request"]["name"] = json!(name);
    review["request"]["namespace"] = json!("velero");
    review
}

#[test]
fn each_kind_is_denied_with_its_own_findings() {
    let (_certs, server, client) = start_with(&[]);
    let url = server.url("/validate");

    let maintenance = repo_json("examples/other-configmaps/velero-repo-maintenance.json");
    let answer = review(&client, &url, &configmap_review("CREATE", Some(&maintenance), None));
    assert_eq!(answer["allowed"], false, "{answer}");
    assert_eq!(answer["status"]["code"], 422);
    assert_eq!(
        answer["status"]["message"],
        "ConfigMap velero/velero-repo-maintenance is not a valid repository maintenance job config (4 errors):\n\
         data[Global]: Invalid value: \"Global\": did you mean \"global\"? Velero looks data keys up exactly and never reads this value\n\
         data[global]: podResources: Required value: cpuLimit, memoryLimit not set: Velero creates no maintenance Job for the repositories this key applies to unless cpuRequest, cpuLimit, memoryRequest and memoryLimit are all given, and fails again every 5 minutes; use \"0\" for no limit (line 2, column 19)\n\
         data[global]: keepLatestMaintenanceJobs: Invalid value: -1: must be greater than or equal to 0: Velero deletes every maintenance Job and then panics, on every reconcile (line 6, column 32)\n\
         data[global]: loadAffinity[0].nodeSelector.matchExpressions[0].operator: Unsupported value: \"in\": supported values: \"DoesNotExist\", \"Exists\", \"Gt\", \"In\", \"Lt\", \"NotIn\" (line 8, column 77)"
    );

    let repository = repo_json("examples/other-configmaps/backup-repository-config.json");
    let answer = review(&client, &url, &configmap_review("CREATE", Some(&repository), None));
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "ConfigMap velero/backup-repository-config is not a valid backup repository config (2 errors):\n"
        ),
        "{message}"
    );
    assert!(message.contains("data[kopia]: cacheLimitMB: Invalid value: 1000000: must be less than 1000000: Velero hands it to Kopia as \"1e+06\""), "{message}");
    assert!(message.contains("data[kopia]: fullMaintenanceInterval: Unsupported value: \"FastGC\""), "{message}");

    // Valid ones are admitted, warnings and all.
    let valid = configmap("velero-repo-maintenance", json!({"global": "{\"keepLatestMaintenanceJobs\": 0}"}));
    let answer = review(&client, &url, &configmap_review("CREATE", Some(&valid), None));
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(strings(&answer["warnings"]).len(), 1, "{answer}");
}

#[test]
fn updates_and_deletes_warn_about_what_velero_does_not_see() {
    let (_certs, server, client) = start_with(&[]);
    let url = server.url("/validate");
    let before = configmap("backup-repository-config", json!({"kopia": "{\"cacheLimitMB\": 2048}"}));
    let after = configmap("backup-repository-config", json!({"kopia": "{\"cacheLimitMB\": 4096}"}));
    let answer = review(&client, &url, &configmap_review("UPDATE", Some(&after), Some(&before)));
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(
        strings(&answer["warnings"]),
        vec!["existing BackupRepositories keep the repositoryConfig they were created with: this edit reaches new ones only; edit spec.repositoryConfig of the others (fullMaintenanceInterval applies only to a new Kopia repository)"]
    );
    for (name, want) in [
        ("velero-repo-maintenance", "the Velero server 1.17+ fails to start without ConfigMap velero/velero-repo-maintenance, and until then maintenance Jobs silently get the defaults: recreate it before the server restarts"),
        ("backup-repository-config", "the Velero server 1.17+ and node-agent 1.18+ fail to start without ConfigMap velero/backup-repository-config, and new BackupRepositories get no config: recreate it before they restart"),
    ] {
        let answer = review(&client, &url, &delete(name));
        assert_eq!(answer["allowed"], true, "{answer}");
        assert_eq!(strings(&answer["warnings"]), vec![want.to_string()], "{name}");
    }
}

#[test]
fn the_names_come_from_the_flags_and_a_kind_can_be_switched_off() {
    let (_certs, server, client) =
        start_with(&["--repo-maintenance-configmap", "maintenance", "--backup-repository-configmap", ""]);
    let url = server.url("/validate");
    let bad = json!({"global": "{\"keepLatestMaintenanceJobs\": -1}"});
    let renamed =
        review(&client, &url, &configmap_review("CREATE", Some(&configmap("maintenance", bad.clone())), None));
    assert_eq!(renamed["allowed"], false, "{renamed}");
    let default_name =
        review(&client, &url, &configmap_review("CREATE", Some(&configmap("velero-repo-maintenance", bad)), None));
    assert_eq!(default_name["allowed"], true, "{default_name}");
    assert_eq!(default_name.get("warnings"), None, "not ours: untouched");
    let off = repo_json("examples/other-configmaps/backup-repository-config.json");
    let answer = review(&client, &url, &configmap_review("CREATE", Some(&off), None));
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(answer.get("warnings"), None, "switched off: untouched");
}
