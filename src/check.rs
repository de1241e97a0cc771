//! The offline checker behind `node-agent-webhook check`: the validating webhook's rules,
//! applied to files, with every finding pointing at a line and column of the file itself.

use serde::Serialize;

use crate::config::configmap::check_configmap;
use crate::config::diagnostics::{Diagnostic, Severity};
use crate::config::json::Pos;
use crate::config::manifest::{self, ConfigMapDoc, DataValue, Input};
use crate::config::validate::Environment;
use crate::config::{check_value, Checked};

/// Which ConfigMaps of a manifest file to check.
#[derive(Debug, Clone)]
pub enum Selection {
    Named(String),
    All,
}

/// One finding, located in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub severity: &'static str,
    /// The field path, e.g. `data[config].loadAffinity[0].storageClass`; empty for the whole value.
    pub path: String,
    pub message: String,
}

impl Finding {
    /// `FILE:LINE:COL: error: PATH: message`, the form editors and CI annotators read.
    pub fn render(&self) -> String {
        let path = if self.path.is_empty() { String::new() } else { format!("{}: ", self.path) };
        format!("{}:{}:{}: {}: {path}{}", self.file, self.line, self.column, self.severity, self.message)
    }

    pub fn is_error(&self) -> bool {
        self.severity == "error"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("{file}:{}:{}: error: {source}", source.pos().line, source.pos().column)]
    Manifest { file: String, source: manifest::ManifestError },
    #[error("{file}: no ConfigMap named {name:?} (use --configmap NAME or --all)")]
    NotFound { file: String, name: String },
}

/// Checks one file's text: a config value itself, or manifests holding the ConfigMap.
pub fn findings_in_file(
    file: &str,
    text: &str,
    selection: &Selection,
    env: &Environment,
) -> Result<Vec<Finding>, CheckError> {
    let input = manifest::read_input(text).map_err(|source| CheckError::Manifest { file: file.to_string(), source })?;
    let mut findings = Vec::new();
    match input {
        Input::Config => {
            let checked = check_value(text, env);
            for d in &checked.diagnostics.0 {
                findings.push(finding(file, d, d.pos.unwrap_or(START), String::new(), None));
            }
        }
        Input::Manifests(configmaps) => {
            let chosen: Vec<&ConfigMapDoc> = configmaps
                .iter()
                .filter(|cm| match selection {
                    Selection::All => true,
                    Selection::Named(name) => &cm.name == name,
                })
                .collect();
            if chosen.is_empty() {
                let name = match selection {
                    Selection::Named(name) => name.clone(),
                    Selection::All => "(any)".to_string(),
                };
                return Err(CheckError::NotFound { file: file.to_string(), name });
            }
            for cm in chosen {
                findings.extend(check_document(file, cm, env));
            }
        }
    }
    findings.sort_by_key(|f| (f.line, f.column));
    Ok(findings)
}

const START: Pos = Pos { line: 1, column: 1 };

fn check_document(file: &str, cm: &ConfigMapDoc, env: &Environment) -> Vec<Finding> {
    let data = cm.data.iter().map(|d| (d.key.clone(), d.value.clone())).collect();
    let result = check_configmap(&data, &cm.binary_data_keys, env);
    let mut findings: Vec<Finding> = result
        .structure
        .0
        .iter()
        .map(|d| finding(file, d, cm.data_pos.unwrap_or(cm.pos), String::new(), None))
        .collect();
    for (key, checked) in &result.values {
        if let Some(value) = cm.data.iter().find(|d| &d.key == key) {
            findings.extend(value_findings(file, value, checked));
        }
    }
    findings
}

fn value_findings(file: &str, value: &DataValue, checked: &Checked) -> Vec<Finding> {
    let prefix = format!("data[{}]", value.key);
    checked
        .diagnostics
        .0
        .iter()
        .map(|d| {
            let path = if d.path.is_empty() { prefix.clone() } else { format!("{prefix}.{}", d.path) };
            let (pos, exact) = match d.pos {
                Some(inner) => value.map_position(inner),
                None => (value.key_pos, true),
            };
            let inner = if exact { None } else { d.pos };
            finding(file, d, pos, path, inner)
        })
        .collect()
}

/// Builds a finding; the message drops its own `(line, column)` (the prefix says it), except
/// when the file position is only the start of the value: then the inner one is kept.
fn finding(file: &str, d: &Diagnostic, pos: Pos, path: String, inner: Option<Pos>) -> Finding {
    let mut message = d.message.clone();
    if let Some(inner) = inner {
        message.push_str(&format!(" (at {inner} of the value)"));
    }
    let path = if path.is_empty() { d.path.clone() } else { path };
    Finding {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        severity: match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        path,
        message,
    }
}
