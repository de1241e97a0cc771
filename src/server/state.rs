//! What the request handlers share: the two webhooks, the live config, what the watches saw of
//! the cluster, the readiness handle and the metrics; data and setters, as the watches and the
//! config source write them (`source`). Each webhook's flow is its own module (`validating`,
//! `mutating`); a handler hands it a snapshot of what it reads here. Reads are a
//! lock-free-in-practice `RwLock` read plus an `Arc` clone.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::registry::Registry;

use super::readiness::Readiness;
use crate::cluster::Cluster;
use crate::config::load::LiveConfig;
use crate::config::placement::{DaemonSetPlacement, NodeSnapshot};
use crate::config::third_party::TemplateKeys;
use crate::config::version::VeleroVersion;
use crate::metrics::Metrics;
use crate::mutate::identity::NodeAgentIdentity;
use crate::mutating::{MutatingWebhook, PodContext};
use crate::validating::{CheckEnv, Target, ValidatingWebhook, Watched};

/// What the server is told at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// node-agent's ConfigMap (and so the Velero namespace).
    pub target: Target,
    pub velero_version: Option<VeleroVersion>,
    /// The ServiceAccounts node-agent creates pods as.
    pub service_accounts: Vec<String>,
}

pub struct AppState {
    pub validating: ValidatingWebhook,
    pub mutating: MutatingWebhook,
    /// The Kubernetes API, when the server can reach one: the mutating webhook's lookups.
    pub cluster: Option<Cluster>,
    pub metrics: Metrics,
    pub registry: Registry,
    /// A channel, so the config source can check the live config again when it changes.
    velero_version: tokio::sync::watch::Sender<Option<VeleroVersion>>,
    priority_classes: RwLock<Option<Arc<HashSet<String>>>>,
    priority_watch_interrupted: AtomicBool,
    storage_classes: RwLock<Option<Arc<BTreeMap<String, String>>>>,
    /// The node-agent DaemonSet's in-tree template keys; `None` until watched, or without one.
    node_agent_template: RwLock<Option<Arc<TemplateKeys>>>,
    node_agent_placement: RwLock<Option<Arc<DaemonSetPlacement>>>,
    /// The Node watch's last snapshot; `None` until its first list (or without cluster access).
    nodes: RwLock<Option<NodeSnapshot>>,
    live: RwLock<Arc<LiveConfig>>,
    pub readiness: Readiness,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut guard) => *guard = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

impl AppState {
    /// `cluster` is the Kubernetes API, when the server can reach one: it serves storage-class
    /// lookups for loadAffinity; without it, the entry without a storage class applies.
    pub fn new(settings: Settings, cluster: Option<Cluster>) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let Settings { target, velero_version, service_accounts } = settings;
        metrics.set_velero_version(velero_version);
        let identity = NodeAgentIdentity { namespace: target.namespace.clone(), service_accounts };
        Self {
            validating: ValidatingWebhook::new(target),
            mutating: MutatingWebhook::new(identity),
            cluster,
            metrics,
            registry,
            velero_version: tokio::sync::watch::Sender::new(velero_version),
            priority_classes: RwLock::new(None),
            priority_watch_interrupted: AtomicBool::new(false),
            storage_classes: RwLock::new(None),
            node_agent_template: RwLock::new(None),
            node_agent_placement: RwLock::new(None),
            nodes: RwLock::new(None),
            live: RwLock::new(Arc::new(LiveConfig::default())),
            readiness: Readiness::default(),
        }
    }

    /// Which ConfigMaps are Velero's.
    pub fn target(&self) -> &Target {
        self.validating.target()
    }

    /// What a ConfigMap review reads of the cluster, as the watches last saw it.
    pub fn watched(&self) -> Watched {
        Watched {
            check: CheckEnv {
                velero_version: self.velero_version(),
                priority_classes: read(&self.priority_classes),
                storage_classes: read(&self.storage_classes),
                nodes: read(&self.nodes),
                node_agent_placement: read(&self.node_agent_placement),
            },
            node_agent_template: read(&self.node_agent_template),
        }
    }

    /// What a pod review reads of the server: the live config and the watched PriorityClasses.
    pub fn pod_context(&self) -> PodContext {
        PodContext {
            live: self.live_config(),
            priority_classes: self.priority_classes(),
            priority_watch_interrupted: self.priority_watch_interrupted.load(Ordering::Relaxed),
        }
    }

    pub fn live_config(&self) -> Arc<LiveConfig> {
        read(&self.live)
    }

    /// Installs a newly loaded config (or none, for a missing ConfigMap) and marks the source read.
    pub fn set_live_config(&self, live: LiveConfig) {
        self.metrics.set_config(live.generation, &live.id);
        write(&self.live, Arc::new(live));
        self.readiness.mark_config_read();
    }

    pub fn set_velero_version(&self, version: Option<VeleroVersion>) {
        self.metrics.set_velero_version(version);
        self.velero_version.send_replace(version);
    }

    pub fn velero_version(&self) -> Option<VeleroVersion> {
        *self.velero_version.borrow()
    }

    /// Wakes when the Velero version changes.
    pub fn velero_version_changes(&self) -> tokio::sync::watch::Receiver<Option<VeleroVersion>> {
        self.velero_version.subscribe()
    }

    /// The watched PriorityClass names; `interrupted` when the watch failed since they were
    /// listed, so that a class may have come or gone unseen.
    pub fn set_priority_classes(&self, classes: Option<Arc<HashSet<String>>>, interrupted: bool) {
        write(&self.priority_classes, classes);
        self.priority_watch_interrupted.store(interrupted, Ordering::Relaxed);
    }

    pub fn priority_classes(&self) -> Option<Arc<HashSet<String>>> {
        read(&self.priority_classes)
    }

    /// The watched StorageClasses: each one's reclaimPolicy by name, from one watch.
    pub fn set_storage_classes(&self, classes: Option<Arc<BTreeMap<String, String>>>) {
        write(&self.storage_classes, classes);
    }

    pub fn set_node_agent_template(&self, keys: Option<Arc<TemplateKeys>>) {
        write(&self.node_agent_template, keys);
    }

    /// Where node-agent's DaemonSet places its pods, for the placement warnings.
    pub fn set_node_agent_placement(&self, placement: Option<Arc<DaemonSetPlacement>>) {
        write(&self.node_agent_placement, placement);
    }

    /// The Node watch's snapshot, for the placement warnings.
    pub fn set_nodes(&self, nodes: NodeSnapshot) {
        self.metrics.set_nodes(nodes.len());
        write(&self.nodes, Some(nodes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Request;
    use crate::config::kind::Names;
    use crate::validating;
    use serde_json::json;

    fn review(operation: &str, config: &str, old_config: Option<&str>) -> Request {
        let configmap = |text: &str| json!({"metadata": {"name": "node-agent-config"}, "data": {"config": text}});
        let request = json!({
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"}, "namespace": "velero",
            "name": "node-agent-config", "operation": operation, "userInfo": {"username": "admin"},
            "object": configmap(config), "oldObject": old_config.map(configmap),
        });
        serde_json::from_value(request).unwrap_or_else(|e| panic!("a test request: {e}"))
    }

    /// A step: its name, what changes before it, the review, the allowed flag and warnings (in
    /// order, by a fragment of each) it must get, and how many contents it checks and reuses.
    type Step<'a> = (&'a str, fn(&AppState), Request, bool, Vec<&'a str>, (u32, u32));

    /// A kept check must never be stale: each step changes one input of the check, and every
    /// verdict equals a fresh check's. Contents are checked once per environment, whether they
    /// come back as the new or the old object.
    #[tokio::test]
    async fn kept_checks_follow_every_input_of_the_check() {
        let state = AppState::new(
            Settings {
                target: Target { namespace: "velero".into(), names: Names::default() },
                velero_version: None,
                service_accounts: vec!["velero".into()],
            },
            None,
        );
        let class = r#"{"priorityClassName": "absent"}"#;
        let concurrency = r#"{"priorityClassName": "absent", "loadConcurrency": {"globalConfig": 2}}"#;
        let labels = r#"{"priorityClassName": "absent", "podLabels": {"team": "a"}}"#;
        let absent = r#"priorityClassName: PriorityClass "absent" does not exist"#;
        let ignored = "node-agent of Velero 1.16.0 ignores this";
        let restart = "loadConcurrency changed: node-agent reads it only at start-up";
        let cache = r#"{"cachePVC": {"storageClass": "cache", "residentThresholdInMB": 1024}}"#;
        let retain = r#"cachePVC.storageClass: StorageClass "cache" has reclaimPolicy Retain"#;
        fn storage_classes(policy: &str) -> BTreeMap<String, String> {
            [("cache".to_string(), policy.to_string())].into()
        }
        let steps: Vec<Step> = vec![
            ("valid", |_| {}, review("CREATE", class, None), true, vec![], (1, 0)),
            ("same again", |_| {}, review("CREATE", class, None), true, vec![], (0, 1)),
            ("invalid", |_| {}, review("CREATE", r#"{"priorityClassName": "A"}"#, None), false, vec![], (1, 0)),
            ("valid again", |_| {}, review("CREATE", class, None), true, vec![], (0, 1)),
            (
                "PriorityClasses become known",
                |s| s.set_priority_classes(Some(Arc::new(["present".to_string()].into())), false),
                review("CREATE", class, None),
                true,
                vec![absent],
                (1, 0),
            ),
            (
                "Velero version becomes known",
                |s| s.set_velero_version(Some(VeleroVersion::new(1, 16, 0))),
                review("CREATE", class, None),
                true,
                vec![ignored, absent],
                (1, 0),
            ),
            (
                "an UPDATE that changes loadConcurrency",
                |_| {},
                review("UPDATE", class, Some(concurrency)),
                true,
                vec![ignored, absent, restart],
                (1, 1),
            ),
            (
                "an UPDATE that changes nothing",
                |_| {},
                review("UPDATE", class, Some(class)),
                true,
                vec![ignored, absent],
                (0, 1),
            ),
            (
                "another writer's UPDATE",
                |_| {},
                review("UPDATE", labels, Some(class)),
                true,
                vec![ignored, absent, "podLabels: node-agent of Velero 1.16.0 ignores this"],
                (1, 1),
            ),
            (
                "a retry after the conflict: the first write's contents over the other's",
                |_| {},
                review("UPDATE", concurrency, Some(labels)),
                true,
                vec![ignored, absent, restart],
                (0, 2),
            ),
            (
                "a cachePVC class with reclaimPolicy Retain, on a Velero that reads cachePVC",
                |s| {
                    s.set_velero_version(Some(VeleroVersion::new(1, 18, 3)));
                    s.set_nodes(Arc::new([]));
                    s.set_storage_classes(Some(Arc::new(storage_classes("Retain"))));
                },
                review("CREATE", cache, None),
                true,
                vec![retain],
                (1, 0),
            ),
            (
                "the class replaced with a Delete one",
                |s| s.set_storage_classes(Some(Arc::new(storage_classes("Delete")))),
                review("CREATE", cache, None),
                true,
                vec![],
                (1, 0),
            ),
            ("the same contents again", |_| {}, review("CREATE", cache, None), true, vec![], (0, 1)),
        ];
        for (step, change, request, allowed, warnings, checks) in steps {
            change(&state);
            let reviewed = state.validating.review(&request, &state.watched()).await;
            let decision = reviewed.decision;
            assert_eq!(decision.allowed, allowed, "{step}: {decision:?}");
            assert_eq!(decision.warnings.len(), warnings.len(), "{step}: {:?}", decision.warnings);
            for (got, want) in decision.warnings.iter().zip(&warnings) {
                assert!(got.contains(want), "{step}: {got:?} should say {want:?}");
            }
            assert_eq!((reviewed.checks.checked, reviewed.checks.reused), checks, "{step}: (checked, reused)");
            let fresh = validating::review_configmap(&request, state.target(), &state.watched().check.environment());
            assert_eq!(decision, fresh, "{step}: the verdict differs from a fresh check's");
        }
    }
}
