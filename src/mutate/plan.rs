//! Plans the patch that gives one data-mover pod the live config's settings
//! (what node-agent itself gives them: Velero's `pkg/exposer/csi_snapshot.go` `createBackupPod`
//! and `pkg/util/kube/pod.go` `GetLoadAffinityByStorageClass`, v1.18.3). Pure: pod, config and
//! what is known of the cluster in, ops out.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::affinity::{self, AffinityPlan};
use super::identity::DataMover;
use super::patch::{self, at, Op};
use crate::config::model::{
    is_velero_key, NodeAgentConfig, PodResources, ResourcePair, Toleration, APPLIED_ANNOTATION,
};
use crate::config::third_party::{self, IN_TREE_ANNOTATIONS, IN_TREE_LABELS};
use crate::k8s::quantity::Quantity;
use crate::k8s::selector::TOTAL_ANNOTATION_SIZE_LIMIT_B;
use crate::k8s::toleration;

/// A pod setting the webhook applies; bounded values, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    LoadAffinity,
    PodResources,
    PriorityClassName,
    PodLabels,
    PodAnnotations,
    Tolerations,
}

impl Setting {
    pub fn as_str(self) -> &'static str {
        match self {
            Setting::LoadAffinity => "loadAffinity",
            Setting::PodResources => "podResources",
            Setting::PriorityClassName => "priorityClassName",
            Setting::PodLabels => "podLabels",
            Setting::PodAnnotations => "podAnnotations",
            Setting::Tolerations => "tolerations",
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
    /// Names the config being applied, the same on every replica (`LiveConfig::id`).
    pub config_id: &'a str,
    pub storage_class: StorageClass,
    /// The PriorityClasses that exist, when known.
    pub priority_classes: Option<&'a HashSet<String>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub applied: Vec<Setting>,
    pub warnings: Vec<String>,
    pub notes: Notes,
}

/// What a plan noted besides its ops, which a server counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notes {
    /// The pod's own node affinity contradicts loadAffinity, which was left out.
    pub affinity_conflict: bool,
    /// The configured PriorityClass does not exist, so none was set.
    pub priority_class_missing: bool,
    /// podAnnotations were left out: with them the pod's annotations would exceed Kubernetes' limit.
    pub annotations_over_limit: bool,
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
    let current_labels = at(input.pod, &["metadata", "labels"]);
    let mut label_ops = patch::merge_map(current_labels, "/metadata/labels", &labels);
    label_ops.extend(superseded_ops(current_labels, "/metadata/labels", &IN_TREE_LABELS, &input.config.pod_labels));
    plan.record(Setting::PodLabels, label_ops);
    plan_tolerations(input, &mut plan);
    plan_annotations(input, &mut plan);
    plan
}

/// The config's annotations and ours (the summary of what was applied), within Kubernetes'
/// limit on a pod's annotations, the pod's own included: the API server refuses a pod over
/// it. Ours is left out first; if the config's alone are still too many, they are left out
/// (with a warning) and ours is written if it fits.
fn plan_annotations(input: &PlanInput, plan: &mut Plan) {
    let current = at(input.pod, &["metadata", "annotations"]);
    let config = wanted_metadata(&input.config.pod_annotations);
    let mut chosen: &[(&str, &str)] = &config;
    let mut removals =
        superseded_ops(current, "/metadata/annotations", &IN_TREE_ANNOTATIONS, &input.config.pod_annotations);
    if patch::map_differs(current, &config) || !removals.is_empty() {
        let size = annotations_size(current, &config, None);
        if size <= TOTAL_ANNOTATION_SIZE_LIMIT_B {
            plan.applied.push(Setting::PodAnnotations);
        } else {
            plan.notes.annotations_over_limit = true;
            plan.warnings.push(format!(
                "podAnnotations not applied: with them the pod's annotations would take {size} bytes, over Kubernetes' limit of {TOTAL_ANNOTATION_SIZE_LIMIT_B}, and the API server would refuse the pod"
            ));
            chosen = &[];
            removals.clear();
        }
    }
    if plan.applied.is_empty() {
        // Written only together with another change, so running on our own output is a no-op.
        return;
    }
    let names: Vec<&str> = plan.applied.iter().map(|s| s.as_str()).collect();
    let summary = format!("{} (config {})", names.join(","), input.config_id);
    let mut annotations = chosen.to_vec();
    if annotations_size(current, chosen, Some(&summary)) <= TOTAL_ANNOTATION_SIZE_LIMIT_B {
        annotations.push((APPLIED_ANNOTATION, summary.as_str()));
    }
    plan.ops.extend(patch::merge_map(current, "/metadata/annotations", &annotations));
    plan.ops.extend(removals);
}

/// Removes the in-tree third-party keys node-agent copied from its DaemonSet that the
/// configured map supersedes (Velero 1.18's rule, applied on every version).
fn superseded_ops(
    current: Option<&Value>,
    path: &str,
    in_tree: &[&str],
    configured: &BTreeMap<String, String>,
) -> Vec<Op> {
    let present = |key: &&str| current.and_then(|map| map.get(*key)).is_some();
    third_party::superseded(in_tree, configured)
        .into_iter()
        .filter(present)
        .map(|key| Op::Remove { path: patch::child(path, key) })
        .collect()
}

/// The bytes of a pod's annotations (keys and values, as the API server counts them) after
/// merging `entries` and, when given, our summary into `current`.
fn annotations_size(current: Option<&Value>, entries: &[(&str, &str)], summary: Option<&str>) -> usize {
    let mut merged: BTreeMap<&str, usize> = current
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.as_str().map_or(0, str::len)))
        .collect();
    merged.extend(entries.iter().map(|(key, value)| (*key, value.len())));
    merged.extend(summary.map(|value| (APPLIED_ANNOTATION, value.len())));
    merged.iter().map(|(key, value)| key.len() + value).sum()
}

impl Plan {
    fn record(&mut self, setting: Setting, ops: Vec<Op>) {
        if !ops.is_empty() {
            self.applied.push(setting);
            self.ops.extend(ops);
        }
    }
}

/// Labels or annotations to merge, never under `velero.io/` (Velero's own tracking keys, which
/// the checker refuses in both maps, so an admitted config loses nothing here) and
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
        AffinityPlan::Conflict(contradictions) => {
            plan.notes.affinity_conflict = true;
            // One warning per term: the API server passes on at most 256 characters of each.
            plan.warnings.extend(contradictions.iter().map(|contradiction| {
                format!("loadAffinity not applied (no node fits it and the pod's placement): {contradiction}")
            }));
        }
    }
}

/// Requests and limits as Velero builds them: a literal `"0"` (or an empty value) is unset.
fn desired_resources(r: &PodResources) -> Value {
    let pairs = r.pairs();
    let pick = |value: for<'a> fn(&ResourcePair<'a>) -> &'a str| -> serde_json::Map<String, Value> {
        pairs
            .iter()
            .map(|pair| (pair.resource, value(pair)))
            .filter(|(_, v)| !v.is_empty() && *v != "0")
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    };
    let requests = pick(|pair| pair.request);
    let limits = pick(|pair| pair.limit);
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

/// The configured tolerations the pod lacks, appended after its own (node-agent's copies from
/// its DaemonSet), without duplicates as Velero de-duplicates them (velero#9575).
fn plan_tolerations(input: &PlanInput, plan: &mut Plan) {
    let current_value = at(input.pod, &["spec", "tolerations"]).and_then(Value::as_array);
    let current: Vec<Toleration> = current_value.into_iter().flatten().map(toleration_of).collect();
    let missing = toleration::missing(&current, &input.config.tolerations);
    let ops = match current_value {
        _ if missing.is_empty() => Vec::new(),
        Some(_) => {
            missing.into_iter().map(|t| Op::Add { path: "/spec/tolerations/-".into(), value: json_of(t) }).collect()
        }
        None => vec![Op::Add {
            path: "/spec/tolerations".into(),
            value: Value::Array(missing.into_iter().map(json_of).collect()),
        }],
    };
    plan.record(Setting::Tolerations, ops);
}

/// A pod's toleration as the matching reads it (absent fields are Go's zero values).
fn toleration_of(value: &Value) -> Toleration {
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    Toleration {
        key: text("key"),
        operator: text("operator"),
        value: text("value"),
        effect: text("effect"),
        toleration_seconds: value.get("tolerationSeconds").and_then(Value::as_i64),
    }
}

/// A toleration as the API server stores it: empty fields left out.
fn json_of(t: &Toleration) -> Value {
    let mut out = serde_json::Map::new();
    for (key, text) in [("key", &t.key), ("operator", &t.operator), ("value", &t.value), ("effect", &t.effect)] {
        if !text.is_empty() {
            out.insert(key.into(), Value::String(text.clone()));
        }
    }
    if let Some(seconds) = t.toleration_seconds {
        out.insert("tolerationSeconds".into(), Value::from(seconds));
    }
    Value::Object(out)
}

fn plan_priority(input: &PlanInput, plan: &mut Plan) {
    let wanted = input.config.priority_class_name.as_str();
    let current = at(input.pod, &["spec", "priorityClassName"]).and_then(Value::as_str).unwrap_or_default();
    if wanted.is_empty() || wanted == current {
        return;
    }
    if input.priority_classes.is_some_and(|classes| !classes.contains(wanted)) {
        // The API server would reject the pod ("no PriorityClass with name"); Velero drops it too.
        plan.notes.priority_class_missing = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::check_value;
    use crate::config::validate::Environment;
    use crate::mutate::identity::MoverKind;
    use serde_json::json;

    /// A data-mover pod as the planner sees it: one container named like the owner's UID.
    fn pod() -> Value {
        json!({"metadata": {"name": "du-1", "labels": {"velero.io/data-upload": "du-1"}},
               "spec": {"containers": [{"name": "uid-1"}]}})
    }

    fn with(mut pod: Value, pointer: &str, value: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        if let Some(object) = pod.pointer_mut(parent).and_then(Value::as_object_mut) {
            object.insert(key.to_string(), value);
        }
        pod
    }

    /// [`pod`] with the in-tree third-party label node-agent copies from its DaemonSet.
    fn azure_labelled() -> Value {
        with(pod(), "/metadata/labels", json!({"velero.io/data-upload": "du-1", "azure.workload.identity/use": "true"}))
    }

    /// One row: the config, the pod and its kind, what the cluster knows, and the plan wanted
    /// (settings applied, the ops' paths in order, a fragment of each warning, the two flags).
    struct Case {
        name: &'static str,
        config: &'static str,
        pod: Value,
        kind: MoverKind,
        storage_class: StorageClass,
        priority_classes: Option<&'static [&'static str]>,
        applied: &'static [Setting],
        paths: &'static [&'static str],
        warnings: &'static [&'static str],
        affinity_conflict: bool,
        priority_class_missing: bool,
        /// The value of the first op, when the row is about it.
        first_value: Option<Value>,
    }

    impl Default for Case {
        fn default() -> Self {
            Case {
                name: "",
                config: "{}",
                pod: pod(),
                kind: MoverKind::DataUpload,
                storage_class: StorageClass::Known(None),
                priority_classes: None,
                applied: &[],
                paths: &[],
                warnings: &[],
                affinity_conflict: false,
                priority_class_missing: false,
                first_value: None,
            }
        }
    }

    const AFFINITY: &str = r#"{"loadAffinity": [
        {"nodeSelector": {"matchLabels": {"role": "backup"}}},
        {"nodeSelector": {"matchLabels": {"zone": "a"}}, "storageClass": "gp3"}]}"#;
    const TERMS: &str = "/spec/affinity";
    const ANNOTATIONS: &str = "/metadata/annotations";
    const RESOURCES: &str =
        r#"{"podResources": {"cpuRequest": "1000m", "cpuLimit": "2", "memoryRequest": "1Gi", "memoryLimit": "0"}}"#;

    fn cases() -> Vec<Case> {
        vec![
            Case { name: "no settings, no change", ..Case::default() },
            Case {
                name: "tolerations make the pod's list when it has none",
                config: r#"{"tolerations": [{"key": "backup", "operator": "Exists", "effect": "NoSchedule"}]}"#,
                applied: &[Setting::Tolerations],
                paths: &["/spec/tolerations", ANNOTATIONS],
                first_value: Some(json!([{"key": "backup", "operator": "Exists", "effect": "NoSchedule"}])),
                ..Case::default()
            },
            Case {
                name: "tolerations are appended once each, after the ones node-agent copied",
                config: r#"{"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "value": "1", "effect": "NoExecute", "tolerationSeconds": 60}, {"key": "b", "value": "1", "effect": "NoExecute"}]}"#,
                pod: with(pod(), "/spec/tolerations", json!([{"key": "a", "operator": "Exists"}])),
                applied: &[Setting::Tolerations],
                paths: &["/spec/tolerations/-", ANNOTATIONS],
                first_value: Some(json!({"key": "b", "value": "1", "effect": "NoExecute", "tolerationSeconds": 60})),
                ..Case::default()
            },
            Case {
                name: "tolerations the pod has already change nothing",
                config: r#"{"tolerations": [{"key": "a", "operator": "Exists"}]}"#,
                pod: with(
                    pod(),
                    "/spec/tolerations",
                    json!([{"key": "a", "operator": "Exists", "tolerationSeconds": 3}]),
                ),
                ..Case::default()
            },
            Case {
                name: "labels are merged and the pod says what was applied",
                config: r#"{"podLabels": {"team": "platform"}}"#,
                applied: &[Setting::PodLabels],
                paths: &["/metadata/labels/team", ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "Velero's own keys and our annotation are never written",
                config: r#"{"podLabels": {"velero.io/data-upload": "x"}, "podAnnotations": {"node-agent-webhook.io/applied": "x"}}"#,
                ..Case::default()
            },
            Case {
                name: "podLabels supersede the in-tree third-party label node-agent copied, as in Velero 1.18",
                config: r#"{"podLabels": {"team": "platform"}}"#,
                pod: azure_labelled(),
                applied: &[Setting::PodLabels],
                paths: &["/metadata/labels/team", "/metadata/labels/azure.workload.identity~1use", ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "an in-tree label the podLabels list stays, with their value",
                config: r#"{"podLabels": {"azure.workload.identity/use": "true"}}"#,
                pod: azure_labelled(),
                ..Case::default()
            },
            Case {
                name: "podAnnotations supersede the in-tree third-party annotation, even when they are all there",
                config: r#"{"podAnnotations": {"a": "b"}}"#,
                pod: with(
                    pod(),
                    "/metadata/annotations",
                    json!({"a": "b", "iam.amazonaws.com/role": "node-agent-role"}),
                ),
                applied: &[Setting::PodAnnotations],
                paths: &[
                    "/metadata/annotations/node-agent-webhook.io~1applied",
                    "/metadata/annotations/iam.amazonaws.com~1role",
                ],
                ..Case::default()
            },
            Case {
                name: "without podLabels node-agent's copies stay",
                config: r#"{"podAnnotations": {"a": "b"}}"#,
                pod: with(pod(), "/metadata/labels", json!({"azure.workload.identity/use": "true"})),
                applied: &[Setting::PodAnnotations],
                paths: &[ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "annotations only",
                config: r#"{"podAnnotations": {"a": "b"}}"#,
                applied: &[Setting::PodAnnotations],
                paths: &[ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "resources go to the container named like the owner's UID; a literal 0 is unset",
                config: RESOURCES,
                pod: json!({"metadata": {"name": "du-1"},
                            "spec": {"containers": [{"name": "sidecar"}, {"name": "uid-1"}]}}),
                applied: &[Setting::PodResources],
                paths: &["/spec/containers/1/resources", ANNOTATIONS],
                first_value: Some(json!({"limits": {"cpu": "2"}, "requests": {"cpu": "1000m", "memory": "1Gi"}})),
                ..Case::default()
            },
            Case {
                name: "resources equal by value are no change",
                config: RESOURCES,
                pod: with(
                    pod(),
                    "/spec/containers/0/resources",
                    json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2000m"}}),
                ),
                ..Case::default()
            },
            Case {
                name: "resources without a container to put them in",
                config: RESOURCES,
                pod: json!({"metadata": {"name": "du-1"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                warnings: &["podResources not applied: no container named uid-1"],
                ..Case::default()
            },
            Case {
                name: "a PriorityClass that does not exist is not set",
                config: r#"{"priorityClassName": "backup"}"#,
                priority_classes: Some(&["other"]),
                warnings: &["priorityClassName \"backup\" not applied"],
                priority_class_missing: true,
                ..Case::default()
            },
            Case {
                name: "a PriorityClass replaces the priority the plugin filled in",
                config: r#"{"priorityClassName": "backup"}"#,
                pod: with(
                    with(pod(), "/spec/priority", json!(0)),
                    "/spec/preemptionPolicy",
                    json!("PreemptLowerPriority"),
                ),
                priority_classes: Some(&["backup"]),
                applied: &[Setting::PriorityClassName],
                paths: &["/spec/priorityClassName", "/spec/priority", "/spec/preemptionPolicy", ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "an unknown PriorityClass list does not stop the setting",
                config: r#"{"priorityClassName": "backup"}"#,
                applied: &[Setting::PriorityClassName],
                paths: &["/spec/priorityClassName", ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "loadAffinity: the entry without a storage class when the class has none",
                config: AFFINITY,
                applied: &[Setting::LoadAffinity],
                paths: &[TERMS, ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "loadAffinity: the entry for the pod's storage class",
                config: AFFINITY,
                storage_class: StorageClass::Known(Some("gp3".into())),
                applied: &[Setting::LoadAffinity],
                paths: &[TERMS, ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "loadAffinity: a failed lookup falls back to the entry without a storage class",
                config: AFFINITY,
                storage_class: StorageClass::Unknown,
                applied: &[Setting::LoadAffinity],
                paths: &[TERMS, ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "loadAffinity never moves a PodVolumeBackup pod",
                config: AFFINITY,
                kind: MoverKind::PodVolumeBackup,
                ..Case::default()
            },
            Case {
                name: "loadAffinity never moves a pod bound to a node",
                config: AFFINITY,
                pod: with(pod(), "/spec/nodeName", json!("worker-1")),
                ..Case::default()
            },
            Case {
                name: "loadAffinity never moves a pod bound by a hostname selector",
                config: AFFINITY,
                pod: with(pod(), "/spec/nodeSelector", json!({"kubernetes.io/hostname": "worker-1"})),
                ..Case::default()
            },
            Case {
                name: "loadAffinity that contradicts the pod's own affinity is left out, with a warning",
                config: r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}"#,
                pod: with(
                    pod(),
                    "/spec/affinity",
                    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}),
                ),
                warnings: &["loadAffinity not applied"],
                affinity_conflict: true,
                ..Case::default()
            },
            Case {
                name: "loadAffinity drops the terms it contradicts and keeps the pod's others",
                config: r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "b"}}}]}"#,
                pod: with(
                    pod(),
                    "/spec/affinity",
                    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["c"]}]}]}}}),
                ),
                applied: &[Setting::LoadAffinity],
                paths: &[TERMS, TERMS, ANNOTATIONS],
                ..Case::default()
            },
            Case {
                name: "loadAffinity that contradicts the pod's nodeSelector is left out, with a warning",
                config: r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"kubernetes.io/os": "windows"}}}]}"#,
                pod: with(pod(), "/spec/nodeSelector", json!({"kubernetes.io/os": "linux"})),
                warnings: &["(the pod's spec.nodeSelector)"],
                affinity_conflict: true,
                ..Case::default()
            },
        ]
    }

    #[test]
    fn each_row_gets_its_plan() {
        let mut failures = Vec::new();
        for case in cases() {
            let checked = check_value(case.config, &Environment::default());
            let mover = DataMover { kind: case.kind, name: "du-1".into(), owner_uid: "uid-1".into() };
            let classes: Option<HashSet<String>> =
                case.priority_classes.map(|c| c.iter().map(|s| s.to_string()).collect());
            let plan = plan(&PlanInput {
                pod: &case.pod,
                mover: &mover,
                config: &checked.config,
                config_id: "resourceVersion:7",
                storage_class: case.storage_class.clone(),
                priority_classes: classes.as_ref(),
            });
            let paths: Vec<String> = plan
                .ops
                .iter()
                .map(|op| match op {
                    Op::Add { path, .. } | Op::Remove { path } => path.clone(),
                })
                .collect();
            // The affinity ops' paths go deep into the terms; the row names where they start.
            let paths_match = paths.len() == case.paths.len()
                && paths.iter().zip(case.paths).all(|(got, want)| got == want || got.starts_with(&format!("{want}/")));
            let warnings_match = plan.warnings.len() == case.warnings.len()
                && plan.warnings.iter().zip(case.warnings).all(|(got, want)| got.contains(want));
            let first_value = plan.ops.first().map(|op| serde_json::to_value(op).unwrap_or_default()["value"].clone());
            if plan.applied != case.applied
                || case.first_value.is_some() && first_value != case.first_value
                || !paths_match
                || !warnings_match
                || plan.notes.affinity_conflict != case.affinity_conflict
                || plan.notes.priority_class_missing != case.priority_class_missing
            {
                failures.push(format!("{}: got {:?}, ops at {paths:?}", case.name, plan));
            }
            if let Some(Op::Add { value, .. }) = plan
                .ops
                .iter()
                .find(|op| paths.len() > 1 && serde_json::to_value(op).unwrap_or_default()["path"] == ANNOTATIONS)
            {
                let summary = value[APPLIED_ANNOTATION].as_str().unwrap_or_default();
                if !summary.ends_with("(config resourceVersion:7)") {
                    failures.push(format!("{}: applied annotation {summary:?}", case.name));
                }
            }
        }
        assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
    }

    /// The plan for a DataUpload pod with no storage class or PriorityClasses known.
    fn upload_plan(pod: &Value, config: &NodeAgentConfig, config_id: &str) -> Plan {
        let mover = DataMover { kind: MoverKind::DataUpload, name: "du-1".into(), owner_uid: "uid-1".into() };
        plan(&PlanInput {
            pod,
            mover: &mover,
            config,
            config_id,
            storage_class: StorageClass::Known(None),
            priority_classes: None,
        })
    }

    #[test]
    fn annotations_stay_within_kubernetes_limit_ours_first_then_the_config_s() {
        const LIMIT: usize = TOTAL_ANNOTATION_SIZE_LIMIT_B;
        let id = "resourceVersion:7";
        let ours = |settings: &str| APPLIED_ANNOTATION.len() + format!("{settings} (config {id})").len();
        let both = ours("podLabels,podAnnotations");
        // An annotation `key` whose key and value take `bytes` bytes.
        let sized = |key: &str, bytes: usize| (key.to_string(), "x".repeat(bytes - key.len()));
        // (name, the pod's own annotation bytes, the config's, podLabels too, then: podAnnotations
        // applied, our summary written, left out for the limit)
        let cases = [
            ("room for all", 0, 1000, true, true, true, false),
            ("room for all, exactly", 500, LIMIT - 500 - both, true, true, true, false),
            ("no room for ours", 500, LIMIT - 500 - both + 1, true, true, false, false),
            ("the config's fill the limit", 0, LIMIT, false, true, false, false),
            (
                "the config's and the pod's are too many: ours for the labels",
                1000,
                LIMIT - 999,
                true,
                false,
                true,
                true,
            ),
            ("too many and nothing else to say", 1000, LIMIT - 999, false, false, false, true),
        ];
        for (name, own, configured, labels, applied, summarized, over) in cases {
            let mut pod = pod();
            if own > 0 {
                let (key, value) = sized("own", own);
                pod = with(pod, "/metadata/annotations", json!({ key: value }));
            }
            let config = NodeAgentConfig {
                pod_annotations: [sized("cfg", configured)].into(),
                pod_labels: if labels { [("team".to_string(), "a".to_string())].into() } else { Default::default() },
                ..NodeAgentConfig::default()
            };
            let planned = |pod: &Value| upload_plan(pod, &config, id);
            let first = planned(&pod);
            assert_eq!(first.applied.contains(&Setting::PodAnnotations), applied, "{name}: {:?}", first.applied);
            assert_eq!(first.notes.annotations_over_limit, over, "{name}");
            assert_eq!(first.warnings.len(), usize::from(over), "{name}: {:?}", first.warnings);
            let mut patched = pod.clone();
            patch::apply_ops(&mut patched, first.ops).unwrap_or_else(|e| panic!("{name}: {e}"));
            let annotations = patched["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
            assert_eq!(annotations.contains_key(APPLIED_ANNOTATION), summarized, "{name}");
            let size: usize = annotations.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
            assert!(size <= LIMIT, "{name}: {size} bytes");
            assert!(planned(&patched).ops.is_empty(), "{name}: planning again changes nothing");
        }
    }

    #[test]
    fn the_longest_summary_fits_the_room_the_checker_keeps() {
        let all = [
            Setting::LoadAffinity,
            Setting::PodResources,
            Setting::PriorityClassName,
            Setting::PodLabels,
            Setting::Tolerations,
            Setting::PodAnnotations,
        ];
        let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        let summary = format!("{} (config resourceVersion:{})", names.join(","), u64::MAX);
        assert_eq!(APPLIED_ANNOTATION.len() + summary.len(), crate::config::model::APPLIED_ANNOTATION_MAX_BYTES);
    }

    #[test]
    fn a_plan_applied_to_its_pod_plans_nothing_more() {
        let text = format!("{{{}, {}}}", &AFFINITY[1..AFFINITY.len() - 1], &RESOURCES[1..RESOURCES.len() - 1]);
        let config = check_value(&text, &Environment::default()).config;
        let planned = |pod: &Value| upload_plan(pod, &config, "sha256:0123456789ab");
        let mut pod = pod();
        let first = planned(&pod);
        assert_eq!(first.applied, [Setting::LoadAffinity, Setting::PodResources]);
        patch::apply_ops(&mut pod, first.ops).unwrap_or_else(|e| panic!("the plan applies: {e}"));
        assert_eq!(planned(&pod), Plan::default());
    }
}
