//! The real node-agent's data-mover pods under the real kube-scheduler (`judge`): configured
//! `tolerations`, which no node-agent release reads, are applied by our webhook to the pod
//! node-agent submits, and the scheduler lands it on the tainted node they tolerate; a
//! DataUpload pod gets the `loadAffinity` entry of its backup PVC's class, and the scheduler
//! binds it where that entry and its volume's zones meet.

use serde_json::{json, Value};

use crate::datadownload::{DataDownload, Target};
use crate::dataupload::DataUpload;
use crate::harness::*;
use crate::judge::{Judge, TOLERATING_CONFIG, ZONE};
use crate::node_agent::{minor, version, NodeAgent};
use crate::*;

#[test]
fn datadownload_pod_with_configured_tolerations_lands_on_the_tainted_node() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    let applied = apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), TOLERATING_CONFIG);
    assert!(applied.ok, "{}", applied.stderr);
    let running = version();
    assert!(
        applied.warnings().iter().any(|w| w.contains(&format!(
            "tolerations: node-agent of Velero {} ignores this (no Velero release reads it); the mutating webhook applies it to new data-mover pods",
            running.trim_start_matches('v')
        ))),
        "{:?}",
        applied.warnings()
    );
    serve_config(TOLERATING_CONFIG);
    let agent = NodeAgent::start();

    let dd = DataDownload::create(Target::Unbound);
    let pod = dd.wait_pod(&agent);
    let what = format!("DataDownload pod from node-agent {running}");
    let toleration = json!({"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"});
    let tolerations = pod["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    assert_eq!(tolerations.iter().filter(|t| **t == toleration).count(), 1, "{what}:\n{}", json_of(&pod));
    assert!(applied_settings(&pod).iter().any(|s| s == "tolerations"), "{what}: {:?}", applied_settings(&pod));

    // The restore PVC node-agent made, bound as the PV controller would, to a PV in zone 1a.
    judge.bind_claim(NS, &dd.name, "", &["eu-west-1a"]);
    assert_eq!(judge.bound_node(NS, &dd.name), "judge-a-tainted", "{what}");
    drop(agent);
    drop(dd);
    drop(judge);
    serve_config("{}");
}

/// What node-agent reads at start-up: backups of `e2e-wffc` volumes go through `e2e-fast`
/// backup PVCs (Immediate binding, so the scheduler waits for the claim to be bound rather than
/// provision it).
const BACKUP_PVC: &str = r#"{"backupPVC": {"e2e-wffc": {"storageClass": "e2e-fast"}}}"#;

/// The live config, edited after node-agent started: an entry for `e2e-fast` backup PVCs (the
/// `pool=fast` backup nodes) and one for every other class (the worker).
const BY_CLASS: &str = r#"{"backupPVC": {"e2e-wffc": {"storageClass": "e2e-fast"}},
    "loadAffinity": [
        {"nodeSelector": {"matchLabels": {"role": "worker"}}},
        {"storageClass": "e2e-fast", "nodeSelector": {"matchLabels": {"pool": "fast"}, "matchExpressions": [{"key": "role", "operator": "In", "values": ["backup"]}]}}]}"#;

/// node-agent's own DataUpload pod for a volume in zone 1a or 1b (its PV has one term per zone;
/// from 1.18 node-agent copies them into the pod, as the volume's class waits for its first
/// consumer): our webhook ANDs the entry of the backup PVC's class (`e2e-fast`) into each of the
/// pod's terms, on every release (1.16 reads no `storageClass` of an entry, and this node-agent
/// started before the entries existed), and kube-scheduler binds it to the one node in those
/// zones that the entry selects: judge-b-backup, not judge-a-worker, which is in zone 1a and
/// which the entry for other classes selects.
#[test]
fn dataupload_pod_lands_where_its_volume_zones_and_its_class_s_load_affinity_meet() {
    let _serial = serial();
    webhook_up();
    let mut judge = Judge::start();
    serve_config(BACKUP_PVC);
    let agent = NodeAgent::start();
    serve_config(BY_CLASS);
    let running = version();
    let what = format!("DataUpload pod from node-agent {running}");
    let zones = ["eu-west-1a", "eu-west-1b"];

    let du = DataUpload::create("e2e-wffc", &zones);
    let pod = du.wait_pod(&agent);
    let backup_pvc = kubectl(&["get", "pvc", &du.name, "-n", NS, "-o", "json"]).json();
    assert_eq!(backup_pvc["spec"]["storageClassName"], "e2e-fast", "{what}: the backup PVC node-agent made");
    assert!(applied_settings(&pod).iter().any(|s| s == "loadAffinity"), "{what}: {:?}", applied_settings(&pod));
    let terms = node_affinity_terms(&pod);
    let terms = terms.as_array().cloned().unwrap_or_default();
    assert_eq!(terms.len(), if minor() >= 18 { zones.len() } else { 1 }, "{what}:\n{}", json_of(&pod));
    let fast = json!({"key": "pool", "operator": "In", "values": ["fast"]});
    let backup = json!({"key": "role", "operator": "In", "values": ["backup"]});
    for term in &terms {
        let requirements = term["matchExpressions"].as_array().cloned().unwrap_or_default();
        assert!(
            requirements.contains(&fast) && requirements.contains(&backup),
            "{what}: every term takes the e2e-fast entry:\n{}",
            json_of(&pod)
        );
    }

    // The backup PVC, bound as the PV controller would, to a PV in the volume's zones.
    judge.bind_claim(NS, &du.name, "e2e-fast", &zones);
    assert_eq!(judge.bound_node(NS, &du.name), "judge-b-backup", "{what}");
    // judge-a-worker was a candidate of the volume's zones, and only the entry left it out.
    let worker = kubectl(&["get", "node", "judge-a-worker", "-o", "json"]).json();
    let pv = kubectl(&["get", "pv", &du.name, "-o", "json"]).json();
    let pv_zones: Vec<&Value> = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|term| term["matchExpressions"].as_array().into_iter().flatten())
        .filter(|requirement| requirement["key"] == ZONE)
        .flat_map(|requirement| requirement["values"].as_array().into_iter().flatten())
        .collect();
    let labels = &worker["metadata"]["labels"];
    assert!(pv_zones.contains(&&labels[ZONE]), "judge-a-worker is in one of the PV's zones {pv_zones:?}: {labels}");
    assert_eq!(labels["role"], "worker", "the e2e-fast entry's role=backup leaves judge-a-worker out");
    drop(agent);
    drop(du);
    drop(judge);
    serve_config("{}");
}
