//! What the request handlers share: the live config, what is known about the cluster, the
//! readiness handle and the metrics, and the two webhooks that read them, side by side:
//! [`AppState::review_configmap`] (the kept config checks around `validating`) and [`AppState::review_pod`]
//! (the cluster lookups around `mutate`). Reads are a lock-free-in-practice `RwLock` read
//! plus an `Arc` clone.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::registry::Registry;

use super::readiness::Readiness;
use crate::admission::{Decision, Request};
use crate::cluster::Cluster;
use crate::config::kind::Kind;
use crate::config::model::NodeAgentConfig;
use crate::config::placement::{ClusterView, DaemonSetPlacement, NodeFacts};
use crate::config::third_party::TemplateKeys;
use crate::config::validate::Environment;
use crate::config::version::VeleroVersion;
use crate::metrics::{Metrics, PodOutcome};
use crate::mutate::identity::{DataMover, MoverKind, NodeAgentIdentity};
use crate::mutate::plan::{self, PlanInput, StorageClass};
use crate::mutate::{self, Mutation};
use crate::mutating;
use crate::validating::{self, Contents, ContentsCheck, Review, Target};

/// The config the mutating webhook applies, and which load it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveConfig {
    /// Counts this process's successful loads from 1; 0 means nothing was loaded (no
    /// settings). Per process: it tells whether an edit reached this replica, not which
    /// config a pod got.
    pub generation: u64,
    /// Names the config, the same on every replica and across restarts: `resourceVersion:N`
    /// of the ConfigMap, or `sha256:…` of the config file (`config::load`); empty when none.
    /// Pods' `applied` annotation, the `config_info` metric and the log say it.
    pub id: String,
    pub config: NodeAgentConfig,
}

/// How many recent config checks a server keeps (16 writers of the one ConfigMap, each retried
/// by the API server while the others commit, bring a few dozen contents at once), and how many
/// bytes of ConfigMap contents at most: real configs are a few KiB, and a 1 MiB ConfigMap is
/// checked, not kept.
const KEPT_CHECKS: usize = 64;
const KEPT_CHECK_BYTES: usize = 256 * 1024;

/// Recent config checks by ConfigMap contents, all made in one environment, least recently used
/// first out. The same contents come back again and again (see [`ContentsCheck`]): a `kubectl
/// apply` retried by the API server after conflicts is checked once, and an UPDATE's old
/// contents are usually the last write's new ones. A hash picks the candidates; contents are
/// then compared in full.
#[derive(Default)]
struct KeptChecks {
    env: CheckEnv,
    /// Least recently used first.
    checks: VecDeque<KeptCheck>,
    bytes: usize,
}

struct KeptCheck {
    hash: u64,
    kind: Kind,
    contents: Contents,
    check: Arc<ContentsCheck>,
}

/// What a config check reads of the cluster: a change of either makes every kept check stale.
#[derive(Debug, Clone, Default, PartialEq)]
struct CheckEnv {
    velero_version: Option<VeleroVersion>,
    /// The PriorityClass and StorageClass names the watches have seen (`None`: not listed yet).
    priority_classes: Option<Arc<HashSet<String>>>,
    storage_classes: Option<Arc<HashSet<String>>>,
    /// The Nodes and node-agent's pod template's placement, for the placement warnings.
    nodes: Option<Arc<Vec<NodeFacts>>>,
    node_agent_placement: Option<Arc<DaemonSetPlacement>>,
}

fn contents_bytes((data, binary_keys): &Contents) -> usize {
    data.iter().map(|(key, value)| key.len() + value.len()).sum::<usize>()
        + binary_keys.iter().map(String::len).sum::<usize>()
}

fn contents_hash(kind: Kind, contents: &Contents) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (kind, contents).hash(&mut hasher);
    hasher.finish()
}

impl KeptChecks {
    /// The kept check of `contents` (its `hash`), now the most recently used; checks kept in
    /// another environment are dropped.
    fn get(&mut self, env: &CheckEnv, hash: u64, kind: Kind, contents: &Contents) -> Option<Arc<ContentsCheck>> {
        if self.env != *env {
            *self = KeptChecks { env: env.clone(), ..KeptChecks::default() };
            return None;
        }
        let at = self.checks.iter().position(|k| k.hash == hash && k.kind == kind && k.contents == *contents)?;
        let kept = self.checks.remove(at)?;
        let check = kept.check.clone();
        self.checks.push_back(kept);
        Some(check)
    }

    /// Keeps a check made in `env`, dropping the least recently used to stay within the bounds.
    fn keep(&mut self, env: &CheckEnv, hash: u64, kind: Kind, contents: &Contents, check: &Arc<ContentsCheck>) {
        let bytes = contents_bytes(contents);
        if self.env != *env || bytes > KEPT_CHECK_BYTES || self.get(env, hash, kind, contents).is_some() {
            return;
        }
        while self.checks.len() >= KEPT_CHECKS || self.bytes + bytes > KEPT_CHECK_BYTES {
            let Some(oldest) = self.checks.pop_front() else { break };
            self.bytes -= contents_bytes(&oldest.contents);
        }
        self.checks.push_back(KeptCheck { hash, kind, contents: contents.clone(), check: check.clone() });
        self.bytes += bytes;
    }
}

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
    pub target: Target,
    identity: NodeAgentIdentity,
    cluster: Option<Cluster>,
    pub metrics: Metrics,
    pub registry: Registry,
    /// A channel, so the config source can check the live config again when it changes.
    velero_version: tokio::sync::watch::Sender<Option<VeleroVersion>>,
    priority_classes: RwLock<Option<Arc<HashSet<String>>>>,
    priority_watch_interrupted: AtomicBool,
    storage_classes: RwLock<Option<Arc<HashSet<String>>>>,
    /// The node-agent DaemonSet's in-tree template keys; `None` until watched, or without one.
    node_agent_template: RwLock<Option<Arc<TemplateKeys>>>,
    node_agent_placement: RwLock<Option<Arc<DaemonSetPlacement>>>,
    /// The Node watch's last snapshot; `None` until its first list (or without cluster access).
    nodes: RwLock<Option<Arc<Vec<NodeFacts>>>>,
    live: RwLock<Arc<LiveConfig>>,
    kept_checks: Mutex<KeptChecks>,
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
        Self {
            identity: NodeAgentIdentity { namespace: target.namespace.clone(), service_accounts },
            cluster,
            target,
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
            kept_checks: Mutex::new(KeptChecks::default()),
            readiness: Readiness::default(),
        }
    }

    /// Decides a ConfigMap review, with the kept check of contents checked before in the same
    /// environment. It makes no API call: what it knows of the cluster comes from the watches.
    pub fn review_configmap(&self, request: &Request) -> Decision {
        let inputs = match validating::triage(request, &self.target) {
            Review::Decided(decision) => return decision,
            Review::NeedsCheck(inputs) => inputs,
        };
        let check_env = CheckEnv {
            velero_version: *self.velero_version.borrow(),
            priority_classes: read(&self.priority_classes),
            storage_classes: read(&self.storage_classes),
            nodes: read(&self.nodes),
            node_agent_placement: read(&self.node_agent_placement),
        };
        let env = Environment {
            velero_version: check_env.velero_version,
            priority_classes: check_env.priority_classes.as_deref(),
            storage_classes: check_env.storage_classes.as_deref(),
            cluster: check_env.nodes.as_deref().map(|nodes| ClusterView {
                nodes,
                node_agent: check_env.node_agent_placement.as_deref(),
                reclaim_policies: None,
            }),
        };
        let check = |kind: Kind, contents: &Contents| {
            let hash = contents_hash(kind, contents);
            let kept = self.kept_checks.lock().ok().and_then(|mut kept| kept.get(&check_env, hash, kind, contents));
            if let Some(check) = kept {
                self.metrics.record_config_check(true);
                return check;
            }
            let check = Arc::new(validating::check_contents(kind, contents, &env));
            self.metrics.record_config_check(false);
            if let Ok(mut kept) = self.kept_checks.lock() {
                kept.keep(&check_env, hash, kind, contents, &check);
            }
            check
        };
        let template = read(&self.node_agent_template);
        validating::checked_decision(&self.target, &env, &inputs, template.as_deref(), &check)
    }

    /// Gives a data-mover pod the live config's settings; every other pod passes untouched.
    /// The pod's metrics are written once, at the end, from what was gathered on the way.
    pub async fn review_pod(&self, request: Request) -> Decision {
        let mut outcome = PodOutcome::default();
        let decision = self.pod_decision(request, &mut outcome).await;
        self.metrics.record_pod(&outcome);
        decision
    }

    async fn pod_decision(&self, request: Request, outcome: &mut PodOutcome) -> Decision {
        let mover = match self.identity.identify(&mutating::submission(&request)) {
            Ok(mover) => mover,
            Err(reason) => {
                outcome.skipped = Some(reason.as_str());
                return Decision::allow();
            }
        };
        let Some(pod) = request.object else { return Decision::allow() };
        let live = self.live_config();
        let storage_class = if plan::needs_storage_class(&pod, &mover, &live.config) {
            let (class, result) = self.storage_class(&mover).await;
            outcome.storage_class_lookup = Some(result);
            class
        } else {
            StorageClass::Known(None)
        };
        let classes = self.priority_classes_now(&live.config.priority_class_name).await;
        let plan = plan::plan(&PlanInput {
            pod: &pod,
            mover: &mover,
            config: &live.config,
            config_id: &live.id,
            storage_class,
            priority_classes: classes.as_deref(),
        });
        outcome.affinity_conflict = plan.affinity_conflict;
        outcome.priority_class_missing = plan.priority_class_missing;
        outcome.annotations_over_limit = plan.annotations_over_limit;
        if plan.ops.is_empty() {
            outcome.skipped = Some("nothing_to_change");
        }
        let mutation = mutate::verified_mutation(pod, plan);
        match &mutation {
            Mutation::Dropped { .. } => {
                outcome.self_check_failed = true;
                tracing::error!(uid = %request.uid, pod = %mover.name, "patch did not apply to its own pod; admitted unchanged");
            }
            Mutation::Patch { applied, .. } => outcome.settings_applied = applied.iter().map(|s| s.as_str()).collect(),
            Mutation::Unchanged { .. } => {}
        }
        let mut decision = mutating::decision(mutation);
        if decision.patch.is_some() {
            decision.config.clone_from(&live.id);
        }
        decision
    }

    /// The class that chooses the loadAffinity entry: the DataUpload's PVC (named like the
    /// pod), or the DataDownload's target PVC in the application's namespace; with the
    /// lookup's result for the metrics.
    async fn storage_class(&self, mover: &DataMover) -> (StorageClass, &'static str) {
        let Some(cluster) = &self.cluster else { return (StorageClass::Unknown, "no_cluster") };
        let namespace = &self.target.namespace;
        let looked_up = match mover.kind {
            MoverKind::DataUpload => cluster.storage_class_of_pvc(namespace, &mover.name).await,
            _ => cluster.data_download_target_class(namespace, &mover.name).await,
        };
        match looked_up {
            Ok(class) => (StorageClass::Known(class), "success"),
            Err(err) => {
                tracing::warn!(pod = %mover.name, error = %err, "storage class lookup failed; using the loadAffinity entry without storageClass");
                (StorageClass::Unknown, err.reason())
            }
        }
    }

    pub fn live_config(&self) -> Arc<LiveConfig> {
        read(&self.live)
    }

    /// Installs a newly loaded config (or none, for a missing ConfigMap) and marks the source read.
    pub fn set_live_config(&self, live: LiveConfig) {
        self.metrics.config_generation.set(live.generation as i64);
        self.metrics.set_config_id(&live.id);
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

    pub fn set_storage_classes(&self, classes: Option<Arc<HashSet<String>>>) {
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
    pub fn set_nodes(&self, nodes: Arc<Vec<NodeFacts>>) {
        self.metrics.nodes.set(i64::try_from(nodes.len()).unwrap_or(i64::MAX));
        write(&self.nodes, Some(nodes));
    }

    /// The PriorityClasses the mutating webhook may set. The watched set answers when it holds
    /// `wanted` and its watch is live (a deletion reaches it in milliseconds); otherwise the API
    /// server is asked for this pod: a class missing from the set may be newer than the set, and
    /// after a watch failure (an API server restart) a listed class may be gone, which would make
    /// the Priority plugin reject the pod. The watched set stands only when that GET fails.
    async fn priority_classes_now(&self, wanted: &str) -> Option<Arc<HashSet<String>>> {
        let watched = self.priority_classes();
        let live = !self.priority_watch_interrupted.load(Ordering::Relaxed);
        if wanted.is_empty() || (live && watched.as_ref().is_some_and(|set| set.contains(wanted))) {
            return watched;
        }
        let Some(cluster) = self.cluster.as_ref() else { return watched };
        match cluster.priority_class_exists(wanted).await {
            Ok(true) => Some(Arc::new(HashSet::from([wanted.to_string()]))),
            Ok(false) => Some(Arc::new(HashSet::new())),
            Err(err) => {
                tracing::warn!(class = wanted, error = %err, "PriorityClass lookup failed; using the watched set");
                watched
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::kind::Names;
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
    type Step<'a> = (&'a str, fn(&AppState), Request, bool, Vec<&'a str>, (u64, u64));

    /// `(checked, reused)` from `node_agent_webhook_config_checks_total`.
    fn config_checks(state: &AppState) -> (u64, u64) {
        let text = crate::metrics::render(&state.registry);
        let count = |result: &str| {
            let series = format!("node_agent_webhook_config_checks_total{{result=\"{result}\"}} ");
            text.lines().find_map(|line| line.strip_prefix(series.as_str())?.parse().ok()).unwrap_or(0)
        };
        (count("checked"), count("reused"))
    }

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
        ];
        for (step, change, request, allowed, warnings, checks) in steps {
            change(&state);
            let before = config_checks(&state);
            let decision = state.review_configmap(&request);
            let after = config_checks(&state);
            assert_eq!(decision.allowed, allowed, "{step}: {decision:?}");
            assert_eq!(decision.warnings.len(), warnings.len(), "{step}: {:?}", decision.warnings);
            for (got, want) in decision.warnings.iter().zip(&warnings) {
                assert!(got.contains(want), "{step}: {got:?} should say {want:?}");
            }
            assert_eq!((after.0 - before.0, after.1 - before.1), checks, "{step}: (checked, reused)");
            let fresh = validating::review_configmap(
                &request,
                &state.target,
                &Environment {
                    velero_version: state.velero_version(),
                    priority_classes: state.priority_classes().as_deref(),
                    storage_classes: None,
                    cluster: None,
                },
            );
            assert_eq!(decision, fresh, "{step}: the verdict differs from a fresh check's");
        }
    }

    /// The bounds: at most KEPT_CHECKS checks and KEPT_CHECK_BYTES of contents, the least
    /// recently used out first; contents larger than the bound are checked and never kept.
    #[test]
    fn kept_checks_stay_within_their_bounds() {
        let env = CheckEnv::default();
        let contents = |value: String| -> Contents { ([("config".to_string(), value)].into(), Vec::new()) };
        let check = Arc::new(ContentsCheck::default());
        let mut kept = KeptChecks::default();
        let keep =
            |kept: &mut KeptChecks, kind: Kind, c: &Contents| kept.keep(&env, contents_hash(kind, c), kind, c, &check);
        let get = |kept: &mut KeptChecks, kind: Kind, c: &Contents| kept.get(&env, contents_hash(kind, c), kind, c);
        for n in 0..KEPT_CHECKS {
            keep(&mut kept, Kind::NodeAgent, &contents(n.to_string()));
        }
        assert!(get(&mut kept, Kind::NodeAgent, &contents("0".into())).is_some(), "used again: now the most recent");
        keep(&mut kept, Kind::NodeAgent, &contents(KEPT_CHECKS.to_string()));
        assert_eq!(kept.checks.len(), KEPT_CHECKS);
        assert!(get(&mut kept, Kind::NodeAgent, &contents("1".into())).is_none(), "the least recently used is dropped");
        assert!(get(&mut kept, Kind::NodeAgent, &contents("0".into())).is_some());
        assert!(get(&mut kept, Kind::RepoMaintenance, &contents("2".into())).is_none(), "kinds are apart");

        let half = contents("x".repeat(KEPT_CHECK_BYTES / 2));
        keep(&mut kept, Kind::NodeAgent, &half);
        keep(&mut kept, Kind::NodeAgent, &contents("y".repeat(KEPT_CHECK_BYTES / 2)));
        assert!(kept.bytes <= KEPT_CHECK_BYTES, "{} bytes kept", kept.bytes);
        assert_eq!(kept.bytes, kept.checks.iter().map(|k| contents_bytes(&k.contents)).sum::<usize>());
        assert!(get(&mut kept, Kind::NodeAgent, &half).is_none(), "older contents make room");
        let too_large = contents("z".repeat(KEPT_CHECK_BYTES));
        keep(&mut kept, Kind::NodeAgent, &too_large);
        assert!(get(&mut kept, Kind::NodeAgent, &too_large).is_none());

        let other = CheckEnv { velero_version: Some(VeleroVersion::new(1, 18, 1)), ..CheckEnv::default() };
        let last = contents("y".repeat(KEPT_CHECK_BYTES / 2));
        assert!(kept.get(&other, contents_hash(Kind::NodeAgent, &last), Kind::NodeAgent, &last).is_none());
        assert_eq!((kept.checks.len(), kept.bytes), (0, 0), "another environment drops every kept check");
    }
}
