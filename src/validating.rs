//! The validating webhook's decision for a ConfigMap review (pure: review in, decision out).
//! Velero reads three ConfigMaps in its namespace; the name tells which kind a review is for.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::admission::{Decision, Operation, Request};
use crate::config::by_kind;
use crate::config::configmap::check_configmap;
use crate::config::diagnostics::Severity;
use crate::config::kind::{Kind, Names};
use crate::config::model::NodeAgentConfig;
use crate::config::third_party::{dropped_template_keys, TemplateKeys};
use crate::config::validate::Environment;
use crate::mutate::undone::undone;

/// Which ConfigMaps are Velero's: only those are checked, each as its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub names: Names,
}

impl Target {
    /// The kind of ConfigMap `namespace/name`, if it is one of Velero's.
    pub fn kind_of(&self, namespace: &str, name: &str) -> Option<Kind> {
        (self.namespace == namespace).then(|| self.names.kind_of(name)).flatten()
    }
}

/// Decides a ConfigMap review: deny a target ConfigMap whose config has errors, warn otherwise.
pub fn review_configmap(request: &Request, target: &Target, env: &Environment) -> Decision {
    match triage(request, target) {
        Review::Decided(decision) => decision,
        Review::NeedsCheck(inputs) => checked_decision(target, env, &inputs, None, &|kind, contents| {
            Arc::new(check_contents(kind, contents, env))
        }),
    }
}

/// A ConfigMap review before the config check: most are decided at once; the others carry
/// everything the check's verdict depends on besides the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    Decided(Decision),
    NeedsCheck(CheckInputs),
}

/// The new `data` and `binaryData` keys and, for an UPDATE, the old ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckInputs {
    kind: Kind,
    name: String,
    new: Contents,
    old: Option<Contents>,
}

/// The first half of `review_configmap`: everything but the config check.
pub fn triage(request: &Request, target: &Target) -> Review {
    let kind = match target.kind_of(&request.namespace, &request.name) {
        Some(kind) if request.kind.kind == "ConfigMap" => kind,
        _ => return Review::Decided(Decision::allow()),
    };
    match request.operation {
        Operation::Delete => {
            Review::Decided(Decision::allow_with_warnings(vec![kind.delete_warning(&request.namespace, &request.name)]))
        }
        Operation::Connect => Review::Decided(Decision::allow()),
        Operation::Create | Operation::Update => {
            let Some(object) = &request.object else {
                return Review::Decided(Decision::deny_invalid("request.object is missing".to_string(), Vec::new()));
            };
            let new = match configmap_contents(object) {
                Ok(contents) => contents,
                Err(message) => return Review::Decided(Decision::deny_invalid(message, Vec::new())),
            };
            let old = match (request.operation, &request.old_object) {
                (Operation::Update, Some(old)) => configmap_contents(old).ok(),
                _ => None,
            };
            Review::NeedsCheck(CheckInputs { kind, name: request.name.clone(), new, old })
        }
    }
}

/// A ConfigMap's `data`, and the keys of its `binaryData`.
pub type Contents = (BTreeMap<String, String>, Vec<String>);

/// The check of one ConfigMap's contents: the expensive part of a review. It depends on the
/// kind, the contents and the environment only, so a server may keep it for contents that come
/// back: `kubectl apply --dry-run=server` then `apply`, GitOps re-syncs, each retry the API
/// server makes of a write after a conflict, and an UPDATE's old contents (the last write's new).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentsCheck {
    /// Every finding as `(severity, "data[key]: ...")`, errors first.
    findings: Vec<(Severity, String)>,
    /// node-agent's config as its first data key decodes, errors or not (an UPDATE's restart
    /// warning compares the old one even so); `None` for the other kinds.
    node_agent_config: Option<NodeAgentConfig>,
}

impl ContentsCheck {
    fn has_errors(&self) -> bool {
        self.findings.iter().any(|(severity, _)| *severity == Severity::Error)
    }

    /// The config node-agent would run with: without errors, a node-agent ConfigMap has
    /// exactly one data key.
    fn valid_config(&self) -> Option<&NodeAgentConfig> {
        self.node_agent_config.as_ref().filter(|_| !self.has_errors())
    }
}

/// Checks one ConfigMap's contents as `kind`.
pub fn check_contents(kind: Kind, (data, binary_keys): &Contents, env: &Environment) -> ContentsCheck {
    match kind {
        Kind::NodeAgent => {
            let typed = check_configmap(data, binary_keys, env);
            let node_agent_config = typed.values.first().map(|(_, checked)| checked.config.clone());
            ContentsCheck { findings: typed.findings().rendered(), node_agent_config }
        }
        other => ContentsCheck {
            findings: by_kind::check_configmap(other, data, binary_keys, env).rendered(),
            node_agent_config: None,
        },
    }
}

/// The second half of `review_configmap`: the verdict, from `check` of the new contents and,
/// when an UPDATE's warnings need it, of the old ones (a server hands in its kept checks;
/// [`check_contents`] in `env` otherwise). `template` holds the in-tree third-party keys of
/// node-agent's DaemonSet pod template, when the cluster told them: a config that supersedes
/// one gets a warning.
pub fn checked_decision(
    target: &Target,
    env: &Environment,
    inputs: &CheckInputs,
    template: Option<&TemplateKeys>,
    check: &dyn Fn(Kind, &Contents) -> Arc<ContentsCheck>,
) -> Decision {
    let CheckInputs { kind, name, new, old } = inputs;
    let old = old.as_ref();
    let new_check = check(*kind, new);
    let findings = &new_check.findings;
    let unchanged = old.is_some_and(|old| old == new);
    if unchanged {
        // A metadata-only update (labels, GitOps annotations) must never be blocked by an older mistake.
        let warnings = findings
            .iter()
            .map(|(severity, text)| match severity {
                Severity::Error => format!("existing error (data unchanged, so admitted): {text}"),
                Severity::Warning => text.clone(),
            })
            .collect();
        return Decision::allow_with_warnings(warnings);
    }
    let mut warnings: Vec<String> =
        findings.iter().filter(|(s, _)| *s == Severity::Warning).map(|(_, text)| text.clone()).collect();
    if new_check.has_errors() {
        let errors: Vec<&str> =
            findings.iter().filter(|(s, _)| *s == Severity::Error).map(|(_, text)| text.as_str()).collect();
        let message = format!(
            "ConfigMap {}/{name} is not a valid {} config ({} error{}):\n{}",
            target.namespace,
            kind.label(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.join("\n")
        );
        return Decision::deny_invalid(message, warnings);
    }
    let new_config = new_check.valid_config();
    if let (Some(template), Some(config)) = (template, new_config) {
        warnings.extend(dropped_template_keys(&config.pod_labels, &config.pod_annotations, template));
    }
    if let Some(old) = old {
        warnings.extend(update_warnings(target, *kind, || check(*kind, old), new_config, env));
    }
    Decision::allow_with_warnings(warnings)
}

/// What an admitted change to the data does not reach: node-agent's settings it reads only at
/// start-up or keeps applying from its start (the webhook only adds to them), and the
/// BackupRepositories that already exist.
fn update_warnings(
    target: &Target,
    kind: Kind,
    old_check: impl FnOnce() -> Arc<ContentsCheck>,
    new_config: Option<&NodeAgentConfig>,
    env: &Environment,
) -> Vec<String> {
    match kind {
        Kind::NodeAgent => {
            let Some(new) = new_config else { return Vec::new() };
            let old_check = old_check();
            let Some(old) = old_check.node_agent_config.as_ref() else { return Vec::new() };
            let mut warnings: Vec<String> = restart_warning(target, old, new).into_iter().collect();
            warnings.extend(undone(old, new, env.velero_version).into_iter().map(|u| {
                format!(
                    "{}: {} (the webhook only adds to what node-agent applies); run kubectl -n {} rollout restart ds/node-agent",
                    u.setting, u.effect, target.namespace
                )
            }));
            warnings
        }
        Kind::BackupRepository => vec![
            "existing BackupRepositories keep the repositoryConfig they were created with: this edit reaches new ones only; edit spec.repositoryConfig of the others (fullMaintenanceInterval applies only to a new Kopia repository)"
                .to_string(),
        ],
        Kind::RepoMaintenance => Vec::new(),
    }
}

/// node-agent reads everything at start-up; this server applies the pod settings itself,
/// so only the other sections need a node-agent restart to take effect.
fn restart_warning(target: &Target, old: &NodeAgentConfig, new: &NodeAgentConfig) -> Option<String> {
    let sections: [(&str, bool); 5] = [
        ("loadConcurrency", old.load_concurrency != new.load_concurrency),
        ("backupPVC", old.backup_pvc != new.backup_pvc),
        ("restorePVC", old.restore_pvc != new.restore_pvc),
        ("privilegedFsBackup", old.privileged_fs_backup != new.privileged_fs_backup),
        ("cachePVC", old.cache_pvc != new.cache_pvc),
    ];
    let changed: Vec<&str> = sections.iter().filter(|(_, changed)| *changed).map(|(name, _)| *name).collect();
    if changed.is_empty() {
        return None;
    }
    Some(format!(
        "{} changed: node-agent reads {} only at start-up; run kubectl -n {} rollout restart daemonset/node-agent",
        changed.join(", "),
        if changed.len() == 1 { "it" } else { "them" },
        target.namespace
    ))
}

/// `data` and the keys of `binaryData` of a ConfigMap object.
fn configmap_contents(object: &Value) -> Result<Contents, String> {
    let mut data = BTreeMap::new();
    match object.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                let Value::String(text) = value else {
                    return Err(format!("data[{key}]: Invalid value: must be a string"));
                };
                data.insert(key.clone(), text.clone());
            }
        }
        Some(_) => return Err("data: Invalid value: must be an object of strings".to_string()),
    }
    let binary = match object.get("binaryData") {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    Ok((data, binary))
}
