//! The cluster's Nodes for the placement warnings: a watch that keeps only what the checks read
//! of each Node (`NodeFacts`: labels, taints, allocatable, unschedulable, Ready), and one read of
//! everything the checks need for `explain` and `check --kubeconfig`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;

use crate::cluster::{reclaim_policy, NodeAgentDaemonSet, Relisted, NODE_AGENT};
use crate::config::placement::{ClusterView, DaemonSetPlacement, NodeFacts};
use crate::config::version::VeleroVersion;

/// The most watcher events folded into one snapshot.
const EVENTS_PER_SNAPSHOT: usize = 1024;

/// The Nodes as last seen, by name.
#[derive(Debug, Default)]
struct Folded(Relisted<BTreeMap<String, NodeFacts>>);

fn facts(node: &Node) -> NodeFacts {
    NodeFacts::of_node(&serde_json::to_value(node).unwrap_or_default())
}

impl Folded {
    fn snapshot(&self) -> Arc<Vec<NodeFacts>> {
        Arc::new(self.0.known.iter().flat_map(|known| known.values().cloned()).collect())
    }

    /// Applies one event; whether what the checks read changed (a kubelet's heartbeat alone
    /// changes nothing kept).
    fn changed_by(&mut self, event: Event<Node>) -> bool {
        self.0.apply(
            event,
            |known, node| {
                let fresh = facts(&node);
                known.insert(node.name_any(), fresh.clone()) != Some(fresh)
            },
            |known, node| known.remove(&node.name_any()).is_some(),
        )
    }
}

/// Every Node, as the checks read them, each time that changes; the stream never ends. The
/// first item comes when the first list completes. Errors (RBAC included) are logged and
/// retried with backoff; the last snapshot stands meanwhile.
pub fn node_changes(client: kube::Client) -> impl Stream<Item = Arc<Vec<NodeFacts>>> + Send + 'static {
    let api: Api<Node> = Api::all(client);
    let mut folded = Folded::default();
    // The events already arrived are folded together into one snapshot: a burst (a list, a
    // scale-up of thousands of nodes) then copies the set once, not once per node.
    let events = watcher::watcher(api, watcher::Config::default()).default_backoff().ready_chunks(EVENTS_PER_SNAPSHOT);
    events.filter_map(move |events| {
        let mut changed = false;
        for event in events {
            match event {
                Ok(event) => changed |= folded.changed_by(event),
                Err(err) => tracing::warn!(error = %err, "watching Nodes; retrying"),
            }
        }
        std::future::ready(changed.then(|| folded.snapshot()))
    })
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
    pub nodes: Vec<NodeFacts>,
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
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = nodes.list(&ListParams::default()).await?.items.iter().map(facts).collect();
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

    fn node(name: &str, zone: &str, heartbeat: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"zone": zone}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}]}
        }))
        .expect("a Node")
    }

    impl Folded {
        fn apply(&mut self, event: Event<Node>) -> Option<Arc<Vec<NodeFacts>>> {
            self.changed_by(event).then(|| self.snapshot())
        }
    }

    #[test]
    fn only_changes_the_checks_read_send_a_snapshot() {
        let mut folded = Folded::default();
        assert_eq!(folded.apply(Event::Init), None);
        assert_eq!(folded.apply(Event::InitApply(node("a", "z1", "2026-01-01T00:00:00Z"))), None);
        let listed = folded.apply(Event::InitDone).expect("the first list");
        assert_eq!(listed.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(folded.apply(Event::Apply(node("a", "z1", "2026-01-01T00:00:10Z"))), None, "a heartbeat");
        let moved = folded.apply(Event::Apply(node("a", "z2", "2026-01-01T00:00:20Z"))).expect("a label change");
        assert_eq!(moved[0].labels["zone"], "z2");
        assert_eq!(folded.apply(Event::Delete(node("a", "z2", "2026-01-01T00:00:30Z"))).map(|n| n.len()), Some(0));
    }
}
