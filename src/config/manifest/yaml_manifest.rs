//! ConfigMaps in YAML manifests (one document or many, or a `List`), read with saphyr; each
//! data value's position map comes from re-decoding its raw scalar (`yaml_scalar`).

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::yaml_scalar::{value_start, yaml_scalar};
use super::{looks_like_yaml_manifest, ConfigMapDoc, DataValue, Input, ManifestError, Text};

pub(super) fn yaml_input(text: &str) -> Result<Input, ManifestError> {
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
