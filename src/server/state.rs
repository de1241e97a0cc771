//! What the request handlers share: the live config, what is known about the cluster,
//! readiness, and metrics. Reads are a lock-free-in-practice `RwLock` read plus an `Arc` clone.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::registry::Registry;

use crate::admission::{Decision, Request};
use crate::cluster::Cluster;
use crate::config::model::NodeAgentConfig;
use crate::config::validate::Environment;
use crate::config::version::VeleroVersion;
use crate::metrics::{Metrics, ReasonLabels, ResultLabels, SettingLabels};
use crate::mutate::identity::{DataMover, MoverKind, NodeAgentIdentity};
use crate::mutate::plan::{self, PlanInput, StorageClass};
use crate::mutate::{self, Mutation};
use crate::mutating;
use crate::validating::{self, CheckInputs, Review, Target};

/// The config the mutating webhook applies, and which load it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveConfig {
    /// Counts successful loads from 1; 0 means nothing was loaded (no settings).
    pub generation: u64,
    pub config: NodeAgentConfig,
}

/// The last config check's verdict and everything it depended on. The same ConfigMap is
/// reviewed again and again (`kubectl apply --dry-run=server` then `apply`, GitOps diffs and
/// re-syncs, API-server retries), and the check costs more than the rest of a review.
struct Verdict {
    inputs: CheckInputs,
    velero_version: Option<VeleroVersion>,
    priority_classes: Option<Arc<HashSet<String>>>,
    decision: Decision,
}

impl Verdict {
    fn is_for(
        &self,
        inputs: &CheckInputs,
        velero_version: Option<VeleroVersion>,
        priority_classes: &Option<Arc<HashSet<String>>>,
    ) -> bool {
        self.velero_version == velero_version && self.priority_classes == *priority_classes && self.inputs == *inputs
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
    velero_version: RwLock<Option<VeleroVersion>>,
    priority_classes: RwLock<Option<Arc<HashSet<String>>>>,
    live: RwLock<Arc<LiveConfig>>,
    last_verdict: Mutex<Option<Verdict>>,
    config_read: AtomicBool,
    shutting_down: AtomicBool,
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
        Self {
            identity: NodeAgentIdentity { namespace: target.namespace.clone(), service_accounts },
            cluster,
            target,
            metrics,
            registry,
            velero_version: RwLock::new(velero_version),
            priority_classes: RwLock::new(None),
            live: RwLock::new(Arc::new(LiveConfig::default())),
            last_verdict: Mutex::new(None),
            config_read: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Decides a ConfigMap review; a config check whose inputs and environment equal the last
    /// one's reuses its verdict (contents compared in full, not hashed).
    pub fn validate(&self, request: &Request) -> Decision {
        let inputs = match validating::triage(request, &self.target) {
            Review::Decided(decision) => return decision,
            Review::NeedsCheck(inputs) => inputs,
        };
        let velero_version = read(&self.velero_version);
        let priority_classes = read(&self.priority_classes);
        if let Ok(last) = self.last_verdict.lock() {
            if let Some(last) = last.as_ref().filter(|last| last.is_for(&inputs, velero_version, &priority_classes)) {
                return last.decision.clone();
            }
        }
        let env = Environment { velero_version, priority_classes: priority_classes.as_deref() };
        let decision = validating::check(&self.target, &env, &inputs);
        if let Ok(mut last) = self.last_verdict.lock() {
            *last = Some(Verdict { inputs, velero_version, priority_classes, decision: decision.clone() });
        }
        decision
    }

    /// Gives a data-mover pod the live config's settings; every other pod passes untouched.
    pub async fn mutate(&self, request: Request) -> Decision {
        let mover = match self.identity.identify(&mutating::submission(&request)) {
            Ok(mover) => mover,
            Err(reason) => {
                self.metrics.pods_skipped.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc();
                return Decision::allow();
            }
        };
        let Some(pod) = request.object else { return Decision::allow() };
        let live = self.live_config();
        let storage_class = if plan::needs_storage_class(&pod, &mover, &live.config) {
            self.storage_class(&mover).await
        } else {
            StorageClass::Known(None)
        };
        let classes = self.priority_classes();
        let plan = plan::plan(&PlanInput {
            pod: &pod,
            mover: &mover,
            config: &live.config,
            generation: live.generation,
            storage_class,
            priority_classes: classes.as_deref(),
        });
        if plan.affinity_conflict {
            self.metrics.affinity_conflicts.inc();
        }
        if plan.priority_class_missing {
            self.metrics.priority_class_missing.inc();
        }
        if plan.ops.is_empty() {
            self.metrics.pods_skipped.get_or_create(&ReasonLabels { reason: "nothing_to_change" }).inc();
        }
        let mutation = mutate::verified_mutation(pod, plan);
        match &mutation {
            Mutation::Dropped { .. } => {
                self.metrics.patch_self_check_failures.inc();
                tracing::error!(uid = %request.uid, pod = %mover.name, "patch did not apply to its own pod; admitted unchanged");
            }
            Mutation::Patch { applied, .. } => {
                for setting in applied {
                    self.metrics.settings_applied.get_or_create(&SettingLabels { setting: setting.as_str() }).inc();
                }
            }
            Mutation::Unchanged { .. } => {}
        }
        mutating::decision(mutation)
    }

    /// The class that chooses the loadAffinity entry: the DataUpload's PVC (named like the
    /// pod), or the DataDownload's target PVC in the application's namespace.
    async fn storage_class(&self, mover: &DataMover) -> StorageClass {
        let Some(cluster) = &self.cluster else {
            self.metrics.storage_class_lookups.get_or_create(&ResultLabels { result: "no_cluster" }).inc();
            return StorageClass::Unknown;
        };
        let namespace = &self.target.namespace;
        let looked_up = match mover.kind {
            MoverKind::DataUpload => cluster.storage_class_of_pvc(namespace, &mover.name).await,
            _ => cluster.data_download_target_class(namespace, &mover.name).await,
        };
        match looked_up {
            Ok(class) => {
                self.metrics.storage_class_lookups.get_or_create(&ResultLabels { result: "success" }).inc();
                StorageClass::Known(class)
            }
            Err(err) => {
                self.metrics.storage_class_lookups.get_or_create(&ResultLabels { result: err.reason() }).inc();
                tracing::warn!(pod = %mover.name, error = %err, "storage class lookup failed; using the loadAffinity entry without storageClass");
                StorageClass::Unknown
            }
        }
    }

    pub fn live_config(&self) -> Arc<LiveConfig> {
        read(&self.live)
    }

    /// Installs a newly loaded config (or none, for a missing ConfigMap) and marks the source read.
    pub fn set_live_config(&self, live: LiveConfig) {
        self.metrics.config_generation.set(live.generation as i64);
        write(&self.live, Arc::new(live));
        self.config_read.store(true, Ordering::SeqCst);
    }

    /// The source was read, but gave nothing usable: keep serving what we have.
    pub fn mark_config_read(&self) {
        self.config_read.store(true, Ordering::SeqCst);
    }

    pub fn set_velero_version(&self, version: Option<VeleroVersion>) {
        write(&self.velero_version, version);
    }

    pub fn set_priority_classes(&self, classes: Option<Arc<HashSet<String>>>) {
        write(&self.priority_classes, classes);
    }

    pub fn priority_classes(&self) -> Option<Arc<HashSet<String>>> {
        read(&self.priority_classes)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Ready once the config source was read and until shutdown begins. (The certificate is
    /// loaded before the listener exists, so a listening server always has one.)
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err("shutting down");
        }
        if !self.config_read.load(Ordering::SeqCst) {
            return Err("config source not read yet");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// A step: its name, what changes before it, the review, and the allowed flag and warnings
    /// (in order, by a fragment of each) it must get.
    type Step<'a> = (&'a str, fn(&AppState), Request, bool, Vec<&'a str>);

    /// The reused verdict must never be stale: each step changes one input of the check.
    #[test]
    fn a_reused_verdict_follows_every_input_of_the_check() {
        let state = AppState::new(
            Settings {
                target: Target { namespace: "velero".into(), name: "node-agent-config".into() },
                velero_version: None,
                service_accounts: vec!["velero".into()],
            },
            None,
        );
        let class = r#"{"priorityClassName": "absent"}"#;
        let absent = r#"priorityClassName: PriorityClass "absent" does not exist"#;
        let ignored = "node-agent of Velero 1.16.0 ignores this";
        let restart = "loadConcurrency changed: node-agent reads it only at start-up";
        let steps: Vec<Step> = vec![
            ("valid", |_| {}, review("CREATE", class, None), true, vec![]),
            ("same again", |_| {}, review("CREATE", class, None), true, vec![]),
            ("invalid", |_| {}, review("CREATE", r#"{"priorityClassName": "A"}"#, None), false, vec![]),
            ("valid again", |_| {}, review("CREATE", class, None), true, vec![]),
            (
                "PriorityClasses become known",
                |s| s.set_priority_classes(Some(Arc::new(["present".to_string()].into()))),
                review("CREATE", class, None),
                true,
                vec![absent],
            ),
            (
                "Velero version becomes known",
                |s| s.set_velero_version(Some(VeleroVersion::new(1, 16, 0))),
                review("CREATE", class, None),
                true,
                vec![absent, ignored],
            ),
            (
                "an UPDATE that changes loadConcurrency",
                |_| {},
                review(
                    "UPDATE",
                    class,
                    Some(r#"{"priorityClassName": "absent", "loadConcurrency": {"globalConfig": 2}}"#),
                ),
                true,
                vec![absent, ignored, restart],
            ),
            (
                "an UPDATE that changes nothing",
                |_| {},
                review("UPDATE", class, Some(class)),
                true,
                vec![absent, ignored],
            ),
        ];
        for (step, change, request, allowed, warnings) in steps {
            change(&state);
            let decision = state.validate(&request);
            assert_eq!(decision.allowed, allowed, "{step}: {decision:?}");
            assert_eq!(decision.warnings.len(), warnings.len(), "{step}: {:?}", decision.warnings);
            for (got, want) in decision.warnings.iter().zip(&warnings) {
                assert!(got.contains(want), "{step}: {got:?} should say {want:?}");
            }
            let fresh = validating::review_configmap(
                &request,
                &state.target,
                &Environment {
                    velero_version: read(&state.velero_version),
                    priority_classes: state.priority_classes().as_deref(),
                },
            );
            assert_eq!(decision, fresh, "{step}: the reused verdict differs from a fresh check");
        }
    }
}
