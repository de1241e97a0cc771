//! The real kube-scheduler as the judge of placement: Node objects with labels, taints,
//! allocatable and a Ready condition (no kubelet: nothing else here changes them, as this
//! control plane runs no kube-controller-manager), data-mover pods created as node-agent with a
//! claim bound to a PV of their zone, our webhook's config applied, and the scheduler's verdict
//! (a binding, or Pending with its `FailedScheduling` event) against what the placement checks
//! (`config::placement`) predicted from the same Node objects.
//!
//! kube-scheduler runs only while one of these tests does (`Judge`): the rest of the suite
//! expects pods to stay unbound. The suite runs one test at a time, and `Judge` force-deletes
//! every pod bound to its nodes before it deletes them and stops the scheduler.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use node_agent_webhook::config::decode::decode;
use node_agent_webhook::config::json::parse;
use node_agent_webhook::config::placement::{placement_warnings, ClusterView, NodeFacts};
use serde_json::{json, Value};

use crate::harness::*;
use crate::{create_pod, delete_pods, json_of, pod_fixture};

const ZONE: &str = "topology.ebs.csi.aws.com/zone";

/// One node of the judge's cluster: name, zone, role, pool, taint (key=value:effect), cpu.
struct NodeSpec {
    name: &'static str,
    zone: &'static str,
    role: &'static str,
    pool: &'static str,
    taint: Option<(&'static str, &'static str, &'static str)>,
    cpu: &'static str,
}

const NODES: [NodeSpec; 4] = [
    NodeSpec { name: "judge-a-worker", zone: "eu-west-1a", role: "worker", pool: "general", taint: None, cpu: "4" },
    NodeSpec { name: "judge-b-backup", zone: "eu-west-1b", role: "backup", pool: "fast", taint: None, cpu: "4" },
    NodeSpec { name: "judge-c-backup", zone: "eu-west-1c", role: "backup", pool: "fast", taint: None, cpu: "4" },
    NodeSpec {
        name: "judge-a-tainted",
        zone: "eu-west-1a",
        role: "dedicated-backup",
        pool: "fast",
        taint: Some(("dedicated", "backup", "NoSchedule")),
        cpu: "4",
    },
];

fn node_object(spec: &NodeSpec) -> Value {
    let now = "2026-01-01T00:00:00Z";
    let resources = json!({"cpu": spec.cpu, "memory": "8Gi", "ephemeral-storage": "100Gi", "pods": "110"});
    let taints: Vec<Value> = spec.taint.iter().map(|(k, v, e)| json!({"key": k, "value": v, "effect": e})).collect();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": spec.name, "labels": {
            "kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux", ZONE: spec.zone,
            "role": spec.role, "pool": spec.pool, "e2e.node-agent-webhook.io/judge": "true"}},
        "spec": {"taints": taints},
        "status": {"capacity": resources, "allocatable": resources, "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "e2e: no kubelet",
             "lastHeartbeatTime": now, "lastTransitionTime": now}]}
    })
}

/// kube-scheduler and the judge's nodes, for one test; dropped, it leaves the suite's cluster
/// as it found it.
struct Judge {
    scheduler: Child,
    cleanup: Vec<Vec<String>>,
}

impl Judge {
    fn start() -> Self {
        for spec in &NODES {
            let node = node_object(spec);
            kubectl_stdin(&["create", "-f", "-"], &node.to_string()).must();
            // The status of a created Node is the kubelet's to write: patch it as the kubelet does.
            let status = json!({"status": node["status"]}).to_string();
            kubectl(&["patch", "node", spec.name, "--subresource=status", "--type=merge", "-p", &status]).must();
        }
        let port = free_port().to_string();
        let kubeconfig = e2e_dir().join("kubeconfig");
        let log = std::fs::File::create(e2e_dir().join("kube-scheduler.log")).expect("scheduler log");
        let scheduler = Command::new("kube-scheduler")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port", &port, "-v=2"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kube-scheduler (hack/controlplane/build.sh builds it)");
        record_pid(scheduler.id());
        let judge = Judge { scheduler, cleanup: Vec::new() };
        let healthz = format!("https://127.0.0.1:{port}/healthz");
        wait_until("kube-scheduler is healthy", Duration::from_secs(30), || {
            Command::new("curl").args(["-fsk", &healthz]).output().is_ok_and(|o| o.status.success())
        });
        judge
    }

    /// A data-mover pod created as node-agent, its claim bound to a PV whose (and the pod's)
    /// required node affinity is one term per zone: the PV topology node-agent copies.
    fn data_mover(&mut self, version: &str, class: &str, zones: &[&str]) -> (String, Value) {
        let (name, mut pod) = pod_fixture(version, "dataupload");
        let terms: Vec<Value> = zones
            .iter()
            .map(|zone| json!({"matchExpressions": [{"key": ZONE, "operator": "In", "values": [zone]}]}))
            .collect();
        pod["spec"]["affinity"] =
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}});
        let claim = pod["spec"]["volumes"]
            .as_array()
            .and_then(|v| v.iter().find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str()))
            .expect("the fixture mounts a claim")
            .to_string();
        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": claim},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "csi": {"driver": "e2e.example.com", "volumeHandle": claim},
                     "claimRef": {"namespace": NS, "name": claim},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": terms}}}});
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": NS, "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"], "volumeName": claim,
                     "resources": {"requests": {"storage": "1Gi"}}}});
        for object in [pv, pvc] {
            kubectl_stdin(&["create", "-f", "-"], &object.to_string()).must();
        }
        self.cleanup.push(vec![
            "delete".into(),
            "pvc".into(),
            "-n".into(),
            NS.into(),
            claim.clone(),
            "--wait=false".into(),
        ]);
        self.cleanup.push(vec!["delete".into(), "pv".into(), claim, "--wait=false".into()]);
        let (_, stored) = create_pod(Some(&Identity::node_agent()), &pod);
        (name, stored)
    }

    /// The node the scheduler bound the pod to, once it did.
    fn bound_node(&self, name: &str) -> String {
        let mut node = String::new();
        wait_until(&format!("kube-scheduler binds {name}"), Duration::from_secs(30), || {
            node = pod(name)["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
            !node.is_empty()
        });
        node
    }

    /// The scheduler's `FailedScheduling` message for a pod it leaves Pending.
    fn failed_scheduling(&self, name: &str) -> String {
        let mut message = String::new();
        wait_until(&format!("kube-scheduler reports {name} unschedulable"), Duration::from_secs(30), || {
            message = events(NS, name, "FailedScheduling").into_iter().next().unwrap_or_default();
            !message.is_empty()
        });
        let stored = pod(name);
        assert_eq!(stored["spec"].get("nodeName"), None, "{name} was bound: {}", json_of(&stored));
        let scheduled = stored["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
            .cloned();
        assert_eq!(
            scheduled.as_ref().map(|c| (&c["status"], &c["reason"])),
            Some((&json!("False"), &json!("Unschedulable")))
        );
        message
    }
}

impl Drop for Judge {
    fn drop(&mut self) {
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
        let names: Vec<&str> = NODES.iter().map(|n| n.name).collect();
        let pods = kubectl(&["get", "pods", "-A", "-o", "json"]);
        for item in pods.ok.then(|| pods.json()).and_then(|v| v["items"].as_array().cloned()).unwrap_or_default() {
            let bound = item["spec"]["nodeName"].as_str().is_some_and(|n| names.contains(&n));
            let nominated = item["status"]["nominatedNodeName"].as_str().is_some_and(|n| names.contains(&n));
            if bound || nominated {
                let (ns, name) = (
                    item["metadata"]["namespace"].as_str().unwrap_or(NS),
                    item["metadata"]["name"].as_str().unwrap_or(""),
                );
                kubectl(&["delete", "pod", name, "-n", ns, "--force", "--grace-period=0", "--ignore-not-found"]);
            }
        }
        for args in &self.cleanup {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(&args);
        }
        let mut args = vec!["delete", "node", "--ignore-not-found", "--wait=false"];
        args.extend(names);
        kubectl(&args);
    }
}

fn pod(name: &str) -> Value {
    kubectl(&["get", "pod", name, "-n", NS, "-o", "json"]).must().json()
}

/// The messages of the events of `reason` about one object.
fn events(namespace: &str, name: &str, reason: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={name},reason={reason}");
    let list = kubectl(&["get", "events", "-n", namespace, "--field-selector", &selector, "-o", "json"]).must().json();
    list["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|e| e["message"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// What the placement checks say of `config` against the cluster's Node objects as they are.
fn predicted(config: &str) -> Vec<String> {
    let nodes = kubectl(&["get", "nodes", "-o", "json"]).must().json();
    let facts: Vec<NodeFacts> = nodes["items"].as_array().into_iter().flatten().map(NodeFacts::of_node).collect();
    let decoded = decode(&parse(config).expect("a JSON config"), None);
    let view = ClusterView { nodes: &facts, node_agent: None, reclaim_policies: None };
    placement_warnings(&decoded, &view, None).iter().map(|d| format!("{}: {}", d.path, d.message)).collect()
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
    serve_config(config);
    assert_eq!(predicted(config), Vec::<String>::new());
    let (name, stored) = judge.data_mover("v1.18", "e2e-fast", &["eu-west-1a", "eu-west-1b"]);
    assert_eq!(
        stored["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "the webhook ANDs the entry into each term: {}",
        json_of(&stored)
    );
    assert_eq!(judge.bound_node(&name), "judge-b-backup");
    delete_pods(&[name], NS);

    // Entries by storage class: e2e-fast's (pool=fast) in 1a or 1c is 1c's backup node; a class
    // no entry names gets the entry without one (pool=general): 1a's worker.
    let config = r#"{"loadAffinity": [
        {"storageClass": "e2e-fast", "nodeSelector": {"matchLabels": {"pool": "fast"}, "matchExpressions": [{"key": "role", "operator": "In", "values": ["backup"]}]}},
        {"nodeSelector": {"matchLabels": {"pool": "general"}}}]}"#;
    serve_config(config);
    assert_eq!(predicted(config), Vec::<String>::new());
    let (fast, _) = judge.data_mover("v1.18", "e2e-fast", &["eu-west-1a", "eu-west-1c"]);
    assert_eq!(judge.bound_node(&fast), "judge-c-backup");
    let (slow, _) = judge.data_mover("v1.17", "e2e-slow", &["eu-west-1a", "eu-west-1b"]);
    assert_eq!(judge.bound_node(&slow), "judge-a-worker");
    delete_pods(&[fast, slow], NS);
    drop(judge);
    serve_config("{}");
}

#[test]
fn placement_a_selector_that_selects_no_node_leaves_the_pod_pending() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    let config = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "gpu-backup"}}}]}"#;
    serve_config(config);
    assert_eq!(
        predicted(config),
        [format!("loadAffinity[0].nodeSelector: selects none of the {} nodes (nodes have role with backup, dedicated-backup, worker, none In gpu-backup): data-mover pods for it stay Pending (FailedScheduling); change the selector or label the nodes", node_count())]
    );
    let (name, _) = judge.data_mover("v1.18", "e2e-fast", &["eu-west-1a"]);
    let message = judge.failed_scheduling(&name);
    assert!(message.contains("didn't match Pod's node affinity/selector"), "{message}");
    delete_pods(&[name], NS);
    drop(judge);
    serve_config("{}");
}

#[test]
fn placement_an_untolerated_taint_leaves_the_pod_pending() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    let config = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "dedicated-backup"}}}]}"#;
    serve_config(config);
    assert_eq!(
        predicted(config),
        ["loadAffinity[0].nodeSelector: every one of the 1 selected node(s) has a taint data-mover pods do not tolerate (judge-a-tainted: dedicated=backup:NoSchedule): data-mover pods for it stay Pending (FailedScheduling); add a toleration for it to tolerations, or select other nodes"]
    );
    let (name, _) = judge.data_mover("v1.18", "e2e-fast", &["eu-west-1a"]);
    let message = judge.failed_scheduling(&name);
    assert!(message.contains("untolerated taint(s)"), "{message}");
    delete_pods(&[name], NS);
    drop(judge);
    serve_config("{}");
}

#[test]
fn placement_requests_over_every_selected_node_s_allocatable_leave_the_pod_pending() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    let config = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}],
        "podResources": {"cpuRequest": "6", "cpuLimit": "6", "memoryRequest": "1Gi", "memoryLimit": "1Gi"}}"#;
    serve_config(config);
    assert_eq!(
        predicted(config),
        ["loadAffinity[0].nodeSelector: podResources requests exceed the allocatable of every one of the 2 selected node(s) (judge-b-backup: cpu 6 > 4; judge-c-backup: cpu 6 > 4): data-mover pods for it stay Pending (FailedScheduling) (Insufficient resources); lower the requests or select larger nodes"]
    );
    let (name, _) = judge.data_mover("v1.18", "e2e-fast", &["eu-west-1b", "eu-west-1c"]);
    let message = judge.failed_scheduling(&name);
    assert!(message.contains("Insufficient cpu"), "{message}");
    delete_pods(&[name], NS);
    drop(judge);
    serve_config("{}");
}

#[test]
fn placement_configured_tolerations_land_the_pod_on_the_tainted_node() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    let config = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "dedicated-backup"}}}],
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}]}"#;
    serve_config(config);
    assert_eq!(predicted(config), Vec::<String>::new());
    for version in ["v1.17", "v1.18"] {
        let (name, stored) = judge.data_mover(version, "e2e-fast", &["eu-west-1a"]);
        let toleration = json!({"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"});
        let tolerations = stored["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
        assert_eq!(tolerations.iter().filter(|t| **t == toleration).count(), 1, "{version}: {}", json_of(&stored));
        assert_eq!(judge.bound_node(&name), "judge-a-tainted", "{version}");
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
    // Two pods of priority 0 fill judge-b-backup's 4 cpu; with no kubelet, a victim's grace
    // period never ends, so it stays Terminating and the preemptor stays nominated.
    let victims: Vec<String> = (0..2).map(|i| unique(&format!("victim{i}"))).collect();
    for victim in &victims {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": victim, "namespace": "e2e-app"},
            "spec": {"nodeName": "judge-b-backup", "serviceAccountName": "velero", "automountServiceAccountToken": false,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "2"}}}]}});
        kubectl_stdin(&["create", "-f", "-"], &pod.to_string()).must();
    }
    let config = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "backup"}}}],
        "podResources": {"cpuRequest": "1", "cpuLimit": "1", "memoryRequest": "128Mi", "memoryLimit": "128Mi"},
        "priorityClassName": "e2e-judge-high"}"#;
    wait_until("the webhook sees the PriorityClass", Duration::from_secs(10), || {
        apply_config_as(|m| kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], m), config).warnings().is_empty()
    });
    serve_config(config);
    let (name, stored) = judge.data_mover("v1.18", "e2e-fast", &["eu-west-1b"]);
    assert_eq!(stored["spec"]["priorityClassName"], "e2e-judge-high", "{}", json_of(&stored));
    assert_eq!(stored["spec"]["priority"], 100000);
    wait_until("the scheduler nominates judge-b-backup for the data-mover pod", Duration::from_secs(30), || {
        pod(&name)["status"]["nominatedNodeName"] == "judge-b-backup"
    });
    let stored_preemptor = pod(&name);
    for victim in &victims {
        let stored = kubectl(&["get", "pod", victim, "-n", "e2e-app", "-o", "json"]).must().json();
        assert!(stored["metadata"]["deletionTimestamp"].is_string(), "{victim} not marked: {}", json_of(&stored));
        let preempted = events("e2e-app", victim, "Preempted");
        let by = format!("Preempted by pod {} on node judge-b-backup", stored_uid(&stored_preemptor));
        assert!(preempted.iter().any(|m| m == &by), "{victim}: {preempted:?}, want {by:?}");
    }
    assert_eq!(pod(&name)["spec"].get("nodeName"), None, "bound before its victims are gone");
    delete_pods(&[name], NS);
    drop(judge);
    serve_config("{}");
}
