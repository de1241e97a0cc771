//! Velero's repository maintenance job ConfigMap (`--repo-maintenance-job-configmap`): the
//! settings of the Jobs the Velero server starts to maintain each backup repository.
//!
//! Each data key is `global` or `<volumeNamespace>-<BSL>-<repositoryType>`, looked up exactly;
//! each value is unmarshalled into `JobConfigs` as Go's `encoding/json` does (case-insensitive
//! field names, unknown fields dropped), and Velero 1.17+ exits at start-up when one does not
//! decode. What is wrong surfaces late: a partial `podResources` means no Job is ever created,
//! a negative `keepLatestMaintenanceJobs` panics, a missing PriorityClass stalls maintenance.
//! The decoder, the selector, quantity, label and PriorityClass rules are node-agent's.

use std::collections::BTreeMap;

use super::configmap::{check_keyed, velero_server_on_missing_data, ConfigMapCheck, ConfigMapData, DataRules};
use super::decode::{closest, Decoded, Decoder};
use super::diagnostics::{Diagnostic, Diagnostics};
use super::json::{Node, Value};
use super::kind::Kind;
use super::model::{is_velero_key, LoadAffinity, PodResources};
use super::validate::{Environment, Validator};
use super::version::{reads, VeleroVersion};
use super::{check_parsed, Checked};
use crate::k8s::field::{self, go_quote, FieldError, Path};

/// The data key whose settings apply to every repository.
pub const GLOBAL_KEY: &str = "global";

/// Who reads the ConfigMap, as messages name it.
const READER: &str = "the Velero server";

/// The repository types a BackupRepository can have (its CRD's enum; `""` is allowed too).
const REPOSITORY_TYPES: [&str; 2] = ["kopia", "restic"];

/// `JobConfigs` (`pkg/types/repo_maintenance.go`): one data value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobConfig {
    /// `None` when absent or null, as Go's nil slice; `Some([])` for an explicit `[]`.
    pub load_affinity: Option<Vec<LoadAffinity>>,
    pub pod_resources: Option<PodResources>,
    pub keep_latest_maintenance_jobs: Option<i64>,
    /// Empty when unset.
    pub priority_class_name: String,
    pub pod_annotations: BTreeMap<String, String>,
    pub pod_labels: BTreeMap<String, String>,
}

impl JobConfig {
    const FIELDS: [&'static str; 6] = [
        "loadAffinity",
        "podResources",
        "keepLatestMaintenanceJobs",
        "priorityClassName",
        "podAnnotations",
        "podLabels",
    ];

    fn affinity(&self) -> &[LoadAffinity] {
        self.load_affinity.as_deref().unwrap_or_default()
    }
}

/// Which repositories a data key's value applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `global`: every repository, field by field under a repository's own key.
    Global,
    /// `<volumeNamespace>-<BSL>-<repositoryType>`: one repository.
    Repository,
    /// A key Velero never looks up.
    Unused,
}

/// What Velero makes of a data key: it looks up `global` and the repository's own key only.
pub fn scope_of(key: &str) -> Scope {
    if key == GLOBAL_KEY {
        return Scope::Global;
    }
    match key.rsplit_once('-') {
        Some((prefix, kind)) if (kind.is_empty() || REPOSITORY_TYPES.contains(&kind)) && has_two_names(prefix) => {
            Scope::Repository
        }
        _ => Scope::Unused,
    }
}

/// `<volumeNamespace>-<BSL>`: two non-empty names joined by a dash (either may hold dashes).
fn has_two_names(prefix: &str) -> bool {
    prefix.split_once('-').is_some_and(|(first, rest)| !first.is_empty() && !rest.is_empty() && !rest.ends_with('-'))
}

const DATA: DataRules = DataRules {
    kind: Kind::RepoMaintenance,
    reader: READER,
    one_key: false,
    must_hold: "must hold \"global\" or <volumeNamespace>-<BSL>-<repositoryType> keys with JSON job configs",
    on_missing_data: velero_server_on_missing_data,
    before_first_release: ": it sizes maintenance Jobs from the server's --maintenance-job-* flags",
};

/// Checks a whole repository maintenance job ConfigMap: its data keys, each value, and what a
/// repository's key cannot do beside `global` (Velero merges the two field by field).
pub fn check_repo_maintenance(configmap: &ConfigMapData, env: &Environment) -> ConfigMapCheck<JobConfig> {
    let global = configmap.data.get(GLOBAL_KEY).map(|text| check_value(text, env));
    check_keyed(configmap, env, &DATA, key_finding, |key, text| match (scope_of(key), &global) {
        (Scope::Global, Some(global)) => global.clone(),
        (Scope::Repository, Some(global)) => check_in_context(text, env, Some(&global.config)),
        _ => check_value(text, env),
    })
}

/// A data key Velero never reads: a case or spelling slip of `global` or of a repository
/// type is an error, anything else a warning. Reported with no path or position, so it is
/// placed at the key.
fn key_finding(key: &str) -> Option<Diagnostic> {
    let unread = "Velero looks data keys up exactly and never reads this value";
    let suggestion = match scope_of(key) {
        Scope::Global | Scope::Repository => return None,
        Scope::Unused if closest(key, &[GLOBAL_KEY]).is_some() => Some(GLOBAL_KEY.to_string()),
        Scope::Unused => key.rsplit_once('-').and_then(|(prefix, kind)| {
            let fixed = REPOSITORY_TYPES.iter().find(|t| t.eq_ignore_ascii_case(kind) || closest(kind, &[t]).is_some());
            fixed.map(|t| format!("{prefix}-{t}")).filter(|k| scope_of(k) == Scope::Repository)
        }),
    };
    Some(match suggestion {
        Some(fixed) => Diagnostic::error(
            "",
            format!("Invalid value: {}: did you mean {}? {unread}", go_quote(key), go_quote(&fixed)),
            None,
        ),
        None => Diagnostic::warning(
            "",
            format!(
                "{unread}: keys are \"global\" or <volumeNamespace>-<BSL>-<repositoryType>, e.g. \"app-default-kopia\""
            ),
            None,
        ),
    })
}

/// Checks one value on its own (a bare value, or a key with no `global` beside it).
pub fn check_value(text: &str, env: &Environment) -> Checked<JobConfig> {
    check_in_context(text, env, None)
}

/// Checks one value; `global` is the `global` key's config when this is a repository's key.
fn check_in_context(text: &str, env: &Environment, global: Option<&JobConfig>) -> Checked<JobConfig> {
    check_parsed(text, READER, &format!("{READER} fails to start"), |root| {
        let mut wrappers = Diagnostics::default();
        let root = without_wrappers(root, &mut wrappers);
        let mut decoder = Decoder::new(Kind::RepoMaintenance, READER, env.velero_version);
        let config = decoder.top_level(&root, job_config);
        let mut decoded = decoder.finish(config);
        add_rule_findings(&mut decoded, env, global);
        decoded.diagnostics.0.extend(wrappers.0);
        (decoded.config, decoded.diagnostics)
    })
}

/// Velero's docs show the ConfigMap's data as `{"global": {...}}`; written inside a value, the
/// wrapper is an unknown field, so nothing in it applies. Such members are reported and left
/// out of the decoding, which would only call them unknown.
fn without_wrappers<'a>(root: &Node<'a>, found: &mut Diagnostics) -> Node<'a> {
    let Value::Object(members) = &root.value else { return root.clone() };
    let is_wrapper = |key: &str| {
        let key = key.to_ascii_lowercase();
        !JobConfig::FIELDS.iter().any(|f| f.eq_ignore_ascii_case(&key)) && scope_of(&key) != Scope::Unused
    };
    let (wrapped, kept): (Vec<_>, Vec<_>) =
        members.iter().cloned().partition(|m| matches!(m.value.value, Value::Object(_)) && is_wrapper(&m.key));
    for member in &wrapped {
        found.push(Diagnostic::error(
            field::child("", &member.key),
            format!(
                "Forbidden: the settings are wrapped in {}: Velero reads this value itself as the job config, so it ignores everything under this key; the data key already says which repositories it is for: make {} the data key and this object its value",
                go_quote(&member.key),
                go_quote(&member.key)
            ),
            Some(member.key_pos),
        ));
    }
    Node { pos: root.pos, value: Value::Object(kept) }
}

fn job_config(decoder: &mut Decoder, node: &Node) -> JobConfig {
    let Some([affinity, resources, keep, priority, annotations, labels]) =
        decoder.object(node, &Path::ROOT, JobConfig::FIELDS)
    else {
        return JobConfig::default();
    };
    JobConfig {
        load_affinity: affinity.map(|n| decoder.load_affinity(Some(n), &Path::Text("loadAffinity"))),
        pod_resources: resources.map(|n| decoder.pod_resources(n, &Path::Text("podResources"))),
        keep_latest_maintenance_jobs: keep
            .map(|n| decoder.int(Some(n), &Path::Text("keepLatestMaintenanceJobs"), "an integer")),
        priority_class_name: decoder.string(priority, &Path::Text("priorityClassName")),
        pod_annotations: decoder.string_map(annotations, &Path::Text("podAnnotations")),
        pod_labels: decoder.string_map(labels, &Path::Text("podLabels")),
    }
}

type Rules<'d> = Validator<'d, JobConfig>;

fn add_rule_findings(decoded: &mut Decoded<JobConfig>, env: &Environment, global: Option<&JobConfig>) {
    let shared: &Decoded<JobConfig> = decoded;
    let config = &shared.config;
    let mut v = Validator { decoded: shared, found: Diagnostics::default() };
    v.pod_resources(
        config.pod_resources.as_ref(),
        "Velero creates no maintenance Job for the repositories this key applies to unless cpuRequest, cpuLimit, memoryRequest and memoryLimit are all given, and fails again every 5 minutes",
    );
    load_affinity(&mut v, config, env.velero_version);
    keep_latest(&mut v, config);
    v.priority_class(
        &config.priority_class_name,
        env,
        "Velero sets it anyway, the Job gets no pod, and Velero waits on it with no deadline, stalling maintenance of every repository",
    );
    pod_metadata(&mut v, config, env.velero_version);
    if let Some(global) = global {
        merge_with_global(&mut v, config, global);
    }
    let found = v.found;
    decoded.diagnostics.0.extend(found.0);
}

fn load_affinity(v: &mut Rules, config: &JobConfig, version: Option<VeleroVersion>) {
    let first_only = version.is_none_or(|version| version >= VeleroVersion::new(1, 18, 0));
    for (i, entry) in config.affinity().iter().enumerate() {
        let path = field::index("loadAffinity", i);
        let selector_path = field::child(&path, "nodeSelector");
        if entry.node_selector.is_empty() {
            v.error(FieldError::required(
                &selector_path,
                "must have matchLabels or matchExpressions: Velero 1.18.1 gives the maintenance pod no affinity for an empty selector, 1.18.0 and earlier a term that matches no node",
            ));
        }
        v.node_affinity_selector(&entry.node_selector, &selector_path);
        if !entry.storage_class.is_empty() {
            v.warn(
                &field::child(&path, "storageClass"),
                "maintenance Jobs ignore storageClass (it picks the entry for node-agent's data-mover pods only)",
            );
        }
        if i > 0 && first_only {
            v.warn(
                &path,
                "Velero 1.18+ applies only loadAffinity[0] to maintenance Jobs and ignores this entry (1.17 and earlier OR the entries); merge it into loadAffinity[0]",
            );
        }
    }
}

fn keep_latest(v: &mut Rules, config: &JobConfig) {
    let path = "keepLatestMaintenanceJobs";
    match config.keep_latest_maintenance_jobs {
        Some(keep) if keep < 0 => v.error(FieldError::invalid_raw(
            path,
            keep.to_string(),
            "must be greater than or equal to 0: Velero deletes every maintenance Job and then panics, on every reconcile",
        )),
        Some(0) => v.warn(
            path,
            "0 makes Velero delete every maintenance Job after each reconcile, the one just finished included (the BackupRepository's status keeps the history); the default is 3",
        ),
        _ => {}
    }
}

/// Labels the Job controller and Velero rely on, refused in `podLabels`: a maintenance pod is
/// found by `job-name`, its repository by `velero.io/repo-name`.
fn reserved_label(key: &str) -> Option<&'static str> {
    if is_velero_key(key) {
        Some("keys under velero.io/ are Velero's own: velero.io/repo-name on the maintenance pod names its repository")
    } else if key == "job-name" || key == "controller-uid" || key.starts_with("batch.kubernetes.io/") {
        Some("the Job controller sets this label on the Job's pods and Velero finds a maintenance Job's pod by job-name: do not set it")
    } else {
        None
    }
}

/// Set by Velero's Deployment on maintenance pods only while podLabels/podAnnotations are empty.
const THIRD_PARTY: [(&str, &str, &str); 2] = [
    ("podLabels", "azure.workload.identity/use", "label (Azure workload identity)"),
    ("podAnnotations", "iam.amazonaws.com/role", "annotation (kube2iam)"),
];

fn pod_metadata(v: &mut Rules, config: &JobConfig, version: Option<VeleroVersion>) {
    for (key, value) in &config.pod_labels {
        let entry = field::key("podLabels", key);
        v.label_entry(&entry, key, value);
        if let Some(why) = reserved_label(key) {
            v.error(FieldError::forbidden(entry, why));
        }
    }
    v.annotations(&config.pod_annotations, "podAnnotations");
    // Releases that do not read podLabels copy the Deployment's keys whatever the config says.
    if !reads(Kind::RepoMaintenance, version, "podLabels") {
        return;
    }
    for (path, key, what) in THIRD_PARTY {
        let map = if path == "podLabels" { &config.pod_labels } else { &config.pod_annotations };
        if !map.is_empty() && !map.contains_key(key) {
            v.warn(
                path,
                format!("with {path} set, Velero no longer copies the {key} {what} from its Deployment to maintenance pods: add it here if they need it"),
            );
        }
    }
}

/// A repository's key beside `global`: what it cannot override or clear (Velero's merge is per
/// field, and for some fields global wins).
fn merge_with_global(v: &mut Rules, config: &JobConfig, global: &JobConfig) {
    if config.load_affinity.as_ref().is_some_and(Vec::is_empty) && !global.affinity().is_empty() {
        v.warn(
            "loadAffinity",
            "an empty list cannot clear global's loadAffinity: Velero uses global's for this repository (only a non-empty list overrides it)",
        );
    }
    if !config.priority_class_name.is_empty()
        && !global.priority_class_name.is_empty()
        && config.priority_class_name != global.priority_class_name
    {
        v.warn(
            "priorityClassName",
            format!(
                "global's priorityClassName {} wins: Velero uses a repository's own only when global sets none",
                go_quote(&global.priority_class_name)
            ),
        );
    }
    for (path, own, global) in [
        ("podLabels", &config.pod_labels, &global.pod_labels),
        ("podAnnotations", &config.pod_annotations, &global.pod_annotations),
    ] {
        if !own.is_empty() && !global.is_empty() && own != global {
            v.warn(
                path,
                format!("global's {path} win: Velero uses a repository's own only when global sets none (they are not merged)"),
            );
        }
    }
    if let (Some(own), Some(global)) = (&config.pod_resources, &global.pod_resources) {
        let lost: Vec<&str> = own
            .pairs()
            .iter()
            .zip(global.pairs())
            .flat_map(|(own, global)| {
                [(own.request, global.request_key, global.request), (own.limit, global.limit_key, global.limit)]
            })
            .filter(|(own, _, global)| own.is_empty() && !global.is_empty())
            .map(|(_, key, _)| key)
            .collect();
        if !lost.is_empty() {
            v.warn(
                "podResources",
                format!(
                    "replaces global's podResources as a whole (no per-field merge): global's {} does not apply to this repository",
                    lost.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
