//! End to end with the real Velero node-agent as the pod creator: node-agent of the version
//! under test (`VELERO_VERSION`, built from Velero's Go module) runs as a process against the
//! loopback kube-apiserver with its own bound token, accepts DataDownloads the tests create and
//! submits its data-mover pods itself; our server (started by the shared harness) is reached
//! through the shipped webhook configurations. Every assertion is on what the API server stored.
//!
//! Run with `make e2e-velero` (hack/velero/e2e.sh): it builds Velero and the control plane,
//! installs Velero's CRDs and `velero install`'s objects, and runs these tests one at a time.
//! `VELERO_VERSION=v1.17.2 make e2e-velero` (or v1.16.2) for the other releases.

#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;

mod datadownload;
mod dataupload;
mod node_agent;

use std::time::Duration;

use harness::*;
use serde_json::Value;

/// Applies node-agent's ConfigMap as Velero's docs make it (`kubectl create cm --from-file`,
/// through `kubectl apply`, so the validating webhook judges it) and waits until our server
/// serves it. Panics when it is refused.
pub fn set_config(value: &str) {
    let before = config_generation();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("node-agent-config.json");
    std::fs::write(&file, value).expect("write config");
    let from_file = format!("--from-file=node-agent-config.json={}", file.display());
    let manifest =
        kubectl(&["create", "cm", CONFIGMAP, "-n", NS, &from_file, "--dry-run=client", "-o", "yaml"]).must().stdout;
    let run = kubectl_stdin(&["apply", "-f", "-"], &manifest);
    assert!(run.ok, "config not admitted: {}", run.stderr);
    if run.stdout.contains("unchanged") {
        return;
    }
    wait_until("the config edit reaches our server", Duration::from_secs(10), || config_generation() > before);
}

pub fn config_generation() -> f64 {
    metric_sum(&our_metrics(), "node_agent_webhook_config_generation", &[])
}

pub fn applied_annotation(pod: &Value) -> Option<String> {
    pod["metadata"]["annotations"]["node-agent-webhook.io/applied"].as_str().map(str::to_string)
}

/// The settings named in `node-agent-webhook.io/applied` ("a,b (config generation N)").
pub fn applied_settings(pod: &Value) -> Vec<String> {
    applied_annotation(pod)
        .map(|a| a.split(" (").next().unwrap_or_default().split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

pub fn node_affinity_terms(pod: &Value) -> Value {
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .clone()
}

pub fn json_of(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
