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

#[allow(dead_code)]
#[path = "../e2e/judge.rs"]
mod judge;

mod datadownload;
mod dataupload;
mod node_agent;
mod placement;

use harness::*;
use serde_json::Value;

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
