//! Velero's ConfigMaps: parsing with positions, Go-compatible decoding, validation. The
//! node-agent ConfigMap's model, decoding and rules are in `model`, `decode` and `validate`;
//! the repository maintenance job and backup repository ConfigMaps have a module each, built
//! from the same parts, and `kind` tells the three apart.
//!
//! Everything here is pure: text in, config and findings out.

pub mod backup_repository;
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
pub mod repo_maintenance;
pub mod validate;
pub mod version;

use diagnostics::{Diagnostic, Diagnostics};
use model::NodeAgentConfig;
use validate::Environment;

/// A checked config value: what Velero would read (`C`, node-agent's config by default), and
/// every finding about it.
#[derive(Debug, Clone, Default)]
pub struct Checked<C = NodeAgentConfig> {
    pub config: C,
    pub diagnostics: Diagnostics,
}

/// Parses, decodes and validates one config value (the text of the ConfigMap's data key).
pub fn check_value(text: &str, env: &Environment) -> Checked {
    check_parsed(text, "node-agent", |root| {
        let mut decoded = decode::decode(root);
        validate::add_rule_findings(&mut decoded, env);
        (decoded.config, decoded.diagnostics)
    })
}

/// Parses one data value and hands the tree to `check`; a syntax error is the one finding,
/// worded for `reader` (who reads the value), with the config left at its default.
pub(crate) fn check_parsed<C: Default>(
    text: &str,
    reader: &str,
    check: impl FnOnce(&json::Node) -> (C, Diagnostics),
) -> Checked<C> {
    match json::parse(text) {
        Ok(root) => {
            let (config, mut diagnostics) = check(&root);
            diagnostics.sort();
            Checked { config, diagnostics }
        }
        Err(err) => {
            let message = format!("{}{}", err.message, syntax_hint(text, reader));
            let mut diagnostics = Diagnostics::default();
            diagnostics.push(Diagnostic::error("", message, Some(err.pos)));
            Checked { config: C::default(), diagnostics }
        }
    }
}

/// Explains the syntax errors people actually make: YAML, an empty value, a BOM.
fn syntax_hint(text: &str, reader: &str) -> String {
    let trimmed = text.trim_start_matches([' ', '\t', '\r', '\n']);
    match trimmed.chars().next() {
        None => format!(": the value is empty; {reader} fails to start on it. Write {{}} for no settings"),
        Some('\u{feff}') => {
            format!(": the value starts with a UTF-8 byte order mark, which {reader} rejects; save it without BOM")
        }
        Some(c) if c.is_alphabetic() || c == '-' || c == '#' => {
            format!(": the value must be JSON, not YAML ({reader} reads JSON only); convert it, e.g. yq -o=json")
        }
        _ => format!(" ({reader} fails to start on invalid JSON)"),
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
            ("\u{feff}{}", "invalid character '\\ufeff' looking for beginning of value: the value starts with a UTF-8 byte order mark, which node-agent rejects; save it without BOM (line 1, column 1)"),
            ("loadAffinity:\n- nodeSelector: {}", "invalid character 'l' looking for beginning of value: the value must be JSON, not YAML (node-agent reads JSON only); convert it, e.g. yq -o=json (line 1, column 1)"),
            ("{\"a\": 1,\n}", "invalid character '}' looking for beginning of object key string (node-agent fails to start on invalid JSON) (line 2, column 1)"),
        ];
        for (input, want) in cases {
            let checked = check_value(input, &Environment::default());
            let rendered: Vec<String> = checked.diagnostics.0.iter().map(|d| d.render()).collect();
            assert_eq!(rendered, vec![want.to_string()], "{input:?}");
        }
    }
}
