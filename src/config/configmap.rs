//! Checks a whole node-agent ConfigMap: node-agent reads exactly one `data` key, whatever
//! its name, and ignores `binaryData`; the value is then checked as a config. The findings
//! about `data` as a whole are shared with Velero's other ConfigMaps ([`data_structure`]).

use std::collections::BTreeMap;

use super::diagnostics::{Diagnostic, Diagnostics};
use super::kind::Kind;
use super::model::NodeAgentConfig;
use super::validate::Environment;
use super::velero_types;
use super::version::{self, VeleroVersion};
use super::{check_value, Checked};
use crate::k8s::field::go_quote;

/// The fields of a ConfigMap object the check reads (its `data`, and the keys of its
/// `binaryData`), as paths of keys, so a caller may hand over the object pruned to them.
pub const CONFIGMAP_FIELDS: &[&[&str]] = &[&["data"], &["binaryData"]];

/// What Velero reads of a ConfigMap: its `data`, and which keys `binaryData` has (their values
/// are never read). The one shape of a ConfigMap's contents, whichever of the three it is and
/// wherever it comes from (a review, a watch, a manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConfigMapData {
    pub data: BTreeMap<String, String>,
    pub binary_keys: Vec<String>,
}

impl ConfigMapData {
    /// The bytes of its keys and values, which bound what a cache of checks holds.
    pub fn bytes(&self) -> usize {
        self.data.iter().map(|(key, value)| key.len() + value.len()).sum::<usize>()
            + self.binary_keys.iter().map(String::len).sum::<usize>()
    }
}

/// The findings for one ConfigMap: structural ones, and each data value's own. `C` is the
/// config type of the ConfigMap's kind; `()` once only the findings matter ([`Self::findings`]).
#[derive(Debug, Clone, Default)]
pub struct ConfigMapCheck<C = NodeAgentConfig> {
    /// About `data`/`binaryData` as a whole, and about data keys; paths are `data`,
    /// `data[key]` or `binaryData[...]`.
    pub structure: Diagnostics,
    /// Each data key with its value's check; paths inside are relative to the value.
    pub values: Vec<(String, Checked<C>)>,
}

/// A ConfigMap's findings, whatever its kind.
pub type Findings = ConfigMapCheck<()>;

impl ConfigMapCheck {
    /// The config node-agent would run with, if the ConfigMap is valid.
    pub fn config(&self) -> Option<&NodeAgentConfig> {
        match self.values.as_slice() {
            [(_, checked)] if !self.has_errors() => Some(&checked.config),
            _ => None,
        }
    }
}

impl<C> ConfigMapCheck<C> {
    pub fn has_errors(&self) -> bool {
        self.structure.has_errors() || self.values.iter().any(|(_, c)| c.diagnostics.has_errors())
    }

    /// The findings without the configs, so callers can treat every kind alike.
    pub fn findings(self) -> Findings {
        let values = self
            .values
            .into_iter()
            .map(|(key, checked)| (key, Checked { config: (), diagnostics: checked.diagnostics }))
            .collect();
        ConfigMapCheck { structure: self.structure, values }
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

/// What a ConfigMap kind's reader does with `data`, for the findings about it as a whole.
pub(crate) struct DataRules {
    pub kind: Kind,
    /// Who reads the ConfigMap, as messages name it.
    pub reader: &'static str,
    /// node-agent reads exactly one key; Velero's other ConfigMaps are keyed.
    pub one_key: bool,
    /// What `data` must hold, for the message when it holds nothing.
    pub must_hold: &'static str,
    /// What the reader does when `data` holds nothing, for that Velero version.
    pub on_missing_data: fn(Option<VeleroVersion>) -> String,
    /// What an older Velero, which does not read the ConfigMap, uses instead ("" for nothing).
    pub before_first_release: &'static str,
}

/// What the Velero server does without `data` in its ConfigMaps, on every version it reads them.
pub(crate) fn velero_server_on_missing_data(_: Option<VeleroVersion>) -> String {
    "the Velero server 1.17+ fails to start with \"data is not available\"".to_string()
}

const NODE_AGENT_DATA: DataRules = DataRules {
    kind: Kind::NodeAgent,
    reader: "node-agent",
    one_key: true,
    must_hold: "must hold exactly one key with the JSON config",
    on_missing_data: version::on_missing_data,
    before_first_release: "",
};

/// A keyed ConfigMap (Velero's other two): the findings about `data` as a whole, a warning
/// when the Velero version predates the first release that reads the ConfigMap, and each key's value as `check`
/// finds it, headed by what `key_finding` says about the key itself.
pub(crate) fn check_keyed<C>(
    configmap: &ConfigMapData,
    env: &Environment,
    rules: &DataRules,
    key_finding: fn(&str) -> Option<Diagnostic>,
    check: impl Fn(&str, &str) -> Checked<C>,
) -> ConfigMapCheck<C> {
    let mut structure = data_structure(configmap, rules, env.velero_version);
    let first = velero_types::first_release(rules.kind);
    if let Some((version, first)) = env.velero_version.zip(first).filter(|(version, first)| version < first) {
        structure.push(Diagnostic::warning(
            "data",
            format!("Velero {version} does not read this ConfigMap (since {first}){}", rules.before_first_release),
            None,
        ));
    }
    let values = configmap
        .data
        .iter()
        .map(|(key, text)| {
            let mut checked = check(key, text);
            if let Some(finding) = key_finding(key) {
                checked.diagnostics.0.insert(0, finding);
            }
            (key.clone(), checked)
        })
        .collect();
    ConfigMapCheck { structure, values }
}

/// Checks the `data` and `binaryData` of a node-agent ConfigMap.
pub fn check_node_agent(configmap: &ConfigMapData, env: &Environment) -> ConfigMapCheck {
    let structure = data_structure(configmap, &NODE_AGENT_DATA, env.velero_version);
    let values = configmap.data.iter().map(|(key, text)| (key.clone(), check_value(text, env))).collect();
    ConfigMapCheck { structure, values }
}

/// The findings about `data` and `binaryData` as a whole: Velero reads only `data`, and fails
/// to start (1.17+) when it is empty.
pub(crate) fn data_structure(
    configmap: &ConfigMapData,
    rules: &DataRules,
    version: Option<VeleroVersion>,
) -> Diagnostics {
    let ConfigMapData { data, binary_keys } = configmap;
    let reader = rules.reader;
    let mut structure = Diagnostics::default();
    match (data.len(), binary_keys.is_empty()) {
        (0, false) => structure.push(Diagnostic::error(
            "data",
            format!(
                "Required value: {reader} reads the JSON config from data and ignores binaryData ({}); move it into data",
                binary_keys.iter().map(|k| format!("binaryData[{k}]")).collect::<Vec<_>>().join(", ")
            ),
            None,
        )),
        (0, true) => structure.push(Diagnostic::error(
            "data",
            format!(
                "Required value: {}; {}",
                rules.must_hold,
                (rules.on_missing_data)(version)
            ),
            None,
        )),
        (n, _) if rules.one_key && n > 1 => structure.push(Diagnostic::error(
            "data",
            format!(
                "Invalid value: [{}]: must hold exactly one key: {}; keep one JSON value",
                data.keys().map(|k| go_quote(k)).collect::<Vec<_>>().join(", "),
                version::on_several_data_keys(version)
            ),
            None,
        )),
        (_, false) => structure.push(Diagnostic::warning(
            "binaryData",
            format!(
                "{reader} ignores binaryData; only the data key{} read",
                if rules.one_key { " is" } else { "s are" }
            ),
            None,
        )),
        (_, true) => {}
    }
    structure
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostics::Severity;
    use crate::config::version::VeleroVersion;

    fn check(data: &[(&str, &str)], binary: &[&str]) -> Vec<(Severity, String)> {
        let data = data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let binary: Vec<String> = binary.iter().map(|k| k.to_string()).collect();
        check_node_agent(&ConfigMapData { data, binary_keys: binary }, &Environment::default()).rendered()
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
            let configmap = ConfigMapData { data: data.clone(), binary_keys: Vec::new() };
            let rendered = check_node_agent(&configmap, &env(version)).rendered();
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
        let rendered = check_node_agent(&ConfigMapData::default(), &env(VeleroVersion::new(1, 16, 0))).rendered();
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
