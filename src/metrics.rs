//! Prometheus metrics (OpenMetrics text). Every label has a small fixed set of values, each an
//! enum here or in the core: never a pod name, namespace or error text, so cardinality stays
//! bounded. Each family is written by one `record_*`/`set_*` method; the request path's
//! counters are resolved once, at start-up (looking a label set up in a family hashes it and
//! takes a lock).

use std::fmt::Write;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admission::Operation;
use crate::config::kind::Kind;
use crate::config::velero_types::{self, Standing};
use crate::config::version::VeleroVersion;
use crate::mutate::plan::Setting;
use crate::mutating::{LookupFailure, PodOutcome, Skipped, StorageClassLookup};
use crate::validating::Checks;

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

/// How a load of the config or of the serving certificate went.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum LoadResult {
    Success,
    Error,
    /// No config to load (no ConfigMap, no file): no settings.
    Missing,
}

/// Whether a config check was made for a review or reused from the same contents.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum CheckResult {
    Checked,
    Reused,
}

/// `EncodeLabelValue` for the label enums here and in the core: each value's one text, as the
/// metric's series say it.
macro_rules! label_values {
    ($($type:ty => |$value:ident| $text:expr;)+) => {$(
        impl EncodeLabelValue for $type {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
                let $value = *self;
                encoder.write_str($text)
            }
        }
    )+};
}

label_values! {
    Webhook => |webhook| webhook.as_str();
    Operation => |operation| operation.as_str();
    Setting => |setting| setting.as_str();
    Kind => |kind| kind.id();
    LoadResult => |result| match result {
        LoadResult::Success => "success",
        LoadResult::Error => "error",
        LoadResult::Missing => "missing",
    };
    CheckResult => |result| match result {
        CheckResult::Checked => "checked",
        CheckResult::Reused => "reused",
    };
    Skipped => |skipped| match skipped {
        Skipped::NotADataMover(reason) => reason.as_str(),
        Skipped::NothingToChange => "nothing_to_change",
    };
    StorageClassLookup => |lookup| match lookup {
        StorageClassLookup::Success => "success",
        StorageClassLookup::NoCluster => "no_cluster",
        StorageClassLookup::Failed(LookupFailure::Timeout) => "timeout",
        StorageClassLookup::Failed(LookupFailure::NotFound) => "not_found",
        StorageClassLookup::Failed(LookupFailure::Forbidden) => "forbidden",
        StorageClassLookup::Failed(LookupFailure::Other) => "other",
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    webhook: Webhook,
    operation: Operation,
    allowed: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: Webhook,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SettingLabels {
    setting: Setting,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: Skipped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: StorageClassLookup,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadLabels {
    result: LoadResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    result: CheckResult,
}

/// The served config's identity: one series at a time, so the label stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigLabels {
    config: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: Kind,
}

/// The Velero version the server checks configs for: one series at a time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VeleroVersionLabels {
    /// `1.18.3`, or `unknown` (no version tag, no `--velero-version`).
    version: String,
    /// The newest release whose keys this build knows (`make velero-types`).
    known_up_to: String,
    /// Whether `version` is newer than `known_up_to`: its unknown keys are warnings.
    newer_than_known: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Request latencies from 100 µs to 10 s: the webhook's own cost is sub-millisecond,
/// the API server's timeout is at most 30 s.
const DURATION_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// One handle per label set of a family, resolved once, found again by a `match`.
#[derive(Clone)]
struct ByWebhook<T> {
    validate: T,
    mutate: T,
}

impl<T> ByWebhook<T> {
    fn new(mut make: impl FnMut(Webhook) -> T) -> Self {
        Self { validate: make(Webhook::Validate), mutate: make(Webhook::Mutate) }
    }

    fn get(&self, webhook: Webhook) -> &T {
        match webhook {
            Webhook::Validate => &self.validate,
            Webhook::Mutate => &self.mutate,
        }
    }
}

#[derive(Clone)]
struct ByOperation<T> {
    create: T,
    update: T,
    delete: T,
    connect: T,
}

impl<T> ByOperation<T> {
    fn new(mut make: impl FnMut(Operation) -> T) -> Self {
        Self {
            create: make(Operation::Create),
            update: make(Operation::Update),
            delete: make(Operation::Delete),
            connect: make(Operation::Connect),
        }
    }

    fn get(&self, operation: Operation) -> &T {
        match operation {
            Operation::Create => &self.create,
            Operation::Update => &self.update,
            Operation::Delete => &self.delete,
            Operation::Connect => &self.connect,
        }
    }
}

/// The request counter of every label set (`[allowed]` last) and each webhook's histogram.
#[derive(Clone)]
struct AdmissionHandles {
    requests: ByWebhook<ByOperation<[Counter; 2]>>,
    duration: ByWebhook<Histogram>,
}

/// All metric families; cheap to clone (each family is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    admission: AdmissionHandles,
    settings_applied: Family<SettingLabels, Counter>,
    pods_skipped: Family<ReasonLabels, Counter>,
    patch_self_check_failures: Counter,
    affinity_conflicts: Counter,
    storage_class_lookups: Family<LookupLabels, Counter>,
    config_reloads: Family<LoadLabels, Counter>,
    /// Checked, then reused: the validating webhook counts every check a review needs (an
    /// UPDATE's old contents too).
    config_checks: [Counter; 2],
    config_generation: Gauge,
    /// Nodes the placement warnings know of (the Node watch's last snapshot).
    nodes: Gauge,
    config_info: Family<ConfigLabels, Gauge>,
    velero_version_info: Family<VeleroVersionLabels, Gauge>,
    config_last_success: Gauge<f64, AtomicU64>,
    certificate_reloads: Family<LoadLabels, Counter>,
    certificate_expiry: Gauge<f64, AtomicU64>,
    priority_class_missing: Counter,
    annotations_over_limit: Counter,
    configmap_name_mismatch: Family<KindLabels, Gauge>,
}

impl Metrics {
    /// Creates the families and registers them under the `node_agent_webhook` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let requests: Family<RequestLabels, Counter> = Family::default();
        let duration: Family<WebhookLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let admission = AdmissionHandles {
            requests: ByWebhook::new(|webhook| {
                ByOperation::new(|operation| {
                    [false, true]
                        .map(|allowed| requests.get_or_create(&RequestLabels { webhook, operation, allowed }).clone())
                })
            }),
            duration: ByWebhook::new(|webhook| duration.get_or_create(&WebhookLabels { webhook }).clone()),
        };
        let config_checks: Family<CheckLabels, Counter> = Family::default();
        let metrics = Self {
            admission,
            settings_applied: Family::default(),
            pods_skipped: Family::default(),
            patch_self_check_failures: Counter::default(),
            affinity_conflicts: Counter::default(),
            storage_class_lookups: Family::default(),
            config_reloads: Family::default(),
            config_checks: [CheckResult::Checked, CheckResult::Reused]
                .map(|result| config_checks.get_or_create(&CheckLabels { result }).clone()),
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

    /// Counts one answered review and its duration.
    pub fn record_admission(&self, webhook: Webhook, operation: Operation, allowed: bool, seconds: f64) {
        let [denied, admitted] = self.admission.requests.get(webhook).get(operation);
        if allowed { admitted } else { denied }.inc();
        self.admission.duration.get(webhook).observe(seconds);
    }

    /// Writes every metric about one pod.
    pub fn record_pod(&self, outcome: &PodOutcome) {
        if let Some(reason) = outcome.skipped {
            self.pods_skipped.get_or_create(&ReasonLabels { reason }).inc();
        }
        if let Some(result) = outcome.storage_class_lookup {
            self.storage_class_lookups.get_or_create(&LookupLabels { result }).inc();
        }
        let counted = [
            (outcome.notes.affinity_conflict, &self.affinity_conflicts),
            (outcome.notes.priority_class_missing, &self.priority_class_missing),
            (outcome.notes.annotations_over_limit, &self.annotations_over_limit),
            (outcome.self_check_failed, &self.patch_self_check_failures),
        ];
        for (happened, counter) in counted {
            if happened {
                counter.inc();
            }
        }
        for &setting in &outcome.applied {
            self.settings_applied.get_or_create(&SettingLabels { setting }).inc();
        }
    }

    /// Counts the config checks of one review: made, or reused from the same contents.
    pub fn record_config_checks(&self, checks: Checks) {
        let [checked, reused] = &self.config_checks;
        checked.inc_by(u64::from(checks.checked));
        reused.inc_by(u64::from(checks.reused));
    }

    /// Counts one load of the node-agent config; a success also sets its timestamp.
    pub fn record_config_reload(&self, result: LoadResult) {
        self.config_reloads.get_or_create(&LoadLabels { result }).inc();
        if result == LoadResult::Success {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            self.config_last_success.set(now.map(|d| d.as_secs_f64()).unwrap_or_default());
        }
    }

    /// Counts one load of the serving certificate; a success also sets its expiry.
    pub fn record_certificate_reload(&self, result: LoadResult, not_after: Option<i64>) {
        self.certificate_reloads.get_or_create(&LoadLabels { result }).inc();
        if let Some(not_after) = not_after {
            self.certificate_expiry.set(not_after as f64);
        }
    }

    /// Whether the name of `kind`'s ConfigMap checked here differs from the one in Velero's args.
    pub fn set_configmap_name_mismatch(&self, kind: Kind, mismatch: bool) {
        self.configmap_name_mismatch.get_or_create(&KindLabels { kind }).set(i64::from(mismatch));
    }

    /// How many Nodes the placement warnings know of.
    pub fn set_nodes(&self, count: usize) {
        self.nodes.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The served config: its generation, and `id` as the one `config_info` series ("none"
    /// when no config is served).
    pub fn set_config(&self, generation: u64, id: &str) {
        self.config_generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
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
}

/// Renders the registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::identity::SkipReason;

    /// Every label value of every family as its series says it, and each request's counter
    /// found again under its own labels.
    #[test]
    fn label_values_are_the_series_texts() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        for (operation, allowed) in [(Operation::Create, true), (Operation::Update, false), (Operation::Connect, true)]
        {
            metrics.record_admission(Webhook::Mutate, operation, allowed, 0.001);
        }
        metrics.record_pod(&PodOutcome {
            skipped: Some(Skipped::NotADataMover(SkipReason::OtherUser)),
            storage_class_lookup: Some(StorageClassLookup::Failed(LookupFailure::NotFound)),
            applied: vec![Setting::PodLabels],
            ..PodOutcome::default()
        });
        metrics.record_pod(&PodOutcome { skipped: Some(Skipped::NothingToChange), ..PodOutcome::default() });
        metrics.record_config_checks(Checks { checked: 2, reused: 1 });
        metrics.record_config_reload(LoadResult::Missing);
        metrics.set_configmap_name_mismatch(Kind::RepoMaintenance, true);
        let text = render(&registry);
        for line in [
            r#"node_agent_webhook_admission_requests_total{webhook="mutate",operation="CREATE",allowed="true"} 1"#,
            r#"node_agent_webhook_admission_requests_total{webhook="mutate",operation="UPDATE",allowed="false"} 1"#,
            r#"node_agent_webhook_admission_requests_total{webhook="mutate",operation="CONNECT",allowed="true"} 1"#,
            r#"node_agent_webhook_admission_requests_total{webhook="validate",operation="CREATE",allowed="true"} 0"#,
            r#"node_agent_webhook_pods_skipped_total{reason="other_user"} 1"#,
            r#"node_agent_webhook_pods_skipped_total{reason="nothing_to_change"} 1"#,
            r#"node_agent_webhook_storage_class_lookups_total{result="not_found"} 1"#,
            r#"node_agent_webhook_settings_applied_total{setting="podLabels"} 1"#,
            r#"node_agent_webhook_config_checks_total{result="checked"} 2"#,
            r#"node_agent_webhook_config_checks_total{result="reused"} 1"#,
            r#"node_agent_webhook_config_reloads_total{result="missing"} 1"#,
            r#"node_agent_webhook_configmap_name_mismatch{kind="repo-maintenance"} 1"#,
            r#"node_agent_webhook_admission_duration_seconds_count{webhook="mutate"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
