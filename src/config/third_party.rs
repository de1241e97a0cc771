//! Velero's in-tree third-party labels and annotations (`ThirdPartyLabels` and
//! `ThirdPartyAnnotations` in Velero's `pkg/util/third_party.go`, v1.18.3): node-agent copies
//! them from its DaemonSet's pod template into data-mover pods only while `podLabels`
//! (`podAnnotations`) is empty. Velero 1.18 reads those maps, so setting one supersedes the
//! in-tree keys it does not list; older node-agents keep copying them. The webhook applies
//! 1.18's rule on every version, so one ConfigMap means the same pods everywhere.

use std::collections::BTreeMap;

/// `pkg/util/third_party.go`: the labels node-agent copies (Azure workload identity).
pub const IN_TREE_LABELS: [&str; 1] = ["azure.workload.identity/use"];
/// The annotations node-agent copies (kube2iam's role).
pub const IN_TREE_ANNOTATIONS: [&str; 1] = ["iam.amazonaws.com/role"];
/// The keys of the DaemonSet's tolerations node-agent copies into data-mover pods, from 1.17.0
/// (`ThirdPartyTolerations`; Velero 1.16 copies none).
pub const IN_TREE_TOLERATIONS: [&str; 2] = ["kubernetes.azure.com/scalesetpriority", "CriticalAddonsOnly"];

/// The in-tree keys that `configured` supersedes: all those it does not list, once it is set
/// (Velero tests `len(map) > 0`).
pub fn superseded<'k>(in_tree: &[&'k str], configured: &BTreeMap<String, String>) -> Vec<&'k str> {
    if configured.is_empty() {
        return Vec::new();
    }
    in_tree.iter().copied().filter(|key| !configured.contains_key(*key)).collect()
}

/// The in-tree keys on node-agent's DaemonSet pod template, with their values: what
/// node-agent would copy into its pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateKeys {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl TemplateKeys {
    /// Keeps only the in-tree keys of a pod template's labels and annotations.
    pub fn of(labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> Self {
        let pick = |map: &BTreeMap<String, String>, keys: &[&str]| {
            map.iter().filter(|(key, _)| keys.contains(&key.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Self { labels: pick(labels, &IN_TREE_LABELS), annotations: pick(annotations, &IN_TREE_ANNOTATIONS) }
    }
}

/// One warning per in-tree key the DaemonSet's template carries and the config drops: the
/// data-mover pods would lose it (for example Azure workload identity, or the IAM role).
pub fn dropped_template_keys(
    pod_labels: &BTreeMap<String, String>,
    pod_annotations: &BTreeMap<String, String>,
    template: &TemplateKeys,
) -> Vec<String> {
    let each = |setting: &str, what: &str, in_tree: &[&str], configured, carried: &BTreeMap<String, String>| {
        superseded(in_tree, configured)
            .into_iter()
            .filter_map(|key| carried.get(key).map(|value| (key, value)))
            .map(|(key, value)| {
                format!(
                    "{setting} does not list {key} ({value:?}, {what} on the node-agent DaemonSet's pod template): data-mover pods lose it once {setting} is set (Velero 1.18's rule, applied here on every version); list it to keep it"
                )
            })
            .collect::<Vec<_>>()
    };
    let mut out = each("podLabels", "a label", &IN_TREE_LABELS, pod_labels, &template.labels);
    out.extend(each("podAnnotations", "an annotation", &IN_TREE_ANNOTATIONS, pod_annotations, &template.annotations));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Entries<'a> = &'a [(&'a str, &'a str)];

    fn map(entries: Entries) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_configured_map_supersedes_the_in_tree_keys_it_does_not_list() {
        let cases: [(Entries, &[&str]); 4] = [
            (&[], &[]),
            (&[("team", "a")], &["azure.workload.identity/use"]),
            (&[("team", "a"), ("azure.workload.identity/use", "true")], &[]),
            (&[("azure.workload.identity/use", "false")], &[]),
        ];
        for (configured, want) in cases {
            assert_eq!(superseded(&IN_TREE_LABELS, &map(configured)), want, "{configured:?}");
        }
        assert_eq!(superseded(&IN_TREE_ANNOTATIONS, &map(&[("a", "b")])), ["iam.amazonaws.com/role"]);
    }

    #[test]
    fn warns_for_each_template_key_the_config_drops() {
        let template = TemplateKeys::of(
            &map(&[("azure.workload.identity/use", "true"), ("name", "node-agent")]),
            &map(&[("iam.amazonaws.com/role", "velero-role"), ("other", "x")]),
        );
        assert_eq!(template.labels, map(&[("azure.workload.identity/use", "true")]));
        assert_eq!(template.annotations, map(&[("iam.amazonaws.com/role", "velero-role")]));
        let label = r#"podLabels does not list azure.workload.identity/use ("true", a label on the node-agent DaemonSet's pod template): data-mover pods lose it once podLabels is set (Velero 1.18's rule, applied here on every version); list it to keep it"#;
        assert!(label.chars().count() <= 256, "kubectl shows it whole");
        let annotation = r#"podAnnotations does not list iam.amazonaws.com/role ("velero-role", an annotation"#;
        let cases: [(Entries, Entries, &TemplateKeys, usize); 6] = [
            (&[], &[], &template, 0),
            (&[("team", "a")], &[], &template, 1),
            (&[("team", "a")], &[("a", "b")], &template, 2),
            (
                &[("team", "a"), ("azure.workload.identity/use", "true")],
                &[("iam.amazonaws.com/role", "r")],
                &template,
                0,
            ),
            (&[("team", "a")], &[("a", "b")], &TemplateKeys::default(), 0),
            (&[], &[("a", "b")], &template, 1),
        ];
        for (labels, annotations, template, count) in cases {
            let found = dropped_template_keys(&map(labels), &map(annotations), template);
            assert_eq!(found.len(), count, "{labels:?} {annotations:?}: {found:?}");
            for warning in &found {
                assert!(warning == label || warning.starts_with(annotation), "{warning}");
            }
        }
    }
}
