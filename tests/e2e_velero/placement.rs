//! The real node-agent's data-mover pods under the real kube-scheduler (`judge`): configured
//! `tolerations`, which no node-agent release reads, are applied by our webhook to the pod
//! node-agent submits, and the scheduler lands it on the tainted node they tolerate.

use serde_json::json;

use crate::datadownload::{DataDownload, Target};
use crate::harness::*;
use crate::judge::{Judge, TOLERATING_CONFIG};
use crate::node_agent::{version, NodeAgent};
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
