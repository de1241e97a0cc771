//! The cluster's Nodes for the placement warnings: a watch that keeps only what the checks read
//! of each Node (`NodeFacts`: labels, taints, allocatable, unschedulable, Ready), and one read of
//! everything the checks need for `explain` and `check --kubeconfig`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde::{Deserialize, Deserializer};

use crate::cluster::{reclaim_policy, NodeAgentDaemonSet, Relisted, NODE_AGENT};
use crate::config::placement::{Allocatable, ClusterView, DaemonSetPlacement, NodeFacts, NodeSnapshot};
use crate::config::version::VeleroVersion;
use crate::k8s::toleration::Taint;

/// The most watcher events folded into one snapshot.
const EVENTS_PER_SNAPSHOT: usize = 1024;

/// The Nodes one list request asks for (bench/RESULTS.md: 2 MiB less at a start-up list of
/// 5,000 than kube's 500).
const LIST_PAGE: u32 = 100;

/// A Node as the watch and `explain` read it: what the checks need, and the name and
/// resourceVersion the watcher needs. serde skips the rest of each object (managedFields,
/// images, nodeInfo, annotations...) without building it, where a typed `Node` would hold it all.
#[derive(Debug, Clone, Deserialize)]
pub struct SlimNode {
    #[serde(default, deserialize_with = "slim_metadata")]
    metadata: ObjectMeta,
    spec: Option<Spec>,
    status: Option<Status>,
}

#[derive(Debug, Clone, Deserialize)]
struct Spec {
    taints: Option<Vec<WireTaint>>,
    unschedulable: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
struct WireTaint {
    key: Option<String>,
    value: Option<String>,
    effect: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Status {
    allocatable: Option<BTreeMap<String, String>>,
    conditions: Option<Vec<Condition>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

/// Of the metadata, the name, resourceVersion and labels.
fn slim_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        name: Option<String>,
        resource_version: Option<String>,
        labels: Option<BTreeMap<String, String>>,
    }
    let wire = Wire::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: wire.name,
        resource_version: wire.resource_version,
        labels: wire.labels,
        ..ObjectMeta::default()
    })
}

/// The API of Nodes, as `Node` itself declares it.
impl k8s_openapi::Resource for SlimNode {
    const API_VERSION: &'static str = Node::API_VERSION;
    const GROUP: &'static str = Node::GROUP;
    const KIND: &'static str = Node::KIND;
    const VERSION: &'static str = Node::VERSION;
    const URL_PATH_SEGMENT: &'static str = Node::URL_PATH_SEGMENT;
    type Scope = <Node as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for SlimNode {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Strings shared by every node that has them: label keys, most label values, names (a
/// node's hostname label repeats its name).
#[derive(Debug, Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(known) = self.0.get(text) {
            return known.clone();
        }
        let fresh: Arc<str> = Arc::from(text);
        self.0.insert(fresh.clone());
        fresh
    }

    /// Forgets the strings no node holds any more: names and labels come and go with nodes.
    fn prune(&mut self) {
        self.0.retain(|text| Arc::strong_count(text) > 1);
    }
}

/// What the checks keep of a Node.
fn facts(node: &SlimNode, strings: &mut Interner) -> NodeFacts {
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    NodeFacts {
        name: strings.get(node.metadata.name.as_deref().unwrap_or_default()),
        labels: node.labels().iter().map(|(k, v)| (strings.get(k), strings.get(v))).collect(),
        taints: spec
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .map(|t| Taint { key: text(&t.key), value: text(&t.value), effect: text(&t.effect) })
            .collect(),
        allocatable: Allocatable::of(|resource| status?.allocatable.as_ref()?.get(resource).map(String::as_str)),
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or_default(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.kind == "Ready" && c.status == "True")),
    }
}

/// The Nodes as last seen, by name, and the strings they share.
#[derive(Debug, Default)]
struct Folded {
    nodes: Relisted<BTreeMap<Arc<str>, Arc<NodeFacts>>>,
    strings: Interner,
}

impl Folded {
    fn snapshot(&self) -> NodeSnapshot {
        self.nodes.known.iter().flat_map(|known| known.values().cloned()).collect()
    }

    /// Applies the events arrived together; a snapshot when what the checks read changed.
    fn fold(
        &mut self,
        events: impl IntoIterator<Item = Result<Event<SlimNode>, watcher::Error>>,
    ) -> Option<NodeSnapshot> {
        let mut changed = false;
        for event in events {
            match event {
                Ok(event) => changed |= self.changed_by(event),
                Err(err) => tracing::warn!(error = %err, "watching Nodes; retrying"),
            }
        }
        if !changed {
            return None;
        }
        self.strings.prune();
        Some(self.snapshot())
    }

    /// Applies one event; whether what the checks read changed (a kubelet's heartbeat alone
    /// changes nothing kept).
    fn changed_by(&mut self, event: Event<SlimNode>) -> bool {
        let mut fact = |node: SlimNode| facts(&node, &mut self.strings);
        let event = match event {
            Event::Init => Event::Init,
            Event::InitApply(node) => Event::InitApply(fact(node)),
            Event::InitDone => Event::InitDone,
            Event::Apply(node) => Event::Apply(fact(node)),
            Event::Delete(node) => Event::Delete(fact(node)),
        };
        self.nodes.apply(
            event,
            |known, fresh| match known.get(&fresh.name) {
                Some(kept) if **kept == fresh => false,
                _ => {
                    known.insert(fresh.name.clone(), Arc::new(fresh));
                    true
                }
            },
            |known, gone| known.remove(&gone.name).is_some(),
        )
    }
}

/// Every Node, as the checks read them, each time that changes; the stream never ends. The
/// first item comes when the first list completes. Errors (RBAC included) are logged and
/// retried with backoff; the last snapshot stands meanwhile.
pub fn node_changes(client: kube::Client) -> impl Stream<Item = NodeSnapshot> + Send + 'static {
    let api: Api<SlimNode> = Api::all(client);
    let mut folded = Folded::default();
    // The events already arrived are folded together into one snapshot: a burst (a list, a
    // scale-up of thousands of nodes) then makes one snapshot, not one per node. List pages of
    // LIST_PAGE nodes: the page's body and objects are what a (re)list holds at its peak.
    let config = watcher::Config::default().page_size(LIST_PAGE);
    let events = watcher::watcher(api, config).default_backoff().ready_chunks(EVENTS_PER_SNAPSHOT);
    events.filter_map(move |events| std::future::ready(folded.fold(events)))
}

/// Why the cluster could not be read for `explain` or `check --kubeconfig`.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("ConfigMap {0} not found")]
    NoConfigMap(String),
}

/// A client from `kubeconfig`, or found the way kubectl finds one (KUBECONFIG, ~/.kube/config,
/// in-cluster).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, ReadError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await.map_err(kube::Error::InferConfig)?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// The `data` and `binaryData` keys of ConfigMap `namespace/name`.
pub async fn configmap(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(BTreeMap<String, String>, Vec<String>), ReadError> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let cm = api.get_opt(name).await?.ok_or_else(|| ReadError::NoConfigMap(format!("{namespace}/{name}")))?;
    let binary_keys = cm.binary_data.iter().flat_map(|b| b.keys().cloned()).collect();
    Ok((cm.data.unwrap_or_default(), binary_keys))
}

/// What `explain` and `check --kubeconfig` read once: the Nodes, node-agent's DaemonSet (when
/// found) and each StorageClass's reclaimPolicy.
pub struct ClusterRead {
    pub nodes: Vec<Arc<NodeFacts>>,
    pub node_agent: Option<DaemonSetPlacement>,
    /// The Velero version of node-agent's image tag, when the DaemonSet has one.
    pub node_agent_version: Option<VeleroVersion>,
    pub reclaim_policies: BTreeMap<String, String>,
}

impl ClusterRead {
    pub fn view(&self) -> ClusterView<'_> {
        ClusterView {
            nodes: &self.nodes,
            node_agent: self.node_agent.as_ref(),
            reclaim_policies: Some(&self.reclaim_policies),
        }
    }
}

/// Reads [`ClusterRead`] for Velero's namespace.
pub async fn read_cluster(client: kube::Client, namespace: &str) -> Result<ClusterRead, ReadError> {
    let nodes: Api<SlimNode> = Api::all(client.clone());
    let mut strings = Interner::default();
    let nodes =
        nodes.list(&ListParams::default()).await?.items.iter().map(|n| Arc::new(facts(n, &mut strings))).collect();
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let daemonset = daemonsets.get_opt(NODE_AGENT).await?.map(|ds| NodeAgentDaemonSet::of(&ds));
    let node_agent_version = daemonset.as_ref().and_then(|seen| seen.version);
    let node_agent = daemonset.map(|seen| seen.placement);
    let classes: Api<StorageClass> = Api::all(client);
    let reclaim_policies = classes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|class| (class.name_any(), reclaim_policy(&class)))
        .collect();
    Ok(ClusterRead { nodes, node_agent, node_agent_version, reclaim_policies })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, zone: &str, heartbeat: &str) -> SlimNode {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"zone": zone}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}]}
        }))
        .expect("a Node")
    }

    impl Folded {
        fn apply(&mut self, event: Event<SlimNode>) -> Option<NodeSnapshot> {
            self.fold([Ok(event)])
        }
    }

    #[test]
    fn only_changes_the_checks_read_send_a_snapshot() {
        let mut folded = Folded::default();
        assert_eq!(folded.apply(Event::Init), None);
        assert_eq!(folded.apply(Event::InitApply(node("a", "z1", "2026-01-01T00:00:00Z"))), None);
        assert_eq!(folded.apply(Event::InitApply(node("b", "z1", "2026-01-01T00:00:00Z"))), None);
        let listed = folded.apply(Event::InitDone).expect("the first list");
        assert_eq!(listed.iter().map(|n| &*n.name).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(folded.apply(Event::Apply(node("a", "z1", "2026-01-01T00:00:10Z"))), None, "a heartbeat");
        let moved = folded.apply(Event::Apply(node("a", "z2", "2026-01-01T00:00:20Z"))).expect("a label change");
        assert_eq!(moved[0].labels.get("zone"), Some("z2"));
        assert!(Arc::ptr_eq(&listed[1], &moved[1]), "an unchanged node is shared, not copied");
        let gone = folded.apply(Event::Delete(node("a", "z2", "2026-01-01T00:00:30Z"))).expect("a deletion");
        assert_eq!(gone.len(), 1);
        drop((listed, moved));
        assert_eq!(folded.apply(Event::Apply(node("b", "z3", "2026-01-01T00:00:40Z"))).map(|n| n.len()), Some(1));
        let mut strings: Vec<&str> = folded.strings.0.iter().map(|s| &**s).collect();
        strings.sort();
        assert_eq!(strings, ["b", "z1", "z3", "zone"], "a gone node's name and labels are forgotten");
    }

    #[test]
    fn strings_are_shared_while_a_node_holds_them() {
        let mut strings = Interner::default();
        let zone = strings.get("zone");
        assert!(Arc::ptr_eq(&zone, &strings.get("zone")));
        drop(strings.get("z1"));
        strings.prune();
        assert_eq!(strings.0.len(), 1, "only what is held stays");
    }

    #[test]
    fn a_node_object_keeps_only_what_the_checks_read() {
        let node: SlimNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "resourceVersion": "42", "labels": {"zone": "a"}, "annotations": {"big": "x"},
                         "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]},
            "spec": {"taints": [{"key": "dedicated", "value": "backup", "effect": "NoSchedule"}], "unschedulable": true,
                     "podCIDR": "10.0.0.0/24"},
            "status": {"allocatable": {"cpu": "3500m", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                       "images": [{"names": ["x"], "sizeBytes": 1}], "nodeInfo": {"kubeletVersion": "v1.37.2"}}
        }))
        .expect("a Node");
        assert_eq!((node.name_any(), node.resource_version()), ("n1".to_string(), Some("42".to_string())));
        assert_eq!(
            node.metadata,
            ObjectMeta {
                name: node.metadata.name.clone(),
                resource_version: node.metadata.resource_version.clone(),
                labels: node.metadata.labels.clone(),
                ..ObjectMeta::default()
            },
            "nothing else is kept"
        );
        let kept = facts(&node, &mut Interner::default());
        assert_eq!((&*kept.name, kept.labels.get("zone")), ("n1", Some("a")));
        assert_eq!(
            kept.taints,
            [Taint { key: "dedicated".into(), value: "backup".into(), effect: "NoSchedule".into() }]
        );
        assert_eq!(kept.allocatable.iter().map(|(r, _)| r).collect::<Vec<_>>(), ["cpu", "memory"]);
        assert!(kept.unschedulable && kept.ready);
        let bare: SlimNode =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n2", "labels": null}})).expect("a Node");
        assert_eq!(facts(&bare, &mut Interner::default()), NodeFacts { name: "n2".into(), ..NodeFacts::default() });
        assert_eq!(<SlimNode as kube::Resource>::url_path(&(), None), <Node as kube::Resource>::url_path(&(), None));
    }
}
