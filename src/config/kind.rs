//! Which of Velero's ConfigMaps a ConfigMap is: the kinds, the names the server checks and how
//! they compare with the names Velero is given. A leaf: the checks and the key tables name a
//! kind, and none of this depends on them (`by_kind` runs each kind's check).

use std::fmt;
use std::str::FromStr;

/// One of the ConfigMaps Velero reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// node-agent's (`--node-agent-configmap`).
    NodeAgent,
    /// The repository maintenance Jobs' (`--repo-maintenance-job-configmap`).
    RepoMaintenance,
    /// The backup repositories' (`--backup-repository-configmap`).
    BackupRepository,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::NodeAgent, Kind::RepoMaintenance, Kind::BackupRepository];

    /// The name `check --kind` takes.
    pub fn id(self) -> &'static str {
        match self {
            Kind::NodeAgent => "node-agent",
            Kind::RepoMaintenance => "repo-maintenance",
            Kind::BackupRepository => "backup-repository",
        }
    }

    /// How messages name the config: "not a valid {label} config".
    pub fn label(self) -> &'static str {
        match self {
            Kind::NodeAgent => "node-agent",
            Kind::RepoMaintenance => "repository maintenance job",
            Kind::BackupRepository => "backup repository",
        }
    }

    /// The name checked when no flag says otherwise: Velero's docs' name, but for repository
    /// maintenance the name Velero's Helm chart gives it and passes to the server, whatever the
    /// release name (charts/velero 12.x, templates/repo-maintenance-configmap.yaml);
    /// `velero install` has no default for it.
    pub fn default_name(self) -> &'static str {
        match self {
            Kind::NodeAgent => "node-agent-config",
            Kind::RepoMaintenance => "velero-repo-maintenance",
            Kind::BackupRepository => "backup-repository-config",
        }
    }

    /// The Velero flag that names the ConfigMap (the server's, or node-agent's for node-agent).
    pub fn velero_flag(self) -> &'static str {
        match self {
            Kind::NodeAgent => "--node-agent-configmap",
            Kind::RepoMaintenance => "--repo-maintenance-job-configmap",
            Kind::BackupRepository => "--backup-repository-configmap",
        }
    }

    /// What deleting ConfigMap `namespace/name` does, for the warning on DELETE.
    pub fn delete_warning(self, namespace: &str, name: &str) -> String {
        match self {
            Kind::NodeAgent => format!(
                "node-agent 1.17+ fails to start without ConfigMap {namespace}/{name}: recreate it before node-agent restarts"
            ),
            Kind::RepoMaintenance => format!(
                "the Velero server 1.17+ fails to start without ConfigMap {namespace}/{name}, and until then maintenance Jobs silently get the defaults: recreate it before the server restarts"
            ),
            Kind::BackupRepository => format!(
                "the Velero server 1.17+ and node-agent 1.18+ fail to start without ConfigMap {namespace}/{name}, and new BackupRepositories get no config: recreate it before they restart"
            ),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ConfigMap kind {0:?}: expected node-agent, repo-maintenance or backup-repository")]
pub struct KindError(pub String);

impl FromStr for Kind {
    type Err = KindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL.into_iter().find(|kind| kind.id() == s).ok_or_else(|| KindError(s.to_string()))
    }
}

/// The names of the three ConfigMaps in the Velero namespace; a kind that is not checked has
/// none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub node_agent: String,
    pub repo_maintenance: Option<String>,
    pub backup_repository: Option<String>,
}

impl Default for Names {
    /// The default names ([`Kind::default_name`]).
    fn default() -> Self {
        Self {
            node_agent: Kind::NodeAgent.default_name().to_string(),
            repo_maintenance: Some(Kind::RepoMaintenance.default_name().to_string()),
            backup_repository: Some(Kind::BackupRepository.default_name().to_string()),
        }
    }
}

impl Names {
    /// The names as flags give them: an empty name switches that kind off.
    pub fn from_flags(node_agent: &str, repo_maintenance: &str, backup_repository: &str) -> Self {
        let on = |name: &str| Some(name.to_string()).filter(|name| !name.is_empty());
        Self {
            node_agent: node_agent.to_string(),
            repo_maintenance: on(repo_maintenance),
            backup_repository: on(backup_repository),
        }
    }

    pub fn get(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::NodeAgent => Some(&self.node_agent),
            Kind::RepoMaintenance => self.repo_maintenance.as_deref(),
            Kind::BackupRepository => self.backup_repository.as_deref(),
        }
    }

    /// Which kind the ConfigMap `name` is, if it is one of them.
    pub fn kind_of(&self, name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| self.get(*kind) == Some(name))
    }
}

/// The value of `--flag` in a container's args, `--flag=value` or `--flag value`; the last one
/// wins, as with Velero's flag parser. `None` when the flag is not given.
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut found = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if let Some(value) = arg.strip_prefix(flag).and_then(|tail| tail.strip_prefix('=')) {
            found = Some(value.to_string());
        } else if arg == flag {
            found = rest.next().cloned();
        }
    }
    found
}

/// A ConfigMap whose name this server checks differs from the one Velero reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub kind: Kind,
    /// The name checked here; `None`: this kind is switched off.
    pub checked: Option<String>,
    /// The name in Velero's args; `None`: Velero is not given the flag, so reads no such ConfigMap.
    pub velero: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |name: &Option<String>| name.as_deref().map_or("(none)".to_string(), |n| format!("{n:?}"));
        write!(
            f,
            "the {} ConfigMap checked here is {}, but Velero's {} is {}",
            self.kind.label(),
            name(&self.checked),
            self.kind.velero_flag(),
            name(&self.velero)
        )
    }
}

/// Compares the names checked here with the args Velero runs with: the server Deployment's
/// (`server`) and the node-agent DaemonSet's (`node_agent`); `None` args (not readable) are
/// not compared.
pub fn mismatches(names: &Names, server: Option<&[String]>, node_agent: Option<&[String]>) -> Vec<Mismatch> {
    Kind::ALL
        .into_iter()
        .filter_map(|kind| {
            let args = if kind == Kind::NodeAgent { node_agent } else { server }?;
            let velero = flag_value(args, kind.velero_flag());
            let checked = names.get(kind).map(str::to_string);
            (checked != velero).then_some(Mismatch { kind, checked, velero })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_the_kinds_apart_and_a_kind_can_be_off() {
        let names = Names::default();
        assert_eq!(names.kind_of("node-agent-config"), Some(Kind::NodeAgent));
        assert_eq!(names.kind_of("velero-repo-maintenance"), Some(Kind::RepoMaintenance));
        assert_eq!(names.kind_of("backup-repository-config"), Some(Kind::BackupRepository));
        assert_eq!(names.kind_of("other"), None);
        let off = Names { backup_repository: None, ..Names::default() };
        assert_eq!(off.kind_of("backup-repository-config"), None);
        for kind in Kind::ALL {
            assert_eq!(kind.id().parse::<Kind>(), Ok(kind));
        }
        assert!("repo".parse::<Kind>().is_err());
    }

    #[test]
    fn flags_are_read_from_args_in_both_forms_and_the_last_wins() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let flag = "--backup-repository-configmap";
        for (list, want) in [
            (&["server", "--backup-repository-configmap=repos"][..], Some("repos")),
            (&["server", "--backup-repository-configmap", "repos"][..], Some("repos")),
            (&["server", "--backup-repository-configmap=a", "--backup-repository-configmap=b"][..], Some("b")),
            (&["server", "--backup-repository-configmap-x=a"][..], None),
            (&["server", "--backup-repository-configmap"][..], None),
            (&["server"][..], None),
        ] {
            assert_eq!(flag_value(&args(list), flag).as_deref(), want, "{list:?}");
        }
    }

    #[test]
    fn names_that_differ_from_velero_args_are_mismatches() {
        let server = ["server".to_string(), "--repo-maintenance-job-configmap=maint".to_string()];
        let node_agent =
            ["node-agent".to_string(), "server".to_string(), "--node-agent-configmap=node-agent-config".to_string()];
        let found = mismatches(&Names::default(), Some(&server), Some(&node_agent));
        let rendered: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            vec![
                r#"the repository maintenance job ConfigMap checked here is "velero-repo-maintenance", but Velero's --repo-maintenance-job-configmap is "maint""#,
                r#"the backup repository ConfigMap checked here is "backup-repository-config", but Velero's --backup-repository-configmap is (none)"#,
            ]
        );
        let matching = Names::from_flags("node-agent-config", "maint", "");
        assert_eq!(mismatches(&matching, Some(&server), Some(&node_agent)), vec![]);
        assert_eq!(mismatches(&Names::default(), None, None), vec![], "unreadable args are not compared");
    }
}
