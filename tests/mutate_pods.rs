//! The mutating webhook's core over the eight real data-mover pods (testdata/pods),
//! as the webhook sees them after the API server's defaulting: each planned patch is applied
//! with a strict RFC 6902 implementation, checked field by field, and planning again on the
//! result gives an empty patch.

mod support;

use std::collections::HashSet;

use node_agent_webhook::admission::Request;
use node_agent_webhook::config::check_value;
use node_agent_webhook::config::model::NodeAgentConfig;
use node_agent_webhook::config::model::APPLIED_ANNOTATION;
use node_agent_webhook::config::validate::Environment;
use node_agent_webhook::mutate::identity::{DataMover, MoverKind, NodeAgentIdentity};
use node_agent_webhook::mutate::plan::{plan, Plan, PlanInput, Setting, StorageClass};
use node_agent_webhook::mutating::submission;
use serde_json::{json, Value};
use support::{as_admitted, repo_json};

const KINDS: [(&str, MoverKind); 4] = [
    ("dataupload", MoverKind::DataUpload),
    ("datadownload", MoverKind::DataDownload),
    ("podvolumebackup", MoverKind::PodVolumeBackup),
    ("podvolumerestore", MoverKind::PodVolumeRestore),
];

/// One plan with no storage class known.
fn plan_once(
    pod: &Value,
    mover: &DataMover,
    config: &NodeAgentConfig,
    config_id: &str,
    priority_classes: Option<&HashSet<String>>,
) -> Plan {
    plan(&PlanInput { pod, mover, config, config_id, storage_class: StorageClass::Known(None), priority_classes })
}

fn pods() -> Vec<(String, MoverKind, Value)> {
    let mut out = Vec::new();
    for version in ["v1.17", "v1.18"] {
        for (file, kind) in KINDS {
            let pod = repo_json(&format!("testdata/pods/{version}/pod-{file}.json"));
            out.push((format!("{version}/{file}"), kind, as_admitted(pod)));
        }
    }
    out
}

fn config(text: &str) -> NodeAgentConfig {
    let checked = check_value(text, &Environment::default());
    assert!(!checked.diagnostics.has_errors(), "{:?}", checked.diagnostics);
    checked.config
}

fn request(pod: &Value) -> Request {
    serde_json::from_value(json!({
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "velero",
        "name": pod["metadata"]["name"], "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:velero:velero",
                     "extra": {"authentication.kubernetes.io/pod-name": ["node-agent-x7k2p"]}},
        "object": pod
    }))
    .expect("request")
}

fn identify(pod: &Value) -> DataMover {
    let identity = NodeAgentIdentity { namespace: "velero".into(), service_accounts: vec!["velero".into()] };
    identity.identify(&submission(&request(pod))).expect("a data-mover pod")
}

/// Plans, applies strictly, and checks that planning again on the result changes nothing.
fn apply(
    pod: &Value,
    config: &NodeAgentConfig,
    class: StorageClass,
    classes: Option<&HashSet<String>>,
) -> (Value, Vec<Setting>, Vec<String>) {
    let mover = identify(pod);
    let input = |pod| PlanInput {
        pod,
        mover: &mover,
        config,
        config_id: "resourceVersion:7",
        storage_class: class.clone(),
        priority_classes: classes,
    };
    let first = plan(&input(pod));
    let ops: Vec<Value> = first.ops.iter().map(|op| serde_json::to_value(op).expect("an op as JSON")).collect();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).expect("a JSON patch");
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).expect("the patch applies to the pod");
    let second = plan(&input(&patched));
    assert_eq!(second.ops, vec![], "planning on our own output must be a no-op");
    (patched, first.applied, first.warnings)
}

const FULL: &str = r#"{
  "loadAffinity": [
    {"nodeSelector": {"matchLabels": {"node-role.example.com/backup": "true"}}},
    {"nodeSelector": {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a"]}]}, "storageClass": "gp3-csi"}
  ],
  "podResources": {"cpuRequest": "1000m", "cpuLimit": "2", "memoryRequest": "1Gi", "memoryLimit": "0"},
  "priorityClassName": "velero-data-mover",
  "podLabels": {"team": "platform"},
  "podAnnotations": {"iam.amazonaws.com/role": "velero-backup-role"}
}"#;

#[test]
fn every_pod_gets_its_settings_and_a_second_run_is_a_no_op() {
    let config = config(FULL);
    for (name, kind, pod) in pods() {
        let (patched, applied, warnings) = apply(&pod, &config, StorageClass::Known(None), None);
        assert_eq!(warnings, Vec::<String>::new(), "{name}");
        let container = &patched["spec"]["containers"][0];
        assert_eq!(
            container["resources"],
            json!({"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "2"}}),
            "{name}"
        );
        assert_eq!(patched["spec"]["priorityClassName"], "velero-data-mover", "{name}");
        assert_eq!(
            patched["spec"].get("priority"),
            None,
            "{name}: priority removed for the Priority plugin to recompute"
        );
        assert_eq!(patched["spec"].get("preemptionPolicy"), None, "{name}");
        assert_eq!(patched["metadata"]["labels"]["team"], "platform", "{name}");
        assert_eq!(
            patched["metadata"]["labels"][kind.label()],
            pod["metadata"]["name"],
            "{name}: velero.io label untouched"
        );
        assert_eq!(patched["metadata"]["annotations"]["iam.amazonaws.com/role"], "velero-backup-role", "{name}");
        let bound = pod["spec"].get("nodeName").is_some()
            || pod["spec"]["nodeSelector"].get("kubernetes.io/hostname").is_some();
        let gets_affinity = kind.takes_load_affinity() && !bound;
        let summary = patched["metadata"]["annotations"][APPLIED_ANNOTATION].as_str().expect("applied annotation");
        let want_summary = if gets_affinity {
            "loadAffinity,podResources,priorityClassName,podLabels,podAnnotations (config resourceVersion:7)"
        } else {
            "podResources,priorityClassName,podLabels,podAnnotations (config resourceVersion:7)"
        };
        assert_eq!(summary, want_summary, "{name}");
        assert_eq!(applied.contains(&Setting::LoadAffinity), gets_affinity, "{name}");
        let terms = &patched["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        let backup_role = json!({"key": "node-role.example.com/backup", "operator": "In", "values": ["true"]});
        let has_role = terms.as_array().is_some_and(|t| {
            t.iter().all(|term| term["matchExpressions"].as_array().is_some_and(|e| e.contains(&backup_role)))
        });
        assert_eq!(has_role, gets_affinity, "{name}: {terms}");
        // Everything else is as node-agent and the API server made it.
        for key in [
            "volumes",
            "tolerations",
            "os",
            "securityContext",
            "restartPolicy",
            "serviceAccountName",
            "nodeName",
            "nodeSelector",
            "topologySpreadConstraints",
        ] {
            assert_eq!(patched["spec"].get(key), pod["spec"].get(key), "{name}: spec.{key}");
        }
        assert_eq!(container["image"], pod["spec"]["containers"][0]["image"], "{name}");
        assert_eq!(container["volumeMounts"], pod["spec"]["containers"][0]["volumeMounts"], "{name}");
    }
}

#[test]
fn v1_18_data_upload_keeps_its_pv_topology_and_gets_the_storage_class_entry() {
    let config = config(FULL);
    let pod = as_admitted(repo_json("testdata/pods/v1.18/pod-dataupload.json"));
    let (patched, _, _) = apply(&pod, &config, StorageClass::Known(Some("gp3-csi".into())), None);
    let terms = &patched["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(
        terms,
        &json!([{"matchExpressions": [
            {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": ["eu-west-1a"]},
            {"key": "kubernetes.io/os", "operator": "NotIn", "values": ["windows"]},
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a"]}
        ]}])
    );
    // A failed storage-class lookup falls back to the entry without storageClass.
    let (fallback, _, _) = apply(&pod, &config, StorageClass::Unknown, None);
    let terms = &fallback["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(
        terms[0]["matchExpressions"][2],
        json!({"key": "node-role.example.com/backup", "operator": "In", "values": ["true"]})
    );
}

#[test]
fn two_terms_both_get_the_requirements() {
    let config = config(r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}]}"#);
    let mut pod = as_admitted(repo_json("testdata/pods/v1.18/pod-dataupload.json"));
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] = json!([
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
    ]);
    let (patched, _, _) = apply(&pod, &config, StorageClass::Known(None), None);
    let terms = &patched["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let role = json!({"key": "role", "operator": "In", "values": ["backup"]});
    assert_eq!(terms.as_array().map(Vec::len), Some(2), "no term added beside the existing ones");
    assert_eq!(terms[0]["matchExpressions"][1], role);
    assert_eq!(terms[1]["matchExpressions"][1], role);
}

#[test]
fn a_contradicting_requirement_leaves_the_affinity_alone_with_a_warning() {
    let config = config(
        r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"topology.ebs.csi.aws.com/zone": "eu-west-1b"}}}], "podLabels": {"a": "b"}}"#,
    );
    let pod = as_admitted(repo_json("testdata/pods/v1.18/pod-dataupload.json"));
    let mover = identify(&pod);
    let result = plan_once(&pod, &mover, &config, "resourceVersion:1", None);
    assert!(result.notes.affinity_conflict);
    assert_eq!(result.applied, vec![Setting::PodLabels]);
    assert_eq!(
        result.warnings,
        vec![
            r#"loadAffinity not applied (no node fits it and the pod's placement): term 0: topology.ebs.csi.aws.com/zone In ["eu-west-1b"] (loadAffinity) against topology.ebs.csi.aws.com/zone In ["eu-west-1a"] (the pod's node affinity term 0)"#
        ]
    );
    let (patched, _, _) = apply(&pod, &config, StorageClass::Known(None), None);
    assert_eq!(patched["spec"]["affinity"], pod["spec"]["affinity"]);
}

#[test]
fn priority_is_left_alone_when_it_matches_or_the_class_is_missing() {
    let config = config(r#"{"priorityClassName": "velero-data-mover"}"#);
    let mut pod = as_admitted(repo_json("testdata/pods/v1.18/pod-podvolumebackup.json"));
    pod["spec"]["priorityClassName"] = json!("velero-data-mover");
    pod["spec"]["priority"] = json!(1000);
    let mover = identify(&pod);
    let same = plan_once(&pod, &mover, &config, "resourceVersion:1", None);
    assert_eq!(same.ops, vec![], "no priority operations when the class already matches");

    let pod = as_admitted(repo_json("testdata/pods/v1.18/pod-podvolumebackup.json"));
    let existing: HashSet<String> = ["system-cluster-critical".to_string()].into();
    let missing = plan_once(&pod, &mover, &config, "resourceVersion:1", Some(&existing));
    assert_eq!(missing.ops, vec![]);
    assert!(missing.notes.priority_class_missing);
    assert_eq!(
        missing.warnings,
        vec![r#"priorityClassName "velero-data-mover" not applied: no such PriorityClass in the cluster"#]
    );
    let present: HashSet<String> = ["velero-data-mover".to_string()].into();
    let (patched, applied, _) = apply(&pod, &config, StorageClass::Known(None), Some(&present));
    assert_eq!(applied, vec![Setting::PriorityClassName]);
    assert_eq!(patched["spec"]["priorityClassName"], "velero-data-mover");
}

#[test]
fn quantities_re_encoded_by_the_api_server_are_not_patched_again() {
    let config = config(
        r#"{"podResources": {"cpuRequest": "1000m", "cpuLimit": "2000m", "memoryRequest": "1024Mi", "memoryLimit": "0"}}"#,
    );
    let mut pod = as_admitted(repo_json("testdata/pods/v1.17/pod-dataupload.json"));
    pod["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2"}});
    let mover = identify(&pod);
    let result = plan_once(&pod, &mover, &config, "resourceVersion:1", None);
    assert_eq!(result.ops, vec![]);
}

#[test]
fn label_keys_with_slashes_and_tildes_are_escaped_and_velero_keys_never_touched() {
    // Built directly: the validating webhook would never let these keys into a live config.
    let config = NodeAgentConfig {
        pod_labels: [("example.com/a~b", "x"), ("velero.io/data-upload", "shared")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        pod_annotations: [("example.com/note".to_string(), "y".to_string())].into(),
        ..NodeAgentConfig::default()
    };
    let mut pod = as_admitted(repo_json("testdata/pods/v1.18/pod-dataupload.json"));
    pod["metadata"]["annotations"] = json!({"existing": "kept"});
    let mover = identify(&pod);
    let result = plan_once(&pod, &mover, &config, "resourceVersion:3", None);
    let ops: Vec<Value> = result.ops.iter().map(|op| serde_json::to_value(op).expect("an op as JSON")).collect();
    assert_eq!(
        ops,
        vec![
            json!({"op": "add", "path": "/metadata/labels/example.com~1a~0b", "value": "x"}),
            json!({"op": "add", "path": "/metadata/annotations/example.com~1note", "value": "y"}),
            json!({"op": "add", "path": "/metadata/annotations/node-agent-webhook.io~1applied", "value": "podLabels,podAnnotations (config resourceVersion:3)"}),
        ]
    );
    let (patched, _, _) = apply(&pod, &config, StorageClass::Known(None), None);
    assert_eq!(patched["metadata"]["annotations"]["existing"], "kept");
    assert_eq!(patched["metadata"]["labels"]["velero.io/data-upload"], pod["metadata"]["name"]);
}

/// The pod admission.rs hands the core is pruned to `mutate::POD_FIELDS`: planning on it gives
/// the same plan as on the whole pod, for every fixture, so the list holds every field the
/// core reads.
#[test]
fn the_pruned_pod_plans_as_the_whole_pod_does() {
    let config = config(FULL);
    let classes: HashSet<String> = ["velero-data-mover".to_string()].into();
    for (name, _, pod) in pods() {
        let pruned = request(&pod).object.expect("an object");
        assert_ne!(pruned, pod, "{name}: the fixture has fields the core does not read");
        let mover = identify(&pod);
        let whole = plan_once(&pod, &mover, &config, "resourceVersion:3", Some(&classes));
        assert_eq!(plan_once(&pruned, &mover, &config, "resourceVersion:3", Some(&classes)), whole, "{name}");
    }
}
