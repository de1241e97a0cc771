//! What an admitted change to the data does not reach, said as an UPDATE's warnings:
//! node-agent's settings it reads only at start-up or keeps applying from its start (the
//! webhook only adds to them, `mutate::undone`), and the BackupRepositories that already exist.

use super::{ContentsCheck, Target};
use crate::config::kind::Kind;
use crate::config::model::NodeAgentConfig;
use crate::config::version::VeleroVersion;
use crate::mutate::undone::undone;

/// The warnings of an admitted UPDATE of a ConfigMap of `kind`: `old` is the check of the old
/// contents when they differ ([`old_check_needed`](super::old_check_needed)), `new` the valid
/// config the update brings (node-agent's kind only).
pub(super) fn update_warnings(
    target: &Target,
    kind: Kind,
    old: Option<&ContentsCheck>,
    new: Option<&NodeAgentConfig>,
    version: Option<VeleroVersion>,
) -> Vec<String> {
    match kind {
        Kind::NodeAgent => {
            let (Some(new), Some(old)) = (new, old.and_then(|old| old.node_agent_config.as_ref())) else {
                return Vec::new();
            };
            let restart = restart_advice(target);
            let mut warnings: Vec<String> = restart_warning(old, new, &restart).into_iter().collect();
            warnings.extend(undone(old, new, version).into_iter().map(|u| {
                format!("{}: {} (the webhook only adds to what node-agent applies); {restart}", u.setting, u.effect)
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

/// The one way the warnings tell how to restart node-agent.
fn restart_advice(target: &Target) -> String {
    format!("run kubectl -n {} rollout restart daemonset/node-agent", target.namespace)
}

/// node-agent reads everything at start-up; this server applies the pod settings itself,
/// so only the other sections need a node-agent restart to take effect.
fn restart_warning(old: &NodeAgentConfig, new: &NodeAgentConfig, restart: &str) -> Option<String> {
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
        "{} changed: node-agent reads {} only at start-up; {restart}",
        changed.join(", "),
        if changed.len() == 1 { "it" } else { "them" },
    ))
}
