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

/// The value at `path` (object keys, unescaped), without the allocations of `Value::pointer`:
/// the planner looks up a dozen fixed paths per pod.
pub fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.as_object()?.get(*key))
}

/// The pointer of member `key` of the object at `path`: `path`, `/`, and `key` as an RFC 6901
/// reference token (`~` as `~0`, `/` as `~1`), in one allocation (the planner builds one per
/// label and annotation).
pub fn child(path: &str, key: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1 + key.len());
    out.push_str(path);
    out.push('/');
    let mut plain = 0;
    for (i, byte) in key.bytes().enumerate() {
        let escaped = match byte {
            b'~' => "~0",
            b'/' => "~1",
            _ => continue,
        };
        out.push_str(&key[plain..i]);
        out.push_str(escaped);
        plain = i + 1;
    }
    out.push_str(&key[plain..]);
    out
}

/// Where `byte` (ASCII) first occurs in `text`. A byte loop: `str::find` with a `char` sets up a
/// `memchr` search, which costs more than these short tokens take to scan.
fn position(text: &str, byte: u8) -> Option<usize> {
    text.bytes().position(|b| b == byte)
}

/// Serializes the operations as the JSON array the API server expects.
pub fn to_bytes(ops: &[Op]) -> Vec<u8> {
    serde_json::to_vec(ops).unwrap_or_else(|_| b"[]".to_vec())
}

/// Why an op does not apply; the wording follows RFC 6902's error conditions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("op {index}: path {path:?} is not a JSON pointer")]
    InvalidPointer { index: usize, path: String },
    #[error("op {index}: path {path:?} has no parent to add to")]
    NoParent { index: usize, path: String },
    #[error("op {index}: path {path:?} does not exist")]
    NoTarget { index: usize, path: String },
}

/// Applies `ops` in order to `object` with RFC 6902 semantics (`add` upserts an object
/// member or inserts into an array at an index up to its length or at `-`; `remove` needs its
/// target). The webhook's self-check: the same outcome as applying the serialized patch, with
/// no re-parse of it; the ops are consumed, so their values move into `object` uncopied. A property test holds it to the `json_patch` crate.
pub fn apply_ops(object: &mut Value, ops: impl IntoIterator<Item = Op>) -> Result<(), PatchError> {
    for (index, op) in ops.into_iter().enumerate() {
        let (path, value) = match op {
            Op::Add { path, value } => (path, Some(value)),
            Op::Remove { path } => (path, None),
        };
        let Some(slash) = path.bytes().rposition(|b| b == b'/') else {
            return Err(PatchError::InvalidPointer { index, path });
        };
        let (parent_pointer, last) = (&path[..slash], &path[slash + 1..]);
        let Some(last) = unescape(last) else { return Err(PatchError::InvalidPointer { index, path }) };
        let adding = value.is_some();
        let applied = match (value, pointer_mut(object, parent_pointer)) {
            (Some(value), Some(Value::Object(map))) => {
                map.insert(last.into_owned(), value);
                true
            }
            (Some(value), Some(Value::Array(items))) => {
                let at = if last == "-" { Some(items.len()) } else { array_index(&last) };
                at.filter(|at| *at <= items.len()).map(|at| items.insert(at, value)).is_some()
            }
            (None, Some(Value::Object(map))) => map.remove(last.as_ref()).is_some(),
            (None, Some(Value::Array(items))) => {
                array_index(&last).filter(|at| *at < items.len()).map(|at| items.remove(at)).is_some()
            }
            (_, _) => false,
        };
        if !applied {
            return Err(if adding {
                PatchError::NoParent { index, path }
            } else {
                PatchError::NoTarget { index, path }
            });
        }
    }
    Ok(())
}

/// The value an RFC 6901 pointer names (`""` is the whole document), for writing.
fn pointer_mut<'v>(value: &'v mut Value, pointer: &str) -> Option<&'v mut Value> {
    if pointer.is_empty() {
        return Some(value);
    }
    let mut rest = Some(pointer.strip_prefix('/')?);
    let mut tokens = std::iter::from_fn(|| {
        let current = rest?;
        let (token, after) = match position(current, b'/') {
            Some(at) => (&current[..at], Some(&current[at + 1..])),
            None => (current, None),
        };
        rest = after;
        Some(token)
    });
    tokens.try_fold(value, |target, token| {
        let token = unescape(token)?;
        match target {
            Value::Object(map) => map.get_mut(token.as_ref()),
            Value::Array(items) => items.get_mut(array_index(&token)?),
            _ => None,
        }
    })
}

/// One reference token, unescaped (`~1` → `/`, `~0` → `~`); `None` for any other `~`.
fn unescape(token: &str) -> Option<std::borrow::Cow<'_, str>> {
    let Some(first) = position(token, b'~') else { return Some(std::borrow::Cow::Borrowed(token)) };
    let mut out = String::with_capacity(token.len());
    let mut rest = token;
    let mut next = Some(first);
    while let Some(at) = next {
        out.push_str(&rest[..at]);
        out.push(match rest.as_bytes().get(at + 1) {
            Some(b'0') => '~',
            Some(b'1') => '/',
            _ => return None,
        });
        rest = &rest[at + 2..];
        next = position(rest, b'~');
    }
    out.push_str(rest);
    Some(std::borrow::Cow::Owned(out))
}

/// An array index as RFC 6901 spells it: `0`, or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits = token.bytes().all(|b| b.is_ascii_digit());
    (digits && !token.is_empty() && (token == "0" || !token.starts_with('0'))).then(|| token.parse().ok()).flatten()
}

/// Whether merging `wanted` into the string map `current` changes anything (`merge_map`
/// would return ops), without building them.
pub fn map_differs(current: Option<&Value>, wanted: &[(&str, &str)]) -> bool {
    wanted.iter().any(|entry| differs(current, entry))
}

fn differs(current: Option<&Value>, (key, value): &(&str, &str)) -> bool {
    current.and_then(|map| map.get(*key)).and_then(Value::as_str) != Some(*value)
}

/// Ops that merge `wanted` into the string map at `path` (`/metadata/labels`): the whole map
/// when it is absent, one `add` per missing or different key otherwise.
pub fn merge_map(current: Option<&Value>, path: &str, wanted: &[(&str, &str)]) -> Vec<Op> {
    let changed: Vec<&(&str, &str)> = wanted.iter().filter(|entry| differs(current, entry)).collect();
    let current = current.and_then(Value::as_object);
    if changed.is_empty() {
        return Vec::new();
    }
    match current {
        None => {
            let map: Map<String, Value> = changed.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            vec![Op::Add { path: path.to_string(), value: Value::Object(map) }]
        }
        Some(_) => {
            changed.into_iter().map(|(key, value)| Op::Add { path: child(path, key), value: json!(value) }).collect()
        }
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
            assert_eq!(child("/metadata/labels", key), format!("/metadata/labels/{want}"));
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
    fn applies_ops_in_memory_with_rfc_6902_semantics() {
        let add = |path: &str, value: Value| Op::Add { path: path.into(), value };
        let remove = |path: &str| Op::Remove { path: path.into() };
        let pod = json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"priority": 0, "list": ["x", "y"]}});
        let cases: Vec<(Vec<Op>, Result<Value, &str>)> = vec![
            (
                vec![add("/metadata/annotations", json!({"k": "v"})), add("/metadata/annotations/k2", json!("v2"))],
                Ok(json!({"metadata": {"labels": {"a/b": "1"}, "annotations": {"k": "v", "k2": "v2"}},
                          "spec": {"priority": 0, "list": ["x", "y"]}})),
            ),
            (
                vec![add("/metadata/labels/a~1b", json!("2")), remove("/spec/priority")],
                Ok(json!({"metadata": {"labels": {"a/b": "2"}}, "spec": {"list": ["x", "y"]}})),
            ),
            (
                vec![add("/spec/list/-", json!("z")), add("/spec/list/0", json!("w")), remove("/spec/list/1")],
                Ok(json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"priority": 0, "list": ["w", "y", "z"]}})),
            ),
            (
                vec![add("/metadata/annotations/k", json!("v"))],
                Err(r#"op 0: path "/metadata/annotations/k" has no parent to add to"#),
            ),
            (vec![remove("/spec/preemptionPolicy")], Err(r#"op 0: path "/spec/preemptionPolicy" does not exist"#)),
            (vec![add("/spec/list/3", json!("z"))], Err(r#"op 0: path "/spec/list/3" has no parent to add to"#)),
            (vec![add("/spec/list/01", json!("z"))], Err(r#"op 0: path "/spec/list/01" has no parent to add to"#)),
            (vec![remove("/spec/list/-")], Err(r#"op 0: path "/spec/list/-" does not exist"#)),
            (vec![add("/spec/priority/x", json!(1))], Err(r#"op 0: path "/spec/priority/x" has no parent to add to"#)),
            (
                vec![remove("/spec/priority"), remove("/spec/priority")],
                Err(r#"op 1: path "/spec/priority" does not exist"#),
            ),
            (vec![add("metadata", json!({}))], Err(r#"op 0: path "metadata" is not a JSON pointer"#)),
            (
                vec![add("/metadata/labels/a~2", json!("x"))],
                Err(r#"op 0: path "/metadata/labels/a~2" is not a JSON pointer"#),
            ),
        ];
        for (ops, want) in cases {
            let mut patched = pod.clone();
            let got = apply_ops(&mut patched, ops.clone()).map(|()| patched).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "ops: {ops:?}");
        }
    }

    /// What the API server receives, as the RFC spells it, and what `json_patch` (the API
    /// server's semantics, in Rust) makes of it: the same as `apply_ops`, failures included.
    #[test]
    fn serialized_ops_apply_as_the_json_patch_crate_applies_them() {
        let object = json!({"metadata": {}, "spec": {}});
        let cases = [
            vec![Op::Add { path: "/metadata/labels".into(), value: json!({"a": "b"}) }],
            vec![Op::Add { path: "/metadata/annotations/a".into(), value: json!("b") }],
            vec![Op::Remove { path: "/spec/priority".into() }],
        ];
        for ops in cases {
            let patch: json_patch::Patch = serde_json::from_slice(&to_bytes(&ops)).expect("a JSON patch");
            let mut by_crate = object.clone();
            let by_crate = json_patch::patch(&mut by_crate, &patch).map(|()| by_crate).ok();
            let mut ours = object.clone();
            let ours = apply_ops(&mut ours, ops.clone()).map(|()| ours).ok();
            assert_eq!(ours, by_crate, "{ops:?}");
        }
        assert_eq!(
            String::from_utf8(to_bytes(&[Op::Remove { path: "/a~1b".into() }])).ok().as_deref(),
            Some(r#"[{"op":"remove","path":"/a~1b"}]"#)
        );
    }
}
