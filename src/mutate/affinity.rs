//! Node affinity from `loadAffinity`: which entry applies, and how its requirements are
//! ANDed into a pod's required node-selector terms. Terms are ORed, so the result is
//! `OR_i(term_i AND config)`: a term the config makes unsatisfiable matches no node and is
//! dropped, and only when no term survives is the pod's affinity left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

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
    let from_labels = entry.node_selector.match_labels.iter().map(|(key, value)| in_requirement(key, value));
    let mut out: Vec<SelectorRequirement> = Vec::new();
    for requirement in from_labels.chain(entry.node_selector.match_expressions.iter().cloned()) {
        if !out.iter().any(|r| same(r, &requirement)) {
            out.push(requirement);
        }
    }
    out
}

fn in_requirement(key: &str, value: &str) -> SelectorRequirement {
    SelectorRequirement { key: key.to_string(), operator: "In".to_string(), values: vec![value.to_string()] }
}

/// Equal requirements, whatever the order of their values.
fn same(a: &SelectorRequirement, b: &SelectorRequirement) -> bool {
    a.key == b.key && a.operator == b.operator && value_set(a) == value_set(b)
}

fn value_set(r: &SelectorRequirement) -> BTreeSet<&str> {
    r.values.iter().map(String::as_str).collect()
}

/// Label values are at most 63 characters ([A-Za-z0-9._-], alphanumeric at both ends).
const LABEL_VALUE_MAX: usize = 63;

/// The requirements on the first key (in key order) that no node's labels satisfy together,
/// or `None` when some node could satisfy all of `requirements` (ANDed).
///
/// Exact over what a node's labels can be: on each key a node has no label, or one valid
/// label value. Requirements on different keys are independent, so the set is satisfiable
/// when each key's requirements are: with the label absent (only `NotIn` and
/// `DoesNotExist`), or with some value in every `In` set, outside every `NotIn` set, and,
/// with `Gt`/`Lt`, a decimal integer in their open range (never negative: a label value
/// cannot start with `-`; leading zeros are other spellings of the same integer). An
/// unknown operator or a `Gt`/`Lt` bound that is not an integer matches no node, as in
/// apimachinery.
///
/// This works on the planner's requirement type, for pod affinity terms; `src/k8s` has the
/// same decision for the config's label selectors, and the two may be unified.
pub fn unsatisfiable<'r>(requirements: &[&'r SelectorRequirement]) -> Option<Vec<&'r SelectorRequirement>> {
    let mut by_key: BTreeMap<&str, Vec<&'r SelectorRequirement>> = BTreeMap::new();
    for requirement in requirements {
        by_key.entry(requirement.key.as_str()).or_default().push(requirement);
    }
    by_key.into_values().find(|on_key| !key_satisfiable(on_key))
}

fn key_satisfiable(on_key: &[&SelectorRequirement]) -> bool {
    let absent = on_key.iter().all(|r| matches!(r.operator.as_str(), "NotIn" | "DoesNotExist"));
    absent || some_value_satisfies(on_key)
}

/// Whether one label value satisfies every requirement on its key.
fn some_value_satisfies(on_key: &[&SelectorRequirement]) -> bool {
    let mut excluded: BTreeSet<&str> = BTreeSet::new();
    let mut allowed: Option<BTreeSet<&str>> = None;
    // The integers a Gt/Lt pair allows, inclusive; none when neither is given.
    let (mut low, mut high, mut integer) = (0_i128, i128::from(i64::MAX), false);
    for r in on_key {
        let bound = || r.values.first().filter(|_| r.values.len() == 1).and_then(|v| v.parse::<i64>().ok());
        match r.operator.as_str() {
            "In" => {
                let set = value_set(r);
                allowed = Some(match allowed.take() {
                    Some(previous) => previous.intersection(&set).copied().collect(),
                    None => set,
                });
            }
            "NotIn" => excluded.extend(r.values.iter().map(String::as_str)),
            "Exists" => {}
            "Gt" | "Lt" => {
                let Some(n) = bound() else { return false };
                integer = true;
                if r.operator == "Gt" {
                    low = low.max(i128::from(n) + 1);
                } else {
                    high = high.min(i128::from(n) - 1);
                }
            }
            _ => return false,
        }
    }
    let in_range = |value: &str| !integer || value.parse::<i64>().is_ok_and(|n| (low..=high).contains(&i128::from(n)));
    match allowed {
        Some(allowed) => allowed.iter().any(|v| !excluded.contains(v) && in_range(v)),
        // Infinitely many label values, and `NotIn` lists finitely many.
        None if !integer => true,
        // Each of the first |excluded|+1 integers has up to 63 spellings; trying that many
        // integers and spellings is enough to get past every excluded one.
        None => (low..=high).take(excluded.len() + 1).any(|n| {
            let digits = n.to_string();
            (0..=LABEL_VALUE_MAX.saturating_sub(digits.len()))
                .take(excluded.len() + 1)
                .any(|zeros| !excluded.contains(format!("{}{digits}", "0".repeat(zeros)).as_str()))
        }),
    }
}

/// Whether every node satisfying all of `all` satisfies `one`: `all` with `one` negated matches
/// no node. In, NotIn, Exists and DoesNotExist negate exactly (NotIn matches a node without
/// the label); for Gt and Lt, whose negation is no single requirement, only `one` itself in
/// `all` counts.
pub fn implies(all: &[SelectorRequirement], one: &SelectorRequirement) -> bool {
    let negated = match one.operator.as_str() {
        "In" => "NotIn",
        "NotIn" => "In",
        "Exists" => "DoesNotExist",
        "DoesNotExist" => "Exists",
        _ => return all.iter().any(|r| same(r, one)),
    };
    let negation = SelectorRequirement { operator: negated.to_string(), ..one.clone() };
    let with_negation: Vec<&SelectorRequirement> = all.iter().chain([&negation]).collect();
    unsatisfiable(&with_negation).is_some()
}

/// Where one requirement of a pod's placement comes from, as far as the pod itself says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    LoadAffinity,
    /// The pod's required node affinity term at this index.
    Term(usize),
    /// The pod's `spec.nodeSelector`, which is ANDed with every term.
    NodeSelector,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::LoadAffinity => f.write_str("loadAffinity"),
            Origin::Term(index) => write!(f, "the pod's node affinity term {index}"),
            Origin::NodeSelector => f.write_str("the pod's spec.nodeSelector"),
        }
    }
}

/// Requirements on one key that no node satisfies together: why the config cannot go into
/// a term (`term`), or into the only term it would form when the pod has none (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contradiction {
    pub term: Option<usize>,
    pub requirements: Vec<(Origin, SelectorRequirement)>,
}

impl fmt::Display for Contradiction {
    /// `term 1: zone In ["b"] (loadAffinity) against zone In ["a"] (the pod's node affinity term 1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let describe = |(origin, r): &(Origin, SelectorRequirement)| {
            if r.values.is_empty() {
                format!("{} {} ({origin})", r.key, r.operator)
            } else {
                format!("{} {} {:?} ({origin})", r.key, r.operator, r.values)
            }
        };
        let (ours, theirs): (Vec<_>, Vec<_>) =
            self.requirements.iter().partition(|(origin, _)| *origin == Origin::LoadAffinity);
        if let Some(term) = self.term {
            write!(f, "term {term}: ")?;
        }
        f.write_str(&ours.into_iter().map(describe).collect::<Vec<_>>().join(" and "))?;
        if !theirs.is_empty() {
            write!(f, " against {}", theirs.into_iter().map(describe).collect::<Vec<_>>().join(" and "))?;
        }
        Ok(())
    }
}

/// What merging the requirements into the pod's affinity means.
#[derive(Debug, Clone, PartialEq)]
pub enum AffinityPlan {
    /// Everything is already there.
    Unchanged,
    Ops(Vec<Op>),
    /// Every term the pod could be placed by would match no node: the pod's affinity is left alone.
    Conflict(Vec<Contradiction>),
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

/// The pod's `spec.nodeSelector` as `In` requirements: a node must carry every label.
fn node_selector(pod: &Value) -> Vec<SelectorRequirement> {
    let selector = at(pod, &["spec", "nodeSelector"]).and_then(Value::as_object);
    selector.into_iter().flatten().filter_map(|(key, value)| Some(in_requirement(key, value.as_str()?))).collect()
}

/// The contradiction in `labelled` (ANDed), if no node satisfies it.
fn contradiction(term: Option<usize>, labelled: &[(Origin, &SelectorRequirement)]) -> Option<Contradiction> {
    let all: Vec<&SelectorRequirement> = labelled.iter().map(|(_, r)| *r).collect();
    let conflicting = unsatisfiable(&all)?;
    let requirements = labelled
        .iter()
        .filter(|(_, r)| conflicting.iter().any(|c| std::ptr::eq(*c, *r)))
        .map(|(origin, r)| (*origin, (*r).clone()))
        .collect();
    Some(Contradiction { term, requirements })
}

/// ANDs `wanted` into every required node-selector term of `pod` (terms are ORed: a new
/// term beside existing ones would widen placement), or adds one term when there is none;
/// the pod's `spec.nodeSelector` counts against every term.
pub fn plan(pod: &Value, wanted: &[SelectorRequirement]) -> AffinityPlan {
    if wanted.is_empty() {
        return AffinityPlan::Unchanged;
    }
    let selector = node_selector(pod);
    let new_term = || json!({"matchExpressions": wanted.iter().map(to_json).collect::<Vec<_>>()});
    let spec_affinity = at(pod, &["spec", "affinity"]);
    let node_affinity = at(pod, &["spec", "affinity", "nodeAffinity"]);
    let required = at(pod, &REQUIRED_PATH);
    let terms = required.and_then(|r| r.get("nodeSelectorTerms")).and_then(Value::as_array);
    if let Some(terms) = terms.filter(|terms| !terms.is_empty()) {
        return merge_into_terms(terms, wanted, &selector);
    }
    let labelled: Vec<(Origin, &SelectorRequirement)> = wanted
        .iter()
        .map(|r| (Origin::LoadAffinity, r))
        .chain(selector.iter().map(|r| (Origin::NodeSelector, r)))
        .collect();
    if let Some(contradiction) = contradiction(None, &labelled) {
        return AffinityPlan::Conflict(vec![contradiction]);
    }
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
        (_, _, _, Some(_)) => add(&format!("{REQUIRED}/nodeSelectorTerms/-"), new_term()),
    }
}

/// What becomes of one term.
enum Fate<'w> {
    /// It matched no node before (empty, or contradicting itself or the nodeSelector): left as it is.
    Untouched,
    /// It keeps matching some node with these requirements added.
    Keep(Vec<&'w SelectorRequirement>),
    /// With the config it would match no node.
    Drop(Contradiction),
}

fn fate<'w>(
    index: usize,
    term: &Value,
    wanted: &'w [SelectorRequirement],
    selector: &[SelectorRequirement],
) -> Fate<'w> {
    let expressions = term.get("matchExpressions").and_then(Value::as_array);
    let fields = term.get("matchFields").and_then(Value::as_array);
    if expressions.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
        // Kubernetes: an empty term matches no node.
        return Fate::Untouched;
    }
    let existing: Vec<SelectorRequirement> = expressions.into_iter().flatten().map(from_json).collect();
    let mut labelled: Vec<(Origin, &SelectorRequirement)> = existing
        .iter()
        .map(|r| (Origin::Term(index), r))
        .chain(selector.iter().map(|r| (Origin::NodeSelector, r)))
        .collect();
    if contradiction(Some(index), &labelled).is_some() {
        return Fate::Untouched;
    }
    let missing: Vec<&SelectorRequirement> = wanted.iter().filter(|w| !existing.iter().any(|e| same(e, w))).collect();
    labelled.extend(missing.iter().map(|r| (Origin::LoadAffinity, *r)));
    match contradiction(Some(index), &labelled) {
        Some(contradiction) => Fate::Drop(contradiction),
        None => Fate::Keep(missing),
    }
}

fn merge_into_terms(terms: &[Value], wanted: &[SelectorRequirement], selector: &[SelectorRequirement]) -> AffinityPlan {
    let fates: Vec<Fate> = terms.iter().enumerate().map(|(index, term)| fate(index, term, wanted, selector)).collect();
    if !fates.iter().any(|f| matches!(f, Fate::Keep(_))) {
        let conflicts: Vec<Contradiction> = fates
            .into_iter()
            .filter_map(|f| match f {
                Fate::Drop(contradiction) => Some(contradiction),
                _ => None,
            })
            .collect();
        return if conflicts.is_empty() { AffinityPlan::Unchanged } else { AffinityPlan::Conflict(conflicts) };
    }
    let mut ops = Vec::new();
    for (index, (term, fate)) in terms.iter().zip(&fates).enumerate() {
        let Fate::Keep(missing) = fate else { continue };
        let base = format!("{REQUIRED}/nodeSelectorTerms/{index}/matchExpressions");
        match (term.get("matchExpressions").and_then(Value::as_array), missing.is_empty()) {
            (_, true) => {}
            (None, false) => {
                ops.push(Op::Add { path: base, value: Value::Array(missing.iter().map(|r| to_json(r)).collect()) })
            }
            (Some(_), false) => {
                ops.extend(missing.iter().map(|r| Op::Add { path: format!("{base}/-"), value: to_json(r) }))
            }
        }
    }
    // After the additions, and from the last: each removal leaves the earlier indexes valid.
    for (index, fate) in fates.iter().enumerate().rev() {
        if matches!(fate, Fate::Drop(_)) {
            ops.push(Op::Remove { path: format!("{REQUIRED}/nodeSelectorTerms/{index}") });
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
    use crate::mutate::patch::apply_ops;

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
    fn satisfiability_is_decided_over_all_requirements_on_a_key() {
        let leading_zeros: Vec<String> = (0..=62).map(|z| format!("{}5", "0".repeat(z))).collect();
        let all_fives: Vec<&str> = leading_zeros.iter().map(String::as_str).collect();
        let cases: Vec<(Vec<SelectorRequirement>, bool)> = vec![
            (vec![], true),
            (vec![req("k", "In", &["a"]), req("k", "In", &["b"])], false),
            (vec![req("k", "In", &["a", "b"]), req("k", "In", &["b", "c"])], true),
            (vec![req("k", "In", &["a", "b"]), req("k", "In", &["b", "c"]), req("k", "NotIn", &["b"])], false),
            (vec![req("k", "In", &["a"]), req("k", "NotIn", &["a"])], false),
            (vec![req("k", "In", &["a", "b"]), req("k", "NotIn", &["a"])], true),
            (vec![req("k", "In", &[])], false),
            (vec![req("k", "Exists", &[]), req("k", "DoesNotExist", &[])], false),
            (vec![req("k", "DoesNotExist", &[]), req("k", "In", &["a"])], false),
            (vec![req("k", "DoesNotExist", &[]), req("k", "Gt", &["1"])], false),
            (vec![req("k", "NotIn", &["a"]), req("k", "DoesNotExist", &[])], true),
            (vec![req("k", "NotIn", &["a", "b", "c"]), req("k", "Exists", &[])], true),
            (vec![req("k", "Gt", &["5"]), req("k", "Lt", &["6"])], false),
            (vec![req("k", "Gt", &["5"]), req("k", "Lt", &["7"])], true),
            (vec![req("k", "Gt", &["5"]), req("k", "Lt", &["7"]), req("k", "NotIn", &["6"])], true),
            (vec![req("k", "Gt", &["4"]), req("k", "Lt", &["6"]), req("k", "NotIn", &all_fives)], false),
            (vec![req("k", "Gt", &["4"]), req("k", "Lt", &["6"]), req("k", "NotIn", &all_fives[1..])], true),
            (vec![req("k", "Gt", &["1"]), req("k", "Gt", &["9"]), req("k", "Lt", &["10"])], false),
            (vec![req("k", "Lt", &["0"])], false),
            (vec![req("k", "Lt", &["1"])], true),
            (vec![req("k", "Gt", &["9223372036854775807"])], false),
            (vec![req("k", "Gt", &["x"])], false),
            (vec![req("k", "In", &["3"]), req("k", "Gt", &["5"])], false),
            (vec![req("k", "In", &["3", "9"]), req("k", "Gt", &["5"])], true),
            (vec![req("k", "In", &["9", "x"]), req("k", "Lt", &["5"])], false),
            (vec![req("k", "in", &["a"])], false),
            (vec![req("k", "In", &["a"]), req("other", "In", &["b"])], true),
            (vec![req("a", "In", &["1"]), req("k", "In", &["a"]), req("k", "NotIn", &["a"])], false),
        ];
        for (requirements, want) in cases {
            let refs: Vec<&SelectorRequirement> = requirements.iter().collect();
            let got = unsatisfiable(&refs);
            assert_eq!(got.is_none(), want, "{requirements:?}: {got:?}");
            if let Some(conflicting) = got {
                assert!(conflicting.iter().all(|r| r.key == "k"), "only the conflicting key: {conflicting:?}");
            }
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

    fn zone_term(zone: &str) -> Value {
        json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": [zone]}]})
    }

    #[test]
    fn terms_the_config_contradicts_are_dropped_and_only_no_survivor_is_a_conflict() {
        let base = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms";
        let zone_2 = [req("zone", "In", &["zone-2"])];
        let three_zones = pod_with_terms(json!([zone_term("zone-1"), zone_term("zone-2"), zone_term("zone-3")]));
        assert_eq!(
            plan(&three_zones, &zone_2),
            AffinityPlan::Ops(
                vec![Op::Remove { path: format!("{base}/2") }, Op::Remove { path: format!("{base}/0") },]
            ),
            "the zone-2 term already says it all"
        );
        let backup = [req("role", "In", &["backup"]), req("zone", "NotIn", &["zone-3"])];
        assert_eq!(
            plan(&three_zones, &backup),
            AffinityPlan::Ops(vec![
                Op::Add { path: format!("{base}/0/matchExpressions/-"), value: to_json(&backup[0]) },
                Op::Add { path: format!("{base}/0/matchExpressions/-"), value: to_json(&backup[1]) },
                Op::Add { path: format!("{base}/1/matchExpressions/-"), value: to_json(&backup[0]) },
                Op::Add { path: format!("{base}/1/matchExpressions/-"), value: to_json(&backup[1]) },
                Op::Remove { path: format!("{base}/2") },
            ])
        );
        let two_zones = pod_with_terms(json!([zone_term("zone-1"), zone_term("zone-3")]));
        let conflict = |term| Contradiction {
            term: Some(term),
            requirements: vec![
                (Origin::Term(term), req("zone", "In", &[if term == 0 { "zone-1" } else { "zone-3" }])),
                (Origin::LoadAffinity, req("zone", "In", &["zone-2"])),
            ],
        };
        assert_eq!(plan(&two_zones, &zone_2), AffinityPlan::Conflict(vec![conflict(0), conflict(1)]));
        assert_eq!(
            conflict(1).to_string(),
            r#"term 1: zone In ["zone-2"] (loadAffinity) against zone In ["zone-3"] (the pod's node affinity term 1)"#
        );
        // The nodeSelector is ANDed with every term, and with the config when the pod has no term.
        let mut selected = two_zones.clone();
        selected["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        let windows = [req("kubernetes.io/os", "In", &["windows"])];
        assert!(matches!(plan(&selected, &windows), AffinityPlan::Conflict(c) if c.len() == 2));
        let only_selector = json!({"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}});
        let want = Contradiction {
            term: None,
            requirements: vec![
                (Origin::LoadAffinity, windows[0].clone()),
                (Origin::NodeSelector, req("kubernetes.io/os", "In", &["linux"])),
            ],
        };
        assert_eq!(
            want.to_string(),
            r#"kubernetes.io/os In ["windows"] (loadAffinity) against kubernetes.io/os In ["linux"] (the pod's spec.nodeSelector)"#
        );
        assert_eq!(plan(&only_selector, &windows), AffinityPlan::Conflict(vec![want]));
        // A term that matched no node before is neither merged into nor blamed.
        let dead = pod_with_terms(json!([{}, zone_term("zone-2"), {"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["zone-1"]}, {"key": "zone", "operator": "NotIn", "values": ["zone-1"]}]}]));
        assert_eq!(plan(&dead, &zone_2), AffinityPlan::Unchanged);
        assert_eq!(plan(&dead, &[req("zone", "In", &["zone-9"])]).clone(), {
            let c = Contradiction {
                term: Some(1),
                requirements: vec![
                    (Origin::Term(1), req("zone", "In", &["zone-2"])),
                    (Origin::LoadAffinity, req("zone", "In", &["zone-9"])),
                ],
            };
            AffinityPlan::Conflict(vec![c])
        });
    }

    /// A node, as the scheduler's NodeAffinity filter sees it: its labels.
    type Node = BTreeMap<&'static str, &'static str>;

    /// Kubernetes' rule for one requirement on a node's labels, written out independently of
    /// [`unsatisfiable`] (apimachinery's `Requirement.Matches`).
    fn requirement_matches(node: &Node, r: &SelectorRequirement) -> bool {
        let label = node.get(r.key.as_str()).copied();
        let number = |v: &str| v.parse::<i64>().ok();
        match (r.operator.as_str(), label) {
            ("In", Some(v)) => r.values.iter().any(|x| x == v),
            ("NotIn", Some(v)) => !r.values.iter().any(|x| x == v),
            ("NotIn" | "DoesNotExist", None) | ("Exists", Some(_)) => true,
            ("Gt", Some(v)) => {
                matches!((number(v), r.values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a > b)
            }
            ("Lt", Some(v)) => {
                matches!((number(v), r.values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a < b)
            }
            _ => false,
        }
    }

    /// Whether the pod may run on the node: every nodeSelector label, and some non-empty term.
    fn pod_fits(pod: &Value, node: &Node) -> bool {
        let selector = node_selector(pod).iter().all(|r| requirement_matches(node, r));
        let terms =
            pod.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms");
        let affinity = match terms.and_then(Value::as_array) {
            None => true,
            Some(terms) => terms.iter().any(|term| {
                let expressions = term["matchExpressions"].as_array().cloned().unwrap_or_default();
                !expressions.is_empty() && expressions.iter().all(|e| requirement_matches(node, &from_json(e)))
            }),
        };
        selector && affinity
    }

    #[test]
    fn the_patched_pod_runs_exactly_where_its_affinity_and_the_config_both_allow() {
        let node = |labels: &[(&'static str, &'static str)]| -> Node { labels.iter().copied().collect() };
        let mut nodes = Vec::new();
        for zone in ["zone-1", "zone-2", "zone-3"] {
            for role in [None, Some("backup"), Some("batch")] {
                for (os, cpus) in [("linux", "4"), ("linux", "16"), ("windows", "8")] {
                    let mut labels = vec![("zone", zone), ("kubernetes.io/os", os), ("cpus", cpus)];
                    labels.extend(role.map(|role| ("role", role)));
                    nodes.push(node(&labels));
                }
            }
        }
        let pods = [
            pod_with_terms(json!([zone_term("zone-1"), zone_term("zone-2"), zone_term("zone-3")])),
            pod_with_terms(json!([zone_term("zone-1"), zone_term("zone-3")])),
            pod_with_terms(json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["zone-1", "zone-2"]},
                                      {"key": "kubernetes.io/os", "operator": "NotIn", "values": ["windows"]}]},
                {"matchExpressions": [{"key": "role", "operator": "Exists"}]}])),
            json!({"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                   "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                       zone_term("zone-2"), {"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["8"]}]}]}}}}}),
            json!({"spec": {"nodeSelector": {"kubernetes.io/os": "windows"}}}),
            json!({"spec": {}}),
        ];
        let configs = [
            vec![req("zone", "In", &["zone-2"])],
            vec![req("role", "In", &["backup"])],
            vec![req("role", "DoesNotExist", &[])],
            vec![req("zone", "NotIn", &["zone-1"]), req("cpus", "Lt", &["10"])],
            vec![req("kubernetes.io/os", "In", &["windows"])],
            vec![req("cpus", "Gt", &["4"]), req("zone", "In", &["zone-1", "zone-3"])],
        ];
        for pod in &pods {
            for config in &configs {
                let config_only =
                    pod_with_terms(json!([{"matchExpressions": config.iter().map(to_json).collect::<Vec<_>>()}]));
                let both: Vec<&Node> = nodes.iter().filter(|n| pod_fits(pod, n) && pod_fits(&config_only, n)).collect();
                let before: Vec<&Node> = nodes.iter().filter(|n| pod_fits(pod, n)).collect();
                let after: Vec<&Node> = match plan(pod, config) {
                    AffinityPlan::Ops(ops) => {
                        let mut patched = pod.clone();
                        apply_ops(&mut patched, ops).unwrap_or_else(|e| panic!("{pod} {config:?}: {e}"));
                        nodes.iter().filter(|n| pod_fits(&patched, n)).collect()
                    }
                    AffinityPlan::Unchanged => before.clone(),
                    AffinityPlan::Conflict(conflicts) => {
                        assert!(both.is_empty(), "{pod} {config:?}: a conflict {conflicts:?}, yet {both:?} fit");
                        assert!(!before.is_empty(), "{pod} {config:?}: the pod fitted nowhere already");
                        continue;
                    }
                };
                assert_eq!(after, both, "{pod} with {config:?}");
            }
        }
    }
}
