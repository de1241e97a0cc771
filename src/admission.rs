//! The AdmissionReview wire format (admission.k8s.io/v1): request in, response out.
//!
//! This is the only module that knows the JSON shape kube-apiserver sends and demands
//! (`k8s.io/api/admission/v1/types.go` and `VerifyAdmissionResponse` in
//! `k8s.io/apiserver/pkg/admission/plugin/webhook/request/admissionreview.go`, v0.37.2): the uid,
//! `apiVersion` and `kind` are echoed, a patch is base64 JSONPatch with its `patchType`, and a
//! denial carries a 4xx status.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// The API server cuts each warning at 256 characters; we cut first, so the cut is ours.
pub const MAX_WARNING_CHARS: usize = 256;

/// Why a body is not a review we can answer; the server answers 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is not JSON: {0}")]
    NotJson(String),
    #[error("request body is not an AdmissionReview: {0}")]
    NotAdmissionReview(String),
    #[error("unsupported apiVersion {0:?}: only admission.k8s.io/v1 is served; set admissionReviewVersions: [v1]")]
    UnsupportedVersion(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// Bounded label values for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub extra: Map<String, Value>,
}

impl UserInfo {
    /// The first value of `extra[key]` (the API server sends a list of strings).
    pub fn extra_value(&self, key: &str) -> Option<&str> {
        match self.extra.get(key)? {
            Value::Array(items) => items.first()?.as_str(),
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The part of `request` the webhooks use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub uid: String,
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub operation: Operation,
    #[serde(default)]
    pub user_info: UserInfo,
    #[serde(default, deserialize_with = "pruned::object")]
    pub object: Option<Value>,
    #[serde(default, deserialize_with = "pruned::object")]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: Option<String>,
    kind: Option<String>,
    /// Decoded in the same pass: a review is read once, straight into the typed request.
    request: Option<Request>,
}

/// Just `apiVersion` and `kind`, for precise errors about a review that does not decode.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
}

fn check_header(kind: Option<String>, api_version: Option<String>) -> Result<(), ReviewError> {
    if kind.as_deref() != Some(KIND) {
        return Err(ReviewError::NotAdmissionReview(format!(
            "kind is {:?}, want \"AdmissionReview\"",
            kind.unwrap_or_default()
        )));
    }
    let api_version = api_version.unwrap_or_default();
    if api_version != API_VERSION {
        return Err(ReviewError::UnsupportedVersion(api_version));
    }
    Ok(())
}

/// Decodes an AdmissionReview body into its request.
pub fn decode_review(body: &[u8]) -> Result<Request, ReviewError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b != b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => ReviewError::NotAdmissionReview("expected a JSON object".to_string()),
            Err(e) => ReviewError::NotJson(e.to_string()),
        });
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(e) if e.is_data() => {
            // Rare: say first what is wrong with the envelope (kind, version), then the request.
            if let Ok(header) = serde_json::from_slice::<Header>(body) {
                check_header(header.kind, header.api_version)?;
            }
            return Err(ReviewError::NotAdmissionReview(e.to_string()));
        }
        Err(e) => return Err(ReviewError::NotJson(e.to_string())),
    };
    check_header(envelope.kind, envelope.api_version)?;
    let request = envelope.request.ok_or(ReviewError::MissingRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NotAdmissionReview("request.uid is empty".to_string()));
    }
    Ok(request)
}

/// What a webhook decided about one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// For denials: the HTTP code and reason the client sees, and one finding per line.
    pub denial: Option<Denial>,
    pub warnings: Vec<String>,
    /// An RFC 6902 JSON patch (a JSON array), for mutating webhooks only.
    pub patch: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Decision {
    pub fn allow() -> Self {
        Self { allowed: true, ..Self::default() }
    }

    pub fn allow_with_warnings(warnings: Vec<String>) -> Self {
        Self { allowed: true, warnings, ..Self::default() }
    }

    /// 422 Invalid: the object is malformed, as the API server's own validation answers.
    pub fn deny_invalid(message: String, warnings: Vec<String>) -> Self {
        Self {
            allowed: false,
            denial: Some(Denial { code: 422, reason: "Invalid", message }),
            warnings,
            ..Self::default()
        }
    }
}

#[derive(Serialize)]
struct StatusOut<'a> {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: &'a str,
}

/// Encodes the AdmissionReview response for `uid`. The envelope is written by hand so that
/// the patch's base64 goes straight into the output: through serde it would be escape-scanned
/// byte by byte (a 12-op patch is 2 KB of base64).
pub fn encode_response(uid: &str, decision: &Decision) -> Vec<u8> {
    let patch_len = decision.patch.as_ref().map_or(0, |p| p.len().div_ceil(3) * 4);
    let mut out = Vec::with_capacity(192 + uid.len() + patch_len);
    out.extend_from_slice(br#"{"apiVersion":""#);
    out.extend_from_slice(API_VERSION.as_bytes());
    out.extend_from_slice(br#"","kind":""#);
    out.extend_from_slice(KIND.as_bytes());
    out.extend_from_slice(br#"","response":{"uid":"#);
    let written = serde_json::to_writer(&mut out, uid).and_then(|()| {
        out.extend_from_slice(if decision.allowed { br#","allowed":true"# } else { br#","allowed":false"# });
        if let Some(denial) = &decision.denial {
            out.extend_from_slice(br#","status":"#);
            let status =
                StatusOut { status: "Failure", code: denial.code, reason: denial.reason, message: &denial.message };
            serde_json::to_writer(&mut out, &status)?;
        }
        if !decision.warnings.is_empty() {
            out.extend_from_slice(br#","warnings":"#);
            let warnings: Vec<_> = decision.warnings.iter().map(|w| truncate_warning(w)).collect();
            serde_json::to_writer(&mut out, &warnings)?;
        }
        Ok(())
    });
    if written.is_err() {
        // Writing strings and plain structs into a Vec cannot fail; answer nothing rather than half.
        return Vec::new();
    }
    if let Some(patch) = &decision.patch {
        out.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
        let start = out.len();
        out.resize(start + patch_len, 0);
        let encoded = base64::engine::general_purpose::STANDARD.encode_slice(patch, &mut out[start..]).unwrap_or(0);
        out.truncate(start + encoded);
        out.push(b'"');
    }
    out.extend_from_slice(b"}}");
    out
}

fn truncate_warning(warning: &str) -> std::borrow::Cow<'_, str> {
    if warning.chars().count() <= MAX_WARNING_CHARS {
        return std::borrow::Cow::Borrowed(warning);
    }
    let mut cut: String = warning.chars().take(MAX_WARNING_CHARS - 3).collect();
    cut.push_str("...");
    std::borrow::Cow::Owned(cut)
}

/// Reads `object`/`oldObject` keeping only the fields the cores declare they read (a pod's:
/// [`POD_FIELDS`](crate::mutate::POD_FIELDS), which every patch path lies in; a ConfigMap's:
/// [`CONFIGMAP_FIELDS`](crate::config::configmap::CONFIGMAP_FIELDS)) and the object's type:
/// volumes, env, managedFields and status are skipped without being built. Checking a patch
/// against the pruned pod is equivalent, since every op lies in a kept subtree.
mod pruned {
    use std::fmt;
    use std::sync::OnceLock;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use crate::config::configmap::CONFIGMAP_FIELDS;
    use crate::mutate::POD_FIELDS;

    /// What a pruned object says it is; the cores do not read it.
    const TYPE_FIELDS: &[&[&str]] = &[&["apiVersion"], &["kind"]];

    /// The path segment that stands for each item of a list.
    const ITEMS: &str = "[]";

    /// Which part of a JSON value to keep: all of it, or some fields of an object and some
    /// part of each item of a list.
    #[derive(Debug, Default, PartialEq)]
    pub struct Keep {
        all: bool,
        fields: Vec<(&'static str, Keep)>,
        items: Option<Box<Keep>>,
    }

    impl Keep {
        /// The tree of `paths`: a path that ends here keeps everything below.
        fn of(paths: &[&'static [&'static str]]) -> Keep {
            let split: Vec<(&'static str, &'static [&'static str])> =
                paths.iter().filter_map(|path| path.split_first()).map(|(head, rest)| (*head, rest)).collect();
            if split.len() < paths.len() {
                return Keep { all: true, ..Keep::default() };
            }
            let below = |head: &str| -> Vec<&'static [&'static str]> {
                split.iter().filter(|(h, _)| *h == head).map(|(_, rest)| *rest).collect()
            };
            let mut keep = Keep::default();
            for &(head, _) in &split {
                if head == ITEMS {
                    if keep.items.is_none() {
                        keep.items = Some(Box::new(Keep::of(&below(head))));
                    }
                } else if !keep.fields.iter().any(|(name, _)| *name == head) {
                    keep.fields.push((head, Keep::of(&below(head))));
                }
            }
            keep
        }
    }

    /// Built once, on the first review.
    fn object_fields() -> &'static Keep {
        static OBJECT: OnceLock<Keep> = OnceLock::new();
        OBJECT.get_or_init(|| {
            let paths: Vec<&'static [&'static str]> =
                TYPE_FIELDS.iter().chain(POD_FIELDS).chain(CONFIGMAP_FIELDS).copied().collect();
            Keep::of(&paths)
        })
    }

    /// Everything: what a list item or a field is kept as when its tree says nothing more.
    static ALL: Keep = Keep { all: true, fields: Vec::new(), items: None };

    pub fn object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
        let value = object_fields().deserialize(deserializer)?;
        Ok(if value.is_null() { None } else { Some(value) })
    }

    impl<'de> DeserializeSeed<'de> for &'static Keep {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            if self.all {
                serde::Deserialize::deserialize(deserializer)
            } else {
                deserializer.deserialize_any(self)
            }
        }
    }

    impl<'de> Visitor<'de> for &'static Keep {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let item: &'static Keep = self.items.as_deref().unwrap_or(&ALL);
            let mut items = Vec::new();
            while let Some(v) = seq.next_element_seed(item)? {
                items.push(v);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let fields: &'static [(&'static str, Keep)] = &self.fields;
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                match fields.iter().find(|(name, _)| *name == key) {
                    Some((_, keep)) => {
                        let value = map.next_value_seed(keep)?;
                        out.insert(key, value);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request}))
            .expect("serializable")
    }

    #[test]
    fn decodes_a_configmap_review() {
        let body = review(json!({
            "uid": "u1", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": "cm", "namespace": "velero", "operation": "CREATE",
            "userInfo": {"username": "alice", "extra": {"authentication.kubernetes.io/pod-name": ["node-agent-x"]}},
            "object": {"kind": "ConfigMap"}, "oldObject": null, "dryRun": false
        }));
        let request = decode_review(&body).expect("decodes");
        assert_eq!(request.uid, "u1");
        assert_eq!(request.kind.kind, "ConfigMap");
        assert_eq!(request.operation, Operation::Create);
        assert_eq!(request.user_info.extra_value("authentication.kubernetes.io/pod-name"), Some("node-agent-x"));
        assert_eq!(request.old_object, None);
    }

    #[test]
    fn rejects_what_is_not_a_v1_review() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "request body is not JSON"),
            (b"[]".to_vec(), "request body is not an AdmissionReview"),
            (br#"{"kind": "Pod"}"#.to_vec(), "kind is \"Pod\""),
            (
                br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}"#.to_vec(),
                "unsupported apiVersion \"admission.k8s.io/v1beta1\"",
            ),
            (
                br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_vec(),
                "AdmissionReview has no request",
            ),
            (review(json!({"uid": "u", "kind": {}, "operation": "EXPLODE"})), "unknown variant `EXPLODE`"),
            (review(json!({"uid": "", "kind": {}, "operation": "CREATE"})), "request.uid is empty"),
            (review(json!({"kind": {}, "operation": "CREATE"})), "missing field `uid`"),
        ];
        for (body, want) in cases {
            let err = decode_review(&body).expect_err(want).to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn encodes_denials_warnings_and_patches() {
        let denied = Decision::deny_invalid("data[c]: bad".into(), vec!["w".into()]);
        let out: Value = serde_json::from_slice(&encode_response("u9", &denied)).expect("json");
        assert_eq!(
            out,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
                "uid": "u9", "allowed": false, "warnings": ["w"],
                "status": {"status": "Failure", "code": 422, "reason": "Invalid", "message": "data[c]: bad"}}})
        );
        let patched = Decision { allowed: true, patch: Some(b"[]".to_vec()), ..Decision::default() };
        let out: Value = serde_json::from_slice(&encode_response("u", &patched)).expect("json");
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        assert_eq!(out["response"]["patch"], "W10=");
        assert!(out["response"].get("status").is_none());
        for patch in ["[", "[]", "[{}", "[{}]", "[{\"op\":\"remove\",\"path\":\"/a~1b\"}]"] {
            let decision = Decision { allowed: true, patch: Some(patch.as_bytes().to_vec()), ..Decision::default() };
            let out: Value = serde_json::from_slice(&encode_response("a\"b\\c", &decision)).expect("json");
            assert_eq!(out["response"]["uid"], "a\"b\\c");
            let encoded = out["response"]["patch"].as_str().expect("a string");
            assert_eq!(base64::engine::general_purpose::STANDARD.decode(encoded).ok(), Some(patch.as_bytes().to_vec()));
        }
    }

    #[test]
    fn long_warnings_are_cut_to_the_api_server_limit() {
        let decision = Decision::allow_with_warnings(vec!["é".repeat(300)]);
        let out: Value = serde_json::from_slice(&encode_response("u", &decision)).expect("json");
        let warning = out["response"]["warnings"][0].as_str().expect("string");
        assert_eq!(warning.chars().count(), MAX_WARNING_CHARS);
        assert!(warning.ends_with("..."));
    }

    #[test]
    fn objects_keep_only_what_the_webhooks_read() {
        let body = review(json!({
            "uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE",
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a": "b"}, "managedFields": [{"manager": "x"}], "uid": "1"},
                "spec": {"volumes": [{"name": "v"}], "nodeName": "n", "priority": 0,
                         "containers": [{"name": "c", "image": "i", "env": [], "resources": {"limits": {"cpu": "1"}}}]},
                "status": {"phase": "Pending"}},
            "oldObject": null
        }));
        let request = decode_review(&body).expect("decodes");
        assert_eq!(
            request.object,
            Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
                "spec": {"nodeName": "n", "priority": 0, "containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]}}))
        );
        assert_eq!(request.old_object, None);
    }

    #[test]
    fn objects_keep_every_field_the_cores_declare() {
        let mut object = json!({});
        let paths = crate::mutate::POD_FIELDS.iter().chain(crate::config::configmap::CONFIGMAP_FIELDS);
        for path in paths {
            let mut at = &mut object;
            for segment in *path {
                at = if *segment == "[]" {
                    if !at.is_array() {
                        *at = json!([{}]);
                    }
                    &mut at[0]
                } else {
                    &mut at[*segment]
                };
            }
            *at = json!({"kept": true});
        }
        let body =
            review(json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": object.clone()}));
        assert_eq!(decode_review(&body).expect("decodes").object, Some(object));
    }
}
