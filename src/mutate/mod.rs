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
/// object as the API server will. A patch that does not apply is dropped (the pod is
/// admitted unchanged, with a warning): a bug of ours must never stop a backup.
/// Returns the decision and whether the self-check failed.
pub fn decide(pod: &Value, plan: &Plan) -> (Decision, bool) {
    let mut warnings = plan.warnings.clone();
    if plan.ops.is_empty() {
        return (Decision::allow_with_warnings(warnings), false);
    }
    match patch::self_check(pod, &plan.ops) {
        Ok(_) => {
            let decision = Decision { allowed: true, denial: None, warnings, patch: Some(patch::to_bytes(&plan.ops)) };
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
