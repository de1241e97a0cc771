//! Velero's ConfigMaps: parsing with positions, Go-compatible decoding, validation. The
//! node-agent ConfigMap's model, decoding and rules are in `model`, `decode` and `validate`;
//! the repository maintenance job and backup repository ConfigMaps have a module each, built
//! from the same parts, and `kind` tells the three apart.
//!
//! Everything here is pure: text in, config and findings out.

pub mod backup_repository;
pub mod by_kind;
#[cfg(test)]
mod cases;
pub mod configmap;
pub mod decode;
pub mod diagnostics;
pub mod json;
pub mod kind;
pub mod load;
pub mod manifest;
pub mod model;
pub mod placement;
pub mod release;
pub mod repo_maintenance;
pub mod third_party;
pub mod validate;
pub mod velero_types;
pub mod version;

use diagnostics::{Diagnostic, Diagnostics};
use model::NodeAgentConfig;
use validate::Environment;
use version::on_undecodable;

/// A checked config value: what Velero would read (`C`, node-agent's config by default), and
/// every finding about it.
#[derive(Debug, Clone, Default)]
pub struct Checked<C = NodeAgentConfig> {
    pub config: C,
    pub diagnostics: Diagnostics,
}

/// Parses, decodes and validates one config value (the text of the ConfigMap's data key).
pub fn check_value(text: &str, env: &Environment) -> Checked {
    check_parsed(text, "node-agent", &on_undecodable(env.velero_version), |root| {
        let mut decoded = decode::decode(root, env.velero_version);
        validate::add_rule_findings(&mut decoded, env);
        (decoded.config, decoded.diagnostics)
    })
}

/// Parses one data value and hands the tree to `check`; a syntax error is the one finding,
/// worded for `reader` (who reads the value) and what it does on a value it cannot decode, with
/// the config left at its default.
pub(crate) fn check_parsed<C: Default>(
    text: &str,
    reader: &str,
    on_undecodable: &str,
    check: impl FnOnce(&json::Node) -> (C, Diagnostics),
) -> Checked<C> {
    match json::parse(text) {
        Ok(root) => {
            let (config, mut diagnostics) = check(&root);
            diagnostics.sort();
            Checked { config, diagnostics }
        }
        Err(err) => {
            let message = format!("{}{}", err.message, syntax_hint(text, reader, on_undecodable));
            let mut diagnostics = Diagnostics::default();
            diagnostics.push(Diagnostic::error("", message, Some(err.pos)));
            Checked { config: C::default(), diagnostics }
        }
    }
}

/// Explains the syntax errors people actually make: YAML, an empty value, a BOM; and what
/// `reader` does on them (`on_undecodable`: node-agent's depends on its version).
fn syntax_hint(text: &str, reader: &str, on_undecodable: &str) -> String {
    let trimmed = text.trim_start_matches([' ', '\t', '\r', '\n']);
    match trimmed.chars().next() {
        None => format!(": the value is empty; {on_undecodable} on it. Write {{}} for no settings"),
        Some('\u{feff}') => {
            format!(": the value starts with a UTF-8 byte order mark, which {reader} rejects; save it without BOM")
        }
        Some(c) if c.is_alphabetic() || c == '-' || c == '#' => {
            format!(": the value must be JSON, not YAML ({reader} reads JSON only); convert it, e.g. yq -o=json")
        }
        _ => format!(" ({on_undecodable} on invalid JSON)"),
    }
}

#[cfg(test)]
mod tests {
    use super::version::VeleroVersion;
    use super::*;

    #[test]
    fn syntax_errors_carry_hints() {
        let cases = [
            ("", "unexpected end of JSON input: the value is empty; node-agent fails to start on it. Write {} for no settings (line 1, column 1)"),
            ("  \n", "unexpected end of JSON input: the value is empty; node-agent fails to start on it. Write {} for no settings (line 2, column 1)"),
            ("\u{feff}{}", "invalid character 'ï' looking for beginning of value: the value starts with a UTF-8 byte order mark, which node-agent rejects; save it without BOM (line 1, column 1)"),
            ("loadAffinity:\n- nodeSelector: {}", "invalid character 'l' looking for beginning of value: the value must be JSON, not YAML (node-agent reads JSON only); convert it, e.g. yq -o=json (line 1, column 1)"),
            ("{\"a\": 1,\n}", "invalid character '}' looking for beginning of object key string (node-agent fails to start on invalid JSON) (line 2, column 1)"),
        ];
        for (input, want) in cases {
            let checked = check_value(input, &Environment::default());
            let rendered: Vec<String> = checked.diagnostics.0.iter().map(|d| d.render()).collect();
            assert_eq!(rendered, vec![want.to_string()], "{input:?}");
        }
    }

    #[test]
    fn what_node_agent_does_on_a_bad_value_follows_the_version() {
        let old = Environment { velero_version: Some(VeleroVersion::new(1, 16, 0)), ..Environment::default() };
        let current = Environment { velero_version: Some(VeleroVersion::new(1, 17, 2)), ..Environment::default() };
        let cases: [(&str, &Environment, &str); 6] = [
            ("", &old, "unexpected end of JSON input: the value is empty; node-agent 1.16.0 logs a warning and ignores the whole config on it. Write {} for no settings (line 1, column 1)"),
            ("", &current, "unexpected end of JSON input: the value is empty; node-agent fails to start on it. Write {} for no settings (line 1, column 1)"),
            ("{\"a\": 1,\n}", &old, "invalid character '}' looking for beginning of object key string (node-agent 1.16.0 logs a warning and ignores the whole config on invalid JSON) (line 2, column 1)"),
            ("{\"a\": 1,\n}", &current, "invalid character '}' looking for beginning of object key string (node-agent fails to start on invalid JSON) (line 2, column 1)"),
            (r#"{"podLabels": {"a": 1}}"#, &old, "podLabels[a]: Invalid value: 1: must be a string (quote it), not a number (node-agent 1.16.0 logs a warning and ignores the whole config on this) (line 1, column 21)"),
            (r#"{"podLabels": {"a": 1}}"#, &current, "podLabels[a]: Invalid value: 1: must be a string (quote it), not a number (node-agent fails to start on this) (line 1, column 21)"),
        ];
        for (input, env, want) in cases {
            let checked = check_value(input, env);
            let rendered: Vec<String> = checked.diagnostics.errors().map(|d| d.render()).collect();
            assert_eq!(rendered, vec![want.to_string()], "{input:?} {:?}", env.velero_version);
        }
    }
}
