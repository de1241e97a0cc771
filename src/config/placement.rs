//! Whether the config's node selections can be placed in the cluster as it is now: the nodes
//! each `loadAffinity` entry and `perNodeConfig` selector selects, which of them run node-agent
//! (as the DaemonSet controller decides), the taints data-mover pods do not tolerate and whether
//! their requests fit, as the scheduler's filters decide (NodeAffinity, TaintToleration,
//! NodeUnschedulable, NodeResourcesFit). Pure: the decoded config and a node snapshot in, a
//! report and warnings out. Warnings, never denials: nodes come and go.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::decode::Decoded;
use super::diagnostics::Diagnostic;
use super::model::{LabelSelector, NodeAgentConfig, PodResources, SelectorRequirement};
use super::release::VeleroVersion;
use super::third_party::IN_TREE_TOLERATIONS;
use super::version;
use crate::k8s::quantity::Quantity;
use crate::k8s::selector::{requirement_matches, Requirement, NODE_FIELD_SELECTOR_KEY};
use crate::k8s::toleration::{tolerated, Taint, Toleration, HARD_EFFECTS};

/// What the checks need of one Node; the watch keeps nothing else. Shared (`Arc`) by the
/// watch's fold and every snapshot, so 5,000 nodes are held once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: Arc<str>,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub allocatable: Allocatable,
    pub unschedulable: bool,
    pub ready: bool,
}

/// The Nodes as one snapshot: each node's facts shared with the watch, not copied per snapshot.
pub type NodeSnapshot = Arc<[Arc<NodeFacts>]>;

/// A node's labels, sorted by key. A slice, not a map (a map's node holds eleven slots for
/// the handful of labels a node has), of shared strings: every node repeats the same keys
/// and most values, so the watch interns them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Arc<str>, Arc<str>)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        let found = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        self.0.get(found).map(|(_, v)| &**v)
    }
}

impl FromIterator<(Arc<str>, Arc<str>)> for Labels {
    /// The last value of a key repeated stands, as in a map.
    fn from_iter<I: IntoIterator<Item = (Arc<str>, Arc<str>)>>(pairs: I) -> Self {
        let mut pairs: Vec<_> = pairs.into_iter().collect();
        pairs.reverse();
        pairs.sort_by(|(a, _), (b, _)| a.cmp(b));
        pairs.dedup_by(|(a, _), (b, _)| a == b);
        Labels(pairs.into())
    }
}

/// The resources of `status.allocatable` a data-mover pod requests, in key order.
pub const ALLOCATABLE: [&str; 3] = ["cpu", "ephemeral-storage", "memory"];

/// `status.allocatable` of each of [`ALLOCATABLE`] (absent: none to give).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocatable([Option<Quantity>; 3]);

impl Allocatable {
    /// Each resource's quantity, read by name from `status.allocatable` (`of("cpu")`).
    pub fn of<'a>(mut quantity: impl FnMut(&str) -> Option<&'a str>) -> Self {
        Allocatable(ALLOCATABLE.map(|resource| quantity(resource)?.parse().ok()))
    }

    pub fn get(&self, resource: &str) -> Option<&Quantity> {
        let at = ALLOCATABLE.iter().position(|r| *r == resource)?;
        self.0.get(at)?.as_ref()
    }

    /// The resources the node reports, with their quantities.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Quantity)> {
        ALLOCATABLE.into_iter().zip(&self.0).filter_map(|(resource, q)| Some((resource, q.as_ref()?)))
    }
}

/// One required node-selector term: `matchExpressions` on labels, `matchFields` on the name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Term {
    pub match_expressions: Vec<SelectorRequirement>,
    pub match_fields: Vec<SelectorRequirement>,
}

/// What the DaemonSet controller reads of node-agent's pod template to place its pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonSetPlacement {
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity's terms, ORed; empty when there is none.
    pub required_terms: Vec<Term>,
    pub tolerations: Vec<Toleration>,
    pub host_network: bool,
}

impl DaemonSetPlacement {
    /// What the DaemonSet controller reads of a pod template's `spec` (JSON as the API server
    /// serves it): nodeSelector, required node affinity, tolerations, hostNetwork.
    pub fn of_pod_spec(spec: &serde_json::Value) -> Self {
        let text = |v: &serde_json::Value, key: &str| {
            v.get(key).and_then(serde_json::Value::as_str).unwrap_or_default().to_string()
        };
        let requirements = |list: &serde_json::Value| -> Vec<SelectorRequirement> {
            list.as_array()
                .into_iter()
                .flatten()
                .map(|r| SelectorRequirement {
                    key: text(r, "key"),
                    operator: text(r, "operator"),
                    values: r["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                })
                .collect()
        };
        let terms =
            &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        DaemonSetPlacement {
            node_selector: spec["nodeSelector"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default(),
            required_terms: terms
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| Term {
                    match_expressions: requirements(&t["matchExpressions"]),
                    match_fields: requirements(&t["matchFields"]),
                })
                .collect(),
            tolerations: spec["tolerations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| Toleration {
                    key: text(t, "key"),
                    operator: text(t, "operator"),
                    value: text(t, "value"),
                    effect: text(t, "effect"),
                    toleration_seconds: t["tolerationSeconds"].as_i64(),
                })
                .collect(),
            host_network: spec["hostNetwork"] == true,
        }
    }
}

/// The cluster as the server's watches (or `explain`'s lists) see it.
#[derive(Debug, Clone, Copy)]
pub struct ClusterView<'a> {
    pub nodes: &'a [Arc<NodeFacts>],
    /// node-agent's DaemonSet, when found.
    pub node_agent: Option<&'a DaemonSetPlacement>,
    /// StorageClass name → `reclaimPolicy` (`Delete` when unset), when known.
    pub reclaim_policies: Option<&'a BTreeMap<String, String>>,
}

/// One selected node, as a data-mover pod would meet it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFit<'a> {
    pub node: &'a NodeFacts,
    pub runs_node_agent: Option<bool>,
    /// NoSchedule/NoExecute taints (and cordoning) the data-mover pods do not tolerate.
    pub untolerated: Vec<Taint>,
    /// The requested resources this node's allocatable cannot hold, as `cpu 8 > 4`.
    pub short: Vec<String>,
}

/// One entry or selector of the config and the nodes it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection<'a> {
    /// `loadAffinity[0].nodeSelector`, `loadConcurrency.perNodeConfig[1].nodeSelector`.
    pub path: String,
    pub storage_class: Option<&'a str>,
    /// Whether data-mover pods are placed by it (loadAffinity) or only counted (perNodeConfig).
    pub places_pods: bool,
    pub selected: Vec<NodeFit<'a>>,
    /// When nothing is selected: the requirement that comes closest (a key nodes have, with
    /// other values), worded.
    pub near_miss: Option<String>,
}

/// The Kubernetes taint a cordoned node behaves as (the scheduler's NodeUnschedulable filter).
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Tolerations the API server's DefaultTolerationSeconds plugin adds to every pod.
fn default_pod_tolerations() -> [Toleration; 2] {
    ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"].map(|key| Toleration {
        key: key.into(),
        operator: "Exists".into(),
        effect: "NoExecute".into(),
        toleration_seconds: Some(300),
        ..Toleration::default()
    })
}

/// The tolerations every DaemonSet pod gets (`AddOrUpdateDaemonPodTolerations`,
/// pkg/controller/daemon/util/daemonset_util.go at v1.37.2).
fn daemon_pod_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut keys = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        (UNSCHEDULABLE, "NoSchedule"),
    ];
    if host_network {
        keys.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    keys.into_iter()
        .map(|(key, effect)| Toleration {
            key: key.into(),
            operator: "Exists".into(),
            effect: effect.into(),
            ..Toleration::default()
        })
        .collect()
}

/// The tolerations a data-mover pod ends up with: the webhook's `tolerations`, the in-tree ones
/// node-agent copies from its DaemonSet (1.17+, `ThirdPartyTolerations`), and the API server's
/// defaults.
fn data_mover_tolerations(
    config: &NodeAgentConfig,
    view: &ClusterView,
    version: Option<VeleroVersion>,
) -> Vec<Toleration> {
    let mut out = config.tolerations.clone();
    let copies_in_tree = version.is_none_or(|v| v >= VeleroVersion::new(1, 17, 0));
    if let Some(ds) = view.node_agent.filter(|_| copies_in_tree) {
        out.extend(ds.tolerations.iter().filter(|t| IN_TREE_TOLERATIONS.contains(&t.key.as_str())).cloned());
    }
    out.extend(default_pod_tolerations());
    out
}

/// A node's hard taints, with cordoning as the taint the scheduler treats it as.
fn hard_taints(node: &NodeFacts) -> impl Iterator<Item = Taint> + '_ {
    let cordon = node.unschedulable.then(|| Taint {
        key: UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    });
    node.taints.iter().filter(|t| HARD_EFFECTS.contains(&t.effect.as_str())).cloned().chain(cordon)
}

fn untolerated(node: &NodeFacts, tolerations: &[Toleration]) -> Vec<Taint> {
    hard_taints(node).filter(|taint| !tolerated(tolerations, taint)).collect()
}

fn as_requirement(r: &SelectorRequirement) -> Requirement<'_> {
    Requirement { key: &r.key, operator: &r.operator, values: &r.values }
}

fn label_matches(r: &SelectorRequirement, node: &NodeFacts) -> bool {
    requirement_matches(&as_requirement(r), node.labels.get(&r.key))
}

fn term_matches(term: &Term, node: &NodeFacts) -> bool {
    let field = |key: &str| (key == NODE_FIELD_SELECTOR_KEY).then_some(&*node.name);
    term.match_expressions.iter().all(|r| label_matches(r, node))
        && term.match_fields.iter().all(|r| requirement_matches(&as_requirement(r), field(&r.key)))
}

/// `NodeShouldRunDaemonPod` (pkg/controller/daemon/daemon_controller.go at v1.37.2): the
/// template's nodeSelector, its required node affinity (terms ORed; an empty term matches
/// nothing) and its taints against the daemon pod's tolerations.
pub fn runs_daemon_pod(ds: &DaemonSetPlacement, node: &NodeFacts) -> bool {
    let selector = ds.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v.as_str()));
    let affinity = ds.required_terms.is_empty()
        || ds
            .required_terms
            .iter()
            .any(|t| !(t.match_expressions.is_empty() && t.match_fields.is_empty()) && term_matches(t, node));
    let mut tolerations = ds.tolerations.clone();
    tolerations.extend(daemon_pod_tolerations(ds.host_network));
    let taints_ok =
        node.taints.iter().filter(|t| HARD_EFFECTS.contains(&t.effect.as_str())).all(|t| tolerated(&tolerations, t));
    selector && affinity && taints_ok
}

/// A label selector as node-agent turns it into node affinity: matchLabels as `In`, then
/// matchExpressions, ANDed.
fn requirements(selector: &LabelSelector) -> Vec<SelectorRequirement> {
    let from_labels = selector.match_labels.iter().map(|(key, value)| SelectorRequirement {
        key: key.clone(),
        operator: "In".into(),
        values: vec![value.clone()],
    });
    from_labels.chain(selector.match_expressions.iter().cloned()).collect()
}

/// The requested amount of each resource: the request, else the limit (the API server defaults
/// a missing request to the limit), a `"0"` counting as unset as Velero reads it.
fn requests(resources: Option<&PodResources>) -> Vec<(&'static str, Quantity)> {
    let Some(resources) = resources else { return Vec::new() };
    resources
        .pairs()
        .iter()
        .filter_map(|pair| {
            let given = [pair.request, pair.limit].into_iter().find(|v| !v.is_empty() && *v != "0")?;
            Some((pair.resource, given.parse::<Quantity>().ok()?))
        })
        .collect()
}

fn shortfalls(node: &NodeFacts, wanted: &[(&'static str, Quantity)]) -> Vec<String> {
    wanted
        .iter()
        .filter_map(|(resource, request)| {
            let allocatable = node.allocatable.get(resource);
            let fits = allocatable.is_some_and(|a| request <= a);
            (!fits).then(|| {
                let have = allocatable.map_or_else(|| "0".to_string(), Quantity::canonical);
                format!("{resource} {} > {have}", request.canonical())
            })
        })
        .collect()
}

/// Words the closest miss of a selector no node satisfies: the first requirement whose key
/// some node has, with the values nodes have for it.
fn near_miss(wanted: &[SelectorRequirement], nodes: &[Arc<NodeFacts>]) -> Option<String> {
    let failing = wanted.iter().filter(|r| !nodes.iter().any(|n| label_matches(r, n)));
    let mut absent = None;
    for r in failing {
        let values: BTreeSet<&str> = nodes.iter().filter_map(|n| n.labels.get(&r.key)).collect();
        if values.is_empty() {
            absent.get_or_insert_with(|| format!("no node has label {}", r.key));
            continue;
        }
        let shown: Vec<&str> = values.iter().take(3).copied().collect();
        let more = if values.len() > shown.len() { format!(" +{}", values.len() - shown.len()) } else { String::new() };
        return Some(format!("{} is {}{more} on nodes", r.key, shown.join(",")));
    }
    absent
}

/// Every selection of the config against the cluster, in config order.
pub fn selections<'a>(
    config: &'a NodeAgentConfig,
    view: &ClusterView<'a>,
    version: Option<VeleroVersion>,
) -> Vec<Selection<'a>> {
    let tolerations = data_mover_tolerations(config, view, version);
    let wanted = requests(config.pod_resources.as_ref());
    let affinity = config.load_affinity.iter().enumerate().map(|(i, e)| {
        let class = Some(e.storage_class.as_str()).filter(|c| !c.is_empty());
        (format!("loadAffinity[{i}].nodeSelector"), &e.node_selector, class, true)
    });
    let per_node = config
        .load_concurrency
        .iter()
        .flat_map(|lc| lc.per_node_config.iter())
        .enumerate()
        .map(|(i, r)| (format!("loadConcurrency.perNodeConfig[{i}].nodeSelector"), &r.node_selector, None, false));
    affinity
        .chain(per_node)
        .filter(|(_, selector, _, _)| !selector.is_empty())
        .map(|(path, selector, storage_class, places_pods)| {
            let wanted_labels = requirements(selector);
            let selected: Vec<NodeFit> = view
                .nodes
                .iter()
                .filter(|n| wanted_labels.iter().all(|r| label_matches(r, n)))
                .map(|node| NodeFit {
                    node,
                    runs_node_agent: view.node_agent.map(|ds| runs_daemon_pod(ds, node)),
                    untolerated: untolerated(node, &tolerations),
                    short: shortfalls(node, &wanted),
                })
                .collect();
            let near_miss = selected.is_empty().then(|| near_miss(&wanted_labels, view.nodes)).flatten();
            Selection { path, storage_class, places_pods, selected, near_miss }
        })
        .collect()
}

fn names(fits: &[NodeFit], pick: impl Fn(&NodeFit) -> String) -> String {
    let shown: Vec<String> = fits.iter().take(2).map(pick).collect();
    let more =
        if fits.len() > shown.len() { format!(", and {} more", fits.len() - shown.len()) } else { String::new() };
    format!("{}{more}", shown.join("; "))
}

/// A taint as kubectl writes one: `key=value:Effect`.
pub fn taint_text(t: &Taint) -> String {
    match t.value.as_str() {
        "" => format!("{}:{}", t.key, t.effect),
        value => format!("{}={value}:{}", t.key, t.effect),
    }
}

/// The warning of one selection: the first of "no node", "no node-agent", "taints",
/// "resources" that holds (each makes the next moot). Short: the API server passes on at most
/// 256 characters of a warning, data key and position included.
fn selection_warning(s: &Selection, nodes: usize) -> Option<String> {
    let whom = if s.places_pods { "its pods stay Pending" } else { "the rule sets nothing" };
    if s.selected.is_empty() {
        let miss = s.near_miss.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
        return Some(format!("selects none of the {nodes} nodes{miss}: {whom}"));
    }
    let count = s.selected.len();
    if s.selected.iter().all(|f| f.runs_node_agent == Some(false)) {
        let consequence = if s.places_pods { "no node-agent takes its DataUploads/DataDownloads" } else { whom };
        return Some(format!(
            "selects {count} node(s) ({}), none running node-agent: {consequence}",
            names(&s.selected, |f| f.node.name.to_string())
        ));
    }
    if !s.places_pods {
        return None;
    }
    if s.selected.iter().all(|f| !f.untolerated.is_empty()) {
        return Some(format!(
            "all {count} selected node(s) have a taint data-mover pods do not tolerate ({}): {whom}; see tolerations",
            names(&s.selected, |f| format!(
                "{} {}",
                f.node.name,
                f.untolerated.iter().map(taint_text).collect::<Vec<_>>().join(",")
            ))
        ));
    }
    if s.selected.iter().all(|f| !f.short.is_empty()) {
        return Some(format!(
            "podResources requests exceed the allocatable of all {count} selected node(s) ({}): {whom}",
            names(&s.selected, |f| format!("{} {}", f.node.name, f.short.join(",")))
        ));
    }
    None
}

/// Every placement warning of the config against the cluster, at the config's positions.
pub fn placement_warnings(decoded: &Decoded, view: &ClusterView, version: Option<VeleroVersion>) -> Vec<Diagnostic> {
    let config = &decoded.config;
    let mut out: Vec<Diagnostic> = selections(config, view, version)
        .iter()
        .filter_map(|s| selection_warning(s, view.nodes.len()).map(|message| (s.path.clone(), message)))
        .map(|(path, message)| {
            let pos = decoded.positions.lookup(&path);
            Diagnostic::warning(&path, message, pos)
        })
        .collect();
    if let (Some(cache), Some(policies)) = (&config.cache_pvc, view.reclaim_policies) {
        let policy = policies.get(&cache.storage_class).map(String::as_str);
        let reads = version::reads(super::kind::Kind::NodeAgent, version, "cachePVC");
        // `sc.ReclaimPolicy != nil && *sc.ReclaimPolicy != corev1api.PersistentVolumeReclaimDelete`
        // fails `validateCachePVCConfig`, and node-agent logs "Ignore cache config" and runs
        // without the section (Velero's pkg/cmd/cli/nodeagent/server.go, v1.18.0 to v1.18.3).
        if let Some(policy) = policy.filter(|p| *p != "Delete" && reads) {
            let path = "cachePVC.storageClass";
            out.push(Diagnostic::warning(
                path,
                format!("StorageClass {:?} has reclaimPolicy {policy}: node-agent drops cachePVC at start-up; use a Delete class", cache.storage_class),
                decoded.positions.lookup(path),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode::decode;
    use crate::config::json::parse;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)], cpu: &str) -> Arc<NodeFacts> {
        let quantities = [("cpu", cpu), ("memory", "16Gi")];
        Arc::new(NodeFacts {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (Arc::from(*k), Arc::from(*v))).collect(),
            taints: taints
                .iter()
                .map(|(k, e)| Taint { key: k.to_string(), value: String::new(), effect: e.to_string() })
                .collect(),
            allocatable: Allocatable::of(|r| quantities.iter().find(|(q, _)| *q == r).map(|(_, v)| *v)),
            unschedulable: false,
            ready: true,
        })
    }

    fn cluster() -> Vec<Arc<NodeFacts>> {
        vec![
            node("a1", &[("zone", "a"), ("role", "worker")], &[], "4"),
            node("b1", &[("zone", "b"), ("role", "worker")], &[], "4"),
            node("backup1", &[("zone", "a"), ("role", "backup")], &[("dedicated", "NoSchedule")], "16"),
            node("spot1", &[("zone", "c"), ("role", "spot")], &[("spot", "NoExecute")], "2"),
        ]
    }

    fn warnings(
        config: &str,
        ds: Option<&DaemonSetPlacement>,
        classes: Option<&BTreeMap<String, String>>,
    ) -> Vec<String> {
        let nodes = cluster();
        let view = ClusterView { nodes: &nodes, node_agent: ds, reclaim_policies: classes };
        let decoded = decode(&parse(config).expect("JSON"), None);
        placement_warnings(&decoded, &view, None).iter().map(|d| format!("{}: {}", d.path, d.message)).collect()
    }

    fn workers_only() -> DaemonSetPlacement {
        DaemonSetPlacement { node_selector: [("role".to_string(), "worker".to_string())].into(), ..Default::default() }
    }

    #[test]
    fn each_warning_names_the_entry_the_counts_and_the_change() {
        let everywhere = DaemonSetPlacement {
            tolerations: vec![Toleration { operator: "Exists".into(), ..Toleration::default() }],
            ..Default::default()
        };
        let cases: &[(&str, &str, Option<&DaemonSetPlacement>, &[&str])] = &[
            ("matches a worker", r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "b"}}}]}"#, Some(&everywhere), &[]),
            (
                "no node: the key exists with other values",
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "d"}}}]}"#,
                Some(&everywhere),
                &["loadAffinity[0].nodeSelector: selects none of the 4 nodes (zone is a,b,c on nodes): its pods stay Pending"],
            ),
            (
                "no node: the key is nowhere",
                r#"{"loadConcurrency": {"perNodeConfig": [{"nodeSelector": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, "number": 2}]}}"#,
                None,
                &["loadConcurrency.perNodeConfig[0].nodeSelector: selects none of the 4 nodes (no node has label gpu): the rule sets nothing"],
            ),
            (
                "only nodes node-agent does not run on",
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}]}"#,
                Some(&workers_only()),
                &["loadAffinity[0].nodeSelector: selects 1 node(s) (backup1), none running node-agent: no node-agent takes its DataUploads/DataDownloads"],
            ),
            (
                "a taint the DaemonSet tolerates but data-mover pods do not",
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}]}"#,
                Some(&everywhere),
                &["loadAffinity[0].nodeSelector: all 1 selected node(s) have a taint data-mover pods do not tolerate (backup1 dedicated:NoSchedule): its pods stay Pending; see tolerations"],
            ),
            (
                "the configured toleration lets them on",
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}"#,
                Some(&everywhere),
                &[],
            ),
            (
                "requests no selected node can hold; the storage-class entry is checked too",
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "worker"}}, "storageClass": "gp3"}], "podResources": {"cpuRequest": "8", "cpuLimit": "8", "memoryRequest": "1Gi", "memoryLimit": "1Gi"}}"#,
                Some(&everywhere),
                &["loadAffinity[0].nodeSelector: podResources requests exceed the allocatable of all 2 selected node(s) (a1 cpu 8 > 4; b1 cpu 8 > 4): its pods stay Pending"],
            ),
            (
                "one selected node that fits is enough",
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "a"}}}], "podResources": {"cpuRequest": "8", "cpuLimit": "8", "memoryRequest": "1Gi", "memoryLimit": "1Gi"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]}"#,
                Some(&everywhere),
                &[],
            ),
        ];
        for (name, config, ds, want) in cases {
            assert_eq!(warnings(config, *ds, None), *want, "{name}");
        }
    }

    #[test]
    fn labels_and_allocatable_read_as_the_maps_they_stand_for() {
        let pair = |k: &str, v: &str| (Arc::from(k), Arc::from(v));
        let labels: Labels = [pair("zone", "a"), pair("arch", "amd64"), pair("zone", "b")].into_iter().collect();
        assert_eq!((labels.get("arch"), labels.get("zone"), labels.get("pool")), (Some("amd64"), Some("b"), None));
        let allocatable = Allocatable::of(|r| {
            [("memory", "8Gi"), ("cpu", "3500m"), ("pods", "110")].into_iter().find(|(q, _)| *q == r).map(|(_, v)| v)
        });
        let listed: Vec<String> = allocatable.iter().map(|(r, q)| format!("{r} {}", q.canonical())).collect();
        assert_eq!(listed, ["cpu 3500m", "memory 8Gi"]);
        assert_eq!(allocatable.get("ephemeral-storage"), None);
        assert_eq!(Allocatable::of(|_| Some("lots")), Allocatable::default(), "what is not a quantity gives nothing");
    }

    #[test]
    fn a_pod_template_gives_what_the_daemonset_controller_reads() {
        let spec = serde_json::json!({
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            "hostNetwork": true,
            "containers": [{"name": "node-agent"}]
        });
        let ds = DaemonSetPlacement::of_pod_spec(&spec);
        assert_eq!(ds.node_selector.get("kubernetes.io/os").map(String::as_str), Some("linux"));
        assert_eq!(ds.required_terms.len(), 2);
        assert_eq!(ds.required_terms[1].match_fields[0].values, ["n1"]);
        assert_eq!(ds.tolerations[0].key, "spot");
        assert!(ds.host_network);
        assert_eq!(DaemonSetPlacement::of_pod_spec(&serde_json::json!({})), DaemonSetPlacement::default());
    }

    #[test]
    fn the_daemonset_controller_s_decision() {
        let nodes = cluster();
        let on = |ds: &DaemonSetPlacement| -> Vec<&str> {
            nodes.iter().filter(|n| runs_daemon_pod(ds, n)).map(|n| &*n.name).collect()
        };
        assert_eq!(on(&DaemonSetPlacement::default()), ["a1", "b1"]);
        assert_eq!(on(&workers_only()), ["a1", "b1"]);
        let spot = Toleration { key: "spot".into(), operator: "Exists".into(), ..Toleration::default() };
        let zone_c_or_named = DaemonSetPlacement {
            required_terms: vec![
                Term {
                    match_expressions: vec![SelectorRequirement {
                        key: "zone".into(),
                        operator: "In".into(),
                        values: vec!["c".into()],
                    }],
                    ..Term::default()
                },
                Term {
                    match_fields: vec![SelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: vec!["a1".into()],
                    }],
                    ..Term::default()
                },
            ],
            tolerations: vec![spot],
            ..Default::default()
        };
        assert_eq!(on(&zone_c_or_named), ["a1", "spot1"]);
        let mut cordoned = NodeFacts::clone(&nodes[0]);
        cordoned.unschedulable = true;
        assert!(runs_daemon_pod(&DaemonSetPlacement::default(), &cordoned), "daemon pods tolerate cordoning");
        assert_eq!(untolerated(&cordoned, &default_pod_tolerations()).len(), 1, "data-mover pods do not");
    }

    #[test]
    fn a_cache_class_that_retains_is_warned() {
        let classes: BTreeMap<String, String> =
            [("retain".to_string(), "Retain".to_string()), ("gone".to_string(), "Delete".to_string())].into();
        assert_eq!(warnings(r#"{"cachePVC": {"storageClass": "gone"}}"#, None, Some(&classes)), Vec::<String>::new());
        assert_eq!(
            warnings(r#"{"cachePVC": {"storageClass": "retain"}}"#, None, Some(&classes)),
            ["cachePVC.storageClass: StorageClass \"retain\" has reclaimPolicy Retain: node-agent drops cachePVC at start-up; use a Delete class"]
        );
    }
}
