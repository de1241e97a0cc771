//! The manifest reader on the example files and on every scalar style: each decoded character
//! maps back to where it is written.

use super::*;
use crate::config::json::{Node, Value};

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
    let values: Vec<_> =
        docs[0].data.iter().map(|v| (v.key.as_str(), v.value.as_str(), v.key_pos, v.map_position(at(1, 2)))).collect();
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
        ("|\n    {}", "{}\n", &[(at(1, 2), at(4, 6), true), (at(1, 3), at(4, 7), true), (at(2, 1), at(5, 5), true)]),
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
        ("'it''s'", "it's", &[(at(1, 3), at(3, 9), true), (at(1, 4), at(3, 11), true), (at(1, 5), at(3, 12), true)]),
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
    assert_eq!((value.key_pos, value.value.as_str()), (at(21, 3), "{\n  \"podResources\": {\"cpuRequest\": \"1\"}\n}"));
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
    assert_eq!((docs[0].data_pos, docs[0].binary_data_keys.as_slice()), (None, ["config.json".to_string()].as_slice()));
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
