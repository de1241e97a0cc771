//! End to end against the real kube-apiserver: the shipped webhook configurations registered,
//! our server reached through them, kubectl and node-agent's own identity as the clients.
//! Every assertion is on what kubectl printed or what the API server stored.
//!
//! Run with `make e2e` (hack/e2e/run.sh): it builds and starts the control plane, installs the
//! self-signed overlay and runs these tests one at a time.

mod harness;

mod faults;
mod install;
mod judge;
mod live_config;
mod mutating;
mod other_configmaps;
mod placement;
mod two_namespaces;
mod validating;
mod velero_chart;
mod velero_releases;

use std::time::Duration;

use harness::*;
use serde_json::Value;

pub const DENIED_BY: &str = "admission webhook \"validate-config.node-agent-webhook.io\" denied the request: ";

/// A data-mover pod fixture (testdata/pods) under a name no other test used: the pod name, the
/// data-mover label's value, the owner's name and the PVC name are one name in node-agent's pods.
pub fn pod_fixture(version: &str, kind: &str) -> (String, Value) {
    let path = format!("testdata/pods/{version}/pod-{kind}.json");
    let text = std::fs::read_to_string(repo_path(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let pod: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let original = pod["metadata"]["name"].as_str().expect("fixture name").to_string();
    let name = unique(kind);
    let renamed: Value = serde_json::from_str(&text.replace(&original, &name)).expect("renamed fixture");
    (name, renamed)
}

/// The validating webhook configuration as stored, to re-register it after a test removed it.
pub fn unregister_validating_webhook() -> Value {
    let name = cluster_scoped_name(NS);
    let mut stored = kubectl(&["get", "validatingwebhookconfiguration", &name, "-o", "json"]).json();
    kubectl(&["delete", "validatingwebhookconfiguration", &name]).must();
    if let Some(meta) = stored["metadata"].as_object_mut() {
        for field in ["resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"] {
            meta.remove(field);
        }
    }
    stored
}

/// Registers it again and waits until the API server calls it (its informer catches up).
pub fn register_validating_webhook(object: &Value) {
    kubectl_stdin(&["create", "-f", "-"], &object.to_string()).must();
    wait_until("the validating webhook is called again", Duration::from_secs(10), || {
        let run = apply_config_as(|m| kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], m), "podLabels: {}");
        run.stderr.contains(DENIED_BY)
    });
}
/// The lines of our denial inside kubectl's error output.
pub fn denial_lines(run: &Run) -> Vec<String> {
    assert!(!run.ok, "expected a denial, kubectl said: {}{}", run.stdout, run.stderr);
    let (_, message) = run.stderr.split_once(DENIED_BY).unwrap_or_else(|| panic!("not our denial: {}", run.stderr));
    message.lines().map(str::to_string).collect()
}

/// Creates a pod with the given identity and returns kubectl's run and the stored pod.
pub fn create_pod(identity: Option<&Identity>, pod: &Value) -> (Run, Value) {
    let text = pod.to_string();
    let args = ["create", "-f", "-", "-o", "json"];
    let run = match identity {
        Some(identity) => identity.kubectl_stdin(&args, &text),
        None => kubectl_stdin(&args, &text),
    };
    assert!(run.ok, "pod not created: {}", run.stderr);
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().expect("pod name");
    let stored = kubectl(&["get", "pod", name, "-n", namespace, "-o", "json"]).json();
    (run, stored)
}

/// What the offline planner (`node-agent-webhook mutate --apply`) makes of the pod.
pub fn planned(config: &str, pod: &Value, storage_class: Option<&str>) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.json"), config).expect("config");
    std::fs::write(dir.path().join("pod.json"), pod.to_string()).expect("pod");
    let mut command = std::process::Command::new(BINARY);
    command.args(["mutate", "--apply", "--config"]).arg(dir.path().join("config.json"));
    command.arg("--pod").arg(dir.path().join("pod.json"));
    if let Some(class) = storage_class {
        command.args(["--storage-class", class]);
    }
    let output = command.output().expect("run mutate");
    assert!(output.status.success(), "mutate: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("mutate prints the pod")
}

pub fn node_affinity_terms(pod: &Value) -> Value {
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .clone()
}

/// The fields the webhook would change, as the pod was sent: a pod left alone keeps them all.
pub fn assert_stored_as_sent(sent: &Value, stored: &Value, what: &str) {
    assert_eq!(applied_annotation(stored), None, "{what}");
    assert_eq!(stored["metadata"]["labels"], sent["metadata"]["labels"], "{what}: labels");
    assert_eq!(stored["metadata"].get("annotations"), sent["metadata"].get("annotations"), "{what}: annotations");
    assert_eq!(node_affinity_terms(stored), node_affinity_terms(sent), "{what}: affinity");
    assert_eq!(
        stored["spec"]["containers"][0]["resources"], sent["spec"]["containers"][0]["resources"],
        "{what}: resources"
    );
    assert_eq!(stored["spec"].get("priorityClassName"), None, "{what}");
}

/// Deletes the pods a test created (no kubelet: they go at once).
pub fn delete_pods(names: &[String], namespace: &str) {
    if names.is_empty() {
        return;
    }
    let mut args = vec!["delete", "pod", "-n", namespace, "--wait=false", "--ignore-not-found"];
    args.extend(names.iter().map(String::as_str));
    kubectl(&args).must();
}

pub fn json_of(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
