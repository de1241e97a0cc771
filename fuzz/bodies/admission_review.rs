//! The AdmissionReview decoder and both webhooks' pure decisions behind it: the input is a
//! request body; a decoded ConfigMap review goes through the validating webhook (each of the
//! three kinds by its default name), a pod review through the mutating webhook's
//! identify/plan/patch under the full example config.

use std::collections::HashSet;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Pod;
use node_agent_webhook::admission::{decode_review, encode_response};
use node_agent_webhook::config::kind::Names;
use node_agent_webhook::config::model::NodeAgentConfig;
use node_agent_webhook::config::validate::Environment;
use node_agent_webhook::mutate::identity::NodeAgentIdentity;
use node_agent_webhook::mutate::plan::{self, PlanInput, StorageClass};
use node_agent_webhook::mutate::{verified_mutation, Mutation};
use node_agent_webhook::mutating::{decision, submission};
use node_agent_webhook::validating::{review_configmap, Target};
use serde_json::Value;

/// The docs' complete example (cachePVC fixed), as bench/lib.sh's config-full.json.
const CONFIG: &str = r#"{
  "loadConcurrency": {"globalConfig": 2, "prepareQueueLength": 15,
    "perNodeConfig": [{"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node1"}}, "number": 3}]},
  "loadAffinity": [
    {"nodeSelector": {"matchLabels": {"node-type": "backup"},
      "matchExpressions": [{"key": "critical-workload", "operator": "DoesNotExist"}]}},
    {"nodeSelector": {"matchLabels": {"environment": "staging"}}, "storageClass": "fast-ssd"}],
  "podResources": {"cpuRequest": "500m", "cpuLimit": "1000m", "ephemeralStorageRequest": "5Gi",
    "ephemeralStorageLimit": "10Gi", "memoryRequest": "1Gi", "memoryLimit": "2Gi"},
  "priorityClassName": "backup-priority",
  "backupPVC": {"fast-storage": {"storageClass": "backup-optimized-class", "readOnly": true, "spcNoRelabeling": true},
    "slow-storage": {"storageClass": "backup-storage-2"}},
  "restorePVC": {"ignoreDelayBinding": true},
  "privilegedFsBackup": true,
  "cachePVC": {"residentThresholdInMB": 1024, "storageClass": "cache-optimized-storage"},
  "podLabels": {"spectrocloud.com/connection": "proxy", "gnp/k8s-api-access": "", "cp/inject-truststore": "extended"},
  "podAnnotations": {"iam.amazonaws.com/role": "velero-backup-role", "prometheus.io/scrape": "true"}
}"#;

fn config() -> &'static NodeAgentConfig {
    static CONFIG_CELL: OnceLock<NodeAgentConfig> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| {
        node_agent_webhook::config::load::config_from_text(CONFIG, "node-agent-config", None)
            .expect("the example config is valid")
    })
}

/// One input: panics (an `assert!` included) are the findings.
pub fn run(bytes: &[u8]) {
    let Ok(request) = decode_review(bytes) else { return };
    assert!(!request.uid.is_empty());
    // The three ConfigMaps by their default names, each checked as its kind.
    let target = Target { namespace: "velero".to_string(), names: Names::default() };
    let validated = review_configmap(&request, &target, &Environment::default());
    check_response(&request.uid, &encode_response(&request.uid, &validated));

    let identity = NodeAgentIdentity {
        namespace: "velero".to_string(),
        service_accounts: vec!["velero".to_string(), "velero-server".to_string()],
    };
    let (Ok(mover), Some(pod)) = (identity.identify(&submission(&request)), request.object.as_ref()) else { return };
    let sendable = as_the_api_server_sends(pod);
    let classes: HashSet<String> = ["backup-priority".to_string()].into_iter().collect();
    for (storage_class, priority_classes) in [
        (StorageClass::Known(None), None),
        (StorageClass::Known(Some("fast-ssd".to_string())), Some(&classes)),
        (StorageClass::Unknown, Some(&HashSet::new())),
    ] {
        let plan = plan::plan(&PlanInput {
            pod,
            mover: &mover,
            config: config(),
            config_id: "resourceVersion:1",
            storage_class,
            priority_classes,
        });
        let mutation = verified_mutation(pod.clone(), plan);
        // A dropped patch is the safety net for a plan that does not fit the pod: it must never
        // be needed for a pod as the API server sends one.
        if sendable {
            assert!(!matches!(mutation, Mutation::Dropped { .. }), "the patch applies to its own pod: {mutation:?}");
        }
        let decision = decision(mutation);
        assert!(decision.allowed, "the mutating webhook never denies");
        if let Some(patch) = &decision.patch {
            let ops: serde_json::Value = serde_json::from_slice(patch).expect("the patch is JSON");
            assert!(ops.as_array().is_some_and(|ops| !ops.is_empty()), "a patch is a non-empty array");
        }
        check_response(&request.uid, &encode_response(&request.uid, &decision));
    }
}

/// Whether `pod` has a shape kube-apiserver can send: every field a Pod has is of its type, and
/// `spec` is there, since the API server always encodes it (k8s.io/api v0.31.3 core/v1/types.go:
/// Pod's `Spec` is a `PodSpec` struct, which encoding/json's `omitempty` never leaves out).
fn as_the_api_server_sends(pod: &Value) -> bool {
    pod.get("spec").is_some_and(Value::is_object) && serde_json::from_value::<Pod>(pod.clone()).is_ok()
}

fn check_response(uid: &str, body: &[u8]) {
    let answer: serde_json::Value = serde_json::from_slice(body).expect("the response is JSON");
    assert_eq!(answer["response"]["uid"], uid, "the uid is echoed");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
}
