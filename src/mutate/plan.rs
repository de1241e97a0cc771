//! Plans the patch that gives one data-mover pod the live config's settings
//! (velero-spec.md §4, §9). Pure: pod, config and what is known of the cluster in, ops out.

use std::collections::HashSet;

use serde_json::Value;

use super::affinity::{self, AffinityPlan};
use super::identity::DataMover;
use super::patch::{self, at, Op};
use crate::config::model::{is_velero_key, NodeAgentConfig, PodResources, APPLIED_ANNOTATION};
use crate::k8s::quantity::Quantity;

/// A pod setting the webhook applies; bounded values, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    LoadAffinity,
    PodResources,
    PriorityClassName,
    PodLabels,
    PodAnnotations,
}

impl Setting {
    pub fn as_str(self) -> &'static str {
        match self {
            Setting::LoadAffinity => "loadAffinity",
            Setting::PodResources => "podResources",
            Setting::PriorityClassName => "priorityClassName",
            Setting::PodLabels => "podLabels",
            Setting::PodAnnotations => "podAnnotations",
        }
    }
}

/// The storage class that chooses the `loadAffinity` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageClass {
    /// Looked up: the PVC's class, or none.
    Known(Option<String>),
    /// The lookup failed: Velero's fallback, the entry without a storage class, applies.
    Unknown,
}

/// Everything the planner reads.
pub struct PlanInput<'a> {
    pub pod: &'a Value,
    pub mover: &'a DataMover,
    pub config: &'a NodeAgentConfig,
    pub generation: u64,
    pub storage_class: StorageClass,
    /// The PriorityClasses that exist, when known.
    pub priority_classes: Option<&'a HashSet<String>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub applied: Vec<Setting>,
    pub warnings: Vec<String>,
    pub affinity_conflict: bool,
    pub priority_class_missing: bool,
}

/// Whether `loadAffinity` can apply to this pod: DataUpload/DataDownload pods that the
/// scheduler places. A pod bound to a node (by `nodeName` or a hostname selector) fails
/// when forced elsewhere.
pub fn takes_load_affinity(pod: &Value, mover: &DataMover) -> bool {
    let node_name = at(pod, &["spec", "nodeName"]).and_then(Value::as_str).unwrap_or_default();
    let hostname_selector = at(pod, &["spec", "nodeSelector", "kubernetes.io/hostname"]).is_some();
    mover.kind.takes_load_affinity() && node_name.is_empty() && !hostname_selector
}

/// Whether choosing the `loadAffinity` entry needs the pod's storage class (an API lookup).
pub fn needs_storage_class(pod: &Value, mover: &DataMover, config: &NodeAgentConfig) -> bool {
    takes_load_affinity(pod, mover) && config.load_affinity.iter().any(|e| !e.storage_class.is_empty())
}

pub fn plan(input: &PlanInput) -> Plan {
    let mut plan = Plan::default();
    plan_affinity(input, &mut plan);
    plan_resources(input, &mut plan);
    plan_priority(input, &mut plan);
    let labels = wanted_metadata(&input.config.pod_labels);
    let label_ops = patch::merge_map(at(input.pod, &["metadata", "labels"]), "/metadata/labels", &labels);
    plan.record(Setting::PodLabels, label_ops);
    let mut annotations = wanted_metadata(&input.config.pod_annotations);
    let current_annotations = at(input.pod, &["metadata", "annotations"]);
    if patch::map_differs(current_annotations, &annotations) {
        plan.applied.push(Setting::PodAnnotations);
    }
    if !plan.applied.is_empty() {
        // Written only together with another change, so running on our own output is a no-op.
        let names: Vec<&str> = plan.applied.iter().map(|s| s.as_str()).collect();
        let summary = format!("{} (config generation {})", names.join(","), input.generation);
        annotations.push((APPLIED_ANNOTATION, summary.as_str()));
        plan.ops.extend(patch::merge_map(current_annotations, "/metadata/annotations", &annotations));
    }
    plan
}

impl Plan {
    fn record(&mut self, setting: Setting, ops: Vec<Op>) {
        if !ops.is_empty() {
            self.applied.push(setting);
            self.ops.extend(ops);
        }
    }
}

/// Labels or annotations to merge, never under `velero.io/` (Velero's own tracking keys) and
/// never our own [`APPLIED_ANNOTATION`] (it would flip on every run).
fn wanted_metadata(map: &std::collections::BTreeMap<String, String>) -> Vec<(&str, &str)> {
    map.iter()
        .filter(|(k, _)| !is_velero_key(k) && k.as_str() != APPLIED_ANNOTATION)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn plan_affinity(input: &PlanInput, plan: &mut Plan) {
    if input.config.load_affinity.is_empty() || !takes_load_affinity(input.pod, input.mover) {
        return;
    }
    let class = match &input.storage_class {
        StorageClass::Known(class) => class.as_deref(),
        StorageClass::Unknown => None,
    };
    let Some(entry) = affinity::choose_entry(&input.config.load_affinity, class) else { return };
    match affinity::plan(input.pod, &affinity::requirements(entry)) {
        AffinityPlan::Unchanged => {}
        AffinityPlan::Ops(ops) => plan.record(Setting::LoadAffinity, ops),
        AffinityPlan::Conflict { term, wanted, existing } => {
            plan.affinity_conflict = true;
            plan.warnings.push(format!(
                "loadAffinity not applied: {} {} {:?} contradicts node affinity term {term}'s {} {} {:?} (set by node-agent at its start); restart node-agent to apply the new loadAffinity",
                wanted.key, wanted.operator, wanted.values, existing.key, existing.operator, existing.values
            ));
        }
    }
}

/// Requests and limits as Velero builds them: a literal `"0"` (or an empty value) is unset.
fn desired_resources(r: &PodResources) -> Value {
    let pick = |pairs: [(&str, &String); 3]| -> serde_json::Map<String, Value> {
        pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty() && v.as_str() != "0")
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect()
    };
    let requests = pick([
        ("cpu", &r.cpu_request),
        ("memory", &r.memory_request),
        ("ephemeral-storage", &r.ephemeral_storage_request),
    ]);
    let limits =
        pick([("cpu", &r.cpu_limit), ("memory", &r.memory_limit), ("ephemeral-storage", &r.ephemeral_storage_limit)]);
    let mut out = serde_json::Map::new();
    if !limits.is_empty() {
        out.insert("limits".into(), Value::Object(limits));
    }
    if !requests.is_empty() {
        out.insert("requests".into(), Value::Object(requests));
    }
    Value::Object(out)
}

/// Resource lists equal by value: the API server re-encodes `1000m` as `1`.
fn same_quantities(current: Option<&Value>, desired: Option<&Value>) -> bool {
    fn as_map(v: Option<&Value>) -> Option<&serde_json::Map<String, Value>> {
        v.and_then(Value::as_object).filter(|m| !m.is_empty())
    }
    match (as_map(current), as_map(desired)) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter().all(|(name, value)| {
                    let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<Quantity>().ok());
                    match (parse(value), b.get(name).and_then(parse)) {
                        (Some(x), Some(y)) => x == y,
                        _ => false,
                    }
                })
        }
        _ => false,
    }
}

fn plan_resources(input: &PlanInput, plan: &mut Plan) {
    let Some(resources) = &input.config.pod_resources else { return };
    let containers = at(input.pod, &["spec", "containers"]).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let by_name =
        containers.iter().position(|c| c.get("name").and_then(Value::as_str) == Some(input.mover.owner_uid.as_str()));
    let Some(index) = by_name.or(if containers.len() == 1 { Some(0) } else { None }) else {
        plan.warnings.push(format!(
            "podResources not applied: no container named {} (the owner's UID) among {} containers",
            input.mover.owner_uid,
            containers.len()
        ));
        return;
    };
    let desired = desired_resources(resources);
    let current = containers.get(index).and_then(|c| c.get("resources"));
    let unchanged =
        ["requests", "limits"].iter().all(|key| same_quantities(current.and_then(|r| r.get(*key)), desired.get(*key)))
            && current.and_then(Value::as_object).is_none_or(|m| m.keys().all(|k| k == "requests" || k == "limits"));
    if !unchanged {
        let op = Op::Add { path: format!("/spec/containers/{index}/resources"), value: desired };
        plan.record(Setting::PodResources, vec![op]);
    }
}

fn plan_priority(input: &PlanInput, plan: &mut Plan) {
    let wanted = input.config.priority_class_name.as_str();
    let current = at(input.pod, &["spec", "priorityClassName"]).and_then(Value::as_str).unwrap_or_default();
    if wanted.is_empty() || wanted == current {
        return;
    }
    if input.priority_classes.is_some_and(|classes| !classes.contains(wanted)) {
        // The API server would reject the pod ("no PriorityClass with name"); Velero drops it too.
        plan.priority_class_missing = true;
        plan.warnings.push(format!("priorityClassName {wanted:?} not applied: no such PriorityClass in the cluster"));
        return;
    }
    let mut ops = vec![Op::Add { path: "/spec/priorityClassName".into(), value: Value::String(wanted.into()) }];
    // The Priority plugin already filled these from the old class and runs again after us:
    // left in place, they make it reject the pod.
    for field in ["priority", "preemptionPolicy"] {
        if at(input.pod, &["spec", field]).is_some() {
            ops.push(Op::Remove { path: format!("/spec/{field}") });
        }
    }
    plan.record(Setting::PriorityClassName, ops);
}
