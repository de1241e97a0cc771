//! The mutating webhook on data-mover pods created as node-agent creates them: its ServiceAccount,
//! a token bound to its pod, the controller owner reference; then the pod the API server stored.

use serde_json::{json, Value};

use crate::harness::*;
use crate::*;

const VERSIONS: [&str; 2] = ["v1.17", "v1.18"];
const KINDS: [&str; 4] = ["dataupload", "datadownload", "podvolumebackup", "podvolumerestore"];
const PRIORITY_CLASS: &str = "e2e-backup";

/// The `applied` annotation up to the config identity, which differs between runs.
fn settings_applied(pod: &Value) -> Option<String> {
    applied_annotation(pod).map(|text| text.split(" (").next().unwrap_or_default().to_string())
}

fn assert_contains_all(want: &Value, got: &Value, what: &str) {
    for (key, value) in want.as_object().into_iter().flatten() {
        if key != "node-agent-webhook.io/applied" {
            assert_eq!(got.get(key), Some(value), "{what}[{key}]");
        }
    }
}

fn priority_class_value(name: &str) -> Value {
    kubectl(&["get", "priorityclass", name, "-o", "json"]).json()["value"].clone()
}

#[test]
fn every_fixture_created_as_node_agent_gets_the_planned_settings() {
    let _serial = serial();
    webhook_up();
    serve_config(FULL_CONFIG);
    let node_agent = Identity::node_agent();
    let mut created = Vec::new();
    for version in VERSIONS {
        for kind in KINDS {
            let what = format!("{version} {kind}");
            let (name, pod) = pod_fixture(version, kind);
            let plan = planned(FULL_CONFIG, &pod, None);
            let (run, stored) = create_pod(Some(&node_agent), &pod);
            created.push(name);
            assert!(run.warnings().is_empty(), "{what}: {}", run.stderr);

            assert_eq!(node_affinity_terms(&stored), node_affinity_terms(&plan), "{what}: node affinity");
            let ours = json!({"key": "node-role.example.com/backup", "operator": "In", "values": ["true"]});
            if kind == "dataupload" {
                // ANDed into every term the pod came with (a new term when it had none).
                let sent = node_affinity_terms(&pod).as_array().cloned().unwrap_or_else(|| vec![json!({})]);
                let stored_terms = node_affinity_terms(&stored);
                assert_eq!(
                    stored_terms.as_array().map(Vec::len),
                    Some(sent.len()),
                    "{what}: {}",
                    json_of(&stored_terms)
                );
                for (term, sent_term) in stored_terms.as_array().into_iter().flatten().zip(&sent) {
                    let mut want = sent_term["matchExpressions"].as_array().cloned().unwrap_or_default();
                    want.push(ours.clone());
                    assert_eq!(term["matchExpressions"], json!(want), "{what}");
                }
            } else {
                // PodVolumeBackup/Restore must run where the volume is; these DataDownload pods are
                // bound to the workload's node (WaitForFirstConsumer).
                assert_eq!(node_affinity_terms(&stored), node_affinity_terms(&pod), "{what}: affinity left as sent");
            }
            assert_eq!(
                stored["spec"]["containers"][0]["resources"], plan["spec"]["containers"][0]["resources"],
                "{what}"
            );
            assert_eq!(
                stored["spec"]["containers"][0]["resources"],
                json!({"limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "500m", "memory": "512Mi"}}),
                "{what}"
            );
            assert_contains_all(&plan["metadata"]["labels"], &stored["metadata"]["labels"], &format!("{what} labels"));
            assert_eq!(stored["metadata"]["labels"]["team"], "platform", "{what}");
            assert_contains_all(&plan["metadata"]["annotations"], &stored["metadata"]["annotations"], &what);
            assert_eq!(settings_applied(&stored), settings_applied(&plan), "{what}: applied annotation");
            // The Priority plugin computed the priority from the class we set.
            assert_eq!(stored["spec"]["priorityClassName"], PRIORITY_CLASS, "{what}");
            assert_eq!(stored["spec"]["priority"], priority_class_value(PRIORITY_CLASS), "{what}: spec.priority");
            assert_eq!(stored["spec"]["preemptionPolicy"], "Never", "{what}: the class's preemptionPolicy");
        }
    }
    delete_pods(&created, NS);
}

#[test]
fn a_pod_bound_to_its_node_gets_no_load_affinity() {
    let _serial = serial();
    webhook_up();
    serve_config(FULL_CONFIG);
    let (name, mut pod) = pod_fixture("v1.18", "dataupload");
    pod["spec"]["nodeName"] = json!("e2e-node-1");
    let (_, stored) = create_pod(Some(&Identity::node_agent()), &pod);
    assert_eq!(node_affinity_terms(&stored), node_affinity_terms(&pod), "the affinity is left as sent");
    assert_eq!(stored["metadata"]["labels"]["team"], "platform", "the other settings still apply");
    assert_eq!(settings_applied(&stored).as_deref(), Some("podResources,priorityClassName,podLabels,podAnnotations"));
    delete_pods(&[name], NS);
}

#[test]
fn a_priority_class_that_does_not_exist_leaves_the_priority_and_kubectl_shows_our_warning() {
    let _serial = serial();
    webhook_up();
    let config = FULL_CONFIG.replace(PRIORITY_CLASS, "e2e-does-not-exist");
    serve_config(&config);
    let (name, pod) = pod_fixture("v1.18", "datadownload");
    let (run, stored) = create_pod(Some(&Identity::node_agent()), &pod);
    assert_eq!(stored["spec"].get("priorityClassName"), None, "{}", json_of(&stored["spec"]));
    assert_eq!(stored["spec"]["priority"], 0);
    let warnings = run.warnings();
    assert!(
        warnings.iter().any(|w| w.contains("e2e-does-not-exist")),
        "kubectl shows why the class was not set: {}",
        run.stderr
    );
    assert_eq!(stored["metadata"]["labels"]["team"], "platform", "the other settings still apply");
    delete_pods(&[name], NS);
}

#[test]
fn pods_not_created_by_node_agent_are_stored_as_sent() {
    let _serial = serial();
    webhook_up();
    serve_config(FULL_CONFIG);
    let skipped = |reason: &str| {
        metric_sum(&our_metrics(), "node_agent_webhook_pods_skipped_total", &[&format!("reason=\"{reason}\"")])
    };
    let reviews = || metric_sum(&our_metrics(), "node_agent_webhook_admission_requests_total", &["webhook=\"mutate\""]);

    // The cluster admin: the matchConditions keep the request from us.
    let before = reviews();
    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (_, stored) = create_pod(None, &pod);
    assert_stored_as_sent(&pod, &stored, "created by the admin");
    assert_eq!(reviews(), before, "the admin's pod never reaches the server");
    delete_pods(&[name], NS);

    // node-agent's account, but from a pod that is not node-agent: we are asked, and decline.
    let before = skipped("not_node_agent");
    let impostor = Identity::service_account(NS, "velero", Some("e2e-not-node-agent"));
    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (_, stored) = create_pod(Some(&impostor), &pod);
    assert_stored_as_sent(&pod, &stored, "created from a pod not named node-agent-*");
    assert_eq!(skipped("not_node_agent"), before + 1.0);
    delete_pods(&[name], NS);

    // Another namespace: the namespaceSelector keeps the request from us.
    let before = reviews();
    let (name, mut pod) = pod_fixture("v1.18", "dataupload");
    pod["metadata"]["namespace"] = json!("e2e-app");
    let (_, stored) = create_pod(Some(&Identity::node_agent()), &pod);
    assert_stored_as_sent(&pod, &stored, "created in another namespace");
    assert_eq!(reviews(), before, "a pod in another namespace never reaches the server");
    delete_pods(&[name], "e2e-app");
}

const CLASS_CONFIG: &str = r#"{"loadAffinity": [
  {"nodeSelector": {"matchLabels": {"pool": "general"}}},
  {"storageClass": "e2e-fast", "nodeSelector": {"matchLabels": {"pool": "fast"}}},
  {"storageClass": "e2e-slow", "nodeSelector": {"matchLabels": {"pool": "slow"}}}
]}"#;

fn create_pvc(namespace: &str, name: &str, class: &str) {
    let pvc = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    });
    kubectl_stdin(&["create", "-f", "-"], &pvc.to_string()).must();
}

fn pool_of(pod: &Value) -> Vec<Value> {
    node_affinity_terms(pod)[0]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["key"] == "pool")
        .flat_map(|e| e["values"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn the_load_affinity_entry_is_chosen_by_the_real_pvcs_storage_class() {
    let _serial = serial();
    webhook_up();
    serve_config(CLASS_CONFIG);
    let node_agent = Identity::node_agent();

    // DataUpload: the backup PVC in the Velero namespace (named as the DataUpload).
    // No PVC at all: the lookup finds nothing, and the entry without storageClass applies.
    for (class, pool) in [(Some("e2e-fast"), "fast"), (Some("e2e-unlisted"), "general"), (None, "general")] {
        let (name, pod) = pod_fixture("v1.18", "dataupload");
        if let Some(class) = class {
            create_pvc(NS, &name, class);
        }
        let (_, stored) = create_pod(Some(&node_agent), &pod);
        assert_eq!(pool_of(&stored), vec![json!(pool)], "DataUpload with a {class:?} backup PVC");
        assert_eq!(node_affinity_terms(&stored), node_affinity_terms(&planned(CLASS_CONFIG, &pod, class)));
        delete_pods(std::slice::from_ref(&name), NS);
        if class.is_some() {
            kubectl(&["delete", "pvc", &name, "-n", NS, "--wait=false"]).must();
        }
    }

    // DataDownload: the restore's target PVC in the application namespace, named by the CR. An
    // Immediate storage class leaves the pod unbound to a node, so loadAffinity applies.
    let (name, mut pod) = pod_fixture("v1.18", "datadownload");
    if let Some(spec) = pod["spec"].as_object_mut() {
        spec.remove("nodeSelector");
    }
    let target = unique("restored-data");
    create_pvc("e2e-app", &target, "e2e-slow");
    let data_download = json!({
        "apiVersion": "velero.io/v2alpha1", "kind": "DataDownload",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"targetVolume": {"pvc": target, "namespace": "e2e-app", "pv": ""}, "operationTimeout": "10m"}
    });
    kubectl_stdin(&["create", "-f", "-"], &data_download.to_string()).must();
    let (_, stored) = create_pod(Some(&node_agent), &pod);
    assert_eq!(pool_of(&stored), vec![json!("slow")], "DataDownload into an e2e-slow PVC");
    delete_pods(std::slice::from_ref(&name), NS);
    kubectl(&["delete", "datadownload", &name, "-n", NS]).must();
    kubectl(&["delete", "pvc", &target, "-n", "e2e-app", "--wait=false"]).must();
}
