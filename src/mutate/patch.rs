//! RFC 6902 JSON patch operations, built against the raw request object.
//!
//! Only `add` and `remove` are emitted: `add` upserts an object member everywhere (RFC 6902
//! §4.1), while `replace` of a missing member differs between implementations.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// One JSON patch operation; serializes as `{"op": "add", "path": ..., "value": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Add { path: String, value: Value },
    Remove { path: String },
}

impl Op {
    pub fn to_json(&self) -> Value {
        match self {
            Op::Add { path, value } => json!({"op": "add", "path": path, "value": value}),
            Op::Remove { path } => json!({"op": "remove", "path": path}),
        }
    }
}

/// The value at `path` (object keys, unescaped), without the allocations of `Value::pointer`:
/// the planner looks up a dozen fixed paths per pod.
pub fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.as_object()?.get(*key))
}

/// Escapes one key as an RFC 6901 reference token: `~` first, then `/`.
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Serializes the operations as the JSON array the API server expects.
pub fn to_bytes(ops: &[Op]) -> Vec<u8> {
    serde_json::to_vec(ops).unwrap_or_else(|_| b"[]".to_vec())
}

/// Applies a serialized patch to `object` with a strict RFC 6902 implementation, as the API
/// server will; a patch that does not apply must never be sent (it would reject the pod).
pub fn apply(mut object: Value, patch: &[u8]) -> Result<Value, String> {
    let patch: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| e.to_string())?;
    json_patch::patch(&mut object, &patch).map_err(|e| e.to_string())?;
    Ok(object)
}

/// Ops that merge `wanted` into the string map at `path` (`/metadata/labels`): the whole map
/// when it is absent, one `add` per missing or different key otherwise.
pub fn merge_map(current: Option<&Value>, path: &str, wanted: &[(&str, &str)]) -> Vec<Op> {
    let current = current.and_then(Value::as_object);
    let changed: Vec<&(&str, &str)> = wanted
        .iter()
        .filter(|(key, value)| current.and_then(|m| m.get(*key)).and_then(Value::as_str) != Some(value))
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    match current {
        None => {
            let map: Map<String, Value> = changed.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            vec![Op::Add { path: path.to_string(), value: Value::Object(map) }]
        }
        Some(_) => changed
            .into_iter()
            .map(|(key, value)| Op::Add { path: format!("{path}/{}", escape(key)), value: json!(value) })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_tilde_before_slash() {
        for (key, want) in
            [("a", "a"), ("velero.io/data-upload", "velero.io~1data-upload"), ("a~/b", "a~0~1b"), ("~1", "~01")]
        {
            assert_eq!(escape(key), want);
        }
    }

    #[test]
    fn merges_into_absent_and_present_maps() {
        let wanted = [("team", "platform"), ("example.com/role", "backup")];
        assert_eq!(
            merge_map(None, "/metadata/labels", &wanted),
            vec![Op::Add {
                path: "/metadata/labels".into(),
                value: json!({"team": "platform", "example.com/role": "backup"})
            }]
        );
        let current = json!({"team": "platform", "example.com/role": "old"});
        assert_eq!(
            merge_map(Some(&current), "/metadata/labels", &wanted),
            vec![Op::Add { path: "/metadata/labels/example.com~1role".into(), value: json!("backup") }]
        );
        let done = json!({"team": "platform", "example.com/role": "backup"});
        assert_eq!(merge_map(Some(&done), "/metadata/labels", &wanted), Vec::<Op>::new());
    }

    #[test]
    fn apply_rejects_patches_that_do_not_apply() {
        let object = json!({"metadata": {}, "spec": {}});
        let ok = to_bytes(&[Op::Add { path: "/metadata/labels".into(), value: json!({"a": "b"}) }]);
        assert_eq!(apply(object.clone(), &ok), Ok(json!({"metadata": {"labels": {"a": "b"}}, "spec": {}})));
        let missing_parent = to_bytes(&[Op::Add { path: "/metadata/annotations/a".into(), value: json!("b") }]);
        assert!(apply(object.clone(), &missing_parent).is_err());
        let missing_member = to_bytes(&[Op::Remove { path: "/spec/priority".into() }]);
        assert!(apply(object, &missing_member).is_err());
        assert_eq!(
            String::from_utf8(to_bytes(&[Op::Remove { path: "/a~1b".into() }])).ok().as_deref(),
            Some(r#"[{"op":"remove","path":"/a~1b"}]"#)
        );
    }
}
