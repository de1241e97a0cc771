//! DataUpload pods made by node-agent itself, with the fakes a CSI snapshot backup leaves
//! behind, written by the test: a StorageClass, the source PVC and its PV, a VolumeSnapshotClass,
//! a ready VolumeSnapshot and its VolumeSnapshotContent (the CSI snapshot CRDs come from the
//! external-snapshotter client module Velero depends on). node-agent retains and deletes the
//! snapshot objects, creates the backup VolumeSnapshot, its content, the backup PVC and then the
//! pod; the pod stays Pending.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::judge::zone_terms;
use crate::node_agent::{minor, version, NodeAgent};
use crate::*;

const APP_NS: &str = "e2e-app";
const DRIVER: &str = "csi.e2e.example.com";

pub struct DataUpload {
    pub name: String,
}

impl DataUpload {
    /// The snapshot of a PVC of class `class`, ready, and its DataUpload; the PVC's PV has one
    /// required node-selector term per zone of `zones` (none: no node affinity).
    pub fn create(class: &str, zones: &[&str]) -> Self {
        let name = unique("du");
        let node_affinity = match zones {
            [] => Value::Null,
            zones => json!({"required": {"nodeSelectorTerms": zone_terms(zones)}}),
        };
        let (pv, pvc, vs, vsc) =
            (format!("{name}-pv"), format!("{name}-src"), format!("{name}-vs"), format!("{name}-vsc"));
        let objects = [
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                   "metadata": {"name": "e2e-snap"}, "driver": DRIVER, "deletionPolicy": "Delete"}),
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                   "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                            "persistentVolumeReclaimPolicy": "Delete",
                            "claimRef": {"namespace": APP_NS, "name": pvc}, "nodeAffinity": node_affinity,
                            "csi": {"driver": DRIVER, "volumeHandle": format!("{name}-handle")}}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": pvc, "namespace": APP_NS},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                            "storageClassName": class, "volumeName": pv}}),
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent", "metadata": {"name": vsc},
                   "spec": {"deletionPolicy": "Delete", "driver": DRIVER, "volumeSnapshotClassName": "e2e-snap",
                            "source": {"snapshotHandle": format!("{name}-snap")},
                            "volumeSnapshotRef": {"name": vs, "namespace": APP_NS}}}),
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot", "metadata": {"name": vs, "namespace": APP_NS},
                   "spec": {"source": {"persistentVolumeClaimName": pvc}, "volumeSnapshotClassName": "e2e-snap"}}),
        ];
        for object in &objects {
            kubectl_stdin(&["apply", "-f", "-"], &object.to_string()).must();
        }
        // What the CSI snapshotter would write: the content's handle and the snapshot's readiness.
        let vsc_status = json!({"status": {"snapshotHandle": format!("{name}-snap"), "readyToUse": true, "restoreSize": 1_073_741_824_i64}});
        kubectl(&[
            "patch",
            "volumesnapshotcontent",
            &vsc,
            "--subresource=status",
            "--type=merge",
            "-p",
            &vsc_status.to_string(),
        ])
        .must();
        let vs_status =
            json!({"status": {"boundVolumeSnapshotContentName": vsc, "readyToUse": true, "restoreSize": "1Gi"}});
        kubectl(&[
            "patch",
            "volumesnapshot",
            &vs,
            "-n",
            APP_NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            &vs_status.to_string(),
        ])
        .must();
        let du = json!({
            "apiVersion": "velero.io/v2alpha1", "kind": "DataUpload", "metadata": {"name": name, "namespace": NS},
            "spec": {"snapshotType": "CSI",
                     "csiSnapshot": {"volumeSnapshot": vs, "storageClass": class, "snapshotClass": "e2e-snap"},
                     "sourcePVC": pvc, "sourceNamespace": APP_NS, "backupStorageLocation": "default", "operationTimeout": "10m"}
        });
        kubectl_stdin(&["create", "-f", "-"], &du.to_string()).must();
        Self { name }
    }

    pub fn get(&self) -> Value {
        kubectl(&["get", "datauploads.velero.io", &self.name, "-n", NS, "-o", "json"]).json()
    }

    #[track_caller]
    pub fn wait_pod(&self, agent: &NodeAgent) -> Value {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let run = kubectl(&["get", "pod", &self.name, "-n", NS, "-o", "json", "--ignore-not-found"]);
            if run.ok && !run.stdout.trim().is_empty() {
                return run.json();
            }
            if self.get()["status"]["phase"] == "Failed" {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "node-agent {} made no pod for DataUpload {}: {}\nnode-agent's log:\n{}",
            version(),
            self.name,
            json_of(&self.get()["status"]),
            agent.log_text()
        );
    }
}

impl Drop for DataUpload {
    fn drop(&mut self) {
        let name = &self.name;
        let patch = r#"{"metadata":{"finalizers":null}}"#;
        let _ = kubectl(&["patch", "datauploads.velero.io", name, "-n", NS, "--type=merge", "-p", patch]);
        let _ = kubectl(&["delete", "datauploads.velero.io", name, "-n", NS, "--wait=false", "--ignore-not-found"]);
        let _ = kubectl(&["delete", "pod,pvc", name, "-n", NS, "--wait=false", "--ignore-not-found"]);
        let _ = kubectl(&["delete", "volumesnapshot", name, "-n", NS, "--wait=false", "--ignore-not-found"]);
        let _ = kubectl(&[
            "delete",
            "volumesnapshot",
            &format!("{name}-vs"),
            "-n",
            APP_NS,
            "--wait=false",
            "--ignore-not-found",
        ]);
        let _ = kubectl(&["delete", "pvc", &format!("{name}-src"), "-n", APP_NS, "--wait=false", "--ignore-not-found"]);
        let _ = kubectl(&["delete", "pv", &format!("{name}-pv"), "--wait=false", "--ignore-not-found"]);
        for vsc in kubectl(&["get", "volumesnapshotcontent", "-o", "name"]).stdout.lines() {
            if vsc.contains(name.as_str()) {
                let _ = kubectl(&["delete", vsc, "--wait=false", "--ignore-not-found"]);
            }
        }
    }
}

/// The DataUpload pod gets the live config; its loadAffinity entry is the one for the class of
/// the backup PVC node-agent created just before the pod (our server looks that PVC up), not the
/// global entry; the requirements are ANDed into node-agent's own term.
#[test]
fn dataupload_pod_gets_the_live_config_and_the_entry_for_its_backup_pvc_class() {
    let _serial = serial();
    webhook_up();
    serve_config("{}");
    let agent = NodeAgent::start();
    serve_config(
        r#"{
  "loadAffinity": [
    {"nodeSelector": {"matchLabels": {"node-role.example.com/backup": "true"}}},
    {"nodeSelector": {"matchLabels": {"example.com/disk": "ssd"}}, "storageClass": "e2e-fast"}
  ],
  "podResources": {"cpuRequest": "500m", "cpuLimit": "2", "memoryRequest": "512Mi", "memoryLimit": "2Gi"},
  "priorityClassName": "e2e-backup",
  "podLabels": {"team": "platform"},
  "podAnnotations": {"iam.amazonaws.com/role": "velero-backup-role"}
}"#,
    );
    let lookups =
        metric_sum(&our_metrics(), "node_agent_webhook_storage_class_lookups_total", &[r#"result="success""#]);

    let du = DataUpload::create("e2e-fast", &[]);
    let pod = du.wait_pod(&agent);
    let what = format!("DataUpload pod from node-agent {}", version());
    let backup_pvc = kubectl(&["get", "pvc", &du.name, "-n", NS, "-o", "json"]).json();
    assert_eq!(backup_pvc["spec"]["storageClassName"], "e2e-fast", "the backup PVC node-agent made");

    let applied = applied_settings(&pod);
    for setting in ["loadAffinity", "podResources", "priorityClassName", "podLabels", "podAnnotations"] {
        assert!(applied.iter().any(|s| s == setting), "{what}: {setting} not applied: {applied:?}\n{}", json_of(&pod));
    }
    assert!(
        metric_sum(&our_metrics(), "node_agent_webhook_storage_class_lookups_total", &[r#"result="success""#])
            > lookups,
        "{what}: our server looked the backup PVC's class up"
    );
    assert_eq!(pod["metadata"]["labels"]["velero.io/data-upload"], du.name.as_str(), "{what}");
    assert_eq!(pod["metadata"]["labels"]["velero.io/exposer-pod-group"], "snapshot-exposer", "{what}");
    assert_eq!(pod["metadata"]["labels"]["team"], "platform", "{what}");
    assert_eq!(pod["spec"]["priorityClassName"], "e2e-backup", "{what}");
    assert_eq!(pod["spec"]["containers"][0]["resources"]["limits"]["cpu"], "2", "{what}");
    let terms = node_affinity_terms(&pod);
    let ssd = json!({"key": "example.com/disk", "operator": "In", "values": ["ssd"]});
    let global = json!({"key": "node-role.example.com/backup", "operator": "In", "values": ["true"]});
    let term = &terms[0]["matchExpressions"];
    assert!(term.as_array().is_some_and(|t| t.contains(&ssd)), "{what}: the e2e-fast entry:\n{}", json_of(&pod));
    assert!(!term.as_array().is_some_and(|t| t.contains(&global)), "{what}: not the global entry:\n{}", json_of(&pod));
    if minor() >= 18 {
        let os = json!({"key": "kubernetes.io/os", "operator": "NotIn", "values": ["windows"]});
        assert!(
            term.as_array().is_some_and(|t| t.contains(&os)),
            "{what}: node-agent's OS requirement kept:\n{}",
            json_of(&pod)
        );
    } else {
        assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/os"], "linux", "{what}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let status = du.get()["status"].clone();
    assert_eq!(status["phase"], "Accepted", "{what}: {}\nnode-agent's log:\n{}", json_of(&status), agent.log_text());
    drop(agent);
}
