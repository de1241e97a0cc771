//! The live config: edits made with kubectl reach the next pod, with no restart of anything, and
//! an edit the validating webhook would have refused is never served.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::*;

fn config_with_team(team: &str) -> String {
    format!(r#"{{"podLabels": {{"team": "{team}"}}}}"#)
}

/// Creates DataUpload pods as node-agent until one carries `team=<team>`; returns how long it took
/// from `since` and the pods created.
pub fn until_a_pod_gets_team(team: &str, since: Instant, limit: Duration) -> (Duration, Vec<String>) {
    let node_agent = Identity::node_agent();
    let mut created = Vec::new();
    while since.elapsed() < limit {
        let (name, pod) = pod_fixture("v1.18", "dataupload");
        let (_, stored) = create_pod(Some(&node_agent), &pod);
        created.push(name);
        if stored["metadata"]["labels"]["team"] == team {
            return (since.elapsed(), created);
        }
    }
    panic!("no pod got team={team} within {limit:?}");
}

#[test]
fn a_kubectl_edit_reaches_the_next_pod_created() {
    let _serial = serial();
    webhook_up();
    serve_config(&config_with_team("before-edit"));
    let mut delays = Vec::new();
    let mut all = Vec::new();
    for round in 0..5 {
        let team = format!("edit-{round}");
        let applied = apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), &config_with_team(&team)).must();
        assert!(applied.stdout.contains("configured"), "{}", applied.stdout);
        let since = Instant::now();
        let (delay, created) = until_a_pod_gets_team(&team, since, Duration::from_secs(10));
        delays.push(delay);
        all.extend(created);
    }
    delays.sort();
    eprintln!("edit -> first pod with the new setting: {delays:?} (goal under 1 s)");
    assert!(delays[delays.len() / 2] < Duration::from_secs(1), "median delay {:?}", delays[delays.len() / 2]);
    delete_pods(&all, NS);
}

#[test]
fn an_edit_the_validating_webhook_would_refuse_is_not_served() {
    let _serial = serial();
    webhook_up();
    serve_config(&config_with_team("last-good"));
    let errors = || metric_sum(&our_metrics(), "node_agent_webhook_config_reloads_total", &["result=\"error\""]);
    let before = errors();

    // Unregistered, so the API server stores what we would have denied.
    let mut webhook = kubectl(&["get", "validatingwebhookconfiguration", "node-agent-webhook", "-o", "json"]).json();
    kubectl(&["delete", "validatingwebhookconfiguration", "node-agent-webhook"]).must();
    let stored = apply_config_as(
        |m| kubectl_stdin(&["apply", "-f", "-"], m),
        r#"{"podLabels": {"team": "broken"}, "podResources": {"cpuLimit": 2}}"#,
    );
    assert!(stored.ok, "with the webhook unregistered the API server stores it: {}", stored.stderr);
    wait_until("the server sees and rejects the edit", Duration::from_secs(10), || errors() > before);

    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (_, pod) = create_pod(Some(&Identity::node_agent()), &pod);
    assert_eq!(pod["metadata"]["labels"]["team"], "last-good", "the last good config keeps serving");
    delete_pods(&[name], NS);

    if let Some(meta) = webhook["metadata"].as_object_mut() {
        meta.retain(|k, _| k == "name" || k == "labels" || k == "annotations");
    }
    kubectl_stdin(&["create", "-f", "-"], &Value::to_string(&webhook)).must();
    serve_config(&config_with_team("repaired"));
}
