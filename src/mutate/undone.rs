//! Which edits of the config the webhook cannot make true by itself. node-agent (1.14+) keeps
//! putting the settings it read at its start into every data-mover pod, and the planner only
//! adds to a pod: a removed setting, or a `loadAffinity` selector the new one does not imply,
//! stays on new pods until node-agent restarts. New values it applies fully need no restart.

use std::collections::BTreeSet;

use super::affinity::{choose_entry, implies, requirements};
use crate::config::kind::Kind;
use crate::config::model::{is_velero_key, NodeAgentConfig, SelectorRequirement};
use crate::config::version::{self, VeleroVersion};

/// Whether node-agent of `version` (unknown: any) reads the setting, so that it applied the old value.
fn reads(version: Option<VeleroVersion>, key_path: &str) -> bool {
    version::reads(Kind::NodeAgent, version, key_path)
}

/// One pod setting whose old value node-agent keeps applying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undone {
    /// The setting, as the config spells it (`podLabels[team]` for map keys).
    pub setting: String,
    /// What new pods get, said briefly (the warning adds the restart command).
    pub effect: &'static str,
}

/// The changes from `old` (taken as what node-agent started with) to `new` that new pods will
/// not show until node-agent restarts.
pub fn undone(old: &NodeAgentConfig, new: &NodeAgentConfig, version: Option<VeleroVersion>) -> Vec<Undone> {
    let mut out = Vec::new();
    if reads(version, "loadAffinity") && !load_affinity_implied(old, new, version) {
        out.push(Undone {
            setting: "loadAffinity".into(),
            effect: "node-agent keeps putting its start-up selector into new pods, ANDed with the new one",
        });
    }
    if reads(version, "podResources") && old.pod_resources.is_some() && new.pod_resources.is_none() {
        out.push(Undone {
            setting: "podResources".into(),
            effect: "removed, but node-agent keeps giving new pods the old ones",
        });
    }
    if reads(version, "priorityClassName") && !old.priority_class_name.is_empty() && new.priority_class_name.is_empty()
    {
        out.push(Undone {
            setting: "priorityClassName".into(),
            effect: "removed, but node-agent keeps giving new pods the old class",
        });
    }
    for (path, old_map, new_map) in [
        ("podLabels", &old.pod_labels, &new.pod_labels),
        ("podAnnotations", &old.pod_annotations, &new.pod_annotations),
    ] {
        if !reads(version, path) {
            continue;
        }
        let removed = old_map.keys().filter(|key| !is_velero_key(key) && !new_map.contains_key(*key));
        out.extend(removed.map(|key| Undone {
            setting: format!("{path}[{key}]"),
            effect: "removed, but node-agent keeps putting the old value on new pods",
        }));
    }
    out
}

/// Whether, for every storage class, the entry the webhook applies from `new` implies the one
/// node-agent applies from `old` (up to 1.16: always `old[0]`), so that ANDing them is `new`.
fn load_affinity_implied(old: &NodeAgentConfig, new: &NodeAgentConfig, version: Option<VeleroVersion>) -> bool {
    let first_only = !version::chooses_affinity_by_storage_class(version);
    let named: BTreeSet<&str> =
        old.load_affinity.iter().chain(&new.load_affinity).map(|e| e.storage_class.as_str()).collect();
    // The empty name stands for every class no entry names.
    named.into_iter().chain([""]).all(|class| {
        let class = Some(class).filter(|c| !c.is_empty());
        let started = if first_only { old.load_affinity.first() } else { choose_entry(&old.load_affinity, class) };
        let Some(started) = started else { return true };
        let added: Vec<SelectorRequirement> =
            choose_entry(&new.load_affinity, class).map(requirements).unwrap_or_default();
        requirements(started).iter().all(|r| implies(&added, r))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::check_value;
    use crate::config::validate::Environment;

    fn config(text: &str) -> NodeAgentConfig {
        let checked = check_value(text, &Environment::default());
        assert!(!checked.diagnostics.has_errors(), "{text}: {:?}", checked.diagnostics);
        checked.config
    }

    /// A row: its name, the old and the new config, node-agent's version, the settings undone.
    type Case<'a> = (&'a str, String, String, Option<VeleroVersion>, Vec<&'a str>);

    #[test]
    fn only_what_the_webhook_cannot_apply_is_undone() {
        let zone = |z: &str| format!(r#"{{"nodeSelector": {{"matchLabels": {{"zone": "{z}"}}}}}}"#);
        let v1_16 = Some(VeleroVersion::new(1, 16, 0));
        let v1_17 = Some(VeleroVersion::new(1, 17, 0));
        const GP3_A: &str =
            r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "a"}}, "storageClass": "gp3"}]}"#;
        let cases: Vec<Case> = vec![
            ("no change", "{}".into(), "{}".into(), None, vec![]),
            ("a first loadAffinity", "{}".into(), format!(r#"{{"loadAffinity": [{}]}}"#, zone("a")), None, vec![]),
            ("a different selector", format!(r#"{{"loadAffinity": [{}]}}"#, zone("a")), format!(r#"{{"loadAffinity": [{}]}}"#, zone("b")), None, vec!["loadAffinity"]),
            ("a narrower selector implies the old one", r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}}]}"#.into(), format!(r#"{{"loadAffinity": [{}]}}"#, zone("a")), None, vec![]),
            ("a wider selector does not", format!(r#"{{"loadAffinity": [{}]}}"#, zone("a")), r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}}]}"#.into(), None, vec!["loadAffinity"]),
            ("an added requirement", format!(r#"{{"loadAffinity": [{}]}}"#, zone("a")), r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "a", "role": "backup"}}}]}"#.into(), None, vec![]),
            ("loadAffinity removed", format!(r#"{{"loadAffinity": [{}]}}"#, zone("a")), "{}".into(), None, vec!["loadAffinity"]),
            ("a class entry beside the old global one", format!(r#"{{"loadAffinity": [{}]}}"#, zone("a")), format!(r#"{{"loadAffinity": [{}, {{"nodeSelector": {{"matchLabels": {{"zone": "b"}}}}, "storageClass": "gp3"}}]}}"#, zone("a")), v1_17, vec!["loadAffinity"]),
            ("up to 1.16 the old first entry applies to every class", GP3_A.into(), format!(r#"{{"loadAffinity": [{{"nodeSelector": {{"matchLabels": {{"zone": "a"}}}}, "storageClass": "gp3"}}, {}]}}"#, zone("b")), v1_16, vec!["loadAffinity"]),
            ("from 1.17 a class entry is not applied to others", GP3_A.into(), format!(r#"{{"loadAffinity": [{{"nodeSelector": {{"matchLabels": {{"zone": "a"}}}}, "storageClass": "gp3"}}, {}]}}"#, zone("b")), v1_17, vec![]),
            ("new resources", r#"{"podResources": {"cpuRequest": "1", "cpuLimit": "2", "memoryRequest": "1Gi", "memoryLimit": "2Gi"}}"#.into(), r#"{"podResources": {"cpuRequest": "2", "cpuLimit": "4", "memoryRequest": "1Gi", "memoryLimit": "2Gi"}}"#.into(), None, vec![]),
            ("resources removed", r#"{"podResources": {"cpuRequest": "1", "cpuLimit": "2", "memoryRequest": "1Gi", "memoryLimit": "2Gi"}}"#.into(), "{}".into(), None, vec!["podResources"]),
            ("a new class", r#"{"priorityClassName": "a"}"#.into(), r#"{"priorityClassName": "b"}"#.into(), None, vec![]),
            ("class removed", r#"{"priorityClassName": "a"}"#.into(), "{}".into(), None, vec!["priorityClassName"]),
            ("class removed, on a node-agent that never read it", r#"{"priorityClassName": "a"}"#.into(), "{}".into(), v1_16, vec![]),
            ("labels changed and one removed", r#"{"podLabels": {"a": "1", "b": "2"}}"#.into(), r#"{"podLabels": {"a": "3"}}"#.into(), None, vec!["podLabels[b]"]),
            ("annotations removed", r#"{"podAnnotations": {"x": "1", "y": "2"}}"#.into(), "{}".into(), None, vec!["podAnnotations[x]", "podAnnotations[y]"]),
            ("labels removed on 1.17, which never read them", r#"{"podLabels": {"a": "1"}}"#.into(), "{}".into(), v1_17, vec![]),
        ];
        for (name, old, new, version, want) in cases {
            let got: Vec<String> =
                undone(&config(&old), &config(&new), version).into_iter().map(|u| u.setting).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
