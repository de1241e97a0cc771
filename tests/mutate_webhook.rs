//! The mutating webhook end to end: the real binary on 127.0.0.1 over real TLS, fed
//! data-mover pod reviews, with its config file edited underneath it.

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use node_agent_webhook::config::load::file_id;
use serde_json::{json, Value};
use support::*;

fn pod_review(pod: &Value, operation: &str, user: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}", pod["metadata"]["name"].as_str().unwrap_or("x")),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"], "namespace": namespace, "operation": operation,
            "userInfo": {"username": user, "uid": "9b0e", "groups": ["system:serviceaccounts"],
                         "extra": {"authentication.kubernetes.io/pod-name": ["node-agent-x7k2p"]}},
            "object": pod, "oldObject": null, "dryRun": false
        }
    })
}

const NODE_AGENT: &str = "system:serviceaccount:velero:velero";

/// Applies the response's base64 JSONPatch to the pod with a strict RFC 6902 implementation.
fn patched(pod: &Value, response: &Value) -> Value {
    assert_eq!(response["allowed"], true, "{response}");
    let Some(encoded) = response["patch"].as_str() else { return pod.clone() };
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).expect("applies");
    out
}

/// A config directory laid out as the kubelet mounts a ConfigMap: `config.json` ->
/// `..data/config.json`, `..data` -> a timestamped directory swapped atomically.
struct MountedConfig {
    dir: tempfile::TempDir,
    version: u32,
}

impl MountedConfig {
    fn new(value: &str) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let mut mounted = Self { dir, version: 0 };
        mounted.write(value);
        symlink("..data/config.json", mounted.dir.path().join("config.json")).expect("symlink");
        mounted
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("config.json")
    }

    /// Writes a new timestamped directory and swaps `..data` to it with one rename.
    fn write(&mut self, value: &str) {
        self.version += 1;
        let stamped = format!("..2026_11_23_{:04}", self.version);
        std::fs::create_dir(self.dir.path().join(&stamped)).expect("dir");
        std::fs::write(self.dir.path().join(&stamped).join("config.json"), value).expect("write");
        let tmp = self.dir.path().join("..data_tmp");
        symlink(&stamped, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("atomic swap");
    }
}

fn start(config: &Path) -> (Certs, Server, reqwest::blocking::Client) {
    let certs = Certs::new();
    let server = Server::start(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", config.to_str().expect("utf-8")],
    );
    let client = client(&certs.ca_pem);
    (certs, server, client)
}

fn labels_after(server: &Server, client: &reqwest::blocking::Client, pod: &Value) -> Value {
    let response = review(client, &server.url("/mutate"), &pod_review(pod, "CREATE", NODE_AGENT, "velero"));
    patched(pod, &response)["metadata"]["labels"].clone()
}

#[test]
fn data_mover_pods_are_patched_over_tls_and_other_pods_left_alone() {
    let value = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}],
            "podResources": {"cpuRequest": "500m", "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "2Gi"},
            "podLabels": {"team": "platform"}}"#;
    let mounted = MountedConfig::new(value);
    let (_certs, server, client) = start(&mounted.path());
    let url = server.url("/mutate");
    let pod = as_admitted(repo_json("testdata/pods/v1.18/pod-dataupload.json"));

    let response = review(&client, &url, &pod_review(&pod, "CREATE", NODE_AGENT, "velero"));
    let after = patched(&pod, &response);
    assert_eq!(after["metadata"]["labels"]["team"], "platform");
    assert_eq!(after["spec"]["containers"][0]["resources"]["limits"], json!({"cpu": "1", "memory": "2Gi"}));
    let terms = &after["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(terms[0]["matchExpressions"][2], json!({"key": "role", "operator": "In", "values": ["backup"]}));
    assert_eq!(
        after["metadata"]["annotations"]["node-agent-webhook.io/applied"],
        format!("loadAffinity,podResources,podLabels (config {})", file_id(value.as_bytes()))
    );
    // One JSON log line per admission, with what an operator searches by (never the object).
    let uid = pod_review(&pod, "CREATE", NODE_AGENT, "velero")["request"]["uid"].clone();
    let admission_lines = |logs: &str| -> Vec<Value> {
        logs.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == "admission" && line["uid"] == uid)
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while admission_lines(&server.log_text()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let logs = server.log_text();
    let lines = admission_lines(&logs);
    assert_eq!(lines.len(), 1, "{logs}");
    let line = &lines[0];
    let want = json!({"level": "INFO", "webhook": "mutate", "kind": "Pod", "namespace": "velero",
        "name": pod["metadata"]["name"], "operation": "CREATE", "allowed": true, "warnings": 0,
        "applied": "loadAffinity,podResources,podLabels", "config": file_id(value.as_bytes())});
    for (key, value) in want.as_object().into_iter().flatten() {
        assert_eq!(&line[key], value, "{key} in {line}");
    }
    assert!(line["duration_us"].is_u64() && line["timestamp"].is_string(), "{line}");
    assert!(line.get("object").is_none() && !logs.contains("\"spec\""), "{line}");
    // Reinvoked on its own output, the webhook has nothing to add.
    let again = review(&client, &url, &pod_review(&after, "CREATE", NODE_AGENT, "velero"));
    assert_eq!(again.get("patch"), None, "{again}");

    let untouched = [
        ("another user", pod_review(&pod, "CREATE", "system:serviceaccount:app:deployer", "velero")),
        ("the Velero server in an application namespace", pod_review(&pod, "CREATE", NODE_AGENT, "app")),
        ("an UPDATE", pod_review(&pod, "UPDATE", NODE_AGENT, "velero")),
    ];
    for (what, review_body) in untouched {
        let response = review(&client, &url, &review_body);
        assert_eq!(response, json!({"uid": review_body["request"]["uid"], "allowed": true}), "{what}");
    }
    let mut velero_server = pod_review(&pod, "CREATE", NODE_AGENT, "velero");
    velero_server["request"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"] =
        json!(["velero-7d4f9-abcde"]);
    let response = review(&client, &url, &velero_server);
    assert_eq!(response.get("patch"), None, "the Velero server shares the account but is not node-agent");
    let own_pod = json!({"metadata": {"name": "node-agent-webhook-5f7c9-x2x4z", "namespace": "velero",
                          "labels": {"app.kubernetes.io/name": "node-agent-webhook"}}, "spec": {"containers": [{"name": "webhook"}]}});
    let response = review(
        &client,
        &url,
        &pod_review(&own_pod, "CREATE", "system:serviceaccount:velero:replicaset-controller", "velero"),
    );
    assert_eq!(response.get("patch"), None, "the webhook's own pod");

    let (_, metrics) = server.get_admin("/metrics").expect("metrics");
    for line in [
        "node_agent_webhook_settings_applied_total{setting=\"podLabels\"} 1",
        "node_agent_webhook_pods_skipped_total{reason=\"other_user\"} 2",
        "node_agent_webhook_pods_skipped_total{reason=\"other_namespace\"} 1",
        "node_agent_webhook_pods_skipped_total{reason=\"not_a_pod_create\"} 1",
        "node_agent_webhook_pods_skipped_total{reason=\"not_node_agent\"} 1",
        "node_agent_webhook_pods_skipped_total{reason=\"nothing_to_change\"} 1",
    ] {
        assert!(metrics.contains(line), "metrics should contain {line}:\n{metrics}");
    }
}

#[test]
fn config_file_edits_apply_to_the_next_pod_and_invalid_edits_keep_the_last_good_config() {
    let mut mounted = MountedConfig::new(r#"{"podLabels": {"team": "one"}}"#);
    let (_certs, server, client) = start(&mounted.path());
    let pod = as_admitted(repo_json("testdata/pods/v1.17/pod-podvolumebackup.json"));
    assert_eq!(labels_after(&server, &client, &pod)["team"], "one");

    mounted.write(r#"{"podLabels": {"team": "two"}}"#);
    let swapped = Instant::now();
    loop {
        if labels_after(&server, &client, &pod)["team"] == "two" {
            break;
        }
        assert!(swapped.elapsed() < Duration::from_secs(1), "the edit must serve within a second");
        std::thread::sleep(Duration::from_millis(20));
    }

    mounted.write(r#"{"podLabels": {"team": 3}}"#);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, metrics) = server.get_admin("/metrics").expect("metrics");
        if metrics.contains("node_agent_webhook_config_reloads_total{result=\"error\"} 1") {
            assert!(metrics.contains("node_agent_webhook_config_generation 2"), "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "the invalid edit was not noticed:\n{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(labels_after(&server, &client, &pod)["team"], "two", "the last valid config keeps serving");
    assert!(server.log_text().contains("config rejected"), "{}", server.log_text());
}

/// A pod with one node affinity term per zone (a volume's topology): the config's zone keeps
/// the one term it allows; a zone in no term leaves the affinity alone, warned and counted.
#[test]
fn multi_term_pods_keep_the_terms_the_config_allows_and_a_conflict_is_warned_and_counted() {
    let mut mounted =
        MountedConfig::new(r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "zone-2"}}}]}"#);
    let (_certs, server, client) = start(&mounted.path());
    let url = server.url("/mutate");
    let mut pod = as_admitted(repo_json("testdata/pods/v1.18/pod-dataupload.json"));
    let zone = |z: &str| json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": [z]}]});
    let required = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms";
    *pod.pointer_mut(required).expect("the fixture has terms") =
        json!([zone("zone-1"), zone("zone-2"), zone("zone-3")]);

    let response = review(&client, &url, &pod_review(&pod, "CREATE", NODE_AGENT, "velero"));
    let after = patched(&pod, &response);
    assert_eq!(after.pointer(required), Some(&json!([zone("zone-2")])), "{response}");
    assert_eq!(response.get("warnings"), None, "{response}");

    mounted
        .write(r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "zone-9"}}}], "podLabels": {"a": "b"}}"#);
    let deadline = Instant::now() + Duration::from_secs(3);
    let response = loop {
        let response = review(&client, &url, &pod_review(&pod, "CREATE", NODE_AGENT, "velero"));
        if response.get("warnings").is_some() || Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let after = patched(&pod, &response);
    assert_eq!(after["spec"]["affinity"], pod["spec"]["affinity"], "left alone");
    assert_eq!(after["metadata"]["labels"]["a"], "b", "the other settings still apply");
    let warnings: Vec<String> = (0..3)
        .map(|term| {
            format!(
                r#"loadAffinity not applied (no node fits it and the pod's placement): term {term}: zone In ["zone-9"] (loadAffinity) against zone In ["zone-{}"] (the pod's node affinity term {term})"#,
                term + 1
            )
        })
        .collect();
    assert_eq!(response["warnings"], json!(warnings));
    let (_, metrics) = server.get_admin("/metrics").expect("metrics");
    assert!(metrics.contains("node_agent_webhook_affinity_conflicts_total 1"), "{metrics}");
}

/// Waits until the server gives the pod the label `team=want`, which says an edit is served.
fn wait_for_team(server: &Server, client: &reqwest::blocking::Client, pod: &Value, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while labels_after(server, client, pod)["team"] != want {
        assert!(Instant::now() < deadline, "the edit to team={want} was not served");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two replicas serving the same config explain a pod the same way, whatever each lived
/// through: one saw two edits before the current config, the other started on it.
#[test]
fn two_servers_one_of_which_lived_through_edits_give_a_pod_the_same_applied_annotation() {
    let current = r#"{"podLabels": {"team": "three"}, "podAnnotations": {"a": "b"}}"#;
    let pod = as_admitted(repo_json("testdata/pods/v1.18/pod-dataupload.json"));
    let mut edited = MountedConfig::new(r#"{"podLabels": {"team": "one"}}"#);
    let (_certs, veteran, veteran_client) = start(&edited.path());
    wait_for_team(&veteran, &veteran_client, &pod, "one");
    edited.write(r#"{"podLabels": {"team": "two"}}"#);
    wait_for_team(&veteran, &veteran_client, &pod, "two");
    edited.write(current);
    wait_for_team(&veteran, &veteran_client, &pod, "three");
    let fresh = MountedConfig::new(current);
    let (_certs2, newcomer, newcomer_client) = start(&fresh.path());

    let applied = |server: &Server, client: &reqwest::blocking::Client| {
        let response = review(client, &server.url("/mutate"), &pod_review(&pod, "CREATE", NODE_AGENT, "velero"));
        patched(&pod, &response)["metadata"]["annotations"]["node-agent-webhook.io/applied"].clone()
    };
    let id = file_id(current.as_bytes());
    assert_eq!(applied(&veteran, &veteran_client), json!(format!("podLabels,podAnnotations (config {id})")));
    assert_eq!(applied(&veteran, &veteran_client), applied(&newcomer, &newcomer_client));
    // The metrics and the log name the config the same way; the generation is each process's own count.
    for (server, generation) in [(&veteran, 3), (&newcomer, 1)] {
        let (_, metrics) = server.get_admin("/metrics").expect("metrics");
        assert!(metrics.contains(&format!("node_agent_webhook_config_info{{config=\"{id}\"}} 1")), "{metrics}");
        assert_eq!(metrics.matches("node_agent_webhook_config_info{").count(), 1, "one series: {metrics}");
        assert!(metrics.contains(&format!("node_agent_webhook_config_generation {generation}")), "{metrics}");
        let logs = server.log_text();
        let loaded: Vec<Value> = logs
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == "config loaded")
            .collect();
        assert_eq!(loaded.last().map(|line| line["config"].clone()), Some(json!(id)), "{logs}");
    }
}

/// A pod's annotations stay within Kubernetes' 256 KiB: podAnnotations that leave no room
/// for ours are applied without it; with the pod's own they would be too many, so they are left
/// out, warned and counted; and the check says so when the ConfigMap is applied.
#[test]
fn annotations_never_exceed_kubernetes_limit_ours_give_way_first() {
    const LIMIT: usize = 262_144;
    let big = "x".repeat(LIMIT - 20 - "big".len());
    let value = format!(r#"{{"podLabels": {{"team": "x"}}, "podAnnotations": {{"big": "{big}"}}}}"#);
    let mounted = MountedConfig::new(&value);
    let (_certs, server, client) = start(&mounted.path());
    let url = server.url("/mutate");
    let pod = as_admitted(repo_json("testdata/pods/v1.18/pod-dataupload.json"));
    let size = |pod: &Value| -> usize {
        let annotations = pod["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
        annotations.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum()
    };

    let response = review(&client, &url, &pod_review(&pod, "CREATE", NODE_AGENT, "velero"));
    let after = patched(&pod, &response);
    assert_eq!(after["metadata"]["annotations"]["big"], json!(big), "the config's annotations fit");
    assert_eq!(after["metadata"]["annotations"].get("node-agent-webhook.io/applied"), None, "ours does not");
    assert_eq!(size(&after), LIMIT - 20);
    assert_eq!(response.get("warnings"), None, "{response}");

    let mut annotated = pod.clone();
    annotated["metadata"]["annotations"] = json!({"own": "y".repeat(100)});
    let response = review(&client, &url, &pod_review(&annotated, "CREATE", NODE_AGENT, "velero"));
    let after = patched(&annotated, &response);
    assert_eq!(after["metadata"]["annotations"].get("big"), None, "left out");
    assert_eq!(
        after["metadata"]["annotations"]["node-agent-webhook.io/applied"],
        json!(format!("podLabels (config {})", file_id(value.as_bytes())))
    );
    let warnings = response["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{response}");
    assert!(
        warnings[0].as_str().is_some_and(|w| w.starts_with("podAnnotations not applied: with them the pod's annotations would take 262227 bytes, over Kubernetes' limit of 262144")),
        "{warnings:?}"
    );
    let (_, metrics) = server.get_admin("/metrics").expect("metrics");
    assert!(metrics.contains("node_agent_webhook_annotations_over_limit_total 1"), "{metrics}");

    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "node-agent-config", "namespace": "velero"}, "data": {"config": value}});
    let answer = review(&client, &server.url("/validate"), &configmap_review("CREATE", Some(&configmap), None));
    assert_eq!(answer["allowed"], true, "{answer}");
    let warnings = answer["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings.len() == 1
            && warnings[0].as_str().is_some_and(|w| w.contains("leaving no room for node-agent-webhook.io/applied")),
        "{warnings:?}"
    );
}

/// Velero 1.18's rule on every version: podLabels (podAnnotations) supersede the in-tree
/// third-party keys node-agent copies from its DaemonSet, unless they list them.
#[test]
fn configured_pod_labels_and_annotations_supersede_the_in_tree_third_party_keys() {
    let mounted = MountedConfig::new(r#"{"podLabels": {"team": "platform"}, "podAnnotations": {"a": "b"}}"#);
    let (_certs, server, client) = start(&mounted.path());
    let mut pod = as_admitted(repo_json("testdata/pods/v1.17/pod-dataupload.json"));
    pod["metadata"]["labels"]["azure.workload.identity/use"] = json!("true");
    pod["metadata"]["annotations"] = json!({"iam.amazonaws.com/role": "node-agent-role"});
    let response = review(&client, &server.url("/mutate"), &pod_review(&pod, "CREATE", NODE_AGENT, "velero"));
    let after = patched(&pod, &response);
    assert_eq!(after["metadata"]["labels"].get("azure.workload.identity/use"), None, "{after}");
    assert_eq!(after["metadata"]["labels"]["team"], "platform");
    assert_eq!(after["metadata"]["annotations"].get("iam.amazonaws.com/role"), None, "{after}");
    assert_eq!(after["metadata"]["annotations"]["a"], "b");
    let again = review(&client, &server.url("/mutate"), &pod_review(&after, "CREATE", NODE_AGENT, "velero"));
    assert_eq!(again.get("patch"), None, "{again}");
}

/// A config written for a Velero newer than this build knows (a key we have never seen) is
/// served for its known settings when the server is told that version, as the validating
/// webhook admits it; with the version unknown it is refused as the validating webhook would.
#[test]
fn a_config_for_a_newer_velero_is_served_for_its_known_settings() {
    let newest = node_agent_webhook::config::velero_types::newest();
    let newer = format!("{}.{}.0", newest.major, newest.minor + 1);
    let mounted = MountedConfig::new(r#"{"podLabels": {"team": "newer"}, "podSecurityContext": {"runAsUser": 1000}}"#);
    let pod = as_admitted(repo_json("testdata/pods/v1.17/pod-podvolumebackup.json"));
    let certs = Certs::new();
    let config = mounted.path();
    let config_flag = config.to_str().expect("utf-8");
    let start = |extra: &[&str]| {
        let mut args = vec!["--config-file", config_flag];
        args.extend_from_slice(extra);
        Server::start(&certs.path("tls.crt"), &certs.path("tls.key"), &args)
    };
    let client = client(&certs.ca_pem);

    let told = start(&["--velero-version", &newer]);
    wait_for_team(&told, &client, &pod, "newer");
    let (_, metrics) = told.get_admin("/metrics").expect("metrics");
    let info = format!(
        "node_agent_webhook_velero_version_info{{version=\"{newer}\",known_up_to=\"{newest}\",newer_than_known=\"true\"}} 1"
    );
    assert!(metrics.contains(&info), "{metrics}");
    drop(told);

    let untold = start(&[]);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, metrics) = untold.get_admin("/metrics").expect("metrics");
        if metrics.contains("node_agent_webhook_config_reloads_total{result=\"error\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the unknown key was not refused without a version:\n{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(labels_after(&untold, &client, &pod).get("team"), None);
}
