//! ConfigMaps in a JSON manifest (a single object or a `List`), each data value with the map
//! of its string literal's escapes back to the file.

use super::{to_u32, ConfigMapDoc, DataValue, Decoded, ExactMap, ManifestError, Run, Text};
use crate::config::json::{self, Member, Node, Pos, Value};

/// `None` when the JSON is not a manifest (no `kind` string), i.e. a config value.
pub(super) fn json_manifests(text: &str, root: &Node) -> Result<Option<Vec<ConfigMapDoc>>, ManifestError> {
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
fn json_member<'n, 'a>(members: &'n [Member<'a>], key: &str) -> Option<&'n Node<'a>> {
    members.iter().rev().find(|member| member.key == key).map(|member| &member.value)
}

fn json_str<'n>(node: &'n Node<'_>) -> Option<&'n str> {
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
        doc.binary_data_keys = json_object(binary, "binaryData")?.iter().map(|m| m.key.to_string()).collect();
    }
    Ok(doc)
}

/// The members of an object-valued field; `null` counts as empty, as Kubernetes reads it.
///
/// A duplicate key is an error, as in YAML: strict field validation rejects it, and otherwise
/// the last one silently wins, so the checker would check a value that is not applied.
fn json_object<'n, 'a>(node: &'n Node<'a>, path: &str) -> Result<&'n [Member<'a>], ManifestError> {
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
        if !seen.insert(member.key.as_ref()) {
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
            (s.to_string(), exact)
        }
        // Kubernetes rejects these; the text as written is what the user meant.
        Value::Number(literal) => (literal.to_string(), Some(verbatim(node.pos, literal))),
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
    Ok(DataValue { key: member.key.to_string(), value, key_pos: member.key_pos, pos: node.pos, exact })
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

/// One escape at `i` (the backslash), decoded by the JSON parser's own [`json::decode_escape`];
/// returns the character and the escape's length, backslash included.
fn json_escape(text: &Text, i: usize) -> Option<(char, usize)> {
    let after = text.chars.get(i + 1..)?.iter().copied();
    json::decode_escape(after).ok().map(|(c, len)| (c, len + 1))
}
