//! Each ConfigMap kind's check behind one call, so the webhook and `check` treat the three alike.

use super::configmap::{self, ConfigMapData, Findings};
use super::diagnostics::Diagnostics;
use super::kind::Kind;
use super::validate::Environment;
use super::{backup_repository, repo_maintenance};

/// Checks a whole ConfigMap of `kind`.
pub fn check_configmap_of(kind: Kind, configmap: &ConfigMapData, env: &Environment) -> Findings {
    match kind {
        Kind::NodeAgent => configmap::check_node_agent(configmap, env).findings(),
        Kind::RepoMaintenance => repo_maintenance::check_repo_maintenance(configmap, env).findings(),
        Kind::BackupRepository => backup_repository::check_backup_repository(configmap, env).findings(),
    }
}

/// Checks one data value of `kind` on its own (a repository maintenance value without the
/// `global` key beside it).
pub fn check_value(kind: Kind, text: &str, env: &Environment) -> Diagnostics {
    match kind {
        Kind::NodeAgent => super::check_value(text, env).diagnostics,
        Kind::RepoMaintenance => repo_maintenance::check_value(text, env).diagnostics,
        Kind::BackupRepository => backup_repository::check_value(text, env).diagnostics,
    }
}
