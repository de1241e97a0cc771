//! The real kube-scheduler as the judge of placement, for the suites that need it (`make e2e`'s
//! placement tests, `make e2e-velero`'s with the real node-agent): Node objects with labels,
//! taints, allocatable and a Ready condition (no kubelet; nothing else changes them, as these
//! control planes run no kube-controller-manager), and kube-scheduler (hack/controlplane/build.sh)
//! only while one test runs: the rest of each suite expects pods to stay unbound. The suites run
//! one test at a time, and a `Judge` force-deletes every pod bound or nominated to its nodes
//! before it deletes them and stops the scheduler.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

pub const ZONE: &str = "topology.ebs.csi.aws.com/zone";

/// One node of the judge's cluster.
pub struct NodeSpec {
    pub name: &'static str,
    pub zone: &'static str,
    pub role: &'static str,
    pub pool: &'static str,
    /// key, value, effect.
    pub taint: Option<(&'static str, &'static str, &'static str)>,
    pub cpu: &'static str,
}

pub const NODES: [NodeSpec; 4] = [
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

/// A config that sends data-mover pods to the tainted node and tolerates its taint.
pub const TOLERATING_CONFIG: &str = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"role": "dedicated-backup"}}}],
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}]}"#;

fn node_object(spec: &NodeSpec) -> Value {
    let now = "2026-01-01T00:00:00Z";
    let resources = json!({"cpu": spec.cpu, "memory": "8Gi", "ephemeral-storage": "100Gi", "pods": "110"});
    let taints: Vec<Value> = spec.taint.iter().map(|(k, v, e)| json!({"key": k, "value": v, "effect": e})).collect();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": spec.name, "labels": {
            "kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux", ZONE: spec.zone,
            "role": spec.role, "pool": spec.pool}},
        "spec": {"taints": taints},
        "status": {"capacity": resources, "allocatable": resources, "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "e2e: no kubelet",
             "lastHeartbeatTime": now, "lastTransitionTime": now}]}
    })
}

/// One required node-selector term per zone: a PV's topology, as node-agent copies it.
pub fn zone_terms(zones: &[&str]) -> Value {
    zones.iter().map(|zone| json!({"matchExpressions": [{"key": ZONE, "operator": "In", "values": [zone]}]})).collect()
}

/// What the judge gives node-agent's DaemonSet (where one exists): it runs on the `pool=fast`
/// nodes, the tainted one included, and not on `judge-a-worker`.
fn daemonset_placement() -> Value {
    json!({"nodeSelector": {"pool": "fast"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]})
}

/// kube-scheduler and the judge's nodes, for one test.
pub struct Judge {
    scheduler: Child,
    /// node-agent's DaemonSet's nodeSelector and tolerations before the judge set its own.
    daemonset: Option<Value>,
    /// kubectl argument lists run when dropped (objects the test made for the judge).
    pub cleanup: Vec<Vec<String>>,
}

impl Judge {
    pub fn start() -> Self {
        for spec in &NODES {
            let node = node_object(spec);
            kubectl_stdin(&["create", "-f", "-"], &node.to_string()).must();
            // The status of a Node is the kubelet's to write: patch it as the kubelet does.
            let status = json!({"status": node["status"]}).to_string();
            kubectl(&["patch", "node", spec.name, "--subresource=status", "--type=merge", "-p", &status]).must();
            // The TaintNodesByCondition admission plugin created it with the not-ready taint,
            // which the node lifecycle controller lifts once the node is Ready: lift it as it does.
            let taints = json!({"spec": {"taints": node["spec"]["taints"]}}).to_string();
            kubectl(&["patch", "node", spec.name, "--type=merge", "-p", &taints]).must();
        }
        let stored = kubectl(&["get", "daemonset", "node-agent", "-n", NS, "-o", "json", "--ignore-not-found"]);
        let daemonset = (stored.ok && !stored.stdout.trim().is_empty()).then(|| {
            let spec = &stored.json()["spec"]["template"]["spec"];
            let before = json!({"nodeSelector": spec["nodeSelector"], "tolerations": spec["tolerations"]});
            set_daemonset_placement(&daemonset_placement());
            before
        });
        let port = free_port().to_string();
        let log = std::fs::File::create(e2e_dir().join("kube-scheduler.log")).expect("scheduler log");
        let scheduler = Command::new("kube-scheduler")
            .arg("--kubeconfig")
            .arg(e2e_dir().join("kubeconfig"))
            .args(["--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port", &port, "-v=2"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kube-scheduler on PATH (hack/controlplane/build.sh builds it, cluster.sh env puts it there)");
        record_pid(scheduler.id());
        let judge = Judge { scheduler, daemonset, cleanup: Vec::new() };
        let healthz = format!("https://127.0.0.1:{port}/healthz");
        wait_until("kube-scheduler is healthy", Duration::from_secs(30), || {
            Command::new("curl").args(["-fsk", &healthz]).output().is_ok_and(|o| o.status.success())
        });
        judge
    }

    /// Binds claim `namespace/claim` (made here when it does not exist) to a new PV of `class`
    /// whose node affinity is one term per zone, as the PV controller would bind it.
    pub fn bind_claim(&mut self, namespace: &str, claim: &str, class: &str, zones: &[&str]) {
        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": claim},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "csi": {"driver": "e2e.example.com", "volumeHandle": claim},
                     "claimRef": {"namespace": namespace, "name": claim},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": zone_terms(zones)}}}});
        kubectl_stdin(&["create", "-f", "-"], &pv.to_string()).must();
        let exists = kubectl(&["get", "pvc", claim, "-n", namespace, "-o", "name", "--ignore-not-found"]).must();
        let bound = json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"volumeName": claim}});
        if exists.stdout.trim().is_empty() {
            let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace, "annotations": bound["metadata"]["annotations"]},
                "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"], "volumeName": claim,
                         "resources": {"requests": {"storage": "1Gi"}}}});
            kubectl_stdin(&["create", "-f", "-"], &pvc.to_string()).must();
        } else {
            kubectl(&["patch", "pvc", claim, "-n", namespace, "--type=merge", "-p", &bound.to_string()]).must();
        }
        let phase = json!({"status": {"phase": "Bound"}}).to_string();
        kubectl(&["patch", "pvc", claim, "-n", namespace, "--subresource=status", "--type=merge", "-p", &phase]).must();
        self.cleanup.push(["delete", "pvc", "-n", namespace, claim, "--wait=false"].map(String::from).to_vec());
        self.cleanup.push(["delete", "pv", claim, "--wait=false"].map(String::from).to_vec());
    }

    /// The node the scheduler bound the pod to, once it did.
    pub fn bound_node(&self, namespace: &str, name: &str) -> String {
        let mut node = String::new();
        wait_until(&format!("kube-scheduler binds {name}"), Duration::from_secs(30), || {
            node = pod_in(namespace, name)["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
            !node.is_empty()
        });
        node
    }

    /// The scheduler's `FailedScheduling` message for a pod it leaves Pending and unbound.
    pub fn failed_scheduling(&self, namespace: &str, name: &str) -> String {
        let mut message = String::new();
        wait_until(&format!("kube-scheduler reports {name} unschedulable"), Duration::from_secs(30), || {
            message = events(namespace, name, "FailedScheduling").into_iter().next().unwrap_or_default();
            !message.is_empty()
        });
        let stored = pod_in(namespace, name);
        assert_eq!(stored["spec"].get("nodeName"), None, "{name} was bound: {stored}");
        let scheduled = stored["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
            .map(|c| (c["status"].clone(), c["reason"].clone()));
        assert_eq!(scheduled, Some((json!("False"), json!("Unschedulable"))), "{name}: {stored}");
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
            let on_ours = |v: &Value| v.as_str().is_some_and(|n| names.contains(&n));
            if on_ours(&item["spec"]["nodeName"]) || on_ours(&item["status"]["nominatedNodeName"]) {
                let namespace = item["metadata"]["namespace"].as_str().unwrap_or_default();
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                kubectl(&["delete", "pod", name, "-n", namespace, "--force", "--grace-period=0", "--ignore-not-found"]);
            }
        }
        for args in &self.cleanup {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(&args);
        }
        if let Some(before) = &self.daemonset {
            set_daemonset_placement(before);
        }
        let mut args = vec!["delete", "node", "--ignore-not-found", "--wait=false"];
        args.extend(names);
        kubectl(&args);
    }
}

/// Sets (or, for a null, removes) node-agent's DaemonSet's pod template nodeSelector and
/// tolerations.
fn set_daemonset_placement(placement: &Value) {
    let ops: Vec<Value> = ["nodeSelector", "tolerations"]
        .iter()
        .map(|field| match &placement[field] {
            Value::Null => json!({"op": "remove", "path": format!("/spec/template/spec/{field}")}),
            value => json!({"op": "add", "path": format!("/spec/template/spec/{field}"), "value": value}),
        })
        .collect();
    for op in ops {
        // A remove of a field that is not there fails; each op stands alone.
        kubectl(&["patch", "daemonset", "node-agent", "-n", NS, "--type=json", "-p", &json!([op]).to_string()]);
    }
}

pub fn pod_in(namespace: &str, name: &str) -> Value {
    kubectl(&["get", "pod", name, "-n", namespace, "-o", "json"]).must().json()
}

/// The messages of the events of `reason` about one object.
pub fn events(namespace: &str, name: &str, reason: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={name},reason={reason}");
    let list = kubectl(&["get", "events", "-n", namespace, "--field-selector", &selector, "-o", "json"]).must().json();
    list["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|e| e["message"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}
