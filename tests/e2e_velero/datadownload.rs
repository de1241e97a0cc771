//! DataDownload pods made by node-agent itself: a target PVC in the application namespace and a
//! DataDownload CR in Velero's; node-agent accepts it, creates Pod `velero/<dd>` and the restore
//! PVC, and the pod stays Pending (no kubelet, no scheduler). What each test asserts is read
//! from the pod the API server stored.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::node_agent::{self, minor, version, NodeAgent};
use crate::*;

const APP_NS: &str = "e2e-app";
const MUTATING: &str = "mutate-datamover-pods.node-agent-webhook.io";
const OS_NOT_WINDOWS: &str = r#"{"key": "kubernetes.io/os", "operator": "NotIn", "values": ["windows"]}"#;

/// A DataDownload and its target PVC; deleted with what node-agent made for it when dropped.
pub struct DataDownload {
    pub name: String,
    target: String,
}

/// Where the target PVC's volume is to be: an unbound PVC without a class (node-agent exposes at
/// once, and loadAffinity applies), or a WaitForFirstConsumer PVC whose workload pod the
/// scheduler put on the node (the selected-node annotation: the pod is bound to that node).
#[derive(Clone, Copy, PartialEq)]
pub enum Target {
    Unbound,
    SelectedNode,
}

impl DataDownload {
    pub fn create(target: Target) -> Self {
        let name = unique("dd");
        let target_pvc = format!("{name}-target");
        let mut pvc = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": target_pvc, "namespace": APP_NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        });
        if target == Target::SelectedNode {
            pvc["spec"]["storageClassName"] = json!("e2e-wffc");
            pvc["metadata"]["annotations"] = json!({"volume.kubernetes.io/selected-node": node_agent::NODE});
        }
        kubectl_stdin(&["create", "-f", "-"], &pvc.to_string()).must();
        let dd = json!({
            "apiVersion": "velero.io/v2alpha1", "kind": "DataDownload",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "backupStorageLocation": "default", "operationTimeout": "10m", "snapshotID": "e2e",
                "sourceNamespace": APP_NS,
                "targetVolume": {"namespace": APP_NS, "pvc": target_pvc, "pv": ""}
            }
        });
        kubectl_stdin(&["create", "-f", "-"], &dd.to_string()).must();
        Self { name, target: target_pvc }
    }

    pub fn get(&self) -> Value {
        kubectl(&["get", "datadownloads.velero.io", &self.name, "-n", NS, "-o", "json"]).json()
    }

    pub fn phase(&self) -> String {
        self.get()["status"]["phase"].as_str().unwrap_or_default().to_string()
    }

    /// The pod node-agent created for it, as stored.
    #[track_caller]
    pub fn wait_pod(&self, agent: &NodeAgent) -> Value {
        let mut pod = None;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let run = kubectl(&["get", "pod", &self.name, "-n", NS, "-o", "json", "--ignore-not-found"]);
            if run.ok && !run.stdout.trim().is_empty() {
                pod = Some(run.json());
                break;
            }
            if self.phase() == "Failed" {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        pod.unwrap_or_else(|| {
            panic!(
                "node-agent {} made no pod for DataDownload {}: {}\nnode-agent's log:\n{}",
                version(),
                self.name,
                json_of(&self.get()["status"]),
                agent.log_text()
            )
        })
    }

    /// node-agent accepted it and did not fail it (its pod is Pending, as without a kubelet).
    #[track_caller]
    pub fn assert_accepted(&self, agent: &NodeAgent) {
        // Give node-agent a few reconciles to notice a rejected or broken pod.
        std::thread::sleep(Duration::from_secs(2));
        let dd = self.get();
        assert_eq!(
            dd["status"]["phase"],
            "Accepted",
            "DataDownload {} on node-agent {}: {}\nnode-agent's log:\n{}",
            self.name,
            version(),
            json_of(&dd["status"]),
            agent.log_text()
        );
        assert_eq!(dd["status"]["acceptedByNode"], node_agent::NODE);
    }
}

impl Drop for DataDownload {
    fn drop(&mut self) {
        // node-agent's finalizer would hold the CR (and node-agent may be stopped by now); the
        // pod and the restore PVC have owner references, but no garbage collector runs here.
        let patch = r#"{"metadata":{"finalizers":null}}"#;
        let _ = kubectl(&["patch", "datadownloads.velero.io", &self.name, "-n", NS, "--type=merge", "-p", patch]);
        let _ =
            kubectl(&["delete", "datadownloads.velero.io", &self.name, "-n", NS, "--wait=false", "--ignore-not-found"]);
        let _ = kubectl(&["delete", "pod", &self.name, "-n", NS, "--wait=false", "--ignore-not-found"]);
        let _ = kubectl(&["delete", "pvc", &self.name, "-n", NS, "--wait=false", "--ignore-not-found"]);
        let _ = kubectl(&["delete", "pvc", &self.target, "-n", APP_NS, "--wait=false", "--ignore-not-found"]);
    }
}

fn requirement(text: &str) -> Value {
    serde_json::from_str(text).expect("requirement")
}

fn term_has(pod: &Value, wanted: &Value) -> bool {
    let terms = node_affinity_terms(pod);
    let terms = terms.as_array().cloned().unwrap_or_default();
    !terms.is_empty() && terms.iter().all(|t| t["matchExpressions"].as_array().is_some_and(|m| m.contains(wanted)))
}

fn apiserver_webhook_count(family: &str) -> f64 {
    metric_sum(&apiserver_metrics(), family, &[&format!("name=\"{MUTATING}\"")])
}

/// Where node-agent itself puts the OS requirement: 1.18 in the affinity term, 1.16 and 1.17 as
/// a `kubernetes.io/os=linux` nodeSelector.
#[track_caller]
fn assert_node_agent_os_placement(pod: &Value, what: &str) {
    if minor() >= 18 {
        assert!(
            term_has(pod, &requirement(OS_NOT_WINDOWS)),
            "{what}: node-agent's OS requirement kept:\n{}",
            json_of(pod)
        );
    } else {
        assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/os"], "linux", "{what}:\n{}", json_of(pod));
    }
}

/// The webhook applies the live config, edited after node-agent read its own at start-up, to
/// the pod node-agent submits: every setting, including those this node-agent version never
/// applies itself (priorityClassName before 1.17, podLabels and podAnnotations before 1.18, and
/// DataDownload loadAffinity before 1.17).
#[test]
fn datadownload_pod_gets_the_live_config_edited_after_node_agent_started() {
    let _serial = serial();
    webhook_up();
    serve_config(
        r#"{"podResources": {"cpuRequest": "100m", "cpuLimit": "1", "memoryRequest": "64Mi", "memoryLimit": "1Gi"}}"#,
    );
    let agent = NodeAgent::start();
    serve_config(FULL_CONFIG);
    let before = metric_sum(&our_metrics(), "node_agent_webhook_admission_requests_total", &[r#"webhook="mutate""#]);

    let dd = DataDownload::create(Target::Unbound);
    let pod = dd.wait_pod(&agent);
    let what = format!("DataDownload pod from node-agent {}", version());

    let applied = applied_settings(&pod);
    for setting in ["loadAffinity", "podResources", "priorityClassName", "podLabels", "podAnnotations"] {
        assert!(applied.iter().any(|s| s == setting), "{what}: {setting} not applied: {applied:?}\n{}", json_of(&pod));
    }
    assert!(
        metric_sum(&our_metrics(), "node_agent_webhook_admission_requests_total", &[r#"webhook="mutate""#]) > before,
        "our server answered node-agent's pod CREATE"
    );
    assert_eq!(pod["metadata"]["labels"]["velero.io/data-download"], dd.name.as_str(), "{what}");
    assert_eq!(pod["metadata"]["labels"]["team"], "platform", "{what}");
    assert_eq!(pod["metadata"]["annotations"]["iam.amazonaws.com/role"], "velero-backup-role", "{what}");
    assert_eq!(
        pod["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "500m", "memory": "512Mi"}}),
        "{what}: the live podResources replace the ones node-agent read at start-up"
    );
    assert_eq!(pod["spec"]["priorityClassName"], "e2e-backup", "{what}");
    assert_eq!(pod["spec"]["priority"], 1000, "{what}: the class's value");
    let backup = requirement(r#"{"key": "node-role.example.com/backup", "operator": "In", "values": ["true"]}"#);
    assert!(term_has(&pod, &backup), "{what}: the live loadAffinity:\n{}", json_of(&pod));
    assert_node_agent_os_placement(&pod, &what);
    dd.assert_accepted(&agent);
    drop(agent);
}

/// node-agent 1.17+ puts the loadAffinity it read at start-up into DataDownload pods; a live
/// config that contradicts it (zone-a against zone-b) leaves that affinity alone, counts the
/// conflict, still applies the other settings, and the DataDownload is not failed by us.
/// node-agent 1.16 gives DataDownload pods no loadAffinity at all: there the live one applies.
#[test]
fn datadownload_pod_whose_affinity_contradicts_the_live_config_keeps_node_agents() {
    let _serial = serial();
    webhook_up();
    let zone = |z: &str| {
        format!(
            r#"{{"loadAffinity": [{{"nodeSelector": {{"matchLabels": {{"topology.kubernetes.io/zone": "{z}"}}}}}}], "podLabels": {{"team": "{z}"}}}}"#
        )
    };
    serve_config(&zone("zone-a"));
    let agent = NodeAgent::start();
    serve_config(&zone("zone-b"));
    let conflicts = metric_sum(&our_metrics(), "node_agent_webhook_affinity_conflicts_total", &[]);

    let dd = DataDownload::create(Target::Unbound);
    let pod = dd.wait_pod(&agent);
    let what = format!("DataDownload pod from node-agent {}", version());
    let zone_req = |z: &str| json!({"key": "topology.kubernetes.io/zone", "operator": "In", "values": [z]});
    let applied = applied_settings(&pod);
    assert!(applied.iter().any(|s| s == "podLabels"), "{what}: {applied:?}");
    assert_eq!(pod["metadata"]["labels"]["team"], "zone-b", "{what}");
    if minor() >= 17 {
        assert!(term_has(&pod, &zone_req("zone-a")), "{what}: node-agent's start-up affinity kept:\n{}", json_of(&pod));
        assert!(!term_has(&pod, &zone_req("zone-b")), "{what}: no contradicting requirement:\n{}", json_of(&pod));
        assert!(!applied.iter().any(|s| s == "loadAffinity"), "{what}: {applied:?}");
        assert_eq!(
            metric_sum(&our_metrics(), "node_agent_webhook_affinity_conflicts_total", &[]),
            conflicts + 1.0,
            "{what}: the conflict is counted"
        );
    } else {
        assert!(
            term_has(&pod, &zone_req("zone-b")),
            "{what}: 1.16 puts no loadAffinity in restore pods, ours applies:\n{}",
            json_of(&pod)
        );
        assert!(!term_has(&pod, &zone_req("zone-a")), "{what}:\n{}", json_of(&pod));
        assert!(applied.iter().any(|s| s == "loadAffinity"), "{what}: {applied:?}");
    }
    assert_node_agent_os_placement(&pod, &what);
    dd.assert_accepted(&agent);
    drop(agent);
}

/// With our server stopped, node-agent still creates its pod (failurePolicy Ignore) and the
/// DataDownload proceeds; the pod carries what this node-agent version applies by itself from
/// its start-up config, and nothing of ours.
#[test]
fn datadownload_proceeds_with_our_server_stopped_and_the_pod_has_only_node_agents_settings() {
    let _serial = serial();
    webhook_up();
    serve_config(FULL_CONFIG);
    let agent = NodeAgent::start();
    let fail_open = apiserver_webhook_count("apiserver_admission_webhook_fail_open_count");
    webhook_down();

    let dd = DataDownload::create(Target::Unbound);
    let pod = dd.wait_pod(&agent);
    let what = format!("DataDownload pod from node-agent {} with our server down", version());
    assert_eq!(applied_annotation(&pod), None, "{what}");
    assert!(
        apiserver_webhook_count("apiserver_admission_webhook_fail_open_count") > fail_open,
        "{what}: the API server counts the fail-open"
    );
    dd.assert_accepted(&agent);

    // What node-agent applies itself, by version (Velero's `pkg/exposer/generic_restore.go` at
    // each tag, and what this shows).
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(resources["limits"]["cpu"], "2", "{what}: podResources (1.15+):\n{}", json_of(&pod));
    assert_eq!(resources["requests"]["memory"], "512Mi", "{what}");
    let backup = requirement(r#"{"key": "node-role.example.com/backup", "operator": "In", "values": ["true"]}"#);
    assert_eq!(
        term_has(&pod, &backup),
        minor() >= 17,
        "{what}: DataDownload loadAffinity is node-agent's from 1.17:\n{}",
        json_of(&pod)
    );
    let priority = pod["spec"]["priorityClassName"].as_str();
    assert_eq!(priority, (minor() >= 17).then_some("e2e-backup"), "{what}: priorityClassName from 1.17");
    let team = pod["metadata"]["labels"]["team"].as_str();
    assert_eq!(team, (minor() >= 18).then_some("platform"), "{what}: podLabels from 1.18");
    let role = pod["metadata"]["annotations"]["iam.amazonaws.com/role"].as_str();
    assert_eq!(role, (minor() >= 18).then_some("velero-backup-role"), "{what}: podAnnotations from 1.18");
    drop(agent);
    webhook_up();
}

/// A restore into a WaitForFirstConsumer PVC whose workload pod is scheduled: node-agent binds
/// its pod to that node (1.16/1.17 `spec.nodeName`, 1.18 a hostname nodeSelector); the webhook
/// must not give it loadAffinity, but applies the rest.
#[test]
fn datadownload_pod_bound_to_the_workload_node_gets_no_load_affinity() {
    let _serial = serial();
    webhook_up();
    serve_config("{}");
    let agent = NodeAgent::start();
    serve_config(FULL_CONFIG);

    let dd = DataDownload::create(Target::SelectedNode);
    let pod = dd.wait_pod(&agent);
    let what = format!("node-bound DataDownload pod from node-agent {}", version());
    if minor() >= 18 {
        assert_eq!(
            pod["spec"]["nodeSelector"]["kubernetes.io/hostname"],
            node_agent::NODE,
            "{what}:\n{}",
            json_of(&pod)
        );
    } else {
        assert_eq!(pod["spec"]["nodeName"], node_agent::NODE, "{what}:\n{}", json_of(&pod));
    }
    let applied = applied_settings(&pod);
    assert!(!applied.iter().any(|s| s == "loadAffinity"), "{what}: {applied:?}");
    assert!(applied.iter().any(|s| s == "podResources"), "{what}: {applied:?}");
    let backup = requirement(r#"{"key": "node-role.example.com/backup", "operator": "In", "values": ["true"]}"#);
    assert!(!term_has(&pod, &backup), "{what}:\n{}", json_of(&pod));
    assert_eq!(pod["metadata"]["labels"]["team"], "platform", "{what}");
    dd.assert_accepted(&agent);
    drop(agent);
}

/// node-agent keeps one loadAffinity list for its whole life. Up to 1.18.2 the restore exposer
/// appended its OS requirement to the shared entry itself, so each later pod carried one more
/// copy (Velero issue 10341); 1.18.3 hands the exposer a copy (GetLoadAffinityByStorageClass,
/// pkg/util/kube/pod.go at v1.18.3). Two DataDownloads in turn on one node-agent, our server
/// down: the second pod's term holds the OS requirement once. 1.16/1.17 place the OS by
/// nodeSelector and never touch the affinity.
#[test]
fn second_datadownload_pod_carries_node_agents_os_requirement_once() {
    let _serial = serial();
    webhook_up();
    serve_config(FULL_CONFIG);
    let agent = NodeAgent::start();
    webhook_down();
    let os = requirement(OS_NOT_WINDOWS);
    for turn in ["first", "second"] {
        let dd = DataDownload::create(Target::Unbound);
        let pod = dd.wait_pod(&agent);
        let what = format!("{turn} DataDownload pod from node-agent {}", version());
        assert_node_agent_os_placement(&pod, &what);
        let terms = node_affinity_terms(&pod);
        let copies: Vec<usize> = terms
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["matchExpressions"].as_array().map_or(0, |m| m.iter().filter(|r| **r == os).count()))
            .collect();
        let want = if minor() >= 18 { 1 } else { 0 };
        assert!(!copies.is_empty() || minor() < 17, "{what}: node-agent's loadAffinity in the pod:\n{}", json_of(&pod));
        assert!(
            copies.iter().all(|n| *n == want),
            "{what}: OS requirement copies per term {copies:?}:\n{}",
            json_of(&pod)
        );
        dd.assert_accepted(&agent);
    }
    drop(agent);
    webhook_up();
}

/// The pod node-agent really submits, with no config and our server down, against our fixture
/// testdata/pods/<v1.17|v1.18>/pod-datadownload.json (same scenario: a WaitForFirstConsumer
/// target whose workload is on the node). Every field the fixture has must be in the stored pod
/// with the same value, once the fixture's names, UID, node and image tag are the real ones;
/// the maps node-agent fills (labels, annotations, nodeSelector, affinity) must match exactly.
/// 1.16 has no fixture of its own: it is compared with v1.17's and the differences printed.
#[test]
fn datadownload_pod_as_node_agent_submits_it_matches_our_fixture() {
    let _serial = serial();
    webhook_up();
    serve_config("{}");
    let agent = NodeAgent::start();
    webhook_down();
    let dd = DataDownload::create(Target::SelectedNode);
    let stored = dd.wait_pod(&agent);
    let uid = dd.get()["metadata"]["uid"].as_str().expect("dd uid").to_string();
    webhook_up();

    let fixture_dir = if minor() >= 18 { "v1.18" } else { "v1.17" };
    let path = format!("testdata/pods/{fixture_dir}/pod-datadownload.json");
    let text = std::fs::read_to_string(repo_path(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fixture: Value = serde_json::from_str(&text).expect("fixture");
    let old_name = fixture["metadata"]["name"].as_str().expect("name").to_string();
    let old_uid = fixture["metadata"]["ownerReferences"][0]["uid"].as_str().expect("uid").to_string();
    let old_image = fixture["spec"]["containers"][0]["image"].as_str().expect("image").to_string();
    let old_node = fixture["spec"]["nodeSelector"]["kubernetes.io/hostname"]
        .as_str()
        .or(fixture["spec"]["nodeName"].as_str())
        .expect("fixture node")
        .to_string();
    let text = text
        .replace(&old_name, &dd.name)
        .replace(&old_uid, &uid)
        .replace(&old_image, &format!("velero/velero:{}", version()))
        .replace(&format!("\"{old_node}\""), &format!("\"{}\"", node_agent::NODE));
    let fixture: Value = serde_json::from_str(&text).expect("renamed fixture");

    // Kubernetes 1.33+ (PodTopologyLabels admission) copies the node's topology labels onto a
    // pod created with spec.nodeName (1.16/1.17 here): the API server's, not node-agent's.
    let mut stored = stored;
    if stored["spec"]["nodeName"].is_string() {
        if let Some(labels) = stored["metadata"]["labels"].as_object_mut() {
            labels.retain(|k, _| !k.starts_with("topology.kubernetes.io/"));
        }
    }
    let mut differences = Vec::new();
    contained(&fixture["metadata"], &stored["metadata"], "metadata", &mut differences);
    contained(&fixture["spec"], &stored["spec"], "spec", &mut differences);
    for exact in
        [&["metadata", "labels"][..], &["metadata", "annotations"], &["spec", "nodeSelector"], &["spec", "affinity"]]
    {
        let (f, s) = (pointer(&fixture, exact), pointer(&stored, exact));
        if f != s {
            differences.push(format!("{}: fixture {} / node-agent {}", exact.join("."), f, s));
        }
    }
    let report = differences.join("\n");
    eprintln!(
        "node-agent {} DataDownload pod against {path}:\n{}",
        version(),
        if report.is_empty() { "no difference" } else { &report }
    );
    if minor() >= 17 {
        assert!(
            differences.is_empty(),
            "node-agent {} DataDownload pod differs from {path}:\n{report}\nstored:\n{}",
            version(),
            json_of(&stored)
        );
    }
    drop(agent);
}

fn pointer(value: &Value, path: &[&str]) -> Value {
    path.iter().fold(value, |v, k| &v[*k]).clone()
}

/// Every leaf of `want` is in `have` at the same place with the same value (arrays by index).
fn contained(want: &Value, have: &Value, at: &str, differences: &mut Vec<String>) {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            for (key, value) in w {
                if key == "creationTimestamp" {
                    continue;
                }
                match h.get(key) {
                    Some(found) => contained(value, found, &format!("{at}.{key}"), differences),
                    None if value.as_object().is_some_and(|o| o.is_empty()) => {}
                    None => differences.push(format!("{at}.{key}: fixture {value} / node-agent (absent)")),
                }
            }
        }
        // Volumes, mounts, env: by name; the ServiceAccount plugin's token volume is the API server's.
        (Value::Array(w), Value::Array(h)) if w.iter().all(|i| i["name"].is_string()) && !w.is_empty() => {
            let names = |a: &Vec<Value>| {
                a.iter().map(|i| i["name"].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>()
            };
            let ours: Vec<String> = names(h).into_iter().filter(|n| !n.starts_with("kube-api-access-")).collect();
            if names(w) != ours {
                differences.push(format!("{at}: names fixture {:?} / node-agent {:?}", names(w), ours));
            }
            for item in w {
                if let Some(found) = h.iter().find(|i| i["name"] == item["name"]) {
                    contained(
                        item,
                        found,
                        &format!("{at}[{}]", item["name"].as_str().unwrap_or_default()),
                        differences,
                    );
                }
            }
        }
        (Value::Array(w), Value::Array(h)) => {
            if w.len() != h.len() {
                differences.push(format!(
                    "{at}: fixture has {} items / node-agent {}: {} / {}",
                    w.len(),
                    h.len(),
                    want,
                    have
                ));
                return;
            }
            for (i, (a, b)) in w.iter().zip(h).enumerate() {
                contained(a, b, &format!("{at}[{i}]"), differences);
            }
        }
        (w, h) if w == h => {}
        (w, h) => differences.push(format!("{at}: fixture {w} / node-agent {h}")),
    }
}
