//! The mutating webhook's pure core: which pods are data-mover pods, and the patch that
//! gives one the live config's settings.

pub mod affinity;
pub mod identity;
pub mod patch;
pub mod plan;
pub mod undone;

use serde_json::Value;

use crate::config::model::NodeAgentConfig;
use plan::{Plan, Setting};

/// Every field of a pod the core reads (identity, planner, preview), as paths of keys; `[]`
/// stands for each item of a list. Every patch op also lies under one of them, so a caller may
/// hand the core a pod pruned to these fields and get the same answer, and the same patch.
pub const POD_FIELDS: &[&[&str]] = &[
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "labels"],
    &["metadata", "annotations"],
    &["metadata", "ownerReferences"],
    &["spec", "affinity"],
    &["spec", "nodeName"],
    &["spec", "nodeSelector"],
    &["spec", "containers", "[]", "name"],
    &["spec", "containers", "[]", "resources"],
    &["spec", "priorityClassName"],
    &["spec", "priority"],
    &["spec", "preemptionPolicy"],
    &["spec", "tolerations"],
];

/// What the mutating webhook does to one data-mover pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Nothing to change: the pod is admitted as it is.
    Unchanged { warnings: Vec<String> },
    /// An RFC 6902 patch (a JSON array) that applies cleanly to the pod, and the settings it applies.
    Patch { patch: Vec<u8>, applied: Vec<Setting>, warnings: Vec<String> },
    /// The patch did not apply to the pod itself and was dropped (a bug of ours, with a warning
    /// that says so): the pod is admitted unchanged, since a bug must never stop a backup.
    Dropped { warnings: Vec<String> },
}

/// Turns a plan into the mutation, after applying the patch to the request object (owned: no
/// copy) as the API server will, from the ops in memory (the bytes sent are their serde
/// serialization), which it consumes.
pub fn verified_mutation(mut pod: Value, plan: Plan) -> Mutation {
    let Plan { ops, applied, mut warnings, .. } = plan;
    if ops.is_empty() {
        return Mutation::Unchanged { warnings };
    }
    let bytes = patch::to_bytes(&ops);
    match patch::apply_ops(&mut pod, ops) {
        Ok(()) => Mutation::Patch { patch: bytes, applied, warnings },
        Err(err) => {
            warnings.push(format!(
                "node-agent-webhook dropped its patch because it did not apply ({err}); please report this"
            ));
            Mutation::Dropped { warnings }
        }
    }
}

/// What `node-agent-webhook mutate` shows: the patch, the patched pod, and the warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub patch: Value,
    pub patched: Value,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreviewError {
    #[error("the pod is not a Pod object: {0}")]
    NotAPod(String),
    #[error("the patch does not apply to the pod: {0}")]
    SelfCheck(#[from] patch::PatchError),
    #[error("cannot encode the patch: {0}")]
    Encode(String),
}

/// Plans a pod's patch offline, exactly as a webhook serving `node_agent` would for a
/// CREATE by `user` in the pod's namespace (the Velero namespace when the pod names none);
/// `storage_class` stands in for the PVC lookup, and `config_id` names the config as a server
/// reading the same file would (`config::load::file_id`).
pub fn preview(
    pod: &Value,
    config: &NodeAgentConfig,
    config_id: &str,
    node_agent: &identity::NodeAgentIdentity,
    user: &str,
    storage_class: Option<String>,
) -> Result<Preview, PreviewError> {
    if !pod.is_object() {
        return Err(PreviewError::NotAPod(format!("expected a JSON object, got {pod}")));
    }
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(&node_agent.namespace);
    let submission = identity::Submission {
        creates_a_pod: true,
        namespace,
        name: pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default(),
        username: user,
        token_pod_name: None,
        pod: Some(pod),
    };
    let mover = match node_agent.identify(&submission) {
        Ok(mover) => mover,
        Err(reason) => {
            return Ok(Preview {
                patch: Value::Array(Vec::new()),
                patched: pod.clone(),
                warnings: vec![format!("the webhook leaves this pod alone: {}", reason.as_str())],
            })
        }
    };
    let plan = plan::plan(&plan::PlanInput {
        pod,
        mover: &mover,
        config,
        config_id,
        storage_class: plan::StorageClass::Known(storage_class),
        priority_classes: None,
    });
    let patch = serde_json::to_value(&plan.ops).map_err(|err| PreviewError::Encode(err.to_string()))?;
    let mut patched = pod.clone();
    patch::apply_ops(&mut patched, plan.ops)?;
    Ok(Preview { patch, patched, warnings: plan.warnings })
}
