//! The mutating webhook's pure core: which pods are data-mover pods, and the patch that
//! gives one the live config's settings.

pub mod affinity;
pub mod identity;
pub mod patch;
pub mod plan;

use serde_json::Value;

use crate::admission::Decision;
use plan::Plan;

/// Turns a plan into the admission decision, after applying the patch to the request
/// object (owned: no copy) as the API server will, from the ops in memory (the bytes sent are
/// their serde serialization), which it consumes. A patch that does not apply is dropped
/// (the pod is admitted unchanged, with a warning): a bug of ours must never stop a backup.
/// Returns the decision and whether the self-check failed.
pub fn decide(mut pod: Value, plan: Plan) -> (Decision, bool) {
    let Plan { ops, applied, mut warnings, .. } = plan;
    if ops.is_empty() {
        return (Decision::allow_with_warnings(warnings), false);
    }
    let bytes = patch::to_bytes(&ops);
    match patch::apply_ops(&mut pod, ops) {
        Ok(()) => {
            let decision = Decision {
                allowed: true,
                denial: None,
                warnings,
                patch: Some(bytes),
                applied: applied.iter().map(|s| s.as_str()).collect(),
            };
            (decision, false)
        }
        Err(err) => {
            warnings.push(format!(
                "node-agent-webhook dropped its patch because it did not apply ({err}); please report this"
            ));
            (Decision::allow_with_warnings(warnings), true)
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
    SelfCheck(String),
}

/// Plans a pod's patch offline, exactly as the webhook would for a CREATE by `user` in the
/// pod's namespace; `storage_class` stands in for the PVC lookup.
pub fn preview(
    pod: &Value,
    config: &crate::config::model::NodeAgentConfig,
    user: &str,
    storage_class: Option<String>,
) -> Result<Preview, PreviewError> {
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("velero");
    let request: crate::admission::Request = serde_json::from_value(serde_json::json!({
        "uid": "preview", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": namespace,
        "name": pod.pointer("/metadata/name").cloned().unwrap_or_default(),
        "operation": "CREATE", "userInfo": {"username": user}, "object": pod
    }))
    .map_err(|e| PreviewError::NotAPod(e.to_string()))?;
    let identity = identity::NodeAgentIdentity {
        namespace: namespace.to_string(),
        service_accounts: vec!["velero".to_string(), "velero-server".to_string()],
    };
    let mover = match identity.identify(&request) {
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
        generation: 1,
        storage_class: plan::StorageClass::Known(storage_class),
        priority_classes: None,
    });
    let patched = patch::apply(pod.clone(), &patch::to_bytes(&plan.ops)).map_err(PreviewError::SelfCheck)?;
    let patch = Value::Array(plan.ops.iter().map(patch::Op::to_json).collect());
    Ok(Preview { patch, patched, warnings: plan.warnings })
}
