//! Where the live config comes from: a file (a mounted ConfigMap, or anything an operator
//! writes), or the ConfigMap itself through the Kubernetes API. A valid new config replaces
//! the live one; an invalid one is logged and counted, and the last valid one keeps serving.
//! The PriorityClass names and StorageClasses the checks depend on are fed in here too: this
//! module owns what flows from the cluster into the server's state, `cluster` only makes the
//! calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::cluster::{Cluster, NodeAgentDaemonSet, Observed};
use crate::config::kind::{mismatches, Kind, Mismatch};
use crate::config::load::{config_from_configmap, config_from_text, configmap_id, file_id, LiveConfig, LoadError};
use crate::config::model::NodeAgentConfig;
use crate::metrics::LoadResult;
use crate::server::state::AppState;

/// How often a config file is re-read; well under the one second an edit may take to apply.
pub const FILE_POLL_INTERVAL: Duration = Duration::from_millis(250);

pub enum Source {
    File(PathBuf),
    /// The ConfigMap itself, watched through the API: edits apply as soon as the API server
    /// has them, with no kubelet sync delay and no volume mount.
    ConfigMap {
        cluster: Cluster,
        namespace: String,
        name: String,
    },
}

/// Keeps the live config current until the task is dropped.
pub async fn run(source: Source, state: Arc<AppState>) {
    match source {
        Source::File(path) => watch_file(path, state).await,
        Source::ConfigMap { cluster, namespace, name } => watch_configmap(&cluster, &namespace, &name, state).await,
    }
}

/// Keeps the live config equal to ConfigMap `namespace/name`; runs until dropped.
///
/// Each version goes through the validating webhook's own checker: a valid one becomes the
/// next generation; an invalid one is counted and logged while the last valid one keeps
/// serving. A ConfigMap that does not exist means no settings. The first successful list
/// makes the server ready whatever it finds, so the webhook can admit the fix for a broken or
/// missing ConfigMap; readiness waits for a list to succeed, which surfaces a missing Role.
///
/// A change of the Velero version checks the last version of the ConfigMap again: a config
/// stored for a Velero newer than the server knew becomes servable once it knows the version.
async fn watch_configmap(cluster: &Cluster, namespace: &str, name: &str, state: Arc<AppState>) {
    let mut changes = std::pin::pin!(cluster.configmap_changes(namespace, name));
    let mut versions = state.velero_version_changes();
    let mut last: Option<Observed> = None;
    loop {
        tokio::select! {
            observed = changes.next() => {
                let Some(observed) = observed else { return };
                load(&state, &observed, namespace, name);
                last = Some(observed);
            }
            Ok(()) = versions.changed() => {
                if let Some(observed) = last.as_ref().filter(|o| matches!(o, Observed::Present { .. })) {
                    load(&state, observed, namespace, name);
                }
            }
        }
    }
}

/// Keeps the PriorityClass names in `state` current; runs until dropped. The validating
/// webhook checks `priorityClassName` against them and the mutating webhook sets a pod's
/// priority only from a class that exists.
pub async fn watch_priority_classes(cluster: Cluster, state: Arc<AppState>) {
    let mut changes = std::pin::pin!(cluster.priority_class_changes());
    while let Some(watched) = changes.next().await {
        state.set_priority_classes(Some(Arc::new(watched.names)), watched.interrupted);
    }
}

/// Keeps the StorageClasses in `state` current; runs until dropped. The validating webhook
/// checks the classes node-agent creates PVCs of (`cachePVC`, `backupPVC`) against their names,
/// and `cachePVC`'s against its reclaimPolicy.
pub async fn watch_storage_classes(cluster: Cluster, state: Arc<AppState>) {
    let mut changes = std::pin::pin!(cluster.storage_class_changes());
    while let Some(reclaim_policies) = changes.next().await {
        state.set_storage_classes(Some(Arc::new(reclaim_policies)));
    }
}

/// Keeps the Nodes the placement warnings read in `state` current; runs until dropped.
pub async fn watch_nodes(cluster: Cluster, state: Arc<AppState>) {
    let mut changes = std::pin::pin!(crate::nodes::node_changes(cluster.client()));
    while let Some(nodes) = changes.next().await {
        state.set_nodes(nodes);
    }
}

/// How long start-up waits for the first sight of node-agent's DaemonSet, so that the first
/// reviews already know the Velero version; the watch goes on after it either way.
const FIRST_SIGHT_TIMEOUT: Duration = Duration::from_secs(5);

/// Follows node-agent's DaemonSet, from one watch: its template's third-party keys (the warning
/// about a config that drops one), unless `--velero-version` pinned it the Velero version of its
/// image (so an upgrade changes the version-aware checks without a restart of this server), and
/// the ConfigMap name in its args, compared with ours beside the Velero server's (read once).
///
/// Returns once the DaemonSet was first seen (or [`FIRST_SIGHT_TIMEOUT`] passed), with the task
/// that follows it from then on, until dropped: a config source started after it loads the
/// config once, for the version node-agent runs.
pub async fn follow_node_agent(
    cluster: Cluster,
    follow_version: bool,
    state: Arc<AppState>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let namespace = state.target().namespace.clone();
    let mut changes = Box::pin(cluster.node_agent_changes(&namespace));
    let first = tokio::time::timeout(FIRST_SIGHT_TIMEOUT, changes.next()).await;
    let server_args = cluster.velero_server_args(&namespace).await;
    let mut follower = NodeAgentFollower { follow_version, server_args, mismatches: None, state };
    match first {
        Ok(Some(seen)) => follower.apply(seen),
        Ok(None) | Err(_) => tracing::warn!(
            namespace = %namespace,
            "node-agent's DaemonSet not read in time; version-aware checks wait for it"
        ),
    }
    async move {
        while let Some(seen) = changes.next().await {
            follower.apply(seen);
        }
    }
}

/// What [`follow_node_agent`] keeps between two sights of the DaemonSet.
struct NodeAgentFollower {
    follow_version: bool,
    /// The Velero server's args, read once at start-up.
    server_args: Option<Vec<String>>,
    /// The mismatches last reported, so each is logged when it appears.
    mismatches: Option<Vec<Mismatch>>,
    state: Arc<AppState>,
}

impl NodeAgentFollower {
    fn apply(&mut self, seen: Option<NodeAgentDaemonSet>) {
        let state = &self.state;
        let (keys, version, args, placement) = match seen {
            Some(seen) => (Some(Arc::new(seen.template_keys)), seen.version, seen.args, Some(Arc::new(seen.placement))),
            None => (None, None, None, None),
        };
        state.set_node_agent_template(keys);
        state.set_node_agent_placement(placement);
        if self.follow_version && state.velero_version() != version {
            let shown = version.map_or_else(|| "unknown (no version tag)".to_string(), |v| v.to_string());
            tracing::info!(version = %shown, "Velero version from the node-agent DaemonSet");
            state.set_velero_version(version);
        }
        let found = mismatches(&state.target().names, self.server_args.as_deref(), args.as_deref());
        if self.mismatches.as_ref() != Some(&found) {
            for kind in Kind::ALL {
                let mismatch = found.iter().find(|m| m.kind == kind);
                if let Some(mismatch) = mismatch {
                    tracing::warn!(kind = kind.id(), "{mismatch}: set the matching serve flag");
                }
                state.metrics.set_configmap_name_mismatch(kind, mismatch.is_some());
            }
            self.mismatches = Some(found);
        }
    }
}

/// Makes what was observed the live config, the same way the file source does.
fn load(state: &AppState, observed: &Observed, namespace: &str, name: &str) {
    match observed {
        Observed::Present { data, resource_version } => match config_from_configmap(data, state.velero_version()) {
            Ok(config) => install(state, config, configmap_id(resource_version)),
            Err(err) => reject(state, &err),
        },
        // Nothing to drop (start-up, or no settings already): like a missing file, count it
        // and become ready without a new generation.
        Observed::Missing if state.live_config().config == NodeAgentConfig::default() => {
            tracing::warn!(namespace, name, "the node-agent ConfigMap does not exist; serving no settings");
            state.metrics.record_config_reload(LoadResult::Missing);
            state.readiness.mark_config_read();
        }
        // Deleted: the ConfigMap no longer asks for anything, so stop applying its settings.
        Observed::Missing => {
            tracing::warn!(namespace, name, "the node-agent ConfigMap was deleted; dropping its settings");
            install(state, NodeAgentConfig::default(), String::new());
        }
    }
}

/// Installs `config`, named `id`, as the next generation.
fn install(state: &AppState, config: NodeAgentConfig, id: String) {
    let generation = state.live_config().generation + 1;
    tracing::info!(generation, config = %id, "config loaded");
    state.set_live_config(LiveConfig { generation, id, config });
    state.metrics.record_config_reload(LoadResult::Success);
}

/// Keeps the last good config and counts the failure.
fn reject(state: &AppState, err: &LoadError) {
    state.metrics.record_config_reload(LoadResult::Error);
    state.readiness.mark_config_read();
    tracing::error!(error = %err, "config rejected; still serving the last valid one");
}

/// Polls the file: this sees in-place rewrites and the `..data` symlink swap Kubernetes
/// uses for mounted ConfigMaps alike, without depending on inotify semantics.
/// A change of the Velero version reads the file again, as a change of the file would.
async fn watch_file(path: PathBuf, state: Arc<AppState>) {
    let mut last: Option<Vec<u8>> = None;
    let mut versions = state.velero_version_changes();
    loop {
        let version_changed = versions.has_changed().unwrap_or(false);
        versions.mark_unchanged();
        match tokio::fs::read(&path).await {
            Ok(bytes) if version_changed || last.as_ref() != Some(&bytes) => {
                match std::str::from_utf8(&bytes) {
                    Ok(text) => {
                        match config_from_text(text, &state.target().names.node_agent, state.velero_version()) {
                            Ok(config) => install(&state, config, file_id(&bytes)),
                            Err(err) => reject(&state, &err),
                        }
                    }
                    Err(_) => reject(&state, &LoadError::Invalid("the file is not UTF-8".to_string())),
                }
                last = Some(bytes);
            }
            Ok(_) => {}
            Err(err) if last.is_none() => {
                // A missing file at start-up means no settings; readiness must not wait for it,
                // or the validating webhook could never admit the fix.
                tracing::warn!(path = %path.display(), error = %err, "config file not readable; serving no settings");
                state.metrics.record_config_reload(LoadResult::Missing);
                state.readiness.mark_config_read();
                last = Some(Vec::new());
            }
            Err(_) => {}
        }
        tokio::time::sleep(FILE_POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::kind::Names;
    use crate::config::placement::DaemonSetPlacement;
    use crate::config::third_party::TemplateKeys;
    use crate::config::version::VeleroVersion;
    use crate::server::state::Settings;
    use crate::validating::Target;

    /// What one sight of node-agent's DaemonSet changes: the followed version, and the name
    /// mismatches with Velero's args, as metrics.
    #[test]
    fn a_sight_of_node_agent_sets_the_version_and_the_name_mismatches() {
        let target = Target { namespace: "velero".into(), names: Names::default() };
        let state = Arc::new(AppState::new(
            Settings { target, velero_version: None, service_accounts: vec!["velero".into()] },
            None,
        ));
        let server_args = Some(vec!["server".to_string(), "--repo-maintenance-job-configmap=custom".to_string()]);
        let mut follower = NodeAgentFollower { follow_version: true, server_args, mismatches: None, state };
        let seen = |version, configmap: &str| NodeAgentDaemonSet {
            template_keys: TemplateKeys::default(),
            version: Some(version),
            args: Some(vec![format!("--node-agent-configmap={configmap}")]),
            placement: DaemonSetPlacement::default(),
        };
        let mismatch = |state: &AppState, kind: &str| {
            let text = crate::metrics::render(&state.registry);
            let series = format!("node_agent_webhook_configmap_name_mismatch{{kind=\"{kind}\"}} ");
            text.lines().find_map(|line| line.strip_prefix(series.as_str())?.parse::<u8>().ok())
        };

        follower.apply(Some(seen(VeleroVersion::new(1, 18, 1), "node-agent-config")));
        assert_eq!(follower.state.velero_version(), Some(VeleroVersion::new(1, 18, 1)));
        assert_eq!(mismatch(&follower.state, "repo-maintenance"), Some(1), "the server reads another name");
        assert_eq!(mismatch(&follower.state, "node-agent"), Some(0));
        assert_eq!(mismatch(&follower.state, "backup-repository"), Some(1), "without the flag Velero reads none");

        follower.apply(Some(seen(VeleroVersion::new(1, 18, 3), "renamed")));
        assert_eq!(follower.state.velero_version(), Some(VeleroVersion::new(1, 18, 3)), "an upgrade is followed");
        assert_eq!(mismatch(&follower.state, "node-agent"), Some(1), "node-agent's flag changed");

        follower.apply(None);
        assert_eq!(follower.state.velero_version(), None, "no DaemonSet, no version");
        assert_eq!(mismatch(&follower.state, "node-agent"), Some(0), "unreadable args are not compared");
    }
}
