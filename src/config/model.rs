//! The node-agent ConfigMap as Velero's Go types hold it (`pkg/types/node_agent.go`).
//!
//! Field values keep Go's zero-value conventions (an empty string is "unset") so that
//! comparisons with what node-agent does stay one-to-one.

use std::collections::BTreeMap;

pub use crate::k8s::toleration::Toleration;

/// Annotation on every pod the mutating webhook patched, saying what was applied from which
/// config generation. The config checker refuses it in `podAnnotations`: the two would fight.
pub const APPLIED_ANNOTATION: &str = "node-agent-webhook.io/applied";

/// The most bytes [`APPLIED_ANNOTATION`] takes on a pod, key and value: every setting named,
/// and the longest config identity, a resourceVersion (etcd's: a 64-bit decimal). The
/// checker warns when `podAnnotations` leave less room than this.
pub const APPLIED_ANNOTATION_MAX_BYTES: usize = APPLIED_ANNOTATION.len()
    + "loadAffinity,podResources,priorityClassName,podLabels,tolerations,podAnnotations (config resourceVersion:18446744073709551615)"
        .len();

/// Velero tracks its pods by `velero.io/` labels; `x.velero.io/` is someone else's. The
/// planner never writes such keys, labels or annotations, and the checker refuses them in
/// `podLabels` and `podAnnotations`, so what is admitted is what is applied.
pub fn is_velero_key(key: &str) -> bool {
    key.split_once('/').is_some_and(|(prefix, _)| prefix == "velero.io")
}

/// `NodeAgentConfigs`: everything node-agent reads from its ConfigMap at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAgentConfig {
    pub load_concurrency: Option<LoadConcurrency>,
    pub load_affinity: Vec<LoadAffinity>,
    pub backup_pvc: BTreeMap<String, BackupPvc>,
    pub restore_pvc: Option<RestorePvc>,
    /// Empty when unset.
    pub priority_class_name: String,
    pub pod_resources: Option<PodResources>,
    pub privileged_fs_backup: bool,
    pub cache_pvc: Option<CachePvc>,
    pub pod_labels: BTreeMap<String, String>,
    pub pod_annotations: BTreeMap<String, String>,
    /// `tolerations` for data-mover pods: a key of this webhook, which it applies itself on
    /// every version (`config::version::WEBHOOK_ONLY`).
    pub tolerations: Vec<Toleration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadConcurrency {
    pub global_config: i64,
    pub per_node_config: Vec<RuledConfig>,
    pub prepare_queue_length: i64,
}

/// One `perNodeConfig` rule: nodes matching the selector run `number` loads at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuledConfig {
    pub node_selector: LabelSelector,
    pub number: i64,
}

/// `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<SelectorRequirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

/// One `matchExpressions` entry; the operator is kept verbatim so typos can be reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// One `loadAffinity` entry; an empty `storage_class` makes it the global entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadAffinity {
    pub node_selector: LabelSelector,
    pub storage_class: String,
}

/// `backupPVC.<source storage class>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupPvc {
    pub storage_class: String,
    pub read_only: bool,
    pub spc_no_relabeling: bool,
    pub annotations: BTreeMap<String, String>,
    pub copied: CopiedObjects,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePvc {
    pub ignore_delay_binding: bool,
    pub copied: CopiedObjects,
}

/// `secretNames` and `configMapNames` (1.18.3+): Secrets and ConfigMaps node-agent copies from
/// the PVC's namespace into Velero's before it creates the intermediate PVC, for CSI drivers
/// that read namespaced objects when they provision it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopiedObjects {
    pub secret_names: Vec<String>,
    pub config_map_names: Vec<String>,
}

/// `podResources`: quantities as written; an empty string is an absent key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodResources {
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub ephemeral_storage_request: String,
    pub ephemeral_storage_limit: String,
}

/// One resource of `podResources`: its Kubernetes name, and its request and limit with the
/// config keys that hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourcePair<'a> {
    pub resource: &'static str,
    pub request_key: &'static str,
    pub request: &'a str,
    pub limit_key: &'static str,
    pub limit: &'a str,
}

impl PodResources {
    /// The keys of `podResources`, in Velero's field order.
    pub const KEYS: [&'static str; 6] =
        ["cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit", "ephemeralStorageRequest", "ephemeralStorageLimit"];

    /// cpu, memory and ephemeral-storage, each with its request and limit: the one list the
    /// decoder, the checker and the planner all read.
    pub fn pairs(&self) -> [ResourcePair<'_>; 3] {
        let [cpu_request, cpu_limit, memory_request, memory_limit, storage_request, storage_limit] = Self::KEYS;
        [
            ResourcePair {
                resource: "cpu",
                request_key: cpu_request,
                request: &self.cpu_request,
                limit_key: cpu_limit,
                limit: &self.cpu_limit,
            },
            ResourcePair {
                resource: "memory",
                request_key: memory_request,
                request: &self.memory_request,
                limit_key: memory_limit,
                limit: &self.memory_limit,
            },
            ResourcePair {
                resource: "ephemeral-storage",
                request_key: storage_request,
                request: &self.ephemeral_storage_request,
                limit_key: storage_limit,
                limit: &self.ephemeral_storage_limit,
            },
        ]
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachePvc {
    pub storage_class: String,
    pub resident_threshold_in_mb: i64,
}
