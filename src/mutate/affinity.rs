//! Node affinity from `loadAffinity`: which entry applies, and how its requirements are
//! ANDed into a pod's required node-selector terms without ever making one unsatisfiable.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::patch::{at, Op};
use crate::config::model::{LoadAffinity, SelectorRequirement};

/// The entry Velero 1.17+ uses: the one for the storage class, else the first without one.
pub fn choose_entry<'a>(entries: &'a [LoadAffinity], storage_class: Option<&str>) -> Option<&'a LoadAffinity> {
    storage_class
        .filter(|class| !class.is_empty())
        .and_then(|class| entries.iter().find(|e| e.storage_class == class))
        .or_else(|| entries.iter().find(|e| e.storage_class.is_empty()))
}

/// `matchLabels` as `In` requirements (sorted by key, where Velero's map order is random),
/// then `matchExpressions` in order; duplicates dropped.
pub fn requirements(entry: &LoadAffinity) -> Vec<SelectorRequirement> {
    let from_labels = entry.node_selector.match_labels.iter().map(|(key, value)| SelectorRequirement {
        key: key.clone(),
        operator: "In".to_string(),
        values: vec![value.clone()],
    });
    let mut out: Vec<SelectorRequirement> = Vec::new();
    for requirement in from_labels.chain(entry.node_selector.match_expressions.iter().cloned()) {
        if !out.iter().any(|r| same(r, &requirement)) {
            out.push(requirement);
        }
    }
    out
}

/// Equal requirements, whatever the order of their values.
fn same(a: &SelectorRequirement, b: &SelectorRequirement) -> bool {
    a.key == b.key && a.operator == b.operator && value_set(a) == value_set(b)
}

fn value_set(r: &SelectorRequirement) -> BTreeSet<&str> {
    r.values.iter().map(String::as_str).collect()
}

fn integer(r: &SelectorRequirement) -> Option<i64> {
    r.values.first().and_then(|v| v.parse().ok())
}

/// Whether no node can satisfy both requirements (they must share the key).
pub fn contradicts(a: &SelectorRequirement, b: &SelectorRequirement) -> bool {
    if a.key != b.key {
        return false;
    }
    let one_way = |x: &SelectorRequirement, y: &SelectorRequirement| -> bool {
        let (xs, ys) = (value_set(x), value_set(y));
        match (x.operator.as_str(), y.operator.as_str()) {
            ("DoesNotExist", "In" | "Exists" | "Gt" | "Lt") => true,
            ("In", "In") => xs.is_disjoint(&ys),
            ("In", "NotIn") => xs.is_subset(&ys),
            ("In", "Gt") => integer(y).is_some_and(|n| !xs.iter().any(|v| v.parse::<i64>().is_ok_and(|v| v > n))),
            ("In", "Lt") => integer(y).is_some_and(|n| !xs.iter().any(|v| v.parse::<i64>().is_ok_and(|v| v < n))),
            ("Gt", "Lt") => match (integer(x), integer(y)) {
                (Some(low), Some(high)) => low.saturating_add(1) >= high,
                _ => false,
            },
            _ => false,
        }
    };
    one_way(a, b) || one_way(b, a)
}

/// What merging the requirements into the pod's affinity means.
#[derive(Debug, Clone, PartialEq)]
pub enum AffinityPlan {
    /// Everything is already there.
    Unchanged,
    Ops(Vec<Op>),
    /// A requirement contradicts one already in a term: the pod's affinity is left alone.
    Conflict {
        term: usize,
        wanted: SelectorRequirement,
        existing: SelectorRequirement,
    },
}

const REQUIRED: &str = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution";
const REQUIRED_PATH: [&str; 4] = ["spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"];

fn to_json(r: &SelectorRequirement) -> Value {
    if r.values.is_empty() {
        json!({"key": r.key, "operator": r.operator})
    } else {
        json!({"key": r.key, "operator": r.operator, "values": r.values})
    }
}

fn from_json(value: &Value) -> SelectorRequirement {
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let values = value
        .get("values")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    SelectorRequirement { key: text("key"), operator: text("operator"), values }
}

/// ANDs `wanted` into every required node-selector term of `pod` (terms are ORed: a new
/// term beside existing ones would widen placement), or adds one term when there is none.
pub fn plan(pod: &Value, wanted: &[SelectorRequirement]) -> AffinityPlan {
    if wanted.is_empty() {
        return AffinityPlan::Unchanged;
    }
    let new_term = || json!({"matchExpressions": wanted.iter().map(to_json).collect::<Vec<_>>()});
    let spec_affinity = at(pod, &["spec", "affinity"]);
    let node_affinity = at(pod, &["spec", "affinity", "nodeAffinity"]);
    let required = at(pod, &REQUIRED_PATH);
    let terms = required.and_then(|r| r.get("nodeSelectorTerms")).and_then(Value::as_array);
    let add = |path: &str, value: Value| AffinityPlan::Ops(vec![Op::Add { path: path.to_string(), value }]);
    match (spec_affinity, node_affinity, required, terms) {
        (None | Some(Value::Null), ..) => {
            let value = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [new_term()]}}});
            add("/spec/affinity", value)
        }
        (_, None | Some(Value::Null), ..) => {
            let value = json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [new_term()]}});
            add("/spec/affinity/nodeAffinity", value)
        }
        (_, _, None | Some(Value::Null), _) => add(REQUIRED, json!({"nodeSelectorTerms": [new_term()]})),
        (_, _, _, None) => add(&format!("{REQUIRED}/nodeSelectorTerms"), json!([new_term()])),
        (_, _, _, Some(terms)) if terms.is_empty() => add(&format!("{REQUIRED}/nodeSelectorTerms/-"), new_term()),
        (_, _, _, Some(terms)) => merge_into_terms(terms, wanted),
    }
}

fn merge_into_terms(terms: &[Value], wanted: &[SelectorRequirement]) -> AffinityPlan {
    let mut ops = Vec::new();
    for (index, term) in terms.iter().enumerate() {
        let expressions = term.get("matchExpressions").and_then(Value::as_array);
        let existing: Vec<SelectorRequirement> = expressions.into_iter().flatten().map(from_json).collect();
        let missing: Vec<&SelectorRequirement> =
            wanted.iter().filter(|w| !existing.iter().any(|e| same(e, w))).collect();
        for want in &missing {
            if let Some(conflict) = existing.iter().find(|e| contradicts(e, want)) {
                return AffinityPlan::Conflict { term: index, wanted: (*want).clone(), existing: conflict.clone() };
            }
        }
        let base = format!("{REQUIRED}/nodeSelectorTerms/{index}/matchExpressions");
        match (expressions, missing.is_empty()) {
            (_, true) => {}
            (None, false) => {
                ops.push(Op::Add { path: base, value: Value::Array(missing.iter().map(|r| to_json(r)).collect()) })
            }
            (Some(_), false) => {
                ops.extend(missing.iter().map(|r| Op::Add { path: format!("{base}/-"), value: to_json(r) }))
            }
        }
    }
    if ops.is_empty() {
        AffinityPlan::Unchanged
    } else {
        AffinityPlan::Ops(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::LabelSelector;

    fn req(key: &str, operator: &str, values: &[&str]) -> SelectorRequirement {
        SelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn entry(class: &str, labels: &[(&str, &str)]) -> LoadAffinity {
        LoadAffinity {
            node_selector: LabelSelector {
                match_labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                match_expressions: vec![],
            },
            storage_class: class.into(),
        }
    }

    #[test]
    fn chooses_entries_as_velero_does() {
        let entries = [entry("", &[("a", "global")]), entry("gp3", &[("a", "gp3")]), entry("", &[("a", "second")])];
        assert_eq!(choose_entry(&entries, Some("gp3")), Some(&entries[1]));
        assert_eq!(choose_entry(&entries, Some("other")), Some(&entries[0]));
        assert_eq!(choose_entry(&entries, None), Some(&entries[0]));
        assert_eq!(choose_entry(&entries[1..2], Some("other")), None);
    }

    #[test]
    fn labels_become_sorted_in_requirements_then_expressions() {
        let mut e = entry("", &[("z", "1"), ("a", "2")]);
        e.node_selector.match_expressions = vec![req("a", "In", &["2"]), req("k", "Exists", &[])];
        assert_eq!(requirements(&e), vec![req("a", "In", &["2"]), req("z", "In", &["1"]), req("k", "Exists", &[])]);
    }

    #[test]
    fn contradiction_table() {
        let cases = [
            (req("k", "In", &["a"]), req("k", "In", &["b"]), true),
            (req("k", "In", &["a", "b"]), req("k", "In", &["b"]), false),
            (req("k", "In", &["a"]), req("k", "NotIn", &["a"]), true),
            (req("k", "In", &["a", "b"]), req("k", "NotIn", &["a"]), false),
            (req("k", "Exists", &[]), req("k", "DoesNotExist", &[]), true),
            (req("k", "DoesNotExist", &[]), req("k", "In", &["a"]), true),
            (req("k", "NotIn", &["a"]), req("k", "DoesNotExist", &[]), false),
            (req("k", "Gt", &["5"]), req("k", "Lt", &["6"]), true),
            (req("k", "Gt", &["5"]), req("k", "Lt", &["7"]), false),
            (req("k", "In", &["3"]), req("k", "Gt", &["5"]), true),
            (req("k", "In", &["9"]), req("k", "Gt", &["5"]), false),
            (req("k", "In", &["9"]), req("k", "Lt", &["5"]), true),
            (req("k", "In", &["a"]), req("other", "In", &["b"]), false),
        ];
        for (a, b, want) in cases {
            assert_eq!(contradicts(&a, &b), want, "{a:?} vs {b:?}");
            assert_eq!(contradicts(&b, &a), want, "{b:?} vs {a:?}");
        }
    }

    fn pod_with_terms(terms: Value) -> Value {
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}})
    }

    #[test]
    fn builds_the_missing_structure() {
        let wanted = [req("role", "In", &["backup"])];
        let term = json!({"matchExpressions": [{"key": "role", "operator": "In", "values": ["backup"]}]});
        let cases = [
            (
                json!({"spec": {}}),
                "/spec/affinity",
                json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term.clone()]}}}),
            ),
            (
                json!({"spec": {"affinity": {"podAntiAffinity": {}}}}),
                "/spec/affinity/nodeAffinity",
                json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term.clone()]}}),
            ),
            (
                json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}}}),
                REQUIRED,
                json!({"nodeSelectorTerms": [term.clone()]}),
            ),
            (
                pod_with_terms(json!([])),
                "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/-",
                term.clone(),
            ),
        ];
        for (pod, path, value) in cases {
            assert_eq!(plan(&pod, &wanted), AffinityPlan::Ops(vec![Op::Add { path: path.into(), value }]), "{pod}");
        }
    }

    #[test]
    fn ands_into_every_term_once() {
        let pod = pod_with_terms(json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "role", "operator": "In", "values": ["backup"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]));
        let wanted = [req("role", "In", &["backup"]), req("os", "NotIn", &["windows"])];
        let base = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms";
        assert_eq!(
            plan(&pod, &wanted),
            AffinityPlan::Ops(vec![
                Op::Add {
                    path: format!("{base}/0/matchExpressions/-"),
                    value: json!({"key": "role", "operator": "In", "values": ["backup"]})
                },
                Op::Add {
                    path: format!("{base}/0/matchExpressions/-"),
                    value: json!({"key": "os", "operator": "NotIn", "values": ["windows"]})
                },
                Op::Add {
                    path: format!("{base}/1/matchExpressions/-"),
                    value: json!({"key": "os", "operator": "NotIn", "values": ["windows"]})
                },
                Op::Add {
                    path: format!("{base}/2/matchExpressions"),
                    value: json!([{"key": "role", "operator": "In", "values": ["backup"]}, {"key": "os", "operator": "NotIn", "values": ["windows"]}]),
                },
            ])
        );
        let done = pod_with_terms(json!([{"matchExpressions": [
            {"key": "os", "operator": "NotIn", "values": ["windows"]},
            {"key": "role", "operator": "In", "values": ["backup"]}]}]));
        assert_eq!(plan(&done, &wanted), AffinityPlan::Unchanged);
    }

    #[test]
    fn refuses_to_make_a_term_unsatisfiable() {
        let pod = pod_with_terms(json!([
            {"matchExpressions": [{"key": "os", "operator": "NotIn", "values": ["windows"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
        ]));
        assert_eq!(
            plan(&pod, &[req("zone", "In", &["b"])]),
            AffinityPlan::Conflict { term: 1, wanted: req("zone", "In", &["b"]), existing: req("zone", "In", &["a"]) }
        );
    }
}
