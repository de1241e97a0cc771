//! Velero versions, and what a release does with what it does not read: which key a release
//! reads comes from Velero's own types (`velero_types`), the wording and the version-dependent
//! behaviour of node-agent (what it does on a bad value) from its source at each release.

pub use super::release::{VeleroVersion, VersionError};

use super::kind::Kind;
use super::velero_types::{self, Support};

const V1_17: VeleroVersion = VeleroVersion::new(1, 17, 0);
const V1_18: VeleroVersion = VeleroVersion::new(1, 18, 0);
const V1_18_1: VeleroVersion = VeleroVersion::new(1, 18, 1);

/// What node-agent does with a config value Go cannot decode (invalid JSON, a type error):
/// from 1.17 it exits, up to 1.16 it logs a warning and runs without the whole config
/// (Velero's `pkg/cmd/cli/nodeagent/server.go`, `getDataPathConfigs`: v1.16.2 logs the error of
/// `nodeagent.GetConfigs` and goes on, v1.17.0 returns it from `newNodeAgentServer`). An unknown version is taken to be a current one.
pub fn on_undecodable(version: Option<VeleroVersion>) -> String {
    match version {
        Some(v) if v < V1_17 => format!("node-agent {v} logs a warning and ignores the whole config"),
        _ => "node-agent fails to start".to_string(),
    }
}

/// What node-agent does when the ConfigMap has no data key (`GetConfigs` in Velero's
/// `pkg/nodeagent/node_agent.go`: "data is not available"): from 1.17 it exits, before it warns
/// and runs without a config (see [`on_undecodable`]).
pub fn on_missing_data(version: Option<VeleroVersion>) -> String {
    match version {
        None => "node-agent 1.17+ fails to start with \"data is not available\"".to_string(),
        Some(v) if v < V1_17 => format!("node-agent {v} logs \"data is not available\" and runs without a config"),
        Some(v) => format!("node-agent {v} fails to start with \"data is not available\""),
    }
}

/// What node-agent does with more than one data key: from 1.18 it exits (`GetConfigs` in
/// Velero's `pkg/nodeagent/node_agent.go` at v1.18.0: "more than one keys are found"), before
/// it reads one of them at random (v1.17.2 ranges over the data map: Go's map order).
pub fn on_several_data_keys(version: Option<VeleroVersion>) -> String {
    match version {
        None => "node-agent 1.18+ exits with \"more than one keys are found\", 1.17 reads a random one".to_string(),
        Some(v) if v < V1_18 => format!("node-agent {v} reads one of them at random"),
        Some(v) => format!("node-agent {v} exits with \"more than one keys are found\""),
    }
}

/// Whether this version's node-agent turns a `loadAffinity` entry with an empty selector into
/// a node-selector term that matches no node: up to 1.18.0 it does; 1.18.1 keeps only its own
/// OS requirement (`ToSystemAffinity` in Velero's `pkg/util/kube/pod.go`, v1.18.0 against
/// v1.18.1). An unknown version may be one that does.
pub fn empty_selector_matches_no_node(version: Option<VeleroVersion>) -> bool {
    version.is_none_or(|v| v < V1_18_1)
}

/// Whether this version's node-agent picks the `loadAffinity` entry by storage class: the
/// releases that read `loadAffinity[].storageClass` (1.17+); before, it gives `loadAffinity[0]`
/// to every pod.
pub fn chooses_affinity_by_storage_class(version: Option<VeleroVersion>) -> bool {
    reads(Kind::NodeAgent, version, "loadAffinity[].storageClass")
}

/// The node-agent settings the mutating webhook applies to data-mover pods itself, on any
/// version (`mutate::plan`), as key paths: a release that does not read one still gets it.
const APPLIED_BY_WEBHOOK: [&str; 9] = [
    "loadAffinity",
    "loadAffinity[].storageClass",
    "podResources",
    "podResources.ephemeralStorageRequest",
    "podResources.ephemeralStorageLimit",
    "priorityClassName",
    "podLabels",
    "podAnnotations",
    "tolerations",
];

/// node-agent keys of this webhook's own that no Velero release reads, so Velero's types do not
/// list them; node-agent ignores them (as every unknown key) and the webhook applies them.
/// `tolerations`: velero#9575 (unmerged at Velero's main of 2026-05-20) makes data-mover pods
/// inherit every toleration of node-agent's DaemonSet, de-duplicated, but adds no config key.
const WEBHOOK_ONLY: [&str; 1] = ["tolerations"];

/// The key path of a node-agent field path under one of [`WEBHOOK_ONLY`]'s keys, which only
/// the top-level key needs: below it, nothing is said again.
pub fn webhook_only(kind: Kind, field_path: &str) -> Option<&'static str> {
    let top = field_path.split(['.', '[']).next()?;
    WEBHOOK_ONLY.iter().copied().find(|key| kind == Kind::NodeAgent && *key == top)
}

/// Whether the mutating webhook applies the node-agent setting at `key_path` itself.
pub fn applied_by_webhook(key_path: &str) -> bool {
    APPLIED_BY_WEBHOOK.contains(&key_path)
}

/// Whether Velero `version` (unknown: any) reads the `kind` ConfigMap's key at `key_path`, as
/// Velero's types at that release say.
pub fn reads(kind: Kind, version: Option<VeleroVersion>, key_path: &str) -> bool {
    let key = velero_types::key(kind, key_path);
    version.zip(key).is_none_or(|(version, key)| velero_types::support(key, version) == Support::Reads)
}

/// What Velero `version` does with a `kind` value's key (at `key_path`) that it does not read.
pub fn unread_by(kind: Kind, version: VeleroVersion, key_path: &str, support: Support) -> String {
    let when = match support {
        Support::Since(since) => format!("supported since {since}"),
        Support::Dropped { last: Some(last) } => format!("last read by {last}"),
        // The webhook's own keys (`WEBHOOK_ONLY`): no release file lists them.
        Support::Reads | Support::Dropped { last: None } => "no Velero release reads it".to_string(),
    };
    match kind {
        Kind::NodeAgent if applied_by_webhook(key_path) => format!(
            "node-agent of Velero {version} ignores this ({when}); the mutating webhook applies it to new data-mover pods"
        ),
        Kind::NodeAgent => format!("node-agent of Velero {version} ignores this ({when})"),
        Kind::RepoMaintenance => format!("Velero {version} ignores this for maintenance Jobs ({when})"),
        Kind::BackupRepository => format!("Velero {version} ignores this ({when})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_node_agent_reads_comes_from_velero_s_types() {
        let cases = [
            (Some(VeleroVersion::new(1, 16, 2)), "loadAffinity", true),
            (Some(VeleroVersion::new(1, 16, 2)), "podLabels", false),
            (Some(VeleroVersion::new(1, 18, 0)), "podLabels", true),
            (Some(VeleroVersion::new(1, 16, 2)), "priorityClassName", false),
            (Some(VeleroVersion::new(1, 17, 0)), "priorityClassName", true),
            (None, "podLabels", true),
        ];
        for (version, path, want) in cases {
            assert_eq!(reads(Kind::NodeAgent, version, path), want, "{version:?} {path}");
        }
    }

    #[test]
    fn every_setting_the_webhook_applies_is_a_node_agent_key() {
        for path in APPLIED_BY_WEBHOOK {
            let known = velero_types::key(Kind::NodeAgent, path).is_some();
            assert!(known != webhook_only(Kind::NodeAgent, path).is_some(), "{path}");
        }
    }

    #[test]
    fn a_key_of_the_webhook_s_own_is_worded_as_applied_by_it() {
        let v = VeleroVersion::new(1, 18, 3);
        assert_eq!(webhook_only(Kind::NodeAgent, "tolerations[0].key"), Some("tolerations"));
        assert_eq!(webhook_only(Kind::RepoMaintenance, "tolerations"), None);
        assert_eq!(
            unread_by(Kind::NodeAgent, v, "tolerations", Support::Dropped { last: None }),
            "node-agent of Velero 1.18.3 ignores this (no Velero release reads it); the mutating webhook applies it to new data-mover pods"
        );
    }

    #[test]
    fn wording_follows_the_version() {
        let cases = [
            (None, "node-agent fails to start", true),
            (
                Some(VeleroVersion::new(1, 14, 3)),
                "node-agent 1.14.3 logs a warning and ignores the whole config",
                false,
            ),
            (
                Some(VeleroVersion::new(1, 16, 2)),
                "node-agent 1.16.2 logs a warning and ignores the whole config",
                false,
            ),
            (Some(VeleroVersion::new(1, 17, 0)), "node-agent fails to start", true),
            (Some(VeleroVersion::new(1, 18, 1)), "node-agent fails to start", true),
        ];
        for (version, undecodable, by_class) in cases {
            assert_eq!(on_undecodable(version), undecodable, "{version:?}");
            assert_eq!(chooses_affinity_by_storage_class(version), by_class, "{version:?}");
        }
        let empty = [(None, true), (Some(VeleroVersion::new(1, 18, 0)), true), (Some(V1_18_1), false)];
        for (version, matches_none) in empty {
            assert_eq!(empty_selector_matches_no_node(version), matches_none, "{version:?}");
        }
        let data_cases = [
            (
                None,
                r#"node-agent 1.17+ fails to start with "data is not available""#,
                r#"node-agent 1.18+ exits with "more than one keys are found", 1.17 reads a random one"#,
            ),
            (
                Some(VeleroVersion::new(1, 16, 0)),
                r#"node-agent 1.16.0 logs "data is not available" and runs without a config"#,
                "node-agent 1.16.0 reads one of them at random",
            ),
            (
                Some(VeleroVersion::new(1, 17, 2)),
                r#"node-agent 1.17.2 fails to start with "data is not available""#,
                "node-agent 1.17.2 reads one of them at random",
            ),
            (
                Some(VeleroVersion::new(1, 18, 0)),
                r#"node-agent 1.18.0 fails to start with "data is not available""#,
                r#"node-agent 1.18.0 exits with "more than one keys are found""#,
            ),
        ];
        for (version, missing, several) in data_cases {
            assert_eq!(on_missing_data(version), missing, "{version:?}");
            assert_eq!(on_several_data_keys(version), several, "{version:?}");
        }
    }
}
