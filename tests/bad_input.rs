//! A bad-input corpus against the real binary over TLS: one server, one kept-alive client, one
//! row per request with the exact answer it must get. After every row the server must still
//! answer a good review, every 200 row must get the same answer when replayed as a dry run,
//! and no row may panic the server.
//!
//! Content type: kube-apiserver always sends `application/json`, and the body is decoded
//! strictly as an admission.k8s.io/v1 AdmissionReview whatever the header says, so the header
//! is ignored on purpose. Rejecting other types would add a failure mode (a proxy that rewrites
//! the header would fail every admission closed) and protect nothing: the listener is TLS-only
//! and never sees browsers. The `content_type_*` rows pin that behaviour.

mod support;

use node_agent_webhook::config::load::file_id;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};
use support::*;

const NODE_AGENT: &str = "system:serviceaccount:velero:velero";
const MIB: usize = 1024 * 1024;
/// The server's body cap (controller-runtime's: 2 × 3 MiB objects + 1 MiB).
const MAX_BODY: usize = 7 * MIB;
/// What the server's config gives every data-mover pod.
const LIVE_CONFIG: &str = r#"{
  "loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}],
  "podResources": {"cpuRequest": "500m", "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "0"},
  "podLabels": {"team": "platform"},
  "priorityClassName": "velero-data-mover"
}"#;
const TERMS: &str = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms";
/// Every answer must come well within kube-apiserver's default webhook timeout (10 s), even
/// from this debug build (the slowest row, a 1 MiB unknown config key, takes ~3.5 s in debug
/// and ~0.1 s in release).
const ANSWER_BUDGET: Duration = Duration::from_secs(8);
const APPLIED: &str = "/metadata/annotations/node-agent-webhook.io~1applied";

/// One request of the corpus and the answer it must get.
struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    /// `None` sends no Content-Type header at all.
    content_type: Option<&'static str>,
    body: Vec<u8>,
    want: Want,
}

enum Want {
    /// A plain (non-review) answer with this status whose text contains the fragment.
    Http(u16, &'static str),
    /// A 200 AdmissionReview answer.
    Review(Verdict),
}

struct Verdict {
    /// The uid the response must echo; the row's name unless the row is about the uid.
    uid: Option<&'static str>,
    /// `None` for an admission; for a denial (always 422 Invalid), a fragment of its message.
    denial: Option<&'static str>,
    /// Fragments that must each appear in some warning; empty means no `warnings` at all.
    warnings: Vec<&'static str>,
    /// `None`: no patch. `Some`: a patch that applies to `request.object` and leaves these
    /// pointers with these values (`null` meaning absent).
    patched: Option<Vec<(String, Value)>>,
}

fn allowed() -> Want {
    Want::Review(Verdict { uid: None, denial: None, warnings: Vec::new(), patched: None })
}

fn denied(message: &'static str) -> Want {
    Want::Review(Verdict { uid: None, denial: Some(message), warnings: Vec::new(), patched: None })
}

fn allowed_with_warning(warning: &'static str) -> Want {
    Want::Review(Verdict { uid: None, denial: None, warnings: vec![warning], patched: None })
}

fn allowed_with_uid(uid: &'static str) -> Want {
    Want::Review(Verdict { uid: Some(uid), denial: None, warnings: Vec::new(), patched: None })
}

fn patched(values: Vec<(String, Value)>) -> Want {
    Want::Review(Verdict { uid: None, denial: None, warnings: Vec::new(), patched: Some(values) })
}

/// What every data-mover pod CREATE gets from [`LIVE_CONFIG`], plus the row's own checks.
fn mover_patched(mut extra: Vec<(String, Value)>) -> Want {
    let mut values: Vec<(String, Value)> = [
        ("/metadata/labels/team", json!("platform")),
        ("/spec/priorityClassName", json!("velero-data-mover")),
        ("/spec/priority", Value::Null),
        ("/spec/containers/0/resources", json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1"}})),
        (
            APPLIED,
            json!(format!(
                "loadAffinity,podResources,priorityClassName,podLabels (config {})",
                file_id(LIVE_CONFIG.as_bytes())
            )),
        ),
    ]
    .into_iter()
    .map(|(pointer, value)| (pointer.to_string(), value))
    .collect();
    values.append(&mut extra);
    patched(values)
}

/// [`mover_patched`] for a pod whose only node affinity term matches no node: its affinity
/// is left as it is, and the summary does not name loadAffinity.
fn mover_patched_but_affinity() -> Want {
    let Want::Review(mut verdict) = mover_patched(vec![]) else { unreachable!("mover_patched is a review") };
    let summary = format!("podResources,priorityClassName,podLabels (config {})", file_id(LIVE_CONFIG.as_bytes()));
    let values = verdict.patched.get_or_insert_with(Vec::new);
    values.retain(|(pointer, _)| pointer != APPLIED);
    values.push((APPLIED.to_string(), json!(summary)));
    values.push((format!("{TERMS}/0/matchExpressions"), Value::Null));
    Want::Review(verdict)
}

/// Where the `loadAffinity` requirement must land: the pod's first term, at `index`.
fn role_requirement_at(index: usize) -> (String, Value) {
    let pointer = format!("{TERMS}/0/matchExpressions/{index}");
    (pointer, json!({"key": "role", "operator": "In", "values": ["backup"]}))
}

/// A POST row; `body` gets the row's name, to use as the review's uid.
fn post(name: &'static str, path: &'static str, body: impl FnOnce(&str) -> Vec<u8>, want: Want) -> Case {
    Case { name, method: Method::POST, path, content_type: Some("application/json"), body: body(name), want }
}

/// A POST row whose body is a review built from the row's name as uid.
fn post_json(name: &'static str, path: &'static str, review: impl FnOnce(&str) -> Value, want: Want) -> Case {
    post(name, path, |uid| to_bytes(&review(uid)), want)
}

fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serializable")
}

/// `value` with `new` at `pointer` (the parent must exist and be an object).
fn set(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let key = key.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key, new);
        }
        other => panic!("{parent} is not an object: {other:?}"),
    }
    value
}

/// `value` without the member at `pointer`.
fn without(mut value: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    if let Some(Value::Object(map)) = value.pointer_mut(parent) {
        map.remove(key);
    }
    value
}

/// The serialized `value` with the raw bytes `raw` (not necessarily valid JSON) at `pointer`.
fn with_raw(value: Value, pointer: &str, raw: &[u8]) -> Vec<u8> {
    const MARK: &str = "@@raw-bytes-go-here@@";
    let text = to_bytes(&set(value, pointer, json!(MARK)));
    replace_once(&text, format!("\"{MARK}\"").as_bytes(), raw)
}

/// `haystack` with the first occurrence of `from` replaced by `to`.
fn replace_once(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = haystack.windows(from.len()).position(|w| w == from).expect("the text to replace");
    [&haystack[..at], to, &haystack[at + from.len()..]].concat()
}

/// `[[[…]]]` (or `{"a":{"a":…}}`), `depth` levels deep.
fn nested(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }
}

fn configmap(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "node-agent-config", "namespace": "velero", "labels": {"app": "velero"}},
           "data": data})
}

/// A review of node-agent's ConfigMap, with the row's name as uid.
fn cm_review(uid: &str, operation: &str, object: Option<Value>, old: Option<Value>) -> Value {
    let mut review = configmap_review(operation, object.as_ref(), old.as_ref());
    review["request"]["uid"] = json!(uid);
    review["request"]["name"] = json!("node-agent-config");
    review["request"]["namespace"] = json!("velero");
    review
}

/// A CREATE of Velero's ConfigMap `name` (one of the other two kinds) holding `data`.
fn other_cm(uid: &str, name: &str, data: Value) -> Value {
    let mut object = configmap(data);
    object["metadata"]["name"] = json!(name);
    let mut review = cm_review(uid, "CREATE", Some(object), None);
    review["request"]["name"] = json!(name);
    review
}

fn valid_cm(uid: &str) -> Value {
    cm_review(uid, "CREATE", Some(configmap(json!({"config": "{}"}))), None)
}

/// A ConfigMap CREATE whose single data value is `text`.
fn cm_with_value(uid: &str, text: String) -> Value {
    cm_review(uid, "CREATE", Some(configmap(json!({ "config": text }))), None)
}

fn mover_pod() -> Value {
    as_admitted(repo_json("testdata/pods/v1.18/pod-dataupload.json"))
}

/// A review of a pod created by node-agent in the Velero namespace, with the row's name as uid.
fn pod_review(uid: &str, operation: &str, object: Option<Value>, old: Option<Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "nightly-20250610020012-7qk2v", "namespace": "velero", "operation": operation,
            "userInfo": {"username": NODE_AGENT, "uid": "9b0e", "groups": ["system:serviceaccounts"],
                         "extra": {"authentication.kubernetes.io/pod-name": ["node-agent-x7k2p"]}},
            "object": object, "oldObject": old, "dryRun": false
        }
    })
}

fn mover_create(uid: &str) -> Value {
    pod_review(uid, "CREATE", Some(mover_pod()), None)
}

/// The corpus: one row per request. JSON reviews carry the row's name as uid unless the row is
/// about the uid itself.
fn corpus() -> Vec<Case> {
    let not_json = "request body is not JSON";
    let not_review = "request body is not an AdmissionReview";
    let only_v1 = "only admission.k8s.io/v1 is served; set admissionReviewVersions: [v1]";
    let eof = "request body is not JSON: EOF while parsing";
    let trailing = "request body is not JSON: trailing characters";
    let too_deep = "recursion limit exceeded";
    let no_request = "AdmissionReview has no request";
    let not_a_string = "request body is not an AdmissionReview: invalid type: integer `5`, expected a string";
    let must_hold_one_key = "data: Required value: must hold exactly one key";
    let empty_cm = || configmap(json!({"config": "{}"}));
    vec![
        // --- HTTP: methods, paths, headers, sizes.
        Case {
            method: Method::GET,
            content_type: None,
            ..post("get_on_validate", "/validate", |_| Vec::new(), Want::Http(405, ""))
        },
        Case { method: Method::PUT, ..post_json("put_on_mutate", "/mutate", mover_create, Want::Http(405, "")) },
        post_json("unknown_path", "/admit", valid_cm, Want::Http(404, "")),
        post_json("trailing_slash_path", "/validate/", valid_cm, Want::Http(404, "")),
        post_json("metrics_path_on_the_webhook_port", "/metrics", valid_cm, Want::Http(404, "")),
        post_json("unparsable_timeout_query_uses_the_default", "/validate?timeout=soon", valid_cm, allowed()),
        Case {
            content_type: Some("text/plain"),
            ..post_json("content_type_text_plain_is_ignored", "/validate", valid_cm, allowed())
        },
        Case {
            content_type: None,
            ..post_json("content_type_absent_is_ignored", "/mutate", mover_create, mover_patched(vec![]))
        },
        post("empty_body", "/validate", |_| Vec::new(), Want::Http(400, eof)),
        post("body_of_exactly_7_mib_is_read", "/validate", |_| vec![b' '; MAX_BODY], Want::Http(400, eof)),
        post(
            "body_of_7_mib_plus_1_is_too_large",
            "/validate",
            |_| vec![b' '; MAX_BODY + 1],
            Want::Http(413, "request body is larger than 7340032 bytes"),
        ),
        // --- Bodies that are not JSON.
        post("not_json", "/validate", |_| b"definitely not json".to_vec(), Want::Http(400, not_json)),
        post("truncated_json", "/validate", |uid| to_bytes(&valid_cm(uid))[..60].to_vec(), Want::Http(400, eof)),
        post(
            "invalid_utf8_in_the_request",
            "/validate",
            |uid| with_raw(valid_cm(uid), "/request/name", b"\"node-agent-\xff\xfe\""),
            Want::Http(400, "request body is not JSON: invalid unicode code point"),
        ),
        post(
            "lone_surrogate_escape_in_the_request",
            "/validate",
            |uid| with_raw(valid_cm(uid), "/request/name", b"\"node-agent-\\ud800\""),
            Want::Http(400, "request body is not JSON: unexpected end of hex escape"),
        ),
        post(
            "utf8_byte_order_mark_before_the_review",
            "/validate",
            |uid| [b"\xef\xbb\xbf".as_slice(), &to_bytes(&valid_cm(uid))].concat(),
            Want::Http(400, "request body is not JSON: expected value at line 1 column 1"),
        ),
        post(
            "trailing_garbage_after_the_review",
            "/validate",
            |uid| [to_bytes(&valid_cm(uid)), b" x".to_vec()].concat(),
            Want::Http(400, trailing),
        ),
        post(
            "two_reviews_in_one_body",
            "/validate",
            |uid| [to_bytes(&valid_cm(uid)), to_bytes(&valid_cm(uid))].concat(),
            Want::Http(400, trailing),
        ),
        post(
            "nested_10000_deep_arrays_as_the_body",
            "/validate",
            |_| nested(10_000, false).into_bytes(),
            Want::Http(400, "request body is not an AdmissionReview: expected a JSON object"),
        ),
        post(
            "nested_10000_deep_objects_as_the_body",
            "/validate",
            |_| nested(10_000, true).into_bytes(),
            Want::Http(400, "kind is \"\", want \"AdmissionReview\""),
        ),
        post(
            // Only the fields the webhooks read are built; the rest is skipped without recursion,
            // so this is a ConfigMap without data.
            "nested_10000_deep_objects_as_the_request_object",
            "/validate",
            |uid| with_raw(valid_cm(uid), "/request/object", nested(10_000, true).as_bytes()),
            denied("data: Required value: must hold exactly one key with the JSON config"),
        ),
        post(
            "nested_10000_deep_objects_in_a_field_the_webhooks_read",
            "/validate",
            |uid| with_raw(valid_cm(uid), "/request/object/data", nested(10_000, true).as_bytes()),
            Want::Http(400, too_deep),
        ),
        // Unknown fields are skipped without recursion (serde_json's `ignore_value` keeps its
        // stack on the heap), so even a million levels cost no stack; Go would never send them.
        post(
            "nested_1000000_deep_arrays_in_an_unknown_top_level_field_are_skipped",
            "/validate",
            |uid| with_raw(valid_cm(uid), "/extra", nested(1_000_000, false).as_bytes()),
            allowed(),
        ),
        post(
            "invalid_utf8_in_an_unknown_top_level_field_is_skipped",
            "/validate",
            |uid| with_raw(valid_cm(uid), "/extra", b"\"\xff\xfe\""),
            allowed(),
        ),
        post(
            "number_beyond_f64_in_a_field_the_review_ignores",
            "/validate",
            |uid| with_raw(valid_cm(uid), "/request/options/gracePeriodSeconds", b"1e400"),
            allowed(),
        ),
        post(
            "integer_beyond_u64_in_the_review",
            "/validate",
            |uid| with_raw(valid_cm(uid), "/request/options/gracePeriodSeconds", b"99999999999999999999999"),
            allowed(),
        ),
        // --- JSON that is not a v1 AdmissionReview.
        post("json_null_body", "/validate", |_| b"null".to_vec(), Want::Http(400, not_review)),
        post("json_array_body", "/validate", |_| b"[]".to_vec(), Want::Http(400, not_review)),
        post("json_string_body", "/validate", |_| b"\"AdmissionReview\"".to_vec(), Want::Http(400, not_review)),
        post_json(
            "wrong_kind",
            "/validate",
            |uid| set(valid_cm(uid), "/kind", json!("Pod")),
            Want::Http(400, "request body is not an AdmissionReview: kind is \"Pod\", want \"AdmissionReview\""),
        ),
        post_json(
            "missing_kind",
            "/validate",
            |uid| without(valid_cm(uid), "/kind"),
            Want::Http(400, "kind is \"\", want \"AdmissionReview\""),
        ),
        post_json(
            "wrong_api_version",
            "/validate",
            |uid| set(valid_cm(uid), "/apiVersion", json!("admission.k8s.io/v2")),
            Want::Http(400, only_v1),
        ),
        post_json(
            "v1beta1_review",
            "/validate",
            |uid| set(valid_cm(uid), "/apiVersion", json!("admission.k8s.io/v1beta1")),
            Want::Http(
                400,
                concat!(
                    "unsupported apiVersion \"admission.k8s.io/v1beta1\": ",
                    "only admission.k8s.io/v1 is served; set admissionReviewVersions: [v1]"
                ),
            ),
        ),
        post_json(
            "v1beta1_review_to_mutate",
            "/mutate",
            |uid| set(mover_create(uid), "/apiVersion", json!("admission.k8s.io/v1beta1")),
            Want::Http(400, only_v1),
        ),
        post_json(
            "missing_api_version",
            "/validate",
            |uid| without(valid_cm(uid), "/apiVersion"),
            Want::Http(400, only_v1),
        ),
        post_json(
            "missing_request",
            "/validate",
            |uid| without(valid_cm(uid), "/request"),
            Want::Http(400, no_request),
        ),
        post_json(
            "null_request",
            "/mutate",
            |uid| set(mover_create(uid), "/request", Value::Null),
            Want::Http(400, no_request),
        ),
        post_json(
            "request_is_a_string",
            "/validate",
            |uid| set(valid_cm(uid), "/request", json!("CREATE")),
            Want::Http(
                400,
                "request body is not an AdmissionReview: invalid type: string \"CREATE\", expected struct Request",
            ),
        ),
        post(
            "duplicate_top_level_kind",
            "/validate",
            |uid| {
                let kind = b"\"kind\":\"AdmissionReview\"";
                replace_once(&to_bytes(&valid_cm(uid)), kind, &[kind.as_slice(), b",", kind].concat())
            },
            Want::Http(400, "duplicate field `kind`"),
        ),
        // --- Requests with missing or mistyped fields.
        post_json(
            "missing_uid",
            "/validate",
            |uid| without(valid_cm(uid), "/request/uid"),
            Want::Http(400, "request body is not an AdmissionReview: missing field `uid`"),
        ),
        post_json(
            "empty_uid",
            "/validate",
            |uid| set(valid_cm(uid), "/request/uid", json!("")),
            Want::Http(400, "request.uid is empty"),
        ),
        post_json(
            "number_as_uid",
            "/validate",
            |uid| set(valid_cm(uid), "/request/uid", json!(5)),
            Want::Http(400, not_a_string),
        ),
        post_json(
            "uid_with_quotes_and_unicode_is_echoed_exactly",
            "/validate",
            |_| valid_cm("\"ü\u{2028}\\\u{1F600}"),
            allowed_with_uid("\"ü\u{2028}\\\u{1F600}"),
        ),
        post(
            "duplicate_uid_keys_are_refused",
            "/validate",
            |uid| {
                let first = format!("\"uid\":\"{uid}\"");
                let both = format!("\"uid\":\"first\",\"uid\":\"{uid}\"");
                replace_once(&to_bytes(&valid_cm(uid)), first.as_bytes(), both.as_bytes())
            },
            Want::Http(400, "request body is not an AdmissionReview: duplicate field `uid`"),
        ),
        post_json(
            "unknown_operation",
            "/validate",
            |uid| set(valid_cm(uid), "/request/operation", json!("PATCH")),
            Want::Http(400, "unknown variant `PATCH`"),
        ),
        post_json(
            "lowercase_operation",
            "/mutate",
            |uid| set(mover_create(uid), "/request/operation", json!("create")),
            Want::Http(400, "unknown variant `create`"),
        ),
        post_json(
            "missing_request_kind",
            "/validate",
            |uid| without(valid_cm(uid), "/request/kind"),
            Want::Http(400, "request body is not an AdmissionReview: missing field `kind`"),
        ),
        post_json(
            "number_as_namespace",
            "/validate",
            |uid| set(valid_cm(uid), "/request/namespace", json!(5)),
            Want::Http(400, not_a_string),
        ),
        post_json(
            "null_user_info",
            "/mutate",
            |uid| set(mover_create(uid), "/request/userInfo", Value::Null),
            Want::Http(400, "request body is not an AdmissionReview: invalid type: null, expected struct UserInfo"),
        ),
        post_json(
            "string_as_dry_run",
            "/validate",
            |uid| set(valid_cm(uid), "/request/dryRun", json!("yes")),
            Want::Http(400, "request body is not an AdmissionReview: invalid type: string \"yes\", expected a boolean"),
        ),
        // --- The validating webhook: node-agent's ConfigMap.
        post_json("validate_create_valid", "/validate", valid_cm, allowed()),
        post_json(
            "validate_create_without_object",
            "/validate",
            |uid| cm_review(uid, "CREATE", None, None),
            denied("request.object is missing"),
        ),
        post_json(
            "validate_update_without_object",
            "/validate",
            |uid| cm_review(uid, "UPDATE", None, Some(empty_cm())),
            denied("request.object is missing"),
        ),
        post_json(
            "validate_update_fixing_an_invalid_config",
            "/validate",
            |uid| cm_review(uid, "UPDATE", Some(empty_cm()), Some(configmap(json!({"config": "{"})))),
            allowed(),
        ),
        post_json(
            "validate_delete",
            "/validate",
            |uid| cm_review(uid, "DELETE", None, Some(empty_cm())),
            allowed_with_warning("node-agent 1.17+ fails to start without ConfigMap velero/node-agent-config"),
        ),
        post_json(
            "validate_delete_without_old_object",
            "/validate",
            |uid| cm_review(uid, "DELETE", None, None),
            allowed_with_warning("recreate it before node-agent restarts"),
        ),
        post_json(
            "validate_connect",
            "/validate",
            |uid| cm_review(uid, "CONNECT", Some(configmap(json!({"config": "{"}))), None),
            allowed(),
        ),
        post_json(
            "validate_denial_as_dry_run",
            "/validate",
            |uid| set(cm_with_value(uid, "{\"podLabels\": 5}".into()), "/request/dryRun", json!(true)),
            denied("data[config]: podLabels: Invalid value: 5"),
        ),
        post_json("pod_sent_to_validate_is_allowed_untouched", "/validate", mover_create, allowed()),
        post_json(
            "target_configmap_review_holding_a_pod_object",
            "/validate",
            |uid| cm_review(uid, "CREATE", Some(mover_pod()), None),
            denied(must_hold_one_key),
        ),
        post_json(
            "configmap_with_null_data",
            "/validate",
            |uid| cm_review(uid, "CREATE", Some(configmap(Value::Null)), None),
            denied(must_hold_one_key),
        ),
        post_json(
            "configmap_with_null_metadata",
            "/validate",
            |uid| set(valid_cm(uid), "/request/object/metadata", Value::Null),
            allowed(),
        ),
        post_json(
            "configmap_with_null_labels",
            "/validate",
            |uid| set(valid_cm(uid), "/request/object/metadata/labels", Value::Null),
            allowed(),
        ),
        post_json(
            "configmap_data_value_is_a_number",
            "/validate",
            |uid| cm_review(uid, "CREATE", Some(configmap(json!({"config": 5}))), None),
            denied("data[config]: Invalid value: must be a string"),
        ),
        post_json(
            "configmap_data_is_an_array",
            "/validate",
            |uid| cm_review(uid, "CREATE", Some(configmap(json!(["{}"]))), None),
            denied("data: Invalid value: must be an object of strings"),
        ),
        post(
            "configmap_duplicate_data_keys_last_wins_as_in_go",
            "/validate",
            |uid| replace_once(&to_bytes(&valid_cm(uid)), b"\"config\":\"{}\"", b"\"config\":\"{\",\"config\":\"{}\""),
            allowed(),
        ),
        post_json(
            "config_value_nested_10000_deep",
            "/validate",
            |uid| cm_with_value(uid, nested(10_000, false)),
            denied("data[config]: exceeded max depth of 64 nested arrays and objects"),
        ),
        post_json(
            "config_value_of_1_mib_valid_json_padded_with_whitespace",
            "/validate",
            |uid| cm_with_value(uid, format!("{{{}}}", " ".repeat(MIB))),
            allowed(),
        ),
        post_json(
            "config_value_of_1_mib_invalid_json",
            "/validate",
            |uid| cm_with_value(uid, format!("{{{}", " ".repeat(MIB))),
            denied(concat!(
                "data[config]: unexpected end of JSON input ",
                "(node-agent fails to start on invalid JSON) (line 1, column 1048578)"
            )),
        ),
        post_json(
            "config_value_of_1_mib_unknown_key",
            "/validate",
            |uid| cm_with_value(uid, format!("{{\"{}\": 1}}", "a".repeat(MIB))),
            denied("Unknown field"),
        ),
        post_json(
            "config_global_concurrency_beyond_f64",
            "/validate",
            |uid| cm_with_value(uid, r#"{"loadConcurrency": {"globalConfig": 1e400}}"#.into()),
            denied("data[config]: loadConcurrency.globalConfig: Invalid value: 1e400"),
        ),
        post_json(
            "config_global_concurrency_beyond_i64",
            "/validate",
            |uid| cm_with_value(uid, r#"{"loadConcurrency": {"globalConfig": 99999999999999999999999}}"#.into()),
            denied("data[config]: loadConcurrency.globalConfig: Invalid value: 99999999999999999999999"),
        ),
        // --- The mutating webhook: data-mover pods.
        post_json("mutate_create", "/mutate", mover_create, mover_patched(vec![role_requirement_at(2)])),
        post_json(
            "mutate_create_as_dry_run",
            "/mutate",
            |uid| set(mover_create(uid), "/request/dryRun", json!(true)),
            mover_patched(vec![]),
        ),
        post_json(
            "mutate_update",
            "/mutate",
            |uid| pod_review(uid, "UPDATE", Some(mover_pod()), Some(mover_pod())),
            allowed(),
        ),
        post_json("mutate_delete", "/mutate", |uid| pod_review(uid, "DELETE", None, Some(mover_pod())), allowed()),
        post_json(
            "mutate_connect",
            "/mutate",
            |uid| {
                let exec = json!({"kind": "PodExecOptions", "apiVersion": "v1", "command": ["sh"]});
                set(pod_review(uid, "CONNECT", Some(exec), None), "/request/kind/kind", json!("PodExecOptions"))
            },
            allowed(),
        ),
        post_json("mutate_create_without_object", "/mutate", |uid| pod_review(uid, "CREATE", None, None), allowed()),
        post_json("configmap_sent_to_mutate_is_allowed_untouched", "/mutate", valid_cm, allowed()),
        post_json(
            "mover_pod_with_null_metadata",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/metadata", Value::Null),
            allowed(),
        ),
        post_json(
            "mover_pod_with_null_labels",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/metadata/labels", Value::Null),
            allowed(),
        ),
        post_json(
            "mover_pod_with_null_annotations_gets_a_whole_map",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/metadata/annotations", Value::Null),
            mover_patched(vec![]),
        ),
        post_json(
            "mover_pod_with_null_affinity",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/spec/affinity", Value::Null),
            mover_patched(vec![role_requirement_at(0)]),
        ),
        post_json(
            "mover_pod_with_null_node_affinity",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/spec/affinity/nodeAffinity", Value::Null),
            mover_patched(vec![role_requirement_at(0)]),
        ),
        post_json(
            "mover_pod_with_null_node_selector_terms",
            "/mutate",
            |uid| set(mover_create(uid), &format!("/request/object{TERMS}"), Value::Null),
            mover_patched(vec![role_requirement_at(0)]),
        ),
        post_json(
            "mover_pod_with_null_match_expressions",
            "/mutate",
            |uid| set(mover_create(uid), &format!("/request/object{TERMS}/0/matchExpressions"), Value::Null),
            // An empty term matches no node (Kubernetes' rule), with or without the config's requirements.
            mover_patched_but_affinity(),
        ),
        post_json(
            "mover_pod_with_null_container_resources",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/spec/containers/0/resources", Value::Null),
            mover_patched(vec![]),
        ),
        post_json(
            "mover_pod_with_null_spec",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/spec", Value::Null),
            allowed_with_warning("node-agent-webhook dropped its patch because it did not apply"),
        ),
        post_json(
            "mover_pod_with_a_number_as_label_value",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/metadata/labels/team", json!(5)),
            mover_patched(vec![]),
        ),
        post_json(
            "mover_pod_with_a_number_as_its_velero_label",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/metadata/labels/velero.io~1data-upload", json!(5)),
            allowed(),
        ),
        post_json(
            "mover_pod_with_a_1_mib_label_value",
            "/mutate",
            |uid| set(mover_create(uid), "/request/object/metadata/labels/big", json!("x".repeat(MIB))),
            mover_patched(vec![("/metadata/labels/big".into(), json!("x".repeat(MIB)))]),
        ),
        // --- Velero's other two ConfigMaps, told apart by name.
        post_json(
            "maintenance_configmap_with_a_number_as_data_value",
            "/validate",
            |uid| other_cm(uid, "velero-repo-maintenance", json!({"global": 5})),
            denied("data[global]: Invalid value: must be a string"),
        ),
        post_json(
            "maintenance_value_nested_past_the_depth_limit",
            "/validate",
            |uid| other_cm(uid, "velero-repo-maintenance", json!({"global": nested(200, true)})),
            denied("data[global]: "),
        ),
        post_json(
            "maintenance_value_with_a_1_mib_key",
            "/validate",
            |uid| {
                other_cm(uid, "velero-repo-maintenance", json!({"global": format!("{{\"{}\": 1}}", "k".repeat(MIB))}))
            },
            denied("Unknown field"),
        ),
        post_json(
            "maintenance_configmap_without_data",
            "/validate",
            |uid| other_cm(uid, "velero-repo-maintenance", Value::Null),
            denied("data: Required value: must hold \"global\""),
        ),
        post_json(
            "backup_repository_cache_beyond_float64",
            "/validate",
            |uid| other_cm(uid, "backup-repository-config", json!({"kopia": "{\"cacheLimitMB\": 1e400}"})),
            denied("does not fit in a float64"),
        ),
        post_json(
            "backup_repository_value_of_100000_array_items",
            "/validate",
            |uid| other_cm(uid, "backup-repository-config", json!({"kopia": format!("[{}0]", "0,".repeat(100_000))})),
            denied("must be a JSON object, not array"),
        ),
        post_json(
            "backup_repository_delete_without_old_object",
            "/validate",
            |uid| {
                let mut review = other_cm(uid, "backup-repository-config", json!({}));
                review["request"]["operation"] = json!("DELETE");
                review["request"]["object"] = Value::Null;
                review
            },
            allowed_with_warning("fail to start without ConfigMap velero/backup-repository-config"),
        ),
        post(
            "mover_pod_with_an_integer_beyond_u64_as_priority",
            "/mutate",
            |uid| with_raw(mover_create(uid), "/request/object/spec/priority", b"99999999999999999999999"),
            mover_patched(vec![]),
        ),
    ]
}

/// Sends the row, checks the answer, and replays a 200 row as a dry run, which must get the
/// same decision: the webhooks are side-effect free.
fn answer_is_right(client: &Client, server: &Server, case: &Case) -> Result<(), String> {
    let (status, body) = send(client, server, case, case.body.clone())?;
    check(case, status, &body)?;
    if status != 200 {
        return Ok(());
    }
    let Some(dry) = as_dry_run(&case.body) else { return Ok(()) };
    let (dry_status, dry_body) = send(client, server, case, dry)?;
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).ok();
    if dry_status != 200 || parse(&dry_body) != parse(&body) {
        return Err(format!("as a dry run: {dry_status} {}", String::from_utf8_lossy(&dry_body)));
    }
    Ok(())
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".to_string())
}

fn send(client: &Client, server: &Server, case: &Case, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
    let mut request = client.request(case.method.clone(), server.url(case.path)).body(body);
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    let started = Instant::now();
    let response = request.send().map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().map_err(|e| format!("no body: {e}"))?.to_vec();
    if started.elapsed() > ANSWER_BUDGET {
        return Err(format!("answered in {:?}, over the {ANSWER_BUDGET:?} budget", started.elapsed()));
    }
    Ok((status, body))
}

/// Checks one answer; returns what is wrong with it.
fn check(case: &Case, status: u16, body: &[u8]) -> Result<(), String> {
    let text = || String::from_utf8_lossy(body).chars().take(600).collect::<String>();
    let verdict = match &case.want {
        Want::Http(want, fragment) => {
            if status != *want || !String::from_utf8_lossy(body).contains(fragment) {
                return Err(format!("want {want} containing {fragment:?}, got {status}: {}", text()));
            }
            return Ok(());
        }
        Want::Review(verdict) => verdict,
    };
    if status != 200 {
        return Err(format!("want 200, got {status}: {}", text()));
    }
    let answer: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {}", text()))?;
    if answer["apiVersion"] != "admission.k8s.io/v1" || answer["kind"] != "AdmissionReview" {
        return Err(format!("not a v1 AdmissionReview: {}", text()));
    }
    let response = &answer["response"];
    let uid = verdict.uid.unwrap_or(case.name);
    if response["uid"] != uid {
        return Err(format!("uid {} echoed, want {uid:?}", response["uid"]));
    }
    match verdict.denial {
        None if response["allowed"] != true => return Err(format!("want allowed, got {}", text())),
        Some(fragment) => {
            let message = response["status"]["message"].as_str().unwrap_or_default();
            if response["allowed"] != false || response["status"]["code"] != 422 || !message.contains(fragment) {
                return Err(format!("want a 422 denial containing {fragment:?}, got {}", text()));
            }
        }
        None => {}
    }
    let warnings: Vec<&str> =
        response["warnings"].as_array().map(|w| w.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if verdict.warnings.is_empty() && response.get("warnings").is_some() {
        return Err(format!("want no warnings, got {warnings:?}"));
    }
    for fragment in &verdict.warnings {
        if !warnings.iter().any(|w| w.contains(fragment)) {
            return Err(format!("want a warning containing {fragment:?}, got {warnings:?}"));
        }
    }
    match (&verdict.patched, response.get("patch")) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(format!("want no patch, got {}", text())),
        (Some(_), None) => Err(format!("want a patch, got {}", text())),
        (Some(values), Some(patch)) => check_patch(case, response, patch, values),
    }
}

/// Applies the patch to the request's object as the API server would and checks the values.
fn check_patch(case: &Case, response: &Value, patch: &Value, values: &[(String, Value)]) -> Result<(), String> {
    if response["patchType"] != "JSONPatch" {
        return Err(format!("patchType {}", response["patchType"]));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().unwrap_or_default())
        .map_err(|e| format!("patch is not base64: {e}"))?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|e| format!("not a JSON patch: {e}"))?;
    let review: Value = serde_json::from_slice(&case.body).map_err(|e| e.to_string())?;
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).map_err(|e| format!("patch does not apply: {e}"))?;
    for (pointer, want) in values {
        let got = object.pointer(pointer).unwrap_or(&Value::Null);
        if got != want {
            let shown = |v: &Value| v.to_string().chars().take(80).collect::<String>();
            return Err(format!("patched {pointer} is {}, want {}", shown(got), shown(want)));
        }
    }
    Ok(())
}

/// The same review as a dry run, when the body is a review with a request object.
fn as_dry_run(body: &[u8]) -> Option<Vec<u8>> {
    let mut review: Value = serde_json::from_slice(body).ok()?;
    review.pointer_mut("/request")?.as_object_mut()?.insert("dryRun".into(), json!(true));
    Some(to_bytes(&review))
}

/// A good review and its answer: the server must still give it after every row.
fn still_serving(client: &Client, server: &Server, after: &str) -> Result<(), String> {
    let uid = format!("probe-after-{after}");
    let body = to_bytes(&valid_cm(&uid));
    let response = client
        .post(server.url("/validate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .map_err(|e| format!("the next good review got no answer: {e}"))?;
    let status = response.status().as_u16();
    let answer: Value = response.json().map_err(|e| format!("the next good review got a non-JSON answer: {e}"))?;
    if status != 200 || answer["response"] != json!({"uid": uid, "allowed": true}) {
        return Err(format!("the next good review got {status} {answer}"));
    }
    Ok(())
}

#[test]
fn every_bad_input_gets_its_exact_answer_and_the_server_keeps_serving() {
    let certs = Certs::new();
    std::fs::write(certs.path("config.json"), LIVE_CONFIG).expect("config");
    let config = certs.path("config.json");
    let mut server = Server::start(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", config.to_str().expect("utf-8 path")],
    );
    let client = client(&certs.ca_pem);
    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus has {} rows", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "row names are unique");

    // Every row runs, and each failure is reported under the row's name, a panic of the
    // checking code included: one broken row must not hide the others.
    let mut failures = Vec::new();
    for case in &cases {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer_is_right(&client, &server, case)));
        match run {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => failures.push(format!("{}: {problem}", case.name)),
            Err(panic) => failures.push(format!("{}: the check panicked: {}", case.name, panic_text(&*panic))),
        }
        if let Err(problem) = still_serving(&client, &server, case.name) {
            failures.push(format!("{}: {problem}", case.name));
        }
        if let Ok(Some(exit)) = server.child.try_wait() {
            failures.push(format!("{}: the server exited ({exit})", case.name));
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(100)); // let the log reader catch up
    let logs = server.log_text();
    if logs.contains("panicked") {
        failures.push(format!("the server panicked:\n{logs}"));
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
