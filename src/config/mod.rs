//! The node-agent ConfigMap: parsing with positions, Go-compatible decoding, validation.
//!
//! Everything here is pure: text in, config and findings out.

pub mod configmap;
pub mod decode;
pub mod diagnostics;
pub mod json;
pub mod load;
pub mod manifest;
pub mod model;
pub mod third_party;
pub mod validate;
pub mod version;

use diagnostics::{Diagnostic, Diagnostics};
use model::NodeAgentConfig;
use validate::Environment;
use version::{on_undecodable, VeleroVersion};

/// A checked config value: what node-agent would read, and every finding about it.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub config: NodeAgentConfig,
    pub diagnostics: Diagnostics,
}

/// Parses, decodes and validates one config value (the text of the ConfigMap's data key).
pub fn check_value(text: &str, env: &Environment) -> Checked {
    let root = match json::parse(text) {
        Ok(root) => root,
        Err(err) => {
            let message = format!("{}{}", err.message, syntax_hint(text, env.velero_version));
            let mut diagnostics = Diagnostics::default();
            diagnostics.push(Diagnostic::error("", message, Some(err.pos)));
            return Checked { config: NodeAgentConfig::default(), diagnostics };
        }
    };
    let mut decoded = decode::decode(&root, env.velero_version);
    validate::add_rule_findings(&mut decoded, env);
    decoded.diagnostics.sort();
    Checked { config: decoded.config, diagnostics: decoded.diagnostics }
}

/// Explains the syntax errors people actually make: YAML, an empty value, a BOM; and what
/// node-agent of `version` does on them.
fn syntax_hint(text: &str, version: Option<VeleroVersion>) -> String {
    let trimmed = text.trim_start_matches([' ', '\t', '\r', '\n']);
    match trimmed.chars().next() {
        None => format!(": the value is empty; {} on it. Write {{}} for no settings", on_undecodable(version)),
        Some('\u{feff}') => {
            ": the value starts with a UTF-8 byte order mark, which node-agent rejects; save it without BOM".to_string()
        }
        Some(c) if c.is_alphabetic() || c == '-' || c == '#' => {
            ": the value must be JSON, not YAML (node-agent reads JSON only); convert it, e.g. yq -o=json".to_string()
        }
        _ => format!(" ({} on invalid JSON)", on_undecodable(version)),
    }
}

#[cfg(test)]
mod tests {
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
