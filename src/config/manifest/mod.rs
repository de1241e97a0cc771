//! Finds the ConfigMaps in a file given to the checker and maps positions inside a data value
//! back to the file.
//!
//! People check what they are about to apply: the bare JSON config, a JSON manifest, or the YAML
//! that `kubectl create configmap --dry-run=client -o yaml`, `kustomize build` or `helm template`
//! print. A finding at line 3 of a data value is useless unless it points at the line of the
//! file, so every data value carries a map from its decoded characters to where they were
//! written: the escapes of a JSON string literal, the indentation of a YAML block scalar, the
//! folding and escapes of YAML flow scalars. Each map is built by re-decoding the raw text and is
//! kept only if it reproduces the parser's value exactly; otherwise positions fall back to the
//! start of the scalar and say so.

mod json_manifest;
mod yaml_manifest;
mod yaml_scalar;

use crate::config::configmap::ConfigMapData;
use crate::config::json::{self, Pos};
use json_manifest::json_manifests;
use yaml_manifest::yaml_input;

/// What a file given to `check` holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The whole text is a config value (the JSON that goes into the ConfigMap's data key);
    /// positions in it are the file's.
    Config,
    /// Kubernetes manifests; only the ConfigMaps, in document order.
    Manifests(Vec<ConfigMapDoc>),
}

/// One ConfigMap found in the file, with what the node-agent checks need.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigMapDoc {
    /// `metadata.name`, empty when missing.
    pub name: String,
    pub namespace: Option<String>,
    /// Where the ConfigMap object starts.
    pub pos: Pos,
    /// Where the `data` key is, to point findings about `data` as a whole at it.
    pub data_pos: Option<Pos>,
    /// The `data` entries in document order.
    pub data: Vec<DataValue>,
    /// The keys of `binaryData`, which node-agent ignores.
    pub binary_data_keys: Vec<String>,
}

/// One `data` entry and how to point into it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataValue {
    pub key: String,
    /// The decoded value, what node-agent reads.
    pub value: String,
    pub key_pos: Pos,
    /// Where the value is written: its opening quote, block indicator or first character (without
    /// an exact map, where the YAML parser puts the node).
    pub pos: Pos,
    exact: Option<ExactMap>,
}

/// Decoded characters to file positions, for a value whose raw text could be re-decoded.
#[derive(Debug, Clone, PartialEq)]
struct ExactMap {
    /// Sorted by `inner`; each run maps consecutive characters of one inner line.
    runs: Vec<Run>,
    /// The inner position just past the value, where "unexpected end of JSON input" points.
    end_inner: Pos,
    /// Where that position is in the file: the closing quote, or the line after a block.
    end: Pos,
}

/// `len` characters from `inner` on that inner line, written from `file` on one line of the file.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    inner: Pos,
    file: Pos,
    len: u32,
}

impl ConfigMapDoc {
    /// What Velero would read of this ConfigMap.
    pub fn contents(&self) -> ConfigMapData {
        ConfigMapData {
            data: self.data.iter().map(|d| (d.key.clone(), d.value.clone())).collect(),
            binary_keys: self.binary_data_keys.clone(),
        }
    }
}

impl DataValue {
    /// Maps a 1-based (line, column) inside `value` to the file's line and column.
    ///
    /// Returns `false` when it can only point at the start of the scalar (then the caller
    /// adds the inner position to the message).
    pub fn map_position(&self, inner: Pos) -> (Pos, bool) {
        match self.exact.as_ref().and_then(|map| map.lookup(inner)) {
            Some(file) => (file, true),
            None => (self.pos, false),
        }
    }
}

impl ExactMap {
    fn lookup(&self, inner: Pos) -> Option<Pos> {
        if inner == self.end_inner {
            return Some(self.end);
        }
        let run = self.runs.partition_point(|run| run.inner <= inner).checked_sub(1).and_then(|i| self.runs.get(i))?;
        let offset = inner.column.checked_sub(run.inner.column)?;
        (run.inner.line == inner.line && offset < run.len)
            .then_some(Pos { line: run.file.line, column: run.file.column + offset })
    }
}

/// Why the file cannot be read as manifests, at a position in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The file looks like YAML manifests but is not valid YAML.
    #[error("invalid YAML: {message}")]
    Yaml { message: String, pos: Pos },
    /// The file looks like a JSON manifest but is not valid JSON (kubectl reads it as JSON).
    #[error("invalid JSON: {message}")]
    Json { message: String, pos: Pos },
    /// A ConfigMap the API server would reject, e.g. a data value that is an object.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String, pos: Pos },
}

impl ManifestError {
    /// Where the error is in the file.
    pub fn pos(&self) -> Pos {
        match self {
            ManifestError::Yaml { pos, .. } | ManifestError::Json { pos, .. } | ManifestError::Invalid { pos, .. } => {
                *pos
            }
        }
    }
}

/// Tells a config value from manifests and extracts the ConfigMaps with position maps.
///
/// Anything that is neither a JSON manifest nor YAML with a `kind` is `Input::Config`, so the
/// caller reports the config's own JSON syntax error with its hint.
pub fn read_input(text: &str) -> Result<Input, ManifestError> {
    match json::parse(text) {
        Ok(root) => Ok(json_manifests(text, &root)?.map_or(Input::Config, Input::Manifests)),
        Err(err) if looks_like_json_manifest(text) => Err(ManifestError::Json { message: err.message, pos: err.pos }),
        Err(_) => yaml_input(text),
    }
}

/// kubectl decodes a file starting with `{` as JSON, so a broken JSON manifest must not be read
/// as YAML; a node-agent config has neither key.
fn looks_like_json_manifest(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains("\"apiVersion\"") && text.contains("\"kind\"")
}

/// Only a YAML syntax error in what is clearly a manifest is reported as such; anything else
/// is left to the config check, which explains that the value must be JSON.
fn looks_like_yaml_manifest(text: &str) -> bool {
    let lines = || text.trim_start_matches('\u{feff}').lines();
    lines().any(|line| line.starts_with("apiVersion:")) && lines().any(|line| line.starts_with("kind:"))
}

/// The text as characters, to scan raw scalars and turn character indexes into positions.
struct Text {
    chars: Vec<char>,
    /// Character index of the start of each line; lines end at `\n`, as the JSON parser counts.
    line_starts: Vec<usize>,
}

impl Text {
    fn new(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        let line_starts = std::iter::once(0)
            .chain(chars.iter().enumerate().filter(|(_, c)| **c == '\n').map(|(i, _)| i + 1))
            .collect();
        Text { chars, line_starts }
    }

    fn get(&self, index: usize) -> Option<char> {
        self.chars.get(index).copied()
    }

    fn pos(&self, index: usize) -> Pos {
        let line = self.line_starts.partition_point(|&start| start <= index);
        let start = self.line_starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
        Pos { line: to_u32(line), column: to_u32(index.saturating_sub(start) + 1) }
    }

    fn index(&self, pos: Pos) -> Option<usize> {
        let start = self.line_starts.get(usize::try_from(pos.line).ok()?.checked_sub(1)?)?;
        Some(start + usize::try_from(pos.column).ok()?.checked_sub(1)?)
    }

    /// 0-based column, as YAML indentation is counted.
    fn column0(&self, index: usize) -> usize {
        usize::try_from(self.pos(index).column).map_or(0, |column| column.saturating_sub(1))
    }

    fn is_break(&self, index: usize) -> bool {
        matches!(self.get(index), Some('\n' | '\r'))
    }

    fn is_blank(&self, index: usize) -> bool {
        matches!(self.get(index), Some(' ' | '\t'))
    }

    /// Length of the line break at `index`: `\r\n` is one break.
    fn break_len(&self, index: usize) -> usize {
        if self.get(index) == Some('\r') && self.get(index + 1) == Some('\n') {
            2
        } else {
            1
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A value decoded from raw text, each character with where it was written.
struct Decoded {
    value: String,
    runs: Vec<Run>,
    /// The inner position of the next character.
    inner: Pos,
}

impl Decoded {
    fn new() -> Self {
        Decoded { value: String::new(), runs: Vec::new(), inner: Pos { line: 1, column: 1 } }
    }

    fn push(&mut self, c: char, file: Pos) {
        match self.runs.last_mut() {
            Some(run)
                if run.inner.line == self.inner.line
                    && run.inner.column + run.len == self.inner.column
                    && run.file.line == file.line
                    && run.file.column + run.len == file.column =>
            {
                run.len += 1
            }
            _ => self.runs.push(Run { inner: self.inner, file, len: 1 }),
        }
        self.value.push(c);
        if c == '\n' {
            self.inner = Pos { line: self.inner.line + 1, column: 1 };
        } else {
            self.inner.column += 1;
        }
    }

    /// Keeps the map only if it decodes to what the parser read.
    fn verified(self, expected: &str, end: Pos) -> Option<ExactMap> {
        (self.value == expected).then_some(ExactMap { runs: self.runs, end_inner: self.inner, end })
    }
}

#[cfg(test)]
mod tests;
