//! The config a server may serve, from a config file's text or a ConfigMap's data: the
//! validating webhook's own checker decides, so the config served is exactly one it would admit.

use super::configmap::{check_node_agent, ConfigMapData};
use super::manifest::{self, Input};
use super::model::NodeAgentConfig;
use super::validate::Environment;
use super::version::VeleroVersion;
use super::{check_value, Checked};

/// The config the mutating webhook applies, and which load it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveConfig {
    /// Counts this process's successful loads from 1; 0 means nothing was loaded (no
    /// settings). Per process: it tells whether an edit reached this replica, not which
    /// config a pod got.
    pub generation: u64,
    /// Names the config, the same on every replica and across restarts: `resourceVersion:N`
    /// of the ConfigMap, or `sha256:…` of the config file ([`configmap_id`], [`file_id`]);
    /// empty when none. Pods' `applied` annotation, the `config_info` metric and the log say it.
    pub id: String,
    pub config: NodeAgentConfig,
}

/// Why a config could not be used; the text goes to the log, never to a metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Invalid(String),
    #[error("no ConfigMap named {0:?} in the file")]
    NotFound(String),
}

/// Reads a config file's text: the config value itself, or manifests holding the ConfigMap.
///
/// `version` is the Velero version the server checks configs for, as the validating webhook
/// does: a config stored for a Velero newer than this build knows keeps its known settings.
pub fn config_from_text(
    text: &str,
    configmap: &str,
    version: Option<VeleroVersion>,
) -> Result<NodeAgentConfig, LoadError> {
    let env = Environment { velero_version: version, ..Environment::default() };
    match manifest::read_input(text).map_err(|e| LoadError::Invalid(e.to_string()))? {
        Input::Config => valid(check_value(text, &env)),
        Input::Manifests(configmaps) => {
            let cm = configmaps
                .iter()
                .find(|cm| cm.name == configmap)
                .ok_or_else(|| LoadError::NotFound(configmap.to_string()))?;
            config_from_configmap(&cm.contents(), version)
        }
    }
}

/// Runs a ConfigMap's `data` and `binaryData` keys through the validating webhook's own
/// checker, so the config served is exactly one the webhook would admit for `version`.
pub fn config_from_configmap(
    configmap: &ConfigMapData,
    version: Option<VeleroVersion>,
) -> Result<NodeAgentConfig, LoadError> {
    let env = Environment { velero_version: version, ..Environment::default() };
    let check = check_node_agent(configmap, &env);
    match check.config() {
        Some(config) => Ok(config.clone()),
        None => Err(LoadError::Invalid(first_errors(check.rendered().into_iter().map(|(_, text)| text)))),
    }
}

fn valid(checked: Checked) -> Result<NodeAgentConfig, LoadError> {
    if checked.diagnostics.has_errors() {
        Err(LoadError::Invalid(first_errors(checked.diagnostics.errors().map(|d| d.render()))))
    } else {
        Ok(checked.config)
    }
}

/// Names a config loaded from ConfigMap `resourceVersion`: every replica watching the
/// ConfigMap sees the same version, and it survives restarts, where a count of loads would not.
pub fn configmap_id(resource_version: &str) -> String {
    format!("resourceVersion:{resource_version}")
}

/// Names a config loaded from a file: the first 48 bits of the SHA-256 of its bytes, in hex.
/// Replicas mounting the same ConfigMap read the same bytes, so they agree, also across
/// restarts; 48 bits tell apart the few versions an operator compares.
pub fn file_id(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn first_errors(errors: impl Iterator<Item = String>) -> String {
    errors.take(3).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_ids_depend_on_the_content_or_the_version_only() {
        // SHA-256("{}") = 44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a.
        assert_eq!(file_id(b"{}"), "sha256:44136fa355b3");
        assert_eq!(file_id(b"{}"), file_id("{}".to_string().as_bytes()));
        assert_ne!(file_id(b"{}"), file_id(b"{ }"));
        assert_eq!(configmap_id("4821"), "resourceVersion:4821");
    }
}
