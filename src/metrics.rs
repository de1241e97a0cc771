//! Prometheus metrics (OpenMetrics text). Every label has a small fixed set of values:
//! never a pod name, namespace or error text, so cardinality stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::config::velero_types::{self, Standing};
use crate::config::version::VeleroVersion;

/// Which webhook served a request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Webhook {
    Validate,
    Mutate,
}

impl Webhook {
    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Validate => "validate",
            Webhook::Mutate => "mutate",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub webhook: &'static str,
    pub operation: &'static str,
    pub allowed: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SettingLabels {
    pub setting: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// The served config's identity: one series at a time, so the label stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigLabels {
    pub config: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// The Velero version the server checks configs for: one series at a time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VeleroVersionLabels {
    /// `1.18.3`, or `unknown` (no version tag, no `--velero-version`).
    version: String,
    /// The newest release whose keys this build knows (`make velero-types`).
    known_up_to: String,
    /// Whether `version` is newer than `known_up_to`: its unknown keys are warnings.
    newer_than_known: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

/// Request latencies from 100 µs to 10 s: the webhook's own cost is sub-millisecond,
/// the API server's timeout is at most 30 s.
const DURATION_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The admission operations, in the order of [`AdmissionHandles`]' rows.
const OPERATIONS: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];

/// The request counter and histogram of every label combination, resolved once: looking a
/// label set up in a family hashes it and takes a lock, on every review.
#[derive(Clone)]
struct AdmissionHandles {
    /// `[webhook][operation][allowed]`.
    requests: [[[Counter; 2]; 4]; 2],
    /// `[webhook]`.
    duration: [Histogram; 2],
}

/// All metric families; cheap to clone (each family is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    admission: AdmissionHandles,
    pub settings_applied: Family<SettingLabels, Counter>,
    pub pods_skipped: Family<ReasonLabels, Counter>,
    pub patch_self_check_failures: Counter,
    pub affinity_conflicts: Counter,
    pub storage_class_lookups: Family<ResultLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    /// `[checked, reused]`, resolved once: the validating webhook counts every check a review
    /// needs (an UPDATE's old contents too).
    config_checks: [Counter; 2],
    pub config_generation: Gauge,
    /// Nodes the placement warnings know of (the Node watch's last snapshot).
    pub nodes: Gauge,
    config_info: Family<ConfigLabels, Gauge>,
    velero_version_info: Family<VeleroVersionLabels, Gauge>,
    pub config_last_success: Gauge<f64, AtomicU64>,
    pub certificate_reloads: Family<ResultLabels, Counter>,
    pub certificate_expiry: Gauge<f64, AtomicU64>,
    pub priority_class_missing: Counter,
    pub annotations_over_limit: Counter,
    pub configmap_name_mismatch: Family<KindLabels, Gauge>,
}

impl Metrics {
    /// Creates the families and registers them under the `node_agent_webhook` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let requests: Family<RequestLabels, Counter> = Family::default();
        let duration: Family<WebhookLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let webhooks = [Webhook::Validate, Webhook::Mutate];
        let admission = AdmissionHandles {
            requests: webhooks.map(|webhook| {
                OPERATIONS.map(|operation| {
                    [false, true].map(|allowed| {
                        requests.get_or_create(&RequestLabels { webhook: webhook.as_str(), operation, allowed }).clone()
                    })
                })
            }),
            duration: webhooks
                .map(|webhook| duration.get_or_create(&WebhookLabels { webhook: webhook.as_str() }).clone()),
        };
        let config_checks: Family<ResultLabels, Counter> = Family::default();
        let metrics = Self {
            admission,
            settings_applied: Family::default(),
            pods_skipped: Family::default(),
            patch_self_check_failures: Counter::default(),
            affinity_conflicts: Counter::default(),
            storage_class_lookups: Family::default(),
            config_reloads: Family::default(),
            config_checks: ["checked", "reused"]
                .map(|result| config_checks.get_or_create(&ResultLabels { result }).clone()),
            config_generation: Gauge::default(),
            nodes: Gauge::default(),
            config_info: Family::default(),
            velero_version_info: Family::default(),
            config_last_success: Gauge::default(),
            certificate_reloads: Family::default(),
            certificate_expiry: Gauge::default(),
            priority_class_missing: Counter::default(),
            annotations_over_limit: Counter::default(),
            configmap_name_mismatch: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("node_agent_webhook");
        r.register("admission_requests", "Admission reviews answered", requests);
        r.register(
            "admission_duration_seconds",
            "Time to answer an admission review, from body read to response",
            duration,
        );
        r.register("settings_applied", "Settings applied to data-mover pods", metrics.settings_applied.clone());
        r.register("pods_skipped", "Pods the mutating webhook left alone, by reason", metrics.pods_skipped.clone());
        r.register(
            "patch_self_check_failures",
            "Patches that did not apply to their own pod and were dropped (a bug: please report)",
            metrics.patch_self_check_failures.clone(),
        );
        r.register(
            "affinity_conflicts",
            "Pods whose existing node affinity contradicts loadAffinity and was left alone",
            metrics.affinity_conflicts.clone(),
        );
        r.register(
            "storage_class_lookups",
            "Storage class lookups for loadAffinity, by result",
            metrics.storage_class_lookups.clone(),
        );
        r.register(
            "priority_class_missing",
            "Pods left at their priority because the configured PriorityClass does not exist",
            metrics.priority_class_missing.clone(),
        );
        r.register(
            "annotations_over_limit",
            "Pods given no podAnnotations because the pod's annotations would exceed Kubernetes' 256 KiB",
            metrics.annotations_over_limit.clone(),
        );
        r.register(
            "configmap_name_mismatch",
            "1 when a ConfigMap name checked here differs from the one in Velero's args, by kind",
            metrics.configmap_name_mismatch.clone(),
        );
        r.register("config_reloads", "Loads of the node-agent config, by result", metrics.config_reloads.clone());
        r.register("nodes", "Nodes the placement warnings know of, from the Node watch", metrics.nodes.clone());
        r.register(
            "config_checks",
            "Checks of ConfigMap contents for the validating webhook: checked, or reused from the same contents in the same cluster state",
            config_checks,
        );
        r.register(
            "config_generation",
            "Configs this process has loaded since it started (per process: config_info names the config)",
            metrics.config_generation.clone(),
        );
        r.register(
            "config_info",
            "The config being served, by its identity (resourceVersion or file digest), the same on every replica",
            metrics.config_info.clone(),
        );
        r.register(
            "velero_version_info",
            "The Velero version configs are checked for, the newest release this build knows the keys of, and whether the version is newer",
            metrics.velero_version_info.clone(),
        );
        r.register(
            "config_last_success_timestamp_seconds",
            "When the config was last loaded successfully",
            metrics.config_last_success.clone(),
        );
        r.register(
            "certificate_reloads",
            "Loads of the serving certificate, by result",
            metrics.certificate_reloads.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate",
            metrics.certificate_expiry.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        r.register("build_info", "Build information", build);
        metrics
    }
}

/// What the mutating webhook did with one pod, for its metrics: gathered while the pod is
/// reviewed and written in one call, [`Metrics::record_pod`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodOutcome {
    /// Why the pod was left alone, when it was.
    pub skipped: Option<&'static str>,
    /// The storage-class lookup's result, when one was needed.
    pub storage_class_lookup: Option<&'static str>,
    pub affinity_conflict: bool,
    pub priority_class_missing: bool,
    pub annotations_over_limit: bool,
    /// The patch did not apply to its own pod and was dropped.
    pub self_check_failed: bool,
    pub settings_applied: Vec<&'static str>,
}

impl Metrics {
    /// Writes every metric about one pod.
    pub fn record_pod(&self, outcome: &PodOutcome) {
        if let Some(reason) = outcome.skipped {
            self.pods_skipped.get_or_create(&ReasonLabels { reason }).inc();
        }
        if let Some(result) = outcome.storage_class_lookup {
            self.storage_class_lookups.get_or_create(&ResultLabels { result }).inc();
        }
        if outcome.affinity_conflict {
            self.affinity_conflicts.inc();
        }
        if outcome.priority_class_missing {
            self.priority_class_missing.inc();
        }
        if outcome.annotations_over_limit {
            self.annotations_over_limit.inc();
        }
        if outcome.self_check_failed {
            self.patch_self_check_failures.inc();
        }
        for &setting in &outcome.settings_applied {
            self.settings_applied.get_or_create(&SettingLabels { setting }).inc();
        }
    }

    /// Makes `id` the one `config_info` series ("none" when no config is served).
    pub fn set_config_id(&self, id: &str) {
        self.config_info.clear();
        let config = if id.is_empty() { "none" } else { id };
        self.config_info.get_or_create(&ConfigLabels { config: config.to_string() }).set(1);
    }

    /// Makes `version` the one `velero_version_info` series.
    pub fn set_velero_version(&self, version: Option<VeleroVersion>) {
        self.velero_version_info.clear();
        let newest = velero_types::newest();
        let labels = VeleroVersionLabels {
            version: version.map_or_else(|| "unknown".to_string(), |v| v.to_string()),
            known_up_to: newest.to_string(),
            newer_than_known: version.is_some_and(|v| velero_types::standing(v) == Standing::Newer),
        };
        self.velero_version_info.get_or_create(&labels).set(1);
    }

    /// Counts one check of ConfigMap contents: made, or `reused` from the same contents.
    pub fn record_config_check(&self, reused: bool) {
        self.config_checks[usize::from(reused)].inc();
    }

    /// Counts one answered review and its duration.
    pub fn observe_admission(&self, webhook: Webhook, operation: &'static str, allowed: bool, seconds: f64) {
        let row = webhook as usize;
        let column = OPERATIONS.iter().position(|op| *op == operation).unwrap_or(0);
        if let Some(counter) =
            self.admission.requests.get(row).and_then(|r| r.get(column)).map(|c| &c[usize::from(allowed)])
        {
            counter.inc();
        }
        if let Some(histogram) = self.admission.duration.get(row) {
            histogram.observe(seconds);
        }
    }
}

/// Renders the registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
