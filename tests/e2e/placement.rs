//! The real kube-scheduler judges what the placement checks (`config::placement`) predict from
//! the same Node objects (`judge`): data-mover pods created as node-agent, with a claim bound to
//! a PV of their zones, get our webhook's config, and the scheduler binds them (to the node the
//! test names) or leaves them Pending with its `FailedScheduling` reason.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::judge::{events, pod_in, zone_terms, Judge, TOLERATING_CONFIG};
use crate::{create_pod, delete_pods, json_of, pod_fixture};

/// A data-mover pod created as node-agent, its required node affinity one term per zone and
/// its claim bound to a PV of those zones.
fn data_mover(judge: &mut Judge, version: &str, class: &str, zones: &[&str]) -> (String, Value) {
    let (name, mut pod) = pod_fixture(version, "dataupload");
    pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": zone_terms(zones)}}});
    let claim = pod["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str()))
        .expect("the fixture mounts a claim")
        .to_string();
    judge.bind_claim(NS, &claim, class, zones);
    let (_, stored) = create_pod(Some(&Identity::node_agent()), &pod);
    (name, stored)
}

fn pod(name: &str) -> Value {
    pod_in(NS, name)
}

/// The placement warnings `kubectl apply` shows for `config` (path and message, without the
/// data key and position), once our server's watches see the judge's Nodes and node-agent's
/// DaemonSet as the judge set them; the config is then the live one.
fn admitted_with(config: &str, expected: &[String]) {
    let nodes = node_count() as f64;
    wait_until("our server's Node watch counts every node", Duration::from_secs(10), || {
        metric_sum(&our_metrics(), "node_agent_webhook_nodes", &[]) == nodes
    });
    let dry_run = || {
        let run = apply_config_as(|m| kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], m), config);
        assert!(run.ok, "{}", run.stderr);
        placement_warnings_of(&run.warnings())
    };
    eventually_eq("the validating webhook's placement warnings", Duration::from_secs(10), dry_run, expected.to_vec());
    serve_config(config);
}

fn placement_warnings_of(warnings: &[String]) -> Vec<String> {
    warnings
        .iter()
        .filter_map(|w| w.split_once("]: ").map(|(_, rest)| rest))
        .filter(|w| w.starts_with("loadAffinity") || w.starts_with("loadConcurrency") || w.starts_with("cachePVC"))
        .map(|w| w.rsplit_once(" (line ").map_or(w, |(body, _)| body).to_string())
        .collect()
}

fn stored_uid(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap_or_default().to_string()
}

fn node_count() -> usize {
    kubectl(&["get", "nodes", "-o", "json"]).must().json()["items"].as_array().map_or(0, Vec::len)
}

#[test]
fn placement_the_scheduler_binds_where_the_pv_topology_and_the_load_affinity_meet() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();

    // OR of ANDs: the PV's zones (1a or 1b), each ANDed with role=backup: only 1b's backup node.
    let config = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}]}"#;
    admitted_with(config, &[]);
    let (name, stored) = data_mover(&mut judge, "v1.18", "e2e-fast", &["eu-west-1a", "eu-west-1b"]);
    assert_eq!(
        stored["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "the webhook ANDs the entry into each term: {}",
        json_of(&stored)
    );
    assert_eq!(judge.bound_node(NS, &name), "judge-b-backup");
    delete_pods(&[name], NS);

    // Entries by storage class: e2e-fast's (pool=fast) in 1a or 1c is 1c's backup node; a class
    // no entry names gets the entry without one (pool=general): 1a's worker.
    let config = r#"{"loadAffinity": [
        {"storageClass": "e2e-fast", "nodeSelector": {"matchLabels": {"pool": "fast"}, "matchExpressions": [{"key": "role", "operator": "In", "values": ["backup"]}]}},
        {"nodeSelector": {"matchLabels": {"pool": "general"}}}]}"#;
    admitted_with(config, &[NO_NODE_AGENT_ON_THE_WORKER.replace("[0]", "[1]")]);
    let (fast, _) = data_mover(&mut judge, "v1.18", "e2e-fast", &["eu-west-1a", "eu-west-1c"]);
    assert_eq!(judge.bound_node(NS, &fast), "judge-c-backup");
    let (slow, _) = data_mover(&mut judge, "v1.17", "e2e-slow", &["eu-west-1a", "eu-west-1b"]);
    assert_eq!(judge.bound_node(NS, &slow), "judge-a-worker");
    delete_pods(&[fast, slow], NS);
    drop(judge);
    serve_config("{}");
}

/// A config the placement checks warn about leaves the data-mover pod Pending, with the
/// scheduler's `FailedScheduling` message naming `reason`.
fn pending_as_predicted(config: &str, zones: &[&str], warning: impl FnOnce() -> String, reason: &str) {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    admitted_with(config, &[warning()]);
    let (name, _) = data_mover(&mut judge, "v1.18", "e2e-fast", zones);
    let message = judge.failed_scheduling(NS, &name);
    assert!(message.contains(reason), "{message}");
    delete_pods(&[name], NS);
    drop(judge);
    serve_config("{}");
}

#[test]
fn placement_a_selector_that_selects_no_node_leaves_the_pod_pending() {
    pending_as_predicted(
        r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "gpu-backup"}}}]}"#,
        &["eu-west-1a"],
        || {
            format!("loadAffinity[0].nodeSelector: selects none of the {} nodes (role is backup,dedicated-backup,worker on nodes): its pods stay Pending", node_count())
        },
        "didn't match Pod's node affinity/selector",
    );
}

#[test]
fn placement_an_untolerated_taint_leaves_the_pod_pending() {
    pending_as_predicted(
        r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "dedicated-backup"}}}]}"#,
        &["eu-west-1a"],
        || {
            "loadAffinity[0].nodeSelector: all 1 selected node(s) have a taint data-mover pods do not tolerate (judge-a-tainted dedicated=backup:NoSchedule): its pods stay Pending; see tolerations".to_string()
        },
        "untolerated taint(s)",
    );
}

#[test]
fn placement_requests_over_every_selected_node_s_allocatable_leave_the_pod_pending() {
    pending_as_predicted(
        r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}],
        "podResources": {"cpuRequest": "6", "cpuLimit": "6", "memoryRequest": "1Gi", "memoryLimit": "1Gi"}}"#,
        &["eu-west-1b", "eu-west-1c"],
        || {
            "loadAffinity[0].nodeSelector: podResources requests exceed the allocatable of all 2 selected node(s) (judge-b-backup cpu 6 > 4; judge-c-backup cpu 6 > 4): its pods stay Pending".to_string()
        },
        "Insufficient cpu",
    );
}

/// The judge's node-agent DaemonSet runs on `pool=fast` nodes only.
const NO_NODE_AGENT_ON_THE_WORKER: &str = "loadAffinity[0].nodeSelector: selects 1 node(s) (judge-a-worker), none running node-agent: no node-agent takes its DataUploads/DataDownloads";

/// The scheduler binds the pod where node-agent does not run (its DaemonSet's nodeSelector
/// leaves the node out): the pod is placed, and no node-agent would ever take the job.
#[test]
fn placement_nodes_without_node_agent_are_warned_and_the_scheduler_binds_there_anyway() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    let config = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "worker"}}}]}"#;
    admitted_with(config, &[NO_NODE_AGENT_ON_THE_WORKER.to_string()]);
    let (name, _) = data_mover(&mut judge, "v1.18", "e2e-fast", &["eu-west-1a"]);
    let node = judge.bound_node(NS, &name);
    assert_eq!(node, "judge-a-worker");
    let daemonset = kubectl(&["get", "daemonset", "node-agent", "-n", NS, "-o", "json"]).must().json();
    let labels = kubectl(&["get", "node", &node, "-o", "json"]).must().json()["metadata"]["labels"].clone();
    let selector = daemonset["spec"]["template"]["spec"]["nodeSelector"].as_object().cloned().unwrap_or_default();
    assert!(selector.iter().any(|(k, v)| labels[k] != *v), "the DaemonSet's nodeSelector {selector:?} takes {labels}");

    // explain on the same cluster: the table and the same warning, kept for the docs.
    let explain = std::process::Command::new(BINARY)
        .args(["explain", "--kubeconfig"])
        .arg(e2e_dir().join("kubeconfig"))
        .output()
        .expect("run explain");
    let text = String::from_utf8_lossy(&explain.stdout).to_string();
    assert!(explain.status.success(), "{text}{}", String::from_utf8_lossy(&explain.stderr));
    std::fs::write(e2e_dir().join("explain.txt"), &text).expect("explain.txt");
    assert!(text.contains("judge-a-worker  yes    no"), "{text}");
    assert!(text.contains("none running node-agent"), "{text}");
    let json = std::process::Command::new(BINARY)
        .args(["explain", "--output", "json", "--kubeconfig"])
        .arg(e2e_dir().join("kubeconfig"))
        .output()
        .expect("run explain");
    let report: Value = serde_json::from_slice(&json.stdout).expect("explain --output json");
    assert_eq!(report["entries"][0]["nodes"][0]["runs_node_agent"], false, "{report}");
    delete_pods(&[name], NS);
    drop(judge);
    serve_config("{}");
}

#[test]
fn placement_configured_tolerations_land_the_pod_on_the_tainted_node() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    admitted_with(TOLERATING_CONFIG, &[]);
    for version in ["v1.17", "v1.18"] {
        let (name, stored) = data_mover(&mut judge, version, "e2e-fast", &["eu-west-1a"]);
        let toleration = json!({"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"});
        let tolerations = stored["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
        assert_eq!(tolerations.iter().filter(|t| **t == toleration).count(), 1, "{version}: {}", json_of(&stored));
        assert_eq!(judge.bound_node(NS, &name), "judge-a-tainted", "{version}");
        delete_pods(&[name], NS);
    }
    drop(judge);
    serve_config("{}");
}

#[test]
fn placement_a_data_mover_pod_with_priority_preempts_lower_priority_pods() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "e2e-judge-high"},
        "value": 100000, "preemptionPolicy": "PreemptLowerPriority"});
    kubectl_stdin(&["apply", "-f", "-"], &class.to_string()).must();
    judge.cleanup.push(vec![
        "delete".into(),
        "priorityclass".into(),
        "e2e-judge-high".into(),
        "--ignore-not-found".into(),
    ]);
    // Two pods of priority 0 fill judge-b-backup's 4 cpu, and the data-mover pod wants 3: both
    // must go. With no kubelet a victim's grace period never ends, so it stays Terminating and
    // the preemptor stays nominated, not bound.
    let victims: Vec<String> = (0..2).map(|i| unique(&format!("victim{i}"))).collect();
    for victim in &victims {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": victim, "namespace": "e2e-app"},
            "spec": {"nodeName": "judge-b-backup", "serviceAccountName": "velero", "automountServiceAccountToken": false,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "2"}}}]}});
        kubectl_stdin(&["create", "-f", "-"], &pod.to_string()).must();
    }
    let config = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}],
        "podResources": {"cpuRequest": "3", "cpuLimit": "3", "memoryRequest": "128Mi", "memoryLimit": "128Mi"},
        "priorityClassName": "e2e-judge-high"}"#;
    wait_until("the webhook sees the PriorityClass", Duration::from_secs(10), || {
        let run = apply_config_as(|m| kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], m), config);
        !run.warnings().iter().any(|w| w.contains("does not exist"))
    });
    admitted_with(config, &[]);
    let (name, stored) = data_mover(&mut judge, "v1.18", "e2e-fast", &["eu-west-1b"]);
    assert_eq!(stored["spec"]["priorityClassName"], "e2e-judge-high", "{}", json_of(&stored));
    assert_eq!(stored["spec"]["priority"], 100000);
    wait_until("the scheduler nominates judge-b-backup for the data-mover pod", Duration::from_secs(30), || {
        pod(&name)["status"]["nominatedNodeName"] == "judge-b-backup"
    });
    // The scheduler deletes the victims after it nominates the node (asynchronously).
    let by = format!("Preempted by pod {} on node judge-b-backup", stored_uid(&pod(&name)));
    for victim in &victims {
        wait_until(
            &format!("{victim} is marked for deletion, with a Preempted event"),
            Duration::from_secs(30),
            || {
                let stored = kubectl(&["get", "pod", victim, "-n", "e2e-app", "-o", "json"]).must().json();
                stored["metadata"]["deletionTimestamp"].is_string()
                    && events("e2e-app", victim, "Preempted").iter().any(|m| m == &by)
            },
        );
    }
    assert_eq!(pod(&name)["spec"].get("nodeName"), None, "bound before its victims are gone");
    delete_pods(&[name], NS);
    drop(judge);
    serve_config("{}");
}

/// node-agent 1.18 runs without `cachePVC` when its class's reclaimPolicy is not `Delete`
/// (`validateCachePVCConfig`): `kubectl apply` shows the warning while such a class is in the
/// API server, and not once the class is replaced with a `Delete` one (the server's StorageClass
/// watch keeps each class's policy, and a change of it drops the kept checks).
#[test]
fn placement_a_cache_pvc_class_that_retains_its_volumes_is_warned_until_replaced() {
    let _serial = serial();
    webhook_up();
    let name = unique("e2e-cache");
    let class = |policy: &str| {
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "e2e.example.com/none", "reclaimPolicy": policy})
        .to_string()
    };
    let config = |megabytes: u32| {
        format!(r#"{{"cachePVC": {{"storageClass": "{name}", "residentThresholdInMB": {megabytes}}}}}"#)
    };
    let retains = format!(
        "cachePVC.storageClass: StorageClass \"{name}\" has reclaimPolicy Retain: node-agent drops cachePVC at start-up; use a Delete class"
    );
    let cache_warnings = |run: &Run| {
        assert!(run.ok, "{}", run.stderr);
        placement_warnings_of(&run.warnings())
    };
    let dry_run = |value: &str| {
        cache_warnings(&apply_config_as(|m| kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], m), value))
    };
    let apply = |value: &str| cache_warnings(&apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), value));

    kubectl_stdin(&["create", "-f", "-"], &class("Retain")).must();
    eventually_eq(
        "the watch sees the Retain class",
        Duration::from_secs(10),
        || dry_run(&config(512)),
        vec![retains.clone()],
    );
    assert_eq!(apply(&config(512)), vec![retains], "kubectl apply's warnings");

    // reclaimPolicy is immutable: the class is replaced, as an admin would replace it.
    kubectl(&["delete", "storageclass", &name]).must();
    kubectl_stdin(&["create", "-f", "-"], &class("Delete")).must();
    eventually_eq("the watch sees the Delete class", Duration::from_secs(10), || dry_run(&config(512)), Vec::new());
    assert_eq!(apply(&config(1024)), Vec::<String>::new(), "kubectl apply's warnings");
    kubectl(&["delete", "storageclass", &name]).must();
    serve_config("{}");
}
