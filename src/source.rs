//! Where the live config comes from: a file (a mounted ConfigMap, or anything an operator
//! writes), or the ConfigMap itself through the Kubernetes API. A valid new config replaces
//! the live one; an invalid one is logged and counted, and the last valid one keeps serving.
//! The PriorityClass names the checks depend on are fed in here too: this module owns what
//! flows from the cluster into the server's state, `cluster` only makes the calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;

use crate::cluster::{Cluster, Observed};
use crate::config::load::{config_from_configmap, config_from_text, configmap_id, file_id, LoadError};
use crate::config::model::NodeAgentConfig;
use crate::metrics::ResultLabels;
use crate::server::state::{AppState, LiveConfig};

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

/// Keeps the StorageClass names in `state` current; runs until dropped. The validating webhook
/// checks the classes node-agent creates PVCs of (`cachePVC`, `backupPVC`) against them.
pub async fn watch_storage_classes(cluster: Cluster, state: Arc<AppState>) {
    let mut changes = std::pin::pin!(cluster.storage_class_changes());
    while let Some(watched) = changes.next().await {
        state.set_storage_classes(Some(Arc::new(watched.names)));
    }
}

/// Keeps the Nodes the placement warnings read in `state` current; runs until dropped.
pub async fn watch_nodes(cluster: Cluster, state: Arc<AppState>) {
    let mut changes = std::pin::pin!(crate::nodes::node_changes(cluster.client()));
    while let Some(nodes) = changes.next().await {
        state.set_nodes(nodes);
    }
}

/// Keeps what the validating webhook knows of the node-agent DaemonSet current; runs until
/// dropped: its template's third-party keys (the warning about a config that drops one) and,
/// unless `--velero-version` pinned it, the Velero version of its image, so an upgrade changes
/// the version-aware checks without a restart of this server.
pub async fn watch_node_agent(cluster: Cluster, namespace: String, follow_version: bool, state: Arc<AppState>) {
    let mut changes = std::pin::pin!(cluster.node_agent_changes(&namespace));
    while let Some(seen) = changes.next().await {
        let (keys, version, placement) = seen.map_or((None, None, None), |seen| {
            (Some(Arc::new(seen.template_keys)), seen.version, Some(Arc::new(seen.placement)))
        });
        state.set_node_agent_template(keys);
        state.set_node_agent_placement(placement);
        if follow_version && state.velero_version() != version {
            let shown = version.map_or_else(|| "unknown (no version tag)".to_string(), |v| v.to_string());
            tracing::info!(version = %shown, "Velero version from the node-agent DaemonSet changed");
            state.set_velero_version(version);
        }
    }
}

/// Makes what was observed the live config, the same way the file source does.
fn load(state: &AppState, observed: &Observed, namespace: &str, name: &str) {
    match observed {
        Observed::Present { data, binary_keys, resource_version } => {
            match config_from_configmap(data, binary_keys, state.velero_version()) {
                Ok(config) => install(state, config, configmap_id(resource_version)),
                Err(err) => reject(state, &err),
            }
        }
        // Nothing to drop (start-up, or no settings already): like a missing file, count it
        // and become ready without a new generation.
        Observed::Missing if state.live_config().config == NodeAgentConfig::default() => {
            tracing::warn!(namespace, name, "the node-agent ConfigMap does not exist; serving no settings");
            state.metrics.config_reloads.get_or_create(&ResultLabels { result: "missing" }).inc();
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
    state.metrics.config_reloads.get_or_create(&ResultLabels { result: "success" }).inc();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    state.metrics.config_last_success.set(now);
}

/// Keeps the last good config and counts the failure.
fn reject(state: &AppState, err: &LoadError) {
    state.metrics.config_reloads.get_or_create(&ResultLabels { result: "error" }).inc();
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
                    Ok(text) => match config_from_text(text, &state.target.names.node_agent, state.velero_version()) {
                        Ok(config) => install(&state, config, file_id(&bytes)),
                        Err(err) => reject(&state, &err),
                    },
                    Err(_) => reject(&state, &LoadError::Invalid("the file is not UTF-8".to_string())),
                }
                last = Some(bytes);
            }
            Ok(_) => {}
            Err(err) if last.is_none() => {
                // A missing file at start-up means no settings; readiness must not wait for it,
                // or the validating webhook could never admit the fix.
                tracing::warn!(path = %path.display(), error = %err, "config file not readable; serving no settings");
                state.metrics.config_reloads.get_or_create(&ResultLabels { result: "missing" }).inc();
                state.readiness.mark_config_read();
                last = Some(Vec::new());
            }
            Err(_) => {}
        }
        tokio::time::sleep(FILE_POLL_INTERVAL).await;
    }
}
