//! The offline checker behind `node-agent-webhook check`: the validating webhook's rules,
//! applied to files, with every finding pointing at a line and column of the file itself.

use serde::Serialize;

use crate::config::by_kind;
use crate::config::diagnostics::{Diagnostic, Diagnostics, Severity};
use crate::config::json::Pos;
use crate::config::kind::{Kind, Names};
use crate::config::manifest::{self, ConfigMapDoc, DataValue, Input};
use crate::config::validate::Environment;

/// Which ConfigMaps of a manifest file to check, and as which kind.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The ConfigMaps' names; each name says its kind.
    pub names: Names,
    /// Every ConfigMap, not only the named ones (of node-agent's kind, unless named otherwise).
    pub all: bool,
    /// The kind of every value and ConfigMap checked, whatever its name.
    pub kind: Option<Kind>,
}

impl Selection {
    /// The kind to check a ConfigMap named `name` as, if it is selected.
    fn kind_of(&self, name: &str) -> Option<Kind> {
        let by_name = self.names.kind_of(name);
        match (self.kind, by_name) {
            (Some(kind), Some(_)) => Some(kind),
            (_, Some(kind)) => Some(kind),
            (kind, None) if self.all => Some(kind.unwrap_or(Kind::NodeAgent)),
            (_, None) => None,
        }
    }

    /// The names looked for, as the "not found" error lists them.
    fn wanted(&self) -> String {
        let names: Vec<String> =
            Kind::ALL.iter().filter_map(|kind| self.names.get(*kind)).map(|name| format!("{name:?}")).collect();
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "(none)".to_string(),
        }
    }
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
    #[error("{file}: no ConfigMap named {names} (use --configmap NAME or --all)")]
    NotFound { file: String, names: String },
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
            let diagnostics = by_kind::check_value(selection.kind.unwrap_or(Kind::NodeAgent), text, env);
            for d in &diagnostics.0 {
                findings.push(finding(file, d, d.pos.unwrap_or(START), String::new(), None));
            }
        }
        Input::Manifests(configmaps) => {
            let chosen: Vec<(&ConfigMapDoc, Kind)> =
                configmaps.iter().filter_map(|cm| Some((cm, selection.kind_of(&cm.name)?))).collect();
            if chosen.is_empty() {
                let names = if selection.all { "(any)".to_string() } else { selection.wanted() };
                return Err(CheckError::NotFound { file: file.to_string(), names });
            }
            for (cm, kind) in chosen {
                findings.extend(check_document(file, cm, kind, env));
            }
        }
    }
    findings.sort_by_key(|f| (f.line, f.column));
    Ok(findings)
}

const START: Pos = Pos { line: 1, column: 1 };

fn check_document(file: &str, cm: &ConfigMapDoc, kind: Kind, env: &Environment) -> Vec<Finding> {
    let result = by_kind::check_configmap_of(kind, &cm.contents(), env);
    let mut findings: Vec<Finding> = result
        .structure
        .0
        .iter()
        .map(|d| finding(file, d, cm.data_pos.unwrap_or(cm.pos), String::new(), None))
        .collect();
    for (key, checked) in &result.values {
        if let Some(value) = cm.data.iter().find(|d| &d.key == key) {
            findings.extend(value_findings(file, value, &checked.diagnostics));
        }
    }
    findings
}

/// A value's findings; one with no position (about the data key itself) is placed at the key.
fn value_findings(file: &str, value: &DataValue, diagnostics: &Diagnostics) -> Vec<Finding> {
    let prefix = format!("data[{}]", value.key);
    diagnostics
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
