//! Findings about a config value: what is wrong, where (field path, line, column), how bad.

use std::fmt;

use super::json::Pos;
use crate::k8s::field::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Denies admission: node-agent would crash, drop the setting, or break pods.
    Error,
    /// Admits with an admission warning: legal, but probably not what was meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding. `path` is the JSON path inside the config value (empty for the whole value),
/// `message` is the field-error body (`Invalid value: "x": ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: String,
    pub message: String,
    pub pos: Option<Pos>,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>, pos: Option<Pos>) -> Self {
        Self { severity: Severity::Error, path: path.into(), message: message.into(), pos }
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>, pos: Option<Pos>) -> Self {
        Self { severity: Severity::Warning, path: path.into(), message: message.into(), pos }
    }

    pub fn from_field_error(severity: Severity, err: &FieldError, pos: Option<Pos>) -> Self {
        Self { severity, path: err.path.clone(), message: err.body(), pos }
    }

    /// `path: message (line L, column C)`, the form used in admission responses.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.path.is_empty() {
            out.push_str(&self.path);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        if let Some(pos) = self.pos {
            out.push_str(&format!(" ({pos})"));
        }
        out
    }
}

/// All findings of one check, in document order within each severity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    /// Errors first, then by position, so a reader fixes the file top to bottom.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|d| (d.severity, d.pos));
    }
}
