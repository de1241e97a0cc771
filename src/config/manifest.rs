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

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use crate::config::json::{self, simple_escape, Member, Node, Pos, Value};

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

// ---------------------------------------------------------------------------------------------
// JSON manifests

/// `None` when the JSON is not a manifest (no `kind` string), i.e. a config value.
fn json_manifests(text: &str, root: &Node) -> Result<Option<Vec<ConfigMapDoc>>, ManifestError> {
    let Value::Object(members) = &root.value else { return Ok(None) };
    let Some(kind) = json_member(members, "kind").and_then(json_str) else { return Ok(None) };
    let text = &Text::new(text);
    let mut docs = Vec::new();
    match kind {
        "ConfigMap" => docs.push(json_configmap(text, root, members)?),
        "List" | "ConfigMapList" => {
            let items = match json_member(members, "items").map(|items| &items.value) {
                Some(Value::Array(items)) => items.as_slice(),
                _ => &[],
            };
            for item in items {
                let Value::Object(members) = &item.value else { continue };
                // The API server's ConfigMapList leaves `kind` out of its items.
                let item_kind = json_member(members, "kind").and_then(json_str);
                if item_kind == Some("ConfigMap") || (kind == "ConfigMapList" && item_kind.is_none()) {
                    docs.push(json_configmap(text, item, members)?);
                }
            }
        }
        _ => {}
    }
    Ok(Some(docs))
}

/// The last member named `key`, as Go's decoder keeps the last of duplicates.
fn json_member<'a>(members: &'a [Member], key: &str) -> Option<&'a Node> {
    members.iter().rev().find(|member| member.key == key).map(|member| &member.value)
}

fn json_str(node: &Node) -> Option<&str> {
    match &node.value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn json_configmap(text: &Text, node: &Node, members: &[Member]) -> Result<ConfigMapDoc, ManifestError> {
    let metadata = match json_member(members, "metadata").map(|m| &m.value) {
        Some(Value::Object(metadata)) => metadata.as_slice(),
        _ => &[],
    };
    let mut doc = ConfigMapDoc {
        name: json_member(metadata, "name").and_then(json_str).unwrap_or_default().to_string(),
        namespace: json_member(metadata, "namespace").and_then(json_str).map(str::to_string),
        pos: node.pos,
        data_pos: members.iter().rev().find(|m| m.key == "data").map(|m| m.key_pos),
        data: Vec::new(),
        binary_data_keys: Vec::new(),
    };
    if let Some(data) = json_member(members, "data") {
        for member in json_object(data, "data")? {
            doc.data.push(json_data_value(text, member)?);
        }
    }
    if let Some(binary) = json_member(members, "binaryData") {
        doc.binary_data_keys = json_object(binary, "binaryData")?.iter().map(|m| m.key.clone()).collect();
    }
    Ok(doc)
}

/// The members of an object-valued field; `null` counts as empty, as Kubernetes reads it.
///
/// A duplicate key is an error, as in YAML: strict field validation rejects it, and otherwise
/// the last one silently wins, so the checker would check a value that is not applied.
fn json_object<'a>(node: &'a Node, path: &str) -> Result<&'a [Member], ManifestError> {
    let members = match &node.value {
        Value::Object(members) => members.as_slice(),
        Value::Null => &[],
        other => {
            return Err(ManifestError::Invalid {
                path: path.to_string(),
                message: format!("must be an object of strings, not {}", other.type_name()),
                pos: node.pos,
            })
        }
    };
    let mut seen = std::collections::HashSet::new();
    for member in members {
        if !seen.insert(member.key.as_str()) {
            return Err(ManifestError::Invalid {
                path: crate::k8s::field::key(path, &member.key),
                message: "duplicate key".to_string(),
                pos: member.key_pos,
            });
        }
    }
    Ok(members)
}

fn json_data_value(text: &Text, member: &Member) -> Result<DataValue, ManifestError> {
    let node = &member.value;
    let (value, exact) = match &node.value {
        Value::String(s) => {
            let exact = text.index(node.pos).and_then(|start| {
                let (decoded, close) = json_literal(text, start)?;
                decoded.verified(s, text.pos(close))
            });
            (s.clone(), exact)
        }
        // Kubernetes rejects these; the text as written is what the user meant.
        Value::Number(literal) => (literal.clone(), Some(verbatim(node.pos, literal))),
        Value::Bool(b) => (b.to_string(), Some(verbatim(node.pos, &b.to_string()))),
        Value::Null => (String::new(), None),
        other => {
            return Err(ManifestError::Invalid {
                path: format!("data[{}]", member.key),
                message: format!("must be a string holding the JSON config, not {}", other.type_name()),
                pos: node.pos,
            })
        }
    };
    Ok(DataValue { key: member.key.clone(), value, key_pos: member.key_pos, pos: node.pos, exact })
}

/// The map of a one-line token written as its value.
fn verbatim(pos: Pos, token: &str) -> ExactMap {
    let len = to_u32(token.chars().count());
    ExactMap {
        runs: vec![Run { inner: Pos { line: 1, column: 1 }, file: pos, len }],
        end_inner: Pos { line: 1, column: len + 1 },
        end: Pos { line: pos.line, column: pos.column + len },
    }
}

/// Decodes the JSON string literal whose opening quote is at `start`; each character maps to its
/// escape's backslash. Returns the index of the closing quote too.
fn json_literal(text: &Text, start: usize) -> Option<(Decoded, usize)> {
    if text.get(start)? != '"' {
        return None;
    }
    let mut out = Decoded::new();
    let mut i = start + 1;
    loop {
        match text.get(i)? {
            '"' => return Some((out, i)),
            '\\' => {
                let (c, len) = json_escape(text, i)?;
                out.push(c, text.pos(i));
                i += len;
            }
            c => {
                out.push(c, text.pos(i));
                i += 1;
            }
        }
    }
}

/// One escape at `i` (the backslash), decoded as the JSON parser does: surrogate pairs join,
/// a lone surrogate becomes U+FFFD.
fn json_escape(text: &Text, i: usize) -> Option<(char, usize)> {
    let c = match text.get(i + 1)? {
        'u' => {
            let high = hex(text, i + 2, 4)?;
            let low = (text.get(i + 6) == Some('\\') && text.get(i + 7) == Some('u'))
                .then(|| hex(text, i + 8, 4))
                .flatten()
                .filter(|low| (0xD800..0xDC00).contains(&high) && (0xDC00..0xE000).contains(low));
            return Some(match low {
                Some(low) => {
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    (char::from_u32(code).unwrap_or('\u{FFFD}'), 12)
                }
                None => (char::from_u32(high).unwrap_or('\u{FFFD}'), 6),
            });
        }
        other => simple_escape(other)?,
    };
    Some((c, 2))
}

fn hex(text: &Text, start: usize, digits: usize) -> Option<u32> {
    (start..start + digits).try_fold(0u32, |code, i| Some(code * 16 + text.get(i)?.to_digit(16)?))
}

// ---------------------------------------------------------------------------------------------
// YAML manifests

fn yaml_input(text: &str) -> Result<Input, ManifestError> {
    let source = Text::new(text);
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        Err(err) if looks_like_yaml_manifest(text) => {
            return Err(ManifestError::Yaml { message: err.info().to_string(), pos: source.pos(err.marker().index()) })
        }
        Err(_) => return Ok(Input::Config),
    };
    let mut configmaps = Vec::new();
    let mut any_manifest = false;
    for doc in &docs {
        let YamlData::Mapping(_) = &doc.data else { continue };
        let Some(kind) = yaml_get(doc, "kind") else { continue };
        any_manifest = true;
        match yaml_str(kind) {
            Some("ConfigMap") => configmaps.push(yaml_configmap(&source, doc)?),
            Some(list @ ("List" | "ConfigMapList")) => {
                let Some(YamlData::Sequence(items)) = yaml_get(doc, "items").map(|items| &items.data) else { continue };
                for item in items {
                    let item_kind = yaml_get(item, "kind").and_then(yaml_str);
                    let is_configmap =
                        item_kind == Some("ConfigMap") || (list == "ConfigMapList" && item_kind.is_none());
                    if matches!(item.data, YamlData::Mapping(_)) && is_configmap {
                        configmaps.push(yaml_configmap(&source, item)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(if any_manifest { Input::Manifests(configmaps) } else { Input::Config })
}

fn yaml_entry<'a, 'input>(
    node: &'a MarkedYaml<'input>,
    key: &str,
) -> Option<(&'a MarkedYaml<'input>, &'a MarkedYaml<'input>)> {
    let YamlData::Mapping(map) = &node.data else { return None };
    map.iter().find(|(k, _)| yaml_str(k) == Some(key))
}

fn yaml_get<'a, 'input>(node: &'a MarkedYaml<'input>, key: &str) -> Option<&'a MarkedYaml<'input>> {
    yaml_entry(node, key).map(|(_, value)| value)
}

fn yaml_str<'a>(node: &'a MarkedYaml) -> Option<&'a str> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s),
        _ => None,
    }
}

/// A scalar as text: strings as they are, other scalars as the YAML-to-JSON step prints them.
fn yaml_scalar_text(node: &MarkedYaml) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Null) => Some(String::new()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Tagged(_, inner) => yaml_scalar_text(inner),
        _ => None,
    }
}

fn yaml_configmap(text: &Text, node: &MarkedYaml) -> Result<ConfigMapDoc, ManifestError> {
    let metadata = yaml_get(node, "metadata");
    let metadata_text = |key| metadata.and_then(|m| yaml_get(m, key)).and_then(yaml_scalar_text);
    let data = yaml_entry(node, "data");
    let mut doc = ConfigMapDoc {
        name: metadata_text("name").unwrap_or_default(),
        namespace: metadata_text("namespace"),
        pos: text.pos(node.span.start.index()),
        data_pos: data.map(|(key, _)| text.pos(key.span.start.index())),
        data: Vec::new(),
        binary_data_keys: Vec::new(),
    };
    if let Some((_, data)) = data {
        let parent_indent = text.column0(data.span.start.index());
        for (key, value) in yaml_mapping(text, data, "data")? {
            doc.data.push(yaml_data_value(text, key, value, parent_indent)?);
        }
    }
    if let Some(binary) = yaml_get(node, "binaryData") {
        for (key, _) in yaml_mapping(text, binary, "binaryData")? {
            doc.binary_data_keys.push(yaml_key(text, key, "binaryData")?);
        }
    }
    Ok(doc)
}

type Entries<'a, 'input> = Vec<(&'a MarkedYaml<'input>, &'a MarkedYaml<'input>)>;

/// The entries of a mapping-valued field; null counts as empty, as Kubernetes reads it.
fn yaml_mapping<'a, 'input>(
    text: &Text,
    node: &'a MarkedYaml<'input>,
    path: &str,
) -> Result<Entries<'a, 'input>, ManifestError> {
    match &node.data {
        YamlData::Mapping(map) => Ok(map.iter().collect()),
        YamlData::Value(Scalar::Null) => Ok(Vec::new()),
        _ => Err(ManifestError::Invalid {
            path: path.to_string(),
            message: "must be a mapping of strings".to_string(),
            pos: text.pos(node.span.start.index()),
        }),
    }
}

fn yaml_key(text: &Text, key: &MarkedYaml, path: &str) -> Result<String, ManifestError> {
    yaml_scalar_text(key).ok_or_else(|| ManifestError::Invalid {
        path: path.to_string(),
        message: "keys must be strings".to_string(),
        pos: text.pos(key.span.start.index()),
    })
}

fn yaml_data_value(
    text: &Text,
    key_node: &MarkedYaml,
    node: &MarkedYaml,
    parent_indent: usize,
) -> Result<DataValue, ManifestError> {
    let key = yaml_key(text, key_node, "data")?;
    let key_pos = text.pos(key_node.span.start.index());
    let span_pos = text.pos(node.span.start.index());
    let invalid = |message: &str| ManifestError::Invalid {
        path: format!("data[{key}]"),
        message: message.to_string(),
        pos: span_pos,
    };
    let scalar = match &node.data {
        YamlData::Tagged(_, inner) => &inner.data,
        data => data,
    };
    let value = match scalar {
        YamlData::Value(Scalar::Null) => {
            // `k:` with nothing after it has an empty span at the colon: point at the key.
            let pos = if node.span.is_empty() { key_pos } else { span_pos };
            return Ok(DataValue { key, value: String::new(), key_pos, pos, exact: None });
        }
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(_) => None,
        YamlData::Mapping(_) | YamlData::Sequence(_) => {
            return Err(invalid("must be a string holding the JSON config, e.g. a literal block (|)"));
        }
        _ => return Err(invalid("must be a string holding the JSON config")),
    };
    let raw = value_start(text, key_node.span.end.index()).and_then(|start| {
        let (decoded, end) = yaml_scalar(text, start, node.span.end.index(), parent_indent)?;
        Some((start, decoded, end))
    });
    let value = match (value, &raw) {
        (Some(value), _) => value,
        // A non-string scalar (`true`, `1`): Kubernetes rejects it; take its text as written.
        (None, Some((_, decoded, _))) => decoded.value.clone(),
        (None, None) => yaml_scalar_text(node).unwrap_or_default(),
    };
    let (pos, exact) = match raw.and_then(|(start, decoded, end)| Some((start, decoded.verified(&value, end)?))) {
        Some((start, exact)) => (text.pos(start), Some(exact)),
        None => (span_pos, None),
    };
    Ok(DataValue { key, value, key_pos, pos, exact })
}

/// The index of a value's first character (quote, block indicator, or plain text) after its key
/// ends: past the `:`, separation, comments and properties (`&anchor`, `!tag`).
fn value_start(text: &Text, key_end: usize) -> Option<usize> {
    let mut i = skip_separation(text, key_end);
    if text.get(i)? != ':' {
        return None;
    }
    i = skip_separation(text, i + 1);
    while matches!(text.get(i)?, '&' | '!') {
        while text.get(i).is_some_and(|c| !matches!(c, ' ' | '\t' | '\n' | '\r')) {
            i += 1;
        }
        i = skip_separation(text, i);
    }
    Some(i)
}

fn skip_separation(text: &Text, mut i: usize) -> usize {
    loop {
        match text.get(i) {
            Some(' ' | '\t' | '\n' | '\r') => i += 1,
            Some('#') if i == 0 || text.is_blank(i - 1) || text.is_break(i - 1) => {
                while text.get(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

/// Decodes the scalar written at `start` (its style told by the first character) and returns
/// where the position just past it is. `end` is the parser's end of a plain scalar; `parent_indent`
/// the indentation of the mapping holding a block scalar.
fn yaml_scalar(text: &Text, start: usize, end: usize, parent_indent: usize) -> Option<(Decoded, Pos)> {
    match text.get(start)? {
        '"' | '\'' => {
            let (decoded, close) = quoted(text, start)?;
            Some((decoded, text.pos(close)))
        }
        '|' | '>' => block(text, start, parent_indent),
        '*' => None,
        _ => Some((plain(text, start, end), text.pos(end))),
    }
}

/// The folding of line breaks and white space in flow scalars (YAML 1.2 §6.5, §7.3): trailing
/// and leading blanks around a break are dropped, a single break becomes a space, and each
/// empty line a `\n`. Mirrors saphyr's scanner.
#[derive(Default)]
struct Folding {
    blanks: Vec<usize>,
    leading_break: Option<usize>,
    trailing_breaks: Vec<usize>,
    after_break: bool,
}

impl Folding {
    fn blank(&mut self, i: usize) {
        if !self.after_break {
            self.blanks.push(i);
        }
    }

    fn line_break(&mut self, i: usize) {
        if self.after_break {
            self.trailing_breaks.push(i);
        } else {
            self.blanks.clear();
            self.leading_break = Some(i);
            self.after_break = true;
        }
    }

    /// A `\` before a line break: the break is dropped and the blanks before it are kept.
    fn escaped_break(&mut self, text: &Text, out: &mut Decoded) {
        self.flush(text, out);
        self.after_break = true;
    }

    /// Emits what the pending blanks and breaks fold to, before the next content character.
    fn flush(&mut self, text: &Text, out: &mut Decoded) {
        if self.after_break {
            match self.leading_break {
                Some(i) if self.trailing_breaks.is_empty() => out.push(' ', text.pos(i)),
                _ => self.trailing_breaks.iter().for_each(|&i| out.push('\n', text.pos(i))),
            }
        } else {
            self.blanks.iter().for_each(|&i| out.push(text.get(i).unwrap_or(' '), text.pos(i)));
        }
        *self = Folding::default();
    }
}

fn plain(text: &Text, start: usize, end: usize) -> Decoded {
    let mut out = Decoded::new();
    let mut folding = Folding::default();
    let mut i = start;
    while i < end {
        if text.is_blank(i) {
            folding.blank(i);
            i += 1;
        } else if text.is_break(i) {
            folding.line_break(i);
            i += text.break_len(i);
        } else {
            folding.flush(text, &mut out);
            out.push(text.get(i).unwrap_or(' '), text.pos(i));
            i += 1;
        }
    }
    out
}

/// A single- or double-quoted scalar opening at `start`; returns the closing quote's index too.
fn quoted(text: &Text, start: usize) -> Option<(Decoded, usize)> {
    let quote = text.get(start)?;
    let mut out = Decoded::new();
    let mut folding = Folding::default();
    let mut i = start + 1;
    loop {
        let c = text.get(i)?;
        if text.is_blank(i) {
            folding.blank(i);
            i += 1;
        } else if text.is_break(i) {
            folding.line_break(i);
            i += text.break_len(i);
        } else if quote == '\'' && c == '\'' && text.get(i + 1) == Some('\'') {
            folding.flush(text, &mut out);
            out.push('\'', text.pos(i));
            i += 2;
        } else if c == quote {
            folding.flush(text, &mut out);
            return Some((out, i));
        } else if quote == '"' && c == '\\' && text.is_break(i + 1) {
            folding.escaped_break(text, &mut out);
            i += 1 + text.break_len(i + 1);
        } else if quote == '"' && c == '\\' {
            folding.flush(text, &mut out);
            let (decoded, len) = yaml_escape(text, i)?;
            out.push(decoded, text.pos(i));
            i += len;
        } else {
            folding.flush(text, &mut out);
            out.push(c, text.pos(i));
            i += 1;
        }
    }
}

/// One double-quoted escape at `i` (the backslash), as saphyr decodes it.
fn yaml_escape(text: &Text, i: usize) -> Option<(char, usize)> {
    let digits = match text.get(i + 1)? {
        'x' => 2,
        'u' => 4,
        'U' => 8,
        c => {
            let decoded = match c {
                '0' => '\0',
                'a' => '\u{7}',
                'b' => '\u{8}',
                't' | '\t' => '\t',
                'n' => '\n',
                'v' => '\u{b}',
                'f' => '\u{c}',
                'r' => '\r',
                'e' => '\u{1b}',
                ' ' => ' ',
                '"' => '"',
                '/' => '/',
                '\\' => '\\',
                'N' => '\u{85}',
                '_' => '\u{a0}',
                'L' => '\u{2028}',
                'P' => '\u{2029}',
                _ => return None,
            };
            return Some((decoded, 2));
        }
    };
    Some((char::from_u32(hex(text, i + 2, digits)?)?, 2 + digits))
}

#[derive(PartialEq)]
enum Chomping {
    Strip,
    Clip,
    Keep,
}

/// A literal (`|`) or folded (`>`) block scalar whose indicator is at `start`, mirroring saphyr's
/// scanner. The position past a literal block is its next line at the block's indentation, so
/// inner (L, C) is always file (first content line + L - 1, indentation + C).
fn block(text: &Text, start: usize, parent_indent: usize) -> Option<(Decoded, Pos)> {
    let literal = text.get(start)? == '|';
    let mut chomping = Chomping::Clip;
    let mut increment = 0;
    let mut i = start + 1;
    for _ in 0..2 {
        match text.get(i) {
            Some('+') => chomping = Chomping::Keep,
            Some('-') => chomping = Chomping::Strip,
            Some(c @ '1'..='9') => increment = c.to_digit(10).and_then(|d| usize::try_from(d).ok())?,
            _ => break,
        }
        i += 1;
    }
    while text.get(i).is_some() && !text.is_break(i) {
        i += 1; // blanks and a comment
    }
    if text.is_break(i) {
        i += text.break_len(i);
    }
    let header_line = text.pos(start).line;

    let mut out = Decoded::new();
    let mut trailing_breaks = Vec::new();
    let (indent, mut column) = if increment > 0 {
        let indent = parent_indent + increment;
        (indent, skip_indent(text, &mut i, indent, &mut trailing_breaks))
    } else {
        // Auto-detected: the deepest of the leading empty lines and the first content line.
        let mut deepest = 0;
        loop {
            let mut column = 0;
            while text.get(i) == Some(' ') {
                i += 1;
                column += 1;
            }
            deepest = column.max(deepest);
            if !text.is_break(i) {
                break (deepest.max(parent_indent + 1), column);
            }
            trailing_breaks.push(i);
            i += text.break_len(i);
        }
    };

    let mut leading_break: Option<usize> = None;
    let mut leading_blank = false;
    while column == indent && text.get(i).is_some() && !text.is_break(i) {
        let trailing_blank = text.is_blank(i);
        match leading_break {
            Some(b) if !literal && !leading_blank && !trailing_blank && trailing_breaks.is_empty() => {
                out.push(' ', text.pos(b))
            }
            Some(b) if literal || leading_blank || trailing_blank => out.push('\n', text.pos(b)),
            _ => {}
        }
        trailing_breaks.drain(..).for_each(|b| out.push('\n', text.pos(b)));
        leading_blank = trailing_blank;
        while let Some(c) = text.get(i).filter(|_| !text.is_break(i)) {
            out.push(c, text.pos(i));
            i += 1;
            column += 1;
        }
        if !text.is_break(i) {
            break;
        }
        leading_break = Some(i);
        i += text.break_len(i);
        column = skip_indent(text, &mut i, indent, &mut trailing_breaks);
    }
    if chomping != Chomping::Strip {
        if let Some(b) = leading_break {
            out.push('\n', text.pos(b));
        }
        if text.get(i).is_none() && column >= indent.max(1) {
            out.push('\n', text.pos(i));
        }
    }
    if chomping == Chomping::Keep {
        trailing_breaks.drain(..).for_each(|b| out.push('\n', text.pos(b)));
    }
    let end = if literal {
        Pos { line: header_line + out.inner.line, column: to_u32(indent) + out.inner.column }
    } else {
        text.pos(i)
    };
    Some((out, end))
}

/// Skips the indentation of block scalar lines and records the breaks of empty lines; returns the
/// column reached on the first line with content.
fn skip_indent(text: &Text, i: &mut usize, indent: usize, breaks: &mut Vec<usize>) -> usize {
    loop {
        let mut column = 0;
        while column < indent && text.get(*i) == Some(' ') {
            *i += 1;
            column += 1;
        }
        if !text.is_break(*i) {
            return column;
        }
        breaks.push(*i);
        *i += text.break_len(*i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }

    fn configmaps(text: &str) -> Vec<ConfigMapDoc> {
        match read_input(text) {
            Ok(Input::Manifests(docs)) => docs,
            other => panic!("want manifests, got {other:?}"),
        }
    }

    fn only_value(text: &str) -> DataValue {
        let mut docs = configmaps(text);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].data.len(), 1);
        docs.remove(0).data.remove(0)
    }

    fn example(name: &str) -> String {
        let path = format!("{}/examples/configmaps/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    /// The character written at a file position; `None` past the end of its line.
    fn raw_at(text: &str, pos: Pos) -> Option<char> {
        text.split('\n').nth(pos.line as usize - 1)?.chars().nth(pos.column as usize - 1)
    }

    /// Every decoded character maps exactly: to itself, to the backslash of its escape, or (a line
    /// break or a space folded from one) to the end of a line.
    fn assert_every_character_maps(text: &str, value: &DataValue) {
        let mut inner = at(1, 1);
        for c in value.value.chars() {
            let (pos, exact) = value.map_position(inner);
            assert!(exact, "{}: {c:?} at {inner:?}", value.key);
            let raw = raw_at(text, pos);
            assert!(
                raw == Some(c) || raw == Some('\\') || (raw.is_none() && matches!(c, '\n' | ' ')),
                "{}: {c:?} at {inner:?} -> {pos:?} {raw:?}",
                value.key
            );
            inner = if c == '\n' { at(inner.line + 1, 1) } else { at(inner.line, inner.column + 1) };
        }
    }

    /// Where the JSON parser puts the first string value equal to `want` inside a data value.
    fn inner_pos_of(value: &str, want: &str) -> Pos {
        fn find(node: &Node, want: &str) -> Option<Pos> {
            match &node.value {
                Value::String(s) if s == want => Some(node.pos),
                Value::Array(items) => items.iter().find_map(|item| find(item, want)),
                Value::Object(members) => members.iter().find_map(|m| find(&m.value, want)),
                _ => None,
            }
        }
        find(&json::parse(value).expect("config parses"), want).expect("value present")
    }

    #[test]
    fn json_manifests_map_every_escape_of_the_real_files() {
        let cases: &[(&str, &[&str])] = &[
            ("01-valid-docs-basic.json", &["node-agent-config.json"]),
            ("02-valid-storageclass-affinity-labels.json", &["config"]),
            ("03-docs-complete-example-thresholdInGB.json", &["node-agent-config"]),
            ("04-partial-podresources-typos.json", &["node-agent-config"]),
            ("05-loadaffinity-and-label-pitfalls.json", &["node-agent-config"]),
            ("06-fatal-multikey-yaml-typeerror.json", &["node-agent-config.yaml", "backup-pvc.json"]),
        ];
        for (file, keys) in cases {
            let text = example(file);
            let docs = configmaps(&text);
            assert_eq!(docs.len(), 1, "{file}");
            let doc = &docs[0];
            assert_eq!(
                (doc.name.as_str(), doc.namespace.as_deref(), doc.pos),
                ("node-agent-config", Some("velero"), at(1, 1))
            );
            assert_eq!(doc.data_pos, Some(at(11, 3)), "{file}");
            assert!(doc.binary_data_keys.is_empty());
            let found: Vec<&str> = doc.data.iter().map(|v| v.key.as_str()).collect();
            assert_eq!(&found, keys, "{file}");
            for value in &doc.data {
                assert_every_character_maps(&text, value);
            }
        }
    }

    #[test]
    fn json_manifest_points_at_the_escaped_operator_and_the_closing_quote() {
        let text = example("05-loadaffinity-and-label-pitfalls.json");
        let value = only_value(&text);
        assert_eq!((value.key_pos, value.pos), (at(12, 5), at(12, 26)));
        let operator = inner_pos_of(&value.value, "in");
        assert_eq!(operator, at(22, 25));
        let lines = value.value.lines().count() as u32;
        let cases = [
            (at(1, 1), at(12, 27)),           // `{` right after the opening quote
            (at(1, 2), at(12, 28)),           // the `\n` escape
            (operator, at(12, 476)),          // `\"in\"`
            (at(22, 26), at(12, 478)),        // the `i` after the escaped quote
            (at(lines + 1, 1), at(12, 1111)), // past the end: the closing quote
        ];
        for (inner, file) in cases {
            assert_eq!(value.map_position(inner), (file, true), "{inner:?}");
        }
        assert_eq!(&text.lines().nth(11).unwrap_or_default()[475..483], r#"\"in\",\"#);
        // Not a position in the value: only the start of the scalar.
        assert_eq!(value.map_position(at(1, 99)), (at(12, 26), false));
        assert_eq!(value.map_position(at(999, 1)), (at(12, 26), false));
    }

    #[test]
    fn json_lists_and_non_string_values() {
        let text = r#"{"kind": "List", "apiVersion": "v1", "items": [
  {"kind": "Deployment", "metadata": {"name": "velero"}},
  {"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"n": 12, "b": true, "z": null, "s": "x\u00e9y"}},
  {"kind": "ConfigMap", "metadata": {"name": "b", "namespace": "velero"}, "binaryData": {"blob": "AAE="}}
]}"#;
        let docs = configmaps(text);
        let names: Vec<_> = docs.iter().map(|d| (d.name.as_str(), d.namespace.as_deref(), d.pos)).collect();
        assert_eq!(names, [("a", None, at(3, 3)), ("b", Some("velero"), at(4, 3))]);
        let values: Vec<_> = docs[0]
            .data
            .iter()
            .map(|v| (v.key.as_str(), v.value.as_str(), v.key_pos, v.map_position(at(1, 2))))
            .collect();
        assert_eq!(
            values,
            [
                ("n", "12", at(3, 61), (at(3, 67), true)),
                ("b", "true", at(3, 70), (at(3, 76), true)),
                ("z", "", at(3, 81), (at(3, 86), false)),
                ("s", "xéy", at(3, 92), (at(3, 99), true)),
            ]
        );
        assert_eq!(docs[0].data[3].map_position(at(1, 3)), (at(3, 105), true));
        assert_eq!((docs[1].data.len(), docs[1].binary_data_keys.as_slice()), (0, ["blob".to_string()].as_slice()));

        // The API server's ConfigMapList leaves `kind` out of its items.
        let text = r#"{"kind": "ConfigMapList", "items": [{"metadata": {"name": "c"}, "data": {"k": "{}"}}]}"#;
        let docs = configmaps(text);
        assert_eq!((docs[0].name.as_str(), docs[0].data[0].map_position(at(1, 2))), ("c", (at(1, 81), true)));
    }

    #[test]
    fn json_escapes_map_to_their_backslash() {
        let text = r#"{"kind": "ConfigMap", "data": {"k": "a\ud83d\ude00b\ud800c\/\u00e9"}}"#;
        let value = only_value(text);
        assert_eq!(value.value, "a😀b\u{fffd}c/é");
        let cases = [(1, 38), (2, 39), (3, 51), (4, 52), (5, 58), (6, 59), (7, 61), (8, 67)];
        for (column, file) in cases {
            assert_eq!(value.map_position(at(1, column)), (at(1, file), true), "column {column}");
        }
    }

    /// `kubectl create cm node-agent-config --from-file=config.json -n velero --dry-run=client -o yaml`
    const KUBECTL_BLOCK: &str = "apiVersion: v1
data:
  config.json: |
    {
      \"loadConcurrency\": {
        \"globalConfig\": 2
      }
    }
kind: ConfigMap
metadata:
  creationTimestamp: null
  name: node-agent-config
  namespace: velero
";

    #[test]
    fn yaml_literal_block_maps_by_indentation() {
        let docs = configmaps(KUBECTL_BLOCK);
        let doc = &docs[0];
        assert_eq!((doc.name.as_str(), doc.namespace.as_deref()), ("node-agent-config", Some("velero")));
        assert_eq!((doc.pos, doc.data_pos), (at(1, 1), Some(at(2, 1))));
        let value = &doc.data[0];
        assert_eq!((value.key.as_str(), value.key_pos, value.pos), ("config.json", at(3, 3), at(3, 16)));
        assert_eq!(value.value, "{\n  \"loadConcurrency\": {\n    \"globalConfig\": 2\n  }\n}\n");
        let cases = [
            (at(1, 1), at(4, 5)),
            (at(2, 3), at(5, 7)),   // "loadConcurrency"
            (at(3, 21), at(6, 25)), // the 2
            (at(5, 2), at(8, 6)),   // the final line break
            (at(6, 1), at(9, 5)),   // past the end: the line after the block
        ];
        for (inner, file) in cases {
            assert_eq!(value.map_position(inner), (file, true), "{inner:?}");
        }
        assert_every_character_maps(KUBECTL_BLOCK, value);
    }

    /// kubectl prints a value with trailing spaces double-quoted, folded at 80 columns.
    const KUBECTL_DOUBLE_QUOTED: &str = r#"apiVersion: v1
data:
  config.json: "{\n  \"podLabels\": {\"team\": \"platform\", \"velero.io/data-upload\":
    \"shared\", \"app\": \"backup\"}, \n  \"x\": \"\\u00e9\\t\"\n}\n"
kind: ConfigMap
metadata:
  creationTimestamp: null
  name: node-agent-config
  namespace: velero
"#;

    #[test]
    fn yaml_double_quoted_folded_by_kubectl_maps_exactly() {
        let value = only_value(KUBECTL_DOUBLE_QUOTED);
        assert_eq!(value.pos, at(3, 16));
        assert!(value
            .value
            .starts_with("{\n  \"podLabels\": {\"team\": \"platform\", \"velero.io/data-upload\": \"shared\""));
        let shared = inner_pos_of(&value.value, "shared");
        assert_eq!(shared, at(2, 62));
        let cases = [
            (at(1, 1), at(3, 17)),
            (at(2, 3), at(3, 22)),  // "podLabels", written \"podLabels\"
            (at(2, 61), at(3, 88)), // the space folded into the line break
            (shared, at(4, 5)),
            (at(3, 9), at(4, 52)), // the \u of "\u00e9", written \\u00e9
            (at(5, 1), at(4, 69)), // past the end: the closing quote
        ];
        for (inner, file) in cases {
            assert_eq!(value.map_position(inner), (file, true), "{inner:?}");
        }
        assert_every_character_maps(KUBECTL_DOUBLE_QUOTED, &value);
    }

    #[test]
    fn yaml_scalar_styles() {
        type Case<'a> = (&'a str, &'a str, &'a [(Pos, Pos, bool)]);
        // Each value follows `  k: ` on line 3; `inner -> file` pairs, exact or not.
        let cases: &[Case] = &[
            // Indentation indicator (relative to the mapping's 2), a leading empty line, strip.
            (
                "|2-\n\n     x\n    y\n",
                "\n x\ny",
                &[
                    (at(1, 1), at(4, 1), true),
                    (at(2, 2), at(5, 6), true),
                    (at(3, 1), at(6, 5), true),
                    (at(3, 2), at(6, 6), true),
                ],
            ),
            // Keep: trailing empty lines are content; past the end is the line after them.
            (
                "|+\n    a\n\n",
                "a\n\n",
                &[(at(1, 1), at(4, 5), true), (at(2, 1), at(5, 1), true), (at(3, 1), at(6, 5), true)],
            ),
            // Properties before the indicator; a comment after it.
            (
                "&a !!str | # the config\n    {\"é\": \"€\"}\n",
                "{\"é\": \"€\"}\n",
                &[(at(1, 3), at(4, 7), true), (at(1, 8), at(4, 12), true), (at(2, 1), at(5, 5), true)],
            ),
            // No trailing line break at the end of the file.
            (
                "|\n    {}",
                "{}\n",
                &[(at(1, 2), at(4, 6), true), (at(1, 3), at(4, 7), true), (at(2, 1), at(5, 5), true)],
            ),
            // Folded: a single break becomes a space, more-indented lines keep theirs.
            (
                ">\n    one\n    two\n\n      more\n    three\n",
                "one two\n\n  more\nthree\n",
                &[
                    (at(1, 4), at(4, 8), true),
                    (at(1, 5), at(5, 5), true),
                    (at(3, 3), at(7, 7), true),
                    (at(4, 1), at(8, 5), true),
                    (at(5, 1), at(9, 1), true),
                ],
            ),
            (
                "\"a\\tb\\u00e9\\\"c\"",
                "a\tbé\"c",
                &[
                    (at(1, 1), at(3, 7), true),
                    (at(1, 2), at(3, 8), true),
                    (at(1, 3), at(3, 10), true),
                    (at(1, 4), at(3, 11), true),
                    (at(1, 5), at(3, 17), true),
                    (at(1, 6), at(3, 19), true),
                    (at(1, 7), at(3, 20), true),
                ],
            ),
            // An escaped line break joins; an empty line folds into a line break.
            (
                "\"a \\\n    b\n\n    c\"",
                "a b\nc",
                &[
                    (at(1, 2), at(3, 8), true),
                    (at(1, 3), at(4, 5), true),
                    (at(1, 4), at(5, 1), true),
                    (at(2, 1), at(6, 5), true),
                    (at(2, 2), at(6, 6), true),
                ],
            ),
            // YAML's own escapes, and a backslash before a literal tab.
            (
                "\"\\x41\\U0001F600\\_\\\t!\"",
                "A😀\u{a0}\t!",
                &[
                    (at(1, 1), at(3, 7), true),
                    (at(1, 2), at(3, 11), true),
                    (at(1, 3), at(3, 21), true),
                    (at(1, 4), at(3, 23), true),
                    (at(1, 5), at(3, 25), true),
                    (at(1, 6), at(3, 26), true),
                ],
            ),
            (
                "'it''s'",
                "it's",
                &[(at(1, 3), at(3, 9), true), (at(1, 4), at(3, 11), true), (at(1, 5), at(3, 12), true)],
            ),
            (
                "plain text\n     more",
                "plain text more",
                &[(at(1, 11), at(3, 16), true), (at(1, 12), at(4, 6), true), (at(1, 16), at(4, 10), true)],
            ),
            // Not a string: Kubernetes rejects it, the text is taken as written.
            ("true", "true", &[(at(1, 1), at(3, 6), true), (at(1, 5), at(3, 10), true)]),
            ("0x1F", "0x1F", &[(at(1, 4), at(3, 9), true)]),
            ("", "", &[(at(1, 1), at(3, 3), false)]),
            ("~", "", &[(at(1, 1), at(3, 6), false)]),
        ];
        for (yaml, want, positions) in cases {
            let text = format!("kind: ConfigMap\ndata:\n  k: {yaml}");
            let value = only_value(&text);
            assert_eq!((value.key.as_str(), value.key_pos, value.value.as_str()), ("k", at(3, 3), *want), "{yaml:?}");
            for (inner, file, exact) in positions.iter() {
                assert_eq!(value.map_position(*inner), (*file, *exact), "{yaml:?} at {inner:?}");
            }
            if positions.iter().all(|(_, _, exact)| *exact) {
                assert_every_character_maps(&text, &value);
            }
        }
    }

    #[test]
    fn yaml_without_an_exact_map_points_at_the_scalar() {
        let text = "kind: ConfigMap\ndata:\n  a: &x \"{}\"\n  b: *x\n";
        let docs = configmaps(text);
        let b = &docs[0].data[1];
        assert_eq!((b.key.as_str(), b.value.as_str()), ("b", "{}"));
        assert_eq!(b.map_position(at(1, 2)), (at(4, 6), false));
    }

    #[test]
    fn crlf_line_breaks() {
        let text = "kind: ConfigMap\r\ndata:\r\n  c: |\r\n    {\r\n      \"a\": 1\r\n    }\r\n  e: \"a\r\n    b\"\r\n";
        let docs = configmaps(text);
        let values: Vec<_> = docs[0].data.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(values, ["{\n  \"a\": 1\n}\n", "a b"]);
        let cases = [
            (0, at(2, 3), at(5, 7)),
            (0, at(2, 9), at(5, 13)),
            (0, at(4, 1), at(7, 5)),
            (1, at(1, 2), at(7, 8)),
            (1, at(1, 3), at(8, 5)),
        ];
        for (index, inner, file) in cases {
            assert_eq!(docs[0].data[index].map_position(inner), (file, true), "{index} {inner:?}");
        }
    }

    #[test]
    fn multi_document_yaml_keeps_only_configmaps() {
        let text = "---
# Source: velero/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: velero
spec:
  template:
    metadata:
      annotations:
        config: |
          {\"not\": \"a configmap\"}
---
# Source: velero/templates/node-agent-config.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: node-agent-config
  namespace: velero
data:
  node-agent-config.json: |-
    {
      \"podResources\": {\"cpuRequest\": \"1\"}
    }
---
# nothing
---
";
        let docs = configmaps(text);
        assert_eq!(docs.len(), 1);
        let doc = &docs[0];
        assert_eq!((doc.name.as_str(), doc.pos, doc.data_pos), ("node-agent-config", at(15, 1), Some(at(20, 1))));
        let value = &doc.data[0];
        assert_eq!(
            (value.key_pos, value.value.as_str()),
            (at(21, 3), "{\n  \"podResources\": {\"cpuRequest\": \"1\"}\n}")
        );
        let one = inner_pos_of(&value.value, "1");
        assert_eq!(value.map_position(one), (at(23, 38), true));
        assert_eq!(value.map_position(at(3, 2)), (at(24, 6), true));
    }

    #[test]
    fn yaml_list_and_binary_data() {
        let text = "apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: velero
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: node-agent-config
    namespace: velero
  data:
    config: '{}'
metadata:
  resourceVersion: \"\"
";
        let docs = configmaps(text);
        assert_eq!(docs.len(), 1);
        assert_eq!(
            (docs[0].name.as_str(), docs[0].pos, docs[0].data_pos),
            ("node-agent-config", at(8, 3), Some(at(13, 3)))
        );
        assert_eq!(docs[0].data[0].map_position(at(1, 2)), (at(14, 15), true));

        // `kubectl create cm --from-file` puts a file that is not UTF-8 into binaryData.
        let text = "apiVersion: v1
binaryData:
  config.json: //4A
kind: ConfigMap
metadata:
  creationTimestamp: null
  name: node-agent-config
  namespace: velero
";
        let docs = configmaps(text);
        assert_eq!(docs[0].data, []);
        assert_eq!(
            (docs[0].data_pos, docs[0].binary_data_keys.as_slice()),
            (None, ["config.json".to_string()].as_slice())
        );
    }

    #[test]
    fn tells_config_values_from_manifests() {
        let cases: &[(&str, Option<usize>)] = &[
            ("{\"loadAffinity\": []}", None),
            ("{\"kind\": 1}", None),
            ("{\"loadAffinity\": [],}", None),
            ("{\"a\": 1 \"b\": 2}", None),
            ("loadAffinity:\n- nodeSelector:\n    matchLabels:\n      a: b\n", None),
            ("loadAffinity: [\n", None),
            ("", None),
            ("# nothing\n", None),
            ("{\"kind\": \"Deployment\", \"apiVersion\": \"apps/v1\"}", Some(0)),
            ("apiVersion: apps/v1\nkind: Deployment\n", Some(0)),
            ("---\n---\nkind: ConfigMap\n---\nkind: ConfigMap\ndata: {a: b}\n", Some(2)),
            ("{apiVersion: v1, kind: ConfigMap, data: {k: '{}'}}", Some(1)),
            // A byte order mark is not JSON; YAML reads it.
            ("\u{feff}{\"kind\": \"ConfigMap\", \"data\": {\"k\": \"{}\"}}", Some(1)),
        ];
        for (text, want) in cases {
            let got = match read_input(text) {
                Ok(Input::Config) => None,
                Ok(Input::Manifests(docs)) => Some(docs.len()),
                Err(err) => panic!("{text:?}: {err}"),
            };
            assert_eq!(got, *want, "{text:?}");
        }
    }

    #[test]
    fn manifest_errors_point_into_the_file() {
        let invalid =
            |path: &str, message: &str, pos| ManifestError::Invalid { path: path.into(), message: message.into(), pos };
        let cases = [
            (
                "apiVersion: v1\nkind: ConfigMap\ndata:\n  config: |\n    {}\n  bad: \"unterminated\n",
                ManifestError::Yaml {
                    message: "while scanning a quoted scalar, found unexpected end of stream".into(),
                    pos: at(6, 8),
                },
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: x\n  a: y\n",
                ManifestError::Yaml { message: "duplicated key in mapping".into(), pos: at(5, 3) },
            ),
            (
                "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\",\n  \"data\": {\"a\": \"{}\",}\n}\n",
                ManifestError::Json {
                    message: "invalid character '}' looking for beginning of object key string".into(),
                    pos: at(4, 22),
                },
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\ndata:\n  config.json:\n    loadAffinity: []\n",
                invalid(
                    "data[config.json]",
                    "must be a string holding the JSON config, e.g. a literal block (|)",
                    at(5, 5),
                ),
            ),
            ("kind: ConfigMap\ndata: [a]\n", invalid("data", "must be a mapping of strings", at(2, 7))),
            ("kind: ConfigMap\nbinaryData: x\n", invalid("binaryData", "must be a mapping of strings", at(2, 13))),
            ("kind: ConfigMap\ndata:\n  [a]: x\n", invalid("data", "keys must be strings", at(3, 3))),
            (
                "{\"kind\": \"ConfigMap\", \"data\": {\"k\": {\"a\": 1}}}",
                invalid("data[k]", "must be a string holding the JSON config, not object", at(1, 37)),
            ),
            (
                "{\"kind\": \"ConfigMap\", \"data\": []}",
                invalid("data", "must be an object of strings, not array", at(1, 31)),
            ),
            (
                "{\"kind\": \"ConfigMap\", \"data\": {\"a\": \"{}\", \"a\": \"{}\"}}",
                invalid("data[a]", "duplicate key", at(1, 43)),
            ),
        ];
        for (text, want) in cases {
            let err = read_input(text).expect_err(text);
            assert_eq!((err.pos(), &err), (want.pos(), &want), "{text:?}");
        }
        let err = ManifestError::Yaml { message: "duplicated key in mapping".into(), pos: at(5, 3) };
        assert_eq!(err.to_string(), "invalid YAML: duplicated key in mapping");
        assert_eq!(invalid("data", "m", at(1, 1)).to_string(), "data: m");
    }
}
