//! Checks a whole node-agent ConfigMap: node-agent reads exactly one `data` key, whatever
//! its name, and ignores `binaryData`; the value is then checked as a config.

use std::collections::BTreeMap;

use super::diagnostics::{Diagnostic, Diagnostics};
use super::validate::Environment;
use super::version;
use super::{check_value, Checked};
use crate::k8s::field::go_quote;

/// The fields of a ConfigMap object the check reads (its `data`, and the keys of its
/// `binaryData`), as paths of keys, so a caller may hand over the object pruned to them.
pub const CONFIGMAP_FIELDS: &[&[&str]] = &[&["data"], &["binaryData"]];

/// The findings for one ConfigMap: structural ones, and each data value's own.
#[derive(Debug, Clone, Default)]
pub struct ConfigMapCheck {
    /// About `data`/`binaryData` as a whole; paths are `data` or `binaryData[...]`.
    pub structure: Diagnostics,
    /// Each data key with its value's check; paths inside are relative to the value.
    pub values: Vec<(String, Checked)>,
}

impl ConfigMapCheck {
    pub fn has_errors(&self) -> bool {
        self.structure.has_errors() || self.values.iter().any(|(_, c)| c.diagnostics.has_errors())
    }

    /// The config node-agent would run with, if the ConfigMap is valid.
    pub fn config(&self) -> Option<&super::model::NodeAgentConfig> {
        match self.values.as_slice() {
            [(_, checked)] if !self.has_errors() => Some(&checked.config),
            _ => None,
        }
    }

    /// Every finding as `(severity, "data[key]: path: message (line L, column C)")`, errors first.
    pub fn rendered(&self) -> Vec<(super::diagnostics::Severity, String)> {
        let mut out: Vec<_> = self.structure.0.iter().map(|d| (d.severity, d.render())).collect();
        for (key, checked) in &self.values {
            for d in &checked.diagnostics.0 {
                out.push((d.severity, format!("data[{key}]: {}", d.render())));
            }
        }
        out.sort_by_key(|(severity, _)| *severity);
        out
    }
}

/// Checks the `data` and `binaryData` of a node-agent ConfigMap.
pub fn check_configmap(data: &BTreeMap<String, String>, binary_keys: &[String], env: &Environment) -> ConfigMapCheck {
    let mut structure = Diagnostics::default();
    match (data.len(), binary_keys.is_empty()) {
        (0, false) => structure.push(Diagnostic::error(
            "data",
            format!(
                "Required value: node-agent reads the JSON config from data and ignores binaryData ({}); move it into data",
                binary_keys.iter().map(|k| format!("binaryData[{k}]")).collect::<Vec<_>>().join(", ")
            ),
            None,
        )),
        (0, true) => structure.push(Diagnostic::error(
            "data",
            format!(
                "Required value: must hold exactly one key with the JSON config; {}",
                version::on_missing_data(env.velero_version)
            ),
            None,
        )),
        (1, false) => structure.push(Diagnostic::warning(
            "binaryData",
            "node-agent ignores binaryData; only the data key is read",
            None,
        )),
        (1, true) => {}
        (_, _) => structure.push(Diagnostic::error(
            "data",
            format!(
                "Invalid value: [{}]: must hold exactly one key: {}; keep one JSON value",
                data.keys().map(|k| go_quote(k)).collect::<Vec<_>>().join(", "),
                version::on_several_data_keys(env.velero_version)
            ),
            None,
        )),
    }
    let values = data.iter().map(|(key, text)| (key.clone(), check_value(text, env))).collect();
    ConfigMapCheck { structure, values }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostics::Severity;
    use crate::config::version::VeleroVersion;

    fn check(data: &[(&str, &str)], binary: &[&str]) -> Vec<(Severity, String)> {
        let data = data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let binary: Vec<String> = binary.iter().map(|k| k.to_string()).collect();
        check_configmap(&data, &binary, &Environment::default()).rendered()
    }

    #[test]
    fn structure_messages_follow_the_velero_version() {
        let data: BTreeMap<String, String> =
            [("a", "{}"), ("b", "{}")].map(|(k, v)| (k.to_string(), v.to_string())).into();
        let env = |v| Environment { velero_version: Some(v), ..Environment::default() };
        let cases = [
            (VeleroVersion::new(1, 16, 0), "node-agent 1.16.0 reads one of them at random"),
            (VeleroVersion::new(1, 18, 1), "node-agent 1.18.1 exits with \"more than one keys are found\""),
        ];
        for (version, want) in cases {
            let rendered = check_configmap(&data, &[], &env(version)).rendered();
            assert_eq!(
                rendered.first().map(|(_, text)| text.as_str()),
                Some(
                    format!(
                        "data: Invalid value: [\"a\", \"b\"]: must hold exactly one key: {want}; keep one JSON value"
                    )
                    .as_str()
                ),
                "{version}"
            );
        }
        let rendered = check_configmap(&BTreeMap::new(), &[], &env(VeleroVersion::new(1, 16, 0))).rendered();
        assert_eq!(
            rendered,
            [(
                Severity::Error,
                "data: Required value: must hold exactly one key with the JSON config; node-agent 1.16.0 logs \"data is not available\" and runs without a config".to_string()
            )]
        );
    }

    #[test]
    fn structure_rules() {
        use Severity::*;
        type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>, Vec<(Severity, &'a str)>);
        let cases: Vec<Case> = vec![
            (vec![("config", "{}")], vec![], vec![]),
            (
                vec![],
                vec![],
                vec![(Error, "data: Required value: must hold exactly one key with the JSON config; node-agent 1.17+ fails to start with \"data is not available\"")],
            ),
            (
                vec![],
                vec!["config.json"],
                vec![(Error, "data: Required value: node-agent reads the JSON config from data and ignores binaryData (binaryData[config.json]); move it into data")],
            ),
            (
                vec![("config", "{}")],
                vec!["extra"],
                vec![(Warning, "binaryData: node-agent ignores binaryData; only the data key is read")],
            ),
            (
                vec![("a", "{}"), ("b", "{}")],
                vec![],
                vec![(Error, "data: Invalid value: [\"a\", \"b\"]: must hold exactly one key: node-agent 1.18+ exits with \"more than one keys are found\", 1.17 reads a random one; keep one JSON value")],
            ),
        ];
        for (data, binary, want) in cases {
            let want: Vec<(Severity, String)> = want.into_iter().map(|(s, m)| (s, m.to_string())).collect();
            assert_eq!(check(&data, &binary), want, "{data:?} {binary:?}");
        }
    }

    #[test]
    fn value_findings_are_prefixed_with_the_data_key() {
        let found = check(&[("config", "{\n \"podAnotations\": {}\n}")], &[]);
        assert_eq!(found.len(), 1);
        assert!(found[0].1.starts_with("data[config]: podAnotations: Unknown field"), "{}", found[0].1);
        assert!(found[0].1.ends_with("(line 2, column 2)"), "{}", found[0].1);
    }
}
